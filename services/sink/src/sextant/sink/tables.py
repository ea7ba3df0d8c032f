"""Which topic goes to which table, and how one record becomes one row.

Every row is a JSON object whose keys are the table's columns (the engine parses it). A row
also carries a duplicate key and a version: within a batch only one row per key is kept, the
one with the highest version (the first one on a tie), so a repeated message or a superseded
metric window is not sent twice. The tables' engines make the same choice across batches.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter

from sextant.core.batch_consumer import ConsumedRecord
from sextant.schemas.events import Envelope, InvalidEvent
from sextant.schemas.identity import IdentityDecision, PersonOverride
from sextant.schemas.records import AlertTransition, Exposure, MetricPoint
from sextant.schemas.statistics import STATISTICS_COLUMNS, ExperimentMetricStatistics
from sextant.schemas.topics import Topic

ModelT = TypeVar("ModelT", bound=BaseModel)


class Row(NamedTuple):
    key: Hashable | None
    """Rows with the same key are one fact; None means every row is distinct."""
    version: int
    """Among rows with one key, the highest version wins."""
    line: bytes
    """The row as one JSON object, keys being column names."""


class PoisonRecordError(ValueError):
    """The record can never become a row (not JSON, not the topic's schema, no value)."""


@dataclass(frozen=True)
class TableSpec:
    topic: Topic
    table: str
    columns: tuple[str, ...]
    encode: Callable[[ConsumedRecord], Row]
    live: bool = False
    """Read as it happens (dashboards, alert views): written after a shorter wait."""


def _decoder(
    model: type[ModelT],
) -> tuple[Callable[[bytes], ModelT], Callable[[ModelT], bytes]]:
    adapter = TypeAdapter(model)
    return adapter.validate_json, adapter.dump_json


def _value(record: ConsumedRecord) -> bytes:
    if record.value is None:
        raise PoisonRecordError("the record has no value")
    return record.value


def _decode(parse: Callable[[bytes], ModelT], record: ConsumedRecord) -> ModelT:
    try:
        return parse(_value(record))
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise PoisonRecordError(f"not a valid record: {error}") from error


# pydantic writes the rows, not the collector's orjson encoder (envelope_json): a batch keeps
# every row alive until its insert, and orjson's over-sized output buffers then cost more to
# keep than to write (8 µs against pydantic's 4.8 µs a row, measured on bench events).
_parse_envelope, _dump_envelope = _decoder(Envelope)
_parse_invalid = TypeAdapter(InvalidEvent).validate_json
_parse_exposure, _dump_exposure = _decoder(Exposure)
_parse_point, _dump_point = _decoder(MetricPoint)
_parse_alert, _dump_alert = _decoder(AlertTransition)
_parse_statistics = TypeAdapter(ExperimentMetricStatistics).validate_json
_parse_override, _dump_override = _decoder(PersonOverride)
_parse_decision, _dump_decision = _decoder(IdentityDecision)


def _event_row(record: ConsumedRecord) -> Row:
    event = _decode(_parse_envelope, record)
    return Row((event.project_id, event.message_id), 0, _dump_envelope(event))


def _invalid_row(record: ConsumedRecord) -> Row:
    invalid = _decode(_parse_invalid, record)
    # The record's place in the topic is its identity (see 0002_invalid_events.sql).
    fields: dict[str, Any] = invalid.model_dump(mode="json")
    fields |= {"kafka_partition": record.partition, "kafka_offset": record.offset}
    return Row(None, 0, orjson.dumps(fields))


def _exposure_row(record: ConsumedRecord) -> Row:
    exposure = _decode(_parse_exposure, record)
    key = (
        exposure.project_id,
        exposure.experiment,
        exposure.unit_id,
        exposure.variation_id,
        exposure.timestamp,
    )
    return Row(key, 0, _dump_exposure(exposure))


def _point_row(record: ConsumedRecord) -> Row:
    point = _decode(_parse_point, record)
    key = (
        point.project_id,
        point.metric,
        point.window_seconds,
        point.window_start,
        point.breakdown,
    )
    return Row(key, point.version, _dump_point(point))


def _alert_row(record: ConsumedRecord) -> Row:
    alert = _decode(_parse_alert, record)
    return Row((alert.project_id, alert.rule_id, alert.transition_id), 0, _dump_alert(alert))


def _statistics_row(record: ConsumedRecord) -> Row:
    found = _decode(_parse_statistics, record)
    key = (
        found.project_id,
        found.experiment,
        found.metric,
        found.variant,
        found.source_partition,
    )
    return Row(key, found.version, orjson.dumps(found.to_row()))


def _override_row(record: ConsumedRecord) -> Row:
    override = _decode(_parse_override, record)
    key = (override.project_id, override.distinct_id)
    return Row(key, override.version, _dump_override(override))


def _decision_row(record: ConsumedRecord) -> Row:
    decision = _decode(_parse_decision, record)
    key = (decision.project_id, decision.edge_partition, decision.edge_offset)
    return Row(key, 0, _dump_decision(decision))


TABLES: dict[Topic, TableSpec] = {
    spec.topic: spec
    for spec in (
        TableSpec(Topic.EVENTS_RAW, "events", tuple(Envelope.model_fields), _event_row),
        TableSpec(
            Topic.EVENTS_INVALID,
            "invalid_events",
            (*InvalidEvent.model_fields, "kafka_partition", "kafka_offset"),
            _invalid_row,
        ),
        TableSpec(Topic.EXPOSURES, "exposures", tuple(Exposure.model_fields), _exposure_row),
        TableSpec(
            Topic.METRIC_POINTS,
            "metric_points",
            tuple(MetricPoint.model_fields),
            _point_row,
            live=True,
        ),
        TableSpec(
            Topic.EXPERIMENT_STATISTICS,
            "experiment_statistics",
            STATISTICS_COLUMNS,
            _statistics_row,
            live=True,
        ),
        TableSpec(
            Topic.ALERTS,
            "alert_events",
            tuple(AlertTransition.model_fields),
            _alert_row,
            live=True,
        ),
        TableSpec(
            Topic.PERSON_OVERRIDES,
            "person_overrides",
            tuple(PersonOverride.model_fields),
            _override_row,
            live=True,
        ),
        TableSpec(
            Topic.IDENTITY_DECISIONS,
            "identity_decisions",
            tuple(IdentityDecision.model_fields),
            _decision_row,
        ),
    )
}
"""The topics the sink consumes, each with its table."""
