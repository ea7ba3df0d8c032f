"""The sketches in metric points: HyperLogLog and t-digest, their forms, merges and errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import (
    HLL_LEGACY_DENSE_REGISTERS,
    HLL_MAX_RANK,
    HLL_REGISTERS,
    HLL_RELATIVE_ERROR,
    TDigest,
    compress,
    digest_quantile,
    hash64,
    hll_add,
    hll_add_hashes,
    hll_estimate,
    hll_histogram,
    hll_is_sparse,
    hll_merge,
    hll_merge_sparse,
    hll_pack,
    hll_position,
    hll_unpack,
)


def _registers(ids: range | list[str]) -> bytearray:
    registers = bytearray(HLL_REGISTERS)
    for i in ids:
        hll_add(registers, str(i))
    return registers


def _sketch(ids: range | list[str]) -> list[int]:
    return hll_pack(_registers(ids))


_registers_set = st.dictionaries(
    st.integers(0, HLL_REGISTERS - 1), st.integers(1, HLL_MAX_RANK), max_size=300
)


def test_hash_matches_the_sql_expression_documented() -> None:
    # reinterpretAsUInt64(reverse(substring(MD5('abc'), 1, 8))) in ClickHouse
    assert hash64("abc") == 10376663631224000432


@given(_registers_set)
def test_pack_and_unpack_are_inverse(ranks: dict[int, int]) -> None:
    registers = bytearray(HLL_REGISTERS)
    for index, rank in ranks.items():
        registers[index] = rank
    sparse = hll_pack(registers)
    assert sparse == [index << 6 | ranks[index] for index in sorted(ranks)]
    assert hll_is_sparse(sparse)
    assert hll_unpack(sparse) == registers


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(0, 10**6), max_size=400), st.sets(st.integers(0, 10**6), max_size=400))
def test_merge_is_the_sketch_of_the_union(left: set[int], right: set[int]) -> None:
    union = _sketch(sorted(str(i) for i in left | right))
    assert hll_merge_sparse(_sketch(sorted(left)), _sketch(sorted(right))) == union
    dense = _registers(sorted(left))
    hll_merge(dense, _registers(sorted(right)))
    assert hll_pack(dense) == union
    assert hll_pack(hll_unpack(_sketch(sorted(right)), into=_registers(sorted(left)))) == union


def test_merging_nothing_or_empty_sketches_is_empty() -> None:
    assert hll_merge_sparse() == []
    assert hll_merge_sparse([], []) == []
    assert hll_estimate([]) == 0.0


def test_the_histogram_counts_the_registers_the_sparse_form_leaves_out() -> None:
    registers = _registers(range(5000))
    histogram = hll_histogram(hll_pack(registers))
    assert histogram == [registers.count(rank) for rank in range(HLL_MAX_RANK + 1)]
    assert histogram[0] == HLL_REGISTERS - len(hll_pack(registers))


def test_only_the_sparse_form_is_sparse() -> None:
    assert hll_is_sparse([1 << 6 | 3, 2 << 6 | 49])
    assert not hll_is_sparse([2 << 6 | 3, 1 << 6 | 3])  # not sorted
    assert not hll_is_sparse([1 << 6 | 3, 1 << 6 | 4])  # one register twice
    assert not hll_is_sparse([1 << 6])  # rank 0 is never sent
    assert not hll_is_sparse([1 << 6 | 50])  # beyond the largest rank
    assert not hll_is_sparse([HLL_REGISTERS << 6 | 1])  # no such register
    assert not hll_is_sparse(list(_registers(range(100))[:HLL_LEGACY_DENSE_REGISTERS]))


def test_a_point_keeps_sparse_registers_and_drops_the_former_dense_ones() -> None:
    def point(hll: list[int]) -> MetricPoint:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return MetricPoint(project_id="p", metric="m", window_start=at, hll=hll, emitted_at=at)

    assert point([65, 130]).hll == [65, 130]
    assert point([0, 3, *[0] * (HLL_LEGACY_DENSE_REGISTERS - 2)]).hll == []
    with pytest.raises(ValidationError):
        point([130, 65])


@pytest.mark.parametrize("n", [0, 1, 7, 100, 2_000])
def test_small_sets_are_counted_almost_exactly(n: int) -> None:
    assert hll_estimate(_sketch(range(n))) == pytest.approx(n, abs=max(1.0, n * 0.005))


def test_a_million_users_within_three_standard_errors() -> None:
    """The bench measures several sets of a million users; one set here, within 3 standard
    errors (1.2 %), which a correct sketch misses three times in a thousand."""
    n = 1_000_000
    error = (hll_estimate(_sketch([f"million-{i}" for i in range(n)])) - n) / n
    assert abs(error) < 3 * HLL_RELATIVE_ERROR


def test_adding_a_value_twice_changes_nothing() -> None:
    once = _registers(["a", "b"])
    assert not hll_add(once, "a")
    assert once == _registers(["a", "b", "a"])


def _rank_error(values: list[float], estimate: float, q: float) -> float:
    below = sum(v < estimate for v in values)
    at_or_below = sum(v <= estimate for v in values)
    n = len(values)
    if below / n <= q <= at_or_below / n:
        return 0.0
    return min(abs(below / n - q), abs(at_or_below / n - q))


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_digest_quantiles_within_half_a_percent_of_rank(q: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1) for _ in range(20_000)]
    digest = TDigest()
    for v in values:
        digest.add(v)
    assert _rank_error(values, digest.quantile(q), q) <= 0.005


def test_merged_digests_answer_like_one_digest() -> None:
    rng = random.Random(3)
    values = [rng.gauss(100, 15) for _ in range(10_000)]
    parts = [TDigest() for _ in range(4)]
    for i, v in enumerate(values):
        parts[i % 4].add(v)
    merged = compress(c for part in parts for c in part.centroids())
    for q in (0.5, 0.9, 0.99):
        assert _rank_error(values, digest_quantile(merged, q), q) <= 0.005


def test_small_digest_keeps_every_value() -> None:
    digest = TDigest()
    for v in (5.0, 1.0, 3.0):
        digest.add(v)
    assert digest.centroids() == [(1.0, 1.0), (3.0, 1.0), (5.0, 1.0)]
    assert digest.quantile(0.5) == 3.0
    assert digest_quantile([], 0.5) != digest_quantile([], 0.5)  # NaN for an empty digest


@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**64 - 1),
            # the edges of the rank: a low part of 0, of one bit, of every bit
            st.integers(0, 2**16 - 1).map(lambda i: i << 48),
            st.integers(0, 47).map(lambda bit: 1 << bit),
            st.integers(0, 2**16 - 1).map(lambda i: i << 48 | (2**48 - 1)),
        ),
        max_size=200,
    )
)
def test_many_hashes_added_at_once_set_the_registers_one_at_a_time_would(
    hashes: list[int],
) -> None:
    one_by_one = bytearray(HLL_REGISTERS)
    for hashed in hashes:
        index, rank = hll_position(hashed)
        one_by_one[index] = max(one_by_one[index], rank)
    at_once = bytearray(HLL_REGISTERS)
    hll_add_hashes(at_once, hashes)
    assert at_once == one_by_one
