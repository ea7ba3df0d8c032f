"""Which web origins may send to a project: the patterns of a project's ``allowed_origins``.

A pattern is one of

* ``*``: any origin;
* an exact origin, ``https://app.example.com`` (scheme, host, optional port; no path);
* a subdomain wildcard, ``https://*.example.com``: any subdomain at any depth, not the bare
  domain (list ``https://example.com`` beside it for that);
* a port wildcard, ``http://localhost:*``: any port, or none.

Schemes and hosts compare case-insensitively and a scheme's default port is the same as no
port (``https://a.com:443`` is ``https://a.com``), as browsers serialise origins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

ANY = "*"
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PATTERN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.\-]*)://"
    r"(?P<wild>\*\.)?(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*)"
    r"(?::(?P<port>\*|[0-9]{1,5}))?$"
)


@dataclass(frozen=True)
class _Rule:
    scheme: str
    host: str
    subdomains: bool
    port: str | None
    """``None``: the scheme's default port; ``"*"``: any."""

    def matches(self, scheme: str, host: str, port: str | None) -> bool:
        if scheme != self.scheme:
            return False
        if self.port != "*" and port != self.port:
            return False
        if self.subdomains:
            return host.endswith("." + self.host)
        return host == self.host


def _split(text: str) -> tuple[str, bool, str, str | None] | None:
    """(scheme, subdomain wildcard, host, port without the default) or None if not an origin."""
    match = _PATTERN.match(text.strip().lower())
    if match is None:
        return None
    scheme, port = match["scheme"], match["port"]
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, match["wild"] is not None, match["host"], port


def check_pattern(pattern: str) -> str:
    """``pattern`` when it is a valid origin pattern; ``ValueError`` saying why otherwise."""
    if pattern == ANY:
        return pattern
    parts = _split(pattern)
    if parts is None:
        raise ValueError(
            f"{pattern!r} is not an origin pattern: use '*', 'https://app.example.com', "
            "'https://*.example.com' or 'http://localhost:*' (scheme and host, no path)"
        )
    port = parts[3]
    if port not in (None, "*") and not 0 < int(port) < 65536:
        raise ValueError(f"{pattern!r} has a port outside 1-65535")
    return pattern


class OriginMatcher:
    """A compiled list of patterns; :meth:`allows` says whether an ``Origin`` header passes."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.any = False
        self._exact: set[tuple[str, str, str | None]] = set()
        self._rules: list[_Rule] = []
        for pattern in patterns:
            self._add(pattern)

    def _add(self, pattern: str) -> None:
        if pattern == ANY:
            self.any = True
            return
        parts = _split(pattern)
        if parts is None:
            return  # documents are validated on the way in; an old one never breaks a request
        scheme, subdomains, host, port = parts
        if subdomains or port == "*":
            self._rules.append(_Rule(scheme, host, subdomains, port))
        else:
            self._exact.add((scheme, host, port))

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        parts = _split(origin)
        if parts is None or parts[1]:
            return False  # "null" (a file or sandboxed page) or no origin at all
        scheme, _, host, port = parts
        if (scheme, host, port) in self._exact:
            return True
        return any(rule.matches(scheme, host, port) for rule in self._rules)


@functools.lru_cache(maxsize=4096)
def matcher(patterns: tuple[str, ...]) -> OriginMatcher:
    """The compiled matcher of ``patterns`` (cached: a project's list is compiled once)."""
    return OriginMatcher(patterns)


def origin_allowed(patterns: Iterable[str], origin: str) -> bool:
    """Whether ``origin`` (an ``Origin`` header's value) matches one of ``patterns``."""
    return matcher(tuple(patterns)).allows(origin)
