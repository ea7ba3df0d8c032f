"""The second stage: merge every partition's partial of a window into its metric points.

Partials of one window arrive on one partition of the internal ``partials`` topic (keyed by
project, metric and window). For each source partition the partial with the highest offset
wins, so a partial sent twice changes nothing. The window's points carry ``version`` = the sum
over source partitions of (offset + 1): it grows with every change, and a replay after a crash
produces the same points with the same version, so the warehouse's "newest version wins" makes
emission idempotent.

Breakdowns: the ``breakdown_limit`` values with the most events (users who did A for a
conversion; ties by value) keep their own point, the rest fold into ``other``. A value that
had its own point and drops out of the top is re-emitted with zero components so that sums
over a window's points stay exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from sextant.processor.sequence import Outcome, admit
from sextant.schemas.records import MetricPoint
from sextant.schemas.windows import WINDOW_SECONDS, Group, Partial, WindowId, to_point, top_groups


def merge_partials(partials: list[Partial]) -> dict[str, Group]:
    """Breakdown value → the sum of every partition's group (sketches merged)."""
    merged: dict[str, Group] = {}
    for partial in sorted(partials, key=lambda p: p.partition):
        for name, group in partial.groups.items():
            merged.setdefault(name, Group()).merge(group)
    return merged


def _content_digest(group: Group) -> str:
    """A digest of what a point would carry, to skip re-sending unchanged values."""
    scalars = (group.count, group.total, group.total_sq, group.denominator, group.centroids())
    content = hashlib.sha256(orjson.dumps(scalars))
    content.update(group.registers or b"")
    return content.hexdigest()


@dataclass
class WindowMerge:
    """Stage-two state of one window: the latest partial per source partition."""

    partials: dict[int, Partial] = field(default_factory=dict)
    emitted: set[str] = field(default_factory=set)
    fingerprints: dict[str, str] = field(default_factory=dict)
    last_seen: float = 0.0

    def accept(self, partial: Partial) -> bool:
        """Keep ``partial`` if it is newer than what its partition sent before."""
        current = self.partials.get(partial.partition)
        if current is not None and current.offset >= partial.offset:
            return False
        self.partials[partial.partition] = partial
        return True

    @property
    def open_beyond_lateness(self) -> int:
        return max((p.conversion_window for p in self.partials.values()), default=0)

    @property
    def version(self) -> int:
        return sum(p.offset + 1 for p in self.partials.values())

    def points(self, emitted_at: datetime) -> tuple[list[MetricPoint], bool]:
        """The points that changed since the last call, and whether ``emitted`` grew."""
        if not self.partials:
            return [], False
        sample = next(iter(self.partials.values()))
        groups = top_groups(
            merge_partials(list(self.partials.values())), sample.kind, sample.breakdown_limit
        )
        for gone in self.emitted - groups.keys():
            groups[gone] = Group()
        grew = not groups.keys() <= self.emitted
        self.emitted |= groups.keys()
        version = self.version
        window = WindowId(sample.project_id, sample.metric, sample.kind, sample.window_start)
        changed = []
        for name in sorted(groups):
            digest = _content_digest(groups[name])
            if self.fingerprints.get(name) != digest:
                self.fingerprints[name] = digest
                changed.append(to_point(window, name, groups[name], version, emitted_at))
        return changed, grew

    def emitted_bytes(self) -> bytes:
        return orjson.dumps(sorted(self.emitted))


def window_of(partial: Partial) -> tuple[str, str, int]:
    return partial.project_id, partial.metric, partial.window_start


@dataclass
class MergeState:
    """Stage two for one partition of the ``partials`` topic."""

    partition: int
    windows: dict[tuple[str, str, int], WindowMerge] = field(default_factory=dict)
    dirty: set[tuple[str, str, int]] = field(default_factory=set)
    horizon: dict[str, int] = field(default_factory=dict)
    last_offset: int = -1
    """The ``partials`` offset applied up to (see :mod:`sextant.processor.sequence`)."""
    _persisted_offset: int = -1

    @property
    def checkpoint_key(self) -> str:
        return f"{self.partition}|c"

    @property
    def expected_offset(self) -> int:
        return self.last_offset + 1

    def admit(self, offset: int) -> Outcome:
        """Whether the partial at ``offset`` of this ``partials`` partition is the next one."""
        outcome = admit(self.last_offset, offset)
        if outcome is Outcome.APPLIED:
            self.last_offset = offset
        return outcome

    def skip_to(self, offset: int) -> None:
        """Go on from ``offset``: the offsets before it no longer exist (log retention)."""
        self.last_offset = max(self.last_offset, offset - 1)

    def partial_key(self, partial: Partial) -> str:
        return f"{self.partition}|m|{partial.window_key}|{partial.partition}"

    def emitted_key(self, window: tuple[str, str, int]) -> str:
        return f"{self.partition}|e|{window[0]}|{window[1]}|{window[2]}"

    def load(self, items: Iterator[tuple[str, bytes]]) -> None:
        for key, value in items:
            kind = key.split("|", 2)[1]
            if kind == "m":
                partial = Partial.from_bytes(value)
                self.windows.setdefault(window_of(partial), WindowMerge()).accept(partial)
            elif kind == "e":
                _, _, project, metric, start = key.split("|", 4)
                window = self.windows.setdefault((project, metric, int(start)), WindowMerge())
                window.emitted |= set(orjson.loads(value))
            elif kind == "c":
                self.last_offset = self._persisted_offset = int(orjson.loads(value))
        self.dirty.update(self.windows)

    def accept(self, partial: Partial, now: float) -> str | None:
        """Take a partial; returns the table key to persist it under, or None if stale."""
        window = self.windows.setdefault(window_of(partial), WindowMerge())
        window.last_seen = now
        newest = self.horizon.get(partial.project_id, partial.window_start)
        self.horizon[partial.project_id] = max(newest, partial.window_start)
        if not window.accept(partial):
            return None
        self.dirty.add(window_of(partial))
        return self.partial_key(partial)

    def flush(
        self, emitted_at: datetime
    ) -> tuple[list[MetricPoint], list[tuple[str, bytes | None]]]:
        """Points to send, then table writes (the emitted-value sets that grew)."""
        points: list[MetricPoint] = []
        writes: list[tuple[str, bytes | None]] = []
        for key in sorted(self.dirty):
            window = self.windows.get(key)
            if window is None:
                continue
            changed, grew = window.points(emitted_at)
            points.extend(changed)
            if grew:
                writes.append((self.emitted_key(key), window.emitted_bytes()))
        self.dirty.clear()
        if self.last_offset > self._persisted_offset:
            # Last, after the partials it covers (one changelog partition keeps the order).
            self._persisted_offset = self.last_offset
            writes.append((self.checkpoint_key, orjson.dumps(self.last_offset)))
        return points, writes

    def evict(self, lateness: dict[str, int], now: float, idle_s: float) -> list[str]:
        """Forget windows far behind the newest window of their project; returns keys to delete.

        A window is kept while it is within the project's lateness (plus a minute, plus a
        conversion's window) of the newest window seen, or while partials for it arrived
        within ``idle_s``.
        """
        deleted: list[str] = []
        for key, window in list(self.windows.items()):
            project, _, start = key
            newest = self.horizon.get(project, start)
            margin = lateness.get(project, 300) + 2 * WINDOW_SECONDS + window.open_beyond_lateness
            if start + margin < newest and now - window.last_seen > idle_s:
                del self.windows[key]
                self.dirty.discard(key)
                deleted.append(self.emitted_key(key))
                deleted.extend(
                    f"{self.partition}|m|{project}|{key[1]}|{start}|{p}" for p in window.partials
                )
        return deleted
