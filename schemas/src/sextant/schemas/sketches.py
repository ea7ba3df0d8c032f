"""The mergeable sketches inside a :class:`~sextant.schemas.records.MetricPoint`.

Producers and readers of ``metric_points`` must agree on how ``hll`` and ``digest`` are built
and read, so both sketches are defined here, once.

HyperLogLog (``MetricPoint.hll``)
    ``HLL_REGISTERS`` (2**16) registers. A value is hashed with the first 8 bytes of its MD5
    digest read big-endian (:func:`hll_hash_sql` computes the same number in ClickHouse); the
    top 16 bits choose the register, which keeps the maximum rank (leading zeros + 1, at most
    49) of the remaining 48 bits. Relative standard error: 1.04 / sqrt(2**16) = 0.41 %, so an
    estimate is within 1 % of the exact count about 98.6 % of the time (1 % is 2.5 standard
    errors); measured on five sets of a million users, see docs/decisions.

    In memory (the processor) the registers are dense: a ``bytearray`` of 2**16 ranks. Where
    they travel or are stored (``MetricPoint.hll``, ``metric_points.hll Array(UInt32)``) they
    are sparse: one int per non-zero register, ``index << HLL_RANK_BITS | rank``, sorted by
    index, one per register. A window of a few thousand users is a few thousand ints. As the
    rank is in the low bits, the larger packed int of one register holds the larger rank, so
    merging (the register-wise maximum) is ``max(packed)`` per ``packed >> HLL_RANK_BITS``,
    in SQL as here: minutes roll up to hours exactly as if the hour had been sketched
    directly. The estimate is Ertl's improved raw estimator (no empirical bias tables,
    unbiased from 0 to billions) from the rank histogram, whose rank 0 counts the registers
    the sparse form leaves out.

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

import numpy as np
import numpy.typing as npt

HLL_PRECISION = 16
HLL_REGISTERS = 1 << HLL_PRECISION
HLL_RELATIVE_ERROR = 1.04 / math.sqrt(HLL_REGISTERS)
HLL_RANK_BITS = 6
_HLL_Q = 64 - HLL_PRECISION
HLL_MAX_RANK = _HLL_Q + 1
_HLL_LOW_MASK = (1 << _HLL_Q) - 1
_HLL_RANK_MASK = (1 << HLL_RANK_BITS) - 1
assert HLL_MAX_RANK <= _HLL_RANK_MASK
HLL_LEGACY_DENSE_REGISTERS = 1 << 14
"""Points emitted before the sparse form carried this many dense one-byte registers."""

Sparse = Sequence[int] | npt.NDArray[np.uint32]
"""Sparse registers: sorted ``index << HLL_RANK_BITS | rank``, one per non-zero register."""

DIGEST_COMPRESSION = 100.0
Centroid = tuple[float, float]


def hash64(value: str) -> int:
    """The 64-bit hash both the processor and SQL (:func:`hll_hash_sql`) compute for an id."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[:8], "big")  # noqa: S324


def hll_hash_sql(value: str) -> str:
    """SQL: :func:`hash64` of the String expression ``value``."""
    return f"reinterpretAsUInt64(reverse(substring(MD5({value}), 1, 8)))"


def hll_position(hashed: int) -> tuple[int, int]:
    """(register index, rank) of a 64-bit hash."""
    low = hashed & _HLL_LOW_MASK
    return hashed >> _HLL_Q, _HLL_Q + 1 - low.bit_length()


def hll_add_hashes(registers: bytearray, hashes: Sequence[int]) -> None:
    """Add many 64-bit hashes to dense ``registers`` in place (:func:`hll_position` of each,
    vectorised: the bit length from the float exponent, exact below 2**53)."""
    hashed = np.asarray(hashes, dtype=np.uint64)
    if not hashed.size:
        return
    index = (hashed >> np.uint64(_HLL_Q)).astype(np.intp)
    _, bit_length = np.frexp((hashed & np.uint64(_HLL_LOW_MASK)).astype(np.float64))
    ranks = (_HLL_Q + 1 - bit_length).astype(np.uint8)
    np.maximum.at(np.frombuffer(registers, dtype=np.uint8), index, ranks)


def hll_add(registers: bytearray, value: str) -> bool:
    """Add ``value`` to dense ``registers`` in place; True when a register changed."""
    index, rank = hll_position(hash64(value))
    if registers[index] < rank:
        registers[index] = rank
        return True
    return False


def hll_merge(into: bytearray, other: bytes | bytearray) -> None:
    """Register-wise maximum of dense registers, in place."""
    if not other:
        return
    target = np.frombuffer(into, dtype=np.uint8)
    np.maximum(target, np.frombuffer(other, dtype=np.uint8), out=target)


def _packed(sparse: Sparse) -> npt.NDArray[np.uint32]:
    return np.asarray(sparse, dtype=np.uint32)


def hll_is_sparse(sparse: Sparse) -> bool:
    """Whether ``sparse`` is the sparse form: register indexes strictly increasing, ranks
    from 1 to ``HLL_MAX_RANK``."""
    packed = np.asarray(sparse, dtype=np.int64)
    if packed.size == 0:
        return True
    index, ranks = packed >> HLL_RANK_BITS, packed & _HLL_RANK_MASK
    return bool(
        index[0] >= 0
        and index[-1] < HLL_REGISTERS
        and np.all(np.diff(index) > 0)
        and ranks.min() >= 1
        and ranks.max() <= HLL_MAX_RANK
    )


def hll_pack_array(registers: bytes | bytearray) -> npt.NDArray[np.uint32]:
    """The sparse form of dense ``registers``, as a numpy array."""
    ranks = np.frombuffer(registers, dtype=np.uint8)
    index = np.flatnonzero(ranks != 0).astype(np.uint32)  # on booleans: several times faster
    return ((index << HLL_RANK_BITS) | ranks[index]).astype(np.uint32, copy=False)


def hll_pack(registers: bytes | bytearray) -> list[int]:
    """The sparse form of dense ``registers`` (what ``MetricPoint.hll`` carries)."""
    return hll_pack_array(registers).tolist()  # type: ignore[no-any-return]


def hll_unpack(sparse: Sparse, into: bytearray | None = None) -> bytearray:
    """Dense registers from ``sparse``: merged into ``into`` in place, or new ones."""
    registers = bytearray(HLL_REGISTERS) if into is None else into
    packed = _packed(sparse)
    index = packed >> HLL_RANK_BITS
    ranks = (packed & _HLL_RANK_MASK).astype(np.uint8)
    target = np.frombuffer(registers, dtype=np.uint8)
    target[index] = np.maximum(target[index], ranks)  # one packed int per register
    return registers


def hll_merge_sparse(*sketches: Sparse) -> list[int]:
    """The register-wise maximum of sparse sketches: the sparse sketch of their union."""
    if not sketches:
        return []
    packed = np.sort(np.concatenate([_packed(s) for s in sketches]))
    index = packed >> HLL_RANK_BITS
    last_of_register = np.append(index[1:] != index[:-1], True)[: len(packed)]
    return packed[last_of_register].tolist()  # type: ignore[no-any-return]


def hll_histogram(sparse: Sparse) -> list[int]:
    """``histogram[k]``: registers holding rank ``k``, rank 0 counting every register that
    ``sparse`` leaves out (``HLL_REGISTERS`` minus its length)."""
    ranks = _packed(sparse) & _HLL_RANK_MASK
    histogram = np.bincount(ranks, minlength=HLL_MAX_RANK + 1)
    histogram[0] = HLL_REGISTERS - len(ranks)
    return histogram.tolist()  # type: ignore[no-any-return]


def hll_histogram_sql(sparse: str) -> str:
    """SQL: :func:`hll_histogram` of the ``Array(UInt32)`` expression ``sparse``, up to its
    largest rank (a few numbers leave the warehouse instead of the registers)."""
    rank = f"bitAnd(p, {_HLL_RANK_MASK})"
    top = f"arrayMax(p -> {rank}, {sparse})"
    return (
        f"arrayMap(k -> if(k = 0, {HLL_REGISTERS} - length({sparse}),"
        f" arrayCount(p -> {rank} = k, {sparse})), range(toUInt8({top}) + 1))"
    )


def hll_register_sql(packed: str) -> str:
    """SQL: the register index of one packed int. The register-wise maximum of several sparse
    sketches is ``max(packed)`` grouped by this (the rank is in the low bits)."""
    return f"bitShiftRight({packed}, {HLL_RANK_BITS})"


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


def hll_estimate(sparse: Sparse) -> float:
    """Distinct values sketched in ``sparse`` (Ertl 2017, "improved raw estimator")."""
    return hll_estimate_from_histogram(hll_histogram(sparse))


def hll_estimate_from_histogram(histogram: Sequence[int]) -> float:
    """:func:`hll_estimate` from the register histogram: ``histogram[k]`` registers hold rank
    ``k`` (0 to ``HLL_MAX_RANK``; missing ranks are 0). Readers that count ranks in SQL use
    this; ``histogram[0]`` must count the zero registers."""
    m = sum(histogram)
    if m == 0 or histogram[0] == m:
        return 0.0
    histogram = [*histogram, *[0] * (HLL_MAX_RANK + 1 - len(histogram))]
    z = m * _tau(1.0 - histogram[HLL_MAX_RANK] / m)
    for k in range(HLL_MAX_RANK - 1, 0, -1):
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
        """The value at quantile ``q``; NaN for an empty digest."""
        return digest_quantile(self.centroids(), q)


def digest_quantile(centroids: Iterable[Centroid], q: float) -> float:
    """The value at quantile ``q`` (0..1) of a digest's centroids, in any order (the union of
    several digests too: reading the union is at least as accurate as compressing it first),
    interpolating between centroid centres; NaN when they hold no weight.

    The one reading of a digest: the gateway's series, the live stream and alert rules use it.
    """
    ordered = sorted(c for c in centroids if c[1] > 0)
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0][0]
    total = math.fsum(w for _, w in ordered)
    target = min(max(q, 0.0), 1.0) * total
    cumulative = 0.0
    previous_center = -math.inf
    previous_mean = ordered[0][0]
    for mean, weight in ordered:
        center = cumulative + weight / 2
        if target <= center:
            if previous_center == -math.inf:
                return mean
            span = center - previous_center
            return previous_mean + (mean - previous_mean) * (target - previous_center) / span
        previous_center, previous_mean = center, mean
        cumulative += weight
    return ordered[-1][0]
