"""The SDK against the real collector and a real broker: what it sends is what lands in Kafka."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from growthbook import Experiment as GrowthBookExperiment
from growthbook import GrowthBook

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import read_all
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.gateway.app import create_app as create_gateway
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.assignment import assign
from sextant.schemas.config import ApiKey, Experiment, KeyKind, Project, Variant, hash_key
from sextant.schemas.events import EXPERIMENT_VIEWED
from sextant.schemas.topics import Topic, topic_name
from sextant.sdk import Client, RetryPolicy
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings
from tests.infra import REPO, free_port, wait_for

WRITE_KEY = "wk_sdk_integration"
FAST_RETRY = RetryPolicy(base_delay=0.05, max_delay=0.5, max_retry_time=60)


class Served:
    """An app served by uvicorn in a thread of this process; can stop and start again."""

    def __init__(self, make_app: Callable[[], Any], port: int) -> None:
        self.make_app = make_app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Served:
        config = uvicorn.Config(
            self.make_app(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, name="served-app", daemon=True)
        self._thread.start()
        wait_for(lambda: server.started, 60, message="app started")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            self._server = self._thread = None


def collector_server(kafka: KafkaSection) -> Served:
    """The real collector app on a free port."""
    settings = CollectorSettings(
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic_prefix=kafka.topic_prefix,
        collector_port=free_port(),
    )
    return Served(lambda: create_app(settings), settings.collector_port)


def publish_project(kafka: KafkaSection, rate_limit: int = 100_000) -> None:
    publisher = ConfigPublisher(kafka)
    try:
        publisher.put(
            [
                Project(
                    id="demo", project_id="demo", name="Demo", rate_limit_per_second=rate_limit
                ),
                ApiKey(
                    id="wk", project_id="demo", key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY)
                ),
            ]
        )
    finally:
        publisher.close()


@pytest.fixture
def collector(kafka_settings: KafkaSection) -> Iterator[Served]:
    publish_project(kafka_settings)
    running = collector_server(kafka_settings).start()
    yield running
    running.stop()


def raw_events(kafka: KafkaSection) -> list[dict[str, Any]]:
    """Every envelope on the test's ``events.raw``."""
    topic = topic_name(Topic.EVENTS_RAW, kafka.topic_prefix)
    return [orjson.loads(record.value or b"") for record in read_all(kafka, topic)]


def message_ids(kafka: KafkaSection) -> Counter[str]:
    return Counter(event["messageId"] for event in raw_events(kafka))


class Tap(httpx.BaseTransport):
    """The real network, noting each request's encoding; it can lose the first answers
    (the collector took the batch, the client never hears so) to force retries."""

    def __init__(self, lose_answers: int = 0) -> None:
        self.inner = httpx.HTTPTransport()
        self.encodings: list[str | None] = []
        self.lose_answers = lose_answers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.encodings.append(request.headers.get("content-encoding"))
        response = self.inner.handle_request(request)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            response.read()
            response.close()
            raise httpx.ReadError("connection lost before the answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_batched_gzipped_events_land_in_events_raw(
    collector: Served, kafka_settings: KafkaSection
) -> None:
    tap = Tap()
    with Client(
        WRITE_KEY, host=collector.url, flush_at=50, flush_interval=30, transport=tap
    ) as client:
        sent = [client.track(f"u{i % 7}", "Clicked", {"i": i}) for i in range(110)]
        sent.append(client.identify("u1", {"plan": "pro"}))
        sent.append(client.page(None, "Pricing", anonymous_id="anon-1"))
        assert client.flush(30)
        stats = client.stats()

    assert (stats.delivered, stats.batches, stats.retries) == (112, 3, 0)
    assert set(tap.encodings) == {"gzip"}
    assert message_ids(kafka_settings) == Counter(sent)  # each exactly once
    by_id = {event["messageId"]: event for event in raw_events(kafka_settings)}
    first = by_id[sent[0]]
    assert (first["project_id"], first["distinct_id"], first["event"]) == ("demo", "u0", "Clicked")
    assert first["properties"] == {"i": 0}
    assert by_id[sent[-1]]["event"] == "$page"


def test_a_lost_answer_is_retried_and_the_warehouse_keeps_each_event_once(
    collector: Served, kafka_settings: KafkaSection, warehouse: Warehouse, warehouse_url: str
) -> None:
    tap = Tap(lose_answers=2)
    with Client(
        WRITE_KEY, host=collector.url, flush_at=20, retry=FAST_RETRY, transport=tap
    ) as client:
        sent = [client.track("u1", "Clicked", {"i": i}) for i in range(60)]
        assert client.flush(30)
        assert client.stats().retries == 2

    arrived = message_ids(kafka_settings)
    # At least once into Kafka: the first batch went in three times (two answers lost), with
    # the same messageIds each time ...
    assert set(arrived) == set(sent)
    assert Counter(arrived.values()) == {3: 20, 1: 40}
    # ... which is what lets the warehouse keep each event once.
    sink = SinkService(
        SinkSettings(
            kafka_bootstrap=kafka_settings.kafka_bootstrap,
            topic_prefix=kafka_settings.topic_prefix,
            clickhouse_url=warehouse_url,
            sink_batch_seconds=0.2,
        )
    )
    sink.start()
    try:
        wait_for(
            lambda: sink.status()["records_committed"] >= 100,
            60,
            message="every copy taken by the sink",
        )
    finally:
        sink.stop()
    assert warehouse.query_rows("SELECT count(), uniqExact(message_id) FROM events_unique") == [
        (60, 60)
    ]


def test_a_collector_that_goes_away_and_comes_back_loses_nothing(
    collector: Served, kafka_settings: KafkaSection
) -> None:
    with Client(
        WRITE_KEY, host=collector.url, flush_at=10, flush_interval=0.05, retry=FAST_RETRY
    ) as client:
        sent = [client.track("u1", "Before", {"i": i}) for i in range(15)]
        assert client.flush(30)
        collector.stop()
        sent += [client.track("u1", "During", {"i": i}) for i in range(25)]
        wait_for(lambda: client.stats().retries >= 3, 30, message="retries against no collector")
        collector.start()
        assert client.flush(60)
        stats = client.stats()

    assert (stats.delivered, stats.failed) == (40, 0)
    assert set(message_ids(kafka_settings)) == set(sent)


def test_the_rate_limit_answer_is_honoured_and_nothing_is_written_twice(
    kafka_settings: KafkaSection,
) -> None:
    publish_project(kafka_settings, rate_limit=20)
    collector = collector_server(kafka_settings).start()
    try:
        with Client(WRITE_KEY, host=collector.url, flush_at=10, flush_interval=0.01) as client:
            sent = [client.track("u1", "Clicked", {"i": i}) for i in range(60)]
            started = time.monotonic()
            assert client.flush(60)
            elapsed = time.monotonic() - started
            stats = client.stats()
    finally:
        collector.stop()

    assert stats.retries > 0  # 429s
    assert stats.delivered == 60
    assert elapsed >= 1.0  # Retry-After is at least one second
    assert message_ids(kafka_settings) == Counter(sent)  # a 429 writes nothing


def test_a_full_queue_drops_the_excess_and_delivers_the_rest(
    kafka_settings: KafkaSection,
) -> None:
    publish_project(kafka_settings)
    collector = collector_server(kafka_settings)  # not started yet: nothing can be delivered
    client = Client(WRITE_KEY, host=collector.url, flush_at=10, max_queue_size=20, retry=FAST_RETRY)
    try:
        started = time.monotonic()
        ids = [client.track("u1", "Clicked", {"i": i}) for i in range(200)]
        assert time.monotonic() - started < 1.0
        stats = client.stats()
        assert stats.queued + stats.dropped == 200
        assert stats.queued <= 30

        collector.start()
        assert client.flush(60)
        arrived = message_ids(kafka_settings)
        assert len(arrived) == stats.queued == client.stats().delivered
        assert set(ids[:20]) <= set(arrived) <= set(ids)  # the first ones fit, then as room frees
    finally:
        client.shutdown()
        collector.stop()


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_events_are_flushed_when_the_interpreter_exits(
    collector: Served, kafka_settings: KafkaSection
) -> None:
    started = time.monotonic()
    result = run_script(
        f"""
        from sextant.sdk import Client
        client = Client({WRITE_KEY!r}, host={collector.url!r}, flush_at=1000, flush_interval=60)
        for i in range(250):
            client.track("u1", "Clicked", message_id=f"exit-{{i}}")
        """
    )

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    assert message_ids(kafka_settings) == Counter(f"exit-{i}" for i in range(250))


def test_a_forked_child_sends_its_own_events_and_not_its_parents(
    collector: Served, kafka_settings: KafkaSection
) -> None:
    result = run_script(
        f"""
        import os, sys
        from sextant.sdk import Client
        client = Client({WRITE_KEY!r}, host={collector.url!r}, flush_at=1000, flush_interval=60)
        for i in range(5):
            client.track("parent", "Before Fork", message_id=f"parent-{{i}}")
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                client.track("child", "In Child", message_id=f"child-{{i}}")
            delivered = client.flush(20) and client.stats().delivered
            os._exit(0 if delivered == 5 else 3)
        _, status = os.waitpid(pid, 0)
        client.track("parent", "After Fork", message_id="parent-after")
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )

    assert result.returncode == 0, result.stderr
    expected = (
        [f"parent-{i}" for i in range(5)] + ["parent-after"] + [f"child-{i}" for i in range(5)]
    )
    assert message_ids(kafka_settings) == Counter(expected)


READ_KEY = "rk_sdk_integration"


def test_exposures_carry_the_variants_growthbook_assigns(
    collector: Served, kafka_settings: KafkaSection, warehouse_url: str
) -> None:
    """Definitions from the real gateway, exposures through the real collector."""
    weights = [0.2, 0.3, 0.5]
    experiment = Experiment(
        id="new-checkout",
        project_id="demo",
        variants=[
            Variant(id=name, weight=w) for name, w in zip(["a", "b", "c"], weights, strict=True)
        ],
        coverage=0.8,
        seed="2026-q1",
    )
    publisher = ConfigPublisher(kafka_settings)
    try:
        read_key = ApiKey(
            id="rk", project_id="demo", key_kind=KeyKind.READ, key_hash=hash_key(READ_KEY)
        )
        publisher.put([read_key, experiment])
    finally:
        publisher.close()
    settings = GatewaySettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=kafka_settings.topic_prefix,
        clickhouse_url=warehouse_url,
        gateway_port=free_port(),
    )
    gateway = Served(lambda: create_gateway(settings), settings.gateway_port).start()
    growthbook = GrowthBookExperiment(
        key="new-checkout",
        variations=["a", "b", "c"],
        weights=weights,
        coverage=0.8,
        seed="2026-q1",
        hashVersion=2,
    )
    users = [f"user-{i}" for i in range(300)]
    expected = {}
    for user in users:
        result = GrowthBook(attributes={"id": user}).run(growthbook)
        if result.inExperiment:
            expected[user] = result.value

    try:
        with Client(
            WRITE_KEY, host=collector.url, gateway=gateway.url, read_key=READ_KEY
        ) as client:
            for _ in range(2):  # asking twice exposes once
                assigned = {user: client.get_variant("new-checkout", user) for user in users}
            assert client.flush(30)
    finally:
        gateway.stop()

    assert {u: v for u, v in assigned.items() if v is not None} == expected
    exposures = [e for e in raw_events(kafka_settings) if e["event"] == EXPERIMENT_VIEWED]
    assert sorted((e["userId"], e["properties"]["variation_id"]) for e in exposures) == sorted(
        expected.items()
    )
    assert {e["properties"]["experiment_id"] for e in exposures} == {"new-checkout"}


def test_the_write_key_alone_reads_assignments_from_the_collector(
    collector: Served, kafka_settings: KafkaSection
) -> None:
    """No gateway, no read key: the SDK assigns from what the collector serves a write key."""
    experiment = Experiment(
        id="pricing-page",
        project_id="demo",
        variants=[Variant(id="old", weight=0.5), Variant(id="new", weight=0.5)],
        seed="pricing",
        primary_metric="orders",
    )
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put([experiment])
    finally:
        publisher.close()
    users = [f"visitor-{i}" for i in range(200)]
    expected = {user: assign("pricing-page", user, [0.5, 0.5], seed="pricing") for user in users}

    def assigned() -> dict[str, str | None] | None:
        with Client(WRITE_KEY, host=collector.url) as client:
            client.refresh_experiments()
            variants = {user: client.get_variant("pricing-page", user) for user in users}
        return variants if all(v is not None for v in variants.values()) else None

    variants = wait_for(assigned, 30, 0.5, "the experiment served by the collector")
    assert variants == {u: experiment.variants[i].id for u, i in expected.items() if i is not None}
