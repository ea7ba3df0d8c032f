"""An in-memory :class:`~sextant.processor.log.PartitionLog`: the contract's fake backend.

It keeps every record in lists, commits as soon as a run of acknowledged offsets allows, and
lets a test do what a broker and a consumer group do to a worker: rebalance it, restart it,
deliver a record fetched before a seek (ahead of the offset expected), or stop fetching a
partition. ``tests/contract/partition_log.py`` holds it to the same contract as the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sextant.processor.log import LogRecord, LogUnavailable, PartitionStatus

Key = tuple[str, int]


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class FakeBroker:
    """What outlives a consumer: the records and the group's committed offsets."""

    partitions: dict[str, int]
    records: dict[Key, list[bytes | None]] = field(default_factory=dict)
    committed: dict[Key, int] = field(default_factory=dict)
    log_start: dict[Key, int] = field(default_factory=dict)

    def append(self, topic: str, partition: int, value: bytes | None) -> int:
        stored = self.records.setdefault((topic, partition), [])
        stored.append(value)
        return len(stored) - 1


class FakePartitionLog:
    """One consumer of a :class:`FakeBroker`, assigned every partition unless told otherwise."""

    def __init__(self, broker: FakeBroker, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.clock = clock
        self._generation = 1
        self._rebalancing = False
        self._assigned = {topic: set(range(count)) for topic, count in broker.partitions.items()}
        self._position: dict[Key, int] = {}
        self._acked: dict[Key, set[int]] = {}
        self._ahead: dict[Key, list[int]] = {}
        self._stopped: set[Key] = set()
        self._delivered: dict[Key, tuple[int, float]] = {}
        self._wake = asyncio.Event()
        self.seeks: list[tuple[str, int, int]] = []
        self.held_back: list[tuple[str, int, int]] = []
        self.unavailable = False
        """When set, :meth:`seek` and :meth:`log_start` raise :class:`LogUnavailable`."""

    # what a test does ----------------------------------------------------------------------

    def produced(self) -> None:
        """Records were appended to the broker: wake a waiting batch."""
        self._wake.set()

    def deliver_ahead(self, topic: str, partition: int, offsets: Sequence[int]) -> None:
        """Deliver these (existing) offsets next, ahead of the partition's position, as a
        batch fetched before a seek or a rebalance would be."""
        self._ahead.setdefault((topic, partition), []).extend(offsets)
        self._wake.set()

    def stop_fetching(self, topic: str, partition: int) -> None:
        """Stop delivering the partition's records until a seek (a partition stalled)."""
        self._stopped.add((topic, partition))

    def begin_rebalance(self) -> None:
        self._generation += 1
        self._rebalancing = True

    def end_rebalance(self, assigned: dict[str, set[int]] | None = None) -> None:
        """Partitions assigned (all, unless given), each read again from its committed offset."""
        if assigned is not None:
            self._assigned = {t: set(assigned.get(t, set())) for t in self.broker.partitions}
        self._position.clear()
        self._ahead.clear()
        self._stopped.clear()
        self._delivered.clear()
        self._rebalancing = False
        self._wake.set()

    # PartitionLog ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def rebalancing(self) -> bool:
        return self._rebalancing

    def _start(self, key: Key) -> int:
        committed = self.broker.committed.get(key)
        return committed if committed is not None else self.broker.log_start.get(key, 0)

    def poll(self, topic: str, most: int) -> list[LogRecord]:
        """The next records (what :meth:`batches` yields), without waiting."""
        taken: list[LogRecord] = []
        for partition in sorted(self._assigned.get(topic, set())):
            key = (topic, partition)
            stored = self.broker.records.get(key, [])
            for offset in self._ahead.pop(key, []):
                taken.append(FakeRecord(topic, partition, offset, stored[offset]))
            if key in self._stopped:
                continue
            position = self._position.setdefault(key, self._start(key))
            while position < len(stored) and len(taken) < most:
                taken.append(FakeRecord(topic, partition, position, stored[position]))
                position += 1
            self._position[key] = position
        now = self.clock()
        for record in taken:
            self._delivered[(record.topic, record.partition)] = (record.offset, now)
        return taken

    async def batches(
        self, topic: str, max_records: int, within: float
    ) -> AsyncIterator[Sequence[LogRecord]]:
        while True:
            taken = self.poll(topic, max_records)
            if taken:
                yield taken
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(within, 0.01))

    def acknowledge(self, records: Sequence[LogRecord]) -> None:
        for record in records:
            key = (record.topic, record.partition)
            self._acked.setdefault(key, set()).add(record.offset)
        for key in {(r.topic, r.partition) for r in records}:
            self._commit(key)

    def _commit(self, key: Key) -> None:
        acked = self._acked.get(key, set())
        offset = self._start(key)
        start = offset
        while offset in acked:
            acked.discard(offset)
            offset += 1
        if offset != start:
            self.broker.committed[key] = offset

    def hold_back(self, records: Sequence[LogRecord]) -> None:
        self.held_back.extend((r.topic, r.partition, r.offset) for r in records)

    def assigned(self, topic: str) -> set[int]:
        return set(self._assigned.get(topic, set()))

    def committed(self, topic: str, partition: int) -> int | None:
        return self.broker.committed.get((topic, partition))

    def high_watermark(self, topic: str, partition: int) -> int | None:
        return len(self.broker.records.get((topic, partition), []))

    async def end_offsets(self, topic: str) -> dict[int, int]:
        if self.unavailable:
            raise LogUnavailable(topic)
        return {p: len(self.broker.records.get((topic, p), [])) for p in self.assigned(topic)}

    async def log_start(self, topic: str, partition: int) -> int | None:
        if self.unavailable:
            raise LogUnavailable(f"{topic}[{partition}]")
        return self.broker.log_start.get((topic, partition), 0)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        if self.unavailable:
            raise LogUnavailable(f"{topic}[{partition}]")
        key = (topic, partition)
        self.seeks.append((topic, partition, offset))
        self._position[key] = offset
        self._ahead.pop(key, None)
        self._stopped.discard(key)
        self._wake.set()

    def status(self, topic: str, partition: int) -> PartitionStatus:
        key = (topic, partition)
        assigned = partition in self._assigned.get(topic, set())
        delivered = self._delivered.get(key)
        return PartitionStatus(
            topic=topic,
            partition=partition,
            assigned=assigned,
            fetching=assigned and key not in self._stopped and not self._rebalancing,
            paused=key in self._stopped or (assigned and self._rebalancing),
            buffered=0,
            committed=self.committed(topic, partition),
            high_watermark=self.high_watermark(topic, partition) if assigned else None,
            delivered=delivered[0] if delivered else None,
            delivered_at=delivered[1] if delivered else None,
        )


class FakeOutputs:
    """:class:`~sextant.processor.log.Outputs` that keep what was sent, per topic; records
    of a topic the ``broker`` has are appended to it too (a stage's output read by the next)."""

    def __init__(self, broker: FakeBroker | None = None) -> None:
        self.broker = broker
        self.sent: dict[str, list[tuple[bytes, bytes, int | None]]] = {}
        self.fail_next = 0

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[None]:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the producer failed")
        self.sent.setdefault(topic, []).append((key, value, partition))
        if self.broker is not None and topic in self.broker.partitions:
            self.broker.append(topic, partition or 0, value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        return None


class FakeTable(dict[str, bytes]):
    """:class:`~sextant.processor.log.StateTable` as a dict (its changelog is itself)."""

    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return ((k, v) for k, v in list(self.items()) if k.startswith(prefix))

    def write(self, writes: Sequence[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value

    def forget_partitions(self, partitions: set[int]) -> None:
        """The changelog is the dict itself: nothing local to forget."""
