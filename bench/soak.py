"""``make soak``: the whole pipeline under load and faults; every part live again after each
fault, then an exact account of every event.

The parts run as separate processes on loopback (collector, two processor workers, the sink
owning an embedded warehouse, a private Kafka broker). A load generator sends batches at a
fixed rate for a fixed time, re-sending a batch (same messageIds) whenever it was not
acknowledged, as SDKs do. Meanwhile faults are injected on a schedule: ``kill -9`` and restart
of the collector, each processor worker and the sink, a broker stop and restart, and a
stalled warehouse (the sink frozen with SIGSTOP). At the end every event is accounted for:
acknowledged by the collector, present in ``events.raw``, rows in ``events``, and the sum of
the count metric over the same minutes; rejected events in the dead-letter topic. After every
fault, liveness is checked too (``bench.liveness``): every part ready again, every consumer
group committing up to its topics' ends, every metric's newest window current, and an alert
rule of the fault's own firing and resolving on time.

    python -m bench.soak --rate 500 --duration 600            # the full soak
    python -m bench.soak --rate 200 --duration 60 --short     # the short one in `make test`
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx
import orjson
from rich.console import Console
from rich.live import Live as LiveDisplay
from rich.table import Table

from bench import liveness
from bench.common import Figure, write_results
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics, read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, KeyKind, MetricDefinition, Project, hash_key
from sextant.schemas.topics import Topic, internal_topic_name, processor_group, topic_name
from tests.infra import LocalBroker, free_port, wait_for

PROJECT = "soak"
EVENT = "Soak Event"
METRIC = "soak-count"
WRITE_KEY = "sx_write_soak_000000000000000000"
USERS = 2_000
MAX_REBALANCE_SECONDS = 90
"""A processor whose rebalance or recovery lasts longer exits (and is restarted)."""
READY_AFTER_RUN_SECONDS = MAX_REBALANCE_SECONDS + 150
"""Room for one such exit, the restart and the recovery after it."""
INVALID_EVERY = 97  # one event in 97 lacks its name: the collector must dead-letter it
console = Console()


@dataclass
class Part:
    """One part as a child process that the fault schedule may kill and restart."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def ready(self) -> bool:
        try:
            return httpx.get(self.ready_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def restart_if_exited(self, tally: Tally) -> None:
        """What a supervisor does: start the part again if it exited by itself (a processor
        exits with code 75 when faust's recovery never ends)."""
        if self.process is not None and self.process.poll() is not None:
            tally.faults.append(f"{self.name} exited with code {self.process.returncode}")
            self.start()
            self.restarts += 1

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Tally:
    sent_batches: int = 0
    acknowledged: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    retries: int = 0
    unacknowledged_at_end: int = 0
    faults: list[str] = field(default_factory=list)
    last_acknowledged_at: datetime | None = None
    """The newest timestamp of an acknowledged event of the load."""


class Running(Protocol):
    """What :func:`account` needs of a running pipeline, whatever runs its broker(s)."""

    @property
    def kafka(self) -> KafkaSection: ...
    @property
    def warehouse_url(self) -> str: ...
    @property
    def parts(self) -> list[Part]: ...


@dataclass
class Pipeline:
    root: Path
    kafka: KafkaSection
    broker: LocalBroker
    warehouse_url: str
    collector: Part
    processors: list[Part]
    sink: Part

    @property
    def parts(self) -> list[Part]:
        return [self.collector, *self.processors, self.sink]


def _sextant(part: str) -> list[str]:
    return [sys.executable, "-m", "sextant.cli.main", part]


def _part(name: str, root: Path, env: dict[str, str], port_var: str) -> Part:
    port = free_port()
    return Part(
        name=name,
        argv=_sextant(name.split("-")[0]),
        env=env | {port_var: str(port)},
        log=root / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )


def start_pipeline(root: Path, signals: int = 0) -> Pipeline:
    broker = LocalBroker(root / "kafka")
    broker.start()
    kafka = KafkaSection(kafka_bootstrap=broker.bootstrap, topic_prefix="soak")
    ensure_topics(kafka, partitions=6)
    _publish_config(kafka, signals)
    warehouse_url = f"chdb://{root / 'warehouse'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
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
                "SEXTANT_LOG_LEVEL": "INFO",  # each refetch and stall, for a failed run
                "SEXTANT_PROCESSOR_MAX_REBALANCE_SECONDS": str(MAX_REBALANCE_SECONDS),
            },
            "SEXTANT_PROCESSOR_PORT",
        )
        for i in (1, 2)
    ]
    pipeline = Pipeline(
        root=root,
        kafka=kafka,
        broker=broker,
        warehouse_url=warehouse_url,
        collector=_part("collector", root, env, "SEXTANT_COLLECTOR_PORT"),
        processors=processors,
        sink=_part("sink", root, env, "SEXTANT_SINK_PORT"),
    )
    for part in pipeline.parts:
        part.start()
    for part in pipeline.parts:
        wait_for(part.ready, 120, 0.25, f"{part.name} ready")
    return pipeline


def _publish_config(kafka: KafkaSection, signals: int = 0) -> None:
    publisher = ConfigPublisher(kafka)
    publisher.put(
        [
            Project(id=PROJECT, project_id=PROJECT, name="Soak", rate_limit_per_second=1_000_000),
            ApiKey(
                id="w", project_id=PROJECT, key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY)
            ),
            MetricDefinition(id=METRIC, project_id=PROJECT, metric_kind="count", event=EVENT),
            *liveness.documents(signals),
        ]
    )
    publisher.close()


def _batch(size: int, sequence: int) -> list[dict[str, object]]:
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, object]] = []
    for i in range(size):
        event: dict[str, object] = {
            "type": "track",
            "event": EVENT,
            "userId": f"user-{(sequence * size + i) % USERS}",
            "messageId": str(uuid.uuid4()),
            "timestamp": now,
            "properties": {"n": i},
        }
        if (sequence * size + i) % INVALID_EVERY == 0:
            del event["event"]
        events.append(event)
    return events


async def _send(
    client: httpx.AsyncClient, url: str, events: list[dict[str, object]], tally: Tally
) -> bool:
    try:
        response = await client.post(
            url,
            content=orjson.dumps({"batch": events}),
            headers={"Content-Type": "application/json"},
        )
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    rejected = {int(r["index"]) for r in response.json()["rejected"]}
    if len(rejected) < len(events):
        sent_at = datetime.fromisoformat(str(events[0]["timestamp"]))
        tally.last_acknowledged_at = max(tally.last_acknowledged_at or sent_at, sent_at)
    for index, event in enumerate(events):
        target = tally.rejected if index in rejected else tally.acknowledged
        target.add(str(event["messageId"]))
    return True


async def generate_load(
    url: str, rate: int, duration_s: float, tally: Tally, on_tick: Callable[[float], None]
) -> None:
    """Send ``rate`` events/s in ten batches a second; re-send unacknowledged batches."""
    batch_size = max(1, rate // 10)
    pending: list[list[dict[str, object]]] = []
    started = time.monotonic()
    sequence = 0
    async with httpx.AsyncClient(auth=(WRITE_KEY, ""), timeout=10) as client:
        while (elapsed := time.monotonic() - started) < duration_s:
            pending.append(_batch(batch_size, sequence))
            sequence += 1
            tally.sent_batches += 1
            retry: list[list[dict[str, object]]] = []
            for events in pending:
                if not await _send(client, url, events, tally):
                    retry.append(events)
            tally.retries += len(retry)
            pending = retry[-600:]  # a bounded client queue, as an SDK's
            on_tick(elapsed)
            next_tick = started + sequence / 10
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            pending = [e for e in pending if not await _send(client, url, e, tally)]
            if pending:
                await asyncio.sleep(0.5)
    tally.unacknowledged_at_end = sum(len(e) for e in pending)


def _restart(part: Part, tally: Tally) -> None:
    part.kill9()
    tally.faults.append(f"kill -9 {part.name}")
    part.start()
    part.restarts += 1


SHORT_FAULTS, ALL_FAULTS = 3, 6
"""Faults of the short soak and of the full one (one alert rule of the liveness project each)."""


def fault_schedule(
    pipeline: Pipeline, short: bool
) -> list[tuple[float, str, Callable[[Tally], None]]]:
    """(fraction of the run, label, action): every fault the issue names, in order."""

    def broker_restart(tally: Tally) -> None:
        pipeline.broker.stop()
        tally.faults.append("broker stop")
        pipeline.broker.start()
        tally.faults.append("broker restart")

    def stall_warehouse(tally: Tally) -> None:
        pipeline.sink.signal(signal.SIGSTOP)
        tally.faults.append("warehouse stalled (sink frozen)")
        time.sleep(8)  # the fault itself is a stall of a fixed length
        pipeline.sink.signal(signal.SIGCONT)
        tally.faults.append("warehouse resumed")

    schedule: list[tuple[float, str, Callable[[Tally], None]]] = [
        (0.15, "kill -9 collector", lambda t: _restart(pipeline.collector, t)),
        (0.30, "kill -9 processor-1", lambda t: _restart(pipeline.processors[0], t)),
        (0.45, "kill -9 sink", lambda t: _restart(pipeline.sink, t)),
    ]
    if not short:
        schedule += [
            (0.55, "broker stop/restart", broker_restart),
            (0.70, "kill -9 processor-2", lambda t: _restart(pipeline.processors[1], t)),
            (0.80, "stalled warehouse", stall_warehouse),
        ]
    return schedule


@dataclass
class Live:
    """What checks liveness after each fault."""

    watch: liveness.Watch
    signals: liveness.Signals
    checks: list[asyncio.Task[liveness.Check]] = field(default_factory=list)


def _groups(kafka: KafkaSection) -> dict[str, list[str]]:
    """Every consumer group of the soak and the topics it commits."""
    prefix = kafka.topic_prefix
    processor = processor_group(prefix)
    sink_topics = (
        Topic.EVENTS_RAW,
        Topic.EVENTS_INVALID,
        Topic.EXPOSURES,
        Topic.METRIC_POINTS,
        Topic.ALERTS,
    )
    return {
        processor: [
            topic_name(Topic.EVENTS_RAW, prefix),
            internal_topic_name(Topic.PARTIALS, processor),
        ],
        f"{prefix}.sink": [topic_name(t, prefix) for t in sink_topics],
    }


async def run_faults(
    pipeline: Pipeline, duration_s: float, short: bool, tally: Tally, live: Live | None = None
) -> None:
    started = time.monotonic()
    for k, (at, label, action) in enumerate(fault_schedule(pipeline, short)):
        await asyncio.sleep(max(0.0, started + at * duration_s - time.monotonic()))
        await asyncio.to_thread(action, tally)
        if live is not None:
            check = functools.partial(
                liveness.check_after_fault,
                label,
                k,
                kafka=pipeline.kafka,
                ready=lambda: all(_supervised_ready(p, tally) for p in pipeline.parts),
                groups=_groups(pipeline.kafka),
                metrics=[
                    (PROJECT, METRIC, lambda: tally.last_acknowledged_at),
                    (liveness.PROJECT, liveness.HEARTBEAT_METRIC, lambda: datetime.now(UTC)),
                ],
                signals=live.signals,
                watch=live.watch,
            )
            live.checks.append(asyncio.create_task(asyncio.to_thread(check)))


@dataclass(frozen=True)
class Account:
    acknowledged: int
    in_topic: int
    topic_redeliveries: int
    in_warehouse: int
    warehouse_duplicates: int
    metric_total: int
    rejected: int
    dead_letters: int
    lost: int
    duplicated: int
    unacknowledged_at_end: int

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.metric_total == self.acknowledged


def _wait_caught_up(kafka: KafkaSection, group: str, topics: tuple[str, ...]) -> None:
    """Until ``group`` has committed every record that was in ``topics`` when the wait began
    (see :func:`bench.liveness.behind`)."""
    marks = liveness.end_marks(kafka, {group: topics})
    late: dict[str, int] = {}

    def caught_up() -> bool:
        late.clear()
        late.update(liveness.behind(kafka, marks))
        return not late

    try:
        wait_for(caught_up, 180, 0.5, f"{group} caught up")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; not committed, per topic and partition: {late}") from exc


def _supervised_ready(part: Part, tally: Tally) -> bool:
    part.restart_if_exited(tally)
    return part.ready()


def account(pipeline: Running, tally: Tally) -> Account:
    """Wait for the pipeline to drain, stop it, and count every event everywhere."""
    raw = topic_name(Topic.EVENTS_RAW, pipeline.kafka.topic_prefix)
    points = topic_name(Topic.METRIC_POINTS, pipeline.kafka.topic_prefix)
    for part in pipeline.parts:
        wait_for(
            functools.partial(_supervised_ready, part, tally),
            READY_AFTER_RUN_SECONDS,
            0.5,
            f"{part.name} ready after the run",
        )
    prefix = pipeline.kafka.topic_prefix
    processor = f"{prefix}-processor"  # the processor's group; its stage one → two topic:
    _wait_caught_up(pipeline.kafka, processor, (raw, f"{processor}-partials"))
    _wait_caught_up(pipeline.kafka, f"{prefix}.sink", (raw, points))
    topic_ids = Counter(
        orjson.loads(r.value)["messageId"]
        for r in read_all(pipeline.kafka, raw)
        if r.value is not None
    )
    invalid = sum(
        1
        for _ in read_all(
            pipeline.kafka, topic_name(Topic.EVENTS_INVALID, pipeline.kafka.topic_prefix)
        )
    )
    metric_total = _wait_metric_settled(pipeline, len(tally.acknowledged))
    for part in pipeline.parts:
        part.stop()
    rows = _rows_per_message_id(pipeline.warehouse_url)
    acknowledged = tally.acknowledged
    lost = len(acknowledged - set(rows)) + len(acknowledged - set(topic_ids))
    duplicated = sum(c - 1 for c in rows.values() if c > 1)
    return Account(
        acknowledged=len(acknowledged),
        in_topic=len(set(topic_ids) & acknowledged),
        topic_redeliveries=sum(c - 1 for c in topic_ids.values() if c > 1),
        in_warehouse=len(set(rows) & acknowledged),
        warehouse_duplicates=duplicated,
        metric_total=metric_total,
        rejected=len(tally.rejected),
        dead_letters=invalid,
        lost=lost,
        duplicated=duplicated + max(0, metric_total - len(acknowledged)),
        unacknowledged_at_end=tally.unacknowledged_at_end,
    )


_COUNT_ROWS = """
import sys, orjson
from sextant.core.warehouse import connect
rows = connect(sys.argv[1]).query_rows(
    "SELECT message_id, count() FROM events FINAL WHERE project_id = {p:String} "
    "GROUP BY message_id", {"p": sys.argv[2]})
sys.stdout.buffer.write(orjson.dumps(rows))
"""


def _rows_per_message_id(warehouse_url: str) -> dict[str, int]:
    """Rows per messageId in ``events``, read by a process of its own: an embedded engine binds
    the process that opens it to its path for good, and the caller may be a test process."""
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_ROWS, warehouse_url, PROJECT],
        check=True,
        capture_output=True,
    )
    return {str(message_id): int(count) for message_id, count in orjson.loads(done.stdout)}


def _metric_total(pipeline: Running) -> int:
    """The count metric summed over every minute, newest version of each window (from Kafka)."""
    newest: dict[tuple[str, str], tuple[int, int]] = {}
    points = topic_name(Topic.METRIC_POINTS, pipeline.kafka.topic_prefix)
    for record in read_all(pipeline.kafka, points):
        if record.value is None:
            continue
        point = orjson.loads(record.value)
        if point["project_id"] != PROJECT or point["metric"] != METRIC:
            continue
        window = (point["window_start"], point.get("breakdown", ""))
        if window not in newest or point["version"] >= newest[window][0]:
            newest[window] = (point["version"], int(point["count"]))
    return sum(count for _, count in newest.values())


def _wait_metric_settled(pipeline: Running, expected: int) -> int:
    """The metric total once it equals ``expected`` or stops changing for a few seconds."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        total = _metric_total(pipeline)
        if total == expected:
            return total
        if total != last:
            last, stable_since = total, time.monotonic()
        elif time.monotonic() - stable_since > 60:
            return total
        time.sleep(1)
    return last


def _progress(tally: Tally, elapsed: float, duration: float) -> Table:
    table = Table(title=f"soak {elapsed:,.0f}/{duration:,.0f} s", show_header=False)
    table.add_row("acknowledged", f"{len(tally.acknowledged):,}")
    table.add_row("rejected (dead letter)", f"{len(tally.rejected):,}")
    table.add_row("batches re-sent", f"{tally.retries:,}")
    table.add_row("faults", ", ".join(tally.faults[-4:]) or "—")
    return table


async def soak(
    rate: int, duration_s: float, short: bool, root: Path
) -> tuple[Account, Tally, list[liveness.Check]]:
    pipeline = start_pipeline(root, signals=SHORT_FAULTS if short else ALL_FAULTS)
    tally = Tally()
    url = pipeline.collector.ready_url.replace("/readyz", "/v1/batch")
    live = Live(liveness.Watch(pipeline.kafka), liveness.Signals(lambda: url))
    try:
        with LiveDisplay(
            _progress(tally, 0, duration_s), console=console, refresh_per_second=2
        ) as display:
            await asyncio.gather(
                generate_load(
                    url,
                    rate,
                    duration_s,
                    tally,
                    lambda e: display.update(_progress(tally, e, duration_s)),
                ),
                run_faults(pipeline, duration_s, short, tally, live),
            )
        checks = list(await asyncio.gather(*live.checks))
        return account(pipeline, tally), tally, checks
    finally:
        live.signals.stop()
        live.watch.stop()
        for part in pipeline.parts:
            part.stop()
        pipeline.broker.stop()


def report_liveness(checks: list[liveness.Check]) -> list[Figure]:
    table = Table(title="Live again after every fault")
    for column in ("fault", "ready (s)", "caught up (s)", "fired (s)", "resolved (s)", "problems"):
        table.add_column(column)

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    for check in checks:
        table.add_row(
            check.fault,
            seconds(check.ready_after_s),
            seconds(check.drained_after_s),
            seconds(check.fired_after_s),
            seconds(check.resolved_after_s),
            "; ".join(check.problems) or "none",
        )
    console.print(table)

    def slowest(values: list[float | None]) -> float:
        return max((v for v in values if v is not None), default=0.0)

    return [
        Figure(
            "soak",
            "faults after which a part did not come back to life",
            sum(not c.live for c in checks),
            "faults",
            "faults",
            len(checks),
            target="0",
        ),
        Figure(
            "soak",
            "slowest return to ready after a fault",
            slowest([c.ready_after_s for c in checks]),
            "s",
        ),
        Figure(
            "soak",
            "slowest catch-up of every group to its topics' ends after a fault",
            slowest([c.drained_after_s for c in checks]),
            "s",
        ),
        Figure(
            "soak",
            "slowest firing transition after its window's end (lateness 10 s)",
            slowest([c.fired_after_s for c in checks]),
            "s",
        ),
        Figure(
            "soak",
            "slowest resolved transition after its window's end (lateness 10 s)",
            slowest([c.resolved_after_s for c in checks]),
            "s",
        ),
    ]


def report(
    result: Account,
    tally: Tally,
    rate: int,
    duration_s: float,
    checks: list[liveness.Check] | None = None,
) -> None:
    table = Table(title="Every event accounted for")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in vars(result).items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    table.add_row("faults injected", "; ".join(tally.faults))
    console.print(table)
    command = f"python -m bench.soak --rate {rate} --duration {duration_s:.0f}"
    live = [
        Figure(
            f.benchmark, f.figure, f.value, f.unit, f.baseline, f.baseline_value, f.target, command
        )
        for f in report_liveness(checks or [])
    ]
    write_results(
        "soak",
        [
            *live,
            Figure("soak", "acknowledged events", result.acknowledged, "events", command=command),
            Figure("soak", "lost events", result.lost, "events", target="0", command=command),
            Figure(
                "soak",
                "duplicated events",
                result.duplicated,
                "events",
                target="0",
                command=command,
            ),
            Figure(
                "soak",
                "metric total / acknowledged",
                result.metric_total,
                "events",
                "acknowledged",
                result.acknowledged,
                target="1.0",
                command=command,
            ),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=500, help="events per second")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--short", action="store_true", help="only the process kills")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sextant-soak-"))
    try:
        result, tally, checks = asyncio.run(soak(args.rate, args.duration, args.short, root))
    finally:
        if args.keep:
            console.print(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(result, tally, args.rate, args.duration, checks)
    if not result.exact:
        raise SystemExit("the soak lost or duplicated events")
    if not all(check.live for check in checks):
        raise SystemExit("a part did not come back to life after a fault")


if __name__ == "__main__":
    main()
