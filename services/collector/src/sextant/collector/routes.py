"""The ingestion endpoints: Segment's Tracking API and PostHog's capture API."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from sextant.collector import dialects
from sextant.collector.body import decode_payload, read_limited
from sextant.collector.dialects import Submission
from sextant.collector.errors import ApiError, ErrorBody
from sextant.collector.gate import Call, Gate, Head
from sextant.collector.ingest import Ingestor
from sextant.collector.metrics import CollectorMetrics
from sextant.collector.models import BATCH_RESULT_EXAMPLE, BatchResult, result_json
from sextant.collector.openapi import request_body
from sextant.core.turns import Turns
from sextant.schemas.events import EventType

Dialect = Callable[[Any], Submission]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON, or not a batch"},
    401: {"model": ErrorBody, "description": "No write key, or an unknown one"},
    403: {"model": ErrorBody, "description": "The key is revoked, or not a write key"},
    413: {"model": ErrorBody, "description": "The body (or its gzip inflation) is too large"},
    429: {
        "model": ErrorBody,
        "description": "The key's rate limit is exceeded; see Retry-After",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    503: {
        "model": ErrorBody,
        "description": "Kafka did not take the events in time; nothing was acknowledged",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


class Endpoints:
    """Request handling shared by every ingestion route."""

    def __init__(
        self,
        *,
        gate: Gate,
        ingestor: Ingestor,
        metrics: CollectorMetrics,
        max_batch_bytes: int,
        max_event_bytes: int,
        trust_forwarded_for: bool,
        turns: Turns | None = None,
    ) -> None:
        self.gate = gate
        self.ingestor = ingestor
        self.metrics = metrics
        self.max_batch_bytes = max_batch_bytes
        self.max_event_bytes = max_event_bytes
        self.trust_forwarded_for = trust_forwarded_for
        self.turns = turns or Turns()

    async def handle(self, request: Request, dialect: Dialect, limit: int, name: str) -> Response:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        head = Head.of(request)
        call = Call(origin=head.get("origin"))
        try:
            self.gate.open(call)
            result = await self._handle(request, head, call, dialect, limit)
            response = Response(result_json(result), media_type="application/json")
        except ApiError as error:
            response = error_response(error)
        finally:
            self.metrics.in_flight.dec()
        self.gate.answer(call, response)
        self.metrics.answered(name, response.status_code, time.perf_counter() - started)
        return response

    async def _handle(
        self, request: Request, head: Head, call: Call, dialect: Dialect, limit: int
    ) -> BatchResult:
        header_key = self.gate.header_key(head.get("authorization"), head.query)
        writer = self.gate.admit(call, header_key, "header Authorization") if header_key else None
        try:
            body = await read_limited(
                request.stream(),
                limit=limit,
                content_length=head.get("content-length"),
                content_encoding=head.get("content-encoding"),
            )
        except ClientDisconnect as error:
            raise ApiError(
                400, "bad_request", "the client left before the body ended", "body"
            ) from error
        await self.turns.take()
        body = decode_payload(
            body,
            limit=limit,
            content_type=head.get("content-type"),
            compression=head.query.get("compression"),
        )
        submission = dialect(dialects.parse_json(body))
        anonymous_id, sent_at = head.get("anonymousid"), head.get("sentat")
        if anonymous_id or sent_at:
            submission.apply_headers(anonymous_id, sent_at)
        if writer is None:
            writer = self.gate.admit(call, submission.write_key, "body writeKey / api_key")
        return await self.ingestor.ingest(
            submission,
            writer,
            client_ip=client_ip(request, self.trust_forwarded_for),
            body_bytes=len(body),
        )


def client_ip(request: Request, trust_forwarded_for: bool) -> str | None:
    """The client's address: the connection's, or the first of ``X-Forwarded-For`` behind a
    proxy that sets it."""
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    client = request.scope.get("client")
    return client[0] if client else None


def error_response(error: ApiError) -> Response:
    return Response(
        orjson.dumps(error.body.model_dump()),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


SEGMENT_CALLS = (
    EventType.TRACK,
    EventType.IDENTIFY,
    EventType.PAGE,
    EventType.SCREEN,
    EventType.GROUP,
    EventType.ALIAS,
)
SHORT_PATHS = {
    EventType.TRACK: "/v1/t",
    EventType.IDENTIFY: "/v1/i",
    EventType.PAGE: "/v1/p",
    EventType.SCREEN: "/v1/s",
    EventType.GROUP: "/v1/g",
    EventType.ALIAS: "/v1/a",
}
"""analytics-next posts each call to its type's first letter (Segment's API accepts both)."""


def _single_call(body: Any, call: EventType) -> Submission:
    return dialects.segment_single(body, call)


Handler = Callable[[Request], Awaitable[Response]]
FastRoutes = dict[tuple[str, str], Handler]
"""Handlers by (method, path) that the app calls without routing (see ``CollectorApp``)."""


def add_preflight(router: APIRouter, gate: Gate, path: str, fast: FastRoutes | None = None) -> None:
    """Answer ``OPTIONS path`` (a browser's CORS preflight)."""

    async def preflight(request: Request) -> Response:
        return gate.preflight(request)

    router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)
    if fast is not None:
        fast["OPTIONS", path] = preflight


def build_router(endpoints: Endpoints, fast: FastRoutes) -> APIRouter:
    """Every ingestion route, documented with request and response examples; each is also
    entered in ``fast``, for the app to call without routing."""
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "model": BatchResult,
            "content": {"application/json": {"example": BATCH_RESULT_EXAMPLE}},
        },
        **ERROR_RESPONSES,
    }

    def add(
        path: str,
        dialect: Dialect,
        limit: int,
        summary: str,
        tag: str,
        body: str,
        aliases: tuple[str, ...] = (),
    ) -> None:
        async def route(request: Request) -> Response:
            return await endpoints.handle(request, dialect, limit, path)

        router.add_api_route(
            path,
            route,
            methods=["POST"],
            summary=summary,
            description=f"Also at {', '.join(f'`{a}`' for a in aliases)}." if aliases else None,
            tags=[tag],
            responses=responses,
            response_model=None,
            openapi_extra=request_body(body),
            name=path,
        )
        every = {path, *aliases}
        every |= {p.rstrip("/") for p in every if p.endswith("/")}
        for alias in sorted(every - {path}):
            router.add_api_route(alias, route, methods=["POST"], include_in_schema=False)
        for each in sorted(every):
            fast["POST", each] = route
            add_preflight(router, endpoints.gate, each, fast)

    batch, single = endpoints.max_batch_bytes, endpoints.max_event_bytes
    add(
        "/v1/batch",
        dialects.segment_batch,
        batch,
        "A batch of calls",
        "segment",
        "segment_batch",
        aliases=("/v1/b", "/beacon/v1/batch"),
    )
    for call in SEGMENT_CALLS:
        add(
            f"/v1/{call.value}",
            functools.partial(_single_call, call=call),
            single,
            f"One {call.value} call",
            "segment",
            f"segment_{call.value}",
            aliases=(SHORT_PATHS[call],),
        )
    add("/batch/", dialects.posthog_batch, batch, "A batch of events", "posthog", "posthog_batch")
    add("/capture/", dialects.posthog_single, batch, "One event", "posthog", "posthog_single")
    add(
        "/e/",
        dialects.posthog_single,
        batch,
        "One event, or a batch (posthog-js)",
        "posthog",
        "posthog_single",
        aliases=("/i/v0/e/",),
    )
    return router
