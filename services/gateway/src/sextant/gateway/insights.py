"""Ad-hoc questions over the ``events`` table: trends, funnels and retention.

Events are read through ``events_unique`` (the table ``FINAL``): a batch the sink inserted
twice, or an event a client re-sent, counts once whatever the merges have done so far.

Every query is scoped to the key's project and to a time range; names and values arrive as
bound parameters (see :mod:`sextant.gateway.sql`). A breakdown keeps its ``breakdown_limit``
most frequent values (by events) and folds the rest into ``$other``; an event without the
property is in the breakdown value ``null``.

Filters and breakdowns name an event's property, or with ``"type": "person"`` a property of
the event's person (:mod:`sextant.gateway.person_properties`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sextant.gateway import examples
from sextant.gateway.context import Gateway
from sextant.gateway.person_properties import (
    BREAKDOWN_DESCRIPTION,
    BreakdownField,
    PersonProperties,
    QueryFilter,
    breakdown_sql,
    filters_sql,
)
from sextant.gateway.persons import person_events
from sextant.gateway.series import Interval, bucket_starts
from sextant.gateway.sql import (
    DATETIME,
    FINAL_PER_PARTITION,
    Params,
    in_range_utc,
    run_query,
    utc,
)
from sextant.schemas.config import EventName

OTHER = "$other"
MAX_FILTERS = 20
MAX_FUNNEL_STEPS = 10
MAX_RETENTION_PERIODS = 31  # ClickHouse's retention() takes at most 32 conditions
Filters = Annotated[list[QueryFilter], Field(max_length=MAX_FILTERS)]


class _TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime = Field(alias="from", description="Start (inclusive), ISO 8601")
    to: datetime = Field(description="End (exclusive), ISO 8601")

    @field_validator("from_", "to")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return in_range_utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_ >= self.to:
            raise ValueError("'from' must be before 'to'")
        if self.to - self.from_ > timedelta(days=3660):
            raise ValueError("the range may span at most ten years")
        return self


class TrendsQuery(_TimeRange):
    """Count (or unique users) of one event per interval, filtered, optionally broken down."""

    model_config = ConfigDict(json_schema_extra={"example": examples.TRENDS_REQUEST})

    event: EventName
    measure: Literal["count", "unique_users"] = "count"
    interval: Interval = Interval.HOUR
    filters: Filters = Field(default_factory=list)
    breakdown: BreakdownField | None = Field(default=None, description=BREAKDOWN_DESCRIPTION)
    breakdown_limit: int = Field(default=10, ge=1, le=100)


class TrendPoint(BaseModel):
    t: datetime
    value: int


class TrendSeries(BaseModel):
    breakdown: str | None
    total: int = Field(description="Over the whole range (unique users: not a sum of buckets)")
    points: list[TrendPoint]


class TrendsResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": examples.TRENDS_RESULT})

    event: str
    measure: str
    interval: Interval
    series: list[TrendSeries]


class FunnelStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: EventName
    filters: Filters = Field(default_factory=list)


class FunnelQuery(_TimeRange):
    """Users who did the steps in order, each within ``window_seconds`` of entering.

    A user enters with a first step inside ``[from, to)``; later steps may fall up to
    ``window_seconds`` after ``to``.
    """

    model_config = ConfigDict(json_schema_extra={"example": examples.FUNNEL_REQUEST})

    steps: list[FunnelStep] = Field(min_length=2, max_length=MAX_FUNNEL_STEPS)
    window_seconds: int = Field(default=86_400, ge=1, le=90 * 86_400)
    breakdown: BreakdownField | None = Field(
        default=None,
        description=f"{BREAKDOWN_DESCRIPTION}; an event property is read from each user's"
        " first step-1 event",
    )
    breakdown_limit: int = Field(default=10, ge=1, le=100)


class FunnelStepResult(BaseModel):
    step: int
    event: str
    users: int
    conversion_from_previous: float | None
    conversion_from_start: float | None
    median_seconds_from_previous: float | None
    median_seconds_from_start: float | None


class FunnelGroup(BaseModel):
    breakdown: str | None
    steps: list[FunnelStepResult]


class FunnelResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": examples.FUNNEL_RESULT})

    window_seconds: int
    groups: list[FunnelGroup]


class RetentionQuery(_TimeRange):
    """Cohorts by each user's first ``cohort_event`` in ``[from, to)``, and how many come back
    with ``return_event`` in each following day or week."""

    model_config = ConfigDict(json_schema_extra={"example": examples.RETENTION_REQUEST})

    cohort_event: EventName
    return_event: EventName
    cohort_filters: Filters = Field(default_factory=list)
    return_filters: Filters = Field(default_factory=list)
    period: Literal["day", "week"] = "day"
    periods: int = Field(default=7, ge=1, le=MAX_RETENTION_PERIODS)


class RetentionCohort(BaseModel):
    cohort: datetime
    users: int
    returned: list[int] = Field(description="Index 0 is the cohort itself; k: returned in period k")
    rates: list[float]


class RetentionResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": examples.RETENTION_RESULT})

    period: Literal["day", "week"]
    cohorts: list[RetentionCohort]


# --- Shared pieces --------------------------------------------------------------------------


def _scope(params: Params, project_id: str, start: datetime, end: datetime) -> str:
    return (
        f"project_id = {params.add(project_id, 'String')}"
        f" AND timestamp >= {params.add(start, DATETIME)}"
        f" AND timestamp < {params.add(end, DATETIME)}"
    )


def _top_values(
    gateway: Gateway, name: str, rows: str, params: Params, value_sql: str, limit: int
) -> list[str]:
    """The ``limit`` most frequent values of ``value_sql`` among ``rows`` (what follows
    ``FROM``)."""
    sql = f"""
        SELECT {value_sql} AS value, count() AS n FROM {rows}
        GROUP BY value ORDER BY n DESC, value LIMIT {int(limit)}
    """
    return [str(row[0]) for row in run_query(gateway, name, sql, params, FINAL_PER_PARTITION)]


def _label(value: Any) -> str | None:
    text = str(value)
    return text or None


# --- Trends ---------------------------------------------------------------------------------


def trends(gateway: Gateway, project_id: str, query: TrendsQuery) -> TrendsResult:
    """The event per interval (and per breakdown value), with totals over the range."""
    buckets = bucket_starts(
        query.from_, query.to, query.interval, gateway.settings.max_series_buckets
    )
    params = Params()
    persons = PersonProperties(params, project_id)
    where = (
        f"{_scope(params, project_id, buckets[0], query.to)}"
        f" AND event = {params.add(query.event, 'String')}"
        f" AND {filters_sql(params, persons, query.filters, 'filters', of='event')}"
    )
    of_person = filters_sql(params, persons, query.filters, "filters", of="person")
    value_sql = breakdown_sql(params, persons, query.breakdown, "breakdown")
    unique = query.measure == "unique_users"
    state = ", uniqState(person_key) AS users" if unique else ""
    by_person = unique or persons.used
    source = person_events(params, project_id) if by_person else "events_unique"
    measure = "uniqMerge(users)" if unique else "sum(n)"
    # One scan: counts (and mergeable unique-user states) per bucket and value; the values
    # ranked by their events over the whole range; beyond the limit, relabelled and merged.
    sql = f"""
        SELECT bucket, label, {measure} AS value, grouping(bucket) AS is_total
        FROM (
            SELECT bucket, if(rank <= {int(query.breakdown_limit)}, value, '{OTHER}') AS label,
                   n{", users" if unique else ""}
            FROM (
                SELECT *, dense_rank() OVER (ORDER BY total DESC, value) AS rank
                FROM (
                    SELECT *, sum(n) OVER (PARTITION BY value) AS total
                    FROM (
                        SELECT toStartOfInterval(timestamp, INTERVAL 1 {query.interval.sql_unit})
                                   AS bucket,
                               {value_sql} AS value, count() AS n{state}
                        FROM {persons.scan(source, where, of_person)}
                        GROUP BY bucket, value
                    )
                )
            )
        )
        GROUP BY GROUPING SETS ((label, bucket), (label))
    """
    rows = run_query(gateway, "trends", sql, params, FINAL_PER_PARTITION)
    totals: dict[str, int] = {}
    points: dict[str, dict[datetime, int]] = {}
    for bucket, label, value, is_total in rows:
        if is_total:
            totals[str(label)] = int(value)
        else:
            points.setdefault(str(label), {})[utc(bucket)] = int(value)
    series = [
        TrendSeries(
            breakdown=_label(label) if query.breakdown is not None else None,
            total=total,
            points=[TrendPoint(t=t, value=points.get(label, {}).get(t, 0)) for t in buckets],
        )
        for label, total in sorted(totals.items(), key=lambda item: -item[1])
    ]
    if not series:
        series = [
            TrendSeries(breakdown=None, total=0, points=[TrendPoint(t=t, value=0) for t in buckets])
        ]
    return TrendsResult(
        event=query.event, measure=query.measure, interval=query.interval, series=series
    )


# --- Funnels --------------------------------------------------------------------------------


def _step_conditions(params: Params, persons: PersonProperties, query: FunnelQuery) -> list[str]:
    conditions = []
    for i, step in enumerate(query.steps):
        event = params.add(step.event, "String")
        filters = filters_sql(params, persons, step.filters, f"steps.{i}.filters")
        conditions.append(f"toUInt8(event = {event} AND {filters})")
    return conditions


def _chain_times(steps: int, window: int) -> str:
    """Per user, the time of each step along the chain that starts at the user's first
    step-1 event and takes the earliest next step each time (within the window); 0 where
    the chain does not reach the step. ``evs`` holds ``(second, step mask)`` sorted by time;
    bit k of the mask says the event is step k (0-based)."""
    times = ["arrayFirst(x -> bitTest(x.2, 0), evs).1 AS t0"]
    for k in range(1, steps):
        times.append(
            f"if(t{k - 1} > 0, arrayFirst(x -> bitTest(x.2, {k}) AND x.1 >= t{k - 1}"
            f" AND x.1 <= t0 + {window}, evs).1, 0) AS t{k}"
        )
    return ", ".join(times)


def funnel(gateway: Gateway, project_id: str, query: FunnelQuery) -> FunnelResult:
    """Users per step (ClickHouse ``windowFunnel``), conversions and median times."""
    params = Params()
    persons = PersonProperties(params, project_id)
    window = int(query.window_seconds)
    steps = len(query.steps)
    conditions = _step_conditions(params, persons, query)
    end = params.add(query.to, DATETIME)
    # Step 1 must start inside the range; later steps may complete up to a window after it.
    conditions[0] = f"toUInt8({conditions[0]} AND timestamp < {end})"
    events = params.add(sorted({s.event for s in query.steps}), "Array(String)")
    where = (
        f"{_scope(params, project_id, query.from_, query.to + timedelta(seconds=window))}"
        f" AND event IN {events}"
    )
    breakdown = query.breakdown
    value_sql = breakdown_sql(params, persons, breakdown, "breakdown")
    label_sql = "''"
    if breakdown is not None:
        source = person_events(params, project_id) if persons.used else "events_unique"
        entered = persons.scan(source, where, f"{conditions[0]} = 1")
        top = _top_values(gateway, "funnel_top", entered, params, value_sql, query.breakdown_limit)
        label_sql = (
            f"if(argMinIf(value, timestamp, c0 = 1) AS first_value"
            f" IN {params.add(top, 'Array(String)')}, first_value, '{OTHER}')"
        )
    flags = ", ".join(f"{c} AS c{k}" for k, c in enumerate(conditions))
    flag_names = ", ".join(f"c{k}" for k in range(steps))
    mask = " + ".join(f"{1 << k} * c{k}" for k in range(steps))
    reached = ", ".join(f"countIf(level >= {k + 1})" for k in range(steps))
    from_previous = ", ".join(
        f"quantileExactInclusiveIf(0.5)(t{k} - t{k - 1}, level >= {k + 1} AND t{k} > 0)"
        for k in range(1, steps)
    )
    from_start = ", ".join(
        f"quantileExactInclusiveIf(0.5)(t{k} - t0, level >= {k + 1} AND t{k} > 0)"
        for k in range(1, steps)
    )
    # Users are grouped by a 64-bit hash of their id: cheaper than strings, and a collision
    # (below 3 in 100,000 among a billion users) would only merge two users' paths.
    sql = f"""
        SELECT label, [{reached}], [{from_previous}], [{from_start}]
        FROM (
            SELECT label, level, {_chain_times(steps, window)}
            FROM (
                SELECT user, {label_sql} AS label,
                       windowFunnel({window})(toDateTime(timestamp), {flag_names}) AS level,
                       arraySort(groupArray(tuple(toUInt32(timestamp), toUInt8({mask})))) AS evs
                FROM (
                    SELECT person_key AS user, timestamp, {value_sql} AS value,
                           {flags}
                    FROM {persons.scan(person_events(params, project_id), where)}
                )
                GROUP BY user
            )
            WHERE level > 0
        )
        GROUP BY label
    """
    found = run_query(gateway, "funnel", sql, params, FINAL_PER_PARTITION)
    rows = sorted(found, key=lambda row: -int(row[1][0]))
    groups = [
        FunnelGroup(
            breakdown=_label(label) if query.breakdown is not None else None,
            steps=_funnel_steps(query, counts, previous, start),
        )
        for label, counts, previous, start in rows
    ]
    if not groups:
        groups = [FunnelGroup(breakdown=None, steps=_funnel_steps(query, [0] * steps, [], []))]
    return FunnelResult(window_seconds=window, groups=groups)


def _median(values: list[float], index: int, users: int) -> float | None:
    if index < 0 or index >= len(values) or users == 0:
        return None
    value = float(values[index])
    return value if value == value else None  # NaN: nobody to take a median of


def _funnel_steps(
    query: FunnelQuery, counts: list[int], previous: list[float], start: list[float]
) -> list[FunnelStepResult]:
    results = []
    first = int(counts[0]) if counts else 0
    for k, step in enumerate(query.steps):
        users = int(counts[k])
        before = int(counts[k - 1]) if k else users
        results.append(
            FunnelStepResult(
                step=k + 1,
                event=step.event,
                users=users,
                conversion_from_previous=users / before if before else None,
                conversion_from_start=users / first if first else None,
                median_seconds_from_previous=_median(previous, k - 1, users),
                median_seconds_from_start=_median(start, k - 1, users),
            )
        )
    return results


# --- Retention ------------------------------------------------------------------------------


def retention(gateway: Gateway, project_id: str, query: RetentionQuery) -> RetentionResult:
    """Cohort sizes and returns per period (ClickHouse ``retention``)."""
    params = Params()
    persons = PersonProperties(params, project_id)
    starts = "toDate" if query.period == "day" else "toMonday"  # UTC, the column's zone
    unit = query.period  # 'day' or 'week': a closed vocabulary, safe as SQL text
    span = timedelta(days=query.periods * (1 if query.period == "day" else 7))
    cohort_where = (
        f"{_scope(params, project_id, query.from_, query.to)}"
        f" AND event = {params.add(query.cohort_event, 'String')}"
        f" AND {filters_sql(params, persons, query.cohort_filters, 'cohort_filters', 'event')}"
    )
    cohort_persons = filters_sql(params, persons, query.cohort_filters, "cohort_filters", "person")
    return_where = (
        f"{_scope(params, project_id, query.from_, query.to + span)}"
        f" AND event = {params.add(query.return_event, 'String')}"
        f" AND {filters_sql(params, persons, query.return_filters, 'return_filters', 'event')}"
    )
    return_persons = filters_sql(params, persons, query.return_filters, "return_filters", "person")
    returns_from = persons.scan(person_events(params, project_id), return_where, return_persons)
    cohort_from = persons.scan(person_events(params, project_id), cohort_where, cohort_persons)
    returns = ", ".join(f"toUInt8(period = {k})" for k in range(1, query.periods + 1))
    sql = f"""
        SELECT cohort, count() AS users, sumForEach(returned) AS returned
        FROM (
            SELECT user, cohort, retention(toUInt8(1), {returns}) AS returned
            FROM (
                SELECT c.user AS user, c.cohort AS cohort,
                       dateDiff('{unit}', c.cohort, {starts}(r.timestamp)) AS period
                FROM (
                    SELECT person_key AS user, timestamp
                    FROM {returns_from}
                ) AS r
                RIGHT JOIN (
                    SELECT person_key AS user, {starts}(min(timestamp)) AS cohort
                    FROM {cohort_from}
                    GROUP BY user
                ) AS c ON r.user = c.user
            )
            GROUP BY user, cohort
        )
        GROUP BY cohort
        ORDER BY cohort
    """
    rows = run_query(gateway, "retention", sql, params, FINAL_PER_PARTITION)
    cohorts = []
    for cohort, users, returned in rows:
        counts = [int(users), *[int(v) for v in list(returned)[1:]]]
        cohorts.append(
            RetentionCohort(
                cohort=datetime(cohort.year, cohort.month, cohort.day, tzinfo=UTC),
                users=int(users),
                returned=counts,
                rates=[round(v / int(users), 6) if users else 0.0 for v in counts],
            )
        )
    return RetentionResult(period=query.period, cohorts=cohorts)
