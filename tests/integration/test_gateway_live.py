"""The live stream: windows within a second of emission, and reconnection that misses nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sextant.core.kafka import make_producer
from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.records import MetricPoint
from sextant.schemas.topics import Topic, topic_name
from tests.integration.test_gateway_harness import Harness, make_harness

W0 = datetime(2025, 9, 1, 12, tzinfo=UTC)


@dataclass
class Event:
    event: str
    id: str | None
    data: dict[str, Any]
    received: float


@contextmanager
def stream(h: Harness, metric: str, last_id: str | None = None) -> Iterator[Iterator[Event]]:
    headers = h.read | ({"Last-Event-ID": last_id} if last_id else {})
    with h.client.stream("GET", f"/v1/metrics/{metric}/live", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield _events(response)


def _events(response: httpx.Response) -> Iterator[Event]:
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        yield Event(
            fields.get("event", ""),
            fields.get("id"),
            orjson.loads(fields.get("data", "{}")),
            time.monotonic(),
        )
        fields = {}


def take_points(events: Iterator[Event], count: int, timeout_s: float = 15.0) -> list[Event]:
    """The next ``count`` point events (heartbeats every second keep this from blocking)."""
    deadline = time.monotonic() + timeout_s
    found: list[Event] = []
    for event in events:
        if event.event == "point":
            found.append(event)
            if len(found) == count:
                return found
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"got {len(found)} of {count} points within {timeout_s}s")


def no_more_points(events: Iterator[Event], quiet_s: float = 2.0) -> None:
    deadline = time.monotonic() + quiet_s
    for event in events:
        assert event.event != "point", f"unexpected {event.data}"
        if time.monotonic() > deadline:
            return


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(
        kafka_bootstrap, warehouse_root, live_heartbeat_seconds=0.5, live_buffer_records=5
    ) as running:
        running.put_config(
            MetricDefinition(
                id="orders", project_id="acme", metric_kind=MetricKind.COUNT, event="Order"
            ),
            MetricDefinition(
                id="basket",
                project_id="acme",
                metric_kind=MetricKind.MEAN,
                event="Order",
                property="v",
            ),
            MetricDefinition(
                id="orders", project_id="globex", metric_kind=MetricKind.COUNT, event="Order"
            ),
        )
        yield running


class Emitter:
    """Stands in for the processor: writes windows to the metric_points topic."""

    def __init__(self, h: Harness) -> None:
        self.topic = topic_name(Topic.METRIC_POINTS, h.settings.topic_prefix)
        self.producer = make_producer(h.settings)
        self.sent: dict[tuple[str, int], float] = {}

    def emit(
        self,
        metric: str,
        minute: int,
        count: int,
        version: int,
        project: str = "acme",
        total: float = 0.0,
    ) -> None:
        point = MetricPoint(
            project_id=project,
            metric=metric,
            window_start=W0 + timedelta(minutes=minute),
            count=count,
            sum=total,
            version=version,
            emitted_at=datetime.now(UTC),
        )
        self.producer.send(
            self.topic, key=point.kafka_key().encode(), value=point.model_dump_json().encode()
        ).get(10)
        self.sent[(metric, version)] = time.monotonic()


@pytest.fixture
def emitter(harness: Harness) -> Iterator[Emitter]:
    emitter = Emitter(harness)
    yield emitter
    emitter.producer.close()


def test_new_and_corrected_windows_arrive_within_a_second(
    harness: Harness, emitter: Emitter
) -> None:
    with stream(harness, "orders") as events:
        ready = next(events)
        assert ready.event == "ready"
        assert ready.id is not None
        for version in range(1, 4):
            emitter.emit("orders", 0, count=version * 10, version=version)
            emitter.emit("orders", 0, count=999, version=version, project="globex")
            emitter.emit("basket", 0, count=1, version=version, total=5.0)
        points = take_points(events, 3)
        assert [p.data["count"] for p in points] == [10, 20, 30]
        assert [p.data["version"] for p in points] == [1, 2, 3]
        assert points[0].data["value"] == 10
        latencies = [p.received - emitter.sent[("orders", p.data["version"])] for p in points]
        assert max(latencies) < 1.0, latencies
        no_more_points(events)


def test_reconnecting_with_the_last_id_misses_nothing_and_repeats_nothing(
    harness: Harness, emitter: Emitter
) -> None:
    with stream(harness, "basket") as events:
        next(events)
        emitter.emit("basket", 1, count=1, version=1, total=2.0)
        first = take_points(events, 1)[0]
        assert first.data["value"] == 2.0
        last_id = first.id
    # While disconnected: more than the buffer holds, most of it for other metrics.
    for i in range(12):
        emitter.emit("orders", 2, count=i, version=100 + i)
    for version in (2, 3, 4):
        emitter.emit("basket", 1, count=version, version=version, total=2.0 * version)
    with stream(harness, "basket", last_id) as events:
        assert next(events).event == "ready"
        missed = take_points(events, 3)
        assert [p.data["version"] for p in missed] == [2, 3, 4]
        emitter.emit("basket", 1, count=5, version=5, total=10.0)
        assert [p.data["version"] for p in take_points(events, 1)] == [5]
        no_more_points(events, 1.0)


def test_a_quiet_stream_keeps_its_position_moving(harness: Harness, emitter: Emitter) -> None:
    with stream(harness, "orders") as events:
        start = next(events).id
        for i in range(3):
            emitter.emit("basket", 3, count=i, version=200 + i)
        deadline = time.monotonic() + 10
        for event in events:
            assert event.event == "heartbeat"
            if event.id != start:
                moved = event.id
                break
            assert time.monotonic() < deadline, "the heartbeat id never moved"
    with stream(harness, "orders", moved) as events:
        next(events)
        no_more_points(events, 1.0)


def test_stream_errors(harness: Harness) -> None:
    c = harness.client
    bad = c.get("/v1/metrics/orders/live", headers=harness.read | {"Last-Event-ID": "zero"})
    assert bad.status_code == 422
    assert bad.json()["parameter"] == "Last-Event-ID"
    assert c.get("/v1/metrics/nope/live", headers=harness.read).status_code == 404
    assert c.get("/v1/metrics/basket/live", headers=harness.foreign).status_code == 404
    assert c.get("/v1/metrics/orders/live").status_code == 401


def test_a_client_too_far_behind_is_told_to_reset(
    harness: Harness, emitter: Emitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sextant.gateway import live

    monkeypatch.setattr(live, "REPLAY_LIMIT", 3)
    with stream(harness, "basket") as events:
        last_id = next(events).id
    for i in range(12):  # past the five buffered records, and past the replay limit
        emitter.emit("orders", 9, count=i, version=300 + i)
    with stream(harness, "basket", last_id) as events:
        assert next(events).event == "ready"
        assert next(events).event == "reset"
        emitter.emit("basket", 9, count=1, version=400, total=1.0)
        assert [p.data["version"] for p in take_points(events, 1)] == [400]
