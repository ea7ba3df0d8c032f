"""Retention on the embedded engine: a project's raw events past its retention are deleted, a
change of the setting applies at the next round (no restart), and windows are kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from sextant.core.config_plane import ConfigPublisher
from sextant.core.migrations import migrate
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse, connect
from sextant.schemas.config import Project
from sextant.sink.retention import RetentionService
from sextant.sink.settings import SinkSettings
from tests.infra import wait_for

NOW = datetime.now(UTC)


def _events(warehouse: Warehouse, project: str, ages_days: list[int]) -> None:
    rows = [
        orjson.dumps(
            {
                "project_id": project,
                "event": "Paid",
                "type": "track",
                "distinct_id": f"u{i}",
                "message_id": uuid.uuid4().hex,
                "timestamp": (NOW - timedelta(days=age, hours=1)).isoformat(),
                "received_at": NOW.isoformat(),
                "properties": {},
            }
        )
        for i, age in enumerate(ages_days)
    ]
    columns = [
        "project_id",
        "event",
        "type",
        "distinct_id",
        "message_id",
        "timestamp",
        "received_at",
        "properties",
    ]
    warehouse.insert_json("events", b"\n".join(rows), columns)


def _count(warehouse: Warehouse, table: str, project: str) -> int:
    [[n]] = warehouse.query_rows(
        f"SELECT count() FROM {table} WHERE project_id = {{p:String}}", {"p": project}
    )
    return int(n)


def test_a_retention_change_applies_without_a_restart(
    kafka_settings: KafkaSection, warehouse_root: str
) -> None:
    url = f"chdb://{warehouse_root}?database=r{uuid.uuid4().hex[:12]}"
    warehouse = connect(url)
    migrate(warehouse)
    _events(warehouse, "kept", [0, 5, 40, 400])
    _events(warehouse, "short", [0, 5, 40, 400])
    warehouse.insert(
        "metric_points",
        [["short", "paid", NOW - timedelta(days=400), 60, "", 1, 0.0, 0.0, 0, 1, NOW]],
        [
            "project_id",
            "metric",
            "window_start",
            "window_seconds",
            "breakdown",
            "count",
            "sum",
            "sum_sq",
            "denominator",
            "version",
            "emitted_at",
        ],
    )
    publisher = ConfigPublisher(kafka_settings)
    publisher.put(
        [
            Project(id="kept", project_id="kept", name="Kept"),
            Project(id="short", project_id="short", name="Short", raw_event_retention_days=30),
        ]
    )
    settings = SinkSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=kafka_settings.topic_prefix,
        clickhouse_url=url,
        sink_retention_interval_seconds=0.2,
        sink_deletion_interval_seconds=0.2,
    )
    service = RetentionService(settings, open_warehouse=lambda _: warehouse)
    service.start()
    try:
        wait_for(lambda: service.report(), 30, message="30 days")
        assert _count(warehouse, "events", "short") == 2
        assert _count(warehouse, "events", "kept") == 4
        assert {(r["project_id"], r["table"], r["rows"]) for r in service.report()} == {
            ("short", "events", 2)
        }
        # A shorter retention applies at the next round: the 5-day-old event goes too.
        publisher.put(
            [Project(id="short", project_id="short", name="Short", raw_event_retention_days=1)]
        )
        wait_for(lambda: len(service.report()) == 2, 30, message="1 day")
        assert service.report()[-1]["rows"] == 1
        assert _count(warehouse, "events", "short") == 1
        assert _count(warehouse, "events", "kept") == 4
        assert _count(warehouse, "metric_points", "short") == 1  # windows are kept
    finally:
        service.stop()
        publisher.close()
