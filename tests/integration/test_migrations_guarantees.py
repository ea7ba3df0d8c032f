"""The warehouse tables keep the promises their migrations state, with merges stopped.

Every repeat below is a separate insert (a part of its own) and background merges are off for
the table, so what the views return is what any query would get at any moment: each fact once.
(A byte-equal insert is dropped by the engine's block checksum on its own; the repeats here
differ, as a re-cut batch or a re-emission does.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from sextant.core.migrations import load_migrations, migrate
from sextant.core.warehouse import Warehouse, connect
from sextant.schemas.events import Envelope, EventType, InvalidEvent
from sextant.schemas.records import AlertState, AlertTransition, Exposure, MetricPoint

AT = datetime(2026, 4, 30, 23, 0, tzinfo=UTC)
TABLES = ("events", "invalid_events", "exposures", "metric_points", "alert_events")


@pytest.fixture
def frozen(warehouse: Warehouse) -> Iterator[Warehouse]:
    for table in TABLES:
        warehouse.command(f"SYSTEM STOP MERGES {table}")
    yield warehouse
    for table in TABLES:
        warehouse.command(f"SYSTEM START MERGES {table}")


def insert(warehouse: Warehouse, table: str, rows: list[bytes], columns: list[str]) -> None:
    warehouse.insert_json(table, b"\n".join(rows), columns)


def envelope(received: datetime, message_id: str = "m1") -> bytes:
    return (
        Envelope(
            project_id="shop",
            type=EventType.TRACK,
            event="Purchased",
            distinct_id="u1",
            properties={"amount": 7},
            timestamp=AT,
            received_at=received,
            message_id=message_id,
        )
        .model_dump_json()
        .encode()
    )


def test_an_event_replayed_or_re_sent_is_counted_once(frozen: Warehouse) -> None:
    columns = list(Envelope.model_fields)
    insert(frozen, "events", [envelope(AT)], columns)
    insert(frozen, "events", [envelope(AT), envelope(AT, "m2")], columns)  # replayed, re-cut
    insert(frozen, "events", [envelope(AT + timedelta(seconds=30))], columns)  # a client re-send
    assert frozen.query_rows("SELECT count() FROM events") == [(4,)]
    assert frozen.query_rows(
        "SELECT count(), sum(properties.amount::Int64) FROM events_unique"
        " WHERE project_id = 'shop' AND event = 'Purchased' AND timestamp >= '2026-04-30'"
    ) == [(2, 14)]


def test_a_repeated_dedup_token_stores_the_rows_once(frozen: Warehouse) -> None:
    columns = list(Envelope.model_fields)
    for _ in range(3):
        frozen.insert_json("events", envelope(AT), columns, dedup_token="events|0:0-0:1")
    assert frozen.query_rows("SELECT count() FROM events") == [(1,)]


def test_the_views_still_filter_by_the_primary_key(frozen: Warehouse) -> None:
    insert(frozen, "events", [envelope(AT)], list(Envelope.model_fields))
    plan = "\n".join(
        str(row[0])
        for row in frozen.query_rows(
            "EXPLAIN indexes = 1 SELECT count() FROM events_unique"
            " WHERE project_id = 'shop' AND event = 'Purchased'"
        )
    )
    assert "PrimaryKey" in plan
    assert "project_id in ['shop', 'shop']" in plan


def test_each_invalid_event_is_one_row_however_often_it_is_written(frozen: Warehouse) -> None:
    invalid = InvalidEvent(project_id="shop", received_at=AT, payload="{}", errors=[])
    row = orjson.dumps(invalid.model_dump(mode="json") | {"kafka_partition": 2, "kafka_offset": 9})
    other = row.replace(b'"kafka_offset":9', b'"kafka_offset":10')
    columns = [*InvalidEvent.model_fields, "kafka_partition", "kafka_offset"]
    for value in (row, row, other):
        insert(frozen, "invalid_events", [value], columns)
    assert frozen.query_rows("SELECT count() FROM invalid_events_unique") == [(2,)]


def test_the_first_exposure_is_the_earliest_whatever_arrives_later(frozen: Warehouse) -> None:
    for minutes, multi in ((5, False), (1, False), (5, True)):
        exposure = Exposure(
            project_id="shop",
            experiment="checkout",
            unit_id="u1",
            variation_id="b",
            timestamp=AT + timedelta(minutes=minutes),
            message_id=f"x{minutes}",
            multi_variant=multi,
        )
        insert(
            frozen, "exposures", [exposure.model_dump_json().encode()], list(Exposure.model_fields)
        )
    assert frozen.query_rows(
        "SELECT unit_id, timestamp, message_id, multi_variant FROM exposures_first"
        " WHERE project_id = 'shop' AND experiment = 'checkout'"
    ) == [("u1", (AT + timedelta(minutes=1)).replace(tzinfo=None), "x1", True)]


def test_the_newest_version_of_a_metric_window_wins_in_any_order(frozen: Warehouse) -> None:
    for n, version in enumerate((2, 3, 1, 3)):
        point = MetricPoint(
            project_id="shop",
            metric="revenue",
            window_start=AT,
            count=version * 10,
            sum=version * 1.5,
            version=version,
            emitted_at=AT + timedelta(seconds=n),  # a re-emission, not a byte-equal replay
        )
        insert(
            frozen,
            "metric_points",
            [point.model_dump_json().encode()],
            list(MetricPoint.model_fields),
        )
    assert frozen.query_rows("SELECT count() FROM metric_points") == [(4,)]
    assert frozen.query_rows(
        "SELECT sum(count), sum(sum), max(version) FROM metric_points_latest"
        " WHERE project_id = 'shop' AND metric = 'revenue'"
    ) == [(30, 4.5, 3)]


def test_an_alert_transition_is_one_row_even_re_emitted_at_another_time(frozen: Warehouse) -> None:
    for minutes in (0, 0, 3):
        alert = AlertTransition(
            transition_id="t1",
            project_id="shop",
            rule_id="r1",
            episode_id="e1",
            from_state=AlertState.OK,
            to_state=AlertState.PENDING,
            at=AT + timedelta(minutes=minutes),
        )
        insert(
            frozen,
            "alert_events",
            [alert.model_dump_json().encode()],
            list(AlertTransition.model_fields),
        )
    assert frozen.query_rows("SELECT count() FROM alert_events_unique") == [(1,)]


def test_the_sparse_registers_replace_the_dense_ones_and_old_rows_keep_the_rest(
    warehouse_url: str, tmp_path: Path
) -> None:
    """0006: rows with 2**14 dense registers keep their components and lose the sketch; the
    view reads the new column as it is (a view keeps the types it was created with)."""
    for migration in load_migrations():
        if migration.version < 6:
            (tmp_path / migration.name).write_text(migration.sql)
    warehouse = connect(warehouse_url)
    migrate(warehouse, tmp_path)
    columns = ["project_id", "metric", "window_start", "count", "hll", "version", "emitted_at"]
    warehouse.insert("metric_points", [["p", "u", AT, 40, [0, 3, 1] * 100, 1, AT]], columns)
    assert migrate(warehouse)[0] == "0006_metric_points_sparse_hll.sql"
    later = AT + timedelta(minutes=1)
    warehouse.insert("metric_points", [["p", "u", later, 1, [65535 << 6 | 49], 1, AT]], columns)
    assert warehouse.query_rows(
        "SELECT count, hll, toTypeName(hll) FROM metric_points_latest ORDER BY window_start"
    ) == [(40, [], "Array(UInt32)"), (1, [4194289], "Array(UInt32)")]


def test_events_written_before_the_extra_column_read_it_empty_and_the_view_shows_it(
    warehouse_url: str, tmp_path: Path
) -> None:
    """0007: the events table gains extra, the JSON text of the client's fields the envelope
    does not name, exactly as sent (no path splitting at dots); older rows read {} and
    events_unique, made again, has the column."""
    for migration in load_migrations():
        if migration.version < 7:
            (tmp_path / migration.name).write_text(migration.sql)
    warehouse = connect(warehouse_url)
    migrate(warehouse, tmp_path)
    older = orjson.loads(envelope(AT, "old"))
    del older["extra"]
    insert(warehouse, "events", [orjson.dumps(older)], list(older))
    assert "0007_events_extra.sql" in migrate(warehouse)
    newer = Envelope(
        project_id="shop",
        type=EventType.TRACK,
        event="Purchased",
        distinct_id="u1",
        timestamp=AT,
        received_at=AT,
        message_id="new",
        extra={"channel": "mobile", "integrations": {"Segment": True, "Segment.io": False}},
    )
    insert(
        warehouse,
        "events",
        [newer.model_dump_json().encode()],
        list(Envelope.model_fields),
    )
    assert warehouse.query_rows(
        "SELECT message_id, extra, JSONExtractString(extra, 'channel'),"
        " JSONExtractBool(extra, 'integrations', 'Segment')"
        " FROM events_unique ORDER BY message_id"
    ) == [
        (
            "new",
            '{"channel":"mobile","integrations":{"Segment":true,"Segment.io":false}}',
            "mobile",
            1,
        ),
        ("old", "{}", "", 0),
    ]
