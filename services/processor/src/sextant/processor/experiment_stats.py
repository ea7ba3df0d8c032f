"""Streamed experiment statistics: per-unit totals and per-variant sums, one partition's part.

A unit's events are all on one partition of ``events.raw`` (keyed by ``distinct_id``), so a
partition holds every unit's whole story and its variants' sums are exact for its units;
a reader adds the partitions' records (:class:`ExperimentMetricStatistics`) up.

Per experiment and unit: the variations it was exposed to (the first timestamp of each, as
the ``exposures`` table keeps them), and per metric the raw totals of its ``x`` and ``y``
parts after the exposure and in the look-back window before it. Each event changes a unit's
values ``(x, y, x_pre, y_pre)``, and the variant's fourteen sums move by the difference of
the products (``Σx² += x₁² − x₀²``, ...), once per changed unit and flush (with numpy, over
the flush's changed units at once): O(1) per event. Events that arrive before their unit's
exposure wait in a per-unit buffer (their time, offset and contributions), kept for the
look-back window plus a margin behind the partition's event time: the exposure takes its
covariate and any earlier-arriving later events from there.

Persisted in a few table entries a flush, not one per unit: the units a flush changed as
chunks (:mod:`sextant.processor.chunked`), the events the buffers gained as a segment of the
partition's append-only buffer log (:mod:`sextant.processor.buffer_log`).

Exactness across restarts follows the first stage's rules (``sextant.processor.partition``):
every persisted unit and buffer carries the offset of the last event applied to it and skips
a replayed event at or below it; an exposure takes from the buffer only events at or below
its own offset; the variant sums are not persisted but added up again from the restored units
(``math.fsum``). A record's ``version`` is the partition's offset, so the newest record of a
partition is its sums after that offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from typing import Any, Protocol

import numpy as np
import orjson

from sextant.processor.buffer_log import BufferLog, Contributions, Entry, contributions_of
from sextant.processor.chunked import ChunkedEntries
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
    always_one: bool = False
    """Every event adds 1 (a count or a unique user with no filter)."""

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
            always_one=part.aggregate in ("count", "max") and not metric.filters,
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
    lookback: float = field(init=False)
    slots: dict[str, tuple[int, ...]] = field(init=False)
    """Per part key, where its values go in a unit's raw totals (plus 0 after the exposure,
    2 before it)."""
    pairs: tuple[tuple[str, int], ...] = field(init=False)
    """``slots`` as ``(part key, slot)`` pairs."""

    def __post_init__(self) -> None:
        slots: dict[str, list[int]] = {}
        for i, (_, x, y) in enumerate(self.metrics):
            slots.setdefault(x.key, []).append(4 * i)
            if y is not None:
                slots.setdefault(y.key, []).append(4 * i + 1)
        object.__setattr__(self, "slots", {key: tuple(found) for key, found in slots.items()})
        pairs = tuple((key, slot) for key, found in slots.items() for slot in found)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "lookback", self.lookback_days * DAY)

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
    exposed_at: float = 0.0
    """The first exposure's time (kept: every event reads it)."""
    variant_at: int = -1
    """:meth:`variant`, as its experiment last counted the unit."""

    def __post_init__(self) -> None:
        self.exposed_at = min(self.exposures.values())

    def variant(self, plan: ExperimentPlan) -> int:
        """The unit's variant (position in the plan), -1 if several or one not defined."""
        if len(self.exposures) != 1:
            return -1
        (variation,) = self.exposures
        try:
            return plan.variants.index(variation)
        except ValueError:
            return -1

    def values(
        self, plan: ExperimentPlan, i: int, raw: list[float] | None = None
    ) -> tuple[float, float, float, float]:
        """Metric ``i``'s ``(x, y, x_pre, y_pre)`` from the unit's raw totals (or ``raw``)."""
        _, x, y = plan.metrics[i]
        raw = (self.raw if raw is None else raw)[4 * i : 4 * i + 4]
        if y is None:
            return x.value(raw[0]), 0.0, x.value(raw[2]), 0.0
        return x.value(raw[0]), y.value(raw[1]), x.value(raw[2]), y.value(raw[3])

    def to_json(self) -> list[Any]:
        return [self.offset, self.exposures, self.raw]

    @classmethod
    def from_json(cls, value: list[Any]) -> UnitTotals:
        offset, exposures, raw = value
        return cls({str(k): float(v) for k, v in exposures.items()}, int(offset), raw)


def moment_columns(x: Any, y: Any, xp: Any, yp: Any) -> list[Any]:
    """The terms of the fourteen sums (``MOMENT_FIELDS`` order) and the pre flag: of one unit
    (floats in), or of many at once (numpy arrays in, one array per term out)."""
    return [
        x, x * x, y, y * y, x * y, xp, xp * xp, yp, yp * yp, xp * yp, x * xp, x * yp,
        y * xp, y * yp, ((xp != 0) | (yp != 0)) * 1.0,
    ]  # fmt: skip


_FEW_UNITS = 8
"""Below this many changed units, the sums move unit by unit: numpy's set-up costs more."""


def _matrix(rows: Iterable[list[float]], count: int, width: int) -> Any:
    """``count`` rows of ``width`` floats as one array (faster than ``np.array`` of lists)."""
    return np.fromiter(chain.from_iterable(rows), float, count * width).reshape(count, width)


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
    pending: dict[str, list[float]] = field(default_factory=dict)
    """Units changed since the sums last moved: their raw totals as the sums count them.
    The sums move once per unit and flush (:meth:`settle`), not once per event."""
    dirty: bool = True
    """Its records are to be sent with the next flush."""
    persisted: bool = False
    """Its own entry (the fingerprint, since when) is in the table."""
    changed: set[str] = field(default_factory=set)
    """Units whose totals (or offset) the next flush writes."""

    def __post_init__(self) -> None:
        variants, width = len(self.plan.variants), WIDTH * len(self.plan.metrics)
        self.counts = [0] * variants
        self.sums = [[0.0] * width for _ in range(variants)]
        metrics = self.plan.metrics
        # The metrics whose x (and y) count a unit once, however many events: min(·, 1).
        self._capped = (
            [i for i, (_, x, _) in enumerate(metrics) if x.aggregate == "max"],
            [i for i, (_, _, y) in enumerate(metrics) if y is not None and y.aggregate == "max"],
        )

    def add(self, unit: UnitTotals) -> None:
        """Count a unit (new, or exposed anew) in its variant's sums."""
        self._add(unit, 1, unit.raw)

    def remove(self, name: str, unit: UnitTotals) -> None:
        """Take a unit's terms out of the sums, as the sums count them."""
        self._add(unit, -1, self.pending.pop(name, unit.raw))

    def _add(self, unit: UnitTotals, sign: int, raw: list[float]) -> None:
        variant = unit.variant_at = unit.variant(self.plan)
        if variant < 0:
            if len(unit.exposures) > 1:
                self.multi += sign
            return
        self.counts[variant] += sign
        if not any(raw):
            return  # a new unit: its terms are all zero
        row = self.sums[variant]
        for i in range(len(self.plan.metrics)):
            base = WIDTH * i
            for j, term in enumerate(moment_columns(*unit.values(self.plan, i, raw))):
                if term:
                    row[base + j] += sign * term

    def settle(self) -> None:
        """Move each variant's sums by the difference of its pending units' terms."""
        if len(self.pending) < _FEW_UNITS:
            for name, before in self.pending.items():
                unit = self.units[name]
                self._add(unit, -1, before)
                self._add(unit, 1, unit.raw)
            self.pending.clear()
            return
        units = [self.units[name] for name in self.pending]
        count, width = len(units), 4 * len(self.plan.metrics)
        variants = np.fromiter((u.variant_at for u in units), int, count)
        before = _matrix(self.pending.values(), count, width)
        after = _matrix((u.raw for u in units), count, width)
        self.pending.clear()
        delta = self._terms(after) - self._terms(before)
        for v in range(len(self.plan.variants)):
            mask = variants == v
            if mask.any():
                # (term, unit, metric) summed over units, then metric by metric.
                moved = delta[:, mask, :].sum(axis=1).T.ravel().tolist()
                self.sums[v] = [a + b for a, b in zip(self.sums[v], moved, strict=True)]

    def _terms(self, raw: Any) -> Any:
        """The fifteen terms of every unit and metric, as an array (term, unit, metric)."""
        x, y, xp, yp = raw[:, 0::4], raw[:, 1::4], raw[:, 2::4], raw[:, 3::4]
        capped_x, capped_y = self._capped
        if capped_x:
            x, xp = x.copy(), xp.copy()
            x[:, capped_x] = np.minimum(x[:, capped_x], 1.0)
            xp[:, capped_x] = np.minimum(xp[:, capped_x], 1.0)
        if capped_y:
            y, yp = y.copy(), yp.copy()
            y[:, capped_y] = np.minimum(y[:, capped_y], 1.0)
            yp[:, capped_y] = np.minimum(yp[:, capped_y], 1.0)
        return np.stack(moment_columns(x, y, xp, yp))

    def rebuild(self) -> None:
        """The sums added up afresh from the units (exactly rounded)."""
        self.__post_init__()
        self.multi = 0
        self.pending.clear()
        terms: list[list[list[float]]] = [
            [[] for _ in range(WIDTH * len(self.plan.metrics))] for _ in self.plan.variants
        ]
        for unit in self.units.values():
            variant = unit.variant_at = unit.variant(self.plan)
            if variant < 0:
                self.multi += len(unit.exposures) > 1
                continue
            self.counts[variant] += 1
            for i in range(len(self.plan.metrics)):
                for j, term in enumerate(moment_columns(*unit.values(self.plan, i))):
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
    """A unit's recent events that experiments read: ``(time, offset, {part: value})``,
    persisted in the partition's :class:`~sextant.processor.buffer_log.BufferLog`."""

    offset: int = -1
    entries: list[Entry] = field(default_factory=list)

    def prune(self, horizon: float) -> None:
        """Forget the entries before ``horizon``."""
        self.entries = [e for e in self.entries if e[0] >= horizon]

    @classmethod
    def of(cls, entries: list[Entry]) -> Buffer:
        return cls(entries[-1][1], entries)


@dataclass(frozen=True)
class Route:
    """What an event of one name in one project does: the parts it may add to, and per unit
    field the experiments those parts belong to, each with its ``(part key, slot)`` pairs."""

    always: dict[str, float]
    """The parts every such event adds 1 to (shared by the events: never changed)."""
    always_items: Contributions
    """``always`` as the pairs a waiting event keeps: one tuple shared by every such event of
    a route with no computed part."""
    computed: tuple[CompiledPart, ...]
    targets: tuple[tuple[str, tuple[tuple[Tracked, tuple[tuple[str, int], ...]], ...]], ...]

    def contributions(self, properties: Any) -> dict[str, float]:
        """What the event adds, per part key (empty: nothing)."""
        if not self.computed:
            return self.always
        found = dict(self.always)
        for part in self.computed:
            value = part.contribution(properties)
            if value:
                found[part.key] = value
        return found

    @classmethod
    def of(cls, parts: Iterable[CompiledPart], experiments: Iterable[Tracked]) -> Route:
        by_key = {part.key: part for part in parts}
        targets: dict[str, list[tuple[Tracked, tuple[tuple[str, int], ...]]]] = {}
        for tracked in experiments:
            slots = tracked.plan.slots
            pairs = tuple((key, slot) for key in by_key for slot in slots.get(key, ()))
            if pairs:
                targets.setdefault(tracked.plan.unit_field, []).append((tracked, pairs))
        always = {key: 1.0 for key, part in by_key.items() if part.always_one}
        return cls(
            always,
            tuple(always.items()),
            tuple(part for part in by_key.values() if not part.always_one),
            tuple((field, tuple(found)) for field, found in sorted(targets.items())),
        )


Item = tuple[str, ...]
"""A persisted entry: ``("s", project, experiment, unit)`` a unit's totals (and, written by
earlier versions, ``("b", project, unit, first offset)`` a segment of a unit's buffer)."""


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
        self._routes: dict[str, dict[str, Route]] = {}
        """Per project and event name."""
        self._generation: int | None = None
        self._legacy_segments: list[Item] = []
        """Buffer segments earlier versions kept in the chunks, to delete there."""
        self._deleted: list[str] = []
        self._swept: dict[str, float] = {}
        self._horizons: dict[str, float] = {}
        self.entries: ChunkedEntries[Item] = ChunkedEntries(f"{partition}|e|", tuple)
        self.log = BufferLog(f"{partition}|l|")

    # keys ----------------------------------------------------------------------------------

    def _tracked_key(self, key: tuple[str, str]) -> str:
        return f"{self.partition}|t|{key[0]}|{key[1]}"

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
        self._index()

    def _forget(self, key: tuple[str, str]) -> None:
        self.tracked.pop(key)
        self._deleted.append(self._tracked_key(key))
        # Its units go from the store with no tombstone naming them.
        self.entries.rewrite_all()

    def _index(self) -> None:
        self._by_project = {}
        parts: dict[tuple[str, str], list[CompiledPart]] = {}
        for tracked in self.tracked.values():
            plan = tracked.plan
            self._by_project.setdefault(plan.project_id, []).append(tracked)
            for part in plan.parts():
                parts.setdefault((plan.project_id, part.event), []).append(part)
        self._routes = {project: {} for project in self._by_project}
        for (project, event), found in parts.items():
            self._routes[project][event] = Route.of(found, self._by_project[project])

    def forget(self, project: str, names: Callable[[str], bool]) -> int:
        """Remove the units of ``project`` that ``names`` picks (their totals leave their
        variant's sums) and their waiting events. Returns the entries removed."""
        removed = 0
        for tracked in self._by_project.get(project, []):
            for unit in [u for u in tracked.units if names(u)]:
                tracked.remove(unit, tracked.units.pop(unit))
                tracked.changed.discard(unit)
                tracked.dirty = True
                removed += 1
        for key in [k for k in self.buffers if k[0] == project and names(k[1])]:
            del self.buffers[key]
            removed += 1
        self._legacy_segments = [
            i for i in self._legacy_segments if not (i[1] == project and names(i[2]))
        ]
        if removed:
            # No value of theirs, nor a tombstone naming them, stays in the store.
            self.entries.rewrite_all()
            self.log.rewrite_all()
        return removed

    # recovery ------------------------------------------------------------------------------

    def load(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Rebuild from the persisted entries of the partition: ``t`` (an experiment
        followed), ``e`` (chunks of units) and ``l`` (the buffer log) kinds; and what earlier
        versions wrote, moved into the chunks and the log: the ``s`` and ``b`` entries of one
        entry per unit, and buffer segments in the chunks."""
        plans = self.plans.experiment_plans()
        items: dict[Item, Any] = {}
        legacy_buffers: dict[tuple[str, str], Buffer] = {}
        chunks, log = [], []
        for key, value in entries:
            _, kind, rest = key.split("|", 2)
            if kind == "e":
                chunks.append((key, value))
                continue
            if kind == "l":
                log.append((key, value))
                continue
            project, rest = rest.split("|", 1)
            if kind == "t":
                raw = orjson.loads(value)
                plan = plans.get((project, rest))
                if plan is None or plan.fingerprint != raw["f"]:
                    self._deleted.append(key)
                    continue
                self.tracked[(project, rest)] = Tracked(plan, raw["a"], persisted=True)
            elif kind == "s":
                items[("s", project, *rest.split("|", 1))] = orjson.loads(value)
                self._deleted.append(key)
            elif kind == "b":
                offset, waiting = orjson.loads(value)
                waiting = [(float(t), int(o), contributions_of(c)) for t, o, c in waiting]
                legacy_buffers[(project, rest)] = Buffer(int(offset), waiting)
                self._deleted.append(key)
        legacy = set(items)
        items.update(self.entries.load(chunks))
        segments: dict[tuple[str, str], dict[int, list[Any]]] = {}
        for item, value in items.items():
            if item[0] == "b":
                segments.setdefault((item[1], item[2]), {})[int(item[3])] = value
                self._legacy_segments.append(item)
                continue
            found = self.tracked.get((item[1], item[2]))
            if found is None:
                self.entries.rewrite_all()
            else:
                found.units[item[3]] = UnitTotals.from_json(value)
                if item in legacy:
                    found.changed.add(item[3])
        self.buffers = {owner: Buffer.of(entries) for owner, entries in self.log.load(log).items()}
        for owner, parts in segments.items():
            ordered = (entry for first in sorted(parts) for entry in parts[first])
            waiting = [(float(t), int(o), contributions_of(c)) for t, o, c in ordered]
            legacy_buffers[owner] = Buffer.of(waiting)
        for owner, buffer in legacy_buffers.items():
            self.buffers.setdefault(owner, buffer)
        if legacy_buffers:
            self.log.rewrite_all()
        for tracked in self.tracked.values():
            tracked.rebuild()
        self._index()
        # Records of restored experiments may not have reached the topic before a crash.
        for tracked in self.tracked.values():
            tracked.dirty = True

    # the hot path --------------------------------------------------------------------------

    def apply(self, offset: int, event: EventLike, watermarks: dict[str, float]) -> None:
        """Apply one (deduplicated) event at ``offset``."""
        if self.plans.generation != self._generation:
            self.reconcile(watermarks)
        routes = self._routes.get(event.project_id)
        if routes is None:
            return
        name = event.event
        route = routes.get(name)
        if route is not None:
            found = route.contributions(event.properties)
            if found:
                self._contribute(offset, event, found, route)
        if name == EXPERIMENT_VIEWED and event.type is EventType.TRACK:
            self._expose(offset, event)

    def _contribute(
        self, offset: int, event: EventLike, found: dict[str, float], route: Route
    ) -> None:
        at = event.timestamp
        for unit_field, experiments in route.targets:
            unit = unit_of(event.user_id, event.anonymous_id, unit_field)
            if unit is None:
                continue
            waiting = False
            for experiment, pairs in experiments:
                totals = experiment.units.get(unit)
                if totals is None:
                    waiting = True
                elif offset > totals.offset:
                    self._add(experiment, unit, totals, offset, at, found, pairs)
            if waiting:
                # Kept only while an experiment may still expose the unit.
                items = route.always_items if found is route.always else tuple(found.items())
                self._buffer(offset, (event.project_id, unit), at, items)

    @staticmethod
    def _add(
        experiment: Tracked,
        unit: str,
        totals: UnitTotals,
        offset: int,
        at: float,
        found: dict[str, float],
        pairs: tuple[tuple[str, int], ...],
    ) -> None:
        """One event's contributions to an exposed unit's totals, through ``pairs`` (the
        route's, or for a buffered event the plan's)."""
        window = experiment.plan.window(at, totals.exposed_at)
        if window >= 0:
            raw, changed = totals.raw, False
            for key, slot in pairs:
                value = found.get(key)
                if value:
                    if not changed:
                        changed = True
                        if unit not in experiment.pending:
                            experiment.pending[unit] = raw.copy()
                    raw[slot + window] += value
            if changed:
                experiment.dirty = True
        totals.offset = offset
        experiment.changed.add(unit)

    def _buffer(self, offset: int, key: tuple[str, str], at: float, found: Contributions) -> None:
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = Buffer()
        if offset > buffer.offset:
            entry = (at, offset, found)
            buffer.entries.append(entry)
            buffer.offset = offset
            self.log.append(key, entry)

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
            experiment.remove(unit, totals)
            totals.exposures[variation] = event.timestamp
            totals.exposed_at = min(totals.exposed_at, event.timestamp)
            totals.offset = offset
            experiment.add(totals)
        else:
            totals = experiment.units[unit] = UnitTotals(
                {variation: event.timestamp}, offset, [0.0] * (4 * len(plan.metrics))
            )
            experiment.add(totals)
            buffer = self.buffers.get((plan.project_id, unit))
            for at, waited, found in [] if buffer is None else buffer.entries:
                if waited <= offset:
                    self._add(experiment, unit, totals, offset, at, dict(found), plan.pairs)
        experiment.dirty = True
        experiment.changed.add(unit)

    # flushing ------------------------------------------------------------------------------

    def flush(
        self, version: int, watermarks: dict[str, float], as_of: datetime
    ) -> tuple[list[ExperimentMetricStatistics], list[tuple[str, bytes | None]]]:
        """Records to send and table writes for everything changed since the last flush."""
        self.reconcile(watermarks)
        records = []
        writes: list[tuple[str, bytes | None]] = []
        followed: list[tuple[str, bytes | None]] = []
        for key in sorted(k for k, t in self.tracked.items() if t.dirty):
            tracked = self.tracked[key]
            tracked.dirty = False
            tracked.settle()
            records.extend(tracked.records(self.partition, self.partitions, version, as_of))
            if not tracked.persisted:
                value = orjson.dumps({"f": tracked.plan.fingerprint, "a": tracked.tracked_after})
                followed.append((self._tracked_key(key), value))
                tracked.persisted = True
        swept = self._prune(watermarks)
        due = self.entries.due()
        changed = [(item, self._current(item)) for item in due]
        for (project, experiment), tracked in self.tracked.items():
            units = tracked.units
            for unit in tracked.changed:
                item = ("s", project, experiment, unit)
                if item not in due and unit in units:
                    changed.append((item, units[unit].to_json()))
            tracked.changed.clear()
        changed.extend((item, None) for item in self._legacy_segments if item not in due)
        writes.extend(self.entries.flush(changed))
        if swept:
            writes.extend(self.log.prune(self._horizons))
        writes.extend(self.log.flush(self.buffers))
        # An experiment's own entry after its units: one whose definition changed has its
        # old units gone first. Written once, so never deleted after (the same key, when an
        # experiment ended and began again with a new definition).
        writes.extend(followed)
        rewritten = {key for key, _ in followed}
        # Last: entries of earlier versions go once their chunk (or the log) is written.
        writes.extend((key, None) for key in self._deleted if key not in rewritten)
        self._legacy_segments.clear()
        self._deleted.clear()
        return records, writes

    def _current(self, item: Item) -> list[Any] | None:
        """An entry's value now (None: gone; buffers are in the log now)."""
        if item[0] == "b":
            return None
        tracked = self.tracked.get((item[1], item[2]))
        totals = None if tracked is None else tracked.units.get(item[3])
        return None if totals is None else totals.to_json()

    def _prune(self, watermarks: dict[str, float]) -> bool:
        """Forget buffered events older than any exposure can still read: the look-back
        window plus the margin behind the project's event time, in a sweep over the project's
        buffers once an hour of its event time (the log is append-only: pruning sooner saves
        no write). Whether a sweep ran."""
        sweep = [p for p, w in watermarks.items() if w - self._swept.get(p, 0.0) >= 3600]
        if not sweep:
            return False
        self._swept.update({p: watermarks[p] for p in sweep})
        horizons = {}
        for project, experiments in self._by_project.items():
            if project in sweep:
                lookback = max(t.plan.lookback for t in experiments)
                horizons[project] = watermarks[project] - lookback - self.margin
        self._horizons.update(horizons)
        for key in [k for k in self.buffers if k[0] in horizons]:
            buffer = self.buffers[key]
            buffer.prune(horizons[key[0]])
            if not buffer.entries:
                # The offset stays with the unit's totals: an empty buffer holds nothing.
                del self.buffers[key]
        return True


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
