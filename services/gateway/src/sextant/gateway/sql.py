"""Safe SQL building and running: every user-supplied value is a bound parameter.

Event names, property names, filter values and breakdowns never become SQL text: they are
sent as ClickHouse query parameters (``{p0:String}``), which the server parses as literals of
the declared type. Property names are also checked against the allow-list pattern
(:data:`sextant.schemas.config.PROPERTY_PATTERN`) before use, and reach the JSON column
through ``getSubcolumn(properties, {p:String})``, so no identifier is ever built from them.
The only text interpolated into SQL comes from closed vocabularies defined here (interval
units, aggregate names) or integers the request models have bounded.

Every query runs with ``max_execution_time`` and ``max_result_rows`` (overflow throws): a
request over the limits gets a 422 problem saying which limit and what to narrow.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from sextant.core.logging import get_logger
from sextant.core.warehouse import ClickHouseError
from sextant.gateway.context import Gateway
from sextant.gateway.problems import ProblemError, invalid
from sextant.schemas.config import PROPERTY_PATTERN, FilterOp, PropertyFilter
from sextant.schemas.filters import filter_sql as shared_filter_sql
from sextant.schemas.filters import number_sql

log = get_logger(__name__)

QUERY_SECONDS = Histogram(
    "sextant_gateway_query_seconds",
    "Warehouse query latency by query kind",
    ["query"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUERY_FAILURES = Counter(
    "sextant_gateway_query_failures_total", "Warehouse queries that failed", ["query", "reason"]
)

_LIMIT_ERRORS = {
    "TIMEOUT_EXCEEDED": (
        "query-timeout",
        "the query ran longer than the gateway allows; narrow the time range, the filters "
        "or the breakdown",
    ),
    "TOO_MANY_ROWS_OR_BYTES": (
        "result-too-large",
        "the result has more rows than the gateway returns; use a coarser interval, a shorter "
        "range or a smaller breakdown limit",
    ),
    "MEMORY_LIMIT_EXCEEDED": (
        "query-too-large",
        "the query needs more memory than the warehouse allows; narrow the time range or the "
        "breakdown",
    ),
}
DATETIME = "DateTime64(3, 'UTC')"
"""The parameter type of every timestamp bound into a query."""
_CONNECTION_ERRORS = re.compile(r"connection|refused|timed out|unreachable", re.IGNORECASE)


class Params:
    """Bound query parameters: :meth:`add` returns the placeholder to put in the SQL."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._count = 0

    def add(self, value: Any, ch_type: str) -> str:
        """Bind ``value`` as a ClickHouse ``ch_type`` literal; returns ``{pN:Type}``."""
        name = f"p{self._count}"
        self._count += 1
        self.values[name] = _bindable(value)
        return f"{{{name}:{ch_type}}}"


def _bindable(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(tzinfo=None)
    return value


def utc(value: datetime) -> datetime:
    """A warehouse timestamp (naive, UTC) as an aware datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def in_range_utc(value: datetime) -> datetime:
    """``value`` in UTC; ``ValueError`` outside 1970-01-01 to 2200-01-01 (what the warehouse's
    timestamps can hold)."""
    try:
        converted = utc(value)
    except OverflowError as error:
        raise ValueError("the time is out of range") from error
    if not EARLIEST <= converted < LATEST:
        raise ValueError("times must fall between 1970-01-01 and 2200-01-01")
    return converted


def request_time(value: datetime, parameter: str) -> datetime:
    """A time from the request in UTC; a 422 problem naming ``parameter`` when out of range."""
    try:
        return in_range_utc(value)
    except ValueError as error:
        raise invalid(str(error), parameter) from error


def check_property(name: str, parameter: str) -> str:
    """``name`` if it matches the property allow-list; a 422 problem naming ``parameter``."""
    if not PROPERTY_PATTERN.fullmatch(name):
        raise invalid(f"'{name[:60]}' is not a valid property name", parameter)
    return name


def property_text(params: Params, name: str, parameter: str) -> str:
    """SQL for a property's value as text ('' when absent), ``name`` bound as a parameter."""
    return f"toString({_property_raw(params, name, parameter)})"


def _property_raw(params: Params, name: str, parameter: str) -> str:
    return f"getSubcolumn(properties, {params.add(check_property(name, parameter), 'String')})"


def property_value(params: Params, name: str, parameter: str) -> str:
    """SQL for a property's value as the warehouse holds it (``Dynamic``: its JSON type),
    ``name`` bound as a parameter; what :mod:`sextant.schemas.filters` compares."""
    return _property_raw(params, name, parameter)


def property_number(params: Params, name: str, parameter: str) -> str:
    """SQL for a property's numeric value (NULL unless it is a JSON number), by the rule of
    :func:`sextant.schemas.filters.number_of`."""
    return number_sql(_property_raw(params, name, parameter))


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _check_filter(item: PropertyFilter, parameter: str) -> None:
    """The values a query's filter may carry; what they mean is :mod:`sextant.schemas.filters`."""
    op, value = item.op, item.value
    if op is FilterOp.IN:
        values = value if isinstance(value, list) else []
        if not values or not all(_is_scalar(v) for v in values):
            raise invalid("'in' needs a non-empty list of strings, numbers or booleans", parameter)
    elif op in (FilterOp.EQ, FilterOp.NEQ):
        if not _is_scalar(value):
            raise invalid(f"'{op.value}' needs a string, number, boolean or null", parameter)
    elif op is not FilterOp.EXISTS and (
        not _is_scalar(value) or value is None or isinstance(value, bool | str)
    ):
        raise invalid(f"'{op.value}' needs a finite number", parameter)


def filter_sql(params: Params, item: PropertyFilter, parameter: str) -> str:
    """One property filter as a boolean SQL expression that is never NULL, with the meaning
    every part gives it (:mod:`sextant.schemas.filters`: a string never equals a number)."""
    return filter_on(params, item, _property_raw(params, item.property, parameter), parameter)


def filter_on(params: Params, item: PropertyFilter, value: str, parameter: str) -> str:
    """:func:`filter_sql` over ``value``, any ``Dynamic`` expression of the property (such as
    a person's value of it)."""
    _check_filter(item, parameter)
    return shared_filter_sql(item, value, params.add)


def filters_sql(params: Params, filters: Sequence[PropertyFilter], parameter: str) -> str:
    """All filters ANDed (``1`` when there are none)."""
    parts = [filter_sql(params, f, f"{parameter}.{i}") for i, f in enumerate(filters)]
    return " AND ".join(parts) if parts else "1"


def _limit_problem(message: str) -> ProblemError | None:
    for code, (kind, detail) in _LIMIT_ERRORS.items():
        if code in message:
            return ProblemError(422, kind, detail)
    return None


FINAL_PER_PARTITION = {"do_not_merge_across_partitions_select_final": 1}
"""For queries through the ``*_unique``/``*_latest`` views (``FINAL``): every table's
partition key is a function of its sorting key (``toYYYYMM`` of the key's date or time), so
rows that must fold together always share a partition and ``FINAL`` may skip partitions
that are already merged into one part."""


def run_query(
    gateway: Gateway,
    name: str,
    sql: str,
    params: Params | dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """Run a read query under the gateway's limits; failures become problems.

    Over a limit: 422 naming the limit. The warehouse unreachable: 503. Anything else is a
    bug in the query and answers 500 (logged with the SQL, never with the values).
    """
    values = params.values if isinstance(params, Params) else params
    limits = {
        "max_execution_time": gateway.settings.query_timeout_seconds,
        "max_result_rows": gateway.settings.query_max_result_rows,
        "result_overflow_mode": "throw",
    }
    warehouse = gateway.warehouse()
    started = time.perf_counter()
    try:
        rows = warehouse.query_rows(sql, values, (settings or {}) | limits)
    except ClickHouseError as error:
        message = str(error)
        problem = _limit_problem(message)
        if problem is not None:
            QUERY_FAILURES.labels(name, problem.kind).inc()
            raise problem from error
        if _CONNECTION_ERRORS.search(message) and "DB::Exception" not in message:
            QUERY_FAILURES.labels(name, "unavailable").inc()
            raise ProblemError(
                503, "warehouse-unavailable", "the warehouse cannot be reached now"
            ) from error
        QUERY_FAILURES.labels(name, "error").inc()
        log.error("query failed", query=name, sql=sql, error=message[:500])
        raise
    finally:
        QUERY_SECONDS.labels(name).observe(time.perf_counter() - started)
    return rows
