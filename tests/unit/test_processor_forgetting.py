"""Forgetting a deleted person in the processor's state: when each partition passes over it,
what the passes remove (and only that), and that a reload from the persisted entries holds
none of it."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, cast

from sextant.processor.experiment_stats import ExperimentStatistics
from sextant.processor.forgetting import Forgetting
from sextant.processor.log import StateTable
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.partition import PartitionState
from sextant.processor.persons import Applied, PersonsState
from sextant.processor.resolver import ResolverStage
from sextant.schemas.config import PersonDeletion, person_hash
from sextant.schemas.identity import EdgeKind, IdentityEdge
from tests.unit import test_processor_experiment_stats as stats
from tests.unit.test_processor_experiment_stats import Plans, scenario
from tests.unit.test_processor_partition import (
    T0,
    Catalog,
    Pipeline,
    Store,
    _conversion,
    event,
)

REQUESTED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ADA = ("ada-anon", "ada")


def _deletion(suppress: timedelta, ids: tuple[str, ...] = ADA) -> PersonDeletion:
    return PersonDeletion(
        id="del-1",
        project_id="p",
        id_hashes=sorted(person_hash("p", i) for i in ids),
        requested_at=REQUESTED,
        suppress_until=REQUESTED + suppress,
    )


def _names(ids: tuple[str, ...] = ADA) -> Callable[[str], bool]:
    """What a pass over project ``p`` picks for a request naming ``ids``."""
    return lambda distinct_id: distinct_id in ids


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def test_each_partition_passes_once_on_sight_and_once_more_when_the_request_settled() -> None:
    clock = Clock(REQUESTED + timedelta(seconds=5))
    forgetting = Forgetting("one", lambda: [_deletion(timedelta(days=30))], 60, clock)
    [first] = forgetting.due(0)
    assert not first.final
    forgetting._passed[(0, "del-1")] = False  # what persisted() records for a first pass
    assert forgetting.due(0) == []
    assert len(forgetting.due(1)) == 1  # another partition owes its own
    clock.now += 60
    forgetting._cached = (-1.0, [])
    [final] = forgetting.due(0)
    assert final.final
    forgetting._passed[(0, "del-1")] = True
    assert forgetting.due(0) == []
    forgetting.forget_partition(0)  # reloaded: passes again while the deletion is active
    assert [p.final for p in forgetting.due(0)] == [True]


def test_a_deletion_is_no_longer_applied_once_its_suppression_ended() -> None:
    clock = Clock(REQUESTED + timedelta(days=31))
    forgetting = Forgetting("one", lambda: [_deletion(timedelta(days=30))], 60, clock)
    assert forgetting.due(0) == []
    # without a suppression it stays active until it settled
    clock = Clock(REQUESTED + timedelta(seconds=30))
    unsuppressed = Forgetting("one", lambda: [_deletion(timedelta(0))], 60, clock)
    assert len(unsuppressed.due(0)) == 1
    clock.now += 31
    unsuppressed._cached = (-1.0, [])
    assert unsuppressed.due(0) == []


def test_stage_one_forgets_exposures_and_conversion_users_and_keeps_everyone_else() -> None:
    pipe = Pipeline(Catalog(_conversion(600)), partitions=1)
    for user in ("ada", "ada-anon", "bob"):
        pipe.send(event("A", T0 + 1, user))
        pipe.send(event("Experiment Viewed", T0 + 2, user, experiment_id="e1", variation_id="a"))
    pipe.send(event("B", T0 + 3, "ada"))
    pipe.send(event("B", T0 + 3, "bob"))
    pipe.send(event("Z", T0 + 4, "carol"))
    pipe.flush()
    assert (pipe.latest("conv")[(int(T0), "")].denominator) == 3
    assert any(b"ada" in k.encode() + v for k, v in pipe.store.items())

    state = pipe.states[0]
    assert state.forget("p", _names()) == 4  # two exposures, two conversion users
    pipe.flush()

    persisted = b"".join(k.encode() + v for k, v in pipe.store.items())
    assert b"ada" not in persisted
    assert b"bob" in persisted
    point = pipe.latest("conv")[(int(T0), "")]
    assert (point.denominator, point.count) == (1, 1)  # bob's conversion, sent again
    reloaded = PartitionState(0)
    reloaded.load(pipe.store)
    assert [k[2] for k in reloaded.exposures] == ["bob"]
    [window] = reloaded.windows.values()
    assert set(window.users) == {"bob"}
    assert state.forget("p", _names()) == 0  # a second pass removes nothing twice


def _edge(state: PersonsState, source: str, target: str) -> None:
    offset = state.expected_offset
    state.admit(offset)
    edge = IdentityEdge(
        project_id="p", kind=EdgeKind.IDENTIFY, source=source, target=target, timestamp=REQUESTED
    )
    state.apply(offset, edge, lambda _: frozenset(), Applied())


def test_the_resolver_forgets_the_whole_person_and_a_returning_id_starts_afresh() -> None:
    state = PersonsState(0, max_ids=10)
    table = Store()
    _edge(state, "ada-anon", "ada")
    _edge(state, "ada-phone", "ada")  # an id the request did not name
    _edge(state, "bob-anon", "bob")
    table.write(state.writes())

    assert state.forget("p", _names(("ada",))) == 1
    table.write(state.writes())

    assert not any("ada" in key or b"ada" in value for key, value in table.items())
    assert state.person_ids("p", "ada-phone") == ["ada-phone"]
    assert sorted(state.person_ids("p", "bob")) == ["bob", "bob-anon"]
    _edge(state, "ada-anon", "ada")
    assert sorted(state.person_ids("p", "ada")) == ["ada", "ada-anon"]
    reloaded = PersonsState(0, max_ids=10)
    reloaded.load(iter(table.items()))
    assert reloaded.person_ids("p", "ada-phone") == ["ada-phone"]
    assert sorted(reloaded.person_ids("p", "bob-anon")) == ["bob", "bob-anon"]


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes | None


class Outputs:
    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[None]:
        raise AssertionError("a tombstone sends nothing")

    async def flush(self) -> None:
        return None


def test_a_tombstone_on_the_identities_topic_is_passed_over_not_counted_invalid() -> None:
    table = Store()
    resolver = ResolverStage(
        topic="identities",
        overrides_topic="overrides",
        decisions_topic="decisions",
        partitions=1,
        interval=1.0,
        max_ids=10,
        junk=lambda _: frozenset(),
        table=cast("StateTable", table),
        outputs=Outputs(),
        metrics=ProcessorMetrics(),
    )
    (applied, touched), refused = resolver.take([Record("identities", 0, 0, None)], {0})
    assert refused == []
    assert touched == {0}
    assert applied.overrides == applied.decisions == []
    assert resolver.metrics.invalid._value.get() == 0
    assert resolver.persons[0].expected_offset == 1  # the offset is covered all the same


def test_forgotten_experiment_units_leave_their_variants_sums_and_their_buffers() -> None:
    events = scenario(random.Random(7), users=40)
    forgotten = {"u3", "u11", "u17"}
    plans, store = Plans(stats.experiment()), Store()
    state = PartitionState(
        0, statistics=ExperimentStatistics(0, 1, plans, margin_seconds=60 * stats.DAY)
    )
    records = []
    for offset, view in enumerate(events):
        state.process(offset, view, stats.Catalog())
    store.write(state.flush(stats.Catalog()).writes)

    assert state.forget("p", lambda unit: unit in forgotten) > 0
    after = state.flush(stats.Catalog())
    records.extend(after.statistics)
    store.write(after.writes)

    kept = [e for e in events if e.distinct_id not in forgotten]
    stats.assert_close(stats.streamed(records), stats.reference(kept, stats.experiment()))
    assert not [k for k in store if k.split("|")[-1] in forgotten]
    named = [f'"{unit}"'.encode() for unit in forgotten]
    assert not [k for k, v in store.items() if any(name in v for name in named)]
    restored = ExperimentStatistics(0, 1, plans, margin_seconds=60 * stats.DAY)
    PartitionState(0, statistics=restored).load(store)
    assert not [u for t in restored.tracked.values() for u in t.units if u in forgotten]
    assert not [b for b in restored.buffers if b[1] in forgotten]
