"""Liveness after a fault: what ``bench.soak`` checks after every fault it injects.

Exactness says nothing is lost or counted twice; liveness says everything moves again. After
a fault, with deadlines:

1. every part answers ready again (none reports a stalled consumer);
2. every consumer group commits up to where its topics ended when the check began (its lag
   drains, while the load goes on);
3. every metric's newest window reaches the current minute, or the minute of its last event
   if its feed has ended (the soak's load is shorter than its faults' checks);
4. an alert rule of this fault's own fires for a minute with a burst of its signal events,
   and resolves for the next, quiet minute, each transition seen within ``ALERT_GRACE_S``
   (plus the lateness) of its window's end.

The signals live in a project of their own (``PROJECT``), with a short lateness so windows
close within seconds, fed a steady trickle of heartbeat events that moves its watermark.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from sextant.core.kafka import TopicReader, consumer_group_offsets, end_offsets
from sextant.core.settings import KafkaSection
from sextant.schemas.config import (
    AlertRule,
    ApiKey,
    ConfigDocument,
    KeyKind,
    MetricDefinition,
    Project,
    hash_key,
)
from sextant.schemas.records import AlertState, AlertTransition, MetricPoint
from sextant.schemas.topics import Topic, topic_name

PROJECT = "live"
WRITE_KEY = "sx_write_live_000000000000000000"
HEARTBEAT_EVENT, HEARTBEAT_METRIC = "Heartbeat", "heartbeat"
LATENESS_S = 10
SIGNALS = 20
"""Signal events in a burst (each rule fires above 5 a minute)."""
READY_S = 240.0
DRAIN_S = 120.0
ALERT_GRACE_S = 90.0
"""A window closes once a later minute's point arrives plus the lateness: about a minute."""


def signal_event(k: int) -> str:
    return f"Signal {k}"


def signal_metric(k: int) -> str:
    return f"signal-{k}"


def rule_id(k: int) -> str:
    return f"signal-{k}-high"


def documents(signals: int) -> list[ConfigDocument]:
    """The liveness project: heartbeat, and one signal metric and threshold rule per fault."""
    found: list[ConfigDocument] = [
        Project(
            id=PROJECT,
            project_id=PROJECT,
            name="Liveness",
            rate_limit_per_second=1_000_000,
            allowed_lateness_seconds=LATENESS_S,
        ),
        ApiKey(id="w", project_id=PROJECT, key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE_KEY)),
        MetricDefinition(
            id=HEARTBEAT_METRIC, project_id=PROJECT, metric_kind="count", event=HEARTBEAT_EVENT
        ),
    ]
    for k in range(signals):
        found += [
            MetricDefinition(
                id=signal_metric(k), project_id=PROJECT, metric_kind="count", event=signal_event(k)
            ),
            AlertRule(
                id=rule_id(k),
                project_id=PROJECT,
                rule_kind="threshold",
                metric=signal_metric(k),
                direction="above",
                threshold=5,
            ),
        ]
    return found


class Watch:
    """Follows ``alerts`` (every transition) and ``metric_points`` (each metric's newest
    window with a count) from the beginning."""

    def __init__(self, kafka: KafkaSection) -> None:
        self.kafka = kafka
        self.transitions: list[tuple[float, AlertTransition]] = []
        self.newest: dict[tuple[str, str], datetime] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        for topic in (Topic.ALERTS, Topic.METRIC_POINTS):
            threading.Thread(target=self._follow, args=(topic,), daemon=True).start()

    def _follow(self, topic: Topic) -> None:
        while not self._stop.is_set():
            reader = TopicReader(self.kafka, topic_name(topic, self.kafka.topic_prefix))
            try:
                reader.assign(60.0, self._stop)
                reader.seek_to_beginning()
                while not self._stop.is_set():
                    for record in reader.poll(0.5):
                        if record.value is not None:
                            self._take(topic, record.value)
            except Exception:  # noqa: BLE001 - the broker went away (a fault): follow again
                self._stop.wait(1.0)
            finally:
                reader.close()

    def _take(self, topic: Topic, value: bytes) -> None:
        with self._lock:
            if topic is Topic.ALERTS:
                self.transitions.append((time.time(), AlertTransition.model_validate_json(value)))
                return
            point = MetricPoint.model_validate_json(value)
            if point.count or point.denominator:
                key = (point.project_id, point.metric)
                known = self.newest.get(key)
                if known is None or point.window_start > known:
                    self.newest[key] = point.window_start

    def seen(self, rule: str, state: AlertState, at: datetime) -> float | None:
        """When a transition of ``rule`` to ``state`` stamped ``at`` was first seen."""
        with self._lock:
            for seen_at, transition in self.transitions:
                if (transition.rule_id, transition.to_state, transition.at) == (rule, state, at):
                    return seen_at
        return None

    def window(self, project: str, metric: str) -> datetime | None:
        with self._lock:
            return self.newest.get((project, metric))

    def stop(self) -> None:
        self._stop.set()


def _event(name: str, user: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": f"live-{user}",
        "messageId": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
    }


class Signals:
    """The liveness project's events, sent to the collector with its own key: a heartbeat
    every ``every_s`` (retried until acknowledged) and signal bursts."""

    def __init__(self, collector_url: Callable[[], str], every_s: float = 0.5) -> None:
        self.collector_url = collector_url
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def send(self, events: Sequence[dict[str, Any]], timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        body = orjson.dumps({"batch": list(events)})
        with httpx.Client(auth=(WRITE_KEY, ""), timeout=5) as client:
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    answer = client.post(
                        self.collector_url(),
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    if answer.status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                self._stop.wait(0.5)
        return False

    def _heartbeat(self) -> None:
        beat = 0
        while not self._stop.wait(self.every_s):
            self.send([_event(HEARTBEAT_EVENT, beat % 10)], timeout_s=5)
            beat += 1

    def burst(self, k: int) -> datetime | None:
        """Send a burst of signal ``k``; the minute it falls in (None if not acknowledged)."""
        at = datetime.now(UTC)
        events = [
            _event(signal_event(k), i) | {"timestamp": at.isoformat()} for i in range(SIGNALS)
        ]
        if not self.send(events):
            return None
        return at.replace(second=0, microsecond=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass
class Check:
    """What one fault's liveness check saw."""

    fault: str
    ready_after_s: float | None = None
    drained_after_s: float | None = None
    fired_after_s: float | None = None
    resolved_after_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return not self.problems


def _until(probe: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until ``probe`` holds (None: not within ``timeout_s``)."""
    began = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - began
        if time.monotonic() - began > timeout_s:
            return None
        time.sleep(every_s)  # polling, with the deadline above


Marks = dict[tuple[str, str], dict[int, int]]
"""Per (consumer group, topic): each partition's end offset when a wait began."""


def end_marks(kafka: KafkaSection, groups: Mapping[str, Sequence[str]]) -> Marks:
    """Where each group's topics end now."""
    return {
        (group, topic): end_offsets(kafka, topic)
        for group, topics in groups.items()
        for topic in topics
    }


def behind(kafka: KafkaSection, marks: Marks) -> dict[str, int]:
    """Records before ``marks`` that a group has not committed, by ``group topic[partition]``.

    Not "lag zero at one instant": the heartbeat (and the processor's closing windows) keep
    writing meanwhile, and a record that arrived a moment ago is rightly not committed yet.
    """
    late: dict[str, int] = {}
    for (group, topic), ends in marks.items():
        done = consumer_group_offsets(kafka, group, topic)
        for partition, end in ends.items():
            if done.get(partition, 0) < end:
                late[f"{group} {topic}[{partition}]"] = end - done.get(partition, 0)
    return late


def check_after_fault(
    fault: str,
    k: int,
    *,
    kafka: KafkaSection,
    ready: Callable[[], bool],
    groups: Mapping[str, Sequence[str]],
    metrics: Sequence[tuple[str, str, Callable[[], datetime | None]]],
    signals: Signals,
    watch: Watch,
) -> Check:
    """The liveness promises after ``fault`` (its alert rule is number ``k``)."""
    check = Check(fault)
    check.ready_after_s = _until(ready, READY_S)
    if check.ready_after_s is None:
        check.problems.append("not every part is ready again")
        return check
    try:
        marks = end_marks(kafka, groups)
        check.drained_after_s = _until(lambda: not behind(kafka, marks), DRAIN_S, 1.0)
    except Exception as error:  # noqa: BLE001 - a broker fault in the middle: reported
        check.problems.append(f"offsets unreadable: {error!r}")
    if check.drained_after_s is None and not check.problems:
        check.problems.append("a group did not commit up to its topics' ends in time")
    minute = signals.burst(k)
    if minute is None:
        check.problems.append("the signal burst was not acknowledged")
        return check
    for state, window_end in (
        (AlertState.FIRING, minute + timedelta(minutes=1)),
        (AlertState.RESOLVED, minute + timedelta(minutes=2)),
    ):
        grace = (window_end - datetime.now(UTC)).total_seconds() + LATENESS_S + ALERT_GRACE_S

        def transition_seen(s: AlertState = state, e: datetime = window_end) -> bool:
            return watch.seen(rule_id(k), s, e) is not None

        if _until(transition_seen, max(grace, 0.0)) is None:
            check.problems.append(f"no {state.value} transition for the window ending {window_end}")
            continue
        seen = watch.seen(rule_id(k), state, window_end)
        assert seen is not None
        after = seen - window_end.timestamp()
        if state is AlertState.FIRING:
            check.fired_after_s = after
        else:
            check.resolved_after_s = after
    current = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    for project, metric, fed_until in metrics:
        last_event = fed_until()
        if last_event is None:
            continue
        # A metric fed only for a while (the load) is current once it reaches its last event.
        due = min(current, last_event.replace(second=0, microsecond=0))

        def advanced(p: str = project, m: str = metric, d: datetime = due) -> bool:
            newest = watch.window(p, m)
            return newest is not None and newest >= d

        if _until(advanced, 90) is None:
            check.problems.append(
                f"{project}/{metric}: newest window {watch.window(project, metric)}"
            )
    return check
