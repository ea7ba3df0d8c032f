"""The collector against a real Kafka broker: what a 200 promises is in the topics."""

from __future__ import annotations

import base64
import contextlib
import gzip
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from sextant.collector.app import create_app
from sextant.collector.settings import CollectorSettings
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import Record, read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key
from sextant.schemas.events import Envelope, InvalidEvent
from sextant.schemas.topics import Topic, topic_name
from tests.infra import free_port, wait_for

WRITE_KEY = "wk_integration_secret"


def publish_demo_project(settings: KafkaSection, rate_limit: int = 100_000) -> None:
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(
            [
                Project(
                    id="demo", project_id="demo", name="Demo", rate_limit_per_second=rate_limit
                ),
                ApiKey(
                    id="wk1",
                    project_id="demo",
                    key_kind=KeyKind.WRITE,
                    key_hash=hash_key(WRITE_KEY),
                ),
            ]
        )
    finally:
        publisher.close()


class RunningCollector:
    """The collector app served by uvicorn in a thread of this process, on a free port."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.collector_port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.collector_port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="collector", daemon=True)

    def start(self) -> RunningCollector:
        self._thread.start()
        wait_for(lambda: self.server.started, 60, message="collector started")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


@contextlib.contextmanager
def running_collector(kafka: KafkaSection, **overrides: Any) -> Iterator[RunningCollector]:
    settings = CollectorSettings(
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic_prefix=kafka.topic_prefix,
        collector_port=free_port(),
        **overrides,
    )
    collector = RunningCollector(settings).start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def collector(kafka_settings: KafkaSection) -> Iterator[RunningCollector]:
    publish_demo_project(kafka_settings)
    with running_collector(kafka_settings) as running:
        yield running


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def topic_records(settings: KafkaSection, topic: Topic) -> list[Record]:
    return list(read_all(settings, topic_name(topic, settings.topic_prefix)))


def test_accepted_events_are_in_events_raw_keyed_by_user(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    batch = [
        {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": f"m{i}"}
        for i in range(5)
    ] + [{"type": "identify", "anonymousId": "anon-7", "traits": {"plan": "pro"}}]
    response = httpx.post(
        f"{collector.url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
    )
    assert response.json() == {"accepted": 6, "rejected": []}
    # The answer came after Kafka's acknowledgement: the records are readable right away.
    records = topic_records(kafka_settings, Topic.EVENTS_RAW)
    envelopes = sorted(
        (Envelope.model_validate_json(r.value or b"") for r in records), key=lambda e: e.message_id
    )
    assert len(envelopes) == 6
    assert {r.key for r in records} == {b"demo:u1", b"demo:anon-7"}
    assert [e.message_id for e in envelopes if e.distinct_id == "u1"] == [f"m{i}" for i in range(5)]
    # Records of one user share a partition, in the order sent.
    user_records = [r for r in records if r.key == b"demo:u1"]
    assert len({r.partition for r in user_records}) == 1
    raw_json = orjson.loads(user_records[0].value or b"")
    assert (raw_json["userId"], raw_json["messageId"]) == ("u1", "m0")


def test_rejected_events_are_dead_lettered_with_payload_errors_and_time(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    bad = {"type": "track", "userId": "u1", "messageId": "bad-1"}
    response = httpx.post(
        f"{collector.url}/v1/batch",
        json={"batch": [{"type": "page", "userId": "u1"}, bad]},
        headers=basic(WRITE_KEY),
    )
    assert response.json()["accepted"] == 1
    [record] = topic_records(kafka_settings, Topic.EVENTS_INVALID)
    assert record.key == b"demo"
    dead = InvalidEvent.model_validate_json(record.value or b"")
    assert orjson.loads(dead.payload) == bad
    assert dead.errors[0].field == "event"
    assert dead.message_id == "bad-1"
    assert dead.received_at is not None


def test_a_revoked_key_stops_working_within_seconds(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    event = {"event": "Clicked", "userId": "u1"}
    assert (
        httpx.post(f"{collector.url}/v1/track", json=event, headers=basic(WRITE_KEY)).status_code
        == 200
    )
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put(
            [
                ApiKey(
                    id="wk1",
                    project_id="demo",
                    key_kind=KeyKind.WRITE,
                    key_hash=hash_key(WRITE_KEY),
                    revoked=True,
                )
            ]
        )
    finally:
        publisher.close()
    wait_for(
        lambda: (
            httpx.post(
                f"{collector.url}/v1/track", json=event, headers=basic(WRITE_KEY)
            ).status_code
            == 403
        ),
        timeout_s=10,
        interval_s=0.2,
        message="revoked key refused",
    )


def test_readiness_and_metrics(collector: RunningCollector) -> None:
    ready = httpx.get(f"{collector.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"config": True, "kafka": True}
    assert "sextant_collector_in_flight_requests" in httpx.get(f"{collector.url}/metrics").text


def test_limits_hold_over_real_http(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))  # 50 MiB of JSON whitespace, 50 KiB sent
    headers = basic(WRITE_KEY) | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    refused = httpx.post(f"{collector.url}/v1/batch", content=bomb, headers=headers)
    assert refused.status_code == 413
    assert refused.json()["where"] == "body (after gzip inflation)"
    big = {
        "batch": [
            {"type": "track", "event": "E", "userId": "u", "properties": {"p": "x" * 600_000}}
        ]
    }
    assert (
        httpx.post(f"{collector.url}/v1/batch", json=big, headers=basic(WRITE_KEY)).status_code
        == 413
    )
    event = {"event": "E", "userId": "u", "properties": {"p": "x" * 40_000}}
    assert (
        httpx.post(f"{collector.url}/v1/track", json=event, headers=basic(WRITE_KEY)).status_code
        == 413
    )
    assert topic_records(kafka_settings, Topic.EVENTS_RAW) == []


def test_gzip_batch_with_clock_skew_lands_corrected(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    # The device clock is 2 hours behind; the event happened 10 s before the batch was sent.
    device_now = datetime.now(UTC) - timedelta(hours=2)
    body = {
        "sentAt": device_now.isoformat(),
        "batch": [
            {
                "type": "track",
                "event": "Skewed",
                "userId": "u1",
                "timestamp": (device_now - timedelta(seconds=10)).isoformat(),
            }
        ],
    }
    headers = basic(WRITE_KEY) | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = httpx.post(
        f"{collector.url}/v1/batch", content=gzip.compress(orjson.dumps(body)), headers=headers
    )
    assert response.json()["accepted"] == 1
    [record] = topic_records(kafka_settings, Topic.EVENTS_RAW)
    envelope = Envelope.model_validate_json(record.value or b"")
    assert envelope.received_at - envelope.timestamp == timedelta(seconds=10)
    assert envelope.original_timestamp == device_now - timedelta(seconds=10)


def test_error_statuses_over_real_http(kafka_settings: KafkaSection) -> None:
    publish_demo_project(kafka_settings, rate_limit=50)
    with running_collector(kafka_settings) as collector:
        url = f"{collector.url}/v1/batch"
        not_json = httpx.post(url, content=b"{oops", headers=basic(WRITE_KEY))
        assert (not_json.status_code, not_json.json()["where"]) == (400, "body")
        assert httpx.post(url, json={"batch": []}).status_code == 401
        assert httpx.post(url, json={"batch": []}, headers=basic("wk_unknown")).status_code == 401
        batch = {"batch": [{"type": "track", "event": "E", "userId": "u"}] * 40}
        assert httpx.post(url, json=batch, headers=basic(WRITE_KEY)).status_code == 200
        limited = httpx.post(url, json=batch, headers=basic(WRITE_KEY))
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["code"] == "rate_limited"
    assert len(topic_records(kafka_settings, Topic.EVENTS_RAW)) == 40


def test_without_kafka_it_starts_and_asks_clients_to_retry() -> None:
    unreachable = KafkaSection(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="none")
    with running_collector(unreachable, config_wait_seconds=0.5) as collector:
        response = httpx.post(
            f"{collector.url}/v1/batch", json={"batch": []}, headers=basic(WRITE_KEY)
        )
        assert response.status_code == 503
        assert response.json()["where"] == "config"
        assert response.headers["Retry-After"] == "5"
        ready = httpx.get(f"{collector.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"config": False, "kafka": False}
