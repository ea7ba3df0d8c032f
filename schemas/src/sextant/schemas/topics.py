"""The topic registry: every Kafka topic Sextant uses, its key, value and who reads and writes it.

Topic names carry a configurable prefix (default ``sextant``) so that tests and tenants can
isolate themselves on one cluster: ``topic_name(Topic.EVENTS_RAW, "t42")`` is ``t42.events.raw``.
The processor's internal topics are named after its consumer group instead
(``internal_topic_name(Topic.PARTIALS, "t42-processor")`` is ``t42-processor-partials``): faust
names its tables' changelogs so, and the group is the faust app's id.

``tests/integration/test_topic_registry.py`` runs every part and holds this registry to the
topics each one reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Topic(StrEnum):
    """The logical topics; the value is the suffix after the prefix."""

    EVENTS_RAW = "events.raw"
    EVENTS_INVALID = "events.invalid"
    EXPOSURES = "exposures"
    METRIC_POINTS = "metric_points"
    ALERTS = "alerts"
    EXPERIMENT_STATISTICS = "experiment_statistics"
    CONFIG = "config"
    SINK_DEAD_LETTER = "sink.dead_letter"
    AUDIT = "audit"
    IDENTITIES = "identities"
    PERSON_OVERRIDES = "person_overrides"
    IDENTITY_DECISIONS = "identity_decisions"
    PERSON_DELETIONS = "person_deletions"
    """What each processor stage removed for a person's deletion, per partition."""
    PARTIALS = "partials"
    """The processor's stage one → stage two (internal)."""
    WINDOWS_CHANGELOG = "windows-changelog"
    """The processor's stage-one state (a faust table's changelog, internal)."""
    MERGE_CHANGELOG = "merge-changelog"
    """The processor's stage-two state (a faust table's changelog, internal)."""
    PERSONS_CHANGELOG = "persons-changelog"
    """The processor's resolver state: persons per identities partition (internal)."""


@dataclass(frozen=True)
class TopicSpec:
    topic: Topic
    key: str
    value: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    replicas: int = 3
    """Copies of each partition on a cluster of three brokers or more (fewer brokers: one
    each); ``sextant.core.kafka_cluster.replication``."""
    min_insync_replicas: int = 2
    """Replicas that must have a record before a write with ``acks=all`` is acknowledged."""
    partitions: int = 12
    compacted: bool = False
    retention_ms: int | None = None
    internal: bool = False
    """One part's own topic, named after its consumer group (:func:`internal_topic_name`) and
    created by that part, not by ``sextant topics``."""
    holds_person_ids: bool = False
    """Its records can carry a person's ids in clear until its retention removes them: a
    person's deletion is complete in Kafka once the longest of these retentions has passed
    (compacted topics are cleared by tombstones instead)."""


RAW_RETENTION_MS = 7 * 24 * 3600 * 1000
"""How long every topic that can hold a person's ids keeps a record (set on the topics, so a
deleted person's last copy in Kafka is gone by a date the deletion's status can name)."""

TOPICS: dict[Topic, TopicSpec] = {
    spec.topic: spec
    for spec in (
        TopicSpec(
            Topic.EVENTS_RAW,
            key="project_id:distinct_id",
            value="Envelope (sextant.schemas.events.Envelope)",
            producers=("collector",),
            consumers=("processor", "sink"),
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.EVENTS_INVALID,
            key="project_id",
            value="InvalidEvent (original payload, errors, received_at)",
            producers=("collector",),
            consumers=("sink",),
            partitions=3,
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.EXPOSURES,
            key="project_id:experiment:unit_id",
            value="Exposure (first exposure of a unit)",
            producers=("processor",),
            consumers=("sink",),
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.METRIC_POINTS,
            key="project_id:metric",
            value="MetricPoint (window aggregate as additive components)",
            producers=("processor", "cli"),
            consumers=("processor", "sink", "gateway"),
        ),
        TopicSpec(
            Topic.EXPERIMENT_STATISTICS,
            key="project_id:experiment:metric:variant:source_partition",
            value="ExperimentMetricStatistics (one events.raw partition's sums of a variant)",
            producers=("processor",),
            consumers=("sink",),
        ),
        TopicSpec(
            Topic.ALERTS,
            key="project_id:rule_id",
            value="AlertTransition",
            producers=("processor", "gateway"),
            consumers=("processor", "sink", "gateway", "notifier"),
            partitions=3,
        ),
        TopicSpec(
            Topic.CONFIG,
            key="kind:project_id:id",
            value="ConfigDocument, or a tombstone (null value)",
            producers=("gateway", "cli"),
            consumers=("collector", "processor", "sink", "gateway", "notifier", "cli"),
            partitions=1,
            compacted=True,
        ),
        TopicSpec(
            Topic.AUDIT,
            key="project_id",
            value="AuditEntry (sextant.schemas.audit): append-only, kept forever",
            producers=("gateway", "cli"),
            consumers=("gateway",),
            partitions=1,
            retention_ms=-1,
        ),
        TopicSpec(
            Topic.SINK_DEAD_LETTER,
            key="source topic:partition:offset",
            value="SinkDeadLetter (record the warehouse refused, with the reason)",
            producers=("sink",),
            consumers=(),
            partitions=1,
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.IDENTITIES,
            key="project_id",
            value="IdentityEdge (two ids are one person, or a split; sextant.schemas.identity)",
            producers=("collector", "gateway"),
            consumers=("processor",),
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.PERSON_DELETIONS,
            key="project_id:request_id:stage:partition",
            value="DeletionProgress (a stage's partition has forgotten a deleted person)",
            producers=("processor",),
            consumers=("gateway",),
            partitions=1,
            compacted=True,
        ),
        TopicSpec(
            Topic.PERSON_OVERRIDES,
            key="project_id:distinct_id",
            value="PersonOverride (an id's person from a version on)",
            producers=("processor",),
            consumers=("sink",),
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.IDENTITY_DECISIONS,
            key="project_id",
            value="IdentityDecision (a merge, a refusal or a split, and why)",
            producers=("processor",),
            consumers=("sink",),
            partitions=3,
            retention_ms=RAW_RETENTION_MS,
            holds_person_ids=True,
        ),
        TopicSpec(
            Topic.PARTIALS,
            key="project_id|metric|window_start",
            value="Partial (one events.raw partition's part of a window)",
            producers=("processor",),
            consumers=("processor",),
            internal=True,
        ),
        TopicSpec(
            Topic.WINDOWS_CHANGELOG,
            key="<partition>|...",
            value="stage one's state entries (faust table changelog)",
            producers=("processor",),
            consumers=("processor",),
            compacted=True,
            internal=True,
        ),
        TopicSpec(
            Topic.MERGE_CHANGELOG,
            key="<partition>|...",
            value="stage two's state entries (faust table changelog)",
            producers=("processor",),
            consumers=("processor",),
            compacted=True,
            internal=True,
        ),
        TopicSpec(
            Topic.PERSONS_CHANGELOG,
            key="<partition>|...",
            value="the resolver's persons (faust table changelog)",
            producers=("processor",),
            consumers=("processor",),
            compacted=True,
            internal=True,
        ),
    )
}
PERSON_ID_TOPICS: tuple[Topic, ...] = tuple(t for t in Topic if TOPICS[t].holds_person_ids)
"""The topics whose retention bounds how long a deleted person's ids stay in Kafka."""
PUBLIC_TOPICS: tuple[Topic, ...] = tuple(t for t in Topic if not TOPICS[t].internal)
"""The topics ``sextant topics`` creates (the internal ones are created by their part)."""

DEFAULT_PREFIX = "sextant"


def topic_name(topic: Topic, prefix: str = DEFAULT_PREFIX) -> str:
    """The full Kafka topic name of ``topic`` under ``prefix``."""
    return f"{prefix}.{topic.value}"


def internal_topic_name(topic: Topic, group: str) -> str:
    """The full name of an internal topic of the part whose consumer group is ``group``."""
    return f"{group}-{topic.value}"


def processor_group(prefix: str = DEFAULT_PREFIX) -> str:
    """The processor's default consumer group (and faust app id) under ``prefix``."""
    return f"{prefix}-processor"
