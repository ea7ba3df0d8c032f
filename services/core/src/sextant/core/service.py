"""What every part's HTTP face has: ``/healthz``, ``/readyz`` (real dependencies), ``/metrics``."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sextant.core.kafka import topic_use
from sextant.core.progress import ProgressBoard, StallGuard

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


class _TopicUse(Collector):
    def collect(self) -> Iterator[Metric]:
        found = GaugeMetricFamily(
            "sextant_topic_use",
            "The topics this process reads and writes (1 per topic and role)",
            labels=["topic", "role"],
        )
        for topic, role in sorted(topic_use()):
            found.add_metric([topic, role], 1.0)
        yield found


_TOPIC_USE = CollectorRegistry(auto_describe=False)
_TOPIC_USE.register(_TopicUse())


def add_operational_routes(
    app: FastAPI,
    readiness: Mapping[str, ReadinessCheck],
    registry: CollectorRegistry = REGISTRY,
    progress: ProgressBoard | None = None,
    stall_restart_s: float = 0.0,
) -> None:
    """Mount the health, readiness and Prometheus routes every part serves.

    With ``progress``, ``/readyz`` is not ready while a consumer is stalled (records wait and
    it has not moved for longer than the board's bound): its ``progress`` check is false and
    ``stalled`` names each stalled consumer and partition; ``/metrics`` carries every
    consumer's progress. With ``stall_restart_s`` too, a stall that lasts that long stops the
    part (:func:`serve` then exits with :attr:`StallGuard.EXIT_CODE`, for its supervisor to
    start it again).
    """
    checks = dict(readiness)
    if progress is not None:
        app.state.stall_guard = StallGuard(progress, stall_restart_s)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Every dependency answers")
    async def readyz() -> JSONResponse:
        results = {name: await _passes(check) for name, check in checks.items()}
        stalled = progress.stalls() if progress is not None else []
        if stalled:
            results["progress"] = False
        ready = all(results.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": results}
        if stalled:
            body["stalled"] = [stall.as_dict() for stall in stalled]
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        text = generate_latest(registry) + generate_latest(_TOPIC_USE)
        if progress is not None:
            text += generate_latest(progress.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM, then shut down gracefully; exit with
    :attr:`StallGuard.EXIT_CODE` when the app's stall guard stopped it."""
    guard: StallGuard | None = getattr(app.state, "stall_guard", None)
    if guard is not None:
        guard.start()
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)
    if guard is not None:
        guard.stop()
        if guard.restart_requested:
            raise SystemExit(StallGuard.EXIT_CODE)
