"""The collector's CPU per event, in-process: no Kafka, no HTTP server, no client.

The app is built as the unit tests build it (an in-memory record sink, the config given) and
called straight through ASGI, as a server calls it, so the figures are the collector's own
CPU (``time.process_time``) without the HTTP parsing of a server nor the cost of a client.
Shapes, measured in alternate rounds in the same process because a shared machine is noisy:

* ``batch``: ``POST /v1/batch`` with 100 track calls and the batch's ``sentAt``, as
  ``bench.collector_throughput`` sends them (µs per event);
* ``track``: ``POST /v1/track`` with one call, as a browser sends it (µs per request);
* ``browser``: the same with an ``Origin`` the project allows (CORS on the answer);
* ``bare``: a bare FastAPI endpoint that parses the same body and answers 200
  (``bench/bare_endpoint.py``), the baseline of ``bench.collector_requests``.

The median round of each shape is reported, with ``track``'s requests/s relative to
``bare`` (the inverse ratio of their CPU per request). To compare two versions of the code,
run this in each checkout back to back, several times.

Run: ``python -m bench.collector_cpu [--rounds 7] [--requests 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bench.bare_endpoint import app as bare_app
from bench.common import Figure, report
from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.core.aio_kafka import OutgoingRecord
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key

NAME = "collector_cpu"
WRITE_KEY = "wk_bench_secret"
ORIGIN = "https://app.example.com"
BATCH = 100
TRACK = {
    "userId": "user-1",
    "event": "Product Viewed",
    "timestamp": "2026-12-07T00:00:00Z",
    "properties": {"sku": "a-1", "price": 12.5, "currency": "EUR"},
    "context": {"library": {"name": "analytics.js", "version": "4.1.0"}},
}

App = Callable[..., Any]


class DiscardingSink:
    """Takes records and forgets them (Kafka's acknowledgement, at no cost), counting the
    dead letters: a benchmark of rejected events would measure the wrong path."""

    def __init__(self) -> None:
        self.rejected = 0

    async def send(self, records: Sequence[OutgoingRecord], timeout_s: float) -> None:
        self.rejected += sum(record.topic.endswith(".invalid") for record in records)


def collector_app(sink: DiscardingSink) -> App:
    state = ConfigState()
    project = Project(
        id="bench",
        project_id="bench",
        name="Bench",
        rate_limit_per_second=1_000_000_000,
        allowed_origins=[ORIGIN],
    )
    key = ApiKey(id="wk1", project_id="bench", key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY))
    for document in (project, key):
        state.apply(document.config_key(), document)
    return create_app(CollectorSettings(topic_prefix="bench"), state=state, sink=sink)


def scope_of(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.77", 5555),
        "server": ("collector", 8080),
    }


async def call(app: App, scope: dict[str, Any], body: bytes) -> int:
    """One request through ``app``; its status."""
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


class Shape:
    def __init__(
        self,
        app: App,
        path: str,
        body: bytes,
        events: int,
        sink: DiscardingSink | None = None,
        **headers: str,
    ) -> None:
        auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        headers = {
            "Authorization": auth,
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            **headers,
        }
        self.app, self.body, self.events, self.sink = app, body, events, sink
        self.scope = scope_of(path, headers)

    async def run(self, requests: int) -> float:
        """CPU µs per event over ``requests`` requests."""
        started = time.process_time()
        for _ in range(requests):
            status = await call(self.app, self.scope, self.body)
            if status != 200:
                raise SystemExit(f"{self.scope['path']} answered {status}")
            # A server reads each request in an event-loop iteration of its own.
            await asyncio.sleep(0)
        if self.sink is not None and self.sink.rejected:
            raise SystemExit(f"{self.scope['path']}: events were rejected")
        return (time.process_time() - started) / (requests * self.events) * 1e6


def shapes() -> dict[str, tuple[Shape, int]]:
    """Each shape and its share of the requests of a round (a batch is 100 events)."""
    sink = DiscardingSink()
    app = collector_app(sink)
    calls = [
        dict(TRACK, type="track", userId=f"user-{i % 10}", messageId=f"m{i}") for i in range(BATCH)
    ]
    batch = orjson.dumps({"batch": calls, "sentAt": TRACK["timestamp"]})
    single = orjson.dumps(TRACK)
    return {
        "batch": (Shape(app, "/v1/batch", batch, BATCH, sink), 20),
        "track": (Shape(app, "/v1/track", single, 1, sink), 1),
        "browser": (Shape(app, "/v1/track", single, 1, sink, Origin=ORIGIN), 1),
        "bare": (Shape(bare_app, "/v1/track", single, 1), 1),
    }


async def measure(rounds: int, requests: int) -> dict[str, list[float]]:
    every = shapes()
    for shape, divisor in every.values():  # warm up: caches, first-call imports
        await shape.run(max(50, requests // divisor // 10))
    figures: dict[str, list[float]] = {name: [] for name in every}
    for _ in range(rounds):
        for name, (shape, divisor) in every.items():
            gc.collect()
            figures[name].append(await shape.run(requests // divisor))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000, help="single-event requests")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.rounds, args.requests))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, values in figures.items():
        spread = " ".join(f"{v:.1f}" for v in values)
        unit = "event" if name == "batch" else "request"
        print(f"{name:8} {medians[name]:7.1f} µs/{unit}  (rounds: {spread})")
    print(f"track requests/s relative to bare: {medians['bare'] / medians['track']:.2f}")
    print(f"browser requests/s relative to bare: {medians['bare'] / medians['browser']:.2f}")
    report(NAME, _figures(medians, f"python -m bench.{NAME} --rounds {args.rounds}"))


def _figures(medians: dict[str, float], command: str) -> list[Figure]:
    bare = "a bare FastAPI endpoint parsing the same body, µs/request"
    return [
        Figure(
            NAME,
            "batch of 100, CPU per event (in process, no Kafka)",
            round(medians["batch"], 2),
            "µs",
            command=command,
        ),
        Figure(
            NAME,
            "one event a request (/v1/track), CPU per request",
            round(medians["track"], 1),
            "µs",
            bare,
            round(medians["bare"], 1),
            command=command,
        ),
        Figure(
            NAME,
            "the same from an allowed Origin (CORS), CPU per request",
            round(medians["browser"], 1),
            "µs",
            bare,
            round(medians["bare"], 1),
            command=command,
        ),
    ]


if __name__ == "__main__":
    main()
