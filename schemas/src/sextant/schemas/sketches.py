"""The mergeable sketches inside a :class:`~sextant.schemas.records.MetricPoint`.

Producers and readers of ``metric_points`` must agree on how ``hll`` and ``digest`` are built
and read, so both sketches are defined here, once.

HyperLogLog (``MetricPoint.hll``)
    ``HLL_REGISTERS`` (2**14) one-byte registers. A value is hashed with the first 8 bytes of
    its MD5 digest read big-endian (ClickHouse computes the same number with
    ``reinterpretAsUInt64(reverse(substring(MD5(x), 1, 8)))``); the top 14 bits choose the
    register, which keeps the maximum rank (leading zeros + 1) of the remaining 50 bits.
    Merging is the register-wise maximum (``maxForEach`` in SQL), so minutes roll up to hours
    exactly as if the hour had been sketched directly. The estimate is Ertl's improved raw
    estimator (no empirical bias tables, unbiased from 0 to billions). Relative standard
    error: 1.04 / sqrt(2**14) = 0.81 %.

t-digest (``MetricPoint.digest``)
    Centroids ``(mean, weight)`` sorted by mean, built by the merging t-digest with the k1
    scale function and compression ``DIGEST_COMPRESSION`` (at most ~2 x compression centroids).
    Merging is concatenation followed by :func:`compress`. Quantiles interpolate between
    centroid centres; the error is stated in rank: the estimate of quantile q lies between
    the exact q - e and q + e quantiles, with e measured by the processor's benchmark.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

HLL_PRECISION = 14
HLL_REGISTERS = 1 << HLL_PRECISION
HLL_RELATIVE_ERROR = 1.04 / math.sqrt(HLL_REGISTERS)
_HLL_Q = 64 - HLL_PRECISION
_HLL_LOW_MASK = (1 << _HLL_Q) - 1

DIGEST_COMPRESSION = 100.0
Centroid = tuple[float, float]


def hash64(value: str) -> int:
    """The 64-bit hash both the processor and SQL compute for a distinct id."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[:8], "big")  # noqa: S324


def hll_position(hashed: int) -> tuple[int, int]:
    """(register index, rank) of a 64-bit hash."""
    low = hashed & _HLL_LOW_MASK
    return hashed >> _HLL_Q, _HLL_Q + 1 - low.bit_length()


def hll_add(registers: bytearray, value: str) -> bool:
    """Add ``value`` to ``registers`` in place; True when a register changed."""
    index, rank = hll_position(hash64(value))
    if registers[index] < rank:
        registers[index] = rank
        return True
    return False


def hll_merge(into: bytearray, other: bytes | bytearray | Sequence[int]) -> None:
    """Register-wise maximum, in place."""
    if not other:
        return
    into[:] = bytes(map(max, into, other))


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


def hll_estimate(registers: bytes | bytearray | Sequence[int]) -> float:
    """Distinct values sketched in ``registers`` (Ertl 2017, "improved raw estimator")."""
    if not registers:
        return 0.0
    histogram = [0] * (_HLL_Q + 2)
    for rank in registers:
        histogram[rank] += 1
    return hll_estimate_from_histogram(histogram)


def hll_estimate_from_histogram(histogram: Sequence[int]) -> float:
    """:func:`hll_estimate` from the register histogram: ``histogram[k]`` registers hold rank
    ``k`` (0 to ``64 - HLL_PRECISION + 1``). Readers that count ranks in SQL use this."""
    m = sum(histogram)
    if m == 0 or histogram[0] == m:
        return 0.0
    histogram = [*histogram, *[0] * (_HLL_Q + 2 - len(histogram))]
    z = m * _tau(1.0 - histogram[_HLL_Q + 1] / m)
    for k in range(_HLL_Q, 0, -1):
        z = 0.5 * (z + histogram[k])
    z += m * _sigma(histogram[0] / m)
    return m * m / (2.0 * math.log(2.0) * z)


def _k_limit(cumulative: float, total: float, compression: float) -> float:
    """The largest cumulative weight the next centroid may reach (k1 scale function)."""
    k = compression / (2 * math.pi) * math.asin(2 * min(cumulative / total, 1.0) - 1) + 1
    if k >= compression / 4:
        return total
    return total * (math.sin(2 * math.pi * k / compression) + 1) / 2


def compress(
    centroids: Iterable[Centroid], compression: float = DIGEST_COMPRESSION
) -> list[Centroid]:
    """Merge ``centroids`` (in any order) into a t-digest of the given compression."""
    ordered = sorted(c for c in centroids if c[1] > 0)
    if not ordered:
        return []
    total = math.fsum(w for _, w in ordered)
    result: list[Centroid] = []
    mean, weight = ordered[0]
    before = 0.0
    limit = _k_limit(before, total, compression)
    for next_mean, next_weight in ordered[1:]:
        if before + weight + next_weight <= limit:
            weight += next_weight
            mean += (next_mean - mean) * next_weight / weight
        else:
            result.append((mean, weight))
            before += weight
            limit = _k_limit(before, total, compression)
            mean, weight = next_mean, next_weight
    result.append((mean, weight))
    return result


class TDigest:
    """A t-digest accepting single values; ``centroids()`` is the mergeable form."""

    __slots__ = ("_buffer", "_centroids", "compression")

    def __init__(
        self,
        centroids: Iterable[Centroid] = (),
        compression: float = DIGEST_COMPRESSION,
    ) -> None:
        self.compression = compression
        self._centroids: list[Centroid] = list(centroids)
        self._buffer: list[float] = []

    def add(self, value: float) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= 5 * self.compression:
            self._flush()

    def merge(self, centroids: Iterable[Centroid]) -> None:
        self._centroids = compress([*self.centroids(), *centroids], self.compression)

    def _flush(self) -> None:
        if self._buffer:
            merged = [*self._centroids, *((v, 1.0) for v in self._buffer)]
            self._centroids = compress(merged, self.compression)
            self._buffer.clear()

    def centroids(self) -> list[Centroid]:
        self._flush()
        return list(self._centroids)

    def quantile(self, q: float) -> float:
        return digest_quantile(self.centroids(), q)


def digest_quantile(centroids: Sequence[Centroid], q: float) -> float:
    """The value at quantile ``q`` (0..1) of a digest; NaN when it is empty."""
    if not centroids:
        return math.nan
    if len(centroids) == 1:
        return centroids[0][0]
    total = math.fsum(w for _, w in centroids)
    target = min(max(q, 0.0), 1.0) * total
    cumulative = 0.0
    previous_center = -math.inf
    previous_mean = centroids[0][0]
    for mean, weight in centroids:
        center = cumulative + weight / 2
        if target <= center:
            if previous_center == -math.inf:
                return mean
            span = center - previous_center
            return previous_mean + (mean - previous_mean) * (target - previous_center) / span
        previous_center, previous_mean = center, mean
        cumulative += weight
    return centroids[-1][0]
