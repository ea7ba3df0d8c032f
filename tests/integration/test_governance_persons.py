"""Deleting and exporting a person through the real parts: the gateway takes the request,
the sink deletes their rows, the collector drops their later events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from sextant.core.settings import KafkaSection
from sextant.schemas.config import KeyKind
from sextant.schemas.topics import Topic
from sextant.sink.retention import RetentionService
from sextant.sink.settings import SinkSettings
from sextant.sink.squash import squash_persons
from tests.infra import wait_for
from tests.integration.test_collector_kafka import basic, running_collector, topic_records
from tests.integration.test_gateway_harness import SECRETS, Harness, make_harness

T0 = datetime.now(UTC) - timedelta(hours=2)
ADA = ["ada-anon", "ada", "ada-old"]  # an anonymous id, her user id, an id she was aliased from


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        yield running


def _seed(harness: Harness) -> None:
    at = [T0 + timedelta(minutes=i) for i in range(20)]
    harness.insert_events(
        [
            {"distinct_id": "ada-anon", "anonymous_id": "ada-anon", "user_id": None,
             "event": "Viewed", "timestamp": at[0]},
            {"distinct_id": "ada", "user_id": "ada", "anonymous_id": "ada-anon",
             "type": "identify", "event": "$identify", "timestamp": at[1]},
            {"distinct_id": "ada", "user_id": "ada", "previous_id": "ada-old",
             "type": "alias", "event": "$alias", "timestamp": at[2]},
            {"distinct_id": "ada-old", "user_id": "ada-old", "event": "Paid", "timestamp": at[3]},
            {"distinct_id": "ada", "event": "Paid", "timestamp": at[4]},
            {"distinct_id": "bob", "event": "Paid", "timestamp": at[5]},
            {"distinct_id": "bob-anon", "anonymous_id": "bob-anon", "user_id": None,
             "event": "Viewed", "timestamp": at[6]},
        ]
    )  # fmt: skip
    harness.insert_exposures(
        [
            {"experiment": "e1", "unit_id": "ada", "variation_id": "a", "timestamp": at[7]},
            {"experiment": "e1", "unit_id": "bob", "variation_id": "b", "timestamp": at[8]},
        ]
    )
    # What the identity resolver wrote for the identify and the alias above: Ada's ids are
    # one person, named by her first id.
    harness.warehouse.insert(
        "person_overrides",
        [["acme", "ada", "ada-anon", 1, at[1]], ["acme", "ada-old", "ada-anon", 2, at[2]]],
        ["project_id", "distinct_id", "person_id", "version", "updated_at"],
    )


def deletion_sink(harness: Harness) -> RetentionService:
    """The sink's retention and deletion service over the harness's warehouse, looking for
    deletions five times a second."""
    return RetentionService(
        SinkSettings(
            kafka_bootstrap=harness.settings.kafka_bootstrap,
            topic_prefix=harness.settings.topic_prefix,
            clickhouse_url=harness.settings.clickhouse_url,
            sink_deletion_interval_seconds=0.2,
        ),
        open_warehouse=lambda _: harness.warehouse,
    )


def _count(harness: Harness, table: str, column: str, ids: list[str]) -> int:
    [[n]] = harness.warehouse.query_rows(
        f"SELECT count() FROM {table} "
        f"WHERE project_id = 'acme' AND {column} IN {{ids:Array(String)}}",
        {"ids": ids},
    )
    return int(n)


def test_a_deleted_person_is_gone_from_every_table_and_kept_out(harness: Harness) -> None:
    _seed(harness)
    c = harness.client
    events_before = _count(harness, "events", "distinct_id", [*ADA, "bob", "bob-anon"])
    assert events_before == 7

    exported = c.get("/v1/admin/projects/acme/persons/ada-anon/export", headers=harness.admin)
    assert exported.status_code == 200, exported.text
    assert exported.json()["ids"] == sorted(ADA)
    assert len(exported.json()["tables"]["events"]) == 5
    assert [e["unit_id"] for e in exported.json()["tables"]["exposures"]] == ["ada"]
    assert len(exported.json()["tables"]["person_overrides"]) == 2
    # Ada's person written onto her events by a squash before she asks to be forgotten.
    assert squash_persons(harness.warehouse).overrides == 2

    sink = deletion_sink(harness)
    asked = c.post(
        "/v1/admin/projects/acme/persons/ada/delete",
        json={"suppress_days": 30},
        headers=harness.admin,
    )
    assert asked.status_code == 202, asked.text
    assert asked.json()["status"] == "pending"
    assert asked.json()["ids"] == 3
    # Every topic that can hold their ids keeps records a week (the registry's retention).
    gone_by = datetime.fromisoformat(asked.json()["kafka_copies_gone_by"])
    assert gone_by - datetime.fromisoformat(asked.json()["requested_at"]) == timedelta(days=7)
    status_url = f"/v1/admin/projects/acme/persons/deletions/{asked.json()['id']}"
    sink.start()
    try:
        # No processor runs here: its steps stay pending (test_person_forgetting runs one).
        wait_for(
            lambda: c.get(status_url, headers=harness.admin).json()["steps"]["warehouse"],
            60,
            message="deletion done in the warehouse",
        )
    finally:
        sink.stop()
    assert c.get(status_url, headers=harness.admin).json()["status"] == "pending"
    assert c.get(status_url, headers=harness.admin).json()["rows_left"] == {
        "events": 0,
        "exposures": 0,
        "person_overrides": 0,
        "identity_decisions": 0,
    }
    for column in ("distinct_id", "user_id", "anonymous_id", "previous_id"):
        assert _count(harness, "events", column, ADA) == 0
    assert _count(harness, "exposures", "unit_id", ADA) == 0
    assert _count(harness, "events", "distinct_id", [*ADA, "bob", "bob-anon"]) == 2
    assert _count(harness, "exposures", "unit_id", ["bob"]) == 1
    entries = c.get(
        "/v1/admin/audit", params={"action": "person.deletion"}, headers=harness.admin
    ).json()["items"]
    assert entries[0]["target"] == f"person_deletion:acme:{asked.json()['id']}"
    everything = c.get("/v1/admin/audit", params={"limit": 1000}, headers=harness.admin)
    assert b'"ada' not in everything.content  # the log names the person by digests only

    kafka = KafkaSection(
        kafka_bootstrap=harness.settings.kafka_bootstrap,
        topic_prefix=harness.settings.topic_prefix,
    )
    with running_collector(kafka) as collector:
        batch = [
            {"type": "track", "event": "Paid", "anonymousId": "ada-anon"},
            {"type": "track", "event": "Paid", "userId": "ada-old"},
            {"type": "track", "event": "Paid", "userId": "bob"},
        ]
        write = basic(SECRETS[("acme", KeyKind.WRITE)])

        def answered() -> bool:
            response = httpx.post(f"{collector.url}/v1/batch", json={"batch": batch}, headers=write)
            return response.status_code == 200

        wait_for(answered, 30, message="collector knows the project")
        raw = topic_records(kafka, Topic.EVENTS_RAW)
        ids = {orjson.loads(r.value or b"")["distinct_id"] for r in raw}
        assert ids == {"bob"}
        assert not topic_records(kafka, Topic.EVENTS_INVALID)
        metrics = httpx.get(f"{collector.url}/metrics").text
        assert 'sextant_collector_suppressed_events_total{project="acme"} 2.0' in metrics
