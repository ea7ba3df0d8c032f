"""What every part's HTTP face has: ``/healthz``, ``/readyz`` (real dependencies), ``/metrics``."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], bool | Awaitable[bool]]


def settle_heap() -> None:
    """Call once a process has started: keep what start-up made out of garbage collection.

    A full collection walks every object the imports created (FastAPI, pydantic, Kafka
    clients, the engine's bindings): tens to hundreds of milliseconds, paid again and again
    by request handlers and consumer loops whose own objects are short-lived. Freezing the
    heap as it is after start-up leaves the collector only what the work allocates, and a
    higher first threshold makes it run less often over batches of thousands of records.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


@runtime_checkable
class BackgroundService(Protocol):
    """Work a process runs beside its HTTP face (a consumer loop, a follower thread).

    With the embedded warehouse the sink runs inside the gateway process as one of these:
    the ``sextant gateway`` command composes them; no part imports another.
    """

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> bool: ...


async def _passes(check: ReadinessCheck) -> bool:
    try:
        if inspect.iscoroutinefunction(check):
            result = await check()
        else:
            result = await asyncio.to_thread(check)
            if inspect.isawaitable(result):
                result = await result
        return bool(result)
    except Exception:  # noqa: BLE001 - a failing check means "not ready", never a 500
        return False


def add_operational_routes(
    app: FastAPI,
    readiness: Mapping[str, ReadinessCheck],
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Mount the health, readiness and Prometheus routes every part serves."""

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Every dependency answers")
    async def readyz() -> JSONResponse:
        results = {name: await _passes(check) for name, check in readiness.items()}
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM, then shut down gracefully."""
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)
