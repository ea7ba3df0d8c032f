"""Experiment assignment: GrowthBook conformance cases, cross-checks, properties."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import fnv1a32 as gb_fnv1a32
from growthbook.core import gbhash
from hypothesis import given
from hypothesis import strategies as st

from sextant.schemas.assignment import (
    assign,
    choose_variation,
    fnv1a32,
    get_bucket_ranges,
    get_equal_weights,
    hash_value,
    in_namespace,
)
from tests.assignment_vectors import CASES, NON_ASCII_VECTORS


def _rounded(ranges: list[tuple[float, float]] | list[list[float]]) -> list[list[float]]:
    return [[round(a, 6), round(b, 6)] for a, b in ranges]


# --- GrowthBook's cross-SDK conformance cases ------------------------------------------


def test_conformance_sections_are_present() -> None:
    for section in ("hash", "getBucketRange", "chooseVariation", "inNamespace"):
        assert len(CASES[section]) > 0, section
    assert len(CASES["getEqualWeights"]) > 0


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    CASES["hash"],
    ids=[f"{s!r}+{v!r}@v{ver}" for s, v, ver, _ in CASES["hash"]],
)
def test_growthbook_hash(seed: str, value: str, version: int, expected: float | None) -> None:
    assert hash_value(seed, value, version) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [row[1:] for row in CASES["getBucketRange"]],
    ids=[row[0] for row in CASES["getBucketRange"]],
)
def test_growthbook_bucket_ranges(args: list[Any], expected: list[list[float]]) -> None:
    num_variations, coverage, weights = args
    assert _rounded(get_bucket_ranges(num_variations, coverage, weights)) == _rounded(expected)


@pytest.mark.parametrize(
    ("n", "ranges", "expected"),
    [row[1:] for row in CASES["chooseVariation"]],
    ids=[row[0] for row in CASES["chooseVariation"]],
)
def test_growthbook_choose_variation(n: float, ranges: list[list[float]], expected: int) -> None:
    assert choose_variation(n, [(a, b) for a, b in ranges]) == expected


@pytest.mark.parametrize(
    ("user_id", "namespace", "expected"),
    [row[1:] for row in CASES["inNamespace"]],
    ids=[row[0] for row in CASES["inNamespace"]],
)
def test_growthbook_in_namespace(user_id: str, namespace: list[Any], expected: bool) -> None:
    name, start, end = namespace
    assert in_namespace(user_id, (name, start, end)) is expected


@pytest.mark.parametrize(
    ("num_variations", "expected"),
    CASES["getEqualWeights"],
    ids=[f"n={row[0]}" for row in CASES["getEqualWeights"]],
)
def test_growthbook_equal_weights(num_variations: int, expected: list[float]) -> None:
    assert [round(w, 8) for w in get_equal_weights(num_variations)] == expected


# --- Non-ASCII vectors (from GrowthBook's JS SDK under Node.js) -------------------------


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    NON_ASCII_VECTORS,
    ids=[f"{s!r}+{v!r}@v{ver}" for s, v, ver, _ in NON_ASCII_VECTORS],
)
def test_non_ascii_hash_matches_js(seed: str, value: str, version: int, expected: float) -> None:
    assert hash_value(seed, value, version) == expected


def test_emoji_hashes_as_two_surrogate_code_units() -> None:
    # 😀 is U+1F600, which JavaScript sees as the code units 0xD83D 0xDE00.
    assert fnv1a32("😀") == fnv1a32("\ud83d\ude00")
    assert fnv1a32("😀") != _fnv1a32_code_points("😀")


def test_code_point_hashing_would_disagree_on_non_bmp_ids() -> None:
    legacy = (_fnv1a32_code_points(str(_fnv1a32_code_points("seed😀-user"))) % 10000) / 10000
    assert legacy != hash_value("seed", "😀-user", 2)


def _fnv1a32_code_points(text: str) -> int:
    """How GrowthBook's Python SDK hashed before 4.x: one step per code point."""
    h = 0x811C9DC5
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return h


# --- Agreement with the growthbook package ------------------------------------------------

_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz0123456789-_@.",
    "éèêëàâäôöûüçñßøå",
    "абвгдежзийклмнопрстуфхцчшщ",
    "用户测试实验变体数据",
    "😀🚀👩💻🎉🔥🌍",
    "\u0301\u200d ",
]


def _random_ids(rng: random.Random, count: int) -> Iterator[str]:
    """Ids that are ASCII-only about 40 % of the time, mixed scripts otherwise."""
    for _ in range(count):
        length = rng.randint(1, 24)
        alphabets = _ALPHABETS[:1] if rng.random() < 0.4 else _ALPHABETS
        yield "".join(rng.choice(rng.choice(alphabets)) for _ in range(length))


_EXPERIMENTS = [
    ("checkout-v2", [0.5, 0.5], 1.0, None, 2),
    ("pricing", [0.2, 0.3, 0.5], 0.7, "pricing-seed", 2),
    ("onboarding", [0.25, 0.25, 0.25, 0.25], 0.35, "🚀", 2),
    ("legacy-exp", [0.1, 0.9], 1.0, None, 1),
    ("bad-weights", [0.7, 0.6], 0.8, "x", 1),
]


@pytest.mark.parametrize(
    ("key", "weights", "coverage", "seed", "version"),
    _EXPERIMENTS,
    ids=[e[0] for e in _EXPERIMENTS],
)
def test_same_variant_as_growthbook_sdk(
    key: str, weights: list[float], coverage: float, seed: str | None, version: int
) -> None:
    rng = random.Random(f"{key}-{version}")
    gb = GrowthBook(attributes={})
    experiment_kwargs: dict[str, Any] = {
        "key": key,
        "variations": list(range(len(weights))),
        "weights": weights,
        "coverage": coverage,
        "seed": seed,
        "hashVersion": version,
    }
    try:
        for unit_id in _random_ids(rng, 3000):
            gb.set_attributes({"id": unit_id})
            result = gb.run(Experiment(**experiment_kwargs))
            expected = result.variationId if result.inExperiment else None
            assert assign(key, unit_id, weights, coverage, seed, version) == expected, unit_id
    finally:
        gb.destroy()


@given(st.text(max_size=40) | st.text(min_size=40, max_size=120))
def test_fnv_matches_growthbook_sdk(text: str) -> None:
    assert fnv1a32(text) == gb_fnv1a32(text)


@given(
    seed=st.text(max_size=30),
    value=st.text(max_size=60) | st.text(st.characters(max_codepoint=127), max_size=60),
    version=st.sampled_from([1, 2]),
)
def test_hash_matches_growthbook_sdk(seed: str, value: str, version: int) -> None:
    assert hash_value(seed, value, version) == gbhash(seed, value, version)


# --- assign() contract --------------------------------------------------------------------


def test_seed_defaults_to_experiment_key() -> None:
    for unit_id in ("u1", "u2", "😀-user", "用户"):
        assert assign("exp", unit_id, [0.5, 0.5]) == assign("exp", unit_id, [0.5, 0.5], seed="exp")


def test_emoji_vector_through_assign() -> None:
    # hash 0.3956 < 0.5: the first variant of a 50/50 split.
    assert assign("any-key", "😀-user", [0.5, 0.5], seed="seed") == 0
    assert assign("any-key", "😀-user", [0.5, 0.5], coverage=0.5, seed="seed") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unit_id": "", "weights": [0.5, 0.5]},
        {"unit_id": "u1", "weights": [1.0]},
        {"unit_id": "u1", "weights": []},
        {"unit_id": "u1", "weights": [0.5, 0.5], "hash_version": 3},
        {"unit_id": "u1", "weights": [0.5, 0.5], "coverage": 0.0},
    ],
    ids=["empty-id", "one-variant", "no-variants", "unknown-hash-version", "zero-coverage"],
)
def test_excluded_units(kwargs: dict[str, Any]) -> None:
    assert assign("exp", **kwargs) is None


def test_namespace_excludes_units_outside_it() -> None:
    ids = [f"user-{i}" for i in range(500)]
    inside = [u for u in ids if in_namespace(u, ("ns", 0.0, 0.5))]
    outside = [u for u in ids if not in_namespace(u, ("ns", 0.0, 0.5))]
    assert inside
    assert outside
    assert all(assign("exp", u, [0.5, 0.5], namespace=("ns", 0.0, 0.5)) is not None for u in inside)
    assert all(assign("exp", u, [0.5, 0.5], namespace=("ns", 0.0, 0.5)) is None for u in outside)


def test_split_follows_weights() -> None:
    counts = [0, 0, 0]
    for i in range(20_000):
        variant = assign("split", f"u{i}", [0.2, 0.3, 0.5])
        assert variant is not None
        counts[variant] += 1
    for count, weight in zip(counts, [0.2, 0.3, 0.5], strict=True):
        assert abs(count / 20_000 - weight) < 0.015


# --- Properties ---------------------------------------------------------------------------

_weights = st.lists(st.integers(min_value=0, max_value=100), min_size=2, max_size=6).filter(
    lambda xs: sum(xs) > 0
)


@given(
    unit_id=st.text(min_size=1, max_size=30),
    raw_weights=_weights,
    coverages=st.tuples(
        st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=1.0)
    ),
    seed=st.text(max_size=10),
    version=st.sampled_from([1, 2]),
)
def test_lowering_coverage_only_removes_units(
    unit_id: str,
    raw_weights: list[int],
    coverages: tuple[float, float],
    seed: str,
    version: int,
) -> None:
    weights = [w / sum(raw_weights) for w in raw_weights]
    low, high = sorted(coverages)
    at_low = assign("exp", unit_id, weights, low, seed, version)
    at_high = assign("exp", unit_id, weights, high, seed, version)
    assert at_low is None or at_low == at_high


@given(
    num_variations=st.integers(min_value=1, max_value=8),
    coverage=st.floats(min_value=-1.0, max_value=2.0),
    weights=st.none() | st.lists(st.floats(min_value=-1.0, max_value=2.0), max_size=8),
)
def test_bucket_ranges_are_ordered_and_disjoint(
    num_variations: int, coverage: float, weights: list[float] | None
) -> None:
    ranges = get_bucket_ranges(num_variations, coverage, weights)
    assert len(ranges) == num_variations
    previous_end = 0.0
    for start, end in ranges:
        assert previous_end <= start + 1e-12
        assert start <= end
        previous_end = end
    assert previous_end <= 1.01


@given(seed=st.text(max_size=20), value=st.text(max_size=20), version=st.sampled_from([1, 2]))
def test_hash_in_unit_interval(seed: str, value: str, version: int) -> None:
    n = hash_value(seed, value, version)
    assert n is not None
    assert 0.0 <= n < 1.0
