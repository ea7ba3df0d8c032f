"""The worker's Kafka consumer: fuller fetches than faust's default, one wait per batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from faust.types import TP

from sextant.core.config_plane import ConfigState
from sextant.processor.agents import ProcessorAgents
from sextant.processor.catalog import ConfigCatalog
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.settings import ProcessorSettings
from sextant.processor.transport import BatchDrainingConsumer


def test_the_worker_consumer_uses_the_configured_fetch_sizes() -> None:
    settings = ProcessorSettings(
        kafka_bootstrap="127.0.0.1:1",
        processor_fetch_min_bytes=12_345,
        processor_fetch_max_wait_ms=77,
    )

    async def build() -> tuple[int, int]:
        agents = ProcessorAgents(settings, ConfigCatalog(ConfigState()), ProcessorMetrics(), 3)
        app = agents.app
        assert isinstance(app.consumer, BatchDrainingConsumer)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()  # never started: only releases what it holds

    assert asyncio.run(build()) == (12_345, 77)


class _Message:
    def __init__(self, topic: str, offset: int) -> None:
        self.topic, self.offset = topic, offset


def test_a_seek_during_a_batch_leaves_the_rest_of_its_partition_to_the_fetch_again() -> None:
    """An agent seeking its partition back while a fetched batch is delivered: the batch's
    later records of that partition are not delivered (they are fetched again from the
    seek), so the read offset stays where the seek put it; other partitions go on."""
    settings = ProcessorSettings(kafka_bootstrap="127.0.0.1:1")
    topic = "sextant.events.raw"
    sought, other = TP(topic, 0), TP(topic, 1)

    async def deliver() -> tuple[list[tuple[TP, int]], int | None, int | None]:
        agents = ProcessorAgents(settings, ConfigCatalog(ConfigState()), ProcessorMetrics(), 3)
        consumer = agents.app.consumer
        assert isinstance(consumer, BatchDrainingConsumer)
        delivered: list[tuple[TP, int]] = []

        async def callback(message: _Message) -> None:
            tp = TP(message.topic, 0 if message.offset < 100 else 1)
            delivered.append((tp, message.offset))
            if tp == sought and message.offset == 11:
                consumer._read_offset[sought] = 5  # what seek_wait does

        async def batch() -> AsyncIterator[tuple[TP, _Message]]:
            for offset in (10, 11, 12, 13):
                yield sought, _Message(topic, offset)
                yield other, _Message(topic, 100 + offset)

        consumer.callback = callback  # type: ignore[method-assign]
        await consumer._deliver(batch())
        return delivered, consumer._read_offset[sought], consumer._read_offset[other]

    delivered, sought_offset, other_offset = asyncio.run(deliver())
    assert [o for tp, o in delivered if tp == sought] == [10, 11]
    assert [o for tp, o in delivered if tp == other] == [110, 111, 112, 113]
    assert (sought_offset, other_offset) == (5, 113)


def _agents() -> ProcessorAgents:
    settings = ProcessorSettings(kafka_bootstrap="127.0.0.1:1")
    return ProcessorAgents(settings, ConfigCatalog(ConfigState()), ProcessorMetrics(), 3)


def test_a_partition_crawling_behind_counts_as_stalled() -> None:
    """One record a second, 900 behind: never caught up, so fetched again after 30 s."""
    agents, tp = _agents(), TP("sextant.events.raw", 2)
    crawl = [agents._stalled(tp, (900, 100 + s), 900 - s, float(s)) for s in range(31)]
    assert crawl[:30] == [False] * 30
    assert crawl[30]


def test_a_partition_catching_up_is_not_stalled() -> None:
    agents, tp = _agents(), TP("sextant.events.raw", 2)
    catching_up = [
        agents._stalled(tp, (900, 100 + 30 * s), 900 - 30 * s, float(s)) for s in range(31)
    ]
    assert not any(catching_up)


def test_a_partition_standing_still_counts_as_stalled_after_15_s() -> None:
    agents, tp = _agents(), TP("sextant.events.raw", 2)
    still = [agents._stalled(tp, (900, 100), 50, float(s)) for s in range(16)]
    assert still[:15] == [False] * 15
    assert still[15]


def test_commits_pass_every_single_held_back_offset_at_once() -> None:
    """faust passes over one unacknowledged offset between two acknowledged runs, one run
    per commit; the worker's consumer takes every such run in one commit, and stops at a
    longer hole."""
    settings = ProcessorSettings(kafka_bootstrap="127.0.0.1:1")
    tp = TP("sextant.events.raw", 1)

    async def new_offset() -> tuple[int | None, list[int]]:
        agents = ProcessorAgents(settings, ConfigCatalog(ConfigState()), ProcessorMetrics(), 3)
        consumer = agents.app.consumer
        assert isinstance(consumer, BatchDrainingConsumer)
        consumer._committed_offset[tp] = 5
        consumer._acked[tp] = [5, 6, 7, 9, 10, 12, 15, 16]
        consumer._acked_index[tp] = set(consumer._acked[tp])
        return consumer._new_offset(tp), list(consumer._acked[tp])

    offset, left = asyncio.run(new_offset())
    assert offset == 13  # faust alone: 8, then 11, then 13 in three commits
    assert left == [15, 16]
