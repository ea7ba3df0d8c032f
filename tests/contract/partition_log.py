"""The partition log's contract (``sextant.processor.log``), one suite for every backend.

A backend's test module subclasses :class:`PartitionLogContract` and provides a ``harness``
fixture (:class:`LogHarness`): ``tests/unit/test_partition_log_fake.py`` over the in-memory
fake, ``tests/integration/test_partition_log_faust.py`` over faust on a real broker, as
arroyo's ``tests/backends/mixins.py`` runs against its local and Kafka backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from sextant.processor.log import LogRecord, PartitionLog
from tests.infra import wait_for_async

TIMEOUT_S = 30.0


class LogHarness(Protocol):
    """A backend under test, its topic and a way to feed and restart it."""

    topic: str
    partitions: int

    @property
    def log(self) -> PartitionLog: ...

    async def produce(self, partition: int, values: Sequence[bytes]) -> None:
        """Append ``values`` to ``partition``, in order, and wait until they are stored."""
        ...

    async def take(self, timeout_s: float) -> Sequence[LogRecord]:
        """The log's next batch of the topic; ``TimeoutError`` if none comes in time."""
        ...

    async def restart(self) -> None:
        """A new consumer in the same group in place of this one (records not committed
        come again)."""
        ...


Offsets = dict[int, list[int]]


async def collect(
    harness: LogHarness, enough: Callable[[Offsets], bool], timeout_s: float = TIMEOUT_S
) -> tuple[list[LogRecord], Offsets]:
    """Batches until ``enough`` holds for the offsets delivered per partition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    records: list[LogRecord] = []
    offsets: Offsets = {}
    while not enough(offsets):
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"only these offsets arrived: {offsets}")
        batch = await harness.take(remaining)
        records.extend(batch)
        for record in batch:
            offsets.setdefault(record.partition, []).append(record.offset)
    return records, offsets


def reached(partition: int, offset: int) -> Callable[[Offsets], bool]:
    return lambda offsets: offset in offsets.get(partition, [])


def values(count: int, tag: str = "") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(count)]


class PartitionLogContract:
    """What any :class:`~sextant.processor.log.PartitionLog` must do."""

    async def test_each_partitions_records_arrive_in_offset_order_from_the_start(
        self, harness: LogHarness
    ) -> None:
        await harness.produce(0, values(40, "a"))
        await harness.produce(1, values(25, "b"))
        records, offsets = await collect(
            harness, lambda o: 39 in o.get(0, []) and 24 in o.get(1, [])
        )
        assert offsets[0] == list(range(40))
        assert offsets[1] == list(range(25))
        by_offset = {(r.partition, r.offset): r.value for r in records}
        assert by_offset[(0, 7)] == b"a7"
        assert by_offset[(1, 24)] == b"b24"
        assert all(r.topic == harness.topic for r in records)

    async def test_acknowledged_records_are_committed(self, harness: LogHarness) -> None:
        await harness.produce(0, values(10))
        records, _ = await collect(harness, reached(0, 9))
        harness.log.acknowledge(records)
        await wait_for_async(
            lambda: harness.log.committed(harness.topic, 0) == 10, TIMEOUT_S, message="commit"
        )

    async def test_a_held_back_record_is_never_committed_past(self, harness: LogHarness) -> None:
        """Even one held-back offset between acknowledged ones stops the commit there, until
        it comes again after a seek and is acknowledged."""
        log, topic = harness.log, harness.topic
        await harness.produce(0, values(10))
        records, _ = await collect(harness, reached(0, 9))
        log.acknowledge([r for r in records if r.offset < 5])
        await wait_for_async(lambda: log.committed(topic, 0) == 5, TIMEOUT_S, message="commit")
        log.hold_back([r for r in records if r.offset == 5])
        log.acknowledge([r for r in records if r.offset > 5])
        # A commit of another partition, acknowledged after these, shows that the log had
        # its chance to commit partition 0 too.
        await harness.produce(1, values(3))
        others, _ = await collect(harness, reached(1, 2))
        log.acknowledge(others)
        await wait_for_async(lambda: log.committed(topic, 1) == 3, TIMEOUT_S, message="commit")
        assert log.committed(topic, 0) == 5
        await log.seek(topic, 0, 5)
        again, offsets = await collect(harness, reached(0, 9))
        assert offsets[0][-5:] == [5, 6, 7, 8, 9]
        log.acknowledge(again)
        await wait_for_async(lambda: log.committed(topic, 0) == 10, TIMEOUT_S, message="commit")

    async def test_a_first_record_held_back_is_never_committed_past(
        self, harness: LogHarness
    ) -> None:
        """The group never committed this partition: a commit still starts at its first
        record, not at the first acknowledged one."""
        log, topic = harness.log, harness.topic
        await harness.produce(2, values(5))
        records, _ = await collect(harness, reached(2, 4))
        log.hold_back([r for r in records if r.offset == 0])
        log.acknowledge([r for r in records if r.offset > 0])
        await harness.produce(1, values(3))
        others, _ = await collect(harness, reached(1, 2))
        log.acknowledge(others)
        await wait_for_async(lambda: log.committed(topic, 1) == 3, TIMEOUT_S, message="commit")
        assert log.committed(topic, 2) is None

    async def test_a_seek_back_delivers_every_record_again_in_order(
        self, harness: LogHarness
    ) -> None:
        log, topic = harness.log, harness.topic
        await harness.produce(1, values(12))
        records, _ = await collect(harness, reached(1, 11))
        log.acknowledge(records)
        await log.seek(topic, 1, 4)
        again, offsets = await collect(harness, lambda o: o.get(1, [])[-1:] == [11])
        run = offsets[1][offsets[1].index(4) :]
        assert run == list(range(4, 12))
        assert [r.value for r in again if r.offset >= 4][-8:] == values(12)[4:]

    async def test_a_restart_delivers_from_the_committed_offset(self, harness: LogHarness) -> None:
        log, topic = harness.log, harness.topic
        await harness.produce(0, values(10))
        records, _ = await collect(harness, reached(0, 9))
        log.acknowledge([r for r in records if r.offset < 6])
        log.hold_back([r for r in records if r.offset >= 6])
        await wait_for_async(lambda: log.committed(topic, 0) == 6, TIMEOUT_S, message="commit")
        await harness.restart()
        _, offsets = await collect(harness, reached(0, 9))
        assert offsets[0] == [6, 7, 8, 9]

    async def test_watermarks_assignment_and_status(self, harness: LogHarness) -> None:
        log, topic = harness.log, harness.topic
        await harness.produce(2, values(7))
        records, _ = await collect(harness, reached(2, 6))
        log.acknowledge(records)
        assert log.assigned(topic) == set(range(harness.partitions))
        assert not log.rebalancing
        assert await log.log_start(topic, 2) == 0
        assert (await log.end_offsets(topic))[2] == 7
        await wait_for_async(lambda: log.high_watermark(topic, 2) == 7, TIMEOUT_S)
        await wait_for_async(lambda: log.committed(topic, 2) == 7, TIMEOUT_S, message="commit")
        status = log.status(topic, 2)
        assert status.assigned
        assert status.fetching
        assert not status.paused
        assert status.committed == 7
        assert status.high_watermark == 7
        assert status.delivered == 6
        assert status.delivered_at is not None
