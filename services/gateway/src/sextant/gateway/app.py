"""The gateway assembled: read API, admin API, live streams, dashboard and operations.

``create_app(settings, background)`` builds everything from settings; the lifespan starts the
config follower, the live feed and any ``background`` services the command composed in (with
the embedded warehouse, the sink runs here), and stops them in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sextant.core.background import BackgroundLoop
from sextant.core.config_plane import ConfigFollower
from sextant.core.demo import guard_demo_keys
from sextant.core.logging import get_logger
from sextant.core.progress import ProgressBoard
from sextant.core.service import (
    BackgroundService,
    ReadinessCheck,
    add_operational_routes,
    settle_heap,
)
from sextant.gateway import (
    accounts_api,
    admin_api,
    admin_features,
    audit_api,
    auth_api,
    dashboard,
    person_deletion,
    persons_api,
    read_api,
    routes_alerts,
    workspace_api,
)
from sextant.gateway.context import Gateway
from sextant.gateway.experiment_alerts import ExperimentAlertService, warehouse_results
from sextant.gateway.live import MetricPointFeed
from sextant.gateway.problems import install_problem_handlers, problem_response
from sextant.gateway.rollouts import RampService, stop_on_alerts
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.config import ConfigDocument

log = get_logger(__name__)

DESCRIPTION = """\
Sextant's gateway. **Read API** (a project's read key, `Authorization: Bearer <key>`):
metric series and live streams, trends, funnels, retention, experiment results and alert
history of the key's project, or of a person signed in to the workspace (the session
cookie of `POST /v1/auth/login`; `X-Sextant-Project` picks one of their projects).
**Admin API** (the admin key, a role, or an organisation admin): projects, keys, accounts,
metric definitions, experiments, alert rules and tracking plans, written to the config topic.

Every error is `application/problem+json`: `type`, `title`, `status`, `detail` and the
`parameter` at fault.
"""


class _BodyTooLargeError(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "body-too-large", f"request bodies are limited to {self.max_bytes} bytes", "body"
        )
        await response(scope, receive, send)


def _readiness(
    gateway: Gateway, feed: MetricPointFeed, background: Sequence[BackgroundService]
) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {
        "config": lambda: gateway.follower.healthy and gateway.follower.caught_up,
        "warehouse": gateway.warehouse_ready,
        "live_feed": feed.ready,
    }
    for service in background:
        checks[service.name] = service.ready
    return checks


def create_app(settings: GatewaySettings, background: Sequence[BackgroundService] = ()) -> FastAPI:
    """The gateway app; ``background`` services start and stop with it."""
    board = ProgressBoard(settings.stall_seconds)
    follower = ConfigFollower(settings)
    gateway = Gateway(settings, follower)
    feed = MetricPointFeed(settings, settings.live_buffer_records, settings.live_buffer_bytes)

    def commit(documents: Sequence[ConfigDocument]) -> None:
        admin_api.commit_documents(gateway, documents)

    experiment_alerts = ExperimentAlertService(
        settings,
        gateway.state,
        warehouse_results(gateway),
        config_ready=lambda: follower.caught_up,
        interval_s=settings.experiment_alert_interval_seconds,
        act=lambda transitions: stop_on_alerts(
            gateway.state, transitions, commit, datetime.now(UTC)
        ),
    )
    ramps = RampService(
        gateway.state,
        commit,
        experiment_alerts.firing_experiments,
        config_ready=lambda: follower.caught_up,
        interval_s=settings.ramp_interval_seconds,
    )
    background = (*background, experiment_alerts, ramps)
    follower.attach(board)
    for loop in (feed, *background):
        if isinstance(loop, BackgroundLoop):
            loop.attach(board)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower.start()
        caught_up = await anyio.to_thread.run_sync(
            follower.wait_caught_up, settings.config_wait_seconds
        )
        if not caught_up:
            log.warning("config topic not read to its end yet; keys may be unknown for now")
        try:
            guard_demo_keys(gateway.state, demo=settings.demo, part="gateway")
        except Exception:
            follower.stop()
            raise
        gateway.audit.start()
        await anyio.to_thread.run_sync(
            gateway.audit.follower.wait_caught_up, settings.audit_wait_seconds
        )
        feed.start()
        for service in background:
            await anyio.to_thread.run_sync(service.start)
        settle_heap()
        try:
            yield
        finally:
            for service in reversed(background):
                await anyio.to_thread.run_sync(service.stop)
            feed.stop()
            follower.stop()
            gateway.audit.stop()
            gateway.close()

    app = FastAPI(
        title="Sextant gateway",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "metrics", "description": "Metric definitions, series and live windows"},
            {"name": "insights", "description": "Trends, funnels and retention over events"},
            {"name": "experiments", "description": "Experiment definitions and results"},
            {"name": "alerts", "description": "Alert rules' states and history"},
            {"name": "outcomes", "description": "Outcomes: targets, progress and forecasts"},
            {"name": "feedback", "description": "Surveys: NPS, CSAT and comments"},
            {"name": "admin", "description": "The config plane (admin key)"},
            {"name": "auth", "description": "People signing in: password, single sign-on"},
            {"name": "accounts", "description": "Accounts of people and their roles"},
            {"name": "features", "description": "Feature flags: versions, history, revert"},
            {"name": "operations", "description": "Health, readiness, metrics"},
        ],
    )
    app.state.gateway = gateway
    app.state.feed = feed
    install_problem_handlers(app)
    app.include_router(read_api.router)
    app.include_router(admin_api.router)
    app.include_router(auth_api.router)
    app.include_router(accounts_api.router)
    app.include_router(audit_api.router)
    app.include_router(person_deletion.router)
    app.include_router(persons_api.router)
    app.include_router(admin_features.router)
    app.include_router(routes_alerts.router)
    app.include_router(workspace_api.router)
    app.include_router(dashboard.router)
    add_operational_routes(
        app,
        _readiness(gateway, feed, background),
        progress=board,
        stall_restart_s=settings.stall_restart_seconds,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _document_operations(app, read_api.STREAM_DATA_MODELS)
    return app


def _document_operations(app: FastAPI, stream_models: Sequence[type[BaseModel]]) -> None:
    """Every operation in ``/openapi.json`` carries examples: the shared operational routes
    get theirs here, and any 2xx JSON response still without one gets one built from its
    schema (field examples, defaults, enums, else a placeholder of the right type). The
    models of event-stream data, which FastAPI does not collect, join the components."""
    examples: dict[str, Any] = {
        "/healthz": {"status": "ok"},
        "/readyz": {
            "status": "ready",
            "checks": {"config": True, "warehouse": True, "live_feed": True},
        },
    }
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        for path, example in examples.items():
            get = schema["paths"].get(path, {}).get("get")
            if get is not None:
                content = get["responses"]["200"].setdefault("content", {})
                content.setdefault("application/json", {})["example"] = example
        metrics = schema["paths"].get("/metrics", {}).get("get")
        if metrics is not None:
            metrics["responses"]["200"]["content"] = {
                "text/plain": {"example": "# HELP sextant_gateway_query_seconds ...\n"}
            }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in stream_models:
            components[model.__name__] = model.model_json_schema(mode="serialization")
        for operation in (op for ops in schema["paths"].values() for op in ops.values()):
            for status, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json")
                if status.startswith("2") and content and not _has_example(content, components):
                    content["example"] = example_of(content.get("schema", {}), components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = components.get(ref.rsplit("/", 1)[-1], {})
        return resolved
    return schema


def _has_example(content: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = _resolve(content.get("schema", {}), components)
    return any(k in content or k in schema for k in ("example", "examples"))


_PLACEHOLDERS: dict[str, Any] = {
    "string": "string",
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "null": None,
}


def example_of(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for a JSON schema (used where a route gives no example)."""
    schema = _resolve(schema, components)
    if depth > 8:
        return None
    for key in ("example", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if options:
            return example_of(options[0], components, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: example_of(prop, components, depth + 1)
            for name, prop in schema.get("properties", {}).items()
        }
    if kind == "array":
        return [example_of(schema.get("items", {}), components, depth + 1)]
    if schema.get("format") == "date-time":
        return "2025-03-01T10:00:00Z"
    return _PLACEHOLDERS.get(str(kind))
