"""The sink and the warehouse at a trickle: what an event costs when events come one by one.

Browsers send one event per request, so at a few thousand events/s the sink sees a steady
trickle instead of full batches, and the processor's metric points (what dashboards read live)
are due every ``sink_live_batch_seconds``. In one process and one embedded engine, the same
minute:

- **batched** (the baseline): the sink catches up on ``--events`` events already in Kafka, in
  batches of up to ``sink_batch_rows``; this process's CPU per event committed;
- **trickle**, at each of ``--rates``: a child process sends events one record at a time at that
  rate (the collector's producer settings), and six metric points every 0.1 s as a processor
  does. After a warm-up, for ``--seconds``: this process's CPU (the sink's threads; the child's
  production is its own) per event committed, the inserts into ``events`` a second and their
  rows, the inserts into ``metric_points`` a second, and the active parts of ``events`` at the
  end (what the engine's merges leave of the small inserts).

A run with the metric points alone gives the sink's fixed cost a second, and each rate's CPU
an event beyond it is reported beside the whole. What that fixed cost is made of, measured in
this process on the same engine beforehand (**the engine's floor**): the CPU of one insert of
six metric points and of one ``SELECT 1``, each issued once every 0.1 s as the sink's live
writes are (spaced calls cost more than back-to-back ones).

Target: the trickle's CPU per event near the batched figure.

Run: ``python -m bench.sink_trickle [--bootstrap HOST:PORT] [--rates R ...] [--seconds S]``.
Without ``--bootstrap`` it starts a private broker.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as StopFlag
from pathlib import Path

from prometheus_client import REGISTRY

from bench.common import Figure, bootstrap_server, write_results
from bench.sink_throughput import SINK_ONLY, produce, sample_events
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.migrations import migrate
from sextant.core.service import settle_heap
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import connect
from sextant.schemas.records import MetricPoint
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings

NAME = "sink_trickle"
COMMAND = "python -m bench.sink_trickle"
WARM_UP_S = 5.0
POINTS_EVERY_S = 0.1
POINTS_EACH_TIME = 6


def sample(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


@dataclass(frozen=True)
class Counts:
    cpu_s: float
    rows: float
    event_inserts: float
    point_inserts: float

    @classmethod
    def now(cls) -> Counts:
        return cls(
            cpu_s=time.process_time(),
            rows=sample("sextant_sink_rows_inserted_total", "events"),
            event_inserts=sample("sextant_sink_insert_seconds_count", "events"),
            point_inserts=sample("sextant_sink_insert_seconds_count", "metric_points"),
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.cpu_s - other.cpu_s,
            self.rows - other.rows,
            self.event_inserts - other.event_inserts,
            self.point_inserts - other.point_inserts,
        )


@dataclass(frozen=True)
class Trickle:
    rate: float
    seconds: float
    counts: Counts
    parts: int

    @property
    def cpu_share(self) -> float:
        """Of one core."""
        return self.counts.cpu_s / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.counts.cpu_s / self.counts.rows * 1e6

    def marginal_us_per_event(self, live_only: Trickle) -> float:
        """CPU an event beyond what the live points alone cost in the same time."""
        return (self.cpu_share - live_only.cpu_share) * self.seconds / self.counts.rows * 1e6

    @property
    def rows_per_insert(self) -> float:
        return self.counts.rows / max(self.counts.event_inserts, 1)

    def describe(self) -> str:
        if not self.counts.rows:
            return f"no events: {self.cpu_share:.1%} of a core"
        return (
            f"{self.rate:,.0f} events/s: {self.counts.rows / self.seconds:,.0f} rows/s "
            f"committed, {self.cpu_us_per_event:.1f} µs CPU an event, "
            f"{self.counts.event_inserts / self.seconds:.1f} inserts/s into events "
            f"({self.rows_per_insert:,.0f} rows each), "
            f"{self.counts.point_inserts / self.seconds:.1f} into metric_points, "
            f"{self.parts} active parts of events"
        )


def point(window: int, metric: int) -> MetricPoint:
    return MetricPoint(
        project_id="shop",
        metric=f"m{metric}",
        window_start=datetime.fromtimestamp(window * 60, UTC),
        count=window,
        sum=float(window),
        version=int(time.time() * 1000),
        emitted_at=datetime.now(UTC),
    )


def send_trickle(settings: KafkaSection, rate: float, stop: StopFlag) -> None:
    """One event a ``send`` at ``rate`` per second, and a processor's metric points."""
    events = [
        (e.kafka_key().encode(), e.model_dump_json(by_alias=True).encode())
        for e in sample_events(20_000)
    ]
    producer = make_producer(settings, linger_ms=5)
    raw = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    points = topic_name(Topic.METRIC_POINTS, settings.topic_prefix)
    began = time.monotonic()
    sent = 0
    next_points = began
    while not stop.is_set():
        now = time.monotonic()
        due = int((now - began) * rate)
        while sent < due:
            key, value = events[sent % len(events)]
            # A fresh id per send: the same envelope sent again is a re-send the sink drops.
            value = value.replace(b'"messageId":"', f'"messageId":"{sent}-'.encode(), 1)
            producer.send(raw, key=key, value=value)
            sent += 1
        if now >= next_points:
            window = int(time.time() // 60)
            for m in range(POINTS_EACH_TIME):
                p = point(window, m)
                producer.send(points, key=f"shop:m{m}".encode(), value=p.model_dump_json().encode())
            next_points += POINTS_EVERY_S
        time.sleep(0.001)
    producer.flush(timeout=60)
    producer.close()


@dataclass(frozen=True)
class Floor:
    insert_ms: float
    """CPU of one insert of six metric points."""
    round_trip_ms: float
    """CPU of one ``SELECT 1``."""


def engine_floor(root: Path, seconds: float) -> Floor:
    """CPU milliseconds per call of the embedded engine, one call every ``POINTS_EVERY_S``."""
    warehouse = connect(f"chdb://{root}?database=floor{uuid.uuid4().hex[:8]}")
    migrate(warehouse)
    columns = tuple(MetricPoint.model_fields)
    sent = 0

    def insert_points() -> None:
        nonlocal sent
        window = int(time.time() // 60)
        rows = b"\n".join(
            point(window, m).model_dump_json().encode() for m in range(POINTS_EACH_TIME)
        )
        sent += 1
        warehouse.insert_json("metric_points", rows, columns, f"floor-{sent}")

    def spaced(call: Callable[[], object]) -> float:
        calls, began, cpu = 0, time.monotonic(), time.process_time()
        while time.monotonic() - began < seconds:
            call()
            calls += 1
            time.sleep(POINTS_EVERY_S)
        return (time.process_time() - cpu) / calls * 1e3

    return Floor(
        insert_ms=spaced(insert_points), round_trip_ms=spaced(lambda: warehouse.command("SELECT 1"))
    )


def settings_for(root: Path, bootstrap: str, prefix: str) -> SinkSettings:
    return SinkSettings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        clickhouse_url=f"chdb://{root}?database=b{uuid.uuid4().hex[:10]}",
        sink_group_id=f"bench-{uuid.uuid4().hex[:8]}",
    )


def new_topics(bootstrap: str) -> KafkaSection:
    kafka = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka, [Topic.EVENTS_RAW, Topic.SINK_DEAD_LETTER, *SINK_ONLY], partitions=6)
    return kafka


def batched(root: Path, bootstrap: str, count: int) -> float:
    """CPU µs an event of the sink catching up on ``count`` events already in Kafka."""
    kafka = new_topics(bootstrap)
    produce(kafka, sample_events(count))
    settle_heap()
    service = SinkService(settings_for(root, bootstrap, kafka.topic_prefix))
    service.start()
    try:
        deadline = time.monotonic() + 600
        while not service.health.consuming:
            time.sleep(0.01)
        before = Counts.now()
        while (Counts.now() - before).rows < count * 0.97:  # 1 in 50 is a re-send
            if time.monotonic() > deadline:
                raise TimeoutError("the sink did not catch up")
            time.sleep(0.01)
        spent = Counts.now() - before
    finally:
        service.stop()
    return spent.cpu_s / spent.rows * 1e6


def active_parts(url: str) -> int:
    database = url.rsplit("database=", 1)[1]
    rows = connect(url).query_rows(
        "SELECT count() FROM system.parts WHERE database = {db:String} "
        "AND table = 'events' AND active",
        {"db": database},
    )
    return int(rows[0][0])


def trickle(root: Path, bootstrap: str, rate: float, seconds: float) -> Trickle:
    kafka = new_topics(bootstrap)
    settings = settings_for(root, bootstrap, kafka.topic_prefix)
    service = SinkService(settings)
    service.start()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=send_trickle, args=(kafka, rate, stop))
    try:
        while not service.health.consuming:
            time.sleep(0.01)
        child.start()
        time.sleep(WARM_UP_S)  # a fixed warm-up of the load, not a wait for a condition
        before = Counts.now()
        time.sleep(seconds)
        spent = Counts.now() - before
        parts = active_parts(settings.clickhouse_url)
    finally:
        stop.set()
        child.join(timeout=60)
        service.stop()
    return Trickle(rate=rate, seconds=seconds, counts=spent, parts=parts)


def figures(
    baseline: float, floor: Floor, live_only: Trickle, runs: list[Trickle], events: int
) -> list[Figure]:
    out = [
        Figure(
            benchmark=NAME,
            figure="embedded engine CPU an insert of six metric points, one every 0.1 s",
            value=floor.insert_ms,
            unit="ms",
            baseline="a SELECT 1, one every 0.1 s, same process",
            baseline_value=floor.round_trip_ms,
            command=COMMAND,
        ),
        Figure(
            benchmark=NAME,
            figure=f"sink CPU an event, batched (catching up on {events:,} events)",
            value=baseline,
            unit="µs",
            command=COMMAND,
        ),
        Figure(
            benchmark=NAME,
            figure="sink CPU with only metric points arriving (six every 0.1 s), "
            f"{live_only.counts.point_inserts / live_only.seconds:.1f} inserts/s",
            value=live_only.cpu_share * 100,
            unit="% of a core",
            command=COMMAND,
        ),
    ]
    for run in runs:
        out += [
            Figure(
                benchmark=NAME,
                figure=f"sink CPU an event at a trickle of {run.rate:,.0f} events/s "
                "(one record a send, metric points every 0.1 s)",
                value=run.cpu_us_per_event,
                unit="µs",
                baseline="batched, same process",
                baseline_value=baseline,
                target="near the batched figure",
                command=COMMAND,
            ),
            Figure(
                benchmark=NAME,
                figure=f"sink CPU an event at {run.rate:,.0f} events/s beyond the live "
                "points' own cost",
                value=run.marginal_us_per_event(live_only),
                unit="µs",
                baseline="batched, same process",
                baseline_value=baseline,
                command=COMMAND,
            ),
            Figure(
                benchmark=NAME,
                figure=f"rows an insert into events at {run.rate:,.0f} events/s",
                value=run.rows_per_insert,
                unit="rows",
                command=COMMAND,
            ),
            Figure(
                benchmark=NAME,
                figure=f"active parts of events after {run.seconds:.0f} s at "
                f"{run.rate:,.0f} events/s",
                value=run.parts,
                unit="parts",
                command=COMMAND,
            ),
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--rates", type=float, nargs="+", default=[1_000, 2_500, 5_000])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--floor-seconds", type=float, default=10)
    args = parser.parse_args()
    with (
        bootstrap_server(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
    ):
        root = Path(tmp) / "warehouse"
        floor = engine_floor(root, args.floor_seconds)
        print(
            f"engine floor: {floor.insert_ms:.2f} ms CPU an insert of six points, "
            f"{floor.round_trip_ms:.2f} ms a SELECT 1 (one every {POINTS_EVERY_S} s)",
            flush=True,
        )
        baseline = batched(root, bootstrap, args.events)
        print(f"batched: {baseline:.1f} µs CPU an event", flush=True)
        live_only = trickle(root, bootstrap, 0, args.seconds)
        print(f"live points only: {live_only.cpu_share:.1%} of a core", flush=True)
        runs = []
        for rate in args.rates:
            runs.append(trickle(root, bootstrap, rate, args.seconds))
            print(f"trickle {runs[-1].describe()}", flush=True)
            print(f"  beyond the live points: {runs[-1].marginal_us_per_event(live_only):.1f} µs")
    path = write_results(NAME, figures(baseline, floor, live_only, runs, args.events))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
