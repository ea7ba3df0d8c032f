"""Metric series rolled up from the processor's minute windows in ``metric_points``.

The processor re-emits a window with a higher ``version`` whenever it changes (late events),
so each ``(window_start, breakdown)`` is first reduced to its newest version (``argMax`` on
``version``: right whatever the table engine has merged so far), then minutes are summed into
the requested interval: counts, sums and denominators exactly, unique users by merging the
HyperLogLog registers (``maxForEach``), percentiles by pooling the t-digest centroids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway import examples
from sextant.gateway.context import Gateway
from sextant.gateway.problems import invalid
from sextant.gateway.sql import DATETIME, Params, run_query, utc
from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.sketches import Centroid, digest_quantile, hll_estimate_from_histogram

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
    undefined (a mean over no events).
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


def quantiles_of(centroids: list[Centroid]) -> dict[str, float | None]:
    """p50, p90, p95 and p99 of t-digest centroids sorted by mean (the union of several
    windows' digests: reading the union is at least as accurate as compressing it first)."""
    if not centroids:
        return {quantile_label(q): None for q in QUANTILES}
    return {quantile_label(q): digest_quantile(centroids, q) for q in QUANTILES}


def point_value(
    kind: MetricKind,
    count: int,
    total: float,
    denominator: int,
    uniques: float | None = None,
    quantiles: dict[str, float | None] | None = None,
) -> float | None:
    """The metric's headline value from a window's (or a bucket's) components."""
    if kind is MetricKind.COUNT:
        return float(count)
    if kind is MetricKind.SUM:
        return total
    if kind is MetricKind.MEAN:
        return total / count if count else None
    if kind is MetricKind.UNIQUE_USERS:
        return round(uniques) if uniques is not None else 0.0
    if kind is MetricKind.CONVERSION:
        return count / denominator if denominator else None
    return (quantiles or {}).get("p50")


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


def _components(kind: MetricKind) -> tuple[str, str]:
    """(the newest-version tuple, the per-bucket aggregates) for a metric kind.

    Sketch columns are read only for the kinds that need them: they are the heavy ones.
    """
    fields = ["count", "sum", "denominator"]
    aggregates = ["sum(p.1) AS c", "sum(p.2) AS s", "sum(p.3) AS d"]
    if kind is MetricKind.UNIQUE_USERS:
        fields.append("hll")
        aggregates.append("maxForEach(p.4) AS regs")
    elif kind is MetricKind.PERCENTILES:
        fields.append("digest")
        aggregates.append("groupArrayArray(p.4) AS cents")
    return f"argMax(tuple({', '.join(fields)}), version) AS p", ", ".join(aggregates)


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
    params = Params()
    newest, aggregates = _components(metric.metric_kind)
    group = "bucket, breakdown" if by_breakdown else "bucket"
    label = "breakdown" if by_breakdown else "'' AS breakdown"
    first = buckets[0] if buckets else start
    per_bucket = f"""
        SELECT toStartOfInterval(window_start, INTERVAL 1 {interval.sql_unit}) AS bucket,
               {label}, {aggregates}
        FROM (
            SELECT window_start, breakdown, {newest}
            FROM metric_points
            WHERE project_id = {params.add(project_id, "String")}
              AND metric = {params.add(metric.id, "String")}
              AND window_seconds = {MINUTE_WINDOW_SECONDS}
              AND window_start >= {params.add(first, DATETIME)}
              AND window_start < {params.add(end, DATETIME)}
            GROUP BY window_start, breakdown
        )
        GROUP BY {group}
    """
    if metric.metric_kind is MetricKind.UNIQUE_USERS:
        # The merged registers' rank histogram is all the estimator needs: a few rows per
        # bucket leave the warehouse instead of 16,384 registers.
        sql = f"""
            SELECT bucket, breakdown, any(c), any(s), any(d), groupArray((rank, n))
            FROM (
                SELECT bucket, breakdown, c, s, d, rank, count() AS n
                FROM ({per_bucket}) LEFT ARRAY JOIN regs AS rank
                GROUP BY bucket, breakdown, c, s, d, rank
            )
            GROUP BY bucket, breakdown
            ORDER BY bucket
        """
    elif metric.metric_kind is MetricKind.PERCENTILES:
        sql = f"""
            SELECT bucket, breakdown, c, s, d, arraySort(cents) FROM ({per_bucket}) ORDER BY bucket
        """
    else:
        sql = f"SELECT bucket, breakdown, c, s, d FROM ({per_bucket}) ORDER BY bucket"
    rows = run_query(gateway, "series", sql, params)
    return SeriesResult(
        metric=metric.id,
        metric_kind=metric.metric_kind,
        interval=interval,
        from_=first,
        to=end,
        series=_assemble(metric.metric_kind, rows, buckets, by_breakdown),
    )


def _point(kind: MetricKind, t: datetime, row: tuple[Any, ...] | None) -> Point:
    if row is None:
        empty = (
            None
            if kind in (MetricKind.MEAN, MetricKind.CONVERSION, MetricKind.PERCENTILES)
            else 0.0
        )
        return Point(t=t, value=empty)
    count, total, denominator = int(row[2]), float(row[3]), int(row[4])
    uniques = None
    quantiles = None
    if kind is MetricKind.UNIQUE_USERS:
        uniques = hll_estimate_from_histogram(_histogram(row[5]))
    elif kind is MetricKind.PERCENTILES:
        quantiles = quantiles_of([(float(m), float(w)) for m, w in row[5]])
    value = point_value(kind, count, total, denominator, uniques, quantiles)
    return Point(
        t=t, value=value, count=count, sum=total, denominator=denominator, quantiles=quantiles
    )


def _histogram(pairs: list[tuple[int, int]]) -> list[int]:
    """``[(rank, registers)]`` → registers per rank; a bucket without a sketch counts one
    empty register (so it estimates 0)."""
    histogram = [0] * (max((int(rank) for rank, _ in pairs), default=0) + 1)
    for rank, count in pairs:
        histogram[int(rank)] += int(count)
    return histogram


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
