"""The processor's table changelogs stay bounded, so a restarted worker's replay does not grow
with the processor's age.

A worker restores its tables by reading their changelogs from the beginning. Without segments
that close, the broker's cleaner never compacts them, and the replay holds every write since
the topic was made (seen under ``make chaos``: a worker took 7 s to be ready after its first
kill -9 and over a minute twenty minutes later).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from sextant.core.kafka import ensure_topic_config, make_producer, read_all
from sextant.core.settings import KafkaSection
from sextant.processor.settings import ProcessorSettings
from sextant.schemas.topics import processor_group
from tests.infra import wait_for
from tests.integration.test_processor_pipeline import ProcessorProcess

TABLES = ("windows", "merge", "persons")


def topic_config(settings: KafkaSection, name: str) -> dict[str, str]:
    """The topic's settings, once the broker describes it (not at once after its creation)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)

    def described() -> dict[str, str]:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
        )
        [entries] = [e for by_name in found.values() for e in by_name.values()]
        return {key: str(data["value"]) for key, data in entries.items()}

    try:
        return wait_for(described, 30, 0.2, f"{name} described")
    finally:
        admin.close()


def test_a_worker_gives_old_and_new_changelogs_closing_segments(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    group = processor_group(kafka_settings.topic_prefix)
    old = f"{group}-windows-changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka_settings.kafka_bootstrap)
    try:  # as faust made it before: compacted, nothing else
        admin.create_topics([NewTopic(old, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    assert topic_config(kafka_settings, old)["segment.ms"] == str(7 * 24 * 3600 * 1000)

    worker = ProcessorProcess(kafka_settings, tmp_path)
    worker.env["SEXTANT_PROCESSOR_CHANGELOG_SEGMENT_SECONDS"] = "90"
    worker.env["SEXTANT_PROCESSOR_CHANGELOG_TOMBSTONE_SECONDS"] = "30"
    try:
        worker.start().wait_ready()
    finally:
        worker.stop()

    for table in TABLES:
        config = topic_config(kafka_settings, f"{group}-{table}-changelog")
        assert config["cleanup.policy"] == "compact", table
        assert config["segment.ms"] == "90000", table
        assert config["min.compaction.lag.ms"] == "0", table
        # raised to twice the longest restore the worker allows (20 s here)
        assert config["delete.retention.ms"] == "40000", table


def test_the_cleaner_keeps_a_changelog_to_its_current_entries(
    kafka_settings: KafkaSection,
) -> None:
    """What a restoring worker reads shrinks to one record per live key once segments close:
    overwritten values go, and so do deleted keys and, after their time, their tombstones
    (every flush writes a key of its own and deletes it later)."""
    settings = ProcessorSettings(
        processor_changelog_segment_seconds=1.0,
        processor_changelog_tombstone_seconds=1.0,
        processor_max_rebalance_seconds=0.5,
    )
    name = f"{kafka_settings.topic_prefix}-changelog-{uuid.uuid4().hex[:6]}"
    ensure_topic_config(kafka_settings, name, 1, settings.changelog_config())
    keys, rounds, flushes = 20, 200, 500
    producer = make_producer(kafka_settings)
    for n in range(rounds):
        for key in range(keys):
            producer.send(name, key=f"0|window-{key}".encode(), value=f"v{n}".encode())
    for flush in range(flushes):  # each written once, then deleted
        producer.send(name, key=f"0|d|{flush}".encode(), value=b"[]")
        producer.send(name, key=f"0|d|{flush}".encode(), value=None)
    producer.flush()

    def replay() -> list[tuple[bytes | None, bytes | None]]:
        return [(r.key, r.value) for r in read_all(kafka_settings, name)]

    def compacted() -> bool:
        # A segment closes only when a record comes after its age: one write per poll, polls
        # further apart than the age.
        producer.send(name, key=b"0|heartbeat", value=b"x").get(timeout=10)
        return len(replay()) <= keys + 10

    wait_for(compacted, 180, 1.2, "the changelog compacted to its live keys")
    producer.close()
    latest = dict(replay())
    assert {latest[f"0|window-{key}".encode()] for key in range(keys)} == {
        f"v{rounds - 1}".encode()
    }
    assert not any(key.startswith(b"0|d|") for key in latest if key)
