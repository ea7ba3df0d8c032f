"""The notifier's FastAPI app: operations routes and the delivery log, assembled in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import anyio.to_thread
import httpx
from fastapi import FastAPI, Query
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from sextant.core.config_plane import ConfigFollower, ConfigState
from sextant.core.demo import guard_demo_keys
from sextant.core.kafka import cluster_reachable
from sextant.core.logging import get_logger
from sextant.core.progress import ProgressBoard
from sextant.core.secrets import MissingSecretKey, SecretBox
from sextant.core.service import add_operational_routes
from sextant.notifier.delivery import Delivery, DeliveryLog, NotifierMetrics
from sextant.notifier.service import NotifierService
from sextant.notifier.settings import NotifierSettings

log = get_logger(__name__)

DESCRIPTION = """Delivers alert transitions to webhooks: signed (HMAC-SHA256), retried with
backoff, deduplicated by transition id. `GET /deliveries` shows what became of each."""


class DeliveryPage(BaseModel):
    """The latest deliveries, newest first."""

    items: list[Delivery]


def create_app(
    settings: NotifierSettings,
    *,
    state: ConfigState | None = None,
    transport: httpx.BaseTransport | None = None,
) -> FastAPI:
    """The notifier app. ``state`` replaces the config follower (tests); ``transport`` the
    HTTP transport of webhook calls.

    Raises :class:`MissingSecretKey` without a master key: the notifier opens the targets'
    sealed signing secrets, and finding out only when an alert fires would be too late.
    """
    secrets = SecretBox.from_setting(settings.secret_key)
    if secrets is None:
        raise MissingSecretKey("the notifier (it opens the webhook targets' signing secrets)")
    board = ProgressBoard(settings.stall_seconds)
    follower = None if state is not None else ConfigFollower(settings)
    if follower is not None:
        follower.attach(board)
    config = state if state is not None else follower.state  # type: ignore[union-attr]
    registry = CollectorRegistry()
    metrics = NotifierMetrics(registry)
    deliveries = DeliveryLog(settings.delivery_log_size)
    service = NotifierService(
        settings,
        config,
        deliveries,
        metrics,
        config_ready=(lambda: True) if follower is None else (lambda: follower.caught_up),
        transport=transport,
        secrets=secrets,
    )
    service.attach(board)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
            caught_up = await anyio.to_thread.run_sync(
                follower.wait_caught_up, settings.config_wait_seconds
            )
            if not caught_up:
                log.warning("config topic not read to its end yet; starting anyway")
        try:
            guard_demo_keys(config, demo=settings.demo, part="notifier")
        except Exception:
            if follower is not None:
                follower.stop()
            raise
        service.start()
        try:
            yield
        finally:
            service.stop()
            if follower is not None:
                follower.stop()

    app = FastAPI(title="Sextant notifier", description=DESCRIPTION, lifespan=lifespan)
    app.state.notifier = service
    add_operational_routes(
        app,
        {
            "kafka": lambda: cluster_reachable(settings.kafka_bootstrap),
            "config": lambda: follower is None or follower.caught_up,
            "consumer": service.ready,
        },
        registry,
        progress=board,
        stall_restart_s=settings.stall_restart_seconds,
    )

    @app.get("/deliveries", tags=["deliveries"], summary="What became of recent deliveries")
    def list_deliveries(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        transition_id: str | None = None,
        rule_id: str | None = None,
        outcome: Literal["delivered", "failed", "refused", "muted", "duplicate"] | None = None,
    ) -> DeliveryPage:
        return DeliveryPage(items=deliveries.list(limit, transition_id, rule_id, outcome))

    return app
