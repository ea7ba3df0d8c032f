"""Metric series rolled up from the processor's minute windows in ``metric_points``.

The processor re-emits a window with a higher ``version`` whenever it changes (late events),
so each ``(window_start, breakdown)`` is first reduced to its newest version (``argMax`` on
``version``: right whatever the table engine has merged so far), then minutes are summed into
the requested interval: counts, sums and denominators exactly, unique users by merging the
sparse HyperLogLog registers (the maximum per register), percentiles by pooling the t-digest
centroids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway import examples
from sextant.gateway.context import Gateway
from sextant.gateway.problems import invalid
from sextant.gateway.sql import DATETIME, FINAL_PER_PARTITION, Params, run_query, utc
from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.metric_values import Components, metric_value, unique_users
from sextant.schemas.sketches import (
    Centroid,
    digest_quantile,
    hll_histogram_sql,
    hll_register_sql,
)

MINUTE_WINDOW_SECONDS = 60
QUANTILES = (0.5, 0.9, 0.95, 0.99)


class Interval(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def seconds(self) -> int:
        return {"minute": 60, "hour": 3600, "day": 86_400}[self.value]

    @property
    def sql_unit(self) -> str:
        """The SQL ``INTERVAL`` unit: fixed text from this closed vocabulary."""
        return {"minute": "MINUTE", "hour": "HOUR", "day": "DAY"}[self.value]


class Point(BaseModel):
    """One bucket of a metric.

    ``value`` is what the metric measures: the count, the sum, the mean (``sum / count``),
    unique users (HyperLogLog estimate), the conversion rate (``count / denominator``), or
    the median for percentile metrics (all four quantiles in ``quantiles``). ``null`` when
    undefined (a mean over no events) or unknown (unique users of events whose points carry
    no register: written before the registers became sparse, and not backfilled since).
    """

    t: datetime
    value: float | None
    count: int = 0
    sum: float = 0.0
    denominator: int = 0
    quantiles: dict[str, float | None] | None = None


class Series(BaseModel):
    breakdown: str | None = Field(description="The breakdown value; null for the total")
    points: list[Point]


class SeriesResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"example": examples.SERIES})

    metric: str
    metric_kind: MetricKind
    interval: Interval
    from_: datetime = Field(alias="from")
    to: datetime
    series: list[Series]


def quantile_label(q: float) -> str:
    return f"p{round(q * 100)}"


def quantiles_of(centroids: Sequence[Centroid]) -> dict[str, float | None]:
    """p50, p90, p95 and p99 of t-digest centroids (the union of several windows' digests),
    read as every part reads a digest (:func:`sextant.schemas.sketches.digest_quantile`)."""
    if not centroids:
        return {quantile_label(q): None for q in QUANTILES}
    return {quantile_label(q): digest_quantile(centroids, q) for q in QUANTILES}


def point_value(
    kind: MetricKind,
    count: int,
    total: float,
    denominator: int,
    uniques: float | None = None,
    centroids: Sequence[Centroid] = (),
) -> float | None:
    """The metric's headline value from a window's (or a bucket's) components: the one
    definition of :mod:`sextant.schemas.metric_values` (the alert rules use it too)."""
    components = Components(count, total, denominator, uniques, centroids)
    return metric_value(kind, components)


def bucket_starts(start: datetime, end: datetime, interval: Interval, limit: int) -> list[datetime]:
    """Bucket starts covering ``[start, end)``, ``start`` floored to the interval (UTC).

    A 422 problem naming ``interval`` when there would be more than ``limit`` buckets.
    """
    step = interval.seconds
    first = datetime.fromtimestamp(int(start.timestamp()) // step * step, UTC)
    count = max(0, -(-int((end - first).total_seconds()) // step))
    if count > limit:
        raise invalid(
            f"{count} {interval.value}s between 'from' and 'to'; at most {limit} per request",
            "interval",
        )
    return [first + timedelta(seconds=step * i) for i in range(count)]


def metric_series(
    gateway: Gateway,
    project_id: str,
    metric: MetricDefinition,
    start: datetime,
    end: datetime,
    interval: Interval,
    by_breakdown: bool,
) -> SeriesResult:
    """The metric between ``start`` and ``end`` per ``interval``, in total or per breakdown
    value; every bucket is present (zero, or null where undefined)."""
    buckets = bucket_starts(start, end, interval, gateway.settings.max_series_buckets)
    first = buckets[0] if buckets else start
    query = _SeriesQuery(gateway, project_id, metric, first, end, interval, by_breakdown)
    return SeriesResult(
        metric=metric.id,
        metric_kind=metric.metric_kind,
        interval=interval,
        from_=first,
        to=end,
        series=_assemble(metric.metric_kind, query.rows(), buckets, by_breakdown),
    )


@dataclass
class _SeriesQuery:
    """Rows ``(bucket, label, count, sum, denominator[, sketch])``, one per bucket and label,
    where the sketch is a rank histogram (unique users) or sorted centroids (percentiles).

    Windows are read through ``metric_points_latest`` (``FINAL`` on the version: only the
    newest version of each window counts, whatever the merges have done). Minute buckets of
    sketch metrics skip the aggregation (one window is one bucket) unless several breakdown
    values share a minute and the total is asked for: merging registers (one row per
    non-zero register, grouped by bucket, label and register) is the one costly step, so it
    runs only where it is needed. Only the rank histogram of each bucket leaves the warehouse.
    """

    gateway: Gateway
    project_id: str
    metric: MetricDefinition
    first: datetime
    end: datetime
    interval: Interval
    by_breakdown: bool

    def _where(self, params: Params) -> str:
        return (
            f"project_id = {params.add(self.project_id, 'String')}"
            f" AND metric = {params.add(self.metric.id, 'String')}"
            f" AND window_seconds = {MINUTE_WINDOW_SECONDS}"
            f" AND window_start >= {params.add(self.first, DATETIME)}"
            f" AND window_start < {params.add(self.end, DATETIME)}"
        )

    def rows(self) -> list[tuple[Any, ...]]:
        kind = self.metric.metric_kind
        if self.interval is Interval.MINUTE and kind in (
            MetricKind.UNIQUE_USERS,
            MetricKind.PERCENTILES,
        ):
            return self._minute_sketch_rows()
        return self._grouped_rows(None)

    def _grouped_rows(self, windows: list[datetime] | None) -> list[tuple[Any, ...]]:
        params = Params()
        kind = self.metric.metric_kind
        bucket = f"toStartOfInterval(window_start, INTERVAL 1 {self.interval.sql_unit})"
        label = "breakdown" if self.by_breakdown else "''"
        digest = ", arraySort(groupArrayArray(digest)) AS cents"
        where = self._where(params)
        if windows is not None:
            where += f" AND window_start IN {params.add(windows, f'Array({DATETIME})')}"
        sql = f"""
            SELECT {bucket} AS bucket, {label} AS label,
                   sum(count) AS c, sum(sum) AS s, sum(denominator) AS d
                   {digest if kind is MetricKind.PERCENTILES else ""}
            FROM metric_points_latest
            WHERE {where}
            GROUP BY bucket, label
        """
        if kind is MetricKind.UNIQUE_USERS:
            sql = f"""
                SELECT bucket, label, c, s, d, {hll_histogram_sql("regs")}
                FROM ({sql}) AS components
                LEFT JOIN ({_merged_registers_sql(bucket, label, where)}) AS sketches
                USING (bucket, label)
            """
        return run_query(self.gateway, "series", sql, params, FINAL_PER_PARTITION)

    def _minute_sketch_rows(self) -> list[tuple[Any, ...]]:
        params = Params()
        kind = self.metric.metric_kind
        sketch = hll_histogram_sql("hll") if kind is MetricKind.UNIQUE_USERS else "digest"
        sql = f"""
            SELECT window_start, breakdown, count, sum, denominator, {sketch}
            FROM metric_points_latest
            WHERE {self._where(params)}
        """
        rows = run_query(self.gateway, "series", sql, params, FINAL_PER_PARTITION)
        if self.by_breakdown:
            return rows
        per_window: dict[datetime, list[tuple[Any, ...]]] = {}
        for row in rows:
            per_window.setdefault(row[0], []).append(row)
        single = [(w, "", *found[0][2:]) for w, found in per_window.items() if len(found) == 1]
        shared = {w: found for w, found in per_window.items() if len(found) > 1}
        if not shared:
            return single
        if kind is MetricKind.PERCENTILES:
            return single + [_pooled(w, found) for w, found in shared.items()]
        return single + self._grouped_rows(sorted(shared))


def _merged_registers_sql(bucket: str, label: str, where: str) -> str:
    """SQL: per bucket and label, ``regs``: the sparse registers of its points merged (the
    largest packed int of each register, see ``sextant.schemas.sketches``)."""
    return f"""
        SELECT bucket, label, groupArray(packed) AS regs
        FROM (
            SELECT {bucket} AS bucket, {label} AS label, max(element) AS packed
            FROM metric_points_latest ARRAY JOIN hll AS element
            WHERE {where}
            GROUP BY bucket, label, {hll_register_sql("element")}
        )
        GROUP BY bucket, label
    """


def _pooled(window: datetime, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One minute's percentile rows of several breakdown values as one: components summed,
    centroids pooled."""
    centroids = sorted(c for row in rows for c in row[5])
    return (
        window,
        "",
        sum(int(r[2]) for r in rows),
        sum(float(r[3]) for r in rows),
        sum(int(r[4]) for r in rows),
        centroids,
    )


def _point(kind: MetricKind, t: datetime, row: tuple[Any, ...] | None) -> Point:
    """A bucket's point (built without re-validation: a series has thousands)."""
    if row is None:
        return Point.model_construct(
            t=t,
            value=metric_value(kind, Components()),
            count=0,
            sum=0.0,
            denominator=0,
            quantiles=None,
        )
    count, total, denominator = int(row[2]), float(row[3]), int(row[4])
    uniques = None
    quantiles = None
    centroids: list[Centroid] = []
    if kind is MetricKind.UNIQUE_USERS:
        uniques = unique_users(count, list(row[5]))
    elif kind is MetricKind.PERCENTILES:
        centroids = [(float(m), float(w)) for m, w in row[5]]
        quantiles = quantiles_of(centroids)
    value = point_value(kind, count, total, denominator, uniques, centroids)
    return Point.model_construct(
        t=t, value=value, count=count, sum=total, denominator=denominator, quantiles=quantiles
    )


def _assemble(
    kind: MetricKind, rows: list[tuple[Any, ...]], buckets: list[datetime], by_breakdown: bool
) -> list[Series]:
    by_label: dict[str, dict[datetime, tuple[Any, ...]]] = {}
    for row in rows:
        by_label.setdefault(str(row[1]), {})[utc(row[0])] = row
    if not by_label:
        by_label[""] = {}
    ordered = sorted(by_label.items(), key=lambda item: -sum(int(r[2]) for r in item[1].values()))
    return [
        Series(
            breakdown=(label or None) if by_breakdown else None,
            points=[_point(kind, t, found.get(t)) for t in buckets],
        )
        for label, found in ordered
    ]
