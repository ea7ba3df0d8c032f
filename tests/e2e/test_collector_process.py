"""``sextant collector`` as a real process: it follows the config, takes events, stops cleanly."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sextant.core.kafka import read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.events import Envelope
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for
from tests.integration.test_collector_kafka import WRITE_KEY, publish_demo_project

SEXTANT = Path(sys.executable).with_name("sextant")
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def accepted_events(exposition: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    return sum(
        sample.value
        for sample in families["sextant_collector_events"].samples
        if sample.name.endswith("_total") and sample.labels["outcome"] == "accepted"
    )


def post_event(url: str) -> None:
    """One event on a new connection (so over the workers, as the kernel spreads them)."""
    response = httpx.post(
        f"{url}/v1/batch",
        json={"batch": [{"type": "track", "event": "Booted", "userId": "u1"}]},
        headers=AUTH,
    )
    assert response.json() == {"accepted": 1, "rejected": []}


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [pid for pid in map(int, children) if b"spawn_main" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


@contextlib.contextmanager
def running_collector(
    kafka_settings: KafkaSection, tmp_path: Path, workers: int, rate_limit: int = 100_000
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sextant collector`` ready on a free port; stopped with SIGTERM, which must end it."""
    publish_demo_project(kafka_settings, rate_limit=rate_limit)
    port = free_port()
    env = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SEXTANT_COLLECTOR_PORT": str(port),
        "SEXTANT_COLLECTOR_WORKERS": str(workers),
    }
    log_path = tmp_path / "collector.log"
    process = subprocess.Popen(
        [str(SEXTANT), "collector"], env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        log = log_path.read_text()
        assert process.poll() is None, log
        # Every worker, not only the first to answer: one still starting when the test
        # stops the collector would never log its shutdown.
        if log.count("Application startup complete") < workers:
            return False
        try:
            return httpx.get(f"{url}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 60, 0.25, "collector ready")
        yield process, url
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit says why it ended.
    assert exit_code in (0, -signal.SIGTERM)


def raw_event_names(kafka_settings: KafkaSection) -> list[str]:
    records = read_all(kafka_settings, topic_name(Topic.EVENTS_RAW, kafka_settings.topic_prefix))
    return [Envelope.model_validate_json(r.value or b"").event for r in records]


@pytest.mark.parametrize("workers", [1, 2])
def test_sextant_collector_process_accepts_events(
    kafka_settings: KafkaSection, tmp_path: Path, workers: int
) -> None:
    with running_collector(kafka_settings, tmp_path, workers) as (_, url):
        for _ in range(5):
            post_event(url)
        # Every scrape (a new connection each, so any worker) reports the whole collector.
        for _ in range(6):
            assert accepted_events(httpx.get(f"{url}/metrics").text) == 5
    assert (tmp_path / "collector.log").read_text().count(
        "Application shutdown complete"
    ) == workers
    assert raw_event_names(kafka_settings) == ["Booted"] * 5


def test_a_crashed_worker_is_replaced_and_its_counts_stay(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    with running_collector(kafka_settings, tmp_path, workers=2) as (process, url):
        for _ in range(4):
            post_event(url)
        before = worker_pids(process.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)

        def replaced() -> bool:
            now = worker_pids(process.pid)
            return len(now) == 2 and before[0] not in now

        wait_for(replaced, 30, 0.1, "a new worker in place of the killed one")
        post_event(url)  # the port answers throughout: the other worker holds it
        for _ in range(6):
            assert accepted_events(httpx.get(f"{url}/metrics").text) == 5
    assert raw_event_names(kafka_settings) == ["Booted"] * 5


def test_workers_enforce_one_rate_per_key_together(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    batch = {"batch": [{"type": "track", "event": "Booted", "userId": "u1"}] * 48}
    with running_collector(kafka_settings, tmp_path, workers=2, rate_limit=100) as (_, url):
        # One keep-alive connection reaches one worker, and still gets the key's whole rate.
        with httpx.Client(base_url=url, headers=AUTH) as one_connection:
            for _ in range(2):
                response = one_connection.post("/v1/batch", json=batch)
                assert response.json() == {"accepted": 48, "rejected": []}
        # What is left of the second is refused whichever worker a new connection reaches.
        for _ in range(3):
            refused = httpx.post(f"{url}/v1/batch", json=batch, headers=AUTH)
            assert refused.status_code == 429, refused.text
