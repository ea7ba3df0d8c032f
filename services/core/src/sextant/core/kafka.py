"""Kafka adapters (kafka-python): administration, a plain producer and a plain consumer.

Nothing outside ``sextant.core`` imports a Kafka client library (faust in the processor aside).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from sextant.core.kafka_cluster import replication
from sextant.core.settings import KafkaSection
from sextant.schemas.topics import TOPICS, Topic, TopicSpec, topic_name

__all__ = [
    "KafkaError",
    "Record",
    "TopicPartition",
    "broker_version",
    "cluster_reachable",
    "consumer_group_lags",
    "end_offsets",
    "ensure_topic",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "read_all",
]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _topic_config(spec: TopicSpec, brokers: int) -> dict[str, str]:
    config = {"min.insync.replicas": str(_replicas(spec, brokers)[1])}
    if spec.compacted:
        config |= {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    if spec.retention_ms is not None:
        config["retention.ms"] = str(spec.retention_ms)
    return config


def _replicas(spec: TopicSpec, brokers: int) -> tuple[int, int]:
    return replication(spec.replicas, spec.min_insync_replicas, brokers)


def _partitions(spec: TopicSpec, override: int | None) -> int:
    return spec.partitions if spec.compacted or override is None else override


def ensure_topics(
    settings: KafkaSection,
    topics: Iterable[Topic] = tuple(Topic),
    partitions: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the names created.

    Each gets the replicas the registry asks for, as many as the cluster has brokers
    (:func:`sextant.core.kafka_cluster.replication`)."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id=settings.kafka_client_id
    )
    try:
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster()["brokers"])
        wanted = [
            NewTopic(
                name=topic_name(topic, settings.topic_prefix),
                num_partitions=_partitions(TOPICS[topic], partitions),
                replication_factor=_replicas(TOPICS[topic], brokers)[0],
                topic_configs=_topic_config(TOPICS[topic], brokers),
            )
            for topic in topics
            if topic_name(topic, settings.topic_prefix) not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
        return [new.name for new in wanted]
    finally:
        admin.close()


def ensure_topic(settings: KafkaSection, name: str, partitions: int) -> bool:
    """Create one topic outside the registry (a part's internal topic) if missing.

    Returns True when it was created now. A consumer subscribing to a topic that does not
    exist yet only notices it at its next metadata refresh (minutes), so parts create their
    internal topics before they subscribe.
    """
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id=settings.kafka_client_id
    )
    try:
        if name in set(admin.list_topics()):
            return False
        replicas, in_sync = replication(3, 2, len(admin.describe_cluster()["brokers"]))
        config = {"min.insync.replicas": str(in_sync)}
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, partitions, replicas, topic_configs=config)])
        return True
    finally:
        admin.close()


def cluster_reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker answers a metadata request within ``timeout_s``."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def make_producer(settings: KafkaSection, **overrides: Any) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (``acks=all``)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka_client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": "lz4",
    }
    return KafkaProducer(**(options | overrides))


def make_consumer(
    settings: KafkaSection, group_id: str | None, *topics: str, **overrides: Any
) -> KafkaConsumer:
    """A consumer that never commits on its own: callers commit after their work is durable."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka_client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return KafkaConsumer(*topics, **(options | overrides))


def end_offsets(settings: KafkaSection, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition of ``topic``."""
    consumer = make_consumer(settings, None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_all(settings: KafkaSection, topic: str, timeout_s: float = 10.0) -> Iterator[Record]:
    """Every record currently in ``topic``, from the beginning to the end offsets."""
    consumer = make_consumer(settings, None, consumer_timeout_ms=int(timeout_s * 1000))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        remaining = {tp: end for tp, end in consumer.end_offsets(tps).items() if end > 0}
        while remaining:
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"{topic}: stopped before the end offsets {remaining}")
            for tp, messages in batch.items():
                for m in messages:
                    yield Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                if tp in remaining and consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        consumer.close()


def broker_version(bootstrap: str) -> tuple[int, ...]:
    """The broker's version as the client infers it from the APIs it supports, e.g. (4, 1)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        version: tuple[int, ...] = admin._client.check_version()  # no public accessor
        return version
    finally:
        admin.close()


def consumer_group_lags(settings: KafkaSection, group: str, topic: str) -> dict[int, int]:
    """Per partition of ``topic``: records ``group`` has not committed yet (all of them if it
    never did)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    ends = end_offsets(settings, topic)
    done = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    return {
        partition: max(0, end - max(0, done.get(partition, 0)))
        for partition, end in sorted(ends.items())
    }
