"""A metric's minute windows recomputed from the ``events`` table, as live computes them.

The warehouse does the heavy part in SQL (filters, by the rule of ``sextant.schemas.filters``
that the live processor and the gateway use too, minute buckets, breakdown values, counts,
sums (of each NPS or CSAT response's value, by ``sextant.schemas.metric_values``), the
per-person conversion test, distinct persons' hashes, values for the digest); the result is
shaped into the same :class:`~sextant.schemas.records.MetricPoint` values the live processor
emits (same breakdown top-N, same HyperLogLog registers for the same users).

Two parts use it: the processor's backfill (``sextant metrics backfill``) and the sink's
correction of windows whose persons changed (``sextant.sink.corrections``). Both send points
versioned ``BACKFILL_VERSION_BASE`` + their run's start in milliseconds, above any live
version (a sum of offsets), and a later run above an earlier one. The corrections cover
only windows the live processor has closed (:func:`closed_until`), where no live point can
follow, and so does the backfill unless told otherwise.

Users are persons: an event counts for ``PERSON_SQL``, the person the squash wrote onto it,
else its own id (before the squash has run, and on a cluster, where it does not); or, asked
``by_overrides``, for its id's newest override read at query time, as the gateway's
person-aware queries count (the corrections between squash rounds).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sextant.core.kafka import make_producer, note_use
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.schemas.config import SURVEY_KINDS, MetricDefinition, MetricKind
from sextant.schemas.filters import filters_sql, number_sql
from sextant.schemas.metric_values import response_value_sql
from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import hll_add_hashes, hll_hash_sql
from sextant.schemas.topics import Topic, topic_name
from sextant.schemas.windows import (
    NO_BREAKDOWN,
    NONE_VALUE,
    WINDOW_SECONDS,
    Group,
    WindowId,
    to_point,
    top_groups,
)

BACKFILL_VERSION_BASE = 1 << 62
PERSON_SQL = "if(person_hash = 0, distinct_id, person_id)"
"""An event's person as the person squash stamped it (``sextant.sink.squash``), else its id:
windows recomputed from the events count persons wherever the squash has run."""


class _Sql:
    """Builds one definition's SQL with every user-supplied value as a bound parameter."""

    def __init__(self, definition: MetricDefinition, by_overrides: bool = False) -> None:
        self.definition = definition
        self.by_overrides = by_overrides
        self.person = "person" if by_overrides else PERSON_SQL
        """An event's person, over :meth:`source`'s columns."""
        self.params: dict[str, Any] = {}
        self.text = ""

    def source(self, scope: str) -> str:
        """The events to read (``FINAL``; a query filters them by ``scope`` too): with
        ``by_overrides``, those in ``scope`` with a ``person`` column, its id's newest
        override (``person_overrides FINAL``) or else as :data:`PERSON_SQL` reads it."""
        if not self.by_overrides:
            return "events FINAL"
        project = self.bind(self.definition.project_id, "String")
        stamped = "if(_e.person_hash = 0, _e.distinct_id, _e.person_id)"
        return (
            f"(SELECT _e.*, if(_o.person_id = '', {stamped}, _o.person_id) AS person"
            f" FROM (SELECT * FROM events FINAL WHERE {scope}) AS _e LEFT ANY JOIN"
            " (SELECT distinct_id, person_id FROM person_overrides FINAL"
            f" WHERE project_id = {project}) AS _o ON _e.distinct_id = _o.distinct_id)"
        )

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


def _simple_query(
    definition: MetricDefinition, start: datetime, end: datetime, by_overrides: bool
) -> _Sql:
    sql = _Sql(definition, by_overrides)
    kind = definition.metric_kind
    scope = sql.scope(start, end, [definition.event])
    matches, breakdown = sql.matches(), sql.breakdown()
    source = "events FINAL"
    if kind is MetricKind.COUNT:
        body = f"SELECT {_MINUTE} AS w, {breakdown} AS b, count() AS c"
        where = f"{scope} AND {matches}"
    elif kind is MetricKind.UNIQUE_USERS:
        users = hll_hash_sql(sql.person)
        body = f"SELECT {_MINUTE} AS w, {breakdown} AS b, count() AS c, groupUniqArray({users})"
        where = f"{scope} AND {matches}"
        source = sql.source(scope)
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
    sql.text = f"{body} FROM {source} WHERE {where} GROUP BY w, b"
    return sql


def _conversion_query(
    definition: MetricDefinition, start: datetime, end: datetime, by_overrides: bool
) -> _Sql:
    """Per minute of A: the persons whose first A of the minute is there, and how many of them
    did B within the conversion window after it (B in any later minute too)."""
    sql = _Sql(definition, by_overrides)
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
        f" SELECT {_MINUTE} AS w, {sql.person} AS unit, min({millis}) AS first_a,"
        f" argMin({breakdown}, timestamp) AS b"
        f" FROM {sql.source(a_scope)} WHERE {a_scope} AND {sql.matches()} GROUP BY w, unit"
        ") AS a LEFT JOIN ("
        f" SELECT {sql.person} AS unit, groupArray({millis}) AS times"
        f" FROM {sql.source(b_scope)} WHERE {b_scope} GROUP BY unit"
        ") AS c USING unit GROUP BY w, b"
    )
    return sql


def window_groups(
    warehouse: Warehouse,
    definition: MetricDefinition,
    start: datetime,
    end: datetime,
    *,
    by_overrides: bool = False,
) -> dict[int, dict[str, Group]]:
    """Window start → breakdown value → components, for events in [start, end); persons
    read through the overrides with ``by_overrides`` (see the module's description)."""
    kind = definition.metric_kind
    if kind is MetricKind.CONVERSION:
        sql = _conversion_query(definition, start, end, by_overrides)
    else:
        sql = _simple_query(definition, start, end, by_overrides)
    windows: dict[int, dict[str, Group]] = {}
    for row in warehouse.query_rows(sql.text, sql.params):
        group = windows.setdefault(int(row[0]), {}).setdefault(str(row[1]), Group())
        if kind is MetricKind.CONVERSION:
            group.denominator, group.count = int(row[2]), int(row[3])
            continue
        group.count = int(row[2])
        if kind is MetricKind.UNIQUE_USERS:
            hll_add_hashes(group.ensure_registers(), row[3])
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


def closed_until(lateness_seconds: int, now: datetime | None = None) -> datetime:
    """The end of the last minute the live processor has closed."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=lateness_seconds + WINDOW_SECONDS)
    return moment.replace(second=0, microsecond=0)


class PointSender:
    """Sends points to ``metric_points``; :meth:`flush` returns once the broker has every
    point sent so far, and raises ``KafkaError`` when it does not (the producer is made at
    the first point)."""

    def __init__(self, kafka: KafkaSection, timeout_s: float = 30.0) -> None:
        self._kafka = kafka
        self._topic = topic_name(Topic.METRIC_POINTS, kafka.topic_prefix)
        self._timeout_s = timeout_s
        self._producer: Any = None
        self._pending: list[Any] = []

    def __call__(self, point: MetricPoint) -> None:
        if self._producer is None:
            self._producer = make_producer(self._kafka)
            note_use(self._topic, "writes")
        self._pending.append(
            self._producer.send(
                self._topic,
                key=point.kafka_key().encode(),
                value=orjson.dumps(point.model_dump(mode="json")),
            )
        )

    def flush(self) -> None:
        if self._producer is None:
            return
        self._producer.flush(timeout=self._timeout_s)
        pending, self._pending = self._pending, []
        for future in pending:
            future.get(timeout=self._timeout_s)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
            self._pending = []
