"""The processor as a real process on a real broker, checked against SQL over the events table.

One processor serves the tests of this module (each test uses its own project); the recovery
test runs its own workers so it can kill them. Every event sent to ``events.raw`` is also
written to the ``events`` table of the real engine, as the sink would, so the expected values
are plain SQL over that table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import TopicPartition, ensure_topics, make_consumer, make_producer
from sextant.core.metric_history import BACKFILL_VERSION_BASE
from sextant.core.migrations import migrate
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse, connect
from sextant.processor.backfill import backfill
from sextant.processor.partition import LATE_EVENTS_METRIC
from sextant.schemas.config import (
    ConfigDocument,
    Experiment,
    MetricDefinition,
    Project,
    PropertyFilter,
    Variant,
)
from sextant.schemas.events import Envelope, EventType
from sextant.schemas.records import Exposure, MetricPoint
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    digest_quantile,
    hll_add,
    hll_estimate,
    hll_pack,
)
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for

AMOUNT = "coalesce(properties.amount.:Float64, toFloat64(properties.amount.:Int64))"
EVENT_COLUMNS = [
    "project_id",
    "event",
    "timestamp",
    "distinct_id",
    "message_id",
    "type",
    "user_id",
    "anonymous_id",
    "properties",
    "received_at",
]


# ---------------------------------------------------------------------------------------------
# harness


class ProcessorProcess:
    """``python -m sextant.processor`` as a child process."""

    def __init__(self, settings: KafkaSection, data_dir: Path, name: str = "p") -> None:
        self.port = free_port()
        self.log_path = data_dir / f"processor-{name}-{self.port}.log"
        self.env = os.environ | {
            "SEXTANT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SEXTANT_TOPIC_PREFIX": settings.topic_prefix,
            "SEXTANT_PROCESSOR_PORT": str(self.port),
            "SEXTANT_PROCESSOR_DATA_DIR": str(data_dir / name),
            "SEXTANT_PROCESSOR_SESSION_TIMEOUT_SECONDS": "6",
            "SEXTANT_PROCESSOR_COMMIT_INTERVAL_SECONDS": "0.5",
            "SEXTANT_PROCESSOR_MAX_REBALANCE_SECONDS": "20",
            "SEXTANT_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessorProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sextant.processor"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"processor exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 90) -> None:
        wait_for(self.ready, timeout_s, 0.3, "processor ready")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Tail:
    """Every record of a topic, collected by a background consumer from the beginning."""

    settings: KafkaSection
    topic: str
    records: list[bytes] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = make_consumer(self.settings, None)
        try:
            partitions = wait_for(lambda: consumer.partitions_for_topic(self.topic), 30)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=200).values():
                    with self._lock:
                        self.records.extend(r.value for r in batch if r.value is not None)
        finally:
            consumer.close()

    def values(self) -> list[bytes]:
        with self._lock:
            return list(self.records)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def latest_points(
    tail: Tail, project: str, metric: str, backfilled: bool = False
) -> dict[tuple[datetime, str], MetricPoint]:
    """The newest version of each (window, breakdown) of one metric, live or backfilled."""
    found: dict[tuple[datetime, str], MetricPoint] = {}
    for raw in tail.values():
        point = MetricPoint.model_validate_json(raw)
        if point.project_id != project or point.metric != metric:
            continue
        if (point.version >= BACKFILL_VERSION_BASE) != backfilled:
            continue
        key = (point.window_start, point.breakdown)
        if key not in found or found[key].version < point.version:
            found[key] = point
    return found


def nonzero(points: dict[tuple[datetime, str], MetricPoint]) -> dict[tuple[datetime, str], Any]:
    return {k: p for k, p in points.items() if p.count or p.denominator}


class Sender:
    """Sends envelopes to events.raw and writes them to the events table."""

    def __init__(self, settings: KafkaSection, warehouse: Warehouse) -> None:
        self.topic = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
        self.producer = make_producer(settings)
        self.warehouse = warehouse
        self.sent: list[Envelope] = []

    def send(
        self,
        project: str,
        name: str,
        user: str,
        at: datetime,
        message_id: str | None = None,
        store: bool = True,
        **properties: Any,
    ) -> Envelope:
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        envelope = Envelope(
            project_id=project,
            type=EventType.TRACK,
            event=name,
            distinct_id=user,
            user_id=user,
            properties=properties,
            timestamp=at,
            received_at=datetime.now(UTC),
            message_id=message_id or str(uuid.uuid4()),
        )
        self.producer.send(
            self.topic,
            key=envelope.kafka_key().encode(),
            value=orjson.dumps(envelope.model_dump(mode="json", by_alias=True)),
        )
        if store:
            self.sent.append(envelope)
        return envelope

    def flush(self) -> None:
        self.producer.flush()
        rows = [
            [
                e.project_id,
                e.event,
                e.timestamp,
                e.distinct_id,
                e.message_id,
                e.type.value,
                e.user_id,
                e.anonymous_id,
                e.properties,
                e.received_at,
            ]
            for e in self.sent
        ]
        if rows:
            self.warehouse.insert("events", rows, EVENT_COLUMNS)
        self.sent.clear()


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> KafkaSection:
    section = KafkaSection(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}"
    )
    ensure_topics(section, partitions=3)
    return section


@pytest.fixture(scope="module")
def events_db(warehouse_root: Path) -> Warehouse:
    handle = connect(f"chdb://{warehouse_root}?database=t{uuid.uuid4().hex[:12]}")
    migrate(handle)
    return handle


def publish(settings: KafkaSection, *documents: ConfigDocument) -> None:
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(documents)
    finally:
        publisher.close()


SHOP_METRICS = (
    MetricDefinition(
        id="orders",
        project_id="shop",
        metric_kind="count",
        event="Order Completed",
        filters=[
            PropertyFilter(property="amount", op="gt", value=0),
            PropertyFilter(property="plan", op="in", value=["pro", "team", "free"]),
        ],
        breakdown="country",
        breakdown_limit=2,
    ),
    MetricDefinition(
        id="buyers",
        project_id="shop",
        metric_kind="unique_users",
        event="Order Completed",
        breakdown="plan",
    ),
    MetricDefinition(
        id="revenue",
        project_id="shop",
        metric_kind="sum",
        event="Order Completed",
        property="amount",
        filters=[PropertyFilter(property="plan", op="neq", value="free")],
    ),
    MetricDefinition(
        id="basket",
        project_id="shop",
        metric_kind="mean",
        event="Order Completed",
        property="amount",
        filters=[PropertyFilter(property="coupon", op="exists", value=False)],
    ),
    MetricDefinition(
        id="amounts",
        project_id="shop",
        metric_kind="percentiles",
        event="Order Completed",
        property="amount",
        breakdown="plan",
    ),
    MetricDefinition(
        id="checkout",
        project_id="shop",
        metric_kind="conversion",
        event="Checkout Started",
        conversion_event="Order Completed",
        conversion_window_seconds=20,
        filters=[PropertyFilter(property="source", op="exists")],
        breakdown="source",
    ),
)


@pytest.fixture(scope="module")
def processor(
    settings: KafkaSection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessorProcess]:
    publish(
        settings,
        Project(id="shop", project_id="shop", name="Shop"),
        Project(id="late", project_id="late", name="Late", allowed_lateness_seconds=60),
        Project(id="flow", project_id="flow", name="Flow"),
        *SHOP_METRICS,
        MetricDefinition(id="hits", project_id="late", metric_kind="count", event="Hit"),
        Experiment(
            id="exp1",
            project_id="shop",
            variants=[Variant(id="control", weight=0.5), Variant(id="treatment", weight=0.5)],
        ),
    )
    worker = ProcessorProcess(settings, tmp_path_factory.mktemp("processor")).start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def points(settings: KafkaSection) -> Iterator[Tail]:
    tail = Tail(settings, topic_name(Topic.METRIC_POINTS, settings.topic_prefix))
    yield tail
    tail.close()


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


# ---------------------------------------------------------------------------------------------
# every kind, with filters and a breakdown, against SQL


@pytest.fixture(scope="module")
def shop_traffic(
    processor: ProcessorProcess, settings: KafkaSection, events_db: Warehouse
) -> datetime:
    """Send the shop's events (three minutes of them) once for the tests that read them."""
    sender = Sender(settings, events_db)
    now = datetime.now(UTC)
    start = now - timedelta(seconds=100)
    countries = ["fr", "de", "us", "es", "it"]
    plans = ["free", "pro", "team", "trial"]
    for i in range(300):
        at = start + timedelta(seconds=i / 3)
        user = f"u{i % 70}"
        props: dict[str, Any] = {
            "amount": (i % 17) * 2.5 - 5,
            "plan": plans[i % 4],
            "country": countries[(i * i) % 5],
        }
        if i % 5 == 0:
            props["coupon"] = "X"
        if i % 11 == 0:
            props["amount"] = "n/a"
        if i % 3 == 0:
            sender.send("shop", "Checkout Started", user, at, source=["ads", "seo", None][i % 3])
        sender.send("shop", "Order Completed", user, at + timedelta(seconds=i % 30), **props)
    # client retries: the same message twice counts once
    retry = sender.send("shop", "Order Completed", "u1", now, amount=10, plan="pro", country="fr")
    sender.send(
        "shop", "Order Completed", "u1", now, retry.message_id, False,
        amount=10, plan="pro", country="fr",
    )  # fmt: skip
    sender.flush()
    return start


def _rows(db: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    return db.query_rows(sql)


def _expected_top(rows: list[tuple[Any, ...]], limit: int) -> dict[tuple[datetime, str], int]:
    by_window: dict[datetime, dict[str, int]] = {}
    for window, value, count in rows:
        by_window.setdefault(window.replace(tzinfo=UTC), {})[value] = int(count)
    expected: dict[tuple[datetime, str], int] = {}
    for window, values in by_window.items():
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        for value, count in ranked[:limit]:
            expected[(window, value)] = count
        if len(ranked) > limit:
            expected[(window, "other")] = sum(c for _, c in ranked[limit:])
    return expected


def _eventually(probe: Any, message: str, timeout_s: float = 60) -> Any:
    last: list[Any] = []

    def attempt() -> bool:
        try:
            probe()
        except AssertionError as error:
            last[:] = [error]
            return False
        return True

    try:
        wait_for(attempt, timeout_s, 0.5, message)
    except TimeoutError:
        raise last[0] if last else AssertionError(message) from None


def test_count_with_filters_and_top_n_breakdown(
    shop_traffic: datetime, points: Tail, events_db: Warehouse
) -> None:
    rows = _rows(
        events_db,
        "SELECT toStartOfMinute(timestamp), toString(properties.country), count()"
        " FROM events FINAL WHERE project_id = 'shop' AND event = 'Order Completed'"
        f" AND {AMOUNT} > 0"
        " AND properties.plan.:String IN ('pro', 'team', 'free') GROUP BY 1, 2",
    )
    expected = _expected_top(rows, 2)
    assert len({k[0] for k in expected}) >= 2

    def check() -> None:
        live = nonzero(latest_points(points, "shop", "orders"))
        assert {k: p.count for k, p in live.items()} == expected

    _eventually(check, "orders match SQL")


def test_unique_users_within_the_stated_error(
    shop_traffic: datetime, points: Tail, events_db: Warehouse
) -> None:
    rows = _rows(
        events_db,
        "SELECT toStartOfMinute(timestamp), toString(properties.plan), uniqExact(distinct_id),"
        " groupUniqArray(distinct_id) FROM events FINAL"
        " WHERE project_id = 'shop' AND event = 'Order Completed' GROUP BY 1, 2",
    )

    def check() -> None:
        live = nonzero(latest_points(points, "shop", "buyers"))
        assert set(live) == {(w.replace(tzinfo=UTC), b) for w, b, _, _ in rows}
        for window, plan, exact, users in rows:
            point = live[(window.replace(tzinfo=UTC), plan)]
            registers = bytearray(HLL_REGISTERS)
            for user in users:
                hll_add(registers, user)
            assert point.hll == hll_pack(registers)  # the same sketch as the exact set's
            assert hll_estimate(point.hll) == pytest.approx(exact, rel=0.02, abs=1)

    _eventually(check, "buyers match SQL")


def test_sum_and_mean_are_exact(shop_traffic: datetime, points: Tail, events_db: Warehouse) -> None:
    revenue = _rows(
        events_db,
        f"SELECT toStartOfMinute(timestamp), count(), sum({AMOUNT})"
        " FROM events FINAL WHERE project_id = 'shop' AND event = 'Order Completed'"
        f" AND {AMOUNT} IS NOT NULL"
        " AND NOT ifNull(properties.plan.:String = 'free', 0) GROUP BY 1",
    )
    basket = _rows(
        events_db,
        "SELECT toStartOfMinute(timestamp), count(), sum(a), sum(a * a) FROM ("
        f" SELECT timestamp, {AMOUNT} AS a FROM events FINAL"
        " WHERE project_id = 'shop' AND event = 'Order Completed'"
        " AND dynamicType(properties.coupon) = 'None') WHERE a IS NOT NULL GROUP BY 1",
    )

    def check() -> None:
        live = latest_points(points, "shop", "revenue")
        assert {k[0]: (p.count, p.sum) for k, p in nonzero(live).items()} == {
            w.replace(tzinfo=UTC): (c, s) for w, c, s in revenue
        }
        live = latest_points(points, "shop", "basket")
        assert {k[0]: (p.count, p.sum, p.sum_sq) for k, p in nonzero(live).items()} == {
            w.replace(tzinfo=UTC): (c, s, q) for w, c, s, q in basket
        }

    _eventually(check, "revenue and basket match SQL")


def test_percentiles_within_the_stated_rank_error(
    shop_traffic: datetime, points: Tail, events_db: Warehouse
) -> None:
    rows = _rows(
        events_db,
        "SELECT toStartOfMinute(timestamp), toString(properties.plan),"
        f" arraySort(groupArray({AMOUNT})) FROM events FINAL"
        " WHERE project_id = 'shop' AND event = 'Order Completed'"
        f" AND {AMOUNT} IS NOT NULL GROUP BY 1, 2",
    )

    def check() -> None:
        live = nonzero(latest_points(points, "shop", "amounts"))
        assert set(live) == {(w.replace(tzinfo=UTC), b) for w, b, _ in rows}
        for window, plan, values in rows:
            point = live[(window.replace(tzinfo=UTC), plan)]
            assert point.count == len(values)
            for q in (0.5, 0.9, 0.95, 0.99):
                estimate = digest_quantile(point.digest, q)
                low = sum(v < estimate for v in values) / len(values)
                high = sum(v <= estimate for v in values) / len(values)
                slack = max(0.005, 1 / len(values))
                assert low - slack <= q <= high + slack, (plan, q, estimate, values)

    _eventually(check, "percentiles match SQL")


def test_conversion_matches_sql(shop_traffic: datetime, points: Tail, events_db: Warehouse) -> None:
    """Each minute's users who started checkout (first time in the minute, with a source),
    and those of them who completed an order within 20 s, in that minute or the next."""
    rows = _rows(
        events_db,
        "SELECT w, b, count(), countIf("
        "  arrayExists(t -> t >= first_a AND t <= first_a + toIntervalSecond(20), times)) FROM ("
        " SELECT toStartOfMinute(timestamp) AS w, distinct_id, min(timestamp) AS first_a,"
        "  argMin(toString(properties.source), timestamp) AS b"
        " FROM events FINAL WHERE project_id = 'shop' AND event = 'Checkout Started'"
        "  AND dynamicType(properties.source) != 'None' GROUP BY w, distinct_id"
        ") AS a LEFT JOIN ("
        " SELECT distinct_id, groupArray(timestamp) AS times FROM events FINAL"
        " WHERE project_id = 'shop' AND event = 'Order Completed' GROUP BY distinct_id"
        ") AS o USING distinct_id GROUP BY w, b",
    )
    across = _rows(
        events_db,
        "SELECT count() FROM events AS a FINAL JOIN events AS o FINAL USING distinct_id"
        " WHERE a.project_id = 'shop' AND o.project_id = 'shop'"
        " AND a.event = 'Checkout Started' AND o.event = 'Order Completed'"
        " AND toStartOfMinute(o.timestamp) > toStartOfMinute(a.timestamp)"
        " AND o.timestamp <= a.timestamp + toIntervalSecond(20)",
    )
    assert across[0][0] > 0, "the traffic has conversions into the next minute"
    assert any(converted for *_, converted in rows)

    def check() -> None:
        live = nonzero(latest_points(points, "shop", "checkout"))
        assert {k: (p.denominator, p.count) for k, p in live.items()} == {
            (w.replace(tzinfo=UTC), b): (users, converted) for w, b, users, converted in rows
        }

    _eventually(check, "conversion matches SQL")


def test_backfill_equals_live_for_the_same_minutes(
    shop_traffic: datetime, points: Tail, events_db: Warehouse, settings: KafkaSection
) -> None:
    test_count_with_filters_and_top_n_breakdown(shop_traffic, points, events_db)
    since, until = minute(shop_traffic), minute(datetime.now(UTC)) + timedelta(minutes=2)
    for definition in SHOP_METRICS:
        backfill(settings, events_db, definition, since, until)

    def check() -> None:
        for definition in SHOP_METRICS:
            live = nonzero(latest_points(points, "shop", definition.id))
            filled = nonzero(latest_points(points, "shop", definition.id, backfilled=True))
            assert set(filled) == set(live), definition.id
            for key, point in live.items():
                other = filled[key]
                assert (point.count, point.denominator, point.hll) == (
                    other.count,
                    other.denominator,
                    other.hll,
                ), (definition.id, key)
                assert point.sum == pytest.approx(other.sum)
                assert point.sum_sq == pytest.approx(other.sum_sq)
                for q in (0.5, 0.9):
                    assert digest_quantile(point.digest, q) == pytest.approx(
                        digest_quantile(other.digest, q), rel=0.1, nan_ok=True
                    )

    _eventually(check, "backfilled points equal live ones")


# ---------------------------------------------------------------------------------------------
# lateness, definitions that change while events flow, exposures


def test_late_events_inside_lateness_correct_and_beyond_are_counted(
    processor: ProcessorProcess, settings: KafkaSection, events_db: Warehouse, points: Tail
) -> None:
    sender = Sender(settings, events_db)
    now = datetime.now(UTC)
    sender.send("late", "Hit", "u1", now)
    sender.flush()
    _eventually(
        lambda: _assert_equal(_counts(points, "late", "hits"), {minute(now): 1}), "first hit"
    )
    inside = now - timedelta(seconds=45)
    sender.send("late", "Hit", "u1", inside)
    sender.flush()
    expected = {minute(now): 1}
    expected[minute(inside)] = expected.get(minute(inside), 0) + 1
    _eventually(lambda: _assert_equal(_counts(points, "late", "hits"), expected), "corrected")
    sender.send("late", "Hit", "u1", now - timedelta(minutes=10))
    sender.flush()
    _eventually(
        lambda: _assert_equal(
            sum(p.count for p in latest_points(points, "late", LATE_EVENTS_METRIC).values()), 1
        ),
        "late event counted",
    )
    assert _counts(points, "late", "hits") == expected
    metrics = httpx.get(f"http://127.0.0.1:{processor.port}/metrics").text
    assert 'sextant_processor_late_events_total{project="late"} 1.0' in metrics


def _assert_equal(actual: Any, expected: Any) -> None:
    assert actual == expected


def _counts(points: Tail, project: str, metric: str) -> dict[datetime, int]:
    totals: dict[datetime, int] = {}
    for (window, _), point in latest_points(points, project, metric).items():
        totals[window] = totals.get(window, 0) + point.count
    return {w: c for w, c in totals.items() if c}


def test_definition_added_while_events_flow(
    processor: ProcessorProcess, settings: KafkaSection, events_db: Warehouse, points: Tail
) -> None:
    sender = Sender(settings, events_db)
    stop = threading.Event()

    def flow() -> None:
        while not stop.is_set():
            sender.send("flow", "Viewed", "u1", datetime.now(UTC), store=False, phase="before")
            sender.producer.flush()
            stop.wait(0.05)

    thread = threading.Thread(target=flow, daemon=True)
    thread.start()
    try:
        publish(
            settings,
            MetricDefinition(
                id="views",
                project_id="flow",
                metric_kind="count",
                event="Viewed",
                breakdown="phase",
            ),
        )
        started = time.monotonic()
        wait_for(lambda: latest_points(points, "flow", "views"), 20, 0.2, "first views point")
        took = time.monotonic() - started
        after = Sender(settings, events_db)
        for _ in range(25):
            after.send("flow", "Viewed", f"a{uuid.uuid4().hex[:6]}", datetime.now(UTC),
                       phase="after")  # fmt: skip
        after.flush()
    finally:
        stop.set()
        thread.join()
    assert took < 15
    _eventually(
        lambda: _assert_equal(
            sum(
                p.count
                for (_, b), p in latest_points(points, "flow", "views").items()
                if b == "after"
            ),
            25,
        ),
        "every event after the definition counted",
    )


def test_first_exposures_and_multi_variant_units(
    processor: ProcessorProcess, settings: KafkaSection, events_db: Warehouse
) -> None:
    tail = Tail(settings, topic_name(Topic.EXPOSURES, settings.topic_prefix))
    try:
        sender = Sender(settings, events_db)
        now = datetime.now(UTC)
        for user, variation in [("x1", "control"), ("x1", "control"), ("x2", "treatment"),
                                ("x3", "control"), ("x3", "treatment")]:  # fmt: skip
            sender.send("shop", "Experiment Viewed", user, now,
                        experiment_id="exp1", variation_id=variation)  # fmt: skip
            now += timedelta(milliseconds=10)
        sender.flush()

        def exposures() -> set[tuple[str, str, bool]]:
            found = [Exposure.model_validate_json(v) for v in tail.values()]
            return {(e.unit_id, e.variation_id, e.multi_variant) for e in found}

        expected = {
            ("x1", "control", False),
            ("x2", "treatment", False),
            ("x3", "control", False),
            ("x3", "control", True),
            ("x3", "treatment", True),
        }
        _eventually(lambda: _assert_equal(exposures(), expected), "exposures")
        assert len(tail.values()) == len(expected)
    finally:
        tail.close()


def test_operational_routes(processor: ProcessorProcess) -> None:
    base = f"http://127.0.0.1:{processor.port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
    metrics = httpx.get(f"{base}/metrics").text
    for name in (
        "sextant_processor_events_total",
        "sextant_processor_windows_emitted_total",
        "sextant_processor_lag_records",
    ):
        assert name in metrics


# ---------------------------------------------------------------------------------------------
# kill -9, restart, several workers


def test_kill_restart_and_rebalance_keep_results_exact(
    kafka_bootstrap: str, warehouse_root: Path, tmp_path: Path
) -> None:
    settings = KafkaSection(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}"
    )
    ensure_topics(settings, partitions=3)
    db = connect(f"chdb://{warehouse_root}?database=t{uuid.uuid4().hex[:12]}")
    migrate(db)
    publish(
        settings,
        Project(id="k", project_id="k", name="K"),
        MetricDefinition(id="n", project_id="k", metric_kind="count", event="E", breakdown="b"),
        MetricDefinition(id="s", project_id="k", metric_kind="sum", event="E", property="v"),
        MetricDefinition(id="u", project_id="k", metric_kind="unique_users", event="E"),
    )
    tail = Tail(settings, topic_name(Topic.METRIC_POINTS, settings.topic_prefix))
    sender = Sender(settings, db)
    base = datetime.now(UTC) - timedelta(seconds=30)
    counter = iter(range(1_000_000))

    def burst(n: int, pause_s: float = 0.0) -> None:
        for _ in range(n):
            i = next(counter)
            sender.send("k", "E", f"user{i % 97}", base + timedelta(milliseconds=40 * i),
                        b=f"v{i % 4}", v=i % 13)  # fmt: skip
            if pause_s:
                sender.producer.flush()
                time.sleep(pause_s)  # pacing the load, not waiting for a result
        sender.flush()

    first = ProcessorProcess(settings, tmp_path, "a").start()
    second = ProcessorProcess(settings, tmp_path, "b")
    try:
        first.wait_ready()
        burst(200)
        second.start().wait_ready()
        burst(200)
        killer = threading.Timer(1.0, first.stop, kwargs={"kill": True})
        killer.start()
        burst(150, pause_s=0.01)  # the kill lands in the middle of this
        killer.join()
        first = ProcessorProcess(settings, tmp_path, "a2").start()
        first.wait_ready()
        burst(150)
        rows = db.query_rows(
            "SELECT toStartOfMinute(timestamp), toString(properties.b), count(),"
            " sum(properties.v.:Int64), groupUniqArray(distinct_id) FROM events FINAL"
            " WHERE project_id = 'k' GROUP BY 1, 2"
        )
        counts = {(w.replace(tzinfo=UTC), b): c for w, b, c, _, _ in rows}
        sums: dict[datetime, float] = {}
        users: dict[datetime, set[str]] = {}
        for w, _, _, s, u in rows:
            window = w.replace(tzinfo=UTC)
            sums[window] = sums.get(window, 0) + s
            users.setdefault(window, set()).update(u)
        assert sum(counts.values()) == 700

        def check() -> None:
            live = nonzero(latest_points(tail, "k", "n"))
            assert {k: p.count for k, p in live.items()} == counts
            live_sums = nonzero(latest_points(tail, "k", "s"))
            assert {k[0]: p.sum for k, p in live_sums.items()} == sums
            for (window, _), point in nonzero(latest_points(tail, "k", "u")).items():
                registers = bytearray(HLL_REGISTERS)
                for user in users[window]:
                    hll_add(registers, user)
                assert point.hll == hll_pack(registers)

        # 90 s: a worker whose recovery stalls exits after 20 s and the other takes over
        _eventually(check, "exact after kill -9 and rebalance", timeout_s=90)
    finally:
        for worker in (first, second):
            with contextlib.suppress(Exception):
                worker.stop()
        tail.close()
