"""The sink's HTTP face: ``/healthz``, ``/readyz`` (Kafka, warehouse, consumer), ``/metrics``
and ``/status``; the sink itself runs as a background service for the app's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from sextant.core.demo import check_demo_keys_once
from sextant.core.progress import ProgressBoard
from sextant.core.service import add_operational_routes, settle_heap
from sextant.sink.retention import RetentionService
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings


def create_app(
    settings: SinkSettings,
    service: SinkService | None = None,
    retention: RetentionService | None = None,
) -> FastAPI:
    """The app; ``service`` defaults to a :class:`SinkService` built from ``settings``."""
    sink = service or SinkService(settings)
    expiry = retention or RetentionService(settings)
    board = ProgressBoard(settings.stall_seconds)
    sink.attach(board)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # On its own (a ClickHouse server), the sink checks the demo keys as every part does;
        # beside the gateway (the embedded engine), the gateway has checked them.
        await asyncio.to_thread(
            check_demo_keys_once,
            settings,
            demo=settings.demo,
            part="sink",
            wait_s=settings.config_wait_seconds,
        )
        sink.start()
        expiry.start()
        settle_heap()
        try:
            yield
        finally:
            await asyncio.to_thread(expiry.stop)
            await asyncio.to_thread(sink.stop)

    app = FastAPI(title="Sextant sink", lifespan=lifespan)
    app.state.sink = sink
    add_operational_routes(
        app, sink.checks(), progress=board, stall_restart_s=settings.stall_restart_seconds
    )

    @app.get("/status", tags=["operations"], summary="What the sink is doing")
    async def status() -> dict[str, Any]:
        return sink.status() | {"retention_removed": expiry.report()}

    return app
