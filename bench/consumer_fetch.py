"""Following a steady load: CPU of a Kafka consumer with fuller fetches against the defaults.

A producer thread feeds ``--rate`` records/s (560 B, 6 partitions) while a consumer follows
the topic for ``--seconds``: kafka-python through ``BatchConsumer`` (the sink's client) with
the sink's fetch settings, and aiokafka (the processor's client) with the processor's, each
beside the client's defaults (``fetch_min_bytes=1``; aiokafka with faust's 1,500 ms wait),
alternating. The figure is the process's CPU over the window (consumer and the feeding
producer together) and the consumer's polls per second.

Run: ``python -m bench.consumer_fetch [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import threading
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from bench.common import Figure, write_results
from bench.common import bootstrap_server as broker
from sextant.core.batch_consumer import BatchConsumer
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.settings import KafkaSection
from sextant.processor.settings import ProcessorSettings
from sextant.sink.settings import SinkSettings

NAME = "consumer_fetch"
COMMAND = "python -m bench.consumer_fetch"
Fetch = tuple[int, int]  # (fetch_min_bytes, fetch_max_wait_ms)


def default_of(settings: type[SinkSettings] | type[ProcessorSettings], field: str) -> int:
    return int(settings.model_fields[field].default)


def feed(settings: KafkaSection, topic: str, rate: float, stop: threading.Event) -> None:
    producer = make_producer(settings)
    sent, started = 0, time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        for i in range(sent, due):
            producer.send(topic, key=str(i % 5000).encode(), value=b"x" * 560)
        sent = due
        time.sleep(0.001)  # pacing the open loop
    producer.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(
    settings: KafkaSection, rate: float, seconds: float, follow: Callable[[str], int]
) -> tuple[float, float]:
    """(process CPU share of a core, polls/s) while ``follow`` reads a topic fed at ``rate``."""
    settings = settings.model_copy(update={"topic_prefix": f"f{uuid.uuid4().hex[:8]}"})
    ensure_topics(settings, partitions=6)
    topic = f"{settings.topic_prefix}.events.raw"
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(settings, topic, rate, stop))
    feeder.start()
    try:
        before = cpu_seconds()
        polls = follow(topic)
        return (cpu_seconds() - before) / seconds, polls / seconds
    finally:
        stop.set()
        feeder.join()


def kafka_python(settings: KafkaSection, seconds: float, fetch: Fetch) -> Callable[[str], int]:
    def follow(topic: str) -> int:
        consumer = BatchConsumer(
            settings,
            f"g{uuid.uuid4().hex[:8]}",
            [topic],
            fetch_min_bytes=fetch[0],
            fetch_max_wait_ms=fetch[1],
        )
        polls, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            consumer.poll(0.25, 50_000)
            polls += 1
        consumer.close()
        return polls

    return follow


def aiokafka(settings: KafkaSection, seconds: float, fetch: Fetch) -> Callable[[str], int]:
    async def run(topic: str) -> int:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"g{uuid.uuid4().hex[:8]}",
            max_poll_records=500,
            fetch_min_bytes=fetch[0],
            fetch_max_wait_ms=fetch[1],
        )
        await consumer.start()
        polls, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=250)
            polls += 1
        await consumer.stop()
        return polls

    return lambda topic: asyncio.run(run(topic))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    sink: Fetch = (
        default_of(SinkSettings, "sink_fetch_min_bytes"),
        default_of(SinkSettings, "sink_fetch_max_wait_ms"),
    )
    processor: Fetch = (
        default_of(ProcessorSettings, "processor_fetch_min_bytes"),
        default_of(ProcessorSettings, "processor_fetch_max_wait_ms"),
    )
    cases = (
        ("kafka-python (sink)", kafka_python, sink, (1, 500)),
        ("aiokafka (processor)", aiokafka, processor, (1, 1500)),
    )
    figures = []
    with broker(args.bootstrap) as bootstrap:
        settings = KafkaSection(kafka_bootstrap=bootstrap)
        for label, client, tuned, default in cases:
            got = {
                name: measured(
                    settings, args.rate, args.seconds, client(settings, args.seconds, fetch)
                )
                for name, fetch in (("default", default), ("tuned", tuned))
            }
            for name, (cpu, polls) in got.items():
                print(f"  {label}, {name}: {cpu:.1%} of a core, {polls:.0f} polls/s")
            figures += [
                Figure(
                    NAME,
                    f"{label} following {args.rate:,.0f} records/s, fetch {tuned[0]} B / "
                    f"{tuned[1]} ms: process CPU (with its feeding producer)",
                    got["tuned"][0] * 100,
                    "% of a core",
                    baseline=f"fetch_min_bytes={default[0]}, fetch_max_wait_ms={default[1]}",
                    baseline_value=got["default"][0] * 100,
                    command=COMMAND,
                ),
                Figure(
                    NAME,
                    f"{label}: polls per second, fetch {tuned[0]} B / {tuned[1]} ms",
                    got["tuned"][1],
                    "polls/s",
                    baseline=f"fetch_min_bytes={default[0]}",
                    baseline_value=got["default"][1],
                    command=COMMAND,
                ),
            ]
    print(write_results(NAME, figures))


if __name__ == "__main__":
    main()
