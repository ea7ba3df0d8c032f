"""The parts a browser talks to, as processes: the collector, and the gateway (with the sink
inside it, on the embedded warehouse) to read back what arrived; the processor too when a
test needs live windows."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.soak import Part
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import consumer_group_lags, ensure_topics
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, ConfigDocument, KeyKind, Project, hash_key
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SEXTANT = str(Path(sys.executable).with_name("sextant"))
WRITE = "sx_write_browser_000000000000000"
READ = "sx_read_browser_0000000000000000"
CLIENT = "sdk-browser-000000000000000000"
PROJECT = "web"


@dataclass
class Stack:
    collector: str
    gateway: str
    collector_part: Part
    kafka: KafkaSection

    def settled(self) -> bool:
        """Every event on ``events.raw`` is committed by the sink, so in the warehouse."""
        prefix = self.kafka.topic_prefix
        lags = consumer_group_lags(
            self.kafka, f"{prefix}.sink", topic_name(Topic.EVENTS_RAW, prefix)
        )
        return not any(lags.values())

    def count(self, event: str) -> int:
        """How many ``event`` events the warehouse holds (each message id once)."""
        now = datetime.now(UTC)
        return self.count_between(event, now - timedelta(hours=3), now + timedelta(minutes=5))

    def count_between(
        self, event: str, start: datetime, end: datetime, interval: str = "hour"
    ) -> int:
        """How many ``event`` events are dated (their envelope's ``timestamp``) before ``end``,
        from the start of the ``interval`` that holds ``start``."""
        response = httpx.post(
            f"{self.gateway}/v1/insights/trends",
            json={
                "event": event,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "interval": interval,
            },
            headers={"Authorization": f"Bearer {READ}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return sum(series["total"] for series in response.json()["series"])

    def wait_count(self, event: str, expected: int, timeout_s: float = 60) -> None:
        """Poll until the warehouse holds ``expected`` of ``event``; fail if it holds more."""

        def reached() -> bool:
            seen = self.count(event)
            assert seen <= expected, f"{seen} {event!r} events stored, {expected} sent"
            return seen == expected

        wait_for(reached, timeout_s, 0.5, f"{expected} {event!r} events in the warehouse")

    def stop_collector(self) -> None:
        self.collector_part.stop()

    def start_collector(self) -> None:
        self.collector_part.start()
        wait_for(self.collector_part.ready, 60, 0.2, "collector ready again")


def project_documents(*extra: ConfigDocument) -> list[ConfigDocument]:
    return [
        Project(
            id=PROJECT,
            project_id=PROJECT,
            name="Web shop",
            allowed_origins=["http://127.0.0.1:*"],
        ),
        ApiKey(id="w", project_id=PROJECT, key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE)),
        ApiKey(id="r", project_id=PROJECT, key_kind=KeyKind.READ, key_hash=hash_key(READ)),
        ApiKey(
            id="c",
            project_id=PROJECT,
            key_kind=KeyKind.CLIENT,
            key_hash=hash_key(CLIENT),
            environment="production",
        ),
        *extra,
    ]


@contextmanager
def running_stack(
    bootstrap: str,
    folder: Path,
    documents: list[ConfigDocument],
    names: tuple[str, ...] = ("collector", "gateway"),
    settings: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """The parts ``names`` as processes on topics of their own seeded with ``documents``;
    ``settings``: more ``SEXTANT_`` variables for every part."""
    kafka = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}")
    ensure_topics(kafka, partitions=3)
    publisher = ConfigPublisher(kafka)
    publisher.put(documents)
    publisher.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{folder / 'warehouse'}",
    }
    env["SEXTANT_PROCESSOR_DATA_DIR"] = str(folder / "processor")
    env |= settings or {}
    parts = {
        name: Part(
            name,
            [SEXTANT, name],
            env | {f"SEXTANT_{name.upper()}_PORT": str(port)},
            folder / f"{name}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        for name, port in ((name, free_port()) for name in names)
    }
    for part in parts.values():
        part.start()
    try:
        for part in parts.values():
            wait_for(part.ready, 120, 0.25, f"{part.name} ready")
        yield Stack(
            collector=parts["collector"].ready_url.removesuffix("/readyz"),
            gateway=parts["gateway"].ready_url.removesuffix("/readyz"),
            collector_part=parts["collector"],
            kafka=kafka,
        )
    finally:
        for part in parts.values():
            part.stop()
