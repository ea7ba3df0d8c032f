"""The Kafka side of deleting a person, through the real parts: events and identity edges go
through the collector to a processor run as a process of its own; after the deletion is done
(the gateway's status, with the sink deleting the warehouse rows), the processor's changelogs
hold a tombstone for every entry that named the person and no live entry does, while another
person's entries are untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sextant.core.kafka import read_all
from sextant.core.kafka_cluster import retention_ms
from sextant.core.settings import KafkaSection
from sextant.schemas.config import KeyKind, MetricDefinition
from sextant.schemas.topics import (
    RAW_RETENTION_MS,
    Topic,
    internal_topic_name,
    processor_group,
    topic_name,
)
from tests.infra import free_port, wait_for
from tests.integration.test_collector_kafka import basic, running_collector
from tests.integration.test_gateway_harness import SECRETS, Harness, make_harness
from tests.integration.test_governance_persons import deletion_sink

CLEO = ("cleo-anon", "cleo")  # her anonymous id, then her user id
DAN = ("dan-anon", "dan")
CHANGELOGS = (Topic.WINDOWS_CHANGELOG, Topic.PERSONS_CHANGELOG)


@pytest.fixture
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(
            MetricDefinition(
                id="signup-conversion",
                project_id="acme",
                metric_kind="conversion",
                event="Signup Started",
                conversion_event="Signup Done",
                conversion_window_seconds=3600,
            )
        )
        yield running


@pytest.fixture
def processor(harness: Harness, tmp_path: Path) -> Iterator[str]:
    """The processor as a process of its own on the harness's topics; its URL."""
    port = free_port()
    env = os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": harness.settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": harness.settings.topic_prefix,
        "SEXTANT_PROCESSOR_PORT": str(port),
        "SEXTANT_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "SEXTANT_PROCESSOR_DELETION_SETTLE_SECONDS": "2",
        "SEXTANT_LOG_LEVEL": "WARNING",
    }
    with (tmp_path / "processor.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sextant.processor"], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 120, message="processor ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _changelog(harness: Harness, topic: Topic) -> list[tuple[str, bytes | None]]:
    """Every record of one of the processor's changelogs, in order: (key, value)."""
    name = internal_topic_name(topic, processor_group(harness.settings.topic_prefix))
    return [((r.key or b"").decode(), r.value) for r in read_all(harness.settings, name)]


def _live(records: list[tuple[str, bytes | None]]) -> dict[str, bytes]:
    """What compaction keeps: each key's last value, tombstoned keys gone."""
    latest: dict[str, bytes | None] = {}
    for key, value in records:
        latest[key] = value
    return {key: value for key, value in latest.items() if value is not None}


def _names(entry: tuple[str, bytes], ids: tuple[str, ...]) -> bool:
    key, value = entry
    return any(i in key or f'"{i}"'.encode() in value for i in ids)


def _entries_of(harness: Harness, ids: tuple[str, ...]) -> dict[Topic, set[str]]:
    found = {}
    for topic in CHANGELOGS:
        live = _live(_changelog(harness, topic))
        found[topic] = {key for key, value in live.items() if _names((key, value), ids)}
    return found


def _send_events(harness: Harness) -> None:
    kafka = KafkaSection(
        kafka_bootstrap=harness.settings.kafka_bootstrap,
        topic_prefix=harness.settings.topic_prefix,
    )
    batch = []
    for anonymous, user in (CLEO, DAN):
        batch += [
            {"type": "track", "event": "Signup Started", "anonymousId": anonymous},
            {"type": "track", "event": "Experiment Viewed", "anonymousId": anonymous,
             "properties": {"experiment_id": "onboarding", "variation_id": "short"}},
            {"type": "identify", "anonymousId": anonymous, "userId": user},
            {"type": "track", "event": "Signup Done", "userId": user},
            {"type": "track", "event": "Experiment Viewed", "userId": user,
             "properties": {"experiment_id": "onboarding", "variation_id": "short"}},
        ]  # fmt: skip
    with running_collector(kafka) as collector:
        write = basic(SECRETS[("acme", KeyKind.WRITE)])

        def accepted() -> bool:
            sent = httpx.post(f"{collector.url}/v1/batch", json={"batch": batch}, headers=write)
            return sent.status_code == 200

        wait_for(accepted, 30, message="collector knows the project")


def test_a_deleted_person_leaves_no_entry_in_the_processors_state(
    harness: Harness, processor: str
) -> None:
    _send_events(harness)
    everyone = (*CLEO, *DAN)

    def everyone_in_state() -> bool:
        entries = _entries_of(harness, everyone)
        return all(any(i in k for k in entries[Topic.WINDOWS_CHANGELOG]) for i in everyone) and (
            len(entries[Topic.PERSONS_CHANGELOG]) == 2
        )

    wait_for(everyone_in_state, 120, interval_s=1, message="both persons in the state")
    cleo_before = _entries_of(harness, CLEO)
    dan_before = _entries_of(harness, DAN)
    # What the resolver's overrides put in the warehouse: her anonymous id is her.
    harness.warehouse.insert(
        "person_overrides",
        [["acme", "cleo-anon", "cleo", 1, datetime.now().astimezone()]],
        ["project_id", "distinct_id", "person_id", "version", "updated_at"],
    )

    c = harness.client
    asked = c.post(
        "/v1/admin/projects/acme/persons/cleo/delete",
        json={"suppress_days": 30},
        headers=harness.admin,
    )
    assert asked.status_code == 202, asked.text
    assert asked.json()["ids"] == 2
    assert asked.json()["steps"] == {
        "warehouse": False,
        "identities": False,
        "processor_state": False,
    }
    gone_by = datetime.fromisoformat(asked.json()["kafka_copies_gone_by"])
    assert gone_by - datetime.fromisoformat(asked.json()["requested_at"]) == timedelta(days=7)
    identities = topic_name(Topic.IDENTITIES, harness.settings.topic_prefix)
    assert retention_ms(harness.settings, identities) == RAW_RETENTION_MS

    sink = deletion_sink(harness)
    status_url = f"/v1/admin/projects/acme/persons/deletions/{asked.json()['id']}"
    sink.start()
    try:
        done = wait_for(
            lambda: (
                (s := c.get(status_url, headers=harness.admin).json())["status"] == "done" and s
            ),
            120,
            interval_s=0.5,
            message="deletion done",
        )
    finally:
        sink.stop()
    assert done["steps"] == {"warehouse": True, "identities": True, "processor_state": True}

    assert _entries_of(harness, CLEO) == {topic: set() for topic in CHANGELOGS}
    for topic in CHANGELOGS:
        records = _changelog(harness, topic)
        tombstoned = {key for key, value in records if value is None}
        # Every entry that named her (exposures, conversion users, her person) has one.
        assert cleo_before[topic] <= tombstoned, topic
    dan_after = _entries_of(harness, DAN)
    assert dan_after[Topic.PERSONS_CHANGELOG] == dan_before[Topic.PERSONS_CHANGELOG]
    assert _exposures(dan_after) == _exposures(dan_before) != set()
    # Her conversion users shared a window with his: its users were written again, his kept.
    conversions = [v for k, v in _live(_changelog(harness, Topic.WINDOWS_CHANGELOG)).items()
                   if "|u|" in k]  # fmt: skip
    assert all(any(f'"{i}"'.encode() in v for v in conversions) for i in DAN)


def _exposures(entries: dict[Topic, set[str]]) -> set[str]:
    return {key for key in entries[Topic.WINDOWS_CHANGELOG] if "|x|" in key}
