"""``kill -9`` of the sink at several points, restarts, and every table holds each fact once.

The sink runs as a child process that owns its warehouse path (one process may own an
embedded engine), and is killed: right after an insert and before its commit; in the middle
of an insert; and, as the ``sextant sink`` command, from outside while it works. The last
run catches up, and a separate process then compares exact counts and sums with what was
produced, tens of thousands of records across every topic, repeats and poison included.

Run as ``python -m tests.integration.test_sink_crash MODE``, this module is the sink with a
kill switch on its warehouse (see :class:`KillSwitch`); the engine and Kafka are real.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sextant.core.kafka import TopicPartition, end_offsets, make_consumer, make_producer, read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.events import Envelope, EventType, FieldError, InvalidEvent
from sextant.schemas.records import (
    AlertState,
    AlertTransition,
    Exposure,
    MetricPoint,
    SinkDeadLetter,
)
from sextant.schemas.topics import Topic, topic_name
from tests.infra import REPO, free_port, wait_for

SINK_TOPICS = (
    Topic.EVENTS_RAW,
    Topic.EVENTS_INVALID,
    Topic.EXPOSURES,
    Topic.METRIC_POINTS,
    Topic.ALERTS,
)
START = datetime(2026, 1, 20, tzinfo=UTC)  # events span three monthly partitions
EVENTS, RESENDS, WINDOWS, UNITS, UNIT_REPLAYS, ALERTS, ALERT_REPLAYS, INVALID = (
    20_000,
    1_000,
    400,
    1_500,
    300,
    300,
    100,
    1_000,
)


@dataclass
class Expected:
    event_amounts: int = 0
    latest_point_counts: int = 0
    poison: set[tuple[str, int, int]] = field(default_factory=set)


class Producer:
    def __init__(self, settings: KafkaSection) -> None:
        self.settings = settings
        self.producer = make_producer(settings)
        self.futures: list[tuple[Any, bool]] = []

    def send(self, topic: Topic, value: bytes, key: str, poison: bool = False) -> None:
        name = topic_name(topic, self.settings.topic_prefix)
        self.futures.append((self.producer.send(name, key=key.encode(), value=value), poison))

    def poison_coordinates(self) -> set[tuple[str, int, int]]:
        self.producer.flush(timeout=60)
        found = set()
        for future, poison in self.futures:
            if poison:
                meta = future.get(timeout=10)
                found.add((meta.topic, meta.partition, meta.offset))
        self.producer.close()
        return found


def _envelope(i: int, received_delay: timedelta = timedelta(0), jitter_ms: int = 0) -> bytes:
    timestamp = START + timedelta(minutes=3 * i)
    received = timestamp + timedelta(seconds=2) + received_delay
    user = f"user{i % 700}"
    return (
        Envelope(
            project_id=f"project{i % 3}",
            type=EventType.TRACK,
            event=("Viewed", "Added", "Purchased", "Shared")[i % 4],
            distinct_id=user,
            user_id=user,
            properties={"amount": i % 997, "plan": ("free", "pro")[i % 2]},
            context={"library": {"name": "analytics-python", "version": "2.3.3"}},
            timestamp=timestamp + timedelta(milliseconds=jitter_ms),
            sent_at=received,
            received_at=received,
            message_id=f"event-{i}",
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


def produce_dataset(settings: KafkaSection) -> Expected:
    """Every kind of record, with client re-sends, replays, superseded versions and poison."""
    rng = random.Random(7)
    out = Producer(settings)
    expected = Expected()
    for i in range(EVENTS):
        out.send(Topic.EVENTS_RAW, _envelope(i), f"project{i % 3}:user{i % 700}")
        expected.event_amounts += i % 997
    for i in rng.sample(range(EVENTS), RESENDS):  # the client retried: later receipt, jitter
        later = _envelope(i, received_delay=timedelta(seconds=30), jitter_ms=7)
        out.send(Topic.EVENTS_RAW, later, f"project{i % 3}:user{i % 700}")
    for n in range(5):
        out.send(Topic.EVENTS_RAW, b'{"type": "track", "event": ', f"bad{n}", poison=True)
    twice = json.loads(_envelope(0))
    twice["messageId"] = "duplicate-path"
    twice["properties"] = {"cart": {"items": 1}, "cart.items": 2}
    out.send(Topic.EVENTS_RAW, json.dumps(twice).encode(), "project0:user0", poison=True)

    versions = [(w, v) for w in range(WINDOWS) for v in (1, 2, 3)]
    rng.shuffle(versions)  # late corrections arrive in any order
    for w, version in versions:
        point = MetricPoint(
            project_id=f"project{w % 3}",
            metric=f"metric{w % 4}",
            window_start=START + timedelta(minutes=w),
            count=version * 10 + w,
            sum=float(w),
            hll=[w << 6 | 1 + version],
            digest=[(float(w), 1.0)],
            version=version,
            emitted_at=START,
        )
        out.send(Topic.METRIC_POINTS, point.model_dump_json().encode(), f"m{w}")
    expected.latest_point_counts = sum(30 + w for w in range(WINDOWS))
    out.send(Topic.METRIC_POINTS, b'{"metric": "no window"}', "bad", poison=True)

    exposures = [
        Exposure(
            project_id="project0",
            experiment="checkout",
            unit_id=f"unit{u}",
            variation_id=("a", "b")[u % 2],
            timestamp=START + timedelta(seconds=u),
            message_id=f"exposure-{u}",
        ).model_dump_json()
        for u in range(UNITS)
    ]
    for u, value in [*enumerate(exposures), *rng.sample(list(enumerate(exposures)), UNIT_REPLAYS)]:
        out.send(Topic.EXPOSURES, value.encode(), f"project0:checkout:unit{u}")

    alerts = [
        AlertTransition(
            transition_id=f"transition-{a}",
            project_id="project1",
            rule_id=f"rule{a % 10}",
            episode_id=f"episode-{a // 2}",
            from_state=AlertState.PENDING,
            to_state=AlertState.FIRING,
            at=START + timedelta(minutes=a),
            value=float(a),
        ).model_dump_json()
        for a in range(ALERTS)
    ]
    for a, value in [*enumerate(alerts), *rng.sample(list(enumerate(alerts)), ALERT_REPLAYS)]:
        out.send(Topic.ALERTS, value.encode(), f"project1:rule{a % 10}")

    for n in range(INVALID):
        invalid = InvalidEvent(
            project_id="project2",
            received_at=START + timedelta(seconds=n),
            payload=json.dumps({"type": "track", "n": n}),
            errors=[FieldError(field="event", message="required")],
        )
        out.send(Topic.EVENTS_INVALID, invalid.model_dump_json().encode(), "project2")
    expected.poison = out.poison_coordinates()
    return expected


# -- the sink as a child process ------------------------------------------------------------


class SinkProcess:
    def __init__(self, settings: KafkaSection, warehouse_url: str, tmp: Path) -> None:
        self.port = free_port()
        self.env = os.environ | {
            "SEXTANT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SEXTANT_TOPIC_PREFIX": settings.topic_prefix,
            "SEXTANT_CLICKHOUSE_URL": warehouse_url,
            "SEXTANT_SINK_PORT": str(self.port),
            "SEXTANT_SINK_BATCH_ROWS": "1500",
            "SEXTANT_SINK_BATCH_SECONDS": "0.3",
            "SEXTANT_SINK_INSTANCE_ID": "crash-test",  # a restart takes the partitions back at once
            "SEXTANT_SINK_HEALTH_INTERVAL_SECONDS": "1",
            "SEXTANT_LOG_LEVEL": "WARNING",
        }
        self.log = tmp / "sink.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, kill_switch: str | None = None) -> None:
        module = (
            ["tests.integration.test_sink_crash", kill_switch] if kill_switch else ["sextant.sink"]
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *module],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait(self, timeout_s: float = 120) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the sink did not exit: {self.log.read_text()[-3000:]}") from None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def rows_inserted(self) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith('sextant_sink_rows_inserted_total{table="events"}'):
                return float(line.split()[-1])
        return 0.0


QUERY = """
import json, sys
from sextant.core.warehouse import connect
warehouse = connect(sys.argv[1])
print(json.dumps([warehouse.query_rows(sql) for sql in json.loads(sys.argv[2])], default=str))
"""


def query(warehouse_url: str, *sqls: str) -> list[list[list[Any]]]:
    """Ask the warehouse from a process of its own (the path must be free)."""
    done = subprocess.run(
        [sys.executable, "-c", QUERY, warehouse_url, json.dumps(sqls)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: list[list[list[Any]]] = json.loads(done.stdout)
    return result


def committed(settings: KafkaSection, group: str) -> dict[tuple[str, int], int]:
    consumer = make_consumer(settings, group)
    try:
        found = {}
        for topic in SINK_TOPICS:
            name = topic_name(topic, settings.topic_prefix)
            for p in sorted(consumer.partitions_for_topic(name) or ()):
                found[(name, p)] = consumer.committed(TopicPartition(name, p)) or 0
        return found
    finally:
        consumer.close()


def ends(settings: KafkaSection) -> dict[tuple[str, int], int]:
    found = {}
    for topic in SINK_TOPICS:
        name = topic_name(topic, settings.topic_prefix)
        found |= {(name, p): end for p, end in end_offsets(settings, name).items()}
    return found


def test_kill_9_at_several_points_then_every_table_holds_each_fact_once(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    expected = produce_dataset(kafka_settings)
    group = f"{kafka_settings.topic_prefix}.sink"
    url = f"chdb://{tmp_path / 'warehouse'}"
    sink = SinkProcess(kafka_settings, url, tmp_path)

    # 1. Killed right after an insert, before its offsets are committed.
    sink.start("after-insert:3")
    assert sink.wait() == -signal.SIGKILL
    [[[physical_rows]]] = query(url, "SELECT count() FROM events")
    raw = topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix)
    committed_raw = sum(o for (t, _), o in committed(kafka_settings, group).items() if t == raw)
    assert physical_rows > committed_raw  # rows in the warehouse that Kafka will deliver again

    # 2. Killed in the middle of an insert.
    sink.start("during-insert:2")
    assert sink.wait() == -signal.SIGKILL

    # 3. The real command, killed from outside while it works.
    sink.start()
    wait_for(lambda: sink.rows_inserted() >= 1, 60, 0.02, "the sink inserting")
    sink.signal(signal.SIGKILL)
    assert sink.wait() == -signal.SIGKILL
    assert committed(kafka_settings, group) != ends(kafka_settings)  # work was left

    # 4. The real command again, until everything is committed; then a graceful stop.
    sink.start()
    end = ends(kafka_settings)
    wait_for(lambda: committed(kafka_settings, group) == end, 120, 0.5, "all committed")
    sink.signal(signal.SIGTERM)
    assert sink.wait() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down

    (events, invalid, exposures, points, alerts) = query(
        url,
        "SELECT count(), uniqExact(message_id), sum(properties.amount::Int64) FROM events_unique",
        "SELECT count(), uniqExact(kafka_partition, kafka_offset) FROM invalid_events_unique",
        "SELECT count(), uniqExact(unit_id), countIf(multi_variant) FROM exposures_first",
        "SELECT count(), sum(count), min(version), max(version) FROM metric_points_latest",
        "SELECT count(), uniqExact(transition_id) FROM alert_events_unique",
    )
    assert events == [[EVENTS, EVENTS, expected.event_amounts]]
    assert invalid == [[INVALID, INVALID]]
    assert exposures == [[UNITS, UNITS, 0]]
    assert points == [[WINDOWS, expected.latest_point_counts, 3, 3]]
    assert alerts == [[ALERTS, ALERTS]]

    letters = [
        SinkDeadLetter.model_validate_json(r.value or b"")
        for r in read_all(
            kafka_settings, topic_name(Topic.SINK_DEAD_LETTER, kafka_settings.topic_prefix)
        )
    ]
    assert {(d.source_topic, d.partition, d.offset) for d in letters} == expected.poison


# -- the sink with a kill switch, run as a child process by the test above -----------------


class KillSwitch:
    """The real warehouse, and a SIGKILL of this process at the chosen ``events`` insert.

    ``after-insert:N`` dies once the N-th insert into ``events`` returned (before the commit);
    ``during-insert:N`` dies a few milliseconds into the N-th insert.
    """

    def __init__(self, warehouse: Any, mode: str) -> None:
        self._warehouse = warehouse
        self._when, count = mode.split(":")
        self._at = int(count)
        self._inserts = 0

    def insert_json(
        self, table: str, rows: bytes, column_names: tuple[str, ...], dedup_token: str | None = None
    ) -> None:
        if table == "events":
            self._inserts += 1
        armed = table == "events" and self._inserts == self._at
        if armed and self._when == "during-insert":
            threading.Timer(0.003, os.kill, (os.getpid(), signal.SIGKILL)).start()
        self._warehouse.insert_json(table, rows, column_names, dedup_token)
        if armed and self._when == "after-insert":
            os.kill(os.getpid(), signal.SIGKILL)

    def ping(self) -> bool:
        return bool(self._warehouse.ping())


def _main(mode: str) -> None:
    from sextant.core.logging import configure_logging
    from sextant.core.migrations import migrate
    from sextant.core.service import serve
    from sextant.core.warehouse import connect
    from sextant.sink.app import create_app
    from sextant.sink.service import SinkService
    from sextant.sink.settings import SinkSettings

    def open_warehouse(settings: SinkSettings) -> KillSwitch:
        warehouse = connect(settings.clickhouse_url)
        migrate(warehouse)
        return KillSwitch(warehouse, mode)

    settings = SinkSettings()
    configure_logging(settings.log_level, part="sink")
    service = SinkService(settings, open_warehouse=open_warehouse)
    serve(create_app(settings, service), settings.host, settings.sink_port, settings.log_level)


if __name__ == "__main__":
    _main(sys.argv[1])
