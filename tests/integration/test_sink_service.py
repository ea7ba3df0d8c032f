"""The sink against a real broker and the real engine, in this process.

Rows arrive in every table with the values the gateway reads; repeats count once; a record
that can never be written goes to the dead-letter topic without holding the others back; and
a warehouse that refuses writes for a while loses nothing and has nothing committed early.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from sextant.core.kafka import TopicPartition, end_offsets, make_consumer, make_producer, read_all
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.schemas.events import Envelope, EventType, FieldError, InvalidEvent
from sextant.schemas.records import (
    AlertState,
    AlertTransition,
    Exposure,
    MetricPoint,
    SinkDeadLetter,
)
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.app import create_app
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings
from tests.infra import free_port, wait_for

DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sink_settings(kafka: KafkaSection, warehouse_url: str) -> SinkSettings:
    return SinkSettings(
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic_prefix=kafka.topic_prefix,
        clickhouse_url=warehouse_url,
        sink_batch_seconds=0.2,
        sink_retry_initial_seconds=0.05,
        sink_retry_max_seconds=0.3,
        sink_health_interval_seconds=0.3,
    )


@pytest.fixture
def settings(
    kafka_settings: KafkaSection, warehouse: Warehouse, warehouse_url: str
) -> SinkSettings:
    return sink_settings(kafka_settings, warehouse_url)


class Sink:
    """The sink's service running in a thread, and its app to ask over HTTP."""

    def __init__(self, settings: SinkSettings) -> None:
        self.service = SinkService(settings)
        self.app = create_app(settings, self.service)

    def get(self, path: str) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sink") as http:
                return await http.get(path)

        return asyncio.run(call())


@contextlib.contextmanager
def running(settings: SinkSettings) -> Iterator[Sink]:
    sink = Sink(settings)
    sink.service.start()
    try:
        yield sink
    finally:
        sink.service.stop()


@pytest.fixture
def client(settings: SinkSettings) -> Iterator[Sink]:
    with running(settings) as sink:
        yield sink


class Topics:
    def __init__(self, settings: KafkaSection) -> None:
        self.settings = settings
        self.producer = make_producer(settings)

    def send(self, topic: Topic, value: bytes, key: bytes = b"k") -> None:
        self.producer.send(topic_name(topic, self.settings.topic_prefix), key=key, value=value)

    def flush(self) -> None:
        self.producer.flush(timeout=30)


def event(message_id: str, amount: float, received: datetime = DAY, **extra: object) -> bytes:
    return (
        Envelope(
            project_id="shop",
            type=EventType.TRACK,
            event="Purchased",
            distinct_id=f"user-{message_id}",
            user_id=f"user-{message_id}",
            properties={"amount": amount, "plan": "pro", "cart": {"items": 2}, **extra},
            context={"page": {"path": "/checkout"}, "library": {"name": "analytics-python"}},
            traits={"email": "a@example.com"},
            timestamp=DAY,
            received_at=received,
            sent_at=received,
            message_id=message_id,
            ip="10.0.0.0",
            plan_violations=["amount is not declared"],
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


def point(version: int, count: int) -> bytes:
    return (
        MetricPoint(
            project_id="shop",
            metric="purchases",
            window_start=DAY,
            count=count,
            sum=count * 2.5,
            hll=[3, 1 << 6 | 1, 65535 << 6 | 49],  # sparse; the last needs UInt32
            digest=[(10.0, 2.0), (20.0, 1.0)],
            version=version,
            emitted_at=DAY,
        )
        .model_dump_json()
        .encode()
    )


def scalar(warehouse: Warehouse, sql: str) -> object:
    return warehouse.query_rows(sql)[0][0]


def committed(settings: SinkSettings, topic: Topic) -> int:
    """Records of ``topic`` the sink's group has committed, over all partitions."""
    name = topic_name(topic, settings.topic_prefix)
    consumer = make_consumer(settings, settings.group_id)
    try:
        partitions = sorted(consumer.partitions_for_topic(name) or ())
        offsets = [consumer.committed(TopicPartition(name, p)) for p in partitions]
        return sum(offset or 0 for offset in offsets)
    finally:
        consumer.close()


def wait_committed(client: Sink, settings: SinkSettings, expected: dict[Topic, int]) -> None:
    """Wait until the group has committed ``expected`` records of each topic."""
    try:
        wait_for(lambda: all(committed(settings, t) == n for t, n in expected.items()), 60, 0.2)
    except TimeoutError as error:
        found = {t: committed(settings, t) for t in expected}
        raise AssertionError(
            f"committed {found}, not {expected}: {client.service.status()}"
        ) from error


def produced(settings: SinkSettings, topic: Topic) -> int:
    return sum(end_offsets(settings, topic_name(topic, settings.topic_prefix)).values())


def test_rows_arrive_in_every_table_and_repeats_count_once(
    client: Sink, settings: SinkSettings, warehouse: Warehouse
) -> None:
    topics = Topics(settings)
    topics.send(Topic.EVENTS_RAW, event("m1", 10.5))
    topics.send(Topic.EVENTS_RAW, event("m2", 4.5))
    topics.send(Topic.EVENTS_RAW, event("m1", 10.5, received=DAY + timedelta(seconds=40)))
    invalid = InvalidEvent(
        project_id="shop",
        received_at=DAY,
        payload='{"type": "track"}',
        errors=[FieldError(field="event", message="event is required for a track call")],
    )
    topics.send(Topic.EVENTS_INVALID, invalid.model_dump_json().encode())
    for minute in (5, 1, 5):  # the first exposure is the earliest, however often it comes
        exposure = Exposure(
            project_id="shop",
            experiment="checkout",
            unit_id="u1",
            variation_id="b",
            timestamp=DAY + timedelta(minutes=minute),
            message_id=f"x{minute}",
        )
        topics.send(Topic.EXPOSURES, exposure.model_dump_json().encode())
    alert = AlertTransition(
        transition_id="t1",
        project_id="shop",
        rule_id="drop",
        episode_id="e1",
        from_state=AlertState.PENDING,
        to_state=AlertState.FIRING,
        at=DAY,
        value=3.0,
        threshold=5.0,
    )
    topics.send(Topic.ALERTS, alert.model_dump_json().encode())
    topics.send(Topic.ALERTS, alert.model_dump_json().encode())
    topics.send(Topic.METRIC_POINTS, point(version=2, count=20))
    topics.flush()
    wait_committed(client, settings, {Topic.METRIC_POINTS: 1})
    topics.send(Topic.METRIC_POINTS, point(version=3, count=30))
    topics.send(Topic.METRIC_POINTS, point(version=1, count=10))  # late and out of date
    topics.flush()
    wait_committed(client, settings, {Topic.METRIC_POINTS: 3})

    assert warehouse.query_rows(
        "SELECT message_id, properties.amount::Float64, properties.plan::String,"
        " properties.cart.items::Int64, context.page.path::String, traits.email::String,"
        " plan_violations, ip, timestamp FROM events_unique ORDER BY message_id"
    ) == [
        ("m1", 10.5, "pro", 2, "/checkout", "a@example.com", ["amount is not declared"],
         "10.0.0.0", DAY.replace(tzinfo=None)),
        ("m2", 4.5, "pro", 2, "/checkout", "a@example.com", ["amount is not declared"],
         "10.0.0.0", DAY.replace(tzinfo=None)),
    ]  # fmt: skip
    assert warehouse.query_rows(
        "SELECT project_id, errors, kafka_offset FROM invalid_events_unique"
    ) == [("shop", [{"field": "event", "message": "event is required for a track call"}], 0)]
    assert warehouse.query_rows(
        "SELECT unit_id, variation_id, timestamp, message_id FROM exposures_first"
    ) == [("u1", "b", (DAY + timedelta(minutes=1)).replace(tzinfo=None), "x1")]
    assert warehouse.query_rows("SELECT transition_id, to_state FROM alert_events_unique") == [
        ("t1", "firing")
    ]
    assert warehouse.query_rows(
        "SELECT version, count, sum, hll, digest FROM metric_points_latest"
    ) == [(3, 30, 75.0, [3, 65, 4194289], [(10.0, 2.0), (20.0, 1.0)])]

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    metrics = client.get("/metrics").text
    assert 'sextant_sink_rows_inserted_total{table="events"}' in metrics
    assert "sextant_sink_consumer_lag{" in metrics
    assert "sextant_sink_batch_seconds_bucket" in metrics


def test_a_poison_record_goes_to_the_dead_letters_and_does_not_block_the_others(
    client: Sink, settings: SinkSettings, warehouse: Warehouse
) -> None:
    topics = Topics(settings)
    for i in range(10):
        topics.send(Topic.EVENTS_RAW, event(f"before{i}", 1.0), key=b"same-partition")
    topics.send(Topic.EVENTS_RAW, b'{"type": "track", "truncated', key=b"same-partition")
    # Valid for the schema, but the engine refuses it: one JSON path given twice.
    refused = event("refused", 1.0, **{"cart.items": 3})
    topics.send(Topic.EVENTS_RAW, refused, key=b"same-partition")
    topics.send(Topic.METRIC_POINTS, b'{"metric": "no project, no window"}')
    for i in range(10):
        topics.send(Topic.EVENTS_RAW, event(f"after{i}", 1.0), key=b"same-partition")
    topics.flush()

    wait_committed(client, settings, {Topic.EVENTS_RAW: 22, Topic.METRIC_POINTS: 1})
    assert scalar(warehouse, "SELECT count() FROM events_unique") == 20
    assert scalar(warehouse, "SELECT count() FROM events_unique WHERE message_id = 'refused'") == 0
    letters = [
        SinkDeadLetter.model_validate_json(r.value or b"")
        for r in read_all(settings, topic_name(Topic.SINK_DEAD_LETTER, settings.topic_prefix))
    ]
    reasons = {(d.source_topic.rsplit(".", 1)[-1], d.offset): d.reason for d in letters}
    assert set(reasons) == {("raw", 10), ("raw", 11), ("metric_points", 0)}
    assert "Invalid JSON" in reasons[("raw", 10)]
    assert "Duplicate path" in reasons[("raw", 11)]
    assert "Field required" in reasons[("metric_points", 0)]
    assert orjson.loads(next(d.value for d in letters if d.offset == 11))["messageId"] == "refused"
    assert client.get("/readyz").status_code == 200


def test_a_warehouse_refusing_writes_loses_nothing_and_commits_nothing_early(
    client: Sink, settings: SinkSettings, warehouse: Warehouse
) -> None:
    topics = Topics(settings)
    for i in range(50):
        topics.send(Topic.EVENTS_RAW, event(f"a{i}", float(i)), key=str(i).encode())
    topics.flush()
    wait_committed(client, settings, {Topic.EVENTS_RAW: 50})

    warehouse.command("DETACH TABLE events")
    try:
        for i in range(100):
            topics.send(Topic.EVENTS_RAW, event(f"b{i}", float(i)), key=str(i).encode())
        topics.flush()
        not_ready = wait_for(
            lambda: (r := client.get("/readyz")).status_code == 503 and r.json(), 30, 0.1
        )
        assert not_ready["checks"]["warehouse"] is False
        status = wait_for(lambda: (s := client.get("/status").json())["last_error"] and s, 10, 0.1)
        assert "UNKNOWN_TABLE" in status["last_error"]
        failures_before = _failures(client)
        wait_for(lambda: _failures(client) >= failures_before + 2, 10, 0.1, "retries")
        assert committed(settings, Topic.EVENTS_RAW) == 50
    finally:
        warehouse.command("ATTACH TABLE events")

    wait_committed(client, settings, {Topic.EVENTS_RAW: 150})
    assert warehouse.query_rows(
        "SELECT count(), sum(properties.amount::Float64) FROM events_unique"
    ) == [(150, float(sum(range(50)) + sum(range(100))))]
    wait_for(lambda: client.get("/readyz").status_code == 200, 10, 0.1, "ready again")


def _failures(client: Sink) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('sextant_sink_failures_total{stage="warehouse"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_server_that_refuses_connections_keeps_the_sink_waiting_and_uncommitted(
    kafka_settings: KafkaSection,
) -> None:
    settings = sink_settings(kafka_settings, f"http://127.0.0.1:{free_port()}/default")
    topics = Topics(settings)
    topics.send(Topic.EVENTS_RAW, event("m1", 1.0))
    topics.flush()
    with running(settings) as client:
        service = client.service
        wait_for(lambda: service.health.last_error, 30, 0.1, "a connection error")
        assert "warehouse" in (service.health.last_error or "")
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["warehouse"] is False
        assert committed(settings, Topic.EVENTS_RAW) == 0
        assert produced(settings, Topic.EVENTS_RAW) == 1
