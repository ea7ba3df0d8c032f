"""Reading the processor's sketches: HyperLogLog registers and t-digest centroids.

``metric_points.hll`` holds the 2^14 registers of a HyperLogLog (precision p = 14, one
``UInt8`` register per bucket: the largest leading-zero rank seen). Registers of several
windows merge by element-wise maximum (``maxForEach`` in SQL), which is exactly the sketch of
the union, so a day of minutes gives the day's unique users, not a sum of minutes. The
warehouse reduces the merged registers to two numbers (``Σ 2^-M[j]`` and the count of zero
registers) and :func:`hll_estimate` turns them into the estimate; the standard error at
p = 14 is 1.04 / sqrt(16384) ≈ 0.8 %.

``metric_points.digest`` holds t-digest centroids ``(mean, weight)``; digests merge by taking
the union of their centroids, and :func:`digest_quantiles` interpolates between centroid
centres.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

HLL_PRECISION = 14
HLL_REGISTERS = 1 << HLL_PRECISION
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def hll_alpha(m: int) -> float:
    """The bias constant of the raw HyperLogLog estimate (Flajolet et al. 2007)."""
    if m == 16:
        return 0.673
    if m == 32:
        return 0.697
    if m == 64:
        return 0.709
    return 0.7213 / (1 + 1.079 / m)


def hll_estimate(registers: int, inverse_sum: float, zeros: int) -> float:
    """Distinct count from ``registers`` registers with ``Σ 2^-M[j] = inverse_sum`` and
    ``zeros`` registers still 0.

    The raw estimate ``α m² / Σ 2^-M[j]``, replaced by linear counting ``m ln(m / V)`` in
    the small range (raw ≤ 2.5 m with empty registers), as in Flajolet et al. (2007) and
    Heule et al. (2013). No large-range correction: the processor hashes to 64 bits. An
    empty or missing sketch (``registers == 0``) counts 0.
    """
    if registers <= 0 or inverse_sum <= 0:
        return 0.0
    raw = hll_alpha(registers) * registers * registers / inverse_sum
    if raw <= 2.5 * registers and zeros > 0:
        return registers * math.log(registers / zeros)
    return raw


def hll_estimate_registers(registers: Sequence[int]) -> float:
    """:func:`hll_estimate` of a register array held in memory."""
    if not registers:
        return 0.0
    inverse_sum = math.fsum(2.0**-r for r in registers)
    return hll_estimate(len(registers), inverse_sum, sum(1 for r in registers if r == 0))


def merge_registers(sketches: Iterable[Sequence[int]]) -> list[int]:
    """Element-wise maximum: the sketch of the union."""
    merged: list[int] = []
    for registers in sketches:
        if len(registers) > len(merged):
            merged.extend([0] * (len(registers) - len(merged)))
        for i, r in enumerate(registers):
            if r > merged[i]:
                merged[i] = r
    return merged


def digest_quantiles(
    centroids: Iterable[Sequence[float]], quantiles: Sequence[float] = QUANTILES
) -> list[float | None]:
    """Quantiles of the distribution summarised by ``(mean, weight)`` centroids.

    Centroid ``i`` stands for its weight spread around its mean, so its centre sits at
    cumulative weight ``W_<i + w_i / 2``; a quantile between two centres interpolates
    linearly between their means, and beyond the outer centres takes the outer means.
    ``None`` for every quantile when there is no weight.
    """
    points = sorted((float(c[0]), float(c[1])) for c in centroids if c[1] > 0)
    total = math.fsum(w for _, w in points)
    if not points or total <= 0:
        return [None for _ in quantiles]
    centres: list[float] = []
    cumulative = 0.0
    for _, weight in points:
        centres.append(cumulative + weight / 2)
        cumulative += weight
    return [_interpolate(points, centres, q * total) for q in quantiles]


def _interpolate(points: list[tuple[float, float]], centres: list[float], target: float) -> float:
    if target <= centres[0]:
        return points[0][0]
    if target >= centres[-1]:
        return points[-1][0]
    low, high = 0, len(centres) - 1
    while high - low > 1:  # the last centre at or below the target
        mid = (low + high) // 2
        if centres[mid] <= target:
            low = mid
        else:
            high = mid
    span = centres[high] - centres[low]
    share = (target - centres[low]) / span if span > 0 else 0.0
    return points[low][0] + share * (points[high][0] - points[low][0])
