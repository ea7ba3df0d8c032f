"""Gap and stall tracking: which partitions a stage must fetch again, and when.

A *gap* is a partition whose state expects an offset the log has not delivered: a record
arrived ahead of it (refused), a failed batch left the state behind what was delivered, or
the partition stopped moving while records wait. The runner seeks such a partition back
(:mod:`sextant.processor.runner`); this module only decides, from what it is told and an
injected clock, so its tests run in microseconds.

A partition's progress is its *marker*: (the offset its state expects next, the group's
committed offset). A gap is filled once the marker moves after a seek; until then the seek
is repeated every ``refetch_every`` seconds (records already on their way can overtake a
seek, and once the load stops nothing else would bring them again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Key = tuple[str, int]
"""(topic, partition)."""
Marker = tuple[int, int | None]
"""A partition's progress: (the offset its state expects next, the committed offset)."""
Clock = Callable[[], float]


class Sequenced(Protocol):
    """A stage's state of one partition, which applies offsets in sequence."""

    @property
    def expected_offset(self) -> int: ...

    def skip_to(self, offset: int) -> None: ...


@dataclass(frozen=True)
class StallPolicy:
    """When a partition that is behind counts as stalled.

    ``still``: no progress at all for this long. ``slow``: more than ``slow_min_backlog``
    records behind, and not even half of the backlog caught up within ``slow`` seconds (a
    partition seen crawling one record a second, hundreds behind, once the load had stopped).
    """

    refetch_every: float = 1.0
    still: float = 15.0
    slow: float = 30.0
    slow_min_backlog: int = 200


class GapTracker:
    """Per stage partition: open gaps, the last seek, and the progress of partitions behind."""

    def __init__(self, policy: StallPolicy | None = None, clock: Clock = time.monotonic) -> None:
        self.policy = policy or StallPolicy()
        self.clock = clock
        self._gaps: dict[Key, Sequenced] = {}
        self._sought: dict[Key, tuple[Marker, float]] = {}
        self._progress: dict[Key, tuple[Marker, float]] = {}
        self._behind: dict[Key, tuple[int, float]] = {}
        """Per partition behind: its backlog when the current window began, and when."""

    def mark(self, key: Key, state: Sequenced, marker: Marker) -> None:
        """Fetch ``key`` again until its marker moves on from ``marker``."""
        self._gaps[key] = state
        sought = self._sought.get(key)
        if sought is not None and sought[0] != marker:
            del self._sought[key]  # an earlier gap, filled since: this one is new

    def has_gap(self, key: Key) -> bool:
        return key in self._gaps

    def gaps(self, topic: str) -> list[tuple[Key, Sequenced]]:
        return [(key, state) for key, state in self._gaps.items() if key[0] == topic]

    def due(self, key: Key, marker: Marker) -> bool:
        """Whether the gap at ``key`` needs a seek now; a gap whose marker moved since its
        last seek is filled (records flow in order from the seek) and forgotten."""
        sought = self._sought.get(key)
        if sought is not None and sought[0] != marker:
            del self._gaps[key], self._sought[key]
            return False
        return sought is None or self.clock() - sought[1] >= self.policy.refetch_every

    def sought(self, key: Key, marker: Marker) -> None:
        """A seek of ``key`` was made (or tried) at ``marker``."""
        self._sought[key] = (marker, self.clock())

    def caught_up(self, key: Key) -> None:
        """``key`` has nothing waiting: forget its progress."""
        self._progress.pop(key, None)
        self._behind.pop(key, None)

    def stalled(self, key: Key, marker: Marker, backlog: int) -> bool:
        """Whether ``key``, ``backlog`` records behind at ``marker``, has stood still for
        ``policy.still`` or crawls too slowly to catch up (see :class:`StallPolicy`)."""
        now, policy = self.clock(), self.policy
        progress = self._progress.get(key)
        if progress is None or progress[0] != marker:
            self._progress[key] = progress = (marker, now)
        behind = self._behind.setdefault(key, (backlog, now))
        still = now - progress[1] >= policy.still
        slow = (
            now - behind[1] >= policy.slow
            and backlog > policy.slow_min_backlog
            and backlog > behind[0] / 2
        )
        if still or slow:
            self._progress[key] = (marker, now)
            self._behind[key] = (backlog, now)
        elif now - behind[1] >= policy.slow:
            self._behind[key] = (backlog, now)  # caught up enough: a new window
        return still or slow

    def forget(self, topic: str) -> None:
        """After a recovery the log seeks to the committed offsets: held records come again."""
        for table in (self._gaps, self._sought, self._progress, self._behind):
            for key in [k for k in table if k[0] == topic]:
                del table[key]
