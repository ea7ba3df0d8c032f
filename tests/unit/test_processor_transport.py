"""The worker's Kafka consumer: fuller fetches than faust's default, one wait per batch."""

from __future__ import annotations

import asyncio

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
