"""The second stage: newest partial per source partition, versions, restarts, top-N."""

from __future__ import annotations

from datetime import UTC, datetime

from sextant.processor.merge import MergeState
from sextant.processor.sequence import Outcome
from sextant.schemas.config import MetricKind
from sextant.schemas.windows import Group, Partial, top_groups

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _partial(partition: int, offset: int, **counts: int) -> Partial:
    return Partial(
        project_id="p",
        metric="m",
        kind=MetricKind.COUNT,
        window_start=1_800_000_000 - 1_800_000_000 % 60,
        partition=partition,
        offset=offset,
        breakdown_limit=10,
        groups={name: Group(count=c) for name, c in counts.items()},
    )


def test_partials_of_all_partitions_add_up_and_stale_ones_are_ignored() -> None:
    merge = MergeState(0)
    assert merge.accept(_partial(0, 5, a=2), 0.0) is not None
    assert merge.accept(_partial(1, 9, a=1, b=4), 0.0) is not None
    assert merge.accept(_partial(0, 3, a=100), 0.0) is None  # older than what partition 0 sent
    points, _ = merge.flush(NOW)
    assert {p.breakdown: p.count for p in points} == {"a": 3, "b": 4}
    assert {p.version for p in points} == {(5 + 1) + (9 + 1)}


def test_every_change_raises_the_version_and_unchanged_values_are_not_resent() -> None:
    merge = MergeState(0)
    merge.accept(_partial(0, 1, a=1, b=1), 0.0)
    first, _ = merge.flush(NOW)
    merge.accept(_partial(0, 2, a=2, b=1), 0.0)
    second, _ = merge.flush(NOW)
    assert [p.breakdown for p in second] == ["a"]
    assert second[0].version > first[0].version


def test_restart_from_the_table_reproduces_the_same_points() -> None:
    merge = MergeState(0)
    writes = []
    for partial in (_partial(0, 4, a=1), _partial(1, 7, a=2, b=1)):
        key = merge.accept(partial, 0.0)
        assert key is not None
        writes.append((key, partial.to_bytes()))
    points, emitted = merge.flush(NOW)
    restarted = MergeState(0)
    restarted.load(iter([*writes, *((k, v) for k, v in emitted if v is not None)]))
    again, _ = restarted.flush(NOW)
    assert [p.model_dump() for p in again] == [p.model_dump() for p in points]


def test_top_values_ranked_by_volume_then_name() -> None:
    groups = {"b": Group(count=2), "a": Group(count=2), "c": Group(count=1), "d": Group(count=5)}
    top = top_groups(groups, MetricKind.COUNT, 2)
    assert {k: g.count for k, g in top.items()} == {"d": 5, "a": 2, "other": 3}


def test_conversion_ranks_by_users_who_did_a() -> None:
    groups = {"x": Group(count=1, denominator=9), "y": Group(count=5, denominator=5)}
    assert list(top_groups(groups, MetricKind.CONVERSION, 1)) == ["x", "other"]


def test_old_windows_are_forgotten_once_far_behind() -> None:
    merge = MergeState(0)
    old = _partial(0, 1, a=1)
    merge.accept(old, now=0.0)
    newer = _partial(0, 2, a=1)
    newer.window_start += 3600
    merge.accept(newer, now=1000.0)
    deleted = merge.evict({"p": 300}, now=1000.0, idle_s=60)
    assert f"0|m|{old.window_key}|0" in deleted
    assert len(merge.windows) == 1


def test_registers_travel_sparse_between_the_stages() -> None:
    from sextant.schemas.sketches import HLL_REGISTERS, hll_add
    from sextant.schemas.windows import Group, decode_registers, encode_registers

    group = Group(count=3000)
    registers = group.ensure_registers()
    for i in range(3000):
        hll_add(registers, f"user-{i}")
    assert decode_registers(encode_registers(registers)) == registers
    assert len(encode_registers(registers)) < 4 * 3000  # bytes per user, not per register
    assert Group.from_json(group.to_json()).registers == registers
    assert decode_registers(encode_registers(bytearray(HLL_REGISTERS))) == bytearray(HLL_REGISTERS)
    assert decode_registers(encode_registers(None)) is None


def test_state_with_the_former_dense_registers_restarts_the_sketch() -> None:
    from sextant.schemas.windows import Group

    legacy = {"c": 4, "s": 0.0, "q": 0.0, "d": 0, "h": "eJzjYBgFo2AUjAIAAT8AAQ==", "t": []}
    group = Group.from_json(legacy)
    assert (group.count, group.registers) == (4, None)


def test_partials_are_taken_in_offset_order_and_the_offset_survives_a_restart() -> None:
    merge = MergeState(0)
    assert merge.admit(20) is Outcome.APPLIED  # a fresh state starts where the topic does
    assert merge.admit(22) is Outcome.OUT_OF_ORDER  # 21 is missing: fetch again from it
    assert merge.expected_offset == 21
    assert merge.admit(21) is Outcome.APPLIED
    merge.accept(_partial(0, 4, a=1), 0.0)
    _, writes = merge.flush(NOW)
    assert writes[-1] == (merge.checkpoint_key, b"21")  # persisted after what it covers
    restarted = MergeState(0)
    restarted.load(iter([(k, v) for k, v in writes if v is not None]))
    assert restarted.admit(21) is Outcome.REPLAYED
    assert restarted.admit(23) is Outcome.OUT_OF_ORDER
    assert restarted.admit(22) is Outcome.APPLIED
    _, unchanged = MergeState(0).flush(NOW)
    assert unchanged == []  # nothing applied: no checkpoint written
