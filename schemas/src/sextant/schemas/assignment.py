"""Deterministic experiment assignment, compatible with GrowthBook's hashing.

A unit (a ``userId`` or ``anonymousId``) is mapped to a number in ``[0, 1)`` by
FNV-1a 32-bit hashing of the unit id and a seed; bucket ranges built from the
variant weights and the coverage then pick the variant. The same inputs give
the same variant here, in Sextant's SDKs and in GrowthBook's SDKs, so the SDK
and the server share this one implementation.

Why UTF-16 code units
---------------------
GrowthBook's JavaScript SDK hashes ``str.charCodeAt(i)`` for every index, i.e.
UTF-16 code units: a character outside the Basic Multilingual Plane (an emoji
such as ``😀``) contributes its two surrogate code units, ``0xD83D 0xDE00``.
GrowthBook's Python SDK 4.x does the same. Older Python SDK releases hashed
code points (``ord(c)`` per character), which agrees for BMP text but gives a
different hash, and so possibly a different variant, for ids containing
non-BMP characters. This module follows the JS SDK (and Python SDK 4.x): for
example ``hash_value("seed", "😀-user", 2)`` is ``0.3956``.

Function names mirror GrowthBook's (``getBucketRanges`` is ``get_bucket_ranges``
and so on) so the conformance cases in ``growthbook-cases.json`` map one to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

__all__ = [
    "BucketRange",
    "Namespace",
    "assign",
    "choose_variation",
    "fnv1a32",
    "get_bucket_ranges",
    "get_equal_weights",
    "hash_value",
    "in_namespace",
    "running",
]

BucketRange = tuple[float, float]
"""A half-open interval ``[start, end)`` of hash values that select one variant."""

Namespace = tuple[str, float, float]
"""``(namespace_id, start, end)``: a unit is in the namespace when its
namespace hash falls in ``[start, end)``."""

_FNV_OFFSET = 0x811C9DC5
# GrowthBook replaces weight vectors whose sum falls outside this band.
_WEIGHT_SUM_MIN = 0.99
_WEIGHT_SUM_MAX = 1.01


def _utf16_code_units(text: str) -> list[int]:
    """The UTF-16 code units of ``text``, as JavaScript's ``charCodeAt`` sees them."""
    if text.isascii():
        return list(text.encode("ascii"))
    data = text.encode("utf-16-le", "surrogatepass")
    return [data[i] | (data[i + 1] << 8) for i in range(0, len(data), 2)]


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit hash of ``text`` over its UTF-16 code units.

    Returns an unsigned 32-bit integer equal to GrowthBook JS's ``fnv1a32``.
    """
    return _fnv_continue(_FNV_OFFSET, text)


_SHORT = 48
"""Up to this many code units, an FNV pass reduces its state mod 2**32 once, at the end."""


def _fnv_continue(h: int, text: str) -> int:
    """FNV-1a 32-bit of ``text`` continued from the state ``h``."""
    units = text.encode("ascii") if text.isascii() else _utf16_code_units(text)
    if len(units) > _SHORT:
        for unit in units:
            h = ((h ^ unit) * 0x01000193) & 0xFFFFFFFF
        return h
    # The same hash: XOR with a code unit changes only the low 16 bits, and the low 32 bits
    # of a product depend only on the low 32 bits of its factors. Over a short text the
    # unreduced state stays small enough for that to save a step per unit.
    for unit in units:
        h = (h ^ unit) * 0x01000193
    return h & 0xFFFFFFFF


@lru_cache(maxsize=4096)
def _seed_state(seed: str) -> int:
    """The FNV state after ``seed``: version 2 hashes ``seed + value``, so each unit's hash
    continues from it instead of hashing the seed again."""
    return _fnv_continue(_FNV_OFFSET, seed)


@lru_cache(maxsize=32768)
def hash_value(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's ``hash(seed, value, version)``: a number in ``[0, 1)``.

    * version 1: ``(fnv(value + seed) % 1000) / 1000``;
    * version 2: ``(fnv(str(fnv(seed + value))) % 10000) / 10000``.

    Returns ``None`` for any other version (GrowthBook then leaves the unit
    out of the experiment). Results are kept for the most recent 32,768
    (seed, value, version) triples: a unit evaluated again (the same user on its
    next request) costs a lookup instead of two passes of FNV in Python.
    """
    if version == 2:
        h = _FNV_OFFSET
        for digit in b"%d" % _fnv_continue(_seed_state(seed), value):
            h = (h ^ digit) * 0x01000193
        return ((h & 0xFFFFFFFF) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def in_namespace(user_id: str, namespace: Namespace) -> bool:
    """Whether ``user_id`` falls in ``namespace = (id, start, end)``.

    Uses hash version 1 with seed ``"__" + id``, as GrowthBook does; the
    range is half-open: ``start <= n < end``.
    """
    name, start, end = namespace
    n = hash_value("__" + name, user_id, 1)
    return n is not None and start <= n < end


def get_equal_weights(num_variations: int) -> list[float]:
    """``num_variations`` equal weights summing to 1; empty when below 1."""
    if num_variations < 1:
        return []
    return [1 / num_variations] * num_variations


def _js_sum(values: Sequence[float]) -> float:
    """Left-to-right float sum, like JS ``reduce((a, b) => a + b)``.

    Python 3.12's ``sum`` compensates rounding errors, which could flip a sum
    sitting exactly on the 0.99/1.01 boundary.
    """
    total = 0.0
    for v in values:
        total += v
    return total


def _normalised_weights(num_variations: int, weights: Sequence[float] | None) -> list[float]:
    """``weights`` if they are one finite, non-negative weight per variation
    summing to 1 within 0.01; equal weights otherwise.

    The finiteness and sign checks follow GrowthBook's Python SDK 4.x; the JS
    SDK checks only length and sum, so the two differ only on payloads
    GrowthBook never produces (negative or infinite weights).
    """
    if (
        weights is not None
        and len(weights) == num_variations
        and all(math.isfinite(w) and w >= 0 for w in weights)
        and _WEIGHT_SUM_MIN <= _js_sum(weights) <= _WEIGHT_SUM_MAX
    ):
        return list(weights)
    return get_equal_weights(num_variations)


def get_bucket_ranges(
    num_variations: int,
    coverage: float = 1.0,
    weights: Sequence[float] | None = None,
) -> list[BucketRange]:
    """GrowthBook's ``getBucketRanges``: one ``[start, end)`` range per variation.

    ``coverage`` is clamped to ``[0, 1]``. ``weights`` that are missing, of the
    wrong length, negative or non-finite, or that do not sum to 1 within 0.01
    are replaced by equal weights. Variation ``i`` starts at the cumulative
    weight of the variations before it and covers ``coverage * weights[i]`` of
    its slot, so lowering the coverage shrinks every range from its end and a
    unit either keeps its variation or leaves the experiment.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    ranges: list[BucketRange] = []
    cumulative = 0.0
    for w in _normalised_weights(num_variations, weights):
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_variation(n: float, ranges: Sequence[BucketRange]) -> int:
    """Index of the first range with ``start <= n < end``, or ``-1`` if none."""
    for i, (start, end) in enumerate(ranges):
        if start <= n < end:
            return i
    return -1


def assign(
    experiment_key: str,
    unit_id: str,
    weights: Sequence[float],
    coverage: float = 1.0,
    seed: str | None = None,
    hash_version: int = 2,
    namespace: Namespace | None = None,
) -> int | None:
    """The variant index of ``unit_id`` in an experiment, or ``None`` if excluded.

    ``weights`` has one entry per variant (its length is the number of
    variants; invalid weights fall back to equal weights as in
    :func:`get_bucket_ranges`). ``seed`` defaults to ``experiment_key``, as
    GrowthBook's ``experiment.seed or experiment.key``. ``hash_version``
    defaults to 2, the version GrowthBook uses for new experiments; note that
    GrowthBook's SDKs default to 1 when an experiment omits ``hashVersion``.

    Returns ``None`` when the experiment has fewer than two variants, the unit
    id is empty, the hash version is unknown, the unit is outside
    ``namespace``, or its hash falls outside the (coverage-reduced) ranges.
    The result is deterministic and equals the ``variationId`` GrowthBook's
    SDKs give for the same experiment when the unit is in it.
    """
    if len(weights) < 2 or not unit_id:
        return None
    if namespace is not None and not in_namespace(unit_id, namespace):
        return None
    n = hash_value(seed or experiment_key, unit_id, hash_version)
    if n is None:
        return None
    variant = choose_variation(n, get_bucket_ranges(len(weights), coverage, weights))
    return variant if variant >= 0 else None


def running(start: datetime | None, stop: datetime | None, now: datetime) -> bool:
    """Whether an experiment scheduled from ``start`` until ``stop`` (either open) assigns at
    ``now``: from ``start`` inclusive to ``stop`` exclusive."""
    return (start is None or start <= now) and (stop is None or now < stop)
