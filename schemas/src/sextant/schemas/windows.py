"""Window aggregates: one metric, one event-time window, per breakdown value.

A :class:`Group` holds the additive components of one breakdown value; a :class:`Partial` is
what one source partition knows about one window (its groups and the offset of the last event
it applied). Partials travel from the first stage to the second, which merges the partials of
every partition into the window's :class:`~sextant.schemas.records.MetricPoint` values.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from sextant.schemas.config import MetricKind
from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    Centroid,
    TDigest,
    compress,
    hll_merge,
    hll_pack,
    hll_pack_array,
    hll_unpack,
)

WINDOW_SECONDS = 60

NONE_VALUE = "(none)"
"""The breakdown value of an event without the property."""
OTHER_VALUE = "other"
"""Where breakdown values beyond a metric's ``breakdown_limit`` are added up."""
NO_BREAKDOWN = ""
"""The one breakdown value of a metric without a breakdown."""


def window_start(timestamp_s: float) -> int:
    """The start (epoch seconds) of the tumbling minute containing ``timestamp_s``."""
    return int(timestamp_s // WINDOW_SECONDS) * WINDOW_SECONDS


def encode_registers(registers: bytearray | bytes | None) -> str:
    """The registers' sparse form for state and partials: the gaps between successive packed
    ints (small numbers, so they compress well) as little-endian UInt32, zlib, base64."""
    if registers is None:
        return ""
    gaps = np.diff(hll_pack_array(registers), prepend=np.uint32(0)).astype("<u4")
    return base64.b64encode(zlib.compress(gaps.tobytes(), 1)).decode()


def decode_registers(text: str) -> bytearray | None:
    if not text:
        return None
    gaps = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<u4")
    return hll_unpack(np.cumsum(gaps, dtype=np.uint32))


@dataclass(slots=True)
class Group:
    """Additive components of one breakdown value in one window."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    denominator: int = 0
    registers: bytearray | None = None
    digest: TDigest | None = None

    def add_value(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.total_sq += value * value

    def ensure_registers(self) -> bytearray:
        if self.registers is None:
            self.registers = bytearray(HLL_REGISTERS)
        return self.registers

    def ensure_digest(self) -> TDigest:
        if self.digest is None:
            self.digest = TDigest()
        return self.digest

    def merge(self, other: Group) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.denominator += other.denominator
        if other.registers is not None:
            hll_merge(self.ensure_registers(), other.registers)
        if other.digest is not None:
            self.ensure_digest().merge(other.digest.centroids())

    def rank_weight(self, kind: MetricKind) -> int:
        """What top-N ranks breakdown values by: users who did A for conversion, else events."""
        return self.denominator if kind is MetricKind.CONVERSION else self.count

    def centroids(self) -> list[Centroid]:
        return [] if self.digest is None else self.digest.centroids()

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.count,
            "s": self.total,
            "q": self.total_sq,
            "d": self.denominator,
            "r": encode_registers(self.registers),
            "t": self.centroids(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Group:
        centroids = [(float(m), float(w)) for m, w in data.get("t", [])]
        # State from before 2**16 registers kept 2**14 under "h": they cannot be converted, so
        # such a window's sketch starts again (docs/decisions/processor-metric-semantics.md).
        return cls(
            count=int(data["c"]),
            total=float(data["s"]),
            total_sq=float(data["q"]),
            denominator=int(data["d"]),
            registers=decode_registers(data.get("r", "")),
            digest=TDigest(centroids) if centroids else None,
        )


@dataclass
class Partial:
    """One source partition's view of one window, as of ``offset`` on that partition."""

    project_id: str
    metric: str
    kind: MetricKind
    window_start: int
    partition: int
    offset: int
    breakdown_limit: int
    groups: dict[str, Group] = field(default_factory=dict)
    conversion_window: int = 0
    """Seconds the window stays open after its lateness (a conversion's window, else 0)."""
    encoded: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """``groups`` as :meth:`to_bytes` writes them, when already made (see ``encode``)."""

    def encode(self) -> dict[str, Any]:
        """The groups as they travel; made once and kept."""
        if self.encoded is None:
            self.encoded = {name: group.to_json() for name, group in self.groups.items()}
        return self.encoded

    @property
    def window_key(self) -> str:
        return f"{self.project_id}|{self.metric}|{self.window_start}"

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "project_id": self.project_id,
                "metric": self.metric,
                "kind": self.kind.value,
                "ws": self.window_start,
                "p": self.partition,
                "o": self.offset,
                "n": self.breakdown_limit,
                "g": self.encode(),
                "cw": self.conversion_window,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        raw = orjson.loads(data)
        return cls(
            project_id=raw["project_id"],
            metric=raw["metric"],
            kind=MetricKind(raw["kind"]),
            window_start=int(raw["ws"]),
            partition=int(raw["p"]),
            offset=int(raw["o"]),
            breakdown_limit=int(raw["n"]),
            groups={name: Group.from_json(g) for name, g in raw["g"].items()},
            conversion_window=int(raw.get("cw", 0)),
        )


def merged_digest(groups: list[Group]) -> list[Centroid]:
    return compress(c for group in groups for c in group.centroids())


def top_groups(groups: dict[str, Group], kind: MetricKind, limit: int) -> dict[str, Group]:
    """The top ``limit`` breakdown values, the rest merged into ``other``."""
    ranked = sorted(groups.items(), key=lambda item: (-item[1].rank_weight(kind), item[0]))
    if len(ranked) <= limit:
        return dict(ranked)
    kept = dict(ranked[:limit])
    other = Group()
    for _, group in ranked[limit:]:
        other.merge(group)
    if OTHER_VALUE in kept:
        kept[OTHER_VALUE].merge(other)
    else:
        kept[OTHER_VALUE] = other
    return kept


@dataclass(frozen=True)
class WindowId:
    """What names a window's points: project, metric and its kind, start (epoch seconds)."""

    project_id: str
    metric: str
    kind: MetricKind
    window_start: int


def to_point(
    window: WindowId, breakdown: str, group: Group, version: int, emitted_at: datetime
) -> MetricPoint:
    registers: list[int] = []
    if window.kind is MetricKind.UNIQUE_USERS and group.registers is not None:
        registers = hll_pack(group.registers)
    digest = compress(group.centroids()) if window.kind is MetricKind.PERCENTILES else []
    return MetricPoint(
        project_id=window.project_id,
        metric=window.metric,
        window_start=datetime.fromtimestamp(window.window_start, UTC),
        window_seconds=WINDOW_SECONDS,
        breakdown=breakdown,
        count=group.count,
        sum=group.total,
        sum_sq=group.total_sq,
        denominator=group.denominator,
        hll=registers,
        digest=digest,
        version=version,
        emitted_at=emitted_at,
    )
