"""BatchingProducer, the collector's way into Kafka, against a real broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sextant.core.aio_kafka import BatchingProducer, OutgoingRecord, ProducerUnavailable
from sextant.core.kafka import read_all
from sextant.core.settings import KafkaSection
from sextant.core.turns import Turns
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port


@pytest.mark.parametrize(
    ("batch_bytes", "with_turns"),
    [(256 * 1024, False), (256 * 1024, True), (600, True)],
    ids=["batches", "batches-taking-turns", "small-batches-queued-per-partition"],
)
async def test_records_are_acknowledged_partitioned_by_key_and_in_order(
    kafka_settings: KafkaSection, batch_bytes: int, with_turns: bool
) -> None:
    topic = topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix)
    turns = Turns() if with_turns else None
    producer = BatchingProducer(kafka_settings, batch_bytes=batch_bytes, turns=turns)
    await producer.start()
    try:

        async def sender(n: int) -> None:
            for round_ in range(10):
                records = [
                    OutgoingRecord(topic, f"p:user-{n}".encode(), f"{n}:{round_}:{i}".encode())
                    for i in range(10)
                ]
                if turns is not None:
                    await turns.take()  # as a request handler does before its CPU work
                await producer.send(records, timeout_s=10)

        await asyncio.gather(*(sender(n) for n in range(8)))
        assert producer.buffered_bytes == 0
    finally:
        await producer.stop()
    records = list(read_all(kafka_settings, topic))
    assert len(records) == 800
    used = set()
    for n in range(8):
        key = f"p:user-{n}".encode()
        mine = [r for r in records if r.key == key]
        assert len({r.partition for r in mine}) == 1
        used.add(mine[0].partition)
        assert [r.value for r in mine] == [
            f"{n}:{round_}:{i}".encode() for round_ in range(10) for i in range(10)
        ]
    assert len(used) > 1


async def test_kafka_unreachable_fails_within_the_timeout() -> None:
    settings = KafkaSection(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="none")
    producer = BatchingProducer(settings)
    await producer.start(timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ProducerUnavailable):
        await producer.send([OutgoingRecord("none.events.raw", b"k", b"v")], timeout_s=1.0)
    assert time.monotonic() - started < 3.0
    await producer.stop()


async def test_a_full_buffer_refuses_at_once(kafka_settings: KafkaSection) -> None:
    topic = topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix)
    producer = BatchingProducer(kafka_settings, buffer_bytes=1000)
    await producer.start()
    try:
        await producer.send([OutgoingRecord(topic, b"k", b"v" * 100)], timeout_s=10)
        with pytest.raises(ProducerUnavailable, match="buffer is full"):
            await producer.send([OutgoingRecord(topic, b"k", b"v" * 2000)], timeout_s=10)
    finally:
        await producer.stop()


async def test_an_unexpected_failure_fails_its_batch_and_the_partition_goes_on(
    kafka_settings: KafkaSection, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix)
    producer = BatchingProducer(kafka_settings)
    await producer.start()
    hand_over = producer._send_batch
    failures = [ValueError("a bug between the producer and aiokafka")]

    async def failing_once(tp: tuple[str, int], batch: Any) -> asyncio.Future[Any]:
        if failures:
            raise failures.pop()
        return await hand_over(tp, batch)

    monkeypatch.setattr(producer, "_send_batch", failing_once)
    try:
        with pytest.raises(ProducerUnavailable, match="a bug"):
            await producer.send([OutgoingRecord(topic, b"k", b"first")], timeout_s=10)
        await producer.send([OutgoingRecord(topic, b"k", b"second")], timeout_s=10)
        assert producer.buffered_bytes == 0
    finally:
        await producer.stop()
    assert [r.value for r in read_all(kafka_settings, topic)] == [b"second"]
