"""Experiment results from the streamed statistics: latency, freshness, the processor's cost.

1. Latency: ``--users`` exposures (default a million) and ``--events`` events (default ten
   million) loaded into the embedded engine as ``bench.gateway_queries`` loads them; the
   results of an experiment of three metrics (a filtered sum, two counts, CUPED on 14 days)
   through the gateway's own code, from the events table (``source=warehouse``, the
   baseline) and from the streamed statistics (``experiment_statistics``: twelve source
   partitions, each key written ``--versions`` times, unmerged, so ``FINAL`` works), both
   ``--rounds`` times in this process. The streamed rows are the recomputation's sums (the
   processor writes the same numbers: ``tests/integration/test_experiment_statistics_stream``),
   and both answers are checked equal to 1e-9 first. Then again with ``--persons`` persons of
   two ids in the project (10,000), none of them exposed: the stream still answers, after a
   look at the exposures for a unit among those ids. Target: p95 under 50 ms.
2. Freshness: a private broker, a ``sextant processor`` worker, the sink in this process
   over the embedded engine; each probe exposes one new unit and sends its purchase, and the
   gateway's results (from the stream) are polled every 20 ms until they count it; from the
   broker's acknowledgement to the first answer that counts it, p50 and p95 of
   ``--probes``. Target: p95 under 1 s.
3. The processor's cost: a worker catching up on ``--worker-events`` waiting events with
   the statistics off, then on (each its own consumer group), ``--worker-rounds`` times,
   the medians compared; and stage one's state
   (``PartitionState``) applying ``--apply-events`` events (one in ten an exposure, the
   others purchases or page views of 20,000 users) and flushing every
   ``--apply-flush-every`` (5,000), with and
   without the streamed statistics, alternating rounds in this process: events/s, ratio.
4. The heap a long look-back leaves (``heap``): ``--heap-events`` events of 200,000 users
   never exposed, which the statistics keep waiting (every such event, for the look-back
   window and a margin), then the objects the garbage collector tracks and the CPU of one
   full collection (the least of five): what every full collection of a worker holding them
   costs.

Run: ``python -m bench.experiment_stream [--users N] [--events N] [--rounds R]``, or some
parts alone: ``--only stage_one worker heap``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.common import Figure, bootstrap_server, report
from bench.gateway_queries import PROJECT, START, gateway_over, load_events, load_exposures
from bench.processor_throughput import catch_up
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.migrations import migrate
from sextant.core.service import settle_heap
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import connect
from sextant.gateway import experiments
from sextant.gateway.context import Gateway
from sextant.processor.definitions import CompiledMetric, compile_metric
from sextant.processor.experiment_stats import ExperimentPlan, ExperimentStatistics
from sextant.processor.partition import DedupPolicy, EventView, PartitionState
from sextant.schemas.config import (
    Experiment,
    FilterOp,
    MetricDefinition,
    MetricKind,
    Project,
    PropertyFilter,
    Variant,
)
from sextant.schemas.events import EXPERIMENT_VIEWED, Envelope, EventType
from sextant.schemas.experiment_stream import statistics_fingerprint, streamed_metrics
from sextant.schemas.statistics import STATISTICS_COLUMNS, ExperimentMetricStatistics
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings

NAME = "experiment_stream"
COMMAND = "python -m bench.experiment_stream"
PARTITIONS = 12
METRICS = {
    m.id: m
    for m in (
        MetricDefinition(
            id="revenue", project_id=PROJECT, metric_kind=MetricKind.SUM,
            event="Order Completed", property="revenue",
            filters=[PropertyFilter(property="revenue", op=FilterOp.GT, value=0)],
        ),
        MetricDefinition(
            id="views", project_id=PROJECT, metric_kind=MetricKind.COUNT, event="Page Viewed"
        ),
        MetricDefinition(
            id="orders", project_id=PROJECT, metric_kind=MetricKind.COUNT, event="Order Completed"
        ),
    )
}  # fmt: skip
EXPERIMENT = Experiment(
    id="checkout",
    project_id=PROJECT,
    primary_metric="revenue",
    guardrail_metrics=["views", "orders"],
    variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
)


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(run: Callable[[], Any], rounds: int) -> list[float]:
    run()  # warm-up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples


def _floats(a: Any, b: Any) -> None:
    """Every number of two answers equal to 1e-9 relative (times aside)."""
    if isinstance(a, dict):
        for key in a:
            if key not in ("computed_at", "source", "as_of", "source_note"):
                _floats(a[key], b[key])
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _floats(x, y)
    elif isinstance(a, float):
        assert abs(a - b) <= 1e-9 * max(abs(a), abs(b)) + 1e-12, (a, b)
    else:
        assert a == b, (a, b)


def stream_rows(gateway: Gateway, versions: int) -> None:
    """The recomputation's sums as the processor's records: partition 0 carries them, the
    others zeros, each key written ``versions`` times."""
    answer = experiments.experiment_results(gateway, PROJECT, EXPERIMENT, METRICS, "warehouse")
    units = {v.id: v.units for v in answer.variants}
    sums = experiments.warehouse_statistics(gateway, PROJECT, EXPERIMENT, METRICS)
    fingerprint = statistics_fingerprint(EXPERIMENT, METRICS)
    rows = []
    now = datetime.now(UTC)
    for version in range(versions):
        for partition in range(PARTITIONS):
            for (metric, variant), found in sums.items():
                statistics_ = found if partition == 0 else type(found)(n=0)
                if metric == "" and partition == 0:
                    statistics_ = type(found)(n=units[variant])
                record = ExperimentMetricStatistics(
                    project_id=PROJECT, experiment=EXPERIMENT.id, metric=metric, variant=variant,
                    lookback_days=EXPERIMENT.cuped_lookback_days, statistics=statistics_,
                    as_of=now, source_partition=partition, partitions=PARTITIONS,
                    version=version, fingerprint=fingerprint,
                )  # fmt: skip
                rows.append(orjson.dumps(record.to_row()))
        gateway.warehouse().insert_json(
            "experiment_statistics", b"\n".join(rows), STATISTICS_COLUMNS
        )
        rows.clear()


def latency(args: argparse.Namespace) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="sextant-bench-") as folder:
        url = f"chdb://{folder}?database=b{uuid.uuid4().hex[:8]}"
        warehouse = connect(url)
        migrate(warehouse)
        started = time.perf_counter()
        load_events(warehouse, args.events, args.users)
        load_exposures(warehouse, args.users)
        for table in ("events", "exposures"):
            warehouse.command(f"OPTIMIZE TABLE {table} FINAL")
        print(f"loaded {args.events:,} events in {time.perf_counter() - started:.0f} s")
        gateway = gateway_over(url)
        stream_rows(gateway, args.versions)

        def from_stream() -> experiments.ExperimentResults:
            return experiments.experiment_results(gateway, PROJECT, EXPERIMENT, METRICS)

        def from_events() -> experiments.ExperimentResults:
            return experiments.experiment_results(
                gateway, PROJECT, EXPERIMENT, METRICS, "warehouse"
            )

        streamed, recomputed = from_stream(), from_events()
        assert streamed.source == "stream", streamed.source_note
        _floats(streamed.model_dump(mode="json"), recomputed.model_dump(mode="json"))
        stream_s = timed(from_stream, args.rounds * 5)
        floor_s = timed(lambda: warehouse.query_rows("SELECT 1"), args.rounds * 5)
        events_s = timed(from_events, args.rounds)
        _merge_unexposed_ids(warehouse, args.persons)
        assert from_stream().source == "stream"
        merged_s = timed(from_stream, args.rounds * 5)
    size = f"{args.users / 1e6:g}M units, {args.events / 1e6:g}M events"
    print(f"stream p50 {p(stream_s, 0.5) * 1000:.1f} ms p95 {p(stream_s, 0.95) * 1000:.1f} ms")
    print(f"events table p50 {p(events_s, 0.5) * 1000:.0f} ms p95 {p(events_s, 0.95) * 1000:.0f}")
    print(f"stream, {args.persons:,} persons of several ids: p50 {p(merged_s, 0.5) * 1000:.1f}"
          f" ms p95 {p(merged_s, 0.95) * 1000:.1f} ms")  # fmt: skip
    print(
        f"engine floor (SELECT 1) p50 {p(floor_s, 0.5) * 1000:.1f} ms"
        f" p95 {p(floor_s, 0.95) * 1000:.1f} ms"
    )
    floor = [
        Figure(NAME, f"engine round trip (SELECT 1): {label}", round(p(floor_s, q) * 1000, 1),
               "ms", command=COMMAND)
        for label, q in (("p50", 0.5), ("p95", 0.95))
    ]  # fmt: skip
    return floor + [
        Figure(NAME, f"results from the stream: {label} ({size})", round(p(stream_s, q) * 1000, 1),
               "ms", f"recomputed from the events table, {label}", round(p(events_s, q) * 1000, 1),
               target, COMMAND)
        for label, q, target in (("p50", 0.5, ""), ("p95", 0.95, "p95 < 50 ms"))
    ] + [
        Figure(NAME, f"results from the stream, the project holding {args.persons:,} persons of"
               f" two ids none of them exposed: {label} ({size})", round(p(merged_s, q) * 1000, 1),
               "ms", f"the same without those persons, {label}", round(p(stream_s, q) * 1000, 1),
               target, COMMAND)
        for label, q, target in (("p50", 0.5, ""), ("p95", 0.95, "p95 < 50 ms"))
    ]  # fmt: skip


def _merge_unexposed_ids(warehouse: Any, persons: int) -> None:
    """``persons`` persons of two ids (an anonymous visitor who signed up), ids that were
    never exposed: the stream answers, after the check that no exposed unit is among them."""
    now = datetime.now(UTC)
    rows = [[PROJECT, f"visitor-{i}", f"member-{i}", 1, now] for i in range(persons)]
    columns = ["project_id", "distinct_id", "person_id", "version", "updated_at"]
    warehouse.insert("person_overrides", rows, columns)


def freshness(args: argparse.Namespace) -> list[Figure]:
    with bootstrap_server(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as folder:
        kafka = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
        ensure_topics(kafka)
        url = f"chdb://{folder}/warehouse"
        migrate(connect(url))
        publisher = ConfigPublisher(kafka)
        publisher.put([Project(id=PROJECT, project_id=PROJECT, name="Bench"), *METRICS.values(),
                       EXPERIMENT])  # fmt: skip
        publisher.close()
        from bench.processor_throughput import Worker

        worker = Worker(kafka, Path(folder) / "processor")
        sink = SinkService(
            SinkSettings(kafka_bootstrap=bootstrap, topic_prefix=kafka.topic_prefix,
                         clickhouse_url=url, sink_batch_seconds=0.2)
        )  # fmt: skip
        sink.start()
        try:
            return _probe(kafka, gateway_over(url), worker, args.probes)
        finally:
            sink.stop()
            worker.stop()


def _probe(kafka: KafkaSection, gateway: Gateway, worker: Any, probes: int) -> list[Figure]:
    deadline = time.monotonic() + 120
    while not worker.ready():
        assert time.monotonic() < deadline, "processor not ready"
        time.sleep(0.2)  # waiting for the worker to start
    producer = make_producer(kafka)
    topic = topic_name(Topic.EVENTS_RAW, kafka.topic_prefix)

    def units() -> int | None:
        answer = experiments.experiment_results(gateway, PROJECT, EXPERIMENT, METRICS)
        return sum(v.units for v in answer.variants) if answer.source == "stream" else None

    def send(user: str, name: str, **properties: Any) -> None:
        now = datetime.now(UTC)
        envelope = Envelope(project_id=PROJECT, type=EventType.TRACK, event=name,
                            distinct_id=user, user_id=user, properties=properties, timestamp=now,
                            received_at=now, message_id=str(uuid.uuid4()))  # fmt: skip
        value = orjson.dumps(envelope.model_dump(mode="json", by_alias=True))
        producer.send(topic, key=envelope.kafka_key().encode(), value=value)

    send("warm-up", EXPERIMENT_VIEWED, experiment_id=EXPERIMENT.id, variation_id="control")
    producer.flush()
    while units() != 1:
        assert time.monotonic() < deadline, "the stream never covered the experiment"
        time.sleep(0.05)  # polling the results
    delays = []
    for i in range(probes):
        user = f"probe-{i}"
        send(user, EXPERIMENT_VIEWED, experiment_id=EXPERIMENT.id, variation_id="one-page")
        send(user, "Order Completed", revenue=10.0)
        producer.flush()
        acknowledged = time.perf_counter()
        while units() != i + 2:
            assert time.perf_counter() - acknowledged < 30, f"probe {i} never counted"
            time.sleep(0.02)  # polling the results
        delays.append(time.perf_counter() - acknowledged)
    producer.close()
    print(f"freshness p50 {p(delays, 0.5) * 1000:.0f} ms p95 {p(delays, 0.95) * 1000:.0f} ms")
    return [
        Figure(NAME, f"freshness of a result after an event: {label} ({probes} probes)",
               round(p(delays, q) * 1000), "ms", target=target, command=COMMAND)
        for label, q, target in (("p50", 0.5, ""), ("p95", 0.95, "p95 < 1 s"))
    ]  # fmt: skip


class _Plans:
    generation = 1

    def __init__(self) -> None:
        streamed = streamed_metrics(EXPERIMENT, METRICS)
        assert not isinstance(streamed, str)
        self.plan = ExperimentPlan.of(
            PROJECT, EXPERIMENT.id, statistics_fingerprint(EXPERIMENT, METRICS), "userId",
            [v.id for v in EXPERIMENT.variants], EXPERIMENT.cuped_lookback_days, None, None,
            streamed,
        )  # fmt: skip

    def experiment_plans(self) -> dict[tuple[str, str], ExperimentPlan]:
        return {(PROJECT, EXPERIMENT.id): self.plan}


class _Catalog:
    """The live windows of the experiment's three metrics: stage one's own work."""

    def __init__(self) -> None:
        self.metrics = [compile_metric(m) for m in METRICS.values()]

    def metrics_for(self, project_id: str, event: str) -> list[CompiledMetric]:
        return [m for m in self.metrics if m.event == event]

    def lateness(self, project_id: str) -> int:
        return 300

    def exposure_unit(self, project_id: str, experiment: str) -> str | None:
        return "userId"


def _track(i: int, name: str, user: str, properties: dict[str, Any], at: float) -> EventView:
    """The ``i``-th event: a track event of the bench project by ``user``, received at once."""
    return EventView(PROJECT, EventType.TRACK, name, user, user, None, properties, at, at, f"m{i}")


def stage_one(args: argparse.Namespace) -> list[Figure]:
    """Events/s of stage one's state with and without the statistics, alternating."""
    rng = random.Random(1)
    t0 = START.timestamp()
    views = []
    for i in range(args.apply_events):
        user = f"user-{rng.randrange(20_000)}"
        at = t0 + i * 0.05
        properties: dict[str, Any]
        if i % 10 == 0:
            variation = rng.choice(["control", "one-page"])
            name, properties = (
                EXPERIMENT_VIEWED,
                {"experiment_id": "checkout", "variation_id": variation},
            )
        else:
            name, properties = rng.choice(["Order Completed", "Page Viewed"]), {"revenue": 12.5}
        views.append(_track(i, name, user, properties, at))
    catalog = _Catalog()
    settle_heap()  # the collector's settings of a worker process

    def run(with_statistics: bool) -> float:
        statistics_ = ExperimentStatistics(0, 12, _Plans()) if with_statistics else None
        state = PartitionState(0, DedupPolicy(), statistics_)
        started = time.perf_counter()
        for offset, view in enumerate(views):
            state.process(offset, view, catalog)
            if offset % args.apply_flush_every == args.apply_flush_every - 1:
                state.flush(catalog)
        state.flush(catalog)
        return len(views) / (time.perf_counter() - started)

    without, with_ = [], []
    for _ in range(args.rounds_apply):
        without.append(run(False))
        with_.append(run(True))
    a, b = statistics.median(with_), statistics.median(without)
    print(f"stage one: {a:,.0f} events/s with the statistics, {b:,.0f} without ({a / b:.2f})")
    return [Figure(NAME, "stage one's state, events/s with the streamed statistics", round(a),
                   "events/s", "the same without them", round(b), "", COMMAND)]  # fmt: skip


def worker_rate(args: argparse.Namespace) -> list[Figure]:
    """Events/s of a ``sextant processor`` worker catching up on the same waiting events,
    with the statistics off then on (each its own consumer group), on one broker."""
    import os

    from bench.processor_throughput import Worker

    with bootstrap_server(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as folder:
        kafka = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
        ensure_topics(kafka)
        publisher = ConfigPublisher(kafka)
        publisher.put([Project(id=PROJECT, project_id=PROJECT, name="Bench"), *METRICS.values(),
                       EXPERIMENT])  # fmt: skip
        publisher.close()
        producer = make_producer(kafka)
        topic = topic_name(Topic.EVENTS_RAW, kafka.topic_prefix)
        rng = random.Random(2)
        now = datetime.now(UTC)
        for i in range(args.worker_events):
            user = f"user-{rng.randrange(20_000)}"
            properties: dict[str, Any]
            if i % 10 == 0:
                variation = rng.choice(["control", "one-page"])
                name = EXPERIMENT_VIEWED
                properties = {"experiment_id": EXPERIMENT.id, "variation_id": variation}
            else:
                name, properties = rng.choice(["Order Completed", "Page Viewed"]), {"revenue": 9.5}
            at = now + timedelta(milliseconds=i)
            envelope = Envelope(
                project_id=PROJECT, type=EventType.TRACK, event=name, distinct_id=user,
                user_id=user, properties=properties, timestamp=at, received_at=at,
                message_id=str(uuid.uuid4()),
            )  # fmt: skip
            value = orjson.dumps(envelope.model_dump(mode="json", by_alias=True))
            producer.send(topic, key=envelope.kafka_key().encode(), value=value)
        producer.flush()
        producer.close()
        rates: dict[str, list[float]] = {"false": [], "true": []}
        cpu: dict[str, list[float]] = {"false": [], "true": []}
        for round_ in range(args.worker_rounds):
            for on in ("false", "true"):
                # The worker's own settings, as a supervisor would set them for the process.
                os.environ["SEXTANT_PROCESSOR_EXPERIMENT_STATISTICS"] = on
                os.environ["SEXTANT_PROCESSOR_GROUP"] = f"{kafka.topic_prefix}-{on}-{round_}"
                worker = Worker(kafka, Path(folder) / f"{on}-{round_}")
                try:
                    rate, us_per_event = _catch_up_with_cpu(worker, args.worker_events)
                finally:
                    worker.stop()
                rates[on].append(rate)
                cpu[on].append(us_per_event)
            print(f"round {round_}: {rates['true'][-1]:,.0f} events/s with the statistics "
                  f"({cpu['true'][-1]:.1f} µs of CPU an event), {rates['false'][-1]:,.0f} "
                  f"without ({cpu['false'][-1]:.1f} µs)")  # fmt: skip
        for name in ("SEXTANT_PROCESSOR_EXPERIMENT_STATISTICS", "SEXTANT_PROCESSOR_GROUP"):
            os.environ.pop(name, None)
    a, b = statistics.median(rates["true"]), statistics.median(rates["false"])
    cpu_on, cpu_off = statistics.median(cpu["true"]), statistics.median(cpu["false"])
    print(f"worker (medians): {a:,.0f} events/s with the statistics, {b:,.0f} without "
          f"({a / b:.2f}); CPU {cpu_on:.1f} and {cpu_off:.1f} µs an event")  # fmt: skip
    label = (
        f"processor worker catching up on {args.worker_events:,} events, events/s"
        f" (median of {args.worker_rounds} alternating rounds)"
    )
    off = "the same worker without them (SEXTANT_PROCESSOR_EXPERIMENT_STATISTICS=false)"
    return [
        Figure(NAME, f"{label} with the streamed statistics", round(a), "events/s", off,
               round(b), "", COMMAND),
        # Inverted so that the ratio reads as the rate's: the CPU's share of the baseline's.
        Figure(NAME, "the same worker's CPU an event, without the streamed statistics",
               round(cpu_off, 1), "µs", "with them", round(cpu_on, 1), "", COMMAND),
    ]  # fmt: skip


def heap(args: argparse.Namespace) -> list[Figure]:
    """Tracked objects and a full collection's CPU with ``--heap-events`` waiting events."""
    settle_heap()
    state = ExperimentStatistics(0, 12, _Plans())
    rng, t0 = random.Random(1), START.timestamp()
    for i in range(args.heap_events):
        user, at = f"user-{rng.randrange(200_000)}", t0 + i * 0.001
        name = "Order Completed" if i % 2 else "Page Viewed"
        state.apply(i, _track(i, name, user, {"revenue": 12.5}, at), {})
        if i % 5_000 == 4_999:
            state.flush(i, {}, START)
    waiting = sum(len(b.entries) for b in state.buffers.values())
    gc.collect()
    tracked = len(gc.get_objects())
    spent = []
    for _ in range(5):
        began = time.process_time()
        gc.collect()
        spent.append(time.process_time() - began)
    print(f"heap: {waiting:,} waiting events, {tracked:,} tracked objects, "
          f"a full collection {min(spent) * 1000:.0f} ms")  # fmt: skip
    return [
        Figure(NAME, f"objects the garbage collector tracks with {waiting:,} waiting events",
               tracked, "objects", command=COMMAND),
        Figure(NAME, f"CPU of a full garbage collection with {waiting:,} waiting events",
               round(min(spent) * 1000), "ms", command=COMMAND),
    ]  # fmt: skip


def _catch_up_with_cpu(worker: Any, count: int) -> tuple[float, float]:
    """Events/s of the catch-up, and the worker's CPU µs an event over it."""
    from bench.collector_throughput import cpu_seconds

    while worker.counter("sextant_processor_events_total") == 0:
        time.sleep(0.05)  # polling the worker's progress
    done_before = worker.counter("sextant_processor_events_total")
    spent_before = cpu_seconds([worker.process.pid])
    rate = catch_up(worker, count)
    spent = cpu_seconds([worker.process.pid]) - spent_before
    return rate, spent / (count - done_before) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--apply-events", type=int, default=200_000)
    parser.add_argument("--rounds-apply", type=int, default=3)
    parser.add_argument("--apply-flush-every", type=int, default=5_000)
    parser.add_argument("--worker-events", type=int, default=200_000)
    parser.add_argument("--worker-rounds", type=int, default=3)
    parser.add_argument("--heap-events", type=int, default=1_000_000)
    parser.add_argument("--bootstrap", default=None)
    parts_named = ["latency", "freshness", "stage_one", "worker", "heap"]
    parser.add_argument("--only", nargs="+", choices=parts_named, default=[])
    args = parser.parse_args()
    figures: list[Figure] = []
    parts = (
        ("stage_one", stage_one),
        ("worker", worker_rate),
        ("heap", heap),
        ("latency", latency),
        ("freshness", freshness),
    )
    for name, part in parts:
        if not args.only or name in args.only:
            figures += part(args)
    report(NAME, figures)


if __name__ == "__main__":
    main()
