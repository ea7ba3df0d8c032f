"""Streamed experiment statistics: the delta updates equal the sums recomputed from the units,
in any arrival order, through crashes after any prefix of a flush's writes."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.processor.chunked import ChunkedEntries
from sextant.processor.experiment_stats import ExperimentPlan, ExperimentStatistics
from sextant.processor.partition import DedupPolicy, EventView, PartitionState
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind, Variant
from sextant.schemas.events import EXPERIMENT_VIEWED, EventType
from sextant.schemas.experiment_stream import statistics_fingerprint, streamed_metrics
from sextant.schemas.statistics import (
    MOMENT_FIELDS,
    ExperimentMetricStatistics,
    SufficientStatistics,
)
from tests.unit.test_processor_partition import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
DAY = 86_400.0
_ids = itertools.count()


def _metric(id: str, kind: MetricKind, event: str, **more: Any) -> MetricDefinition:
    return MetricDefinition(project_id="p", id=id, metric_kind=kind, event=event, **more)


METRICS = {
    m.id: m
    for m in (
        _metric("orders", MetricKind.COUNT, "Order"),
        _metric("buyers", MetricKind.UNIQUE_USERS, "Order"),
        _metric("revenue", MetricKind.SUM, "Order", property="amount"),
        _metric("basket", MetricKind.MEAN, "Order", property="amount"),
        _metric(
            "per_visit", MetricKind.SUM, "Order", property="amount", denominator_metric="visits"
        ),
        _metric("visits", MetricKind.COUNT, "Visit"),
        _metric(
            "big",
            MetricKind.COUNT,
            "Order",
            filters=[{"property": "amount", "op": "gt", "value": 50}],
        ),
        _metric("nps", MetricKind.NPS, "Order", property="amount"),
        _metric("csat", MetricKind.CSAT, "Order", property="amount", satisfied_from=50),
    )
}


def response(definition: MetricDefinition, score: float) -> float:
    """A survey answer's value, written out: NPS 100 for 9-10, -100 for 0-6; CSAT 1 if
    satisfied; any other metric's number is itself."""
    if definition.metric_kind is MetricKind.NPS:
        return 100.0 if score >= 9 else -100.0 if score <= 6 else 0.0
    if definition.metric_kind is MetricKind.CSAT:
        return 1.0 if score >= definition.satisfied_from else 0.0
    return score


def experiment(lookback: int = 14, start: float | None = None) -> Experiment:
    return Experiment(
        project_id="p",
        id="exp",
        variants=[Variant(id="a", weight=0.5), Variant(id="b", weight=0.5)],
        primary_metric="revenue",
        guardrail_metrics=["orders", "buyers", "basket", "per_visit", "big", "nps", "csat"],
        cuped_lookback_days=lookback,
        start=None if start is None else datetime.fromtimestamp(start, UTC),
    )


class Plans:
    def __init__(self, exp: Experiment) -> None:
        streamed = streamed_metrics(exp, METRICS)
        assert not isinstance(streamed, str)
        self.plan = ExperimentPlan.of(
            "p",
            exp.id,
            statistics_fingerprint(exp, METRICS),
            exp.unit,
            [v.id for v in exp.variants],
            exp.cuped_lookback_days,
            exp.start,
            exp.stop,
            streamed,
        )
        self.generation = 1

    def experiment_plans(self) -> dict[tuple[str, str], ExperimentPlan]:
        return {("p", "exp"): self.plan}


class Catalog:
    def metrics_for(self, project_id: str, event: str) -> list[Any]:
        return []

    def lateness(self, project_id: str) -> int:
        return 300

    def exposure_unit(self, project_id: str, experiment: str) -> str | None:
        return "userId"


def view(user: str, at: float, name: str, **properties: Any) -> EventView:
    return EventView(
        "p", EventType.TRACK, name, user, user, None, properties, at, at, f"m{next(_ids)}"
    )


def exposure(user: str, at: float, variation: str) -> EventView:
    return view(user, at, EXPERIMENT_VIEWED, experiment_id="exp", variation_id=variation)


# --- the reference: the events-table query's meaning, unit by unit ------------------------


@dataclass
class Unit:
    exposures: dict[str, float]
    events: list[EventView]


def reference(
    events: list[EventView], exp: Experiment
) -> dict[tuple[str, str], SufficientStatistics]:
    """Per (metric, variant): the statistics as the warehouse computes them."""
    units: dict[str, Unit] = {}
    for e in events:
        unit = units.setdefault(e.distinct_id, Unit({}, []))
        if e.event == EXPERIMENT_VIEWED:
            unit.exposures.setdefault(e.properties["variation_id"], e.timestamp)
        unit.events.append(e)
    lookback = exp.cuped_lookback_days * DAY
    start = None if exp.start is None else exp.start.timestamp()
    streamed = streamed_metrics(exp, METRICS)
    assert not isinstance(streamed, str)
    found = {}
    for variant in ("a", "b"):
        members = [u for u in units.values() if list(u.exposures) == [variant]]
        found[("", variant)] = SufficientStatistics(n=len(members))
        for metric in streamed:
            columns: list[list[float]] = [[], [], [], []]
            for unit in members:
                exposed = unit.exposures[variant]
                post = [
                    e for e in unit.events
                    if e.timestamp >= exposed and (start is None or e.timestamp >= start)
                ]  # fmt: skip
                pre = [
                    e for e in unit.events
                    if lookback and exposed - lookback <= e.timestamp < exposed
                    and (start is None or e.timestamp >= start - lookback)
                ]  # fmt: skip
                y_part = metric.y
                for column, chosen, part in (
                    (0, post, metric.x),
                    (1, post, y_part),
                    (2, pre, metric.x),
                    (3, pre, y_part),
                ):
                    columns[column].append(0.0 if part is None else per_unit(part, chosen))
            found[(metric.id, variant)] = SufficientStatistics.of_units(*columns)
    return found


def per_unit(part: Any, events: list[EventView]) -> float:
    definition: MetricDefinition = part.metric
    hits, total = 0, 0.0
    for e in events:
        if e.event != definition.event:
            continue
        value = e.properties.get("amount")
        if definition.filters and not (type(value) in (int, float) and value > 50):
            continue
        amount = e.properties.get(definition.property) if definition.property else None
        number = amount if type(amount) in (int, float) else None
        if part.aggregate in ("count", "max"):
            hits += 1
        elif part.aggregate == "hits":
            hits += number is not None
        elif number is not None:
            total += response(definition, number)
    if part.aggregate == "max":
        return float(min(hits, 1))
    return total if part.aggregate == "value" else float(hits)


def streamed(
    records: list[ExperimentMetricStatistics],
) -> dict[tuple[str, str], SufficientStatistics]:
    newest: dict[tuple[str, str, int], ExperimentMetricStatistics] = {}
    for r in records:
        key = (r.metric, r.variant, r.source_partition)
        if key not in newest or r.version >= newest[key].version:
            newest[key] = r
    total: dict[tuple[str, str], SufficientStatistics] = {}
    for (metric, variant, _), r in newest.items():
        total[(metric, variant)] = (
            total.get((metric, variant), SufficientStatistics()) + r.statistics
        )
    return total


def assert_close(
    got: dict[tuple[str, str], SufficientStatistics],
    want: dict[tuple[str, str], SufficientStatistics],
) -> None:
    for key, expected in want.items():
        found = got.get(key, SufficientStatistics())
        assert found.n == expected.n, key
        assert found.units_with_pre == expected.units_with_pre, key
        for name in MOMENT_FIELDS:
            a, b = getattr(found, name), getattr(expected, name)
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9), (key, name, a, b)


# --- scenarios ------------------------------------------------------------------------------


def scenario(rng: random.Random, users: int, start: float | None = None) -> list[EventView]:
    """Each user: events before and after an exposure (in any arrival order); some see both
    variants, some none; a few amounts are not numbers."""
    events: list[EventView] = []
    for u in range(users):
        user = f"u{u}"
        exposed = T0 + rng.uniform(0, 5 * DAY)
        for _ in range(rng.randint(0, 6)):
            at = exposed + rng.uniform(-20 * DAY, 5 * DAY)
            amount: Any = round(rng.uniform(0, 100), 2) if rng.random() > 0.1 else "n/a"
            name = rng.choice(["Order", "Order", "Visit", "Other"])
            events.append(view(user, at, name, amount=amount))
        if rng.random() < 0.9:
            events.insert(rng.randint(0, len(events)), exposure(user, exposed, rng.choice("ab")))
        if rng.random() < 0.05:
            events.append(exposure(user, exposed + 10, "b"))
    rng.shuffle(events)
    return events


def run(
    events: list[EventView],
    exp: Experiment,
    flush_every: int = 7,
    crash: tuple[int, int] | None = None,
) -> list[ExperimentMetricStatistics]:
    """Process ``events`` on one partition, flushing every ``flush_every``; ``crash``:
    (after this many events, persist this many of the flush's writes), then restart from
    the store and replay from the checkpoint."""
    plans, catalog, store = Plans(exp), Catalog(), Store()
    records: list[ExperimentMetricStatistics] = []

    def fresh() -> PartitionState:
        # Arrival order here is shuffled over weeks: keep every buffered event.
        statistics = ExperimentStatistics(0, 1, plans, margin_seconds=60 * DAY)
        state = PartitionState(0, DedupPolicy(60, 1000), statistics)
        state.load(store)
        return state

    state = fresh()
    offset = 0
    crashed = crash is None
    while offset < len(events):
        state.process(offset, events[offset], catalog)
        offset += 1
        if not crashed and crash is not None and offset == crash[0]:
            result = state.flush(catalog)
            records.extend(result.statistics)
            store.write(result.writes[: crash[1]])
            state = fresh()
            offset = state.expected_offset
            crashed = True
        elif offset % flush_every == 0 or offset == len(events):
            result = state.flush(catalog)
            records.extend(result.statistics)
            store.write(result.writes)
    records.extend(state.flush(catalog).statistics)
    return records


def test_streamed_sums_equal_the_recomputation_in_any_order() -> None:
    rng = random.Random(7)
    events = scenario(rng, 300)
    exp = experiment()
    want = reference(events, exp)
    assert want[("", "a")].n > 100
    assert want[("revenue", "a")].units_with_pre > 10
    assert_close(streamed(run(events, exp)), want)


def test_without_lookback_and_with_a_start_the_windows_follow_the_query() -> None:
    rng = random.Random(11)
    events = scenario(rng, 200)
    for exp in (experiment(lookback=0), experiment(lookback=3, start=T0 + 2 * DAY)):
        assert_close(streamed(run(events, exp)), reference(events, exp))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), crash_after=st.integers(1, 80), keep=st.integers(0, 400))
def test_a_crash_after_any_prefix_of_a_flush_changes_nothing(
    seed: int, crash_after: int, keep: int
) -> None:
    rng = random.Random(seed)
    events = scenario(rng, 25)
    crash_after = min(crash_after, len(events))
    exp = experiment(lookback=7)
    assert_close(streamed(run(events, exp, crash=(crash_after, keep))), reference(events, exp))


def test_a_changed_definition_starts_afresh_after_the_event_time_reached() -> None:
    exp = experiment()
    plans = Plans(exp)
    stats = ExperimentStatistics(0, 1, plans)
    state = PartitionState(0, DedupPolicy(60, 1000), stats)
    state.process(0, view("u1", T0, "Order", amount=3), Catalog())
    first = state.flush(Catalog()).statistics
    assert first
    assert first[0].tracked_after is None
    plans.plan = Plans(experiment(lookback=3)).plan
    plans.generation += 1
    state.process(1, exposure("u1", T0 + 5, "a"), Catalog())
    after = state.flush(Catalog()).statistics
    assert {r.fingerprint for r in after} == {plans.plan.fingerprint}
    assert after[0].tracked_after == datetime.fromtimestamp(T0, UTC)
    assert after[0].lookback_days == 3


def test_a_changed_definition_is_followed_after_a_restart() -> None:
    """The new definition's own entry replaces the old one's: reloaded, the experiment and
    the units exposed under the new definition are there."""
    plans, store = Plans(experiment()), Store()
    stats = ExperimentStatistics(0, 1, plans)
    state = PartitionState(0, DedupPolicy(60, 1000), stats)
    state.process(0, exposure("u1", T0, "a"), Catalog())
    store.write(state.flush(Catalog()).writes)
    plans.plan = Plans(experiment(lookback=3)).plan
    plans.generation += 1
    state.process(1, exposure("u2", T0 + 5, "b"), Catalog())
    store.write(state.flush(Catalog()).writes)
    state.process(2, view("u2", T0 + 6, "Order", amount=3), Catalog())
    store.write(state.flush(Catalog()).writes)
    reloaded = ExperimentStatistics(0, 1, plans)
    PartitionState(0, DedupPolicy(60, 1000), reloaded).load(store)
    tracked = reloaded.tracked[("p", "exp")]
    assert tracked.plan.fingerprint == plans.plan.fingerprint
    assert set(tracked.units) == {"u2"}
    assert tracked.counts == stats.tracked[("p", "exp")].counts


def test_old_buffered_events_are_forgotten_behind_the_lookback() -> None:
    exp = experiment(lookback=1)
    store = Store()

    def fresh() -> tuple[ExperimentStatistics, PartitionState]:
        stats = ExperimentStatistics(0, 1, Plans(exp), margin_seconds=DAY)
        state = PartitionState(0, DedupPolicy(60, 1000), stats)
        state.load(store)
        return stats, state

    stats, state = fresh()
    state.process(0, view("old", T0, "Order", amount=3), Catalog())
    store.write(state.flush(Catalog()).writes)
    assert set(fresh()[0].buffers) == {("p", "old")}
    state.process(1, view("new", T0 + 2 * DAY + 3600, "Order", amount=3), Catalog())
    store.write(state.flush(Catalog()).writes)
    assert set(stats.buffers) == {("p", "new")}
    assert set(fresh()[0].buffers) == {("p", "new")}


def test_a_partition_of_one_entry_per_unit_moves_into_chunks() -> None:
    """State persisted as an entry per unit and per buffer (as versions before chunks wrote
    it) loads as it was, and the first flush moves it into chunks."""
    exp, events = experiment(), scenario(random.Random(5), 60)
    plans = Plans(exp)
    stats = ExperimentStatistics(0, 1, plans, margin_seconds=60 * DAY)
    state = PartitionState(0, DedupPolicy(60, 1000), stats)
    for offset, event in enumerate(events):
        state.process(offset, event, Catalog())
    state.flush(Catalog())
    tracked = stats.tracked[("p", "exp")]
    legacy = Store({"0|t|p|exp": orjson.dumps({"f": plans.plan.fingerprint, "a": None})})
    for name, unit in tracked.units.items():
        legacy[f"0|s|p|exp|{name}"] = orjson.dumps([unit.offset, unit.exposures, unit.raw])
    for (_, name), buffer in stats.buffers.items():
        # Earlier versions kept each event's contributions as an object.
        entries = [(at, offset, dict(found)) for at, offset, found in buffer.entries]
        legacy[f"0|b|p|{name}"] = orjson.dumps([buffer.offset, entries])

    def loaded(store: Store) -> ExperimentStatistics:
        found = ExperimentStatistics(0, 1, plans, margin_seconds=60 * DAY)
        PartitionState(0, DedupPolicy(60, 1000), found).load(store)
        return found

    def contents(found: ExperimentStatistics) -> tuple[dict[str, Any], dict[str, Any]]:
        units = found.tracked[("p", "exp")].units
        return (
            {n: (u.offset, u.exposures, u.raw) for n, u in units.items()},
            {k[1]: b.entries for k, b in found.buffers.items()},
        )

    assert len(tracked.units) > 30
    assert len(stats.buffers) > 30
    moving = loaded(legacy)
    assert contents(moving) == contents(stats)
    rebuilt = moving.tracked[("p", "exp")].sums
    assert [v for row in rebuilt for v in row] == pytest.approx(
        [v for r in tracked.sums for v in r]
    )
    legacy.write(moving.flush(0, {}, datetime.now(UTC))[1])
    assert sorted({key.split("|")[1] for key in legacy}) == ["e", "l", "t"]
    assert contents(loaded(legacy)) == contents(stats)

    # Versions that kept each buffer's segments in the chunks: they move into the log.
    chunked = Store({"0|t|p|exp": legacy["0|t|p|exp"]})
    writer: ChunkedEntries[tuple[str, ...]] = ChunkedEntries("0|e|", tuple)
    items: list[tuple[tuple[str, ...], Any]] = [
        (("s", "p", "exp", name), unit.to_json()) for name, unit in tracked.units.items()
    ]
    for (_, name), buffer in stats.buffers.items():
        half = len(buffer.entries) // 2
        for part in (buffer.entries[:half], buffer.entries[half:]):
            if part:
                old_form = [(at, offset, dict(found)) for at, offset, found in part]
                items.append((("b", "p", name, str(part[0][1])), old_form))
    chunked.write(writer.flush(items))
    moving = loaded(chunked)
    assert contents(moving) == contents(stats)
    chunked.write(moving.flush(0, {}, datetime.now(UTC))[1])
    again = loaded(chunked)
    assert contents(again) == contents(stats)
    assert not again.entries.home.keys() - {("s", "p", "exp", n) for n in tracked.units}
    assert sorted({key.split("|")[1] for key in chunked}) == ["e", "l", "t"]


def test_a_crash_inside_a_rewrite_of_the_buffer_log_keeps_each_event_once() -> None:
    """A rewrite writes the buffers anew before deleting the old segments: loaded between
    the two, each buffered event is there once."""
    exp, events = experiment(), scenario(random.Random(8), 40)
    stats = ExperimentStatistics(0, 1, Plans(exp), margin_seconds=60 * DAY)
    state = PartitionState(0, DedupPolicy(60, 1000), stats)
    store = Store()
    for offset, event in enumerate(events):
        state.process(offset, event, Catalog())
        if offset % 7 == 6:
            store.write(state.flush(Catalog()).writes)
    store.write(state.flush(Catalog()).writes)
    before = {k: list(b.entries) for k, b in stats.buffers.items()}
    assert before
    stats.log.rewrite_all()
    writes = stats.flush(0, {}, datetime.now(UTC))[1]
    assert any(value is None for _, value in writes)
    store.write([(key, value) for key, value in writes if value is not None])
    found = ExperimentStatistics(0, 1, Plans(exp), margin_seconds=60 * DAY)
    PartitionState(0, DedupPolicy(60, 1000), found).load(store)
    assert {k: b.entries for k, b in found.buffers.items()} == before
