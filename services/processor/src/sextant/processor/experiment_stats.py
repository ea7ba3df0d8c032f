"""Streamed experiment statistics: per-unit totals and per-variant sums, one partition's part.

A unit's events are all on one partition of ``events.raw`` (keyed by ``distinct_id``), so a
partition holds every unit's whole story and its variants' sums are exact for its units;
a reader adds the partitions' records (:class:`ExperimentMetricStatistics`) up.

Per experiment and unit: the variations it was exposed to (the first timestamp of each, as
the ``exposures`` table keeps them), and per metric the raw totals of its ``x`` and ``y``
parts after the exposure and in the look-back window before it. Each event changes a unit's
values ``(x, y, x_pre, y_pre)``, and the variant's fourteen sums move by the difference of
the products (``Σx² += x₁² − x₀²``, ...): O(1) per event. Events that arrive before their
unit's exposure wait in a per-unit buffer (their time, offset and contributions), kept for
the look-back window plus a margin behind the partition's event time: the exposure takes its
covariate and any earlier-arriving later events from there.

Exactness across restarts follows the first stage's rules (``sextant.processor.partition``):
every persisted entry (a unit's totals, a unit's buffer) carries the offset of the last
event applied to it and skips a replayed event at or below it; an exposure takes from the
buffer only events at or below its own offset; the variant sums are not persisted but
added up again from the restored units (``math.fsum``). A record's ``version`` is the
partition's offset, so the newest record of a partition is its sums after that offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import orjson

from sextant.schemas.config import SURVEY_KINDS
from sextant.schemas.events import EXPERIMENT_VIEWED, EventType
from sextant.schemas.experiment_stream import Part, StreamedMetric, unit_of
from sextant.schemas.filters import Predicate, compile_filters, number_of
from sextant.schemas.metric_values import response_value
from sextant.schemas.statistics import (
    MOMENT_FIELDS,
    ExperimentMetricStatistics,
    SufficientStatistics,
)

DAY = 86_400.0
WIDTH = len(MOMENT_FIELDS) + 1
"""Per metric and variant: the fourteen sums, then the units with pre-exposure data."""


class EventLike(Protocol):
    @property
    def project_id(self) -> str: ...
    @property
    def type(self) -> EventType: ...
    @property
    def event(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def anonymous_id(self) -> str | None: ...
    @property
    def properties(self) -> Any: ...
    @property
    def timestamp(self) -> float: ...


@dataclass(frozen=True)
class CompiledPart:
    """A part with its filters compiled; ``key`` names it in buffers (stable across
    restarts while the definition is unchanged)."""

    key: str
    event: str
    aggregate: str
    property: str | None
    matches: Predicate
    scorer: Callable[[float], float] | None = None
    """A survey response's value from its score (NPS, CSAT); None: the number itself."""

    @classmethod
    def of(cls, part: Part) -> CompiledPart:
        metric = part.metric
        key = f"{metric.id}:{part.aggregate}"
        scorer = None
        if metric.metric_kind in SURVEY_KINDS:
            scorer = partial(
                response_value, metric.metric_kind, satisfied_from=metric.satisfied_from
            )
        return cls(
            key,
            metric.event,
            part.aggregate,
            metric.property,
            compile_filters(metric.filters),
            scorer,
        )

    def contribution(self, properties: Any) -> float:
        """What one event adds to a unit's raw total (0: nothing)."""
        if not self.matches(properties):
            return 0.0
        if self.aggregate in ("count", "max"):
            return 1.0
        number = None if self.property is None else number_of(properties.get(self.property))
        if self.aggregate == "value":
            if number is None:
                return 0.0
            return number if self.scorer is None else self.scorer(number)
        return 0.0 if number is None else 1.0

    def value(self, raw: float) -> float:
        return min(raw, 1.0) if self.aggregate == "max" else raw


@dataclass(frozen=True)
class ExperimentPlan:
    """What the stream follows of one experiment (built from the config plane)."""

    project_id: str
    experiment: str
    fingerprint: str
    unit_field: str
    variants: tuple[str, ...]
    lookback_days: int
    start: float | None
    stop: float | None
    metrics: tuple[tuple[str, CompiledPart, CompiledPart | None], ...]

    @classmethod
    def of(
        cls,
        project_id: str,
        experiment: str,
        fingerprint: str,
        unit_field: str,
        variants: Iterable[str],
        lookback_days: int,
        start: datetime | None,
        stop: datetime | None,
        metrics: Iterable[StreamedMetric],
    ) -> ExperimentPlan:
        return cls(
            project_id,
            experiment,
            fingerprint,
            unit_field,
            tuple(variants),
            lookback_days,
            None if start is None else start.timestamp(),
            None if stop is None else stop.timestamp(),
            tuple(
                (m.id, CompiledPart.of(m.x), None if m.y is None else CompiledPart.of(m.y))
                for m in metrics
            ),
        )

    @property
    def lookback(self) -> float:
        return self.lookback_days * DAY

    def parts(self) -> Iterator[CompiledPart]:
        for _, x, y in self.metrics:
            yield x
            if y is not None:
                yield y

    def window(self, at: float, exposed_at: float) -> int:
        """Where an event at ``at`` counts for a unit exposed at ``exposed_at``: 0 after the
        exposure, 2 in the look-back window, -1 nowhere (as the events-table query)."""
        lookback = self.lookback
        start, stop = self.start, self.stop
        if stop is not None and at >= stop:
            return -1
        if start is not None and at < start - lookback:
            return -1
        if at >= exposed_at:
            return 0 if start is None or at >= start else -1
        if lookback and at >= exposed_at - lookback:
            return 2
        return -1


class Plans(Protocol):
    """The experiments to stream, from the config plane."""

    @property
    def generation(self) -> int:
        """Changes whenever the plans may have changed."""
        ...

    def experiment_plans(self) -> dict[tuple[str, str], ExperimentPlan]: ...


@dataclass(slots=True)
class UnitTotals:
    """One unit of one experiment: its exposures and per metric ``[x, y, x_pre, y_pre]`` raw."""

    exposures: dict[str, float]
    offset: int
    raw: list[float]

    def variant(self, plan: ExperimentPlan) -> int:
        """The unit's variant (position in the plan), -1 if several or one not defined."""
        if len(self.exposures) != 1:
            return -1
        (variation,) = self.exposures
        try:
            return plan.variants.index(variation)
        except ValueError:
            return -1

    @property
    def exposed_at(self) -> float:
        return min(self.exposures.values())

    def values(self, plan: ExperimentPlan, i: int) -> tuple[float, float, float, float]:
        _, x, y = plan.metrics[i]
        raw = self.raw[4 * i : 4 * i + 4]
        if y is None:
            return x.value(raw[0]), 0.0, x.value(raw[2]), 0.0
        return x.value(raw[0]), y.value(raw[1]), x.value(raw[2]), y.value(raw[3])

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.offset, self.exposures, self.raw])

    @classmethod
    def from_bytes(cls, data: bytes) -> UnitTotals:
        offset, exposures, raw = orjson.loads(data)
        return cls({str(k): float(v) for k, v in exposures.items()}, int(offset), raw)


def moments(x: float, y: float, xp: float, yp: float) -> tuple[float, ...]:
    """One unit's terms of the fourteen sums (``MOMENT_FIELDS`` order) and its pre flag."""
    return (
        x,
        x * x,
        y,
        y * y,
        x * y,
        xp,
        xp * xp,
        yp,
        yp * yp,
        xp * yp,
        x * xp,
        x * yp,
        y * xp,
        y * yp,
        1.0 if xp != 0 or yp != 0 else 0.0,
    )


@dataclass
class Tracked:
    """One experiment on this partition: its plan, since when, and its variants' sums."""

    plan: ExperimentPlan
    tracked_after: float | None
    units: dict[str, UnitTotals] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    sums: list[list[float]] = field(default_factory=list)
    """Per variant: ``WIDTH`` numbers per metric."""
    multi: int = 0

    def __post_init__(self) -> None:
        variants, width = len(self.plan.variants), WIDTH * len(self.plan.metrics)
        self.counts = [0] * variants
        self.sums = [[0.0] * width for _ in range(variants)]

    def add(self, unit: UnitTotals, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) a unit's terms."""
        variant = unit.variant(self.plan)
        if variant < 0:
            if len(unit.exposures) > 1:
                self.multi += sign
            return
        self.counts[variant] += sign
        row = self.sums[variant]
        for i in range(len(self.plan.metrics)):
            base = WIDTH * i
            for j, term in enumerate(moments(*unit.values(self.plan, i))):
                if term:
                    row[base + j] += sign * term

    def move(
        self,
        unit: UnitTotals,
        changes: dict[int, tuple[tuple[float, float, float, float], tuple[float, ...]]],
    ) -> None:
        """A unit's values of some metrics changed (before, after): move its variant's sums
        by the difference of its terms."""
        variant = unit.variant(self.plan)
        if variant < 0:
            return
        row = self.sums[variant]
        for i, (old, new) in changes.items():
            base = WIDTH * i
            for j, (a, b) in enumerate(zip(moments(*old), moments(*new), strict=True)):
                if a != b:
                    row[base + j] += b - a

    def rebuild(self) -> None:
        """The sums added up afresh from the units (exactly rounded)."""
        self.__post_init__()
        self.multi = 0
        terms: list[list[list[float]]] = [
            [[] for _ in range(WIDTH * len(self.plan.metrics))] for _ in self.plan.variants
        ]
        for unit in self.units.values():
            variant = unit.variant(self.plan)
            if variant < 0:
                self.multi += len(unit.exposures) > 1
                continue
            self.counts[variant] += 1
            for i in range(len(self.plan.metrics)):
                for j, term in enumerate(moments(*unit.values(self.plan, i))):
                    terms[variant][WIDTH * i + j].append(term)
        self.sums = [[math.fsum(column) for column in variant] for variant in terms]

    def records(
        self, partition: int, partitions: int, version: int, as_of: datetime
    ) -> list[ExperimentMetricStatistics]:
        plan = self.plan
        after = (
            None if self.tracked_after is None else datetime.fromtimestamp(self.tracked_after, UTC)
        )

        def record(
            metric: str, v: int, statistics: SufficientStatistics
        ) -> ExperimentMetricStatistics:
            return ExperimentMetricStatistics(
                project_id=plan.project_id,
                experiment=plan.experiment,
                metric=metric,
                variant=plan.variants[v],
                lookback_days=plan.lookback_days,
                statistics=statistics,
                as_of=as_of,
                source_partition=partition,
                partitions=partitions,
                version=version,
                fingerprint=plan.fingerprint,
                tracked_after=after,
                multi_variant_units=self.multi,
            )

        found = []
        for v in range(len(plan.variants)):
            n = self.counts[v]
            found.append(record("", v, SufficientStatistics(n=n)))
            for i, (metric, _, _) in enumerate(plan.metrics):
                values = self.sums[v][WIDTH * i : WIDTH * (i + 1)]
                sums = dict(zip(MOMENT_FIELDS, values[:-1], strict=True))
                for name in ("sum_x_sq", "sum_y_sq", "sum_x_pre_sq", "sum_y_pre_sq"):
                    sums[name] = max(sums[name], 0.0)  # a delta's rounding below zero
                statistics = SufficientStatistics(n=n, units_with_pre=round(values[-1]), **sums)
                found.append(record(metric, v, statistics))
        return found


@dataclass(slots=True)
class Buffer:
    """A unit's recent events that experiments read: ``[time, offset, {part: value}]``."""

    offset: int = -1
    entries: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.offset, self.entries])

    @classmethod
    def from_bytes(cls, data: bytes) -> Buffer:
        offset, entries = orjson.loads(data)
        return cls(int(offset), [(float(t), int(o), dict(c)) for t, o, c in entries])


class ExperimentStatistics:
    """The streamed statistics of one ``events.raw`` partition (see the module docstring)."""

    def __init__(
        self,
        partition: int,
        partitions: int,
        plans: Plans,
        margin_seconds: float = 2 * DAY,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.partition = partition
        self.partitions = partitions
        self.plans = plans
        self.margin = margin_seconds
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.buffers: dict[tuple[str, str], Buffer] = {}
        self._by_project: dict[str, list[Tracked]] = {}
        self._unit_fields: dict[str, tuple[str, ...]] = {}
        self._parts: dict[tuple[str, str], list[CompiledPart]] = {}
        self._generation: int | None = None
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_units: set[tuple[str, str, str]] = set()
        self._dirty_buffers: set[tuple[str, str]] = set()
        self._deleted: list[str] = []
        self._swept: dict[str, float] = {}

    # keys ----------------------------------------------------------------------------------

    def _tracked_key(self, key: tuple[str, str]) -> str:
        return f"{self.partition}|t|{key[0]}|{key[1]}"

    def _unit_key(self, project: str, experiment: str, unit: str) -> str:
        return f"{self.partition}|s|{project}|{experiment}|{unit}"

    def _buffer_key(self, key: tuple[str, str]) -> str:
        return f"{self.partition}|b|{key[0]}|{key[1]}"

    # config --------------------------------------------------------------------------------

    def reconcile(self, watermarks: dict[str, float]) -> None:
        """Follow the plans: start new or changed experiments (from the partition's event
        time now), forget removed ones."""
        generation = self.plans.generation
        if generation == self._generation:
            return
        self._generation = generation
        plans = self.plans.experiment_plans()
        for key in list(self.tracked):
            plan = plans.get(key)
            if plan is None or plan.fingerprint != self.tracked[key].plan.fingerprint:
                self._forget(key)
        for key, plan in plans.items():
            if key not in self.tracked:
                self.tracked[key] = Tracked(plan, watermarks.get(plan.project_id))
                self._dirty.add(key)
        self._index()

    def _forget(self, key: tuple[str, str]) -> None:
        tracked = self.tracked.pop(key)
        self._deleted.append(self._tracked_key(key))
        self._deleted.extend(self._unit_key(*key, unit) for unit in tracked.units)
        self._dirty.discard(key)
        self._dirty_units = {u for u in self._dirty_units if u[:2] != key}

    def _index(self) -> None:
        self._by_project = {}
        parts: dict[tuple[str, str], dict[str, CompiledPart]] = {}
        for tracked in self.tracked.values():
            plan = tracked.plan
            self._by_project.setdefault(plan.project_id, []).append(tracked)
            for part in plan.parts():
                parts.setdefault((plan.project_id, part.event), {})[part.key] = part
        self._parts = {key: list(found.values()) for key, found in parts.items()}
        self._unit_fields = {
            project: tuple(sorted({t.plan.unit_field for t in experiments}))
            for project, experiments in self._by_project.items()
        }

    def forget(self, project: str, names: Callable[[str], bool]) -> int:
        """Remove the units of ``project`` that ``names`` picks (their totals leave their
        variant's sums) and their waiting events. Returns the entries removed."""
        removed = 0
        for tracked in self._by_project.get(project, []):
            key = (project, tracked.plan.experiment)
            for unit in [u for u in tracked.units if names(u)]:
                tracked.add(tracked.units.pop(unit), -1)
                self._deleted.append(self._unit_key(project, tracked.plan.experiment, unit))
                self._dirty_units.discard((*key, unit))
                self._dirty.add(key)
                removed += 1
        for key in [k for k in self.buffers if k[0] == project and names(k[1])]:
            del self.buffers[key]
            self._dirty_buffers.add(key)
            removed += 1
        return removed

    # recovery ------------------------------------------------------------------------------

    def load(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild from the persisted entries (``t``, ``s``, ``b`` kinds of the partition)."""
        plans = self.plans.experiment_plans()
        units: list[tuple[tuple[str, str], str, bytes]] = []
        for key, value in entries:
            _, kind, project, rest = key.split("|", 3)
            if kind == "t":
                raw = orjson.loads(value)
                plan = plans.get((project, rest))
                if plan is None or plan.fingerprint != raw["f"]:
                    self._deleted.append(key)
                    continue
                self.tracked[(project, rest)] = Tracked(plan, raw["a"])
            elif kind == "s":
                experiment, unit = rest.split("|", 1)
                units.append(((project, experiment), unit, value))
            elif kind == "b":
                self.buffers[(project, rest)] = Buffer.from_bytes(value)
        for owner, unit, value in units:
            found = self.tracked.get(owner)
            if found is None:
                self._deleted.append(self._unit_key(*owner, unit))
            else:
                found.units[unit] = UnitTotals.from_bytes(value)
        for tracked in self.tracked.values():
            tracked.rebuild()
        self._index()
        # Records of restored experiments may not have reached the topic before a crash.
        self._dirty.update(self.tracked)

    # the hot path --------------------------------------------------------------------------

    def apply(self, offset: int, event: EventLike, watermarks: dict[str, float]) -> None:
        """Apply one (deduplicated) event at ``offset``."""
        self.reconcile(watermarks)
        project = event.project_id
        tracked = self._by_project.get(project)
        if not tracked:
            return
        parts = self._parts.get((project, event.event))
        if parts:
            properties = event.properties
            found = {}
            for part in parts:
                value = part.contribution(properties)
                if value:
                    found[part.key] = value
            if found:
                self._contribute(offset, event, found, tracked)
        if event.type is EventType.TRACK and event.event == EXPERIMENT_VIEWED:
            self._expose(offset, event)

    def _contribute(
        self, offset: int, event: EventLike, found: dict[str, float], tracked: list[Tracked]
    ) -> None:
        project, at = event.project_id, event.timestamp
        for unit_field in self._unit_fields[project]:
            unit = unit_of(event.user_id, event.anonymous_id, unit_field)
            if unit is None:
                continue
            waiting = False
            for experiment in tracked:
                if experiment.plan.unit_field != unit_field:
                    continue
                totals = experiment.units.get(unit)
                if totals is None:
                    waiting = True
                elif offset > totals.offset:
                    self._update(experiment, unit, totals, offset, [(at, found)])
            if waiting:
                # Kept only while an experiment may still expose the unit.
                self._buffer(offset, (project, unit), at, found)

    def _buffer(
        self, offset: int, key: tuple[str, str], at: float, found: dict[str, float]
    ) -> None:
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = Buffer()
        if offset > buffer.offset:
            buffer.entries.append((at, offset, found))
            buffer.offset = offset
            self._dirty_buffers.add(key)

    def _update(
        self,
        experiment: Tracked,
        unit: str,
        totals: UnitTotals,
        offset: int,
        events: list[tuple[float, dict[str, float]]],
    ) -> None:
        plan = experiment.plan
        exposed_at = totals.exposed_at
        changed: set[int] = set()
        raw = totals.raw
        before = {}
        for at, found in events:
            window = plan.window(at, exposed_at)
            if window < 0:
                continue
            for i, (_, x, y) in enumerate(plan.metrics):
                dx = found.get(x.key)
                dy = None if y is None else found.get(y.key)
                if not dx and not dy:
                    continue
                if i not in before:
                    before[i] = totals.values(plan, i)
                    changed.add(i)
                if dx:
                    raw[4 * i + window] += dx
                if dy:
                    raw[4 * i + window + 1] += dy
        if changed:
            experiment.move(totals, {i: (before[i], totals.values(plan, i)) for i in changed})
            self._dirty.add((plan.project_id, plan.experiment))
        totals.offset = offset
        self._dirty_units.add((plan.project_id, plan.experiment, unit))

    def _expose(self, offset: int, event: EventLike) -> None:
        properties = event.properties
        experiment_id = _scalar_text(properties.get("experiment_id"))
        variation = _scalar_text(properties.get("variation_id"))
        if experiment_id is None or variation is None:
            return
        experiment = self.tracked.get((event.project_id, experiment_id))
        if experiment is None:
            return
        plan = experiment.plan
        unit = unit_of(event.user_id, event.anonymous_id, plan.unit_field)
        if unit is None:
            return
        totals = experiment.units.get(unit)
        if totals is not None:
            if offset <= totals.offset or variation in totals.exposures:
                return
            experiment.add(totals, -1)
            totals.exposures[variation] = event.timestamp
            totals.offset = offset
            experiment.add(totals, 1)
        else:
            totals = experiment.units[unit] = UnitTotals(
                {variation: event.timestamp}, -1, [0.0] * (4 * len(plan.metrics))
            )
            experiment.add(totals, 1)
            buffer = self.buffers.get((plan.project_id, unit))
            waiting = (
                [] if buffer is None else [(t, c) for t, o, c in buffer.entries if o <= offset]
            )
            self._update(experiment, unit, totals, offset, waiting)
        self._dirty.add((plan.project_id, plan.experiment))
        self._dirty_units.add((plan.project_id, plan.experiment, unit))

    # flushing ------------------------------------------------------------------------------

    def flush(
        self, version: int, watermarks: dict[str, float], as_of: datetime
    ) -> tuple[list[ExperimentMetricStatistics], list[tuple[str, bytes | None]]]:
        """Records to send and table writes for everything changed since the last flush."""
        self.reconcile(watermarks)
        records = []
        for key in sorted(self._dirty):
            tracked = self.tracked.get(key)
            if tracked is not None:
                records.extend(tracked.records(self.partition, self.partitions, version, as_of))
        writes: list[tuple[str, bytes | None]] = [(key, None) for key in self._deleted]
        for project, experiment, unit in sorted(self._dirty_units):
            tracked = self.tracked.get((project, experiment))
            if tracked is not None and unit in tracked.units:
                value = tracked.units[unit].to_bytes()
                writes.append((self._unit_key(project, experiment, unit), value))
        self._prune(watermarks)
        for key in sorted(self._dirty_buffers):
            buffer = self.buffers.get(key)
            writes.append((self._buffer_key(key), None if buffer is None else buffer.to_bytes()))
        for key in sorted(self._dirty):
            tracked = self.tracked.get(key)
            if tracked is not None:
                value = orjson.dumps({"f": tracked.plan.fingerprint, "a": tracked.tracked_after})
                writes.append((self._tracked_key(key), value))
        self._dirty.clear()
        self._dirty_units.clear()
        self._dirty_buffers.clear()
        self._deleted.clear()
        return records, writes

    def _prune(self, watermarks: dict[str, float]) -> None:
        """Forget buffered events older than any exposure can still read: the look-back
        window plus the margin behind the project's event time (every buffer once an hour
        of event time, the changed ones at each flush)."""
        horizons = {}
        for project, experiments in self._by_project.items():
            watermark = watermarks.get(project)
            if watermark is not None:
                lookback = max(t.plan.lookback for t in experiments)
                horizons[project] = watermark - lookback - self.margin
        keys: Iterable[tuple[str, str]] = list(self._dirty_buffers)
        sweep = [p for p, w in watermarks.items() if w - self._swept.get(p, 0.0) >= 3600]
        if sweep:
            keys = [k for k in self.buffers if k[0] in sweep] + list(keys)
            self._swept.update({p: watermarks[p] for p in sweep})
        for key in keys:
            buffer = self.buffers.get(key)
            horizon = horizons.get(key[0])
            if buffer is None or horizon is None:
                continue
            if buffer.entries and buffer.entries[0][0] < horizon:
                buffer.entries = [e for e in buffer.entries if e[0] >= horizon]
                self._dirty_buffers.add(key)
            if not buffer.entries:
                # The offset stays with the unit's totals: an empty buffer holds nothing.
                del self.buffers[key]
                self._dirty_buffers.add(key)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
