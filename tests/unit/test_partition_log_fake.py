"""The partition log's contract, held against the in-memory fake the unit tests use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from sextant.processor.log import LogRecord
from tests.contract.fake_log import FakeBroker, FakePartitionLog
from tests.contract.partition_log import PartitionLogContract

TOPIC = "t.events.raw"


class FakeHarness:
    topic = TOPIC
    partitions = 3

    def __init__(self) -> None:
        self.broker = FakeBroker({TOPIC: self.partitions})
        self.log = FakePartitionLog(self.broker)
        self._queue: asyncio.Queue[Sequence[LogRecord]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def pump() -> None:
            async for batch in self.log.batches(TOPIC, 100, 0.01):
                await self._queue.put(batch)

        self._pump = asyncio.create_task(pump())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def produce(self, partition: int, values: Sequence[bytes]) -> None:
        for value in values:
            self.broker.append(TOPIC, partition, value)
        self.log.produced()

    async def take(self, timeout_s: float) -> Sequence[LogRecord]:
        return await asyncio.wait_for(self._queue.get(), timeout_s)

    async def restart(self) -> None:
        await self.stop()
        self.log = FakePartitionLog(self.broker)
        self._queue = asyncio.Queue()
        self.start()


@pytest.fixture
async def harness() -> AsyncIterator[FakeHarness]:
    found = FakeHarness()
    found.start()
    try:
        yield found
    finally:
        await found.stop()


class TestFakePartitionLog(PartitionLogContract):
    """Every contract test, against :class:`FakePartitionLog`."""
