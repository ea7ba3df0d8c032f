"""``make rebalance``: every part added and removed under load; every event accounted for.

The parts as processes on loopback over a private broker: collectors behind one address
(Debian's HAProxy, started by ``deploy/local/haproxy.sh``), processor workers in one consumer
group, and the sink. A load generator sends a fixed rate of batches to the proxy's address,
each request on its own, re-sending what was not acknowledged (``bench.failover``'s). Then,
in turn, with the load running:

1. a second collector starts (the proxy sends it traffic once its /readyz answers);
2. a second processor worker joins the group (its partitions are rebalanced);
3. the sink is replaced: the running one stops (SIGTERM), another starts on the same
   warehouse (an embedded engine has one owner; with a ClickHouse server several sinks run
   side by side and the group splits the partitions as the processor's does);
4. the first processor worker leaves the group (SIGTERM);
5. the first collector stops (SIGTERM): the proxy sends everything to the second.

Each change waits until every running part is ready and its group has committed again. At
the end every event is accounted for as the soak does (``bench.soak.account``): acknowledged,
in ``events.raw``, rows in ``events``, the count metric's total; lost, duplicated. For each
change: the failed answers, the p99 of acknowledged requests until the parts were ready again,
and that time.

    python -m bench.rebalance --runs 3           # make rebalance
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import Figure, write_results
from bench.failover import Answer, _longest_gap, _note, _p99, generate_load
from bench.soak import (
    MAX_REBALANCE_SECONDS,
    Account,
    Part,
    Tally,
    _part,
    _publish_config,
    _supervised_ready,
    account,
)
from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection
from tests.infra import REPO, LocalBroker, free_port, wait_for

PREFIX = "rebalance"
READY_WITHIN_S = MAX_REBALANCE_SECONDS + 150
HAPROXY = REPO / "deploy" / "local" / "haproxy.sh"
console = Console()


@dataclass(frozen=True)
class Timing:
    rate: int
    warmup_s: float
    between_s: float
    """Load between one change's end (every part ready) and the next change."""
    tail_s: float


SHORT = Timing(rate=150, warmup_s=6, between_s=4, tail_s=4)
LONG = Timing(rate=200, warmup_s=20, between_s=20, tail_s=20)


@dataclass
class Change:
    label: str
    at: float
    settled_at: float = math.nan


@dataclass(frozen=True)
class ChangeFigures:
    label: str
    requests: int
    failed: int
    p99_ms: float
    no_ack_s: float
    settled_s: float


class Proxy:
    """HAProxy in front of the collectors, as a child process."""

    def __init__(self, root: Path, backends: list[str]) -> None:
        self.port = free_port()
        self.root = root
        self.backends = backends
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["bash", str(HAPROXY), "start", "--port", str(self.port), "--data", str(self.root)]
        for backend in self.backends:
            argv += ["--backend", backend]
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "haproxy.log").open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Pipeline:
    root: Path
    broker: LocalBroker
    kafka: KafkaSection
    warehouse_url: str
    proxy: Proxy
    env: dict[str, str]
    running: list[Part] = field(default_factory=list)
    stopped: list[Part] = field(default_factory=list)

    @property
    def parts(self) -> list[Part]:
        return list(self.running)

    def add(self, part: Part) -> None:
        part.start()
        self.running.append(part)

    def remove(self, name: str) -> None:
        """Stop a part as an orchestrator does (SIGTERM, then wait)."""
        part = next(p for p in self.running if p.name == name)
        part.stop()
        self.running.remove(part)
        self.stopped.append(part)


def _processor(root: Path, env: dict[str, str], n: int) -> Part:
    return _part(
        f"processor-{n}",
        root,
        env
        | {
            "SEXTANT_PROCESSOR_DATA_DIR": str(root / f"p{n}"),
            "SEXTANT_LOG_LEVEL": "INFO",
            "SEXTANT_PROCESSOR_MAX_REBALANCE_SECONDS": str(MAX_REBALANCE_SECONDS),
        },
        "SEXTANT_PROCESSOR_PORT",
    )


def start_pipeline(root: Path) -> tuple[Pipeline, dict[str, Part]]:
    broker = LocalBroker(root / "kafka")
    broker.start()
    kafka = KafkaSection(kafka_bootstrap=broker.bootstrap, topic_prefix=PREFIX)
    ensure_topics(kafka, partitions=6)
    _publish_config(kafka)
    warehouse_url = f"chdb://{root / 'warehouse'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SEXTANT_TOPIC_PREFIX": PREFIX,
        "SEXTANT_CLICKHOUSE_URL": warehouse_url,
        "SEXTANT_LOG_LEVEL": "WARNING",
    }
    later = {
        "collector-1": _part("collector-1", root, env, "SEXTANT_COLLECTOR_PORT"),
        "collector-2": _part("collector-2", root, env, "SEXTANT_COLLECTOR_PORT"),
        "processor-1": _processor(root, env, 1),
        "processor-2": _processor(root, env, 2),
        "sink-1": _part("sink-1", root, env, "SEXTANT_SINK_PORT"),
        "sink-2": _part("sink-2", root, env, "SEXTANT_SINK_PORT"),
    }
    backends = [
        later[c].ready_url.removeprefix("http://").removesuffix("/readyz")
        for c in ("collector-1", "collector-2")
    ]
    proxy = Proxy(root / "haproxy", backends)
    pipeline = Pipeline(root, broker, kafka, warehouse_url, proxy, env)
    for name in ("collector-1", "processor-1", "sink-1"):
        pipeline.add(later.pop(name))
    proxy.start()
    for part in pipeline.running:
        wait_for(part.ready, 180, 0.25, f"{part.name} ready")
    wait_for(lambda: _proxied(pipeline), 60, 0.25, "the proxy forwarding")
    return pipeline, later


def _proxied(pipeline: Pipeline) -> bool:
    try:
        return httpx.get(f"{pipeline.proxy.url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _settled(pipeline: Pipeline, tally: Tally) -> bool:
    return all(_supervised_ready(p, tally) for p in pipeline.running) and _proxied(pipeline)


def run_changes(
    pipeline: Pipeline,
    later: dict[str, Part],
    timing: Timing,
    tally: Tally,
    changes: list[Change],
    t0: float,
    cancelled: threading.Event,
) -> None:
    def replace_sink() -> None:
        pipeline.remove("sink-1")  # the embedded engine's one owner leaves first
        pipeline.add(later.pop("sink-2"))

    steps: list[tuple[str, Callable[[], None]]] = [
        ("a collector added", lambda: pipeline.add(later.pop("collector-2"))),
        ("a processor worker added", lambda: pipeline.add(later.pop("processor-2"))),
        ("the sink replaced", replace_sink),
        ("a processor worker removed", lambda: pipeline.remove("processor-1")),
        ("a collector removed", lambda: pipeline.remove("collector-1")),
    ]
    if cancelled.wait(timing.warmup_s):
        return
    for label, act in steps:
        change = Change(label, time.monotonic() - t0)
        changes.append(change)
        act()
        tally.faults.append(label)
        wait_for(lambda: _settled(pipeline, tally), READY_WITHIN_S, 0.5, f"settled: {label}")
        change.settled_at = time.monotonic() - t0
        if cancelled.wait(timing.between_s):
            return


def change_figures(change: Change, answers: list[Answer]) -> ChangeFigures:
    window = [a for a in answers if change.at <= a.at <= change.settled_at]
    acked = [a for a in window if a.status == 200]
    return ChangeFigures(
        label=change.label,
        requests=len(window),
        failed=sum(1 for a in window if a.status != 200),
        p99_ms=_p99([a.latency_s * 1000 for a in acked]),
        no_ack_s=_longest_gap([a.at for a in acked], change.at, change.settled_at),
        settled_s=change.settled_at - change.at,
    )


@dataclass
class Run:
    result: Account
    tally: Tally
    changes: list[ChangeFigures]
    steady_p99_ms: float
    load_average: float


async def rebalance(timing: Timing, root: Path) -> Run:
    began = time.monotonic()
    pipeline, later = start_pipeline(root)
    _note("every part ready behind the proxy", began)
    tally = Tally()
    answers: list[Answer] = []
    changes: list[Change] = []
    stop = asyncio.Event()
    cancelled = threading.Event()
    t0 = time.monotonic()
    url = f"{pipeline.proxy.url}/v1/batch"
    try:
        load = asyncio.create_task(generate_load(url, timing.rate, stop, tally, answers, t0))
        try:
            await asyncio.to_thread(
                run_changes, pipeline, later, timing, tally, changes, t0, cancelled
            )
            _note("changes over, every part ready", began)
            await asyncio.sleep(timing.tail_s)
        finally:
            cancelled.set()
            stop.set()
            await load
            load_average = os.getloadavg()[0]
        result = account(pipeline, tally)
        _note("accounted", began)
    finally:
        for part in pipeline.running:
            if part.process is not None and part.process.poll() is None:
                part.process.send_signal(signal.SIGTERM)
        for part in pipeline.running:
            part.stop()
        pipeline.proxy.stop()
        pipeline.broker.stop()
    first = changes[0].at if changes else math.inf
    steady = [a.latency_s * 1000 for a in answers if a.status == 200 and a.at < first]
    return Run(
        result, tally, [change_figures(c, answers) for c in changes], _p99(steady), load_average
    )


def show(run: Run, number: int) -> None:
    table = Table(title=f"rebalance run {number}: every event accounted for")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in vars(run.result).items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    table.add_row("p99 before the changes (ms)", f"{run.steady_p99_ms:,.0f}")
    table.add_row("load average (2 cores)", f"{run.load_average:.1f}")
    for c in run.changes:
        table.add_row(
            c.label,
            f"{c.failed} failed of {c.requests}, p99 {c.p99_ms:,.0f} ms, no ack for "
            f"{c.no_ack_s:.1f} s, settled in {c.settled_s:.0f} s",
        )
    console.print(table)


def figures(runs: list[Run], timing: Timing) -> list[Figure]:
    command = f"python -m bench.rebalance --runs {len(runs)} --rate {timing.rate}"
    out: list[Figure] = []
    for n, run in enumerate(runs, start=1):
        r = run.result

        def add(name: str, value: float, unit: str, target: str = "", n: int = n) -> None:
            out.append(
                Figure("rebalance", f"run {n}: {name}", value, unit, target=target, command=command)
            )

        add("acknowledged events", r.acknowledged, "events")
        add("lost events", r.lost, "events", "0")
        add("duplicated events", r.duplicated, "events", "0")
        out.append(
            Figure(
                "rebalance",
                f"run {n}: metric total / acknowledged",
                r.metric_total,
                "events",
                "acknowledged",
                r.acknowledged,
                target="1.0",
                command=command,
            )
        )
        add("ack p99 before the changes", run.steady_p99_ms, "ms")
        add("machine load average at the end (2 cores, shared)", run.load_average, "")
        for c in run.changes:
            add(f"{c.label}: failed answers of all sent", c.failed, "requests")
            add(f"{c.label}: ack p99 until settled", c.p99_ms, "ms")
            add(f"{c.label}: every part ready again after", c.settled_s, "s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=None)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    timing = SHORT if args.short else LONG
    if args.rate is not None:
        timing = Timing(args.rate, timing.warmup_s, timing.between_s, timing.tail_s)
    runs: list[Run] = []
    for number in range(1, args.runs + 1):
        root = Path(tempfile.mkdtemp(prefix="sextant-rebalance-"))
        try:
            run = asyncio.run(rebalance(timing, root))
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
        write_results("rebalance", figures(runs, timing))
    if not all(run.result.exact for run in runs):
        raise SystemExit("a rebalance run lost or duplicated events")


if __name__ == "__main__":
    main()
