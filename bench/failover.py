"""``make failover``: a Kafka cluster loses brokers under load; every event is accounted for.

A three-node local cluster (``tests/kafka_cluster.py``: KRaft nodes that are brokers and
controllers both, started by ``deploy/local/kafka.sh``), Sextant's topics on it with three
replicas and two in sync for a write, and the parts as processes on loopback: the collector
with two workers, two processor workers and the sink (owning an embedded warehouse). A load
generator sends batches at a fixed rate, each in a request of its own, and re-sends a batch
that was not acknowledged (same messageIds) a second later, as SDKs do. Meanwhile:

1. ``kill -9`` the node that leads most of the busiest ``events.raw`` partitions; it stays
   down for ``--down`` seconds, then starts again;
2. once every replica is in sync and every part ready, ``kill -9`` the active controller
   (the leader of the KRaft quorum), down as long, then started again.

Then every event is accounted for as the soak does (``bench.soak.account``): acknowledged by
the collector, in ``events.raw``, rows in ``events``, the count metric's total; lost,
duplicated. For each fault: the collector's 503s and other failed answers, the p99 of the
acknowledged requests' latency (from their scheduled send) from the kill until every part is
healthy again, how long the collector went without acknowledging anything, and how long
until every part was ready and every replica in sync.

    python -m bench.failover --runs 3                  # make failover: the figures
    python -m bench.failover --short                   # the minute in `make test`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from bench.common import Figure, write_results
from bench.soak import (
    MAX_REBALANCE_SECONDS,
    WRITE_KEY,
    Account,
    Part,
    Tally,
    _batch,
    _part,
    _publish_config,
    _supervised_ready,
    account,
)
from sextant.core.kafka import end_offsets, ensure_topics
from sextant.core.kafka_cluster import deployment_topics, raise_replication
from sextant.core.settings import KafkaSection
from sextant.schemas.topics import Topic, topic_name
from tests.infra import wait_for
from tests.kafka_cluster import LocalCluster

PREFIX = "failover"
RETRY_AFTER_S = 1.0
"""An SDK's first backoff: a batch that failed is sent again this long after."""
HEALTHY_WITHIN_S = MAX_REBALANCE_SECONDS + 330
"""Room for a processor's rebalance limit, its restart and recovery, on a shared machine."""
console = Console()


@dataclass(frozen=True)
class Timing:
    rate: int
    down_s: float
    """How long a killed node stays down."""
    warmup_s: float
    """Load before the first fault."""
    between_s: float
    """Load between one fault's recovery and the next fault."""
    tail_s: float
    """Load after the last recovery."""


SHORT = Timing(rate=150, down_s=8, warmup_s=6, between_s=3, tail_s=4)
LONG = Timing(rate=200, down_s=30, warmup_s=30, between_s=20, tail_s=30)


@dataclass(frozen=True)
class Answer:
    at: float
    """Scheduled send, seconds from the start of the load."""
    latency_s: float
    status: int
    """HTTP status; 0 when no answer came (connection refused, timeout)."""


@dataclass
class Fault:
    label: str
    node: int
    killed_at: float
    restarted_at: float = math.nan
    in_sync_at: float = math.nan
    """Every replica of every topic of the deployment in sync again."""
    healthy_at: float = math.nan
    """... and every part ready."""


@dataclass(frozen=True)
class FaultFigures:
    label: str
    node: int
    requests: int
    unavailable: int
    """503 answers."""
    failed: int
    """Every answer that was not 200 (503s included) and every request without an answer."""
    p99_ms: float
    """Of the acknowledged requests sent between the kill and healthy_at."""
    no_ack_s: float
    """The longest time, after the kill, in which no request sent was acknowledged."""
    healthy_after_kill_s: float
    healthy_after_restart_s: float


@dataclass
class ClusterPipeline:
    root: Path
    cluster: LocalCluster
    kafka: KafkaSection
    warehouse_url: str
    collector: Part
    processors: list[Part]
    sink: Part

    @property
    def parts(self) -> list[Part]:
        return [self.collector, *self.processors, self.sink]


def start_pipeline(root: Path) -> ClusterPipeline:
    cluster = LocalCluster(root / "kafka")
    cluster.start()
    kafka = KafkaSection(kafka_bootstrap=cluster.bootstrap, topic_prefix=PREFIX)
    ensure_topics(kafka, partitions=6)
    _publish_config(kafka)
    warehouse_url = f"chdb://{root / 'warehouse'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": cluster.bootstrap,
        "SEXTANT_TOPIC_PREFIX": PREFIX,
        "SEXTANT_CLICKHOUSE_URL": warehouse_url,
        "SEXTANT_LOG_LEVEL": "WARNING",
    }
    processors = [
        _part(
            f"processor-{i}",
            root,
            env
            | {
                "SEXTANT_PROCESSOR_DATA_DIR": str(root / f"p{i}"),
                "SEXTANT_LOG_LEVEL": "INFO",
                "SEXTANT_PROCESSOR_MAX_REBALANCE_SECONDS": str(MAX_REBALANCE_SECONDS),
            },
            "SEXTANT_PROCESSOR_PORT",
        )
        for i in (1, 2)
    ]
    collector = _part(
        "collector", root, env | {"SEXTANT_COLLECTOR_WORKERS": "2"}, "SEXTANT_COLLECTOR_PORT"
    )
    pipeline = ClusterPipeline(
        root=root,
        cluster=cluster,
        kafka=kafka,
        warehouse_url=warehouse_url,
        collector=collector,
        processors=processors,
        sink=_part("sink", root, env, "SEXTANT_SINK_PORT"),
    )
    for part in pipeline.parts:
        part.start()
    for part in pipeline.parts:
        wait_for(part.ready, 180, 0.25, f"{part.name} ready")
    # faust makes its tables' changelogs with one replica; `sextant topics` gives every
    # topic of the deployment three, as it would after the processor's first start.
    raised = raise_replication(kafka)
    console.print(f"replicas added to {', '.join(raised) or 'no topic'}")
    state = cluster.state(deployment_topics(kafka))
    single = sorted({p.topic for p in state.partitions if len(p.replicas) < len(cluster.nodes)})
    if single:
        raise RuntimeError(f"topics without a replica on every node: {single}")
    return pipeline


async def generate_load(
    url: str, rate: int, stop: asyncio.Event, tally: Tally, answers: list[Answer], t0: float
) -> None:
    """``rate`` events/s in ten batches a second, each request on its own (a stalled one
    does not hold back the next); a batch not acknowledged is sent again after
    ``RETRY_AFTER_S``. After ``stop``, failed batches are re-sent until acknowledged."""
    batch_size = max(1, rate // 10)
    retry: list[tuple[float, list[dict[str, object]]]] = []
    in_flight: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(auth=(WRITE_KEY, ""), timeout=10, limits=limits) as client:

        async def send(events: list[dict[str, object]], scheduled: float) -> None:
            status = 0
            try:
                response = await client.post(
                    url,
                    content=orjson.dumps({"batch": events}),
                    headers={"Content-Type": "application/json"},
                )
                status = response.status_code
            except httpx.HTTPError:
                pass
            answers.append(Answer(scheduled - t0, time.monotonic() - scheduled, status))
            if status != 200:
                tally.retries += 1
                retry.append((time.monotonic() + RETRY_AFTER_S, events))
                return
            rejected = {int(r["index"]) for r in response.json()["rejected"]}
            for index, event in enumerate(events):
                target = tally.rejected if index in rejected else tally.acknowledged
                target.add(str(event["messageId"]))

        def launch(events: list[dict[str, object]]) -> None:
            task = asyncio.create_task(send(events, time.monotonic()))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

        sequence = 0
        while not stop.is_set():
            launch(_batch(batch_size, sequence))
            sequence += 1
            tally.sent_batches += 1
            now = time.monotonic()
            due = [events for at, events in retry if at <= now]
            retry[:] = [(at, events) for at, events in retry if at > now]
            for events in due:
                launch(events)
            await asyncio.sleep(max(0.0, t0 + sequence / 10 - time.monotonic()))
        deadline = time.monotonic() + 120
        while (retry or in_flight) and time.monotonic() < deadline:
            now = time.monotonic()
            due = [events for at, events in retry if at <= now]
            retry[:] = [(at, events) for at, events in retry if at > now]
            for events in due:
                launch(events)
            await asyncio.sleep(0.1)
    tally.unacknowledged_at_end = sum(len(events) for _, events in retry)


def busiest_leader(pipeline: ClusterPipeline) -> int:
    """The node leading most of the busier half of ``events.raw``'s partitions."""
    raw = topic_name(Topic.EVENTS_RAW, PREFIX)
    ends = end_offsets(pipeline.kafka, raw)
    busiest = sorted(ends, key=lambda p: ends[p], reverse=True)[: max(1, len(ends) // 2)]
    leaders = pipeline.cluster.state([raw]).leaders(raw)
    return Counter(leaders[p] for p in busiest).most_common(1)[0][0]


def active_controller(pipeline: ClusterPipeline) -> int:
    return pipeline.cluster.state().controller


def _in_sync(pipeline: ClusterPipeline) -> bool:
    state = pipeline.cluster.state(deployment_topics(pipeline.kafka))
    return len(state.brokers) == len(pipeline.cluster.nodes) and state.fully_replicated()


def _wait_all_ready(pipeline: ClusterPipeline, tally: Tally) -> None:
    """Until every part is ready (one that exited is started again, as a supervisor does);
    the error names those that were not."""
    not_ready: list[str] = []

    def all_ready() -> bool:
        not_ready[:] = [p.name for p in pipeline.parts if not _supervised_ready(p, tally)]
        return not not_ready

    try:
        wait_for(all_ready, HEALTHY_WITHIN_S, 0.5, "every part ready")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; not ready: {', '.join(not_ready)}") from exc


def run_faults(
    pipeline: ClusterPipeline,
    timing: Timing,
    tally: Tally,
    faults: list[Fault],
    t0: float,
    cancelled: threading.Event,
) -> None:
    """The two faults in turn; each waits for the cluster and every part to be whole again."""
    if cancelled.wait(timing.warmup_s):
        return
    for label, choose in (
        ("leader of the busiest partitions", busiest_leader),
        ("active controller", active_controller),
    ):
        node = choose(pipeline)
        pipeline.cluster.kill(node)
        fault = Fault(label, node, killed_at=time.monotonic() - t0)
        faults.append(fault)
        tally.faults.append(f"kill -9 node {node} ({label})")
        if cancelled.wait(timing.down_s):  # the fault itself: a node down this long
            return
        pipeline.cluster.restart(node)
        fault.restarted_at = time.monotonic() - t0
        tally.faults.append(f"node {node} restarted")
        wait_for(lambda: _in_sync(pipeline), HEALTHY_WITHIN_S, 0.5, "every replica in sync")
        fault.in_sync_at = time.monotonic() - t0
        _wait_all_ready(pipeline, tally)
        fault.healthy_at = time.monotonic() - t0
        if cancelled.wait(timing.between_s):
            return


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _longest_gap(acknowledged_at: list[float], start: float, end: float) -> float:
    """Longest stretch in [start, end] in which no request sent was acknowledged."""
    points = [start, *sorted(t for t in acknowledged_at if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def fault_figures(fault: Fault, answers: list[Answer]) -> FaultFigures:
    window = [a for a in answers if fault.killed_at <= a.at <= fault.healthy_at]
    acked = [a for a in window if a.status == 200]
    return FaultFigures(
        label=fault.label,
        node=fault.node,
        requests=len(window),
        unavailable=sum(1 for a in window if a.status == 503),
        failed=sum(1 for a in window if a.status != 200),
        p99_ms=_p99([a.latency_s * 1000 for a in acked]),
        no_ack_s=_longest_gap([a.at for a in acked], fault.killed_at, fault.healthy_at),
        healthy_after_kill_s=fault.healthy_at - fault.killed_at,
        healthy_after_restart_s=fault.healthy_at - fault.restarted_at,
    )


@dataclass
class Run:
    result: Account
    tally: Tally
    faults: list[FaultFigures] = field(default_factory=list)
    steady_p99_ms: float = math.nan
    """p99 of acknowledged requests sent before the first fault."""
    load_average: float = math.nan
    """The machine's one-minute load average at the end of the load (2 cores, shared)."""


def _note(what: str, since: float) -> None:
    console.print(f"[dim]{time.monotonic() - since:6.1f} s[/dim] {what}")


async def failover(timing: Timing, root: Path) -> Run:
    began = time.monotonic()
    pipeline = start_pipeline(root)
    _note("cluster up, every part ready", began)
    tally = Tally()
    answers: list[Answer] = []
    faults: list[Fault] = []
    url = pipeline.collector.ready_url.replace("/readyz", "/v1/batch")
    stop = asyncio.Event()
    cancelled = threading.Event()
    t0 = time.monotonic()
    try:
        load = asyncio.create_task(generate_load(url, timing.rate, stop, tally, answers, t0))
        try:
            await asyncio.to_thread(run_faults, pipeline, timing, tally, faults, t0, cancelled)
            _note("faults over, every part healthy", began)
            await asyncio.sleep(timing.tail_s)
        finally:
            cancelled.set()
            stop.set()
            await load
            load_average = os.getloadavg()[0]
        _note("load over, every batch acknowledged", began)
        result = account(pipeline, tally)
        _note("accounted", began)
    finally:
        for part in pipeline.parts:
            part.stop()
        pipeline.cluster.stop()
    first = faults[0].killed_at if faults else math.inf
    steady = [a.latency_s * 1000 for a in answers if a.status == 200 and a.at < first]
    return Run(
        result, tally, [fault_figures(f, answers) for f in faults], _p99(steady), load_average
    )


def show(run: Run, number: int) -> None:
    table = Table(title=f"failover run {number}: every event accounted for")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in vars(run.result).items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    table.add_row("p99 before the faults (ms)", f"{run.steady_p99_ms:,.0f}")
    table.add_row("load average (2 cores)", f"{run.load_average:.1f}")
    for f in run.faults:
        table.add_row(
            f"kill -9 node {f.node}, {f.label}",
            f"{f.unavailable} × 503 ({f.failed} failed of {f.requests}), p99 {f.p99_ms:,.0f} ms,"
            f" no ack for {f.no_ack_s:.1f} s, healthy {f.healthy_after_kill_s:.0f} s after the"
            f" kill ({f.healthy_after_restart_s:.0f} s after the restart)",
        )
    table.add_row("faults injected", "; ".join(run.tally.faults))
    console.print(table)


def figures(runs: list[Run], timing: Timing) -> list[Figure]:
    command = f"python -m bench.failover --runs {len(runs)} --rate {timing.rate}"
    out: list[Figure] = []
    for n, run in enumerate(runs, start=1):
        r = run.result

        def add(name: str, value: float, unit: str, target: str = "", n: int = n) -> None:
            out.append(
                Figure("failover", f"run {n}: {name}", value, unit, target=target, command=command)
            )

        add("acknowledged events", r.acknowledged, "events")
        add("lost events", r.lost, "events", "0")
        add("duplicated events", r.duplicated, "events", "0")
        out.append(
            Figure(
                "failover",
                f"run {n}: metric total / acknowledged",
                r.metric_total,
                "events",
                "acknowledged",
                r.acknowledged,
                target="1.0",
                command=command,
            )
        )
        add("ack p99 before the faults", run.steady_p99_ms, "ms")
        add("machine load average at the end (2 cores, shared)", run.load_average, "")
        for f in run.faults:
            what = f"kill -9 {f.label}"
            add(f"{what}: 503 answers", f.unavailable, "requests")
            add(f"{what}: failed answers (503 included) of all sent", f.failed, "requests")
            add(f"{what}: ack p99 until healthy", f.p99_ms, "ms")
            add(f"{what}: longest time without an ack", f.no_ack_s, "s")
            add(f"{what}: every part healthy after the restart", f.healthy_after_restart_s, "s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=None, help="events per second")
    parser.add_argument("--down", type=float, default=None, help="seconds a node stays down")
    parser.add_argument("--short", action="store_true", help="the short run of `make test`")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folders")
    args = parser.parse_args()
    timing = SHORT if args.short else LONG
    if args.rate is not None or args.down is not None:
        timing = Timing(
            args.rate or timing.rate,
            args.down if args.down is not None else timing.down_s,
            timing.warmup_s,
            timing.between_s,
            timing.tail_s,
        )
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        root = Path(tempfile.mkdtemp(prefix="sextant-failover-"))
        try:
            run = asyncio.run(failover(timing, root))
        finally:
            if args.keep:
                console.print(f"logs and data kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        show(run, number)
        runs.append(run)
        if not run.result.exact:
            break
    if not args.short:
        write_results("failover", figures(runs, timing))
    if not all(run.result.exact for run in runs):
        raise SystemExit("a failover run lost or duplicated events")


if __name__ == "__main__":
    main()
