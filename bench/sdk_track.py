"""What the Python SDK costs the application, and how fast it delivers.

Two figures, each beside a baseline measured in the same run:

- the cost of ``Client.track()`` on the calling thread (CPU time of that thread per call, the
  background thread delivering meanwhile to an in-memory transport), beside a plain
  ``queue.Queue.put`` of the same event dict; the target is under 20 µs per call;
- events per second delivered to the real collector (a separate process, acknowledging after
  Kafka has the events), from the first ``track()`` to ``flush()`` returning, beside
  Segment's own ``segment-analytics-python`` client sending the same events to the same
  collector. Both deliveries are checked against the topic's end offsets.

Run: ``python -m bench.sdk_track [--bootstrap HOST:PORT] [--events N]``. Without
``--bootstrap`` it starts a private broker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import segment.analytics  # type: ignore[import-untyped]

from bench.common import Figure, bootstrap_server, publish_bench_project, write_results
from sextant.core.kafka import end_offsets, ensure_topics
from sextant.core.settings import KafkaSection
from sextant.schemas.topics import Topic, topic_name
from sextant.sdk import Client

WRITE_KEY = "wk_bench_sdk"
PROPERTIES = {"order_id": "o-1", "revenue": 12.5, "currency": "EUR", "items": 3}
ROUNDS = 7
COMMAND = "python -m bench.sdk_track"


def per_call_us(call: Callable[[int], object], calls: int) -> tuple[float, float]:
    """Median over rounds of (thread CPU µs, wall µs) per call."""
    cpu, wall = [], []
    for _ in range(ROUNDS):
        cpu_start, wall_start = time.thread_time(), time.perf_counter()
        for i in range(calls):
            call(i)
        cpu.append((time.thread_time() - cpu_start) / calls * 1e6)
        wall.append((time.perf_counter() - wall_start) / calls * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def track_cost(calls: int) -> dict[str, tuple[float, float]]:
    """track() against an instant in-memory collector, and queue.put of the same dict."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"accepted": 0}))
    client = Client(WRITE_KEY, host="http://bench.test", transport=transport, max_queue_size=10**6)
    users = [f"user-{i % 1000}" for i in range(calls)]
    try:
        client.track("warm-up", "Order Completed", PROPERTIES)
        tracked = per_call_us(
            lambda i: client.track(users[i], "Order Completed", PROPERTIES), calls
        )
        assert client.flush(60)
    finally:
        client.shutdown()
    plain: queue.Queue[dict[str, Any]] = queue.Queue()
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "properties": PROPERTIES,
        "timestamp": datetime.now(UTC),
        "messageId": str(uuid.uuid4()),
    }
    put = per_call_us(lambda i: plain.put(event), calls)
    return {"track": tracked, "put": put}


@contextlib.contextmanager
def collector_process(settings: KafkaSection, port: int) -> Iterator[str]:
    """``sextant collector`` as its own process (its own GIL), until the block ends."""
    env = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": settings.topic_prefix,
        "SEXTANT_COLLECTOR_PORT": str(port),
        "SEXTANT_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "sextant.collector"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the collector did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def delivered_per_second(
    send: Callable[[int], object], flush: Callable[[], object], n: int
) -> float:
    started = time.perf_counter()
    for i in range(n):
        send(i)
    flush()
    return n / (time.perf_counter() - started)


def sextant_rate(url: str, events: int) -> float:
    client = Client(WRITE_KEY, host=url, max_queue_size=events + 1, timeout=30)
    users = [f"user-{i % 1000}" for i in range(events)]
    try:
        rate = delivered_per_second(
            lambda i: client.track(users[i], "Order Completed", PROPERTIES),
            lambda: client.flush(600),
            events,
        )
        stats = client.stats()
        assert stats.delivered == events, stats
        return rate
    finally:
        client.shutdown()


def segment_rate(url: str, events: int) -> float:
    errors: list[Exception] = []
    client = segment.analytics.Client(
        WRITE_KEY,
        host=url,
        gzip=True,
        max_queue_size=events + 1,
        upload_size=100,
        on_error=lambda error, _batch: errors.append(error),
    )
    users = [f"user-{i % 1000}" for i in range(events)]
    try:
        return delivered_per_second(
            lambda i: client.track(users[i], "Order Completed", PROPERTIES),
            client.flush,
            events,
        )
    finally:
        client.shutdown()
        assert not errors, errors[:3]


def raw_total(settings: KafkaSection) -> int:
    return sum(end_offsets(settings, topic_name(Topic.EVENTS_RAW, settings.topic_prefix)).values())


def delivery_rates(bootstrap: str, events: int) -> dict[str, float]:
    from tests.infra import free_port

    settings = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    publish_bench_project(settings, WRITE_KEY)
    samples: dict[str, list[float]] = {"sextant": [], "segment": []}
    with collector_process(settings, free_port()) as url:
        sextant_rate(url, 1000)  # warm the collector's producer and connections
        for _ in range(ROUNDS // 2):  # alternate, so drifting load on the machine hits both
            for name, measure in (("sextant", sextant_rate), ("segment", segment_rate)):
                before = raw_total(settings)
                samples[name].append(measure(url, events))
                arrived = raw_total(settings) - before
                assert arrived == events, f"{name}: {arrived} of {events} events in events.raw"
    print("delivered events/s per round:", {k: [round(r) for r in v] for k, v in samples.items()})
    return {name: statistics.median(rates) for name, rates in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()

    cost = track_cost(args.calls)
    cost_load = os.getloadavg()[0]  # the wall-time figure means little on a busy machine
    with bootstrap_server(args.bootstrap) as bootstrap:
        rates = delivery_rates(bootstrap, args.events)

    figures = [
        Figure(
            benchmark="sdk_track",
            figure="track(): calling-thread CPU per call",
            value=round(cost["track"][0], 2),
            unit="µs",
            baseline="queue.Queue.put of the same event dict",
            baseline_value=round(cost["put"][0], 2),
            target="< 20 µs",
            command=COMMAND,
        ),
        Figure(
            benchmark="sdk_track",
            figure=(
                "track(): wall time per call, sender thread running "
                f"(load average {cost_load:.1f} on {os.cpu_count()} cores)"
            ),
            value=round(cost["track"][1], 2),
            unit="µs",
            baseline="queue.Queue.put of the same event dict",
            baseline_value=round(cost["put"][1], 2),
            command=COMMAND,
        ),
        Figure(
            benchmark="sdk_track",
            figure=f"events/s delivered to the real collector ({args.events:,} events, acks=all)",
            value=round(rates["sextant"]),
            unit="events/s",
            baseline="segment-analytics-python, same events and collector",
            baseline_value=round(rates["segment"]),
            command=COMMAND,
        ),
    ]
    for figure in figures:
        ratio = (
            f" (x{figure.ratio:.2f} of baseline {figure.baseline_value})" if figure.ratio else ""
        )
        print(f"{figure.figure}: {figure.value} {figure.unit}{ratio}")
    print(write_results("sdk_track", figures))


if __name__ == "__main__":
    main()
