"""Who may call: the write key a request carries, and the page's origin for that key's project.

Every endpoint of a public key (ingestion, settings, assignments) passes through a
:class:`Gate`: it finds the key, refuses an origin the project does not allow, and puts the
CORS headers on every answer the page may read, errors included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sextant.collector.auth import Writer, authenticate, basic_username
from sextant.collector.cors import OriginPolicy, add_cors_raw_headers, preflight_headers
from sextant.collector.errors import ApiError
from sextant.collector.metrics import CollectorMetrics
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import KeyKind

MAX_ORIGIN_LABELS = 100
"""Distinct origins counted by name in the refusal metric; the rest count as ``other``."""


_NO_QUERY: Mapping[str, str] = {}


@dataclass(frozen=True)
class Head:
    """A request's headers and query, read from the ASGI scope once (Starlette's ``Headers``
    searches the raw list on every lookup, its ``URL`` is built to read the query)."""

    headers: Mapping[str, str]
    query: Mapping[str, str]

    @classmethod
    def of(cls, request: Request) -> Head:
        scope = request.scope
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        raw_query: bytes = scope.get("query_string", b"")
        query = dict(parse_qsl(raw_query.decode("latin-1"))) if raw_query else _NO_QUERY
        return cls(headers, query)

    def get(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Call:
    """What is known about one request as it is handled."""

    origin: str | None
    writer: Writer | None = None
    cors: bool = field(default=True)
    """False once the origin was refused: that answer must not be readable by the page."""


class Gate:
    def __init__(
        self,
        *,
        state: ConfigState,
        metrics: CollectorMetrics,
        config_ready: Callable[[], bool] = lambda: True,
        retry_after_s: int = 5,
    ) -> None:
        self._state = state
        self._metrics = metrics
        self._config_ready = config_ready
        self._retry_after_s = retry_after_s
        self.origins = OriginPolicy(state)
        self._labelled: set[str] = set()

    def open(self, call: Call) -> None:
        """Start handling a call: 503 until the keys are read."""
        if not self._config_ready():
            # Until the keys are read, every key would look unknown: a 401 would make clients
            # drop their events, a 503 makes them retry.
            raise ApiError(
                503,
                "starting",
                "the collector has not read its configuration (keys, projects) yet",
                "config",
                headers={"Retry-After": str(self._retry_after_s)},
            )

    def header_key(self, authorization: str | None, query: Mapping[str, str]) -> str | None:
        """The key of ``Authorization`` (Basic username or Bearer) or of ``?writeKey=``."""
        key = basic_username(authorization)
        if key is None:
            key = query.get("writeKey") or None
        return key

    def admit(
        self, call: Call, secret: str | None, where: str, kind: KeyKind = KeyKind.WRITE
    ) -> Writer:
        """The key (a write key, or ``kind``) behind ``secret``, once its project allows the
        call's origin."""
        writer = authenticate(self._state, secret, where, kind)
        call.writer = writer
        origin = call.origin
        if origin is not None and not self.origins.project_allows(writer.project, origin):
            call.cors = False
            self._count_refusal(origin)
            raise ApiError(
                403,
                "origin_not_allowed",
                f"pages on {origin} may not send to project {writer.project.id!r}: add the "
                "origin to the project's allowed_origins",
                "header Origin",
            )
        return writer

    def answer(self, call: Call, response: Response) -> Response:
        """``response`` with the CORS headers the call's origin may have."""
        origin = call.origin
        if origin is None or not call.cors:
            return response
        if call.writer is not None or self.origins.known(origin):
            add_cors_raw_headers(response.raw_headers, origin)
        return response

    def preflight(self, request: Request) -> Response:
        """``OPTIONS``: 204 for an origin some project allows (the key is not sent with a
        preflight, unless as ``?writeKey=``), 403 without CORS headers otherwise."""
        origin = request.headers.get("origin")
        if origin is None:
            return Response(status_code=204, headers={"Allow": "GET, POST, OPTIONS"})
        if not self._preflight_allowed(request, origin):
            self._count_refusal(origin)
            body = {
                "code": "origin_not_allowed",
                "message": f"no project allows pages on {origin}",
                "where": "header Origin",
            }
            return Response(orjson.dumps(body), 403, media_type="application/json")
        requested = request.headers.get("access-control-request-headers")
        return Response(status_code=204, headers=preflight_headers(origin, requested))

    def _preflight_allowed(self, request: Request, origin: str) -> bool:
        client_key = request.path_params.get("client_key")
        if client_key:
            try:
                writer = authenticate(self._state, client_key, "path clientKey", KeyKind.CLIENT)
            except ApiError:
                return False
            return self.origins.project_allows(writer.project, origin)
        key = Head.of(request).query.get("writeKey")
        if key:
            try:
                writer = authenticate(self._state, key, "query writeKey")
            except ApiError:
                return False
            return self.origins.project_allows(writer.project, origin)
        return self.origins.known(origin)

    def _count_refusal(self, origin: str) -> None:
        if origin not in self._labelled and len(self._labelled) < MAX_ORIGIN_LABELS:
            self._labelled.add(origin)
        label = origin if origin in self._labelled else "other"
        self._metrics.origin_refusals.labels(label).inc()
