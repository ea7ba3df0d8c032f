"""``sextant collector`` as a real process: it follows the config, takes events, stops cleanly."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sextant.core.kafka import read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.events import Envelope
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for
from tests.integration.test_collector_kafka import WRITE_KEY, publish_demo_project

SEXTANT = Path(sys.executable).with_name("sextant")


@pytest.mark.parametrize("workers", [1, 2])
def test_sextant_collector_process_accepts_events(
    kafka_settings: KafkaSection, tmp_path: Path, workers: int
) -> None:
    publish_demo_project(kafka_settings)
    port = free_port()
    env = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SEXTANT_COLLECTOR_PORT": str(port),
        "SEXTANT_COLLECTOR_WORKERS": str(workers),
    }
    log = (tmp_path / "collector.log").open("wb")
    process = subprocess.Popen(
        [str(SEXTANT), "collector"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "collector.log").read_text()
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 60, 0.25, "collector ready")
        auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        response = httpx.post(
            f"{url}/v1/batch",
            json={"batch": [{"type": "track", "event": "Booted", "userId": "u1"}]},
            headers={"Authorization": f"Basic {auth}"},
        )
        for _ in range(4):  # new connections, spread over the workers
            assert response.json() == {"accepted": 1, "rejected": []}
            response = httpx.post(
                f"{url}/v1/batch",
                json={"batch": [{"type": "track", "event": "Booted", "userId": "u1"}]},
                headers={"Authorization": f"Basic {auth}"},
            )
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit says why it ended.
    assert exit_code in (0, -signal.SIGTERM)
    assert (tmp_path / "collector.log").read_text().count(
        "Application shutdown complete"
    ) == workers
    records = list(
        read_all(kafka_settings, topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix))
    )
    assert [Envelope.model_validate_json(r.value or b"").event for r in records] == ["Booted"] * 5
