"""CORS for pages that send events straight from the browser.

Each project lists the origins whose pages may send to it (``Project.allowed_origins``). A
request's project is known only once its write key is read, so:

* an answer for a known project carries the CORS headers when that project allows the origin;
  a request from an origin it does not allow is refused (403, without CORS headers, so the
  page sees a failure and the event is stored nowhere);
* a preflight, and an error answered before the key is known (401, 400 …), carry the headers
  when some project allows the origin, so a page of a real customer can read the error while
  a page no project lists learns nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders

from sextant.core.config_plane import ConfigState
from sextant.schemas.config import Project
from sextant.schemas.origins import OriginMatcher, matcher

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Content-Encoding",
    "X-Retry-Count",
    "If-None-Match",
    "AnonymousId",
    "SentAt",
    "X-Requested-With",
    "Cache-Control",
)
EXPOSED_HEADERS = "Retry-After, ETag, X-Sse-Support"
MAX_AGE_SECONDS = 86_400
"""Browsers cap it (Chromium at two hours); the longest any of them keeps a preflight."""
_MAX_REQUESTED_HEADERS = 32


class OriginPolicy:
    """Which origins each project allows, and the union over every project (kept per config
    version, so a new origin takes effect with the config change that adds it)."""

    def __init__(self, state: ConfigState) -> None:
        self._state = state
        self._version = -1
        self._union = OriginMatcher(())

    def project_allows(self, project: Project, origin: str) -> bool:
        return matcher(tuple(project.allowed_origins)).allows(origin)

    def known(self, origin: str) -> bool:
        """Some project allows ``origin``."""
        if self._version != self._state.version:
            self._version = self._state.version
            patterns = [
                p for project in self._state.of_kind(Project) for p in project.allowed_origins
            ]
            self._union = OriginMatcher(patterns)
        return self._union.allows(origin)


def add_cors_headers(headers: MutableHeaders | dict[str, str], origin: str) -> None:
    """The headers that let the page at ``origin`` read this answer."""
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Allow-Credentials"] = "true"
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    headers["Vary"] = "Origin"


_CORS_NAMES = frozenset(
    (
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-expose-headers",
        b"vary",
    )
)
_CONSTANT_CORS = (
    (b"access-control-allow-credentials", b"true"),
    (b"access-control-expose-headers", EXPOSED_HEADERS.encode("latin-1")),
    (b"vary", b"Origin"),
)


def add_cors_raw_headers(raw_headers: list[tuple[bytes, bytes]], origin: str) -> None:
    """:func:`add_cors_headers` on a response's raw header list: the same headers, appended
    at once when the response has none of them yet (as nearly every answer), where each
    ``MutableHeaders`` assignment searches and rebuilds the list."""
    if any(name in _CORS_NAMES for name, _ in raw_headers):
        add_cors_headers(MutableHeaders(raw=raw_headers), origin)
        return
    raw_headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
    raw_headers.extend(_CONSTANT_CORS)


def preflight_headers(origin: str, requested: str | None) -> dict[str, str]:
    """The answer to ``OPTIONS``: methods, headers (the standard ones and any the client asks
    for: a client's own header must never make its preflight fail) and how long to keep it."""
    headers: dict[str, str] = {}
    add_cors_headers(headers, origin)
    headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    headers["Access-Control-Allow-Headers"] = ", ".join(_allowed_headers(requested))
    headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return headers


def _allowed_headers(requested: str | None) -> Iterable[str]:
    names = {name.lower(): name for name in ALLOWED_HEADERS}
    for name in (requested or "").split(",")[:_MAX_REQUESTED_HEADERS]:
        name = name.strip()
        if name and name.replace("-", "").isalnum():
            names.setdefault(name.lower(), name)
    return names.values()
