"""The sink's HTTP face: ``/healthz``, ``/readyz`` (Kafka, warehouse, consumer), ``/metrics``
and ``/status``; the sink itself runs as a background service for the app's lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from sextant.core.service import add_operational_routes, settle_heap
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings


def create_app(settings: SinkSettings, service: SinkService | None = None) -> FastAPI:
    """The app; ``service`` defaults to a :class:`SinkService` built from ``settings``."""
    sink = service or SinkService(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sink.start()
        settle_heap()
        try:
            yield
        finally:
            await asyncio.to_thread(sink.stop)

    app = FastAPI(title="Sextant sink", lifespan=lifespan)
    app.state.sink = sink
    add_operational_routes(app, sink.checks())

    @app.get("/status", tags=["operations"], summary="What the sink is doing")
    async def status() -> dict[str, Any]:
        return sink.status()

    return app
