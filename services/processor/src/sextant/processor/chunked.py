"""Many small entries persisted as a few table entries: one *chunk* per flush.

A state with an entry per unit (an experiment's units, their buffered events) changes
thousands of them a second; one table entry each is one changelog record each, the costliest
thing a flush does. Here a flush writes what changed as one entry (split when large), keyed
by a sequence number, and the newest chunk holding an item has its value.

Old chunks go when nothing in them is current: an item written again leaves its old chunk,
and a chunk with no current item is deleted. An item deleted leaves a tombstone in the new
chunk, needed only while an older chunk may hold a value of it: a chunk of only tombstones
goes once it is the oldest. So that dead entries do not pile up, when the chunks hold more
than twice the current items (plus ``slack``) the oldest chunk's current items are written
again with the next flush, and it goes. :meth:`rewrite_all` moves every current item into the
next flush and deletes every older chunk, so no value of a deleted item stays behind.

Loading applies the chunks in sequence order; a crash after any prefix of a flush's writes
(new chunks first, deletions last) leaves each item at its value of that flush or an earlier
one, which the owner's offsets repair by replay.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def encoded_parts(items: list[T], max_bytes: int) -> list[tuple[list[T], bytes]]:
    """``items`` as JSON, halved until each part is under ``max_bytes`` (one changelog
    record each; a part of one item is what it is)."""
    data = orjson.dumps(items)
    if len(data) > max_bytes and len(items) > 1:
        half = len(items) // 2
        return encoded_parts(items[:half], max_bytes) + encoded_parts(items[half:], max_bytes)
    return [(items, data)]


@dataclass
class _Chunk(Generic[K]):
    items: set[K] = field(default_factory=set)
    """The items whose current value is in this chunk."""
    written: int = 0
    tombstones: int = 0


class ChunkedEntries(Generic[K]):
    """Items keyed by tuples of strings, persisted in chunks under ``{prefix}{sequence}``."""

    def __init__(
        self,
        prefix: str,
        key_of: Callable[[list[Any]], K],
        max_items: int = 2_000,
        max_bytes: int = 512 * 1024,
        slack: int = 10_000,
    ) -> None:
        self.prefix = prefix
        self.key_of = key_of
        self.max_items = max_items
        self.max_bytes = max_bytes
        """A chunk is one changelog record: kept under the broker's record size."""
        self.slack = slack
        self.chunks: dict[int, _Chunk[K]] = {}
        """In sequence order (the order they were made or loaded in)."""
        self.home: dict[K, int] = {}
        self.next_sequence = 0
        self._oldest = 0
        """No chunk is older (a pointer: deleting from a dict's front makes ``next(iter())``
        walk the deleted slots)."""
        self._emptied: set[int] = set()
        self._stored = 0
        self._rewrite = False

    def chunk_key(self, sequence: int) -> str:
        return f"{self.prefix}{sequence:012d}"

    # recovery ---------------------------------------------------------------------------

    def load(self, entries: Iterable[tuple[str, bytes]]) -> dict[K, Any]:
        """The current value of every item, from the chunks found (keys under ``prefix``)."""
        found = sorted((int(key[len(self.prefix) :]), value) for key, value in entries)
        values: dict[K, Any] = {}
        for sequence, data in found:
            chunk = self.chunks[sequence] = _Chunk()
            for raw_key, value in orjson.loads(data):
                key = self.key_of(raw_key)
                chunk.written += 1
                self._leave(key)
                if value is None:
                    values.pop(key, None)
                    chunk.tombstones += 1
                else:
                    values[key] = value
                    self.home[key] = sequence
                    chunk.items.add(key)
            self._stored += chunk.written
            self.next_sequence = sequence + 1
        self._oldest = found[0][0] if found else 0
        self._emptied = {s for s, c in self.chunks.items() if not c.items and not c.tombstones}
        return values

    # flushing ---------------------------------------------------------------------------

    def rewrite_all(self) -> None:
        """The next flush writes every current item anew and deletes every older chunk."""
        self._rewrite = True

    def due(self) -> set[K]:
        """Items the next flush must write again (their current values) so old chunks go."""
        if self._rewrite:
            return set(self.home)
        moved: set[K] = set()
        live, stored = len(self.home), self._stored
        for chunk in self.chunks.values():  # oldest first
            if stored <= 2 * live + self.slack:
                break
            moved |= chunk.items
            stored -= chunk.written
        return moved

    def flush(self, changed: Iterable[tuple[K, Any | None]]) -> list[tuple[str, bytes | None]]:
        """Writes for the changed items (value None: deleted), and the items of
        :meth:`due` among them, then deletions of the chunks left with nothing current."""
        rewrite, self._rewrite = self._rewrite, False
        writes: list[tuple[str, bytes | None]] = []
        batch: list[tuple[K, Any | None]] = []
        for key, value in changed:
            if value is None and (rewrite or self._leave(key) is None):
                continue  # never persisted (or every older chunk goes now): nothing to hide
            if value is not None:
                self._leave(key)
            batch.append((key, value))
            if len(batch) == self.max_items:
                writes.extend(self._write(batch))
                batch = []
        if batch:
            writes.extend(self._write(batch))
        if rewrite:
            newest = self.next_sequence - len(writes)
            writes.extend(self._drop(s) for s in list(self.chunks) if s < newest)
        writes.extend(self._drop(s) for s in self._unneeded())
        return writes

    def _leave(self, key: K) -> int | None:
        """Take ``key`` out of the chunk holding its current value; which chunk that was."""
        sequence = self.home.pop(key, None)
        if sequence is not None:
            chunk = self.chunks[sequence]
            chunk.items.discard(key)
            if not chunk.items and not chunk.tombstones:
                self._emptied.add(sequence)
        return sequence

    def _write(self, batch: list[tuple[K, Any | None]]) -> list[tuple[str, bytes | None]]:
        writes: list[tuple[str, bytes | None]] = []
        for part, data in encoded_parts(batch, self.max_bytes):
            sequence = self.next_sequence
            self.next_sequence += 1
            chunk = self.chunks[sequence] = _Chunk(written=len(part))
            for key, value in part:
                if value is None:
                    chunk.tombstones += 1
                else:
                    chunk.items.add(key)
                    self.home[key] = sequence
            self._stored += len(part)
            writes.append((self.chunk_key(sequence), data))
        return writes

    def _unneeded(self) -> list[int]:
        """Chunks with nothing current: their tombstones hide older values, so those with
        tombstones go only from the oldest end."""
        gone = {s for s in self._emptied if s in self.chunks and not self.chunks[s].items}
        self._emptied.clear()
        sequence = self._oldest
        while sequence < self.next_sequence:
            chunk = self.chunks.get(sequence)
            if chunk is not None and chunk.items:
                break
            if chunk is not None:
                gone.add(sequence)
            sequence += 1
        self._oldest = sequence
        return sorted(gone)

    def _drop(self, sequence: int) -> tuple[str, None]:
        chunk = self.chunks.pop(sequence)
        for key in chunk.items:
            del self.home[key]
        self._stored -= chunk.written
        return self.chunk_key(sequence), None
