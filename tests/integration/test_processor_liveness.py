"""A stall is never silent: a partition the processor's consumer stops fetching, with records
waiting, is named by ``/readyz`` within the stall bound, and the processor's own safety net
then fetches it again (readiness comes back, every record counted)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from faust.types import TP

from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics, make_producer
from sextant.core.settings import KafkaSection
from sextant.processor.app import Processor, create_app
from sextant.processor.settings import ProcessorSettings
from sextant.schemas.config import MetricDefinition, Project
from sextant.schemas.events import Envelope, EventType
from sextant.schemas.topics import Topic, topic_name
from tests.infra import wait_for_async, wait_for_awaitable

STALL_S = 3.0


@pytest.fixture
async def processor(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Processor]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    kafka = KafkaSection(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    ensure_topics(kafka, partitions=3)
    publisher = ConfigPublisher(kafka)
    publisher.put(
        [
            Project(id="p", project_id="p", name="P"),
            MetricDefinition(id="orders", project_id="p", metric_kind="count", event="Order"),
        ]
    )
    publisher.close()
    settings = ProcessorSettings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        processor_data_dir=tmp_path,
        processor_session_timeout_seconds=6,
        stall_seconds=STALL_S,
        stall_restart_seconds=0,
    )
    found = create_app(settings)
    found.follower.start()
    found.follower.wait_caught_up(30)
    found.alerts.start()
    await found.faust.app.start()
    try:
        await wait_for_async(
            lambda: found.runner.ready() and found.alerts.ready(), 60, message="processor ready"
        )
        yield found
    finally:
        await found.faust.app.stop()
        found.alerts.stop()
        found.follower.stop()


def _send(kafka_settings: ProcessorSettings, partition: int, count: int) -> None:
    producer = make_producer(kafka_settings)
    now = datetime.now(UTC)
    for i in range(count):
        envelope = Envelope(
            project_id="p",
            type=EventType.TRACK,
            event="Order",
            distinct_id=f"u{i}",
            user_id=f"u{i}",
            timestamp=now,
            received_at=now,
            message_id=str(uuid.uuid4()),
        )
        producer.send(
            topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix),
            key=envelope.kafka_key().encode(),
            value=orjson.dumps(envelope.model_dump(mode="json", by_alias=True)),
            partition=partition,
        )
    producer.flush()
    producer.close()


async def test_a_partition_paused_and_never_resumed_is_named_by_readyz(
    processor: Processor,
) -> None:
    settings = processor.settings
    events = topic_name(Topic.EVENTS_RAW, settings.topic_prefix)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=processor.http), base_url="http://processor"
    )
    try:

        async def readiness() -> dict[str, Any]:
            answer = await client.get("/readyz")
            body: dict[str, Any] = answer.json()
            return body

        # On purpose: faust stops fetching partition 1 and nothing resumes it.
        processor.faust.log.consumer.pause_partitions({TP(events, 1)})
        _send(settings, 1, 25)

        async def stalled() -> list[dict[str, Any]]:
            body = await readiness()
            found: list[dict[str, Any]] = body.get("stalled", [])
            return [s for s in found if s["consumer"] == "stage-one" and s["partition"] == "1"]

        # Within the bound, plus the timer's second and the end offsets' refresh (5 s).
        [stall] = await wait_for_awaitable(stalled, STALL_S + 8, 0.25, "the stall named")
        assert stall["waiting"] == 25
        body = await readiness()
        assert body["status"] == "not ready"
        assert body["checks"]["progress"] is False
        text = (await client.get("/metrics")).text
        assert 'sextant_consumer_stalled{consumer="stage-one",partition="1"} 1.0' in text

        # The processor's safety net fetches it again: the stall clears, every event counted.
        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        try:
            await wait_for_awaitable(ready, 60, 0.25, "ready again")
        except TimeoutError:
            raise AssertionError(await readiness()) from None
        state = processor.runner.stages[0].states()[1]
        assert state.expected_offset == 25
    finally:
        await client.aclose()
