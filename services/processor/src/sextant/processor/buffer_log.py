"""The events waiting for their units' exposures, persisted as one append-only log a partition.

The streamed statistics keep, per unit not yet exposed, the recent events experiments will
read once it is (:class:`~sextant.processor.experiment_stats.Buffer`). Most such units gain
one event between two flushes, so persisting each unit's additions on their own costs one
item per event. Here a flush writes every event buffered since the last one, of all units,
as one table entry (a *segment*, keyed by a sequence number); the units' buffers are rebuilt
from the segments on load.

Flushes come several times a second, each with few events, so small segments are merged as
they come, like a binary counter: when the newer of the newest two holds at least as many
events as the older, the older is written again holding both (up to ``max_entries``) and the
newer deleted. An event is written again
about log₂(``max_entries`` / events per flush) times, and the segments number at most about
2 × events kept / ``max_entries`` (a merged segment holds at least half of it) plus that
logarithm.

A segment goes once every event in it is older than its project's horizon (the look-back
window plus a margin behind the project's event time). :meth:`BufferLog.rewrite_all` writes
the buffers' current entries as new segments and deletes every older one, so no entry of a
forgotten unit stays behind. New segments are written before the ones they replace are
deleted; loaded between the two, an event is in two segments, and loading keeps one copy per
unit and offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sextant.processor.chunked import encoded_parts

Contributions = tuple[tuple[str, float], ...]
"""What an event adds, as (part key, value) pairs. Pairs, not a dict: the garbage collector
never stops tracking a tuple that holds a dict, and the buffers hold an entry for every event
of the look-back window; a tuple of strings, numbers and such tuples leaves its lists once it
has survived a collection of its generation after its contents did (a few passes)."""
Entry = tuple[float, int, Contributions]
"""A buffered event: its time, offset and contributions."""
Owner = tuple[str, str]
"""A buffer's project and unit."""
Row = tuple[Owner, Entry]
Writes = list[tuple[str, bytes | None]]


def contributions_of(persisted: Any) -> Contributions:
    """Contributions as stored: (key, value) pairs, or (earlier versions) a JSON object."""
    pairs = persisted.items() if isinstance(persisted, dict) else persisted
    return tuple((str(key), float(value)) for key, value in pairs)


@dataclass
class _Segment:
    newest: dict[str, float] = field(default_factory=dict)
    """Per project, its newest event's time."""


class BufferLog:
    """The persisted side of a partition's buffers, under ``{prefix}{sequence}``."""

    def __init__(self, prefix: str, max_entries: int = 2_000, max_bytes: int = 512 * 1024) -> None:
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        """A segment is one changelog record: kept under the broker's record size."""
        self.segments: dict[int, _Segment] = {}
        self.next_sequence = 0
        self._fresh: list[Row] = []
        self._tail: list[tuple[int, list[Row]]] = []
        """The newest segments still to be merged, oldest first, with their rows."""
        self._rewrite = False

    def key(self, sequence: int) -> str:
        return f"{self.prefix}{sequence:012d}"

    def append(self, owner: Owner, entry: Entry) -> None:
        """Persist ``entry`` of ``owner``'s buffer with the next flush."""
        self._fresh.append((owner, entry))

    def rewrite_all(self) -> None:
        """The next flush writes the buffers' entries anew and deletes every older segment."""
        self._rewrite = True

    def load(self, entries: Iterable[tuple[str, bytes]]) -> dict[Owner, list[Entry]]:
        """Every owner's entries, in offset order, from the segments found."""
        found: dict[Owner, dict[int, Entry]] = {}
        for key, data in sorted(entries):
            sequence = int(key[len(self.prefix) :])
            segment = self.segments[sequence] = _Segment()
            for (project, unit), (at, offset, contributions) in orjson.loads(data):
                entry = (float(at), int(offset), contributions_of(contributions))
                found.setdefault((project, unit), {})[entry[1]] = entry
                segment.newest[project] = max(segment.newest.get(project, at), at)
            self.next_sequence = sequence + 1
        return {owner: [e[o] for o in sorted(e)] for owner, e in found.items()}

    def flush(self, buffers: Mapping[Owner, Any]) -> Writes:
        """Writes of the entries appended since the last flush (or, after
        :meth:`rewrite_all`, of every entry of ``buffers``), then deletions of the segments
        they replace."""
        fresh, self._fresh = self._fresh, []
        if self._rewrite:
            self._rewrite = False
            replaced = list(self.segments)
            self._tail = []
            rows = [(owner, e) for owner, b in buffers.items() for e in b.entries]
            return self._append(rows) + self._delete(replaced)
        if not fresh:
            return []
        writes = self._append(fresh)
        while len(self._tail) >= 2 and len(self._tail[-1][1]) >= len(self._tail[-2][1]):
            (first, older), (second, newer) = self._tail[-2:]
            if len(older) + len(newer) > self.max_entries:
                del self._tail[:-1]  # the older ones are as full as they get
                break
            del self._tail[-2:]
            writes += self._merge(first, older + newer, second)
        return writes

    def prune(self, horizons: Mapping[str, float]) -> Writes:
        """Deletions of the segments whose every event is older than its project's horizon
        (a project with no horizon keeps its segments); the older events of the segments
        still to be merged are left out of the merges."""

        def kept(row: Row) -> bool:
            return row[1][0] >= horizons.get(row[0][0], float("-inf"))

        gone = self._delete(
            [
                sequence
                for sequence, segment in self.segments.items()
                if all(t < horizons.get(p, float("-inf")) for p, t in segment.newest.items())
            ]
        )
        self._tail = [(s, [row for row in rows if kept(row)]) for s, rows in self._tail]
        return gone

    def _append(self, rows: list[Row]) -> Writes:
        """``rows`` as new segments; one that is not full joins the tail."""
        if not rows:
            return []
        written = self._write(rows)
        if len(written) == 1 and len(rows) < self.max_entries:
            self._tail.append((self.next_sequence - 1, rows))
        else:  # full, or split for its bytes: merged no more
            self._tail = []
        return written

    def _write(self, rows: list[Row]) -> Writes:
        writes: Writes = []
        for part, data in encoded_parts(rows, self.max_bytes):
            sequence = self.next_sequence
            self.next_sequence += 1
            newest: dict[str, float] = {}
            for (project, _), (at, _, _) in part:
                if at > newest.get(project, float("-inf")):
                    newest[project] = at
            self.segments[sequence] = _Segment(newest)
            writes.append((self.key(sequence), data))
        return writes

    def _merge(self, first: int, rows: list[Row], second: int) -> Writes:
        """Segment ``first`` written again with ``rows`` (its own and ``second``'s), then
        ``second`` deleted: one write and one deletion (the changelog's records)."""
        data = orjson.dumps(rows)
        if len(data) > self.max_bytes:  # too big as one: left as they are, merged no more
            return []
        newest = self.segments[first].newest
        for project, at in self.segments[second].newest.items():
            newest[project] = max(at, newest.get(project, at))
        if len(rows) < self.max_entries:
            self._tail.append((first, rows))
        else:
            self._tail = []
        return [(self.key(first), data), *self._delete([second])]

    def _delete(self, sequences: list[int]) -> Writes:
        gone = set(sequences)
        self._tail = [(s, rows) for s, rows in self._tail if s not in gone]
        for sequence in sequences:
            del self.segments[sequence]
        return [(self.key(sequence), None) for sequence in sequences]
