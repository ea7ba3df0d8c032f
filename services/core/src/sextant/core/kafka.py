"""Kafka adapters (kafka-python): administration, a plain producer and a plain consumer.

Nothing outside ``sextant.core`` imports a Kafka client library (faust in the processor aside).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, NamedTuple

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from sextant.core.kafka_cluster import replication
from sextant.core.settings import KafkaSection
from sextant.schemas.topics import PUBLIC_TOPICS, TOPICS, Topic, TopicSpec, topic_name

__all__ = [
    "KafkaError",
    "Record",
    "TopicPartition",
    "TopicReader",
    "broker_version",
    "cluster_reachable",
    "consumer_group_lags",
    "consumer_group_offsets",
    "end_offsets",
    "ensure_topic",
    "ensure_topic_config",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "note_use",
    "read_all",
    "topic_use",
]

Role = Literal["reads", "writes"]
_USE: set[tuple[str, Role]] = set()
_USE_LOCK = threading.Lock()


def note_use(topic: str, role: Role) -> None:
    """This process reads (or writes) ``topic``: every adapter notes it when it is built, and
    ``/metrics`` shows it (``sextant_topic_use``), which a test holds the registry to."""
    with _USE_LOCK:
        _USE.add((topic, role))


def topic_use() -> set[tuple[str, Role]]:
    """The topics this process reads and writes, as noted by :func:`note_use`."""
    with _USE_LOCK:
        return set(_USE)


class Record(NamedTuple):
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
    topics: Iterable[Topic] = PUBLIC_TOPICS,
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


def ensure_topic(
    settings: KafkaSection,
    name: str,
    partitions: int,
    spec: TopicSpec | None = None,
    config: dict[str, str] | None = None,
) -> bool:
    """Create one topic with ``partitions`` (a part's internal topic, or a registered one
    whose partitions follow another topic's: ``spec``'s settings then apply) if missing,
    with ``config`` on top.

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
        brokers = len(admin.describe_cluster()["brokers"])
        replicas, in_sync = replication(3, 2, brokers)
        wanted = {"min.insync.replicas": str(in_sync)}
        if spec is not None:
            replicas = _replicas(spec, brokers)[0]
            wanted = _topic_config(spec, brokers)
        wanted |= config or {}
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(name, partitions, replicas, topic_configs=wanted)])
        return True
    finally:
        admin.close()


def ensure_topic_config(
    settings: KafkaSection, name: str, partitions: int, config: dict[str, str]
) -> None:
    """Create one internal topic with ``config`` if missing, or set ``config`` on it (keys not
    named keep their values), so an upgrade brings an existing topic's settings along."""
    if ensure_topic(settings, name, partitions, config=config):
        return
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id=settings.kafka_client_id
    )
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=config)])
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


class TopicReader:
    """Every partition of one topic, read without a consumer group: the config followers, the
    live stream's feed, the alert evaluator's replay. Not thread-safe: one thread reads it.

    Partitions are named by number; offsets are the next one to read. The reader never
    commits (it has no group).
    """

    def __init__(self, settings: KafkaSection, topic: str, **overrides: Any) -> None:
        self.topic = topic
        note_use(topic, "reads")
        self._consumer = make_consumer(settings, None, **overrides)
        self._tps: dict[int, TopicPartition] = {}

    def assign(self, wait_s: float, stop: threading.Event | None = None) -> list[int]:
        """Wait until the topic's partitions are known, then read them all; ``TimeoutError``
        after ``wait_s`` (an empty list if ``stop`` is set first)."""
        deadline = time.monotonic() + wait_s
        while not (found := self._consumer.partitions_for_topic(self.topic)):
            if stop is not None and stop.is_set():
                return []
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} does not exist")
            time.sleep(0.2)
        return self.assign_partitions(sorted(found))

    def assign_partitions(self, partitions: Iterable[int]) -> list[int]:
        """Read only these partitions."""
        self._tps = {p: TopicPartition(self.topic, p) for p in sorted(partitions)}
        self._consumer.assign(list(self._tps.values()))
        return list(self._tps)

    @property
    def partitions(self) -> list[int]:
        return list(self._tps)

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(self._tps[partition], offset)

    def seek_to_beginning(self) -> None:
        self._consumer.seek_to_beginning(*self._tps.values())

    def seek_to_end(self, *partitions: int) -> None:
        chosen = partitions or tuple(self._tps)
        self._consumer.seek_to_end(*(self._tps[p] for p in chosen))

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset of a record at or after ``timestamp_ms`` (None: no
        such record)."""
        found = self._consumer.offsets_for_times(dict.fromkeys(self._tps.values(), timestamp_ms))
        return {tp.partition: (at.offset if at is not None else None) for tp, at in found.items()}

    def poll(self, timeout_s: float, max_records: int | None = None) -> list[Record]:
        """The records fetched within ``timeout_s`` (each partition's in order)."""
        options: dict[str, Any] = {"timeout_ms": max(int(timeout_s * 1000), 0)}
        if max_records is not None:
            options["max_records"] = max_records
        return [
            Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
            for messages in self._consumer.poll(**options).values()
            for m in messages
        ]

    def position(self, partition: int) -> int:
        """The next offset this reader reads on ``partition``."""
        return int(self._consumer.position(self._tps[partition]))

    def highwater(self, partition: int) -> int | None:
        """The partition's end as of the last fetch (None before any)."""
        found = self._consumer.highwater(self._tps[partition])
        return None if found is None else int(found)

    def end_offsets(self) -> dict[int, int]:
        return {
            tp.partition: int(offset)
            for tp, offset in self._consumer.end_offsets(list(self._tps.values())).items()
        }

    def beginning_offsets(self) -> dict[int, int]:
        return {
            tp.partition: int(offset)
            for tp, offset in self._consumer.beginning_offsets(list(self._tps.values())).items()
        }

    def close(self) -> None:
        self._consumer.close()


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
    note_use(topic, "reads")
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
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        version: tuple[int, ...] = tuple(consumer.config["api_version"])
        return version
    finally:
        consumer.close()


def consumer_group_offsets(settings: KafkaSection, group: str, topic: str) -> dict[int, int]:
    """Per partition of ``topic``: the offset ``group`` committed (0 where it never did)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {
        tp.partition: max(0, meta.offset) for tp, meta in committed.items() if tp.topic == topic
    }


def consumer_group_lags(settings: KafkaSection, group: str, topic: str) -> dict[int, int]:
    """Per partition of ``topic``: records ``group`` has not committed yet (all of them if it
    never did)."""
    done = consumer_group_offsets(settings, group, topic)
    ends = end_offsets(settings, topic)
    return {
        partition: max(0, end - max(0, done.get(partition, 0)))
        for partition, end in sorted(ends.items())
    }
