"""``sextant gateway`` as a real process, with the embedded warehouse and the sink inside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import make_producer
from sextant.core.settings import KafkaSection
from sextant.schemas.config import KeyKind
from sextant.schemas.events import EventType, IncomingEvent, enrich
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for
from tests.integration.test_gateway_harness import SECRETS, auth, seed_documents

SEXTANT = Path(sys.executable).with_name("sextant")


def test_the_gateway_process_serves_what_its_sink_writes(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    publisher = ConfigPublisher(kafka_settings)
    publisher.put(seed_documents())
    publisher.close()
    port = free_port()
    env = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}?database=e2e",
        "SEXTANT_GATEWAY_PORT": str(port),
    }
    log_path = tmp_path / "gateway.log"
    process = subprocess.Popen(
        [str(SEXTANT), "gateway"], env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> dict[str, object] | None:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                response = httpx.get(f"{url}/readyz")
            except httpx.TransportError:
                return None
            body: dict[str, object] = response.json()
            return body if response.status_code == 200 else None

        checks = wait_for(ready, 90, 0.25, "gateway ready")["checks"]
        assert isinstance(checks, dict)
        assert "sink" in checks  # the sink runs in this process

        now = datetime.now(UTC)
        events = [
            enrich(
                IncomingEvent(type=EventType.TRACK, event="Booted", user_id=f"u{i}"),
                project_id="acme",
                received_at=now,
            )
            for i in range(5)
        ]
        producer = make_producer(kafka_settings)
        for event in events:
            producer.send(
                topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix),
                key=event.kafka_key().encode(),
                value=event.model_dump_json(by_alias=True).encode(),
            )
        producer.flush(10)
        producer.close()

        query = {
            "event": "Booted",
            "measure": "unique_users",
            "from": f"{now:%Y-%m-%d}T00:00:00Z",
            "to": f"{now + timedelta(days=1):%Y-%m-%d}T00:00:00Z",
            "interval": "day",
        }
        read = auth(SECRETS[("acme", KeyKind.READ)])

        def counted() -> int:
            response = httpx.post(f"{url}/v1/insights/trends", json=query, headers=read)
            assert response.status_code == 200, response.text
            total: int = response.json()["series"][0]["total"]
            return total

        assert wait_for(lambda: counted() == 5, 60, 0.5, "events visible through the gateway")
        assert "Sextant" in httpx.get(f"{url}/").text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), log_path.read_text()[-3000:]
    assert "Application shutdown complete" in log_path.read_text()
