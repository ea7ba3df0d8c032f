"""Metric alert rules, evaluated in the stream as event-time windows close.

:class:`MetricAlertEngine` (no I/O) takes ``metric_points`` records and the config state and
returns the transitions of every metric rule (``threshold``, ``relative_change``,
``anomaly``); :class:`MetricAlertService` runs it beside the processor: it reads the whole
``metric_points`` topic (every partition, no consumer group) and writes transitions to the
``alerts`` topic, keyed ``project_id:rule_id``.

When a window closes
--------------------
A project's *watermark* is the latest ``window_start`` seen among its points; a partition that
the consumer has not read to its end holds the watermark back to what was seen there, so a
partition read ahead of another (as in a replay) does not close windows early. An evaluation
window ``[s, e)`` closes once the watermark reaches ``e`` plus the project's allowed lateness
(and an optional extra delay): the processor emits no correction for it after that. A window
then holds the newest version of each point inside it. Points for a closed window are late and
ignored. A point stamped far ahead of its own ``emitted_at`` does not move the watermark, so
one event from a wrong clock cannot close a day of windows.

Restarts
--------
On start the service reads the last recorded transition of every rule from the alerts topic,
then replays ``metric_points`` (``replay_hours`` back, or everything retained) *silently*, to
rebuild baselines and streaks. Once it has read to the end offsets it had at start, each
rule's rebuilt state is reconciled with the recorded one (:func:`sextant.core.alerting.resume`):
at most one transition per rule is emitted then, and none when they agree. From then on every
transition is emitted as its window closes. Transition ids are deterministic, so a second
evaluator, or a repeat after a failed publish, produces duplicates consumers drop by id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from sextant.core.alert_log import AlertPublisher, RuleKey, read_recorded
from sextant.core.alerting import resume, seed_state, window_floor
from sextant.core.background import BackgroundLoop
from sextant.core.config_plane import ConfigState
from sextant.core.kafka import TopicReader
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.core.settings import KafkaSection
from sextant.processor.alert_rules import MetricRuleEvaluator
from sextant.schemas.config import METRIC_RULE_KINDS, AlertRule, MetricDefinition
from sextant.schemas.records import AlertTransition, MetricPoint
from sextant.schemas.topics import Topic, topic_name

__all__ = ["MetricAlertEngine", "MetricAlertService", "Watermarks"]

log = get_logger(__name__)
DEFAULT_LATENESS_SECONDS = 300


class Watermarks:
    """Event-time progress per project, held back by the partitions not read to their end.

    ``watermark(project)`` is the latest start seen among the project's points, held back on
    each partition that is still *lagging* (not read to its end): to the project's latest
    start seen there, or, with none of its points read there yet, to the latest start read
    there of any project. A lagging partition not read at all yet may hold anything, so it
    holds every watermark back (a replay after a broker restart may fetch some partitions
    before the others).
    """

    def __init__(self, future_tolerance: timedelta = timedelta(minutes=10)) -> None:
        self.future_tolerance = future_tolerance
        self._seen: dict[str, dict[int, datetime]] = {}
        self._read: dict[int, datetime] = {}
        self._first: dict[str, datetime] = {}
        self._lagging: frozenset[int] = frozenset()

    def read(self, point: MetricPoint, partition: int) -> None:
        """Any point read from ``partition`` (of any window size): how far it has been read."""
        if point.window_start > point.emitted_at + self.future_tolerance:
            return
        if partition not in self._read or point.window_start > self._read[partition]:
            self._read[partition] = point.window_start

    def observe(self, point: MetricPoint, partition: int) -> None:
        if point.window_start > point.emitted_at + self.future_tolerance:
            return  # stamped by a wrong clock: never let it close windows
        self.read(point, partition)
        seen = self._seen.setdefault(point.project_id, {})
        if partition not in seen or point.window_start > seen[partition]:
            seen[partition] = point.window_start
        first = self._first.get(point.project_id)
        if first is None or point.window_start < first:
            self._first[point.project_id] = point.window_start

    def set_lagging(self, partitions: Iterable[int]) -> None:
        self._lagging = frozenset(partitions)

    def projects(self) -> list[str]:
        return sorted(self._seen)

    def first(self, project_id: str) -> datetime | None:
        return self._first.get(project_id)

    def watermark(self, project_id: str) -> datetime | None:
        seen = self._seen.get(project_id)
        if not seen:
            return None
        held: list[datetime] = []
        for partition in self._lagging:
            start = seen.get(partition, self._read.get(partition))
            if start is None:
                return None
            held.append(start)
        return min([max(seen.values()), *held])


@dataclass
class _Runner:
    evaluator: MetricRuleEvaluator
    shape: tuple[object, ...]
    next_start: datetime
    last_at: datetime | None = None


def _shape(rule: AlertRule, metric: MetricDefinition | None) -> tuple[object, ...]:
    """What a rule's history depends on: a change here starts the history afresh."""
    return (
        rule.rule_kind,
        rule.metric,
        rule.breakdown,
        rule.evaluation_window_minutes,
        rule.baseline,
        rule.baseline_windows,
        rule.ewma_alpha,
        rule.quantile,
        metric.metric_kind if metric else None,
    )


@dataclass
class _Series:
    """The newest version of each point of one metric, by window start and breakdown."""

    windows: dict[datetime, dict[str, MetricPoint]] = field(default_factory=dict)
    closed_before: datetime | None = None

    def add(self, point: MetricPoint) -> bool:
        if self.closed_before is not None and point.window_start < self.closed_before:
            return False
        window = self.windows.setdefault(point.window_start, {})
        known = window.get(point.breakdown)
        if known is None or point.version >= known.version:
            window[point.breakdown] = point
        return True

    def between(self, start: datetime, end: datetime, step: timedelta) -> list[MetricPoint]:
        found: list[MetricPoint] = []
        at = start
        while at < end:
            found.extend(self.windows.get(at, {}).values())
            at += step
        return found

    def prune(self, before: datetime) -> None:
        for start in [s for s in self.windows if s < before]:
            del self.windows[start]
        if self.closed_before is None or before > self.closed_before:
            self.closed_before = before


class MetricAlertEngine:
    """Evaluates every metric rule of every project as its windows close (no I/O).

    Feed points with :meth:`observe`, tell it which partitions still lag with
    :meth:`set_lagging`, then collect transitions with :meth:`close_windows`. While
    ``silent`` (a replay at start-up), transitions are computed but neither returned nor
    recorded; :meth:`finish_catch_up` reconciles with ``recorded`` (the last transition on the
    topic per rule) and ends the silence.
    """

    def __init__(
        self,
        config: ConfigState,
        recorded: Mapping[RuleKey, AlertTransition] | None = None,
        *,
        silent: bool = False,
        point_seconds: int = 60,
        close_delay: timedelta = timedelta(0),
        max_windows_per_close: int = 10_080,
    ) -> None:
        self.config = config
        self.recorded: dict[RuleKey, AlertTransition] = dict(recorded or {})
        self.silent = silent
        self.point_seconds = point_seconds
        self.close_delay = close_delay
        self.max_windows_per_close = max_windows_per_close
        self.watermarks = Watermarks()
        self.late_points = 0
        self._series: dict[tuple[str, str], _Series] = {}
        self._runners: dict[RuleKey, _Runner] = {}

    def observe(self, point: MetricPoint, partition: int = 0) -> None:
        """Take one ``metric_points`` record (any version, in any order)."""
        if point.window_seconds != self.point_seconds:
            self.watermarks.read(point, partition)
            return
        series = self._series.setdefault((point.project_id, point.metric), _Series())
        if series.add(point):
            self.watermarks.observe(point, partition)
        else:
            self.late_points += 1

    def set_lagging(self, partitions: Iterable[int]) -> None:
        """The partitions not read to their end yet: they hold the watermarks back."""
        self.watermarks.set_lagging(partitions)

    def close_windows(self) -> list[AlertTransition]:
        """Judge every window the watermarks have closed; the transitions to emit."""
        self._sync_rules()
        emitted: list[AlertTransition] = []
        for project_id in self.watermarks.projects():
            closable = self._closable_end(project_id)
            if closable is None:
                continue
            for key in sorted(k for k in self._runners if k[0] == project_id):
                emitted += self._close_runner(key, self._runners[key], closable)
            self._prune(project_id, closable)
        if self.silent:
            return []
        for transition in emitted:
            self.recorded[(transition.project_id, transition.rule_id)] = transition
        return emitted

    def finish_catch_up(self) -> list[AlertTransition]:
        """End the silent replay: reconcile each rebuilt state with the recorded one."""
        emitted: list[AlertTransition] = []
        for key in sorted(self._runners):
            runner = self._runners[key]
            if runner.last_at is None:
                runner.evaluator.state = seed_state(self.recorded.get(key))
                continue
            rule = runner.evaluator.rule
            state, transition = resume(
                key[0], rule, runner.evaluator.state, self.recorded.get(key), runner.last_at
            )
            runner.evaluator.state = state
            if transition is not None:
                emitted.append(transition)
                self.recorded[key] = transition
        self.silent = False
        return emitted

    def states(self) -> dict[RuleKey, str]:
        """The current state of every rule being evaluated (for diagnostics)."""
        return {key: r.evaluator.state.state.value for key, r in self._runners.items()}

    # --- internals ---

    def _closable_end(self, project_id: str) -> datetime | None:
        watermark = self.watermarks.watermark(project_id)
        if watermark is None:
            return None
        project = self.config.project(project_id)
        lateness = project.allowed_lateness_seconds if project else DEFAULT_LATENESS_SECONDS
        return watermark - timedelta(seconds=lateness) - self.close_delay

    def _sync_rules(self) -> None:
        rules = {
            (r.project_id, r.id): r
            for r in self.config.of_kind(AlertRule)
            if r.rule_kind in METRIC_RULE_KINDS
        }
        for key in [k for k in self._runners if k not in rules]:
            del self._runners[key]
        for key, rule in rules.items():
            self._sync_rule(key, rule)

    def _sync_rule(self, key: RuleKey, rule: AlertRule) -> None:
        metric = self.config.get(f"metric:{rule.project_id}:{rule.metric}")
        definition = metric if isinstance(metric, MetricDefinition) else None
        shape = _shape(rule, definition)
        runner = self._runners.get(key)
        if runner is not None and runner.shape == shape:
            runner.evaluator.rule = rule
            return
        kind = definition.metric_kind if definition else None
        if runner is not None:  # reshaped: keep the state, start the history afresh
            evaluator = MetricRuleEvaluator(rule.project_id, rule, kind, runner.evaluator.state)
            width = int(evaluator.window.total_seconds())
            start = window_floor(runner.next_start, width)
            self._runners[key] = _Runner(evaluator, shape, start, runner.last_at)
            return
        first = self._first_window(rule)
        if first is None:
            return  # no data for the project yet: created with its first points
        seeded = None if self.silent else seed_state(self.recorded.get(key))
        self._runners[key] = _Runner(
            MetricRuleEvaluator(rule.project_id, rule, kind, seeded), shape, first
        )

    def _first_window(self, rule: AlertRule) -> datetime | None:
        """A replay starts at the project's first point; a rule defined later starts at the
        first window still open, so it never reports on the past."""
        width = rule.evaluation_window_minutes * 60
        first = self.watermarks.first(rule.project_id)
        if first is None:
            return None
        start = window_floor(first, width)
        closable = self._closable_end(rule.project_id)
        if not self.silent and closable is not None:
            start = max(start, window_floor(closable, width))
        return start

    def _close_runner(
        self, key: RuleKey, runner: _Runner, closable: datetime
    ) -> list[AlertTransition]:
        evaluator = runner.evaluator
        width = evaluator.window
        if closable - runner.next_start > width * self.max_windows_per_close:
            skipped = closable - width * self.max_windows_per_close
            runner.next_start = window_floor(skipped, int(width.total_seconds()))
        series = self._series.get((key[0], evaluator.rule.metric or ""), _Series())
        step = timedelta(seconds=self.point_seconds)
        emitted: list[AlertTransition] = []
        while runner.next_start + width <= closable:
            points = series.between(runner.next_start, runner.next_start + width, step)
            transition = evaluator.close(runner.next_start, points)
            runner.next_start += width
            runner.last_at = runner.next_start
            if transition is not None:
                emitted.append(transition)
        return emitted

    def _prune(self, project_id: str, closable: datetime) -> None:
        needed: dict[str, datetime] = {}
        for (project, _), runner in self._runners.items():
            metric = runner.evaluator.rule.metric or ""
            if project == project_id:
                needed[metric] = min(needed.get(metric, runner.next_start), runner.next_start)
        for (project, metric), series in self._series.items():
            if project == project_id:
                series.prune(min(needed.get(metric, closable), closable))


class MetricAlertService(BackgroundLoop):
    """Runs :class:`MetricAlertEngine` over the ``metric_points`` topic in a background loop
    of its own (a :class:`~sextant.core.background.BackgroundLoop`).

    ``config_ready`` says when the config state has caught up; evaluation waits for it, so a
    start-up does not judge windows without their rules. Ready once the start-up replay is
    over. A broker failure restarts the session (re-read, replay, reconcile): safe, because
    transition ids are deterministic and reconciliation emits nothing that is recorded. Its
    progress per ``metric_points`` partition is reported under ``alert-evaluator``.
    """

    name = "metric-alerts"

    def __init__(
        self,
        settings: KafkaSection,
        config: ConfigState,
        config_ready: Callable[[], bool] = lambda: True,
        *,
        replay_hours: float | None = 192.0,
        close_delay_seconds: float = 0.0,
        point_seconds: int = 60,
        poll_timeout_ms: int = 200,
        now_ms: Callable[[], int] | None = None,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(progress=progress, retry_initial_s=1.0, retry_max_s=10.0)
        self.settings = settings
        self.config = config
        self.config_ready = config_ready
        self.replay_hours = replay_hours
        self.close_delay = timedelta(seconds=close_delay_seconds)
        self.point_seconds = point_seconds
        self.poll_timeout_ms = poll_timeout_ms
        self._now_ms = now_ms
        self.topic = topic_name(Topic.METRIC_POINTS, settings.topic_prefix)
        self.emitted = 0
        self.engine: MetricAlertEngine | None = None
        self._caught_up = threading.Event()

    def ready(self) -> bool:
        return self.alive and self._caught_up.is_set()

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def on_session_failed(self, error: Exception) -> None:
        self._caught_up.clear()

    def session(self) -> None:
        while not self.config_ready():
            if self.wait(0.2):
                return
        recorded = read_recorded(self.settings)
        engine = MetricAlertEngine(
            self.config,
            recorded,
            silent=True,
            point_seconds=self.point_seconds,
            close_delay=self.close_delay,
        )
        self.engine = engine
        reader = TopicReader(self.settings, self.topic)
        publisher = AlertPublisher(self.settings)
        try:
            partitions = reader.assign(float("inf"), self.stopping)
            if not partitions:
                return
            self._seek_replay(reader)
            end = reader.end_offsets()
            self.connected()
            while not self.stopping.is_set():
                self._step(reader, engine, publisher, partitions, end)
        finally:
            self._caught_up.clear()
            reader.close()
            publisher.close()

    def _seek_replay(self, reader: TopicReader) -> None:
        """Start ``replay_hours`` back (by record time), or at the beginning."""
        if self.replay_hours is None:
            reader.seek_to_beginning()
            return
        now_ms = self._now_ms() if self._now_ms else int(time.time() * 1000)
        since = now_ms - int(self.replay_hours * 3_600_000)
        for partition, offset in reader.offsets_for_time(since).items():
            if offset is None:
                reader.seek_to_end(partition)  # every record there is older than the replay
            else:
                reader.seek(partition, offset)

    def _step(
        self,
        reader: TopicReader,
        engine: MetricAlertEngine,
        publisher: AlertPublisher,
        partitions: list[int],
        end: dict[int, int],
    ) -> None:
        records = reader.poll(self.poll_timeout_ms / 1000)
        for record in records:
            self._observe(engine, record.partition, record.value)
        lagging = self._lagging(reader, partitions, end, engine.silent, bool(records))
        engine.set_lagging(lagging)
        transitions = engine.close_windows()
        if engine.silent and not lagging:
            transitions += engine.finish_catch_up()
            self._caught_up.set()
            log.info("alert evaluation caught up", rules=len(engine.states()))
        if transitions:
            publisher.publish(transitions)
            self.emitted += len(transitions)
            for t in transitions:
                log.info("alert transition", rule=t.rule_id, to=t.to_state.value, at=str(t.at))

    @staticmethod
    def _observe(engine: MetricAlertEngine, partition: int, value: bytes | None) -> None:
        if value is None:
            return
        try:
            engine.observe(MetricPoint.model_validate_json(value), partition)
        except ValidationError:
            log.error("skipping an unreadable metric point", partition=partition)

    def _lagging(
        self,
        reader: TopicReader,
        partitions: list[int],
        end: dict[int, int],
        replaying: bool,
        moved: bool,
    ) -> set[int]:
        lagging: set[int] = set()
        for partition in partitions:
            position = reader.position(partition)
            highwater = reader.highwater(partition)
            target = end.get(partition, 0) if replaying else highwater
            if target is not None and position < target:
                lagging.add(partition)
            if moved:
                self.progress.moved(partition, position)
            if highwater is not None:
                self.progress.waiting(partition, highwater - position)
        return lagging
