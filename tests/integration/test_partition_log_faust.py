"""The partition log's contract, held against faust's consumer on a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from sextant.core.kafka import ensure_topic, make_producer
from sextant.core.settings import KafkaSection
from sextant.processor.faust_log import FaustLog, faust_log
from sextant.processor.log import LogRecord
from tests.contract.partition_log import PartitionLogContract
from tests.infra import wait_for_async


class FaustHarness:
    partitions = 3

    def __init__(self, bootstrap: str, datadir: Path) -> None:
        self.settings = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix="contract")
        self.topic = f"contract-{uuid.uuid4().hex[:10]}"
        self.group = f"contract-{uuid.uuid4().hex[:10]}"
        self.datadir = datadir
        ensure_topic(self.settings, self.topic, self.partitions)
        self._producer = make_producer(self.settings)
        self.log: FaustLog = self._new_log()
        self._queue: asyncio.Queue[Sequence[LogRecord]] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    def _new_log(self) -> FaustLog:
        log = faust_log(
            self.group,
            self.settings.kafka_bootstrap,
            partitions=self.partitions,
            datadir=self.datadir / uuid.uuid4().hex[:6],
            commit_interval=0.2,
            session_timeout=10.0,
            fetch_max_wait_ms=50,
        )
        log.subscribe(self.topic)
        return log

    async def start(self) -> None:
        await self.log.app.start()
        log = self.log
        await wait_for_async(
            lambda: not log.rebalancing and log.assigned(self.topic) == {0, 1, 2},
            60,
            message="partitions assigned",
        )

        async def pump() -> None:
            async for batch in log.batches(self.topic, 100, 0.05):
                await self._queue.put(batch)

        self._pump = asyncio.create_task(pump())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.log.app.stop()

    async def produce(self, partition: int, values: Sequence[bytes]) -> None:
        def send() -> None:
            for value in values:
                self._producer.send(self.topic, value=value, partition=partition)
            self._producer.flush()

        await asyncio.to_thread(send)

    async def take(self, timeout_s: float) -> Sequence[LogRecord]:
        return await asyncio.wait_for(self._queue.get(), timeout_s)

    async def restart(self) -> None:
        await self.stop()
        self.log = self._new_log()
        self._queue = asyncio.Queue()
        await self.start()

    def close(self) -> None:
        self._producer.close(timeout=5)


@pytest.fixture
async def harness(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[FaustHarness]:
    found = FaustHarness(kafka_bootstrap, tmp_path)
    await found.start()
    try:
        yield found
    finally:
        await found.stop()
        found.close()


class TestFaustPartitionLog(PartitionLogContract):
    """Every contract test, against :class:`FaustLog` (faust's consumer, a real broker)."""
