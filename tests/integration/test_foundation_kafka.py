from __future__ import annotations

from sextant.core.config_plane import ConfigFollower, ConfigPublisher
from sextant.core.kafka import broker_version, ensure_topics, read_all
from sextant.core.settings import KafkaSection
from sextant.schemas.config import ApiKey, KeyKind, MetricDefinition, hash_key
from sextant.schemas.topics import TOPICS, Topic, topic_name
from tests.infra import wait_for


def test_the_broker_is_apache_kafka_4(kafka_bootstrap: str) -> None:
    assert broker_version(kafka_bootstrap)[0] == 4


def test_topics_are_created_once(kafka_settings: KafkaSection) -> None:
    assert ensure_topics(kafka_settings) == []  # the fixture created them already
    config = topic_name(Topic.CONFIG, kafka_settings.topic_prefix)
    assert config.endswith(".config")
    assert TOPICS[Topic.CONFIG].compacted


def _key(secret: str, revoked: bool = False) -> ApiKey:
    return ApiKey(
        id="web",
        project_id="shop",
        key_kind=KeyKind.WRITE,
        key_hash=hash_key(secret),
        revoked=revoked,
    )


def test_config_changes_reach_a_follower_within_seconds(kafka_settings: KafkaSection) -> None:
    publisher = ConfigPublisher(kafka_settings)
    metric = MetricDefinition(id="signups", project_id="shop", metric_kind="count", event="Up")
    publisher.put([_key("secret-secret-1234"), metric])
    follower = ConfigFollower(kafka_settings).start()
    try:
        assert follower.wait_caught_up(30)
        state = follower.state
        key = state.key_for_hash(hash_key("secret-secret-1234"))
        assert key is not None
        assert not key.revoked
        assert [m.id for m in state.metrics("shop")] == ["signups"]

        publisher.put([_key("secret-secret-1234", revoked=True)])
        wait_for(lambda: state.key_for_hash(hash_key("secret-secret-1234")).revoked, 10)  # type: ignore[union-attr]

        publisher.delete(metric.config_key())
        wait_for(lambda: state.metrics("shop") == [], 10)
    finally:
        follower.stop()
        publisher.close()


def test_a_new_follower_sees_the_latest_document_per_key(kafka_settings: KafkaSection) -> None:
    publisher = ConfigPublisher(kafka_settings)
    for revoked in (False, True, False):
        publisher.put([_key("another-secret-123", revoked=revoked)])
    publisher.close()
    follower = ConfigFollower(kafka_settings).start()
    try:
        assert follower.wait_caught_up(30)
        key = follower.state.key_for_hash(hash_key("another-secret-123"))
        assert key is not None
        assert key.revoked is False
        records = list(read_all(kafka_settings, follower.topic))
        assert len(records) == 3
    finally:
        follower.stop()
