"""The sketches in metric points: HyperLogLog and t-digest, their merges and their errors."""

from __future__ import annotations

import random

import pytest

from sextant.schemas.sketches import (
    HLL_REGISTERS,
    HLL_RELATIVE_ERROR,
    TDigest,
    compress,
    digest_quantile,
    hash64,
    hll_add,
    hll_estimate,
    hll_merge,
)


def _sketch(ids: range | list[str]) -> bytearray:
    registers = bytearray(HLL_REGISTERS)
    for i in ids:
        hll_add(registers, str(i))
    return registers


def test_hash_matches_the_sql_expression_documented() -> None:
    # reinterpretAsUInt64(reverse(substring(MD5('abc'), 1, 8))) in ClickHouse
    assert hash64("abc") == 10376663631224000432


@pytest.mark.parametrize("n", [0, 1, 7, 100, 2_000])
def test_small_sets_are_counted_almost_exactly(n: int) -> None:
    assert hll_estimate(_sketch(range(n))) == pytest.approx(n, abs=max(1.0, n * 0.01))


def test_large_set_within_three_standard_errors() -> None:
    n = 60_000
    estimate = hll_estimate(_sketch(range(n)))
    assert abs(estimate - n) / n < 3 * HLL_RELATIVE_ERROR


def test_merge_is_the_sketch_of_the_union() -> None:
    left, right = _sketch(range(3000)), _sketch(range(2000, 5000))
    hll_merge(left, right)
    assert left == _sketch(range(5000))


def test_adding_a_value_twice_changes_nothing() -> None:
    once = _sketch(["a", "b"])
    assert not hll_add(once, "a")
    assert once == _sketch(["a", "b", "a"])


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
