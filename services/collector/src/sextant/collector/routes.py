"""The ingestion endpoints: Segment's Tracking API and PostHog's capture API."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from sextant.collector import dialects
from sextant.collector.auth import authenticate, basic_username
from sextant.collector.body import read_limited
from sextant.collector.dialects import Submission
from sextant.collector.errors import ApiError, ErrorBody
from sextant.collector.ingest import Ingestor
from sextant.collector.metrics import CollectorMetrics
from sextant.collector.models import BATCH_RESULT_EXAMPLE, BatchResult
from sextant.collector.openapi import request_body
from sextant.core.config_plane import ConfigState
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
        state: ConfigState,
        ingestor: Ingestor,
        metrics: CollectorMetrics,
        max_batch_bytes: int,
        max_event_bytes: int,
        trust_forwarded_for: bool,
        config_ready: Callable[[], bool] = lambda: True,
        retry_after_s: int = 5,
        turns: Turns | None = None,
    ) -> None:
        self.state = state
        self.ingestor = ingestor
        self.metrics = metrics
        self.max_batch_bytes = max_batch_bytes
        self.max_event_bytes = max_event_bytes
        self.trust_forwarded_for = trust_forwarded_for
        self.config_ready = config_ready
        self.retry_after_s = retry_after_s
        self.turns = turns or Turns()

    async def handle(self, request: Request, dialect: Dialect, limit: int, name: str) -> Response:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            result = await self._handle(request, dialect, limit)
            response = Response(orjson.dumps(result.model_dump()), media_type="application/json")
        except ApiError as error:
            response = Response(
                orjson.dumps(error.body.model_dump()),
                status_code=error.status,
                headers=error.headers,
                media_type="application/json",
            )
        finally:
            self.metrics.in_flight.dec()
        self.metrics.requests.labels(name, str(response.status_code)).inc()
        self.metrics.request_seconds.labels(name).observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: Request, dialect: Dialect, limit: int) -> BatchResult:
        if not self.config_ready():
            # Until the keys are read, every key would look unknown: a 401 would make clients
            # drop their events, a 503 makes them retry.
            raise ApiError(
                503,
                "starting",
                "the collector has not read its configuration (keys, projects) yet",
                "config",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        header_key = basic_username(request.headers.get("authorization"))
        writer = (
            authenticate(self.state, header_key, "header Authorization") if header_key else None
        )
        try:
            body = await read_limited(
                request.stream(),
                limit=limit,
                content_length=request.headers.get("content-length"),
                content_encoding=request.headers.get("content-encoding"),
            )
        except ClientDisconnect as error:
            raise ApiError(
                400, "bad_request", "the client left before the body ended", "body"
            ) from error
        await self.turns.take()
        submission = dialect(dialects.parse_json(body))
        if writer is None:
            writer = authenticate(self.state, submission.write_key, "body writeKey / api_key")
        return await self.ingestor.ingest(
            submission, writer, client_ip=self._client_ip(request), body_bytes=len(body)
        )

    def _client_ip(self, request: Request) -> str | None:
        if self.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        return request.client.host if request.client else None


SEGMENT_CALLS = (
    EventType.TRACK,
    EventType.IDENTIFY,
    EventType.PAGE,
    EventType.SCREEN,
    EventType.GROUP,
    EventType.ALIAS,
)


def _single_call(body: Any, call: EventType) -> Submission:
    return dialects.segment_single(body, call)


def build_router(endpoints: Endpoints) -> APIRouter:
    """Every ingestion route, documented with request and response examples."""
    router = APIRouter()
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "model": BatchResult,
            "content": {"application/json": {"example": BATCH_RESULT_EXAMPLE}},
        },
        **ERROR_RESPONSES,
    }

    def add(path: str, dialect: Dialect, limit: int, summary: str, tag: str, body: str) -> None:
        async def route(request: Request) -> Response:
            return await endpoints.handle(request, dialect, limit, path)

        router.add_api_route(
            path,
            route,
            methods=["POST"],
            summary=summary,
            tags=[tag],
            responses=responses,
            response_model=None,
            openapi_extra=request_body(body),
            name=path,
        )
        if path.endswith("/"):
            router.add_api_route(path.rstrip("/"), route, methods=["POST"], include_in_schema=False)

    batch, single = endpoints.max_batch_bytes, endpoints.max_event_bytes
    add("/v1/batch", dialects.segment_batch, batch, "A batch of calls", "segment", "segment_batch")
    for call in SEGMENT_CALLS:
        add(
            f"/v1/{call.value}",
            functools.partial(_single_call, call=call),
            single,
            f"One {call.value} call",
            "segment",
            f"segment_{call.value}",
        )
    add("/batch/", dialects.posthog_batch, batch, "A batch of events", "posthog", "posthog_batch")
    for path in ("/capture/", "/e/"):
        add(path, dialects.posthog_single, batch, "One event", "posthog", "posthog_single")
    return router
