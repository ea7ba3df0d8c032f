"""Which Kafka producer should the collector acknowledge through? Three candidates, one run.

Each candidate writes the same records (a realistic event envelope, keyed by user) as a
collector would: 32 concurrent requests of 100 records, each awaiting Kafka's ``acks=all``
acknowledgement of all of its records before the next one starts. Figures: acknowledged
records per second of

- ``BatchingProducer`` (sextant.core.aio_kafka): shared per-partition record batches over
  aiokafka's idempotent producer;
- aiokafka's own per-record ``send()`` (idempotent, acks=all);
- kafka-python's producer (idempotent, acks=all) called from a thread pool, futures bridged
  into the event loop.

Run: ``python -m bench.collector_producer [--bootstrap HOST:PORT] [--records N]``. Without
``--bootstrap`` it starts a private broker.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import Figure, bootstrap_server, write_results
from sextant.core.aio_kafka import BatchingProducer, OutgoingRecord
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.settings import KafkaSection
from sextant.schemas.events import EventType, IncomingEvent, enrich
from sextant.schemas.topics import Topic, topic_name

CONCURRENCY = 32
COMPRESSION = "lz4"
BATCH = 100
SendBatch = Callable[[list[OutgoingRecord]], Awaitable[None]]


def sample_records(topic: str, count: int) -> list[OutgoingRecord]:
    """Envelope JSON of realistic size, 1,000 distinct users."""
    now = datetime.now(UTC)
    records = []
    for i in range(count):
        incoming = IncomingEvent(
            type=EventType.TRACK,
            event="Order Completed",
            user_id=f"user-{i % 1000}",
            properties={"order_id": f"o-{i}", "revenue": 12.5, "currency": "EUR", "items": 3},
            context={"library": {"name": "analytics-python", "version": "2.3.4"}},
            timestamp=now,
            sent_at=now,
        )
        envelope = enrich(incoming, project_id="demo", received_at=now, client_ip="10.1.2.3")
        records.append(
            OutgoingRecord(
                topic,
                envelope.kafka_key().encode(),
                envelope.model_dump_json(by_alias=True).encode(),
            )
        )
    return records


async def drive(send: SendBatch, records: list[OutgoingRecord]) -> float:
    """Acknowledged records per second with ``CONCURRENCY`` requests of ``BATCH`` records."""
    chunks = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    queue: asyncio.Queue[list[OutgoingRecord]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(records) / (time.perf_counter() - started)


async def batching(settings: KafkaSection, records: list[OutgoingRecord]) -> float:
    producer = BatchingProducer(settings, compression=COMPRESSION)
    await producer.start()
    try:
        await producer.send(records[:BATCH], timeout_s=30)  # connect and fetch metadata
        return await drive(lambda chunk: producer.send(chunk, timeout_s=30), records)
    finally:
        await producer.stop()


async def aiokafka_per_record(settings: KafkaSection, records: list[OutgoingRecord]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=COMPRESSION,
        linger_ms=2,
        max_batch_size=256 * 1024,
    )
    await producer.start()

    async def send(chunk: list[OutgoingRecord]) -> None:
        futures = [await producer.send(r.topic, r.value, key=r.key) for r in chunk]
        await asyncio.gather(*futures)

    try:
        await send(records[:BATCH])
        return await drive(send, records)
    finally:
        await producer.stop()


async def kafka_python_threads(settings: KafkaSection, records: list[OutgoingRecord]) -> float:
    producer = make_producer(
        settings, linger_ms=2, batch_size=256 * 1024, compression_type=COMPRESSION
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    loop = asyncio.get_running_loop()

    def submit(chunk: list[OutgoingRecord]) -> list[Any]:
        return [producer.send(r.topic, key=r.key, value=r.value) for r in chunk]

    def settle(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    async def send(chunk: list[OutgoingRecord]) -> None:
        kafka_futures = await loop.run_in_executor(pool, submit, chunk)
        waiters = []
        for kafka_future in kafka_futures:
            waiter: asyncio.Future[None] = loop.create_future()

            def done(_: Any, w: asyncio.Future[None] = waiter) -> None:
                loop.call_soon_threadsafe(settle, w)

            kafka_future.add_both(done)
            waiters.append(waiter)
        await asyncio.gather(*waiters)

    try:
        await send(records[:BATCH])
        return await drive(send, records)
    finally:
        producer.close(timeout=10)
        pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with bootstrap_server(args.bootstrap) as bootstrap:
        settings = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
        ensure_topics(settings, [Topic.EVENTS_RAW])
        records = sample_records(topic_name(Topic.EVENTS_RAW, settings.topic_prefix), args.records)
        size = sum(len(r.value) for r in records) // len(records)
        rates = {
            "BatchingProducer (aiokafka batches)": asyncio.run(batching(settings, records)),
            "aiokafka send() per record": asyncio.run(aiokafka_per_record(settings, records)),
            "kafka-python + thread pool": asyncio.run(kafka_python_threads(settings, records)),
        }
    baseline = rates["aiokafka send() per record"]
    figures = [
        Figure(
            benchmark="collector_producer",
            figure=f"{name}: acknowledged records/s ({size} B records)",
            value=round(rate),
            unit="records/s",
            baseline="aiokafka send() per record",
            baseline_value=round(baseline),
            command="python -m bench.collector_producer",
        )
        for name, rate in rates.items()
    ]
    for figure in figures:
        print(f"{figure.figure}: {figure.value:,.0f} (x{figure.ratio:.2f})")
    print(write_results("collector_producer", figures))


if __name__ == "__main__":
    main()
