"""How fast does the sink move events from Kafka into ClickHouse, beside a plain insert?

The same events (realistic envelopes: properties, context, a re-sent message now and then)
are first written to ``events.raw``. Then, in one run and one embedded engine:

- **sink**: :class:`sextant.sink.service.SinkService` with its default batching consumes the
  topic and inserts into ``events`` (fetch, decode, validate, dedupe, insert, commit). The
  sink decodes the next batch while the engine inserts the previous one, so its first batch
  (decoded with no insert beside it) and its last (inserted with nothing left to decode) run
  at half speed. The figure is its steady state: rows committed after its first commit,
  divided by the time from its first commit to its last. The whole run, from the first poll
  (group joined; opening the engine and migrations left out) to the last commit, is
  reported beside it;
- **baseline**: a plain clickhouse-connect insert of the same rows (Python values, the
  envelope's fields, JSON columns as dicts) into a fresh ``events`` table, in batches of the
  same size, with nothing else to do (no Kafka, no decoding);
- and, for reference, the same rows sent as JSON text (what the sink sends, minus Kafka).

Once the events are built, the process settles its heap (``sextant.core.service.settle_heap``)
as the sink's and the gateway's processes do after start-up, so the garbage collector walks
what the work allocates, not the 400,000 sample events; the sink and the baselines alike.

Figures are the best of ``--rounds`` rounds (the machine is shared and noisy). Target: the
sink reaches at least 0.8 of the plain insert.

Run: ``python -m bench.sink_throughput [--bootstrap HOST:PORT] [--events N] [--rounds R]``.
Without ``--bootstrap`` it starts a private broker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Figure, bootstrap_server, write_results
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.migrations import migrate
from sextant.core.service import settle_heap
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse, connect
from sextant.schemas.events import Envelope, EventType
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.service import SinkService
from sextant.sink.settings import SinkSettings
from sextant.sink.tables import TABLES

COMMAND = "python -m bench.sink_throughput"
SINK_ONLY = tuple(topic for topic in TABLES if topic is not Topic.EVENTS_RAW)
"""The other topics the sink reads (it subscribes to them all)."""


def sample_events(count: int) -> list[Envelope]:
    """Envelopes of realistic size; one in fifty is a client re-send of an earlier one."""
    start = datetime(2026, 5, 1, tzinfo=UTC)
    events = []
    for i in range(count):
        n = i - 1 if i % 50 == 49 else i
        at = start + timedelta(seconds=n)
        user = f"user-{n % 5000}"
        events.append(
            Envelope(
                project_id=("shop", "blog", "app")[n % 3],
                type=EventType.TRACK,
                event=("Product Viewed", "Added To Cart", "Order Completed")[n % 3],
                distinct_id=user,
                user_id=user,
                properties={
                    "product_id": f"p-{n % 800}",
                    "price": round(5 + (n % 200) * 0.5, 2),
                    "currency": "EUR",
                    "quantity": 1 + n % 3,
                    "coupon": None if n % 4 else "SPRING",
                },
                context={
                    "library": {"name": "analytics-python", "version": "2.3.4"},
                    "page": {"path": f"/products/{n % 800}", "referrer": "https://example.com"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                    "locale": "en-GB",
                },
                timestamp=at,
                sent_at=at + timedelta(seconds=1),
                received_at=at + timedelta(seconds=1, milliseconds=40 + i % 7),
                message_id=f"{uuid.UUID(int=n)}",
                ip="10.1.2.0",
            )
        )
    return events


def produce(settings: KafkaSection, events: list[Envelope]) -> None:
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    topic = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    for event in events:
        producer.send(
            topic,
            key=event.kafka_key().encode(),
            value=event.model_dump_json(by_alias=True).encode(),
        )
    producer.flush(timeout=300)
    producer.close()


def fresh_warehouse(root: Path) -> Warehouse:
    warehouse = connect(f"chdb://{root}?database=b{uuid.uuid4().hex[:10]}")
    migrate(warehouse)
    return warehouse


def plain_insert(root: Path, events: list[Envelope], batch: int) -> float:
    """Rows per second of ``client.insert`` of the envelopes' fields, ``batch`` rows at a time."""
    columns = list(Envelope.model_fields)
    rows: list[list[Any]] = [[getattr(e, c) for c in columns] for e in events]
    warehouse = fresh_warehouse(root)
    began = time.perf_counter()
    for i in range(0, len(rows), batch):
        warehouse.insert("events", rows[i : i + batch], columns)
    return len(rows) / (time.perf_counter() - began)


def json_insert(root: Path, events: list[Envelope], batch: int) -> float:
    """Rows per second of the same rows as JSON text (JSONEachRow), ``batch`` at a time."""
    columns = list(Envelope.model_fields)
    lines = [e.model_dump_json().encode() for e in events]
    warehouse = fresh_warehouse(root)
    began = time.perf_counter()
    for i in range(0, len(lines), batch):
        warehouse.insert_json("events", b"\n".join(lines[i : i + batch]), columns)
    return len(lines) / (time.perf_counter() - began)


@dataclass(frozen=True)
class SinkRun:
    steady: float
    """Rows/s from the first commit to the last."""
    whole: float
    """Rows/s from the first poll (group joined) to the last commit."""


def sink(root: Path, bootstrap: str, prefix: str, total: int) -> SinkRun:
    """The sink's rates over ``total`` records: steady state and whole run."""
    settings = SinkSettings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        clickhouse_url=f"chdb://{root}?database=b{uuid.uuid4().hex[:10]}",
        sink_group_id=f"bench-{uuid.uuid4().hex[:8]}",  # every round reads the topic anew
    )
    service = SinkService(settings)
    service.start()
    try:
        began: float | None = None
        first_commit: tuple[float, int] | None = None
        deadline = time.monotonic() + 600
        while (committed := service.health.records_committed) < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink stuck at {committed} records")
            if began is None and service.health.consuming:
                began = time.perf_counter()
            if first_commit is None and committed:
                first_commit = (time.perf_counter(), committed)
            time.sleep(0.002)
        ended = time.perf_counter()
    finally:
        service.stop()
    assert began is not None
    assert first_commit is not None, "the whole topic came in one batch"
    at, rows = first_commit
    return SinkRun(steady=(total - rows) / (ended - at), whole=total / (ended - began))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    batch = SinkSettings().sink_batch_rows
    events = sample_events(args.events)
    with (
        bootstrap_server(args.bootstrap) as bootstrap,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
    ):
        kafka = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
        ensure_topics(kafka, [Topic.EVENTS_RAW, Topic.SINK_DEAD_LETTER, *SINK_ONLY], partitions=6)
        produce(kafka, events)
        settle_heap()  # as the sink's and the gateway's processes do once started
        root = Path(tmp) / "warehouse"
        plain = json = 0.0
        best = SinkRun(steady=0.0, whole=0.0)
        for _ in range(args.rounds):
            plain = max(plain, plain_insert(root, events, batch))
            run = sink(root, bootstrap, kafka.topic_prefix, len(events))
            best = max(best, run, key=lambda r: r.steady)
            json = max(json, json_insert(root, events, batch))
            print(f"plain {plain:,.0f}, sink {run}, json {json:,.0f}", flush=True)
    figures = [
        Figure(
            benchmark="sink_throughput",
            figure="sink rows/s (Kafka → events, steady state: first commit to last)",
            value=best.steady,
            unit="rows/s",
            baseline="plain clickhouse-connect insert of the same rows",
            baseline_value=plain,
            target="ratio >= 0.8",
            command=COMMAND,
        ),
        Figure(
            benchmark="sink_throughput",
            figure="sink rows/s, whole run (first poll to last commit, same round)",
            value=best.whole,
            unit="rows/s",
            baseline="plain clickhouse-connect insert of the same rows",
            baseline_value=plain,
            command=COMMAND,
        ),
        Figure(
            benchmark="sink_throughput",
            figure="sink rows/s (steady) vs the same rows inserted as JSON text (no Kafka)",
            value=best.steady,
            unit="rows/s",
            baseline="clickhouse-connect raw JSONEachRow insert of the same rows",
            baseline_value=json,
            command=COMMAND,
        ),
    ]
    path = write_results("sink_throughput", figures)
    for f in figures:
        print(f"{f.figure}: {f.value:,.0f}; {f.baseline}: {f.baseline_value or 0:,.0f}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
