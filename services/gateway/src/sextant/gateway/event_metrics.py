"""A metric's value per day (or hour) computed from the ``events`` table.

The live windows (``series.py``) hold what the processor computed since a metric existed;
an outcome looks back further, to its start date. So these read the events themselves, with
the meaning each metric kind has everywhere else: counts and unique users of the event, sum,
mean and median of its numeric property (a JSON number, ``sextant.schemas.filters``), a
conversion as the share of the users whose first event of the bucket was followed by the
conversion event within the conversion window, and NPS and CSAT as the mean of each
response's value (``sextant.schemas.metric_values``, as the processor's windows hold them).
Filters are the definition's, as :func:`sextant.gateway.sql.filters_sql` reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sextant.gateway.context import Gateway
from sextant.gateway.persons import person_events
from sextant.gateway.series import Interval, bucket_starts
from sextant.gateway.sql import (
    DATETIME,
    FINAL_PER_PARTITION,
    Params,
    filters_sql,
    property_number,
    run_query,
    utc,
)
from sextant.schemas.config import SURVEY_KINDS, MetricDefinition, MetricKind
from sextant.schemas.metric_values import response_value_sql

_AGGREGATES = {
    MetricKind.SUM: "sum",
    MetricKind.MEAN: "avg",
    MetricKind.PERCENTILES: "quantileExact(0.5)",
    MetricKind.NPS: "avg",
    MetricKind.CSAT: "avg",
}
"""How a bucket aggregates the values of a kind read from a numeric property."""


def _where(
    params: Params,
    project_id: str,
    metric: MetricDefinition,
    start: datetime,
    end: datetime,
    event: str,
) -> str:
    return (
        f"project_id = {params.add(project_id, 'String')}"
        f" AND timestamp >= {params.add(start, DATETIME)}"
        f" AND timestamp < {params.add(end, DATETIME)}"
        f" AND event = {params.add(event, 'String')}"
        f" AND {filters_sql(params, metric.filters, 'filters')}"
    )


def _number(params: Params, name: str | None) -> str:
    return property_number(params, name or "", "property")


def metric_values(
    gateway: Gateway,
    project_id: str,
    metric: MetricDefinition,
    start: datetime,
    end: datetime,
    interval: Interval,
) -> list[tuple[datetime, float | None]]:
    """``(bucket start, value)`` for every bucket of ``[start, end)``; ``None`` where the
    value is undefined (a mean, rate or score over nothing)."""
    buckets = bucket_starts(start, end, interval, gateway.settings.max_series_buckets)
    if not buckets:
        return []
    rows = _rows(gateway, project_id, metric, buckets[0], end, interval)
    found = {utc(row[0]): row for row in rows}
    return [(t, _value(metric, found.get(t))) for t in buckets]


def _rows(
    gateway: Gateway,
    project_id: str,
    metric: MetricDefinition,
    start: datetime,
    end: datetime,
    interval: Interval,
) -> list[tuple[Any, ...]]:
    params = Params()
    kind = metric.metric_kind
    bucket = f"toStartOfInterval(timestamp, INTERVAL 1 {interval.sql_unit})"
    if kind is MetricKind.CONVERSION:
        where_a = _where(params, project_id, metric, start, end, metric.event)
        window = int(metric.conversion_window_seconds)
        b_event = params.add(metric.conversion_event or "", "String")
        b_start = params.add(start, DATETIME)
        b_end = params.add(end, DATETIME)
        project = params.add(project_id, "String")
        sql = f"""
            SELECT bucket, count() AS users,
                   countIf(arrayExists(x -> x >= first_a AND x <= first_a + {window}, bs))
            FROM (
                SELECT person_key, {bucket} AS bucket, min(timestamp) AS first_a
                FROM {person_events(params, project_id)} WHERE {where_a}
                GROUP BY person_key, bucket
            ) AS a
            LEFT JOIN (
                SELECT person_key, groupArray(timestamp) AS bs
                FROM {person_events(params, project_id)}
                WHERE project_id = {project} AND event = {b_event}
                  AND timestamp >= {b_start} AND timestamp < {b_end} + INTERVAL {window} SECOND
                GROUP BY person_key
            ) AS b USING (person_key)
            GROUP BY bucket
        """
        return run_query(gateway, "metric_values", sql, params, FINAL_PER_PARTITION)
    where = _where(params, project_id, metric, start, end, metric.event)
    if kind is MetricKind.COUNT:
        measure = "count()"
    elif kind is MetricKind.UNIQUE_USERS:
        measure = "uniqExact(person_key)"
        sql = (
            f"SELECT {bucket} AS bucket, {measure} FROM {person_events(params, project_id)}"
            f" WHERE {where} GROUP BY bucket"
        )
        return run_query(gateway, "metric_values", sql, params, FINAL_PER_PARTITION)
    else:
        value = _number(params, metric.property)
        if kind in SURVEY_KINDS:
            satisfied = params.add(float(metric.satisfied_from), "Float64")
            value = f"{value} AS n, {response_value_sql(kind, 'n', satisfied)}"
        measure = f"{_AGGREGATES[kind]}(v), count(v)"
        sql = f"""
            SELECT bucket, {measure} FROM (
                SELECT {bucket} AS bucket, {value} AS v FROM events_unique WHERE {where}
            ) GROUP BY bucket
        """
        return run_query(gateway, "metric_values", sql, params, FINAL_PER_PARTITION)
    sql = f"SELECT {bucket} AS bucket, {measure} FROM events_unique WHERE {where} GROUP BY bucket"
    return run_query(gateway, "metric_values", sql, params, FINAL_PER_PARTITION)


def _value(metric: MetricDefinition, row: tuple[Any, ...] | None) -> float | None:
    kind = metric.metric_kind
    if row is None:
        return 0.0 if kind in (MetricKind.COUNT, MetricKind.UNIQUE_USERS, MetricKind.SUM) else None
    if kind in (MetricKind.COUNT, MetricKind.UNIQUE_USERS):
        return float(row[1])
    if kind is MetricKind.CONVERSION:
        return int(row[2]) / int(row[1]) if int(row[1]) else None
    if int(row[2]) == 0:
        return 0.0 if kind is MetricKind.SUM else None
    value = float(row[1])
    return value if value == value else None
