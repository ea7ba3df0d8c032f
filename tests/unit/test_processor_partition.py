"""The first stage on its own: windows, lateness, retries, replays, conversion, exposures.

A tiny pipeline (partition states → partials → merge state) stands in for the faust agents;
the store is a dict, written exactly as the agents write the faust table.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.processor.definitions import CompiledMetric, compile_metric
from sextant.processor.merge import MergeState
from sextant.processor.partition import (
    LATE_EVENTS_METRIC,
    DedupPolicy,
    EventView,
    FlushResult,
    PartitionState,
)
from sextant.processor.sequence import Outcome
from sextant.schemas.config import MetricDefinition
from sextant.schemas.events import EventType
from sextant.schemas.records import Exposure, MetricPoint
from sextant.schemas.sketches import hll_estimate

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()
_ids = itertools.count()


class Catalog:
    def __init__(self, *definitions: MetricDefinition, lateness: int = 300) -> None:
        self.metrics = [compile_metric(d) for d in definitions]
        self._lateness = lateness
        self.units: dict[tuple[str, str], str] = {}

    def metrics_for(self, project_id: str, event: str) -> list[CompiledMetric]:
        return [
            m
            for m in self.metrics
            if m.definition.project_id == project_id
            and event in (m.definition.event, m.definition.conversion_event)
        ]

    def lateness(self, project_id: str) -> int:
        return self._lateness

    def exposure_unit(self, project_id: str, experiment: str) -> str | None:
        return self.units.get((project_id, experiment))


class Store(dict[str, bytes]):
    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return ((k, v) for k, v in list(self.items()) if k.startswith(prefix))

    def write(self, writes: list[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


def event(
    name: str = "E",
    at: float = T0,
    user: str = "u1",
    message_id: str | None = None,
    received: float | None = None,
    **properties: Any,
) -> EventView:
    return EventView(
        project_id="p",
        type=EventType.TRACK,
        event=name,
        distinct_id=user,
        user_id=user,
        anonymous_id=None,
        properties=properties,
        timestamp=at,
        received_at=received if received is not None else at,
        message_id=message_id or f"m{next(_ids)}",
    )


class Pipeline:
    """Both stages with the persisted store, as the agents run them."""

    def __init__(self, catalog: Catalog, partitions: int = 2) -> None:
        self.catalog = catalog
        self.store = Store()
        self.states = {p: PartitionState(p, DedupPolicy(60, 1000)) for p in range(partitions)}
        self.offsets = dict.fromkeys(range(partitions), 0)
        self.merge = MergeState(0)
        self.points: list[MetricPoint] = []
        self.exposures: list[Exposure] = []

    def send(self, view: EventView, partition: int = 0) -> int:
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        self.states[partition].process(offset, view, self.catalog)
        return offset

    def flush(self) -> list[FlushResult]:
        results = [state.flush(self.catalog) for state in self.states.values()]
        for result in results:
            for partial in result.partials:
                self.merge.accept(partial, 0.0)
            self.exposures.extend(result.exposures)
            self.store.write(result.writes)
        points, _ = self.merge.flush(datetime.now(UTC))
        self.points.extend(points)
        return results

    def latest(self, metric: str) -> dict[tuple[int, str], MetricPoint]:
        found: dict[tuple[int, str], MetricPoint] = {}
        for point in self.points:
            if point.metric != metric:
                continue
            key = (int(point.window_start.timestamp()), point.breakdown)
            if key not in found or found[key].version <= point.version:
                found[key] = point
        return found

    def counts(self, metric: str) -> dict[tuple[int, str], int]:
        return {k: p.count for k, p in self.latest(metric).items() if p.count or p.denominator}


def _count(**extra: Any) -> MetricDefinition:
    return MetricDefinition(id="c", project_id="p", metric_kind="count", event="E", **extra)


def test_counts_per_minute_and_top_values_with_other() -> None:
    pipe = Pipeline(Catalog(_count(breakdown="plan", breakdown_limit=2)))
    plans = ["a"] * 3 + ["b"] * 2 + ["c", "d"]
    for i, plan in enumerate(plans):
        pipe.send(event(at=T0 + i, plan=plan), partition=i % 2)
    pipe.send(event(at=T0 + 61, plan="a"))
    pipe.flush()
    w = int(T0)
    assert pipe.counts("c") == {(w, "a"): 3, (w, "b"): 2, (w, "other"): 2, (w + 60, "a"): 1}


def test_value_leaving_the_top_is_zeroed_so_sums_stay_exact() -> None:
    pipe = Pipeline(Catalog(_count(breakdown="plan", breakdown_limit=1)))
    pipe.send(event(plan="a"))
    pipe.flush()
    for _ in range(2):
        pipe.send(event(plan="b"), partition=1)
    pipe.flush()
    latest = pipe.latest("c")
    assert {k[1]: p.count for k, p in latest.items()} == {"a": 0, "b": 2, "other": 1}
    assert sum(p.count for p in latest.values()) == 3


def test_late_event_inside_lateness_corrects_its_window() -> None:
    pipe = Pipeline(Catalog(_count(), lateness=300))
    pipe.send(event(at=T0))
    pipe.send(event(at=T0 + 200))
    pipe.flush()
    first = pipe.latest("c")[(int(T0), "")]
    pipe.send(event(at=T0 + 30))
    pipe.flush()
    corrected = pipe.latest("c")[(int(T0), "")]
    assert (first.count, corrected.count) == (1, 2)
    assert corrected.version > first.version


def test_event_beyond_lateness_is_counted_as_late_not_lost() -> None:
    pipe = Pipeline(Catalog(_count(), lateness=120))
    pipe.send(event(at=T0))
    pipe.send(event(at=T0 + 600))
    pipe.send(event(at=T0 + 5))
    pipe.flush()
    assert pipe.counts("c") == {(int(T0), ""): 1, (int(T0) + 600, ""): 1}
    assert pipe.counts(LATE_EVENTS_METRIC) == {(int(T0) + 600, ""): 1}
    assert pipe.states[0].counters.late == {"p": 1}


def test_client_retry_counts_once_within_the_dedup_window() -> None:
    pipe = Pipeline(Catalog(_count()))
    pipe.send(event(message_id="x", at=T0, received=T0))
    pipe.send(event(message_id="x", at=T0, received=T0 + 5))
    pipe.flush()
    assert pipe.counts("c") == {(int(T0), ""): 1}
    # beyond the (60 s) window the id is forgotten: a re-send then counts again
    pipe.send(event(message_id="y", at=T0 + 200, received=T0 + 200))
    pipe.flush()
    pipe.send(event(message_id="x", at=T0 + 201, received=T0 + 201))
    pipe.flush()
    assert pipe.counts("c")[(int(T0) + 180, "")] == 2


def _replay(pipe: Pipeline, events: list[EventView], crash_after: int, keep_writes: int) -> None:
    """Process ``events``; crash after ``crash_after`` of them, persisting ``keep_writes``
    of the last flush's writes; restart from the last persisted checkpoint and replay."""
    catalog, state = pipe.catalog, pipe.states[0]
    for offset, view in enumerate(events[:crash_after]):
        state.process(offset, view, catalog)
        if offset % 3 == 2 and offset < crash_after - 1:
            pipe.store.write(state.flush(catalog).writes)
    lost = state.flush(catalog)
    pipe.store.write(lost.writes[:keep_writes])
    restarted = PartitionState(0, DedupPolicy(60, 1000))
    restarted.load(pipe.store)
    committed = max(-1, restarted.checkpoint - 2)  # the committed offset lags the checkpoint
    for offset, view in enumerate(events):
        if offset > committed:
            restarted.process(offset, view, catalog)
    pipe.states[0] = restarted


def test_crash_and_replay_count_each_event_once() -> None:
    definitions = (
        _count(breakdown="plan"),
        MetricDefinition(id="s", project_id="p", metric_kind="sum", event="E", property="n"),
        MetricDefinition(
            id="conv",
            project_id="p",
            metric_kind="conversion",
            event="E",
            conversion_event="F",
            conversion_window_seconds=10,
            breakdown="plan",
        ),
    )
    events = [
        event("F" if i % 4 == 3 else "E", T0 + i, f"u{i % 5}", plan=f"p{i % 3}", n=i)
        for i in range(12)
    ]
    for keep in range(10):
        reference = Pipeline(Catalog(*definitions), partitions=1)
        for view in events:
            reference.send(view)
        reference.flush()
        pipe = Pipeline(Catalog(*definitions), partitions=1)
        _replay(pipe, events, crash_after=10, keep_writes=keep)
        pipe.flush()
        assert pipe.counts("c") == reference.counts("c"), keep
        assert pipe.latest("s")[(int(T0), "")].sum == sum(i for i in range(12) if i % 4 != 3)
        conversions = {k: (p.denominator, p.count) for k, p in pipe.latest("conv").items()}
        expected = {k: (p.denominator, p.count) for k, p in reference.latest("conv").items()}
        assert conversions == expected, keep
        assert any(count for _, count in expected.values())


def test_unique_users_per_window() -> None:
    definition = MetricDefinition(id="u", project_id="p", metric_kind="unique_users", event="E")
    pipe = Pipeline(Catalog(definition))
    for i in range(40):
        pipe.send(event(user=f"user{i % 25}"), partition=i % 2)
    pipe.flush()
    point = pipe.latest("u")[(int(T0), "")]
    assert point.count == 40
    assert round(hll_estimate(point.hll)) == 25


def test_mean_and_percentiles_components() -> None:
    definitions = (
        MetricDefinition(id="m", project_id="p", metric_kind="mean", event="E", property="v"),
        MetricDefinition(
            id="q", project_id="p", metric_kind="percentiles", event="E", property="v"
        ),
    )
    pipe = Pipeline(Catalog(*definitions))
    for i, v in enumerate([1, 2, 3, "x", None, 4]):
        pipe.send(event(v=v), partition=i % 2)
    pipe.flush()
    mean = pipe.latest("m")[(int(T0), "")]
    assert (mean.count, mean.sum, mean.sum_sq) == (4, 10.0, 30.0)
    digest = pipe.latest("q")[(int(T0), "")].digest
    assert sorted(m for m, _ in digest) == [1.0, 2.0, 3.0, 4.0]


def test_conversion_counts_users_who_did_b_after_a_within_the_window() -> None:
    definition = MetricDefinition(
        id="conv",
        project_id="p",
        metric_kind="conversion",
        event="A",
        conversion_event="B",
        conversion_window_seconds=20,
        breakdown="src",
    )
    pipe = Pipeline(Catalog(definition))
    pipe.send(event("A", T0 + 1, "u1", src="ads"))
    pipe.send(event("B", T0 + 5, "u1"))
    pipe.send(event("B", T0 + 1, "u2"))
    pipe.send(event("A", T0 + 2, "u2", src="ads"))  # B came before A: not converted
    pipe.send(event("A", T0 + 3, "u3", src="seo"))
    pipe.send(event("B", T0 + 40, "u3"))  # too long after A
    pipe.send(event("B", T0 + 10, "u4"))
    pipe.flush()
    latest = pipe.latest("conv")
    w = int(T0)
    assert (latest[(w, "ads")].denominator, latest[(w, "ads")].count) == (2, 1)
    assert (latest[(w, "seo")].denominator, latest[(w, "seo")].count) == (1, 0)
    # a late, earlier A moves the user's start (and breakdown) to it
    pipe.send(event("A", T0 + 0.5, "u4", src="seo"))
    pipe.flush()
    latest = pipe.latest("conv")
    assert (latest[(w, "seo")].denominator, latest[(w, "seo")].count) == (2, 1)


def _conversion(window_s: int) -> MetricDefinition:
    return MetricDefinition(
        id="conv",
        project_id="p",
        metric_kind="conversion",
        event="A",
        conversion_event="B",
        conversion_window_seconds=window_s,
    )


def _expected_conversions(
    events: list[tuple[str, str, float]], window_s: int
) -> dict[int, tuple[int, int]]:
    """Minute → (users whose first A of the minute is there, those with a B within
    ``window_s`` after it), from the whole event list at once."""
    first_a: dict[tuple[int, str], float] = {}
    for user, name, at in events:
        if name == "A":
            key = (int(at // 60) * 60, user)
            first_a[key] = min(first_a.get(key, at), at)
    result: dict[int, tuple[int, int]] = {}
    for (minute, user), start in first_a.items():
        converted = any(
            u == user and n == "B" and start <= t <= start + window_s for u, n, t in events
        )
        users, count = result.get(minute, (0, 0))
        result[minute] = (users + 1, count + converted)
    return result


def _observed_conversions(pipe: Pipeline) -> dict[int, tuple[int, int]]:
    return {k[0]: (p.denominator, p.count) for k, p in pipe.latest("conv").items() if p.denominator}


def test_conversion_counts_b_in_a_later_minute_within_the_conversion_window() -> None:
    pipe = Pipeline(Catalog(_conversion(600), lateness=120))
    pipe.send(event("A", T0 + 10, "u1"))
    pipe.send(event("A", T0 + 20, "u2"))
    pipe.flush()
    w = int(T0)
    assert _observed_conversions(pipe) == {w: (2, 0)}
    # u1 converts five minutes later (the minute is past its lateness: still open for B)
    pipe.send(event("A", T0 + 300, "u3"))
    pipe.send(event("B", T0 + 310, "u1"))
    pipe.flush()
    assert _observed_conversions(pipe)[w] == (2, 1)
    # u2's B comes after the conversion window: not a conversion of minute w
    pipe.send(event("B", T0 + 20 + 601, "u2"))
    pipe.flush()
    assert _observed_conversions(pipe)[w] == (2, 1)


def test_an_a_arriving_after_its_later_b_converts() -> None:
    pipe = Pipeline(Catalog(_conversion(600), lateness=300))
    pipe.send(event("B", T0 + 130, "u1"))
    pipe.send(event("A", T0 + 10, "u1"))  # late, within the lateness
    pipe.flush()
    assert _observed_conversions(pipe) == {int(T0): (1, 1)}


def test_a_conversion_window_closes_after_its_conversion_window_and_lateness() -> None:
    pipe = Pipeline(Catalog(_conversion(120), lateness=60))
    pipe.send(event("A", T0 + 10, "u1"))
    pipe.send(event("A", T0 + 150, "u2"))  # past the lateness of minute T0, not its window
    pipe.flush()
    assert any("|w|p|conv|" + str(int(T0)) in key for key in pipe.store)
    pipe.send(event("A", T0 + 60 + 60 + 120 + 1, "u3"))
    pipe.flush()
    assert not any("|p|conv|" + str(int(T0)) + "|" in key for key in pipe.store)
    assert not any(key.endswith("|p|conv|" + str(int(T0))) for key in pipe.store)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.sampled_from(["A", "B"]),
            st.integers(min_value=0, max_value=600),
            st.integers(min_value=0, max_value=100),
        ),
        max_size=40,
    ),
    st.sampled_from([30, 90, 240]),
)
def test_conversion_across_minutes_matches_a_direct_computation(
    draws: list[tuple[str, str, int, int]], window_s: int
) -> None:
    """Events arrive out of order by up to 100 s (inside the lateness); each minute's
    conversion equals the count over the whole list, whatever the arrival order."""
    events = [(user, name, T0 + at) for user, name, at, _ in draws]
    arrival = sorted(range(len(draws)), key=lambda i: draws[i][2] + draws[i][3])
    pipe = Pipeline(Catalog(_conversion(window_s), lateness=300), partitions=1)
    for i in arrival:
        user, name, at = events[i]
        pipe.send(event(name, at, user))
        if i % 5 == 0:
            pipe.flush()
    pipe.flush()
    expected = _expected_conversions(events, window_s)
    assert _observed_conversions(pipe) == {int(m): v for m, v in expected.items()}


def test_cross_minute_conversion_survives_a_crash_and_replay() -> None:
    definition = _conversion(200)
    events = [event("B" if i % 3 == 2 else "A", T0 + i * 25, f"u{i % 4}") for i in range(14)]
    reference = Pipeline(Catalog(definition), partitions=1)
    for view in events:
        reference.send(view)
    reference.flush()
    expected = _observed_conversions(reference)
    assert sum(c for _, c in expected.values()) > 0
    for keep in range(0, 12, 2):
        pipe = Pipeline(Catalog(definition), partitions=1)
        _replay(pipe, events, crash_after=11, keep_writes=keep)
        pipe.flush()
        assert _observed_conversions(pipe) == expected, keep


def test_changed_definition_starts_the_window_afresh() -> None:
    catalog = Catalog(_count(breakdown="plan"))
    pipe = Pipeline(catalog)
    pipe.send(event(plan="a"))
    pipe.flush()
    catalog.metrics = [compile_metric(_count(breakdown="tier"))]
    pipe.send(event(plan="a", tier="gold"))
    pipe.flush()
    assert pipe.counts("c") == {(int(T0), "gold"): 1}


def _viewed(user: str, variation: str, experiment: str = "exp1") -> EventView:
    return event("Experiment Viewed", user=user, experiment_id=experiment, variation_id=variation)


def test_first_exposure_per_unit_and_multi_variant_flag() -> None:
    pipe = Pipeline(Catalog())
    pipe.send(_viewed("u1", "control"))
    pipe.send(_viewed("u1", "control"))
    pipe.send(_viewed("u2", "treatment"))
    pipe.flush()
    assert [(e.unit_id, e.variation_id, e.multi_variant) for e in pipe.exposures] == [
        ("u1", "control", False),
        ("u2", "treatment", False),
    ]
    pipe.send(_viewed("u1", "treatment"))
    pipe.send(_viewed("u1", "treatment"))
    pipe.flush()
    flagged = [(e.unit_id, e.variation_id, e.multi_variant) for e in pipe.exposures[2:]]
    assert flagged == [("u1", "control", True), ("u1", "treatment", True)]
    assert pipe.exposures[0].kafka_key() == "p:exp1:u1"


def test_exposure_unit_follows_the_experiment_config() -> None:
    catalog = Catalog()
    catalog.units[("p", "exp1")] = "anonymousId"
    pipe = Pipeline(catalog)
    pipe.send(_viewed("u1", "control"))  # no anonymousId: no unit to expose
    pipe.flush()
    assert pipe.exposures == []


def test_state_survives_a_reload_from_the_store() -> None:
    pipe = Pipeline(Catalog(_count()), partitions=1)
    pipe.send(event())
    pipe.send(_viewed("u1", "a"))
    pipe.flush()
    reloaded = PartitionState(0)
    reloaded.load(pipe.store)
    assert reloaded.checkpoint == 1
    assert reloaded.windows[("p", "c", int(T0))].groups[""].count == 1
    assert ("p", "exp1", "u1") in reloaded.exposures
    # a reload re-sends restored windows (their last send may not have reached stage two)
    assert reloaded.flush(pipe.catalog).partials


def test_reading_an_envelope_fast_equals_full_validation() -> None:
    from sextant.schemas.events import Envelope

    envelope = Envelope(
        project_id="p",
        type=EventType.TRACK,
        event="E",
        distinct_id="anon-1",
        anonymous_id="anon-1",
        properties={"a": 1},
        timestamp=datetime(2026, 1, 5, 12, 0, 1, 250000, tzinfo=UTC),
        received_at=datetime(2026, 1, 5, 12, 0, 2, tzinfo=UTC),
        message_id="m-1",
    )
    raw = orjson.dumps(envelope.model_dump(mode="json", by_alias=True))
    fast = EventView.parse(raw)
    assert fast == EventView.parse(envelope.model_dump_json().encode())  # the validated path
    assert (fast.timestamp, fast.user_id, fast.anonymous_id) == (T0 + 1.25, None, "anon-1")
    with pytest.raises(ValueError, match="validation"):
        EventView.parse(b'{"project_id": "p", "type": "track"}')


def test_dedup_memory_is_bounded_by_count() -> None:
    pipe = Pipeline(Catalog(_count()), partitions=1)
    pipe.states[0] = PartitionState(0, DedupPolicy(window_seconds=600, max_ids=3))
    for i in range(5):
        pipe.send(event(message_id=f"id{i}"))
    pipe.flush()
    assert list(pipe.states[0].seen) == ["id2", "id3", "id4"]
    pipe.send(event(message_id="id4"))  # still remembered: a retry
    pipe.send(event(message_id="id0"))  # forgotten: counts again
    pipe.flush()
    assert pipe.counts("c") == {(int(T0), ""): 6}


def test_an_event_ahead_of_a_missing_offset_is_refused_until_the_gap_is_filled() -> None:
    catalog = Catalog(_count())
    state = PartitionState(0)
    assert state.process(10, event(), catalog) is Outcome.APPLIED  # a fresh state starts anywhere
    assert state.process(12, event(), catalog) is Outcome.OUT_OF_ORDER
    assert state.expected_offset == 11
    assert state.process(11, event(), catalog) is Outcome.APPLIED
    assert state.process(12, event(), catalog) is Outcome.APPLIED
    assert state.process(11, event(), catalog) is Outcome.REPLAYED
    assert state.windows[("p", "c", int(T0))].groups[""].count == 3


def test_an_unreadable_record_passes_its_offset_and_retention_skips_ahead() -> None:
    catalog = Catalog(_count())
    state = PartitionState(0)
    state.process(0, event(), catalog)
    assert state.process(1, None, catalog) is Outcome.APPLIED
    assert state.process(2, event(), catalog) is Outcome.APPLIED
    state.skip_to(50)  # offsets 3..49 were deleted by retention before they were read
    assert state.process(50, event(), catalog) is Outcome.APPLIED
    assert state.windows[("p", "c", int(T0))].groups[""].count == 3


def test_a_reloaded_state_refuses_events_past_its_checkpoint_gap() -> None:
    """Another worker moved the partition on: the committed offset is past our checkpoint."""
    pipe = Pipeline(Catalog(_count()), partitions=1)
    for _ in range(3):
        pipe.send(event())
    pipe.flush()
    reloaded = PartitionState(0)
    reloaded.load(pipe.store)
    assert reloaded.process(7, event(), pipe.catalog) is Outcome.OUT_OF_ORDER
    assert reloaded.expected_offset == 3
