"""Processor: events/s per worker, freshness under a steady load, and the sketches' errors.

In one run, on one broker:

1. Baseline: a plain consumer (kafka-python, through ``sextant.core.kafka``) reading the same
   pre-produced events and parsing them with orjson: records/s.
2. One ``sextant processor`` worker catching up on those events with six metric definitions
   (count with breakdown, unique users, sum, mean, percentiles, conversion): events/s.
3. The worker under steady open-loop loads (``--lower-rates`` with the one worker, then
   ``--rate`` events/s with ``--workers`` workers sharing the consumer group's partitions,
   each for ``--seconds`` after a 10 s warm-up): freshness, from the broker's
   acknowledgement of a probe event (one every 0.7 s inside the load, each with its own
   breakdown value) to the first record counting it, p50 and p95, three times: on the
   ``partials`` topic (stage one's output: where a delay comes from), on the
   ``metric_points`` topic (what the gateway's live stream follows) and in the warehouse,
   read through a ``sextant gateway`` process (it runs the sink with its default batching
   over the embedded engine) whose series API is polled every ``WAREHOUSE_POLL_S`` from the
   first steady load on: a probe counts as visible at the first poll that shows it. The load
   is sent through the collector's own producer (``BatchingProducer``), and the collector
   answers after that same acknowledgement, so this is collector-ack → metric point.
4. HyperLogLog relative error on 1,000,000 distinct users (several independent sets), and the
   t-digest's rank error on 1,000,000 log-normal values, beside the exact answers.

Run: ``python -m bench.processor_throughput [--bootstrap HOST:PORT]``. Without ``--bootstrap``
it starts a private broker. Producer, broker and processor share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import Figure, write_results
from bench.common import bootstrap_server as broker
from bench.profile_summary import report
from sextant.core.aio_kafka import BatchingProducer, OutgoingRecord
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import TopicPartition, ensure_topics, make_consumer, make_producer
from sextant.core.settings import KafkaSection
from sextant.processor.settings import ProcessorSettings
from sextant.schemas.config import (
    ApiKey,
    Experiment,
    KeyKind,
    MetricDefinition,
    Project,
    PropertyFilter,
    Variant,
    hash_key,
)
from sextant.schemas.events import EXPERIMENT_VIEWED, Envelope, EventType
from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import (
    HLL_PRECISION,
    HLL_REGISTERS,
    HLL_RELATIVE_ERROR,
    TDigest,
    hll_add,
    hll_estimate,
    hll_pack,
)
from sextant.schemas.topics import Topic, internal_topic_name, processor_group, topic_name

NAME = "processor_throughput"
COMMAND = "python -m bench.processor_throughput"
PROFILED_FUNCTIONS = (
    "_stage_one",
    "_apply_events",
    "parse",
    "process",
    "_flush_stage_one",
    "_stage_two",
    "_accept_partials",
    "_flush_stage_two",
    "_tick",
    "send",
    "on_message",
    "_drain_messages",
    "getmany",
)


def definitions(project: str) -> list[MetricDefinition]:
    common: dict[str, Any] = {"project_id": project, "event": "Order Completed"}
    return [
        MetricDefinition(
            id="orders",
            metric_kind="count",
            breakdown="country",
            filters=[PropertyFilter(property="amount", op="gt", value=0)],
            **common,
        ),
        MetricDefinition(id="buyers", metric_kind="unique_users", **common),
        MetricDefinition(id="revenue", metric_kind="sum", property="amount", **common),
        MetricDefinition(id="basket", metric_kind="mean", property="amount", **common),
        MetricDefinition(
            id="amounts", metric_kind="percentiles", property="amount", breakdown="plan", **common
        ),
        MetricDefinition(
            id="checkout",
            metric_kind="conversion",
            project_id=project,
            event="Checkout Started",
            conversion_event="Order Completed",
        ),
    ]


USERS = 5000
EXPOSURE_EVERY = 20
"""With ``--experiment``: one event in this many is an exposure to it (each user's first
event of every ``USERS * EXPOSURE_EVERY``)."""


def experiment(project: str) -> Experiment:
    """An experiment on every user of the load, judged on four of its metrics (with CUPED):
    the processor streams its statistics."""
    return Experiment(
        project_id=project,
        id="checkout-flow",
        variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
        primary_metric="revenue",
        guardrail_metrics=["orders", "buyers", "basket"],
    )


def envelope(project: str, i: int, at: datetime, exposures: bool = False) -> Envelope:
    user = f"user-{i % USERS}"
    properties: dict[str, Any]
    if exposures and i // USERS % EXPOSURE_EVERY == 0:
        variation = ("control", "one-page")[i % USERS % 2]
        name, properties = (
            EXPERIMENT_VIEWED,
            {"experiment_id": "checkout-flow", "variation_id": variation},
        )
    else:
        name = "Checkout Started" if i % 4 == 0 else "Order Completed"
        properties = {
            "amount": round((i % 97) * 1.37, 2),
            "plan": ("free", "pro", "team")[i % 3],
            "country": ("fr", "de", "us", "es", "it", "pl", "nl")[i % 7],
            "path": "/checkout/confirm",
        }
    return Envelope(
        project_id=project,
        type=EventType.TRACK,
        event=name,
        distinct_id=user,
        user_id=user,
        properties=properties,
        context={"library": {"name": "bench", "version": "1"}},
        timestamp=at,
        received_at=at,
        message_id=str(uuid.uuid4()),
    )


def encoded(e: Envelope) -> tuple[bytes, bytes]:
    return e.kafka_key().encode(), orjson.dumps(e.model_dump(mode="json", by_alias=True))


def answers_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).is_success
    except httpx.HTTPError:
        return False


def end(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask ``process`` to stop with ``sig``; kill it if it has not within 30 s."""
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def spied(command: list[str], profile: Path | None) -> list[str]:
    """``command``, recorded by py-spy into ``profile`` when one is given.

    py-spy must start the process: attaching to a process that is not a child is refused
    where ptrace is limited to descendants. SIGINT makes it write the file."""
    if profile is None:
        return command
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [
        spy,
        "record",
        "--nonblocking",
        "--threads",
        "-r",
        "100",
        "-f",
        "raw",
        "-o",
        str(profile),
        "--",
        *command,
    ]


class Worker:
    """One ``sextant processor`` process and its /metrics."""

    def __init__(
        self,
        settings: KafkaSection,
        data_dir: Path,
        profile: Path | None = None,
        module: str = "sextant.processor",
    ) -> None:
        from tests.infra import free_port

        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "SEXTANT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SEXTANT_TOPIC_PREFIX": settings.topic_prefix,
            "SEXTANT_PROCESSOR_PORT": str(self.port),
            "SEXTANT_PROCESSOR_DATA_DIR": str(data_dir),
            "SEXTANT_LOG_LEVEL": "WARNING",
        }
        self.profile = profile
        self.process = subprocess.Popen(
            spied([sys.executable, "-m", module], profile),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(data_dir / "processor.log").open("wb"),
        )

    def counter(self, name: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def ready(self) -> bool:
        return answers_ready(f"http://127.0.0.1:{self.port}")

    def stop(self) -> None:
        # SIGINT makes py-spy write its profile.
        end(self.process, signal.SIGINT if self.profile is not None else signal.SIGTERM)


def produce(settings: KafkaSection, project: str, count: int, exposures: bool = False) -> None:
    producer = make_producer(settings)
    topic = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    now = datetime.now(UTC)
    for i in range(count):
        at = now + timedelta(milliseconds=i % 30_000)
        key, value = encoded(envelope(project, i, at, exposures))
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def baseline_read(settings: KafkaSection, count: int) -> float:
    """Records/s of a plain consumer reading and parsing ``count`` records."""
    topic = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    consumer = make_consumer(settings, None, fetch_max_bytes=50 * 2**20)
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = 0
    started = time.perf_counter()
    while seen < count:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                orjson.loads(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def catch_up(worker: Worker, count: int, timeout_s: float = 600) -> float:
    """Events/s while the worker works through ``count`` waiting events."""
    deadline = time.monotonic() + timeout_s
    while worker.counter("sextant_processor_events_total") == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the processor never started")
        time.sleep(0.05)  # polling the worker's progress
    first = worker.counter("sextant_processor_events_total")
    started = time.perf_counter()
    while (done := worker.counter("sextant_processor_events_total")) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"processed {done} of {count}")
        time.sleep(0.1)  # polling the worker's progress
    return (count - first) / (time.perf_counter() - started)


def probe_metric(load: int) -> str:
    """Each load has its probe metric of its own: a rebalance re-emits the restored windows
    of earlier loads, which must not pass for this load's probes."""
    return f"probe-{load}"


PROBE_EVERY_S = 0.7  # at most ~86 probes a minute: under the breakdown limit of 100


@dataclass
class Freshness:
    """Seconds from each probe's broker acknowledgement to its first partial (stage one's
    output), its first metric point, and its first appearance in the warehouse."""

    partials: list[float]
    topic: list[float]
    warehouse: list[float]


SeenIn = Callable[[bytes, bytes], Iterable[str]]
"""A record's key and value → the breakdown values it counts (of the followed metric)."""


def in_points(project: str, metric: str) -> SeenIn:
    wanted = f"{project}:{metric}".encode()

    def seen(key: bytes, value: bytes) -> Iterable[str]:
        if key != wanted:
            return ()
        point = MetricPoint.model_validate_json(value)
        return (point.breakdown,) if point.count else ()

    return seen


def in_partials(project: str, metric: str) -> SeenIn:
    prefix = f"{project}|{metric}|".encode()

    def seen(key: bytes, value: bytes) -> Iterable[str]:
        if not key.startswith(prefix):
            return ()
        groups: dict[str, dict[str, Any]] = orjson.loads(value)["g"]
        return [name for name, group in groups.items() if group["c"]]

    return seen


class TopicTail:
    """When each breakdown value of one metric first arrives on a topic of the processor's
    (``partials``: stage one's output; ``metric_points``: stage two's)."""

    def __init__(self, settings: KafkaSection, topic: str, seen_in: SeenIn) -> None:
        """``topic``: the full name."""
        self.settings, self.topic, self.seen_in = settings, topic, seen_in
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"{topic} could not be followed")

    def _run(self) -> None:
        topic = self.topic
        # The broker answers a fetch as soon as one record is there, whatever the longest
        # wait: a short wait only made it answer ~100 empty fetches a second.
        consumer = make_consumer(self.settings, None)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # resolves the end offsets now, before the load starts
        self._ready.set()
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                arrived = time.time()
                for record in records:
                    for name in self.seen_in(record.key or b"", record.value or b""):
                        self.seen.setdefault(name, arrived)
        consumer.close()

    def first_seen(self) -> dict[str, float]:
        """Breakdown value → when a record first counted it."""
        return dict(self.seen)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WarehouseTail:
    """When each breakdown value of one metric first shows in the warehouse: the gateway's
    series API (which reads ``metric_points``) polled every ``WAREHOUSE_POLL_S``."""

    def __init__(self, gateway: Gateway, metric: str) -> None:
        self.gateway, self.metric = gateway, metric
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.gateway.url, headers={"Authorization": f"Bearer {READ_KEY}"}
        ) as client:
            while not self._stop.wait(WAREHOUSE_POLL_S):
                now = datetime.now(UTC)
                params = {
                    "from": (now - timedelta(minutes=5)).isoformat(),
                    "to": (now + timedelta(minutes=1)).isoformat(),
                    "breakdown": "true",
                }
                try:
                    answer = client.get(f"/v1/metrics/{self.metric}/series", params=params)
                except httpx.HTTPError:
                    continue
                arrived = time.time()
                if not answer.is_success:
                    continue
                for series in answer.json()["series"]:
                    if any(point["count"] for point in series["points"]):
                        self.seen.setdefault(series["breakdown"], arrived)

    def first_seen(self) -> dict[str, float]:
        return dict(self.seen)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


WAREHOUSE_POLL_S = 0.2
"""Each poll is a series query of the gateway (about 20 ms of its CPU): polled every 50 ms,
the measurement alone took 45 % of a core beside the pipeline it measures. A probe is seen up
to this much later than it became visible, so the warehouse figures are conservative."""
READ_KEY = "sx_read_bench_0000000000000000000"

STAGE_BATCHES_MS = 1000 * sum(
    ProcessorSettings.model_fields[name].default
    for name in ("processor_flush_interval_seconds", "processor_merge_interval_seconds")
)
"""What batching alone adds at most before a point leaves the processor."""

WARM_UP_S = 10.0
"""Each load runs this long before its first probe: the workers settle at the new rate (and a
worker that just joined has its partitions' windows restored and re-sent)."""


def steady_load(
    settings: KafkaSection,
    gateway: Gateway,
    project: str,
    rate: float,
    seconds: float,
    load: int,
    exposures: bool = False,
) -> tuple[Freshness, float, int]:
    """Send ``rate`` events/s for ``WARM_UP_S`` + ``seconds``, with a probe every
    ``PROBE_EVERY_S`` after the warm-up; returns each probe's freshness (broker ack → first
    metric point counting it, on the topic and in the warehouse), the rate achieved, the
    count.

    A probe is one more event of the load (a random user, so a random partition) carrying a
    unique value of the load's probe metric's breakdown: the first point with that value
    tells exactly when that event became visible.
    """
    metric = probe_metric(load)
    prefix = settings.topic_prefix
    partials = TopicTail(
        settings,
        internal_topic_name(Topic.PARTIALS, processor_group(prefix)),
        in_partials(project, metric),
    )
    tail = TopicTail(settings, topic_name(Topic.METRIC_POINTS, prefix), in_points(project, metric))
    stored = WarehouseTail(gateway, metric)
    acked, achieved, sent = asyncio.run(
        send_steadily(settings, project, rate, seconds, load, exposures)
    )
    probes = len(acked)
    deadline = time.monotonic() + 180
    while (
        time.monotonic() < deadline
        and min(len(tail.first_seen()), len(stored.first_seen())) < probes
    ):
        time.sleep(0.2)  # waiting for the last probes, with a deadline
    for follower in (partials, tail, stored):
        follower.stop()
    in_stage_one, on_topic, in_warehouse = (f.first_seen() for f in (partials, tail, stored))
    freshness = Freshness(
        [in_stage_one[name] - at for name, at in acked.items() if name in in_stage_one],
        [on_topic[name] - at for name, at in acked.items() if name in on_topic],
        [in_warehouse[name] - at for name, at in acked.items() if name in in_warehouse],
    )
    return freshness, achieved, sent


SEND_EVERY_S = 0.005


async def send_steadily(
    settings: KafkaSection,
    project: str,
    rate: float,
    seconds: float,
    load: int,
    exposures: bool = False,
) -> tuple[dict[str, float], float, int]:
    """The open loop of :func:`steady_load`, through the collector's own producer (what the
    collector's acknowledgement waits for), so the load generator costs the machine about
    what a collector's Kafka side would; returns each probe's acknowledgement time, the rate
    achieved and the count sent.

    Every ``SEND_EVERY_S`` the events due are handed over in one call; each probe goes in a
    call of its own, whose return is its acknowledgement."""
    producer = BatchingProducer(settings)
    await producer.start()
    topic = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    now = datetime.now(UTC)
    cycle = USERS * (EXPOSURE_EVERY if exposures else 1)
    templates = [envelope(project, i, now, exposures) for i in range(cycle)]
    keys = [e.kafka_key().encode() for e in templates]
    bodies = [e.model_dump(mode="json", by_alias=True) for e in templates]
    acked: dict[str, float] = {}
    in_flight: set[asyncio.Task[None]] = set()

    async def send(records: list[OutgoingRecord], probe: str | None = None) -> None:
        await producer.send(records, timeout_s=30)
        if probe is not None:
            acked[probe] = time.time()

    def record(i: int, stamp: str, changes: dict[str, Any]) -> OutgoingRecord:
        body = bodies[i % len(bodies)] | {
            "timestamp": stamp,
            "received_at": stamp,
            "messageId": str(uuid.uuid4()),
        }
        return OutgoingRecord(topic, keys[i % len(keys)], orjson.dumps(body | changes))

    def start(records: list[OutgoingRecord], probe: str | None = None) -> None:
        task = asyncio.create_task(send(records, probe))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    sent = probes = 0
    started = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - started) < WARM_UP_S + seconds:
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            due = int(elapsed * rate)
            if elapsed >= WARM_UP_S + probes * PROBE_EVERY_S and due > sent:
                name = f"probe-{probes}"
                probe = {"event": f"Probe {load}", "properties": {"probe": name}}
                start([record(sent, stamp, probe)], name)
                probes += 1
                sent += 1
            if due > sent:
                start([record(i, stamp, {}) for i in range(sent, due)])
                sent = due
            await asyncio.sleep(SEND_EVERY_S)
        achieved = sent / (time.perf_counter() - started)
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    return acked, achieved, sent


def hll_errors(trials: int, users: int) -> list[float]:
    errors = []
    for t in range(trials):
        registers = bytearray(HLL_REGISTERS)
        for i in range(users):
            hll_add(registers, f"t{t}-user-{i}")
        errors.append((hll_estimate(hll_pack(registers)) - users) / users)
    return errors


def digest_rank_errors(count: int) -> dict[float, float]:
    rng = random.Random(11)
    values = [rng.lognormvariate(0, 1) for _ in range(count)]
    digest = TDigest()
    for v in values:
        digest.add(v)
    values.sort()
    return {
        q: bisect.bisect_left(values, digest.quantile(q)) / count - q
        for q in (0.5, 0.9, 0.95, 0.99)
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Gateway:
    """One ``sextant gateway`` process; over an embedded warehouse it runs the sink inside
    (the one process that owns the engine), with the sink's default batching."""

    def __init__(self, settings: KafkaSection, root: Path, profile: Path | None = None) -> None:
        from tests.infra import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = os.environ | {
            "SEXTANT_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SEXTANT_TOPIC_PREFIX": settings.topic_prefix,
            "SEXTANT_CLICKHOUSE_URL": f"chdb://{root}",
            "SEXTANT_GATEWAY_PORT": str(port),
            "SEXTANT_LOG_LEVEL": "WARNING",
        }
        root.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        self.process = subprocess.Popen(
            spied([sys.executable, "-m", "sextant.cli.main", "gateway"], profile),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(root.parent / "gateway.log").open("wb"),
        )

    def ready(self) -> bool:
        return answers_ready(self.url)

    def stop(self) -> None:
        end(self.process, signal.SIGINT if self.profile is not None else signal.SIGTERM)


def wait_processed(workers: list[Worker], total: int, timeout_s: float = 300) -> None:
    """Until the workers have processed ``total`` events between them (no backlog left)."""
    deadline = time.monotonic() + timeout_s
    while sum(w.counter("sextant_processor_events_total") for w in workers) < total:
        if time.monotonic() > deadline:
            raise TimeoutError("the processor did not catch up")
        time.sleep(0.2)  # polling the workers' progress


def wait_ready(workers: Sequence[Worker | Gateway], timeout_s: float = 300) -> None:
    """Until every worker has its partitions (the group's rebalance is over)."""
    deadline = time.monotonic() + timeout_s
    while not all(w.ready() for w in workers):
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not settle")
        time.sleep(0.2)  # polling the workers' readiness


def freshness_figures(label: str, freshness: Freshness, achieved: float, sent: int) -> list[Figure]:
    figures = []
    for where, values in (
        ("partials topic (stage one)", freshness.partials),
        ("metric_points topic", freshness.topic),
        ("metric_points table (through the sink)", freshness.warehouse),
    ):
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        print(
            f"  {label}: {achieved:,.0f} events/s sent: freshness to the {where} "
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms ({len(values)} samples)"
        )
        figures += [
            Figure(
                NAME,
                f"freshness {q}, broker ack → {where}, {label} ({achieved:,.0f} events/s)",
                value * 1000,
                "ms",
                baseline="the two stages' longest batches together",
                baseline_value=STAGE_BATCHES_MS,
                target="p95 < 1000 ms",
                command=COMMAND,
            )
            for q, value in (("p50", p50), ("p95", p95))
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--lower-rates", type=float, nargs="*", default=[1_000, 2_500])
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--workers", type=int, default=2, help="workers sharing the group at --rate"
    )
    parser.add_argument("--hll-trials", type=int, default=5)
    parser.add_argument(
        "--profile", type=Path, help="record the loaded worker with py-spy into this file"
    )
    parser.add_argument(
        "--profile-gateway", type=Path, help="record the gateway (and its sink) with py-spy"
    )
    parser.add_argument(
        "--experiment",
        action="store_true",
        help="an experiment on four of the metrics, one event in 20 an exposure: the worker "
        "streams its statistics (figures in processor_throughput_experiment.json)",
    )
    parser.add_argument(
        "--statistics-off",
        action="store_true",
        help="with --experiment: the workers stream no statistics, the rest the same "
        "(figures in processor_throughput_experiment_off.json)",
    )
    args = parser.parse_args()
    if args.statistics_off:
        # The workers' own setting, as a supervisor would set it for their processes.
        os.environ["SEXTANT_PROCESSOR_EXPERIMENT_STATISTICS"] = "false"

    figures: list[Figure] = []
    with broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        loaded, empty = (
            KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
            for _ in range(2)
        )
        for settings in (loaded, empty):
            ensure_topics(settings, partitions=args.partitions)
        publisher = ConfigPublisher(loaded)
        loads = [*args.lower_rates, args.rate]
        probes = [
            MetricDefinition(
                id=probe_metric(load),
                project_id="steady",
                metric_kind="count",
                event=f"Probe {load}",
                breakdown="probe",
                breakdown_limit=100,
            )
            for load in range(len(loads))
        ]
        publisher.put(
            [
                Project(id="bench", project_id="bench", name="Bench"),
                Project(id="steady", project_id="steady", name="Steady"),
                ApiKey(
                    id="steady-read",
                    project_id="steady",
                    key_kind=KeyKind.READ,
                    key_hash=hash_key(READ_KEY),
                ),
                *definitions("bench"),
                *definitions("steady"),
                *([experiment("bench"), experiment("steady")] if args.experiment else []),
                *probes,
            ]
        )
        publisher.close()
        print(f"producing {args.events:,} events twice ({args.partitions} partitions)")
        produce(loaded, "bench", args.events, args.experiment)
        produce(empty, "bench", args.events, args.experiment)
        base = baseline_read(loaded, args.events)
        print(f"  plain consumer + JSON parse: {base:,.0f} records/s")
        bare = Worker(empty, Path(tmp) / "empty")
        try:
            bare_rate = catch_up(bare, args.events)
        finally:
            bare.stop()
        print(f"  processor worker, no metric defined: {bare_rate:,.0f} events/s")
        workers = [Worker(loaded, Path(tmp) / "loaded", args.profile)]
        gateway = None
        try:
            rate = catch_up(workers[0], args.events)
            print(f"  processor worker, 6 metrics: {rate:,.0f} events/s")
            gateway = Gateway(
                loaded, Path(tmp) / "warehouse", args.profile_gateway
            )  # after: it shares the cores
            wait_ready([gateway])
            steady = []
            total = args.events
            for i, rate_of_load in enumerate(args.lower_rates):
                measured = steady_load(
                    loaded, gateway, "steady", rate_of_load, args.seconds, i, args.experiment
                )
                steady.append((rate_of_load, 1, measured))
                total += measured[2]
                wait_processed(workers, total)
            workers += [Worker(loaded, Path(tmp) / f"loaded-{i}") for i in range(1, args.workers)]
            wait_ready(workers)
            measured = steady_load(
                loaded, gateway, "steady", args.rate, args.seconds, len(loads) - 1, args.experiment
            )
            steady.append((args.rate, len(workers), measured))
        finally:
            if gateway is not None:
                gateway.stop()
            for worker in workers:
                worker.stop()
    for profile in (args.profile, args.profile_gateway):
        if profile is not None:
            print(report(profile, PROFILED_FUNCTIONS))
    figures += [
        Figure(
            NAME,
            "events/s per processor worker, 6 metrics (catching up)",
            rate,
            "events/s",
            baseline="the same worker with no metric defined",
            baseline_value=bare_rate,
            command=COMMAND,
        ),
        Figure(
            NAME,
            "events/s per processor worker, no metric defined (catching up)",
            bare_rate,
            "events/s",
            baseline="plain kafka-python consumer + orjson parse",
            baseline_value=base,
            command=COMMAND,
        ),
    ]
    for load, count, measured in steady:
        label = f"steady at {load:,.0f}/s, {count} worker{'s' if count > 1 else ''}"
        figures += freshness_figures(label, *measured)
    hll = hll_errors(args.hll_trials, 1_000_000)
    rms = math.sqrt(statistics.fmean(e * e for e in hll))
    print(f"  HyperLogLog on 1,000,000 users: errors {[f'{e:+.2%}' for e in hll]}, RMS {rms:.2%}")
    ranks = digest_rank_errors(1_000_000)
    worst = max(abs(e) for e in ranks.values())
    print(f"  t-digest rank errors on 1,000,000 values: {ranks}")
    figures += [
        Figure(
            NAME,
            f"HyperLogLog RMS relative error, 1,000,000 users, {args.hll_trials} sets",
            rms * 100,
            "%",
            baseline=f"theoretical standard error 1.04/sqrt(2^{HLL_PRECISION})",
            baseline_value=HLL_RELATIVE_ERROR * 100,
            target="< 1 %",
            command=COMMAND,
        ),
        Figure(
            NAME,
            "HyperLogLog worst relative error, 1,000,000 users",
            max(abs(e) for e in hll) * 100,
            "%",
            command=COMMAND,
        ),
        Figure(
            NAME,
            "t-digest worst rank error at p50/p90/p95/p99, 1,000,000 values",
            worst * 100,
            "% of rank",
            command=COMMAND,
        ),
    ]
    if args.experiment:
        off = args.statistics_off
        streamed = "statistics off" if off else "statistics streamed"
        figures = [
            replace(
                f,
                benchmark=f"{NAME}_experiment{'_off' if off else ''}",
                figure=f"{f.figure}; an experiment, {streamed}",
            )
            for f in figures
        ]
    print(write_results(figures[0].benchmark, figures))


if __name__ == "__main__":
    main()
