"""Personal data at the door: what a project drops, hashes or truncates never reaches Kafka."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from sextant.collector.privacy import HASH_PURPOSE
from sextant.core.config_plane import ConfigPublisher
from sextant.core.secrets import SecretBox, generate_secret_key
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key
from sextant.schemas.events import InvalidEvent
from sextant.schemas.privacy import PiiAction, PiiRule, keyed_hash
from sextant.schemas.topics import Topic
from tests.integration.test_collector_kafka import (
    WRITE_KEY,
    RunningCollector,
    basic,
    running_collector,
    topic_records,
)

MASTER = generate_secret_key()
RULES = [
    PiiRule(property="email", action=PiiAction.DROP),
    PiiRule(property="phone", action=PiiAction.HASH),
    PiiRule(property="postcode", action=PiiAction.TRUNCATE, keep_characters=2),
]


@pytest.fixture
def collector(kafka_settings: KafkaSection) -> Iterator[RunningCollector]:
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put(
            [
                Project(id="demo", project_id="demo", name="Demo", pii=RULES),
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
    with running_collector(kafka_settings, secret_key=MASTER) as running:
        yield running


def test_dropped_properties_never_reach_kafka(
    collector: RunningCollector, kafka_settings: KafkaSection
) -> None:
    personal = {"email": "ada@example.com", "phone": "+44 20 7946 0000", "postcode": "SW1A 1AA"}
    batch = [
        {"type": "track", "event": "Paid", "userId": "u1", "properties": personal | {"n": 1}},
        {"type": "identify", "userId": "u1", "traits": personal},
        {"type": "track", "userId": "u1", "properties": personal},  # no event: dead-lettered
    ]
    answer = httpx.post(
        f"{collector.url}/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY)
    )
    assert answer.json()["accepted"] == 2

    raw = topic_records(kafka_settings, Topic.EVENTS_RAW)
    invalid = topic_records(kafka_settings, Topic.EVENTS_INVALID)
    assert len(raw) == 2
    assert len(invalid) == 1
    everything = b"".join((r.value or b"") for r in raw + invalid)
    for value in ("ada@example.com", "+44 20 7946 0000", "SW1A 1AA"):
        assert value.encode() not in everything
    assert b'"email"' not in everything

    track = orjson.loads(raw[0].value or b"") if b'"Paid"' in (raw[0].value or b"") else None
    track = track or orjson.loads(raw[1].value or b"")
    key = SecretBox([MASTER]).derive(HASH_PURPOSE)
    assert track["properties"] == {
        "n": 1,
        "phone": keyed_hash(key, "demo", "+44 20 7946 0000"),
        "postcode": "SW",
    }
    dead = orjson.loads(InvalidEvent.model_validate_json(invalid[0].value or b"").payload)
    assert dead["properties"] == {"phone": track["properties"]["phone"], "postcode": "SW"}
