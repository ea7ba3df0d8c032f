"""``make chaos``: liveness after faults, round after round: does everything move again?

The stack of ``make run`` as processes on loopback: a private broker, the collector, the
processor, the gateway with the sink inside (embedded warehouse) and the notifier. A steady
load (``--rate`` events/s through the collector) runs throughout. Each round, within one
minute: a burst of signal events (above a threshold rule's limit), then ``kill -9`` of the
processor, of the gateway (with the sink) and of the collector, each started again at once
as a supervisor would. Then, with deadlines, every liveness promise is checked:

1. every part answers ready again, and none reports a stalled consumer;
2. the threshold rule fires for the signal minute and resolves for the next, quiet one, each
   transition stamped with its window's end and seen within ``ALERT_GRACE_S`` of it (plus the
   project's lateness);
3. every metric's latest window reaches the current minute;
4. with the load paused, every consumer group (the processor on ``events.raw`` and its
   partials, the sink on every topic it reads, the notifier) commits up to where its topics
   ended when the load paused, within ``DRAIN_S``.

A round that misses one is a stall; its logs are kept. ``--code DIR`` runs the parts from
another checkout (``git archive <commit> | tar -x -C DIR``), e.g. the code before a fix.

    python -m bench.chaos --rounds 20 --rate 400       # make chaos
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import liveness
from bench.common import Figure, write_results
from bench.liveness import Watch
from bench.soak import Part
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.secrets import generate_secret_key
from sextant.core.settings import KafkaSection
from sextant.schemas.config import (
    AlertRule,
    ApiKey,
    KeyKind,
    MetricDefinition,
    Project,
    hash_key,
)
from sextant.schemas.records import AlertState
from sextant.schemas.topics import Topic, internal_topic_name, processor_group, topic_name
from tests.infra import LocalBroker, free_port, wait_for

NAME = "chaos"
PROJECT = "chaos"
WRITE_KEY = "sx_write_chaos_00000000000000000"
LOAD_EVENT, SIGNAL_EVENT = "Chaos Event", "Chaos Signal"
LOAD_METRIC, SIGNAL_METRIC, RULE = "chaos-load", "chaos-signal", "signal-high"
SIGNALS = 20
"""Signal events sent in a signal minute (the rule fires above 5 a minute)."""
LATENESS_S = 10
READY_S = 180.0
"""Every part ready again after the faults, within this."""
ALERT_GRACE_S = 90.0
"""A transition is on time when seen within this (plus the lateness) of its window's end."""
DRAIN_S = 60.0
"""Every group commits up to where its topics ended within this once the load pauses."""
USERS = 2_000


@dataclass
class Round:
    number: int
    signal_minute: datetime
    faults: list[str] = field(default_factory=list)
    ready_after_s: float | None = None
    fired_after_s: float | None = None
    resolved_after_s: float | None = None
    windows_current: bool = False
    drained_after_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def stalled(self) -> bool:
        return bool(self.problems)


def _env(root: Path, bootstrap: str, prefix: str, code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": bootstrap,
        "SEXTANT_TOPIC_PREFIX": prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{root / 'warehouse'}",
        "SEXTANT_SECRET_KEY": generate_secret_key(),
        "SEXTANT_LOG_LEVEL": "INFO",
        "SEXTANT_PROCESSOR_DATA_DIR": str(root / "processor"),
    }
    if code is not None:
        paths = [
            code,
            code / "schemas/src",
            *(code / "services" / p / "src" for p in os.listdir(code / "services")),
            code / "sdk/python/src",
        ]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    return env


def _part(name: str, command: str, root: Path, env: dict[str, str], port_var: str) -> Part:
    port = free_port()
    return Part(
        name=name,
        argv=[sys.executable, "-m", "sextant.cli.main", command],
        env=env | {port_var: str(port)},
        log=root / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )


def _publish_config(kafka: KafkaSection) -> None:
    publisher = ConfigPublisher(kafka)
    publisher.put(
        [
            Project(
                id=PROJECT,
                project_id=PROJECT,
                name="Chaos",
                rate_limit_per_second=1_000_000,
                allowed_lateness_seconds=LATENESS_S,
            ),
            ApiKey(
                id="w", project_id=PROJECT, key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY)
            ),
            MetricDefinition(
                id=LOAD_METRIC, project_id=PROJECT, metric_kind="count", event=LOAD_EVENT
            ),
            MetricDefinition(
                id=SIGNAL_METRIC, project_id=PROJECT, metric_kind="count", event=SIGNAL_EVENT
            ),
            AlertRule(
                id=RULE,
                project_id=PROJECT,
                rule_kind="threshold",
                metric=SIGNAL_METRIC,
                direction="above",
                threshold=5,
            ),
        ]
    )
    publisher.close()


class Load:
    """``rate`` events/s of the load event through the collector, pausable; signal bursts."""

    def __init__(self, collector: Part, rate: int) -> None:
        self.url = collector.ready_url.replace("/readyz", "/v1/batch")
        self.rate = rate
        self.paused = threading.Event()
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _post(self, client: httpx.AsyncClient, events: list[dict[str, Any]]) -> bool:
        for _ in range(30):  # a client retries the same batch (same messageIds)
            try:
                answer = await client.post(
                    self.url,
                    content=orjson.dumps({"batch": events}),
                    headers={"Content-Type": "application/json"},
                )
                if answer.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if self._stop.is_set():
                return False
            await asyncio.sleep(0.5)
        return False

    async def _run(self) -> None:
        per_tick = max(1, self.rate // 10)
        sequence = 0
        async with httpx.AsyncClient(auth=(WRITE_KEY, ""), timeout=10) as client:
            started = time.monotonic()
            tick = 0
            while not self._stop.is_set():
                tick += 1
                if not self.paused.is_set():
                    events = [
                        _event(LOAD_EVENT, (sequence * per_tick + i) % USERS)
                        for i in range(per_tick)
                    ]
                    sequence += 1
                    if await self._post(client, events):
                        self.sent += len(events)
                    else:
                        self.failed += len(events)
                await asyncio.sleep(max(0.0, started + tick / 10 - time.monotonic()))

    def signal(self) -> bool:
        """Send the signal burst now (and wait for its acknowledgement)."""

        async def burst() -> bool:
            async with httpx.AsyncClient(auth=(WRITE_KEY, ""), timeout=10) as client:
                return await self._post(client, [_event(SIGNAL_EVENT, i) for i in range(SIGNALS)])

        return asyncio.run(burst())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _event(name: str, user: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": f"user-{user}",
        "messageId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
    }


_PARTS_LOCK = threading.Lock()


def _kill_and_restart(part: Part) -> None:
    with _PARTS_LOCK:
        part.kill9()
        part.start()
        part.restarts += 1


class Supervisor:
    """What ``make run``'s supervisor does: start again a part that exited by itself."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.exits: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with _PARTS_LOCK:
                for part in self.parts:
                    process = part.process
                    if process is not None and process.poll() is not None:
                        self.exits.append(f"{part.name} exited with code {process.returncode}")
                        print(self.exits[-1], flush=True)
                        part.start()
                        part.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _stalls(part: Part) -> list[Any]:
    try:
        body = httpx.get(part.ready_url, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return []
    found: list[Any] = body.get("stalled", [])
    return found


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _wait_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)  # the schedule of the faults is in wall-clock time


def _read_by_group(kafka: KafkaSection) -> dict[str, list[str]]:
    prefix = kafka.topic_prefix
    processor = processor_group(prefix)
    return {
        processor: [
            topic_name(Topic.EVENTS_RAW, prefix),
            internal_topic_name(Topic.PARTIALS, processor),
        ],
        f"{prefix}.sink": [
            topic_name(t, prefix)
            for t in (
                Topic.EVENTS_RAW,
                Topic.EVENTS_INVALID,
                Topic.EXPOSURES,
                Topic.METRIC_POINTS,
                Topic.ALERTS,
            )
        ],
        "sextant-notifier": [topic_name(Topic.ALERTS, prefix)],  # the notifier's default group
    }


def run_round(
    number: int, parts: list[Part], kafka: KafkaSection, load: Load, watch: Watch
) -> Round:
    collector, processor, gateway, _notifier = parts
    signal_minute = _minute(datetime.now(UTC)) + timedelta(minutes=1)
    result = Round(number, signal_minute)
    _wait_until(signal_minute + timedelta(seconds=2))
    if not load.signal():
        result.problems.append("the signal burst was not acknowledged")
    for offset, part in ((8, processor), (20, gateway), (32, collector)):
        _wait_until(signal_minute + timedelta(seconds=offset))
        _kill_and_restart(part)
        result.faults.append(f"kill -9 {part.name}")
    faulted = time.monotonic()
    try:
        wait_for(lambda: all(p.ready() for p in parts), READY_S, 0.5, "every part ready")
        result.ready_after_s = time.monotonic() - faulted
    except TimeoutError:
        result.problems.append("not ready: " + ", ".join(p.name for p in parts if not p.ready()))
    for state, window_end in (
        (AlertState.FIRING, signal_minute + timedelta(minutes=1)),
        (AlertState.RESOLVED, signal_minute + timedelta(minutes=2)),
    ):
        deadline = window_end + timedelta(seconds=LATENESS_S + ALERT_GRACE_S)
        while watch.seen(RULE, state, window_end) is None and datetime.now(UTC) < deadline:
            time.sleep(0.5)  # polling the followed alerts topic, with the deadline above
        seen = watch.seen(RULE, state, window_end)
        if seen is None:
            result.problems.append(
                f"no {state.value} transition for the window ending {window_end}"
            )
        elif state is AlertState.FIRING:
            result.fired_after_s = seen - window_end.timestamp()
        else:
            result.resolved_after_s = seen - window_end.timestamp()
    current = _minute(datetime.now(UTC)) - timedelta(minutes=1)
    try:
        wait_for(
            lambda: (watch.window(PROJECT, LOAD_METRIC) or current - timedelta(1)) >= current,
            60,
            0.5,
            "the load metric's newest window",
        )
        result.windows_current = True
    except TimeoutError:
        newest = watch.window(PROJECT, LOAD_METRIC)
        result.problems.append(f"the load metric's newest window is {newest}")
    load.paused.set()
    paused = time.monotonic()
    try:
        late: dict[str, int] = {}
        marks = liveness.end_marks(kafka, _read_by_group(kafka))

        def drained() -> bool:
            late.clear()
            late.update(liveness.behind(kafka, marks))
            return not late

        wait_for(drained, DRAIN_S, 1.0, "lags drained")
        result.drained_after_s = time.monotonic() - paused
    except TimeoutError:
        result.problems.append(f"lags not drained: {late}")
    finally:
        load.paused.clear()
    stalls = [s for p in parts for s in _stalls(p)]
    if stalls:
        result.problems.append(f"stalled: {stalls}")
    return result


def chaos(rounds: int, rate: int, root: Path, code: Path | None) -> list[Round]:
    broker = LocalBroker(root / "kafka")
    broker.start()
    kafka = KafkaSection(kafka_bootstrap=broker.bootstrap, topic_prefix="chaos")
    ensure_topics(kafka, partitions=12)
    _publish_config(kafka)
    env = _env(root, broker.bootstrap, kafka.topic_prefix, code)
    parts = [
        _part("collector", "collector", root, env, "SEXTANT_COLLECTOR_PORT"),
        _part("processor", "processor", root, env, "SEXTANT_PROCESSOR_PORT"),
        _part("gateway", "gateway", root, env, "SEXTANT_GATEWAY_PORT"),
        _part("notifier", "notifier", root, env, "SEXTANT_NOTIFIER_PORT"),
    ]
    results: list[Round] = []
    load: Load | None = None
    watch: Watch | None = None
    supervisor: Supervisor | None = None
    try:
        for part in parts:
            part.start()
        supervisor = Supervisor(parts)
        for part in parts:
            wait_for(part.ready, 180, 0.5, f"{part.name} ready")
        watch = Watch(kafka)
        load = Load(parts[0], rate)
        for number in range(1, rounds + 1):
            result = run_round(number, parts, kafka, load, watch)
            results.append(result)
            verdict = "STALLED " + "; ".join(result.problems) if result.stalled else "live"
            print(
                f"round {number}: {verdict} (ready {result.ready_after_s}, fired "
                f"{result.fired_after_s}, resolved {result.resolved_after_s}, drained "
                f"{result.drained_after_s})",
                flush=True,
            )
        return results
    finally:
        if supervisor is not None:
            supervisor.stop()
            if supervisor.exits:
                print(f"parts that exited by themselves: {supervisor.exits}")
        if load is not None:
            load.stop()
        if watch is not None:
            watch.stop()
        for part in parts:
            part.stop()
        broker.stop()


def report(results: list[Round], rate: int, code: Path | None) -> None:
    command = f"python -m bench.chaos --rounds {len(results)} --rate {rate}"
    if code is not None:
        command += f" --code {code}"
    stalled = sum(r.stalled for r in results)
    ready = [r.ready_after_s for r in results if r.ready_after_s is not None]
    fired = [r.fired_after_s for r in results if r.fired_after_s is not None]
    resolved = [r.resolved_after_s for r in results if r.resolved_after_s is not None]
    drained = [r.drained_after_s for r in results if r.drained_after_s is not None]
    figures = [
        Figure(
            NAME,
            "rounds that stalled (kill -9 of processor, gateway+sink, collector under load)",
            stalled,
            "rounds",
            "rounds",
            len(results),
            target="0",
            command=command,
        ),
        Figure(
            NAME,
            "slowest return to ready after a round's faults",
            max(ready, default=0),
            "s",
            command=command,
        ),
        Figure(
            NAME,
            "slowest firing transition after its window's end (lateness 10 s)",
            max(fired, default=0),
            "s",
            command=command,
        ),
        Figure(
            NAME,
            "slowest resolved transition after its window's end (lateness 10 s)",
            max(resolved, default=0),
            "s",
            command=command,
        ),
        Figure(
            NAME,
            "slowest drain once the load paused (every group committed where its topics ended)",
            max(drained, default=0),
            "s",
            command=command,
        ),
    ]
    if code is None:
        print(write_results(NAME, figures))
    for figure in figures:
        print(f"{figure.figure}: {figure.value:g} {figure.unit}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=400, help="events per second")
    parser.add_argument("--code", type=Path, help="run the parts from this checkout")
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sextant-chaos-"))
    keep = args.keep
    try:
        results = chaos(args.rounds, args.rate, root, args.code)
        keep = keep or any(r.stalled for r in results)
    finally:
        if keep:
            print(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results, args.rate, args.code)
    if any(r.stalled for r in results):
        raise SystemExit("a round stalled")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
