"""Webhook targets: which URLs the notifier will call, and how they appear in logs.

A target must be ``http`` or ``https``, carry no credentials in its authority, and (unless
allowed by the settings) resolve only to global addresses. Logs and the delivery log show a
target as ``scheme://host[:port]/…`` plus a short hash of the whole URL: webhook URLs often
carry their secret in the path (Slack's do).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["Resolver", "TargetRefused", "check_target", "redact", "resolve_host"]

Resolver = Callable[[str, int], list[str]]
"""(host, port) → the addresses it resolves to."""


class TargetRefused(Exception):  # noqa: N818 - the name says what happened
    """The notifier will not call this URL; the message says why (without the URL)."""


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system resolver)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def redact(url: str) -> str:
    """A URL fit for logs: scheme, host and port, and a hash to tell targets apart."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{parts.scheme}://{host}{port}/…#{digest}"


def _allowed(address: str, allow_loopback: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


def check_target(
    url: str,
    *,
    refuse_private: bool = True,
    allow_loopback: bool = False,
    resolve: Resolver = resolve_host,
) -> None:
    """Raise :class:`TargetRefused` unless ``url`` may be called.

    The host is resolved here and every address must pass; the HTTP client resolves it again
    when it connects, so this narrows, but does not close, a DNS-rebinding window.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise TargetRefused(f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https targets are allowed")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in a target URL are not allowed")
    if not parts.hostname:
        raise TargetRefused("the target URL has no host")
    if not refuse_private:
        return
    try:
        addresses = resolve(parts.hostname, port)
    except OSError as error:
        raise TargetRefused(f"the host does not resolve: {error.strerror or error}") from None
    if not addresses or not all(_allowed(a, allow_loopback) for a in addresses):
        raise TargetRefused("the host resolves to a private or reserved address")
