"""What a property filter means, defined once for every reader of events.

The live processor (:func:`compile_filters`, evaluated on each event's properties), the
backfill and the gateway's ad-hoc queries (:func:`filter_sql`, evaluated by the warehouse on
the ``properties`` JSON column) all use this module, and a property test holds the two forms
to the same answers on random events and filters (``tests/integration/test_filter_agreement.py``).

The rule (docs/decisions/filter-semantics.md): a property's value is compared *as the JSON
type it has*.

* Numbers compare as numbers, whether written ``1`` or ``1.0``; both sides are compared as
  64-bit floats (as the warehouse compares them). A string never equals a number (``"1"`` is
  not ``1``), and a boolean is not a number (``true`` is not ``1``).
* ``eq``: the same type and equal. ``null`` as the filter's value: the property is missing or
  null. ``neq``: not ``eq`` (so a missing property is "not equal"). ``in``: ``eq`` to any of
  the listed values (an empty list matches nothing).
* ``gt``, ``gte``, ``lt``, ``lte``: the property is a number and compares so with the filter's
  number; anything else (a numeric string, a boolean, missing) does not match.
* ``exists``: present and not null; with ``value: false``, missing or null.
* Arrays and objects equal nothing and are not numbers; they do exist.

:func:`number_of` is the numeric value of a property that sum, mean and percentile metrics
read, by the same rule (:func:`number_sql` in the warehouse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sextant.schemas.config import FilterOp, PropertyFilter

__all__ = [
    "Bind",
    "Predicate",
    "compile_filter",
    "compile_filters",
    "filter_sql",
    "filters_sql",
    "matches",
    "number_of",
    "number_sql",
]

Properties = Mapping[str, Any]
Predicate = Callable[[Properties], bool]
Bind = Callable[[Any, str], str]
"""``bind(value, clickhouse_type)`` → the placeholder of ``value`` as a bound query parameter."""

_NUMBER_TYPES = (int, float)


def number_of(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (not a boolean), else None."""
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    return None


def _always(properties: Properties) -> bool:
    return True


def _never(properties: Properties) -> bool:
    return False


def _equality(name: str, expected: Any) -> Predicate:
    if expected is None:
        return lambda properties: properties.get(name) is None
    if isinstance(expected, bool):
        return lambda properties: properties.get(name) is expected
    if type(expected) in _NUMBER_TYPES:
        target = float(expected)

        def number(properties: Properties) -> bool:
            value: Any = properties.get(name)
            return type(value) in _NUMBER_TYPES and float(value) == target

        return number
    if isinstance(expected, str):
        return lambda properties: properties.get(name) == expected
    return _never


def _membership(name: str, options: Sequence[Any]) -> Predicate:
    texts = frozenset(o for o in options if isinstance(o, str))
    numbers = frozenset(
        float(o) for o in options if type(o) in _NUMBER_TYPES and not math.isnan(float(o))
    )
    flags = frozenset(o for o in options if isinstance(o, bool))
    missing = any(o is None for o in options)

    def member(properties: Properties) -> bool:
        value: Any = properties.get(name)
        kind = type(value)
        if kind is str:
            return value in texts
        if kind is int or kind is float:
            return float(value) in numbers
        if kind is bool:
            return value in flags
        return value is None and missing

    return member


def compile_filter(spec: PropertyFilter) -> Predicate:
    """A function of an event's properties that says whether ``spec`` matches them."""
    name, op, expected = spec.property, spec.op, spec.value
    if op is FilterOp.EQ:
        return _equality(name, expected)
    if op is FilterOp.NEQ:
        equal = _equality(name, expected)
        return lambda properties: not equal(properties)
    if op is FilterOp.IN:
        return _membership(name, expected if isinstance(expected, list) else [])
    if op is FilterOp.EXISTS:
        if expected is None or bool(expected):
            return lambda properties: properties.get(name) is not None
        return lambda properties: properties.get(name) is None
    if type(expected) not in _NUMBER_TYPES:
        return _never
    threshold = float(expected)
    compare: Callable[[float, float], bool] = {
        FilterOp.GT: float.__gt__,
        FilterOp.GTE: float.__ge__,
        FilterOp.LT: float.__lt__,
        FilterOp.LTE: float.__le__,
    }[op]

    def ordered(properties: Properties) -> bool:
        value: Any = properties.get(name)
        return type(value) in _NUMBER_TYPES and compare(float(value), threshold)

    return ordered


def compile_filters(specs: Sequence[PropertyFilter]) -> Predicate:
    """One function for all of ``specs`` (every filter must match)."""
    predicates = tuple(compile_filter(spec) for spec in specs)
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    return lambda properties: all(check(properties) for check in predicates)


def matches(specs: Sequence[PropertyFilter], properties: Properties) -> bool:
    """Whether every filter of ``specs`` matches ``properties``."""
    return compile_filters(specs)(properties)


# --- the same rule in the warehouse ----------------------------------------------------------


def number_sql(value: str) -> str:
    """SQL: the ``Dynamic`` expression ``value`` (a property of a JSON column) as Float64
    when it is a number, else NULL (strings and booleans are not numbers)."""
    return (
        f"coalesce(toFloat64(dynamicElement({value}, 'Int64')), "
        f"dynamicElement({value}, 'Float64'), toFloat64(dynamicElement({value}, 'UInt64')))"
    )


def _equality_sql(value: str, expected: Any, bind: Bind) -> str:
    if expected is None:
        return f"(dynamicType({value}) = 'None')"
    if isinstance(expected, bool):
        return f"ifNull(dynamicElement({value}, 'Bool') = {bind(expected, 'Bool')}, 0)"
    if type(expected) in _NUMBER_TYPES:
        return f"ifNull({number_sql(value)} = {bind(float(expected), 'Float64')}, 0)"
    if isinstance(expected, str):
        return f"ifNull(dynamicElement({value}, 'String') = {bind(expected, 'String')}, 0)"
    return "0"


def filter_sql(spec: PropertyFilter, value: str, bind: Bind) -> str:
    """SQL for ``spec`` over ``value``, the property's ``Dynamic`` expression (such as
    ``getSubcolumn(properties, {p0:String})``): a boolean that is never NULL. Every value of
    the filter goes through ``bind``."""
    op, expected = spec.op, spec.value
    if op is FilterOp.EQ:
        return _equality_sql(value, expected, bind)
    if op is FilterOp.NEQ:
        return f"(NOT {_equality_sql(value, expected, bind)})"
    if op is FilterOp.IN:
        options = expected if isinstance(expected, list) else []
        tests = [_equality_sql(value, o, bind) for o in options]
        tests = [t for t in tests if t != "0"]
        return "(" + " OR ".join(tests) + ")" if tests else "0"
    if op is FilterOp.EXISTS:
        wanted = expected is None or bool(expected)
        return f"(dynamicType({value}) {'!=' if wanted else '='} 'None')"
    if type(expected) not in _NUMBER_TYPES:
        return "0"
    symbol = {FilterOp.GT: ">", FilterOp.GTE: ">=", FilterOp.LT: "<", FilterOp.LTE: "<="}[op]
    return f"ifNull({number_sql(value)} {symbol} {bind(float(expected), 'Float64')}, 0)"


def filters_sql(specs: Sequence[tuple[PropertyFilter, str]], bind: Bind) -> str:
    """All filters ANDed (``1`` when there are none); each with its property's expression."""
    parts = [filter_sql(spec, value, bind) for spec, value in specs]
    return " AND ".join(parts) if parts else "1"
