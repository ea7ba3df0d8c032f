"""The collector's FastAPI app, assembled in one place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from sextant.collector import openapi
from sextant.collector.browser_api import BrowserApi, build_browser_router
from sextant.collector.errors import ApiError
from sextant.collector.features import FeatureHub, FeaturePayloads
from sextant.collector.gate import Call, Gate
from sextant.collector.ingest import Ingestor, RecordSink, utc_now
from sextant.collector.metrics import CollectorMetrics, scrape_registry
from sextant.collector.privacy import Privacy
from sextant.collector.ratelimit import RateLimiter, SharedBuckets
from sextant.collector.routes import (
    Endpoints,
    FastRoutes,
    Handler,
    build_router,
    error_response,
)
from sextant.collector.settings import CollectorSettings
from sextant.collector.shared import buckets_file, metrics_dir
from sextant.collector.validation import TrackingPlans
from sextant.core.aio_kafka import BatchingProducer
from sextant.core.config_plane import ConfigFollower, ConfigState
from sextant.core.demo import guard_demo_keys
from sextant.core.kafka import cluster_reachable, note_use
from sextant.core.logging import get_logger
from sextant.core.progress import ProgressBoard
from sextant.core.secrets import SecretBox
from sextant.core.service import add_operational_routes, settle_heap
from sextant.core.turns import Turns
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)

DESCRIPTION = """Sextant's front door for product events.

Segment's HTTP Tracking API (`/v1/batch`, `/v1/track`, …) and PostHog's capture API
(`/batch/`, `/capture/`, `/e/`), so existing clients work unchanged. An answer of 200 means
every accepted event is in Kafka (`acks=all`); rejected events are listed with their errors
and kept on the dead-letter topic.
"""


class CollectorApp(FastAPI):
    """The FastAPI app, with its ingestion paths called straight from the server.

    FastAPI matches a request against every route in turn and solves each endpoint's
    dependencies; for the collector's small requests (a browser sends one event at a time)
    that cost more than the rest of the request together. A request to a path in
    ``fast_routes`` skips both; the routes stay registered with FastAPI too, for the OpenAPI
    document and every other path.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fast_routes: FastRoutes = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.fast_routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await self._fast(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _fast(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await handler(Request(scope, receive))
        except Exception:  # what ServerErrorMiddleware does for the routed requests
            log.exception("an ingestion request failed", path=scope["path"])
            response = error_response(ApiError(500, "internal", "internal error", "server"))
        await response(scope, receive, send)


def create_app(
    settings: CollectorSettings,
    *,
    state: ConfigState | None = None,
    sink: RecordSink | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """The collector app. ``state`` and ``sink`` replace the config follower and the Kafka
    producer (tests); without them the app follows the config topic and produces to Kafka."""
    board = ProgressBoard(settings.stall_seconds)
    follower = None if state is not None else ConfigFollower(settings)
    if follower is not None:
        follower.attach(board)
    config = state if state is not None else follower.state  # type: ignore[union-attr]
    turns = Turns()
    producer = (
        None
        if sink is not None
        else BatchingProducer(
            settings,
            linger_ms=settings.producer_linger_ms,
            batch_bytes=settings.producer_batch_bytes,
            buffer_bytes=settings.producer_buffer_bytes,
            compression=None
            if settings.producer_compression == "none"
            else settings.producer_compression,
            turns=turns,
        )
    )
    shared = settings.collector_shared_dir if settings.collector_workers > 1 else None
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    for written in (Topic.EVENTS_RAW, Topic.EVENTS_INVALID, Topic.IDENTITIES):
        note_use(topic_name(written, settings.topic_prefix), "writes")
    ingestor = Ingestor(
        sink=sink or producer,  # type: ignore[arg-type]
        plans=TrackingPlans(config),
        limiter=RateLimiter(store=SharedBuckets(buckets_file(shared)) if shared else None),
        metrics=metrics,
        raw_topic=topic_name(Topic.EVENTS_RAW, settings.topic_prefix),
        invalid_topic=topic_name(Topic.EVENTS_INVALID, settings.topic_prefix),
        identities_topic=topic_name(Topic.IDENTITIES, settings.topic_prefix),
        max_event_bytes=settings.max_event_bytes,
        privacy=Privacy(SecretBox.from_setting(settings.secret_key), config),
        produce_timeout_s=settings.produce_timeout_seconds,
        retry_after_s=settings.retry_after_seconds,
        clock=clock,
    )

    payloads = FeaturePayloads(config, SecretBox.from_setting(settings.secret_key))
    hub = FeatureHub(config, payloads, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        if follower is not None:
            follower.start()
            caught_up = await asyncio.to_thread(
                follower.wait_caught_up, settings.config_wait_seconds
            )
            if not caught_up:
                log.warning("config not caught up yet; keys will work once it is")
        try:
            guard_demo_keys(config, demo=settings.demo, part="collector")
        except Exception:
            if follower is not None:
                follower.stop()
            raise
        if producer is not None:
            await producer.start(timeout_s=2.0)
        settle_heap()
        try:
            yield
        finally:
            await hub.stop()
            if producer is not None:
                await producer.stop()
            if follower is not None:
                follower.stop()

    def config_ready() -> bool:
        return follower is None or follower.caught_up

    app = CollectorApp(title="Sextant collector", description=DESCRIPTION, lifespan=lifespan)
    gate = Gate(
        state=config,
        metrics=metrics,
        config_ready=config_ready,
        retry_after_s=settings.retry_after_seconds,
    )
    endpoints = Endpoints(
        gate=gate,
        ingestor=ingestor,
        metrics=metrics,
        max_batch_bytes=settings.max_batch_bytes,
        max_event_bytes=settings.max_event_bytes,
        trust_forwarded_for=settings.trust_forwarded_for,
        turns=turns,
    )
    app.include_router(build_router(endpoints, app.fast_routes))
    browser = BrowserApi(
        gate=gate,
        state=config,
        max_body_bytes=settings.max_batch_bytes,
        trust_forwarded_for=settings.trust_forwarded_for,
        public_url=settings.collector_public_url,
        clock=clock,
        payloads=payloads,
        hub=hub,
        heartbeat_s=settings.feature_stream_heartbeat_seconds,
    )
    app.include_router(build_browser_router(browser))
    _answer_other_errors_with_cors(app, gate)

    def kafka_ready() -> bool:
        if producer is not None:
            metrics.buffered_bytes.set(producer.buffered_bytes)
        return cluster_reachable(settings.kafka_bootstrap, timeout_s=2.0)

    add_operational_routes(
        app,
        {"config": config_ready, "kafka": kafka_ready},
        scrape_registry(registry, metrics_dir(shared) if shared else None),
        progress=board,
        stall_restart_s=settings.stall_restart_seconds,
    )
    _document(app)
    return app


def _answer_other_errors_with_cors(app: FastAPI, gate: Gate) -> None:
    """404 and 405 (a path or method the collector does not have) readable by the pages of
    origins some project allows, so a client logs the real answer, not a network error."""

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        response = error_response(
            ApiError(error.status_code, "not_found", str(error.detail), "path")
            if error.status_code == 404
            else ApiError(error.status_code, "bad_request", str(error.detail), "method")
        )
        if error.headers:
            response.headers.update(error.headers)
        return gate.answer(Call(origin=request.headers.get("origin")), response)

    app.add_exception_handler(StarletteHTTPException, http_error)


def _document(app: FastAPI) -> None:
    """Add the event schema the request bodies refer to into the OpenAPI components."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                openapi.components()
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
