"""Batches: bounds, rows per table, duplicates within a batch, tokens, offsets to commit."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from sextant.core.kafka import Record
from sextant.schemas.events import Envelope, EventType, FieldError, InvalidEvent
from sextant.schemas.records import AlertState, AlertTransition, Exposure, MetricPoint
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.batch import Batch, BatchLimits
from sextant.sink.tables import TABLES

PREFIX = "unit"
SPECS = {topic_name(topic, PREFIX): spec for topic, spec in TABLES.items()}
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RAW = topic_name(Topic.EVENTS_RAW, PREFIX)
POINTS = topic_name(Topic.METRIC_POINTS, PREFIX)
INVALID = topic_name(Topic.EVENTS_INVALID, PREFIX)


def envelope(message_id: str, amount: int = 1, user: str = "u1") -> bytes:
    return (
        Envelope(
            project_id="demo",
            type=EventType.TRACK,
            event="Purchased",
            distinct_id=user,
            user_id=user,
            properties={"amount": amount},
            timestamp=AT,
            received_at=AT,
            message_id=message_id,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


def point(version: int, count: int, minute: int = 0) -> bytes:
    return (
        MetricPoint(
            project_id="demo",
            metric="purchases",
            window_start=AT.replace(minute=minute),
            count=count,
            version=version,
            emitted_at=AT,
        )
        .model_dump_json()
        .encode()
    )


def record(topic: str, partition: int, offset: int, value: bytes | None) -> Record:
    return Record(topic, partition, offset, None, value, 0)


def fill(batch: Batch, records: list[Record]) -> Batch:
    for r in records:
        batch.add(r, now=0.0)
    return batch


def test_a_batch_is_due_by_records_bytes_or_age() -> None:
    limits = BatchLimits(rows=3, bytes=10_000, seconds=2.0)
    batch = Batch(SPECS)
    assert not batch.due(100.0, limits)  # an empty batch is never due
    batch.add(record(RAW, 0, 0, envelope("a")), now=10.0)
    assert not batch.due(11.9, limits)
    assert batch.due(12.0, limits)
    assert batch.time_left(11.5, limits) == pytest.approx(0.5)
    fill(batch, [record(RAW, 0, i, envelope(f"m{i}")) for i in (1, 2)])
    assert batch.due(10.0, limits)  # three records
    big = Batch(SPECS)
    big.add(record(RAW, 0, 0, envelope("x", user="u" * 200)), now=0.0)
    assert big.due(0.0, BatchLimits(rows=100, bytes=len(envelope("x", user="u" * 200)), seconds=9))


def test_a_metric_point_makes_its_batch_due_sooner() -> None:
    limits = BatchLimits(rows=1_000, bytes=10**9, seconds=2.0, live_seconds=0.25)
    batch = Batch(SPECS)
    batch.add(record(RAW, 0, 0, envelope("a")), now=10.0)
    assert not batch.due(11.0, limits)  # events alone wait the full age
    batch.add(record(POINTS, 0, 0, point(1, 5)), now=11.0)
    assert batch.time_left(11.1, limits) == pytest.approx(0.15)
    assert not batch.due(11.2, limits)
    assert batch.due(11.25, limits)  # the point waited its live limit: the events go with it
    assert not Batch(SPECS).due(11.25, limits)


def test_live_records_due_alone_leave_as_a_batch_of_their_own() -> None:
    limits = BatchLimits(rows=1_000, bytes=10**9, seconds=2.0, live_seconds=0.25)
    batch = Batch(SPECS)
    batch.add(record(RAW, 0, 0, envelope("a")), now=10.0)
    batch.add(record(POINTS, 1, 7, point(1, 5)), now=10.5)
    batch.add(record(POINTS, 1, 8, b"not json"), now=10.5)
    batch.add(record(RAW, 0, 1, envelope("b")), now=10.6)
    assert batch.only_live_due(10.75, limits)
    live = batch.take_live()
    assert (live.records, list(live.tables), live.next_offsets()) == (
        2,
        ["metric_points"],
        {(POINTS, 1): 9},
    )
    assert [letter.offset for letter in live.dead_letters] == [8]
    # the same token as the same records read into a batch alone: a retry is still a no-op
    alone = fill(
        Batch(SPECS), [record(POINTS, 1, 7, point(1, 5)), record(POINTS, 1, 8, b"not json")]
    )
    assert live.token(POINTS) == alone.token(POINTS)
    # the events stay, due at their own age counted from the first of them
    assert (batch.records, list(batch.tables), batch.next_offsets()) == (
        2,
        ["events"],
        {(RAW, 0): 2},
    )
    assert batch.dead_letters == []
    assert not batch.due(11.9, limits)
    assert batch.due(12.0, limits)
    assert not batch.only_live_due(12.0, limits)


def test_a_batch_due_by_its_events_age_is_written_whole() -> None:
    limits = BatchLimits(rows=1_000, bytes=10**9, seconds=2.0, live_seconds=0.25)
    batch = Batch(SPECS)
    batch.add(record(RAW, 0, 0, envelope("a")), now=10.0)
    batch.add(record(POINTS, 1, 7, point(1, 5)), now=11.9)
    assert batch.due(12.0, limits)
    assert not batch.only_live_due(12.0, limits)  # the events are due too: one flush
    only_points = fill(Batch(SPECS), [record(POINTS, 0, 0, point(1, 5))])
    assert not only_points.only_live_due(100.0, limits)  # nothing would be left to wait


def test_a_message_repeated_within_a_batch_is_one_row_the_first_copy() -> None:
    batch = fill(
        Batch(SPECS),
        [
            record(RAW, 0, 0, envelope("m1", amount=5)),
            record(RAW, 0, 1, envelope("m2", amount=7)),
            record(RAW, 0, 2, envelope("m1", amount=99)),  # a client re-send
        ],
    )
    rows = batch.tables["events"]
    assert [orjson.loads(line)["properties"]["amount"] for line in rows.lines] == [5, 7]
    assert rows.duplicates == 1
    assert batch.next_offsets() == {(RAW, 0): 3}  # the repeat is still consumed


def test_the_newest_version_of_a_metric_window_wins_whatever_the_order() -> None:
    batch = fill(
        Batch(SPECS),
        [
            record(POINTS, 1, 0, point(version=2, count=20)),
            record(POINTS, 1, 1, point(version=3, count=30)),
            record(POINTS, 1, 2, point(version=1, count=10)),
            record(POINTS, 1, 3, point(version=1, count=11, minute=1)),
        ],
    )
    counts = sorted(orjson.loads(line)["count"] for line in batch.tables["metric_points"].lines)
    assert counts == [11, 30]


def test_every_invalid_event_is_a_row_of_its_own_keyed_by_its_offset() -> None:
    invalid = (
        InvalidEvent(
            project_id="demo",
            received_at=AT,
            payload="{}",
            errors=[FieldError(field="type", message="required")],
        )
        .model_dump_json()
        .encode()
    )
    batch = fill(Batch(SPECS), [record(INVALID, 2, 7, invalid), record(INVALID, 2, 8, invalid)])
    rows = [orjson.loads(line) for line in batch.tables["invalid_events"].lines]
    assert [(r["kafka_partition"], r["kafka_offset"]) for r in rows] == [(2, 7), (2, 8)]
    assert rows[0]["errors"] == [{"field": "type", "message": "required"}]


def test_rows_hold_exactly_their_table_columns() -> None:
    exposure = Exposure(
        project_id="demo",
        experiment="e",
        unit_id="u",
        variation_id="b",
        timestamp=AT,
        message_id="m",
    )
    alert = AlertTransition(
        transition_id="t1",
        project_id="demo",
        rule_id="r",
        episode_id="e1",
        from_state=AlertState.PENDING,
        to_state=AlertState.FIRING,
        at=AT,
    )
    batch = fill(
        Batch(SPECS),
        [
            record(RAW, 0, 0, envelope("m1")),
            record(POINTS, 0, 0, point(1, 1)),
            record(topic_name(Topic.EXPOSURES, PREFIX), 0, 0, exposure.model_dump_json().encode()),
            record(topic_name(Topic.ALERTS, PREFIX), 0, 0, alert.model_dump_json().encode()),
        ],
    )
    for spec in TABLES.values():
        rows = batch.tables.get(spec.table)
        if rows is None:
            continue
        for line in rows.lines:
            assert set(orjson.loads(line)) == set(spec.columns), spec.table


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"project_id": "demo"}', "Field required"),
        (None, "no value"),
    ],
)
def test_undecodable_records_become_dead_letters_and_are_still_consumed(
    value: bytes | None, reason: str
) -> None:
    batch = fill(Batch(SPECS), [record(RAW, 1, 4, envelope("ok")), record(RAW, 1, 5, value)])
    assert len(batch.tables["events"]) == 1
    [letter] = batch.dead_letters
    assert (letter.source_topic, letter.partition, letter.offset) == (RAW, 1, 5)
    assert reason in letter.reason
    assert batch.next_offsets() == {(RAW, 1): 6}


def test_the_token_names_the_records_not_the_order_partitions_arrived_in() -> None:
    a = [record(RAW, 0, i, envelope(f"a{i}")) for i in range(3)]
    b = [record(RAW, 1, i, envelope(f"b{i}")) for i in range(2)]
    interleaved = [a[0], b[0], a[1], b[1], a[2]]
    assert fill(Batch(SPECS), a + b).token(RAW) == fill(Batch(SPECS), interleaved).token(RAW)


def test_another_cut_or_other_content_gives_another_token() -> None:
    records = [record(RAW, 0, i, envelope(f"m{i}")) for i in range(4)]
    whole = fill(Batch(SPECS), records).token(RAW)
    assert fill(Batch(SPECS), records[:3]).token(RAW) != whole
    # The same offsets with other bytes (a topic re-created under the same name).
    other = [record(RAW, 0, i, envelope(f"n{i}")) for i in range(4)]
    assert fill(Batch(SPECS), other).token(RAW) != whole
    assert whole.startswith(f"{RAW}|0:0-3:")
