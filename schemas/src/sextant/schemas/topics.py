"""The topic registry: every Kafka topic Sextant uses, its key, value and who reads and writes it.

Topic names carry a configurable prefix (default ``sextant``) so that tests and tenants can
isolate themselves on one cluster: ``topic_name(Topic.EVENTS_RAW, "t42")`` is ``t42.events.raw``.
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
    CONFIG = "config"
    SINK_DEAD_LETTER = "sink.dead_letter"


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


TOPICS: dict[Topic, TopicSpec] = {
    spec.topic: spec
    for spec in (
        TopicSpec(
            Topic.EVENTS_RAW,
            key="project_id:distinct_id",
            value="Envelope (sextant.schemas.events.Envelope)",
            producers=("collector",),
            consumers=("processor", "sink"),
        ),
        TopicSpec(
            Topic.EVENTS_INVALID,
            key="project_id",
            value="InvalidEvent (original payload, errors, received_at)",
            producers=("collector",),
            consumers=("sink",),
            partitions=3,
        ),
        TopicSpec(
            Topic.EXPOSURES,
            key="project_id:experiment:unit_id",
            value="Exposure (first exposure of a unit)",
            producers=("processor",),
            consumers=("sink",),
        ),
        TopicSpec(
            Topic.METRIC_POINTS,
            key="project_id:metric",
            value="MetricPoint (window aggregate as additive components)",
            producers=("processor",),
            consumers=("sink", "gateway"),
        ),
        TopicSpec(
            Topic.ALERTS,
            key="project_id:rule_id",
            value="AlertTransition",
            producers=("processor", "gateway"),
            consumers=("sink", "notifier"),
            partitions=3,
        ),
        TopicSpec(
            Topic.CONFIG,
            key="kind:project_id:id",
            value="ConfigDocument, or a tombstone (null value)",
            producers=("gateway", "cli"),
            consumers=("collector", "processor", "sink", "gateway", "notifier"),
            partitions=1,
            compacted=True,
        ),
        TopicSpec(
            Topic.SINK_DEAD_LETTER,
            key="source topic:partition:offset",
            value="SinkDeadLetter (record the warehouse refused, with the reason)",
            producers=("sink",),
            consumers=(),
            partitions=1,
        ),
    )
}

DEFAULT_PREFIX = "sextant"


def topic_name(topic: Topic, prefix: str = DEFAULT_PREFIX) -> str:
    """The full Kafka topic name of ``topic`` under ``prefix``."""
    return f"{prefix}.{topic.value}"
