"""Kafka clusters (kafka-python): how many replicas a topic gets, who leads what, and raising
the replication of topics made with fewer replicas than the cluster can hold.

The topic registry says how many replicas each topic wants and how many must be in sync for a
write (``TopicSpec.replicas``, ``TopicSpec.min_insync_replicas``: 3 and 2); a cluster with
fewer brokers gets as many replicas as it has brokers, and then one in sync less (one at
least). So one broker runs Sextant as before, and three survive the loss of any one of them
without refusing a write or losing an acknowledged one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from sextant.core.settings import KafkaSection

__all__ = [
    "ClusterState",
    "PartitionState",
    "cluster_state",
    "create_topic",
    "deployment_topics",
    "live_brokers",
    "min_insync_replicas",
    "raise_replication",
    "replication",
]


def replication(wanted_replicas: int, wanted_in_sync: int, brokers: int) -> tuple[int, int]:
    """(replicas, min.insync.replicas) of a topic on a cluster of ``brokers``: as many replicas
    as wanted and there are brokers; one replica may always be lost without refusing writes."""
    replicas = max(1, min(wanted_replicas, brokers))
    return replicas, max(1, min(wanted_in_sync, replicas - 1))


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


@dataclass(frozen=True)
class ClusterState:
    brokers: tuple[int, ...]
    """Brokers registered and not fenced."""
    controller: int
    """The active controller: the leader of the KRaft metadata quorum."""
    partitions: list[PartitionState] = field(default_factory=list)

    def leaders(self, topic: str) -> dict[int, int]:
        return {p.partition: p.leader for p in self.partitions if p.topic == topic}

    def fully_replicated(self) -> bool:
        """Every partition described has every replica in sync."""
        return all(set(p.in_sync) == set(p.replicas) for p in self.partitions)


def _admin(settings: KafkaSection) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, client_id=settings.kafka_client_id
    )


def _live(admin: KafkaAdminClient) -> tuple[int, ...]:
    brokers = admin.describe_cluster()["brokers"]
    return tuple(sorted(int(b["broker_id"]) for b in brokers if not b.get("is_fenced")))


def live_brokers(settings: KafkaSection) -> tuple[int, ...]:
    admin = _admin(settings)
    try:
        return _live(admin)
    finally:
        admin.close()


def cluster_state(settings: KafkaSection, topics: Iterable[str] = ()) -> ClusterState:
    """Brokers, the active controller and, for ``topics``, each partition's replicas."""
    admin = _admin(settings)
    try:
        brokers = _live(admin)
        quorum = admin.describe_metadata_quorum()
        controller = int(quorum["topics"][0]["partitions"][0]["leader_id"])
        partitions = []
        names = list(topics)
        for topic in admin.describe_topics(names) if names else []:
            for p in topic["partitions"]:
                partitions.append(
                    PartitionState(
                        topic["name"],
                        int(p["partition_index"]),
                        int(p["leader_id"]),
                        tuple(int(r) for r in p["replica_nodes"]),
                        tuple(int(r) for r in p["isr_nodes"]),
                    )
                )
        return ClusterState(brokers, controller, sorted(partitions, key=_order))
    finally:
        admin.close()


def _deployment_topics(admin: KafkaAdminClient, settings: KafkaSection) -> list[str]:
    mine = (f"{settings.topic_prefix}.", f"{settings.topic_prefix}-")
    return sorted(t for t in admin.list_topics() if t.startswith(mine))


def deployment_topics(settings: KafkaSection) -> list[str]:
    """Every topic of the deployment: the registry's (``<prefix>.…``) and the parts' own
    (``<prefix>-…``: the processor's partials and changelogs)."""
    admin = _admin(settings)
    try:
        return _deployment_topics(admin, settings)
    finally:
        admin.close()


def min_insync_replicas(settings: KafkaSection, topic: str) -> int | None:
    """The ``min.insync.replicas`` in force for ``topic``; ``None`` while the node asked does
    not know the topic yet (a new topic's metadata reaches the nodes asynchronously)."""
    admin = _admin(settings)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])]
        )
        entry = found["topic"].get(topic, {}).get("min.insync.replicas")
        return None if entry is None else int(entry["value"])
    finally:
        admin.close()


def retention_ms(settings: KafkaSection, topic: str) -> int | None:
    """The ``retention.ms`` set on ``topic`` (-1: kept forever); ``None`` when the topic
    leaves it to the broker's default, which the broker does not answer here."""
    admin = _admin(settings)
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms"])]
        )
        entry = found["topic"][topic].get("retention.ms")
        return None if entry is None else int(entry["value"])
    finally:
        admin.close()


def create_topic(settings: KafkaSection, name: str, partitions: int, replicas: int) -> None:
    """A topic with exactly ``replicas`` replicas, as a client outside the registry makes one
    (faust's changelogs have one); Sextant's own go through ``kafka.ensure_topics``."""
    admin = _admin(settings)
    try:
        admin.create_topics([NewTopic(name, partitions, replicas)])
    finally:
        admin.close()


def _order(p: PartitionState) -> tuple[str, int]:
    return p.topic, p.partition


def raise_replication(
    settings: KafkaSection,
    topics: Iterable[str] | None = None,
    replicas: int = 3,
    min_insync_replicas: int = 2,
    timeout_s: float = 120.0,
) -> list[str]:
    """Give each of ``topics`` (default: every topic of the deployment, named ``<prefix>.…``
    or ``<prefix>-…``) that has fewer, ``replicas`` replicas (capped to the live brokers), by
    a partition reassignment spread over the brokers; wait until the new replicas are in
    sync, then set ``min.insync.replicas`` as :func:`replication` says. Returns the topics
    changed.

    For topics made with fewer replicas than the cluster holds now: every topic of a
    deployment that started on one broker and grew, or a client's own topics (faust's
    changelogs are created with one replica).
    """
    admin = _admin(settings)
    try:
        brokers = _live(admin)
        target, in_sync = replication(replicas, min_insync_replicas, len(brokers))
        if topics is None:
            topics = _deployment_topics(admin, settings)
        plan: dict[TopicPartition, list[int]] = {}
        changed: set[str] = set()
        for topic in admin.describe_topics(list(topics)):
            for p in topic["partitions"]:
                current = [int(r) for r in p["replica_nodes"]]
                if len(current) >= target:
                    continue
                start = int(p["partition_index"]) % len(brokers)
                ring = brokers[start:] + brokers[:start]
                added = [b for b in ring if b not in current][: target - len(current)]
                plan[TopicPartition(topic["name"], int(p["partition_index"]))] = current + added
                changed.add(topic["name"])
        if not plan:
            return []
        admin.alter_partition_reassignments(plan)
        deadline = time.monotonic() + timeout_s
        while admin.list_partition_reassignments(list(plan)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reassignment of {sorted(changed)} not done in {timeout_s}s")
            time.sleep(0.5)
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, name, {"min.insync.replicas": str(in_sync)}
                )
                for name in sorted(changed)
            ],
            incremental=True,
        )
        return sorted(changed)
    finally:
        admin.close()
