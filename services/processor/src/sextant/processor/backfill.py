"""``sextant metrics backfill``: a definition's history from the ``events`` table.

The warehouse does the heavy part in SQL (filters, by the rule of ``sextant.schemas.filters``
that the live processor and the gateway use too, minute buckets, breakdown values, counts,
sums (of each NPS or CSAT response's value, by ``sextant.schemas.metric_values``), the
per-user conversion test, distinct users' hashes, values for the digest); the result is
shaped into the same :class:`~sextant.schemas.records.MetricPoint` values the live processor
emits (same breakdown top-N, same HyperLogLog registers for the same users) and sent to
``metric_points`` for the sink to write.

Versions: backfilled points carry ``BACKFILL_VERSION_BASE`` + the run's start in milliseconds,
above any live version (a sum of offsets), and a later run above an earlier one. So by default
a backfill covers only windows the live processor has closed (``until`` = now - the project's
lateness - one minute): there it replaces what live computed (live may have seen only part of
the minute the definition was created in), and live corrections cannot arrive afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sextant.core.kafka import make_producer, note_use
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.processor.aggregates import WINDOW_SECONDS, Group
from sextant.processor.definitions import NO_BREAKDOWN, NONE_VALUE
from sextant.processor.merge import WindowId, to_point, top_groups
from sextant.schemas.config import SURVEY_KINDS, MetricDefinition, MetricKind
from sextant.schemas.filters import filters_sql, number_sql
from sextant.schemas.metric_values import response_value_sql
from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import hll_hash_sql, hll_position
from sextant.schemas.topics import Topic, topic_name

BACKFILL_VERSION_BASE = 1 << 62
Progress = Callable[[datetime, datetime, int], None]
"""Called after each chunk with (chunk start, chunk end, points produced so far)."""

_HASH = hll_hash_sql("distinct_id")


class _Sql:
    """Builds one definition's SQL with every user-supplied value as a bound parameter."""

    def __init__(self, definition: MetricDefinition) -> None:
        self.definition = definition
        self.params: dict[str, Any] = {}
        self.text = ""

    def bind(self, value: Any, type_name: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_name}}}"

    def prop(self, name: str) -> str:
        return f"getSubcolumn(properties, {self.bind(name, 'String')})"

    @staticmethod
    def number(x: str) -> str:
        return number_sql(x)

    def matches(self) -> str:
        """The definition's filters, by the one rule (``sextant.schemas.filters``)."""
        return filters_sql([(f, self.prop(f.property)) for f in self.definition.filters], self.bind)

    def breakdown(self) -> str:
        name = self.definition.breakdown
        if name is None:
            return self.bind(NO_BREAKDOWN, "String")
        x = self.prop(name)
        return (
            f"multiIf(dynamicType({x}) = 'None', {self.bind(NONE_VALUE, 'String')}, "
            f"dynamicType({x}) = 'Bool', if(dynamicElement({x}, 'Bool'), 'true', 'false'), "
            f"toString({x}))"
        )

    def scope(self, start: datetime, end: datetime, events: list[str]) -> str:
        moment = "DateTime64(3, 'UTC')"
        return (
            f"project_id = {self.bind(self.definition.project_id, 'String')}"
            f" AND event IN {self.bind(events, 'Array(String)')}"
            f" AND timestamp >= {self.bind(start, moment)}"
            f" AND timestamp < {self.bind(end, moment)}"
        )


_MINUTE = "toUInt32(toUnixTimestamp(toStartOfMinute(timestamp)))"


def _simple_query(definition: MetricDefinition, start: datetime, end: datetime) -> _Sql:
    sql = _Sql(definition)
    kind = definition.metric_kind
    scope = sql.scope(start, end, [definition.event])
    matches, breakdown = sql.matches(), sql.breakdown()
    if kind is MetricKind.COUNT:
        body = f"SELECT {_MINUTE} AS w, {breakdown} AS b, count() AS c"
        where = f"{scope} AND {matches}"
    elif kind is MetricKind.UNIQUE_USERS:
        body = f"SELECT {_MINUTE} AS w, {breakdown} AS b, count() AS c, groupUniqArray({_HASH})"
        where = f"{scope} AND {matches}"
    else:
        assert definition.property is not None
        value = sql.number(sql.prop(definition.property))
        if kind in SURVEY_KINDS:
            satisfied = sql.bind(definition.satisfied_from, "Float64")
            value = f"{value} AS n, {response_value_sql(kind, 'n', satisfied)}"
        extra = ", groupArray(v)" if kind is MetricKind.PERCENTILES else ""
        body = (
            f"SELECT {_MINUTE} AS w, {breakdown} AS b, count() AS c, sum(v), sum(v * v){extra}"
            f" FROM (SELECT timestamp, properties, {value} AS v FROM events FINAL"
            f" WHERE {scope} AND {matches}) WHERE v IS NOT NULL GROUP BY w, b"
        )
        sql.text = body
        return sql
    sql.text = f"{body} FROM events FINAL WHERE {where} GROUP BY w, b"
    return sql


def _conversion_query(definition: MetricDefinition, start: datetime, end: datetime) -> _Sql:
    """Per minute of A: the users whose first A of the minute is there, and how many of them
    did B within the conversion window after it (B in any later minute too)."""
    sql = _Sql(definition)
    assert definition.conversion_event is not None
    window_s = definition.conversion_window_seconds
    a_scope = sql.scope(start, end, [definition.event])
    b_scope = sql.scope(start, end + timedelta(seconds=window_s), [definition.conversion_event])
    breakdown = sql.breakdown()
    window_ms = sql.bind(window_s * 1000, "Int64")
    millis = "toUnixTimestamp64Milli(timestamp)"
    sql.text = (
        "SELECT w, b, count() AS users,"
        f" countIf(arrayExists(t -> t >= first_a AND t <= first_a + {window_ms}, times))"
        " AS converted FROM ("
        f" SELECT {_MINUTE} AS w, distinct_id, min({millis}) AS first_a,"
        f" argMin({breakdown}, timestamp) AS b"
        f" FROM events FINAL WHERE {a_scope} AND {sql.matches()} GROUP BY w, distinct_id"
        ") AS a LEFT JOIN ("
        f" SELECT distinct_id, groupArray({millis}) AS times"
        f" FROM events FINAL WHERE {b_scope} GROUP BY distinct_id"
        ") AS c USING distinct_id GROUP BY w, b"
    )
    return sql


def window_groups(
    warehouse: Warehouse, definition: MetricDefinition, start: datetime, end: datetime
) -> dict[int, dict[str, Group]]:
    """Window start → breakdown value → components, for events in [start, end)."""
    kind = definition.metric_kind
    if kind is MetricKind.CONVERSION:
        sql = _conversion_query(definition, start, end)
    else:
        sql = _simple_query(definition, start, end)
    windows: dict[int, dict[str, Group]] = {}
    for row in warehouse.query_rows(sql.text, sql.params):
        group = windows.setdefault(int(row[0]), {}).setdefault(str(row[1]), Group())
        if kind is MetricKind.CONVERSION:
            group.denominator, group.count = int(row[2]), int(row[3])
            continue
        group.count = int(row[2])
        if kind is MetricKind.UNIQUE_USERS:
            registers = group.ensure_registers()
            for hashed in row[3]:
                index, rank = hll_position(int(hashed))
                registers[index] = max(registers[index], rank)
        elif kind is not MetricKind.COUNT:
            group.total, group.total_sq = float(row[3]), float(row[4])
            if kind is MetricKind.PERCENTILES:
                digest = group.ensure_digest()
                for value in sorted(row[5]):
                    digest.add(float(value))
    return windows


def points_for(
    definition: MetricDefinition,
    windows: dict[int, dict[str, Group]],
    version: int,
    emitted_at: datetime,
) -> Iterator[MetricPoint]:
    """The points of each window, top-N capped exactly as the live processor does."""
    for start in sorted(windows):
        window = WindowId(definition.project_id, definition.id, definition.metric_kind, start)
        groups = top_groups(windows[start], definition.metric_kind, definition.breakdown_limit)
        for name in sorted(groups):
            yield to_point(window, name, groups[name], version, emitted_at)


def default_until(lateness_seconds: int, now: datetime | None = None) -> datetime:
    """The end of the last minute the live processor has closed."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=lateness_seconds + WINDOW_SECONDS)
    return moment.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class BackfillReport:
    windows: int
    points: int
    version: int


def backfill(
    kafka: KafkaSection,
    warehouse: Warehouse,
    definition: MetricDefinition,
    since: datetime,
    until: datetime,
    chunk: timedelta = timedelta(hours=1),
    progress: Progress | None = None,
) -> BackfillReport:
    """Compute ``definition`` for [since, until) and send its points to ``metric_points``."""
    since = since.astimezone(UTC).replace(second=0, microsecond=0)
    until = until.astimezone(UTC)
    version = BACKFILL_VERSION_BASE + int(time.time() * 1000)
    emitted_at = datetime.now(UTC)
    producer = make_producer(kafka)
    topic = topic_name(Topic.METRIC_POINTS, kafka.topic_prefix)
    note_use(topic, "writes")
    windows = points = 0
    try:
        start = since
        while start < until:
            end = min(start + chunk, until)
            groups = window_groups(warehouse, definition, start, end)
            windows += len(groups)
            for point in points_for(definition, groups, version, emitted_at):
                producer.send(
                    topic,
                    key=point.kafka_key().encode(),
                    value=orjson.dumps(point.model_dump(mode="json")),
                )
                points += 1
            producer.flush()
            if progress is not None:
                progress(start, end, points)
            start = end
    finally:
        producer.close(timeout=10)
    return BackfillReport(windows=windows, points=points, version=version)


def run_backfill_command(
    kafka: KafkaSection,
    warehouse: Warehouse,
    metric_key: str,
    project_id: str,
    since: datetime,
    until: datetime | None = None,
    config_wait_seconds: float = 30.0,
) -> BackfillReport:
    """What ``sextant metrics backfill`` runs: find the definition, then backfill with a bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sextant.core.config_plane import ConfigFollower
    from sextant.processor.catalog import ConfigCatalog

    follower = ConfigFollower(kafka).start()
    try:
        if not follower.wait_caught_up(config_wait_seconds):
            raise RuntimeError("the config topic could not be read in time")
        catalog = ConfigCatalog(follower.state)
        compiled = catalog.metric(project_id, metric_key)
        if compiled is None:
            raise LookupError(f"no metric {metric_key!r} in project {project_id!r}")
        lateness = catalog.lateness(project_id)
    finally:
        follower.stop()
    end = until or default_until(lateness)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    total = max((end - since).total_seconds(), 1.0)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[points]} points"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(f"backfill {project_id}/{metric_key}", total=total, points=0)

        def advance(start: datetime, chunk_end: datetime, points: int) -> None:
            bar.update(task, completed=(chunk_end - since).total_seconds(), points=points)

        return backfill(kafka, warehouse, compiled.definition, since, end, progress=advance)
