"""How one metric definition reads one event: filters, the breakdown value, the numeric value.

The same semantics are written in SQL by :mod:`sextant.processor.backfill`; a test keeps the
two equal. Property values are JSON scalars:

- ``eq``: same type family and equal (numbers compare as numbers, ``1 == 1.0``; a string never
  equals a number; booleans only equal booleans). ``neq`` is its negation (a missing property
  is "not equal"). ``in``: ``eq`` to any listed value.
- ``gt``/``gte``/``lt``/``lte``: only numeric properties (booleans are not numbers) match.
- ``exists``: present and not null; ``value: false`` inverts it.
- Breakdown values are rendered as text: strings as they are, booleans ``true``/``false``,
  integral numbers without a fraction (``2.0`` → ``2``), a missing or null value ``(none)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sextant.schemas.config import FilterOp, MetricDefinition, MetricKind, PropertyFilter

NONE_VALUE = "(none)"
OTHER_VALUE = "other"
NO_BREAKDOWN = ""

Predicate = Callable[[Mapping[str, Any]], bool]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric(value: Any) -> float | None:
    """The value as a float when it is a JSON number, else None."""
    return float(value) if is_number(value) else None


def same_value(left: Any, right: Any) -> bool:
    if is_number(left) and is_number(right):
        return float(left) == float(right)
    if isinstance(left, bool) and isinstance(right, bool):
        return left is right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return False


def render(value: Any) -> str:
    """A property value as breakdown text."""
    if value is None:
        return NONE_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


def _predicate(spec: PropertyFilter) -> Predicate:
    name, op, expected = spec.property, spec.op, spec.value
    if op is FilterOp.EQ:
        return lambda props: same_value(props.get(name), expected)
    if op is FilterOp.NEQ:
        return lambda props: not same_value(props.get(name), expected)
    if op is FilterOp.IN:
        options = list(expected)
        return lambda props: any(same_value(props.get(name), o) for o in options)
    if op is FilterOp.EXISTS:
        wanted = expected is None or bool(expected)
        return lambda props: (props.get(name) is not None) == wanted
    threshold = float(expected if is_number(expected) else 0.0)
    compare: Callable[[float], bool] = {
        FilterOp.GT: lambda v: v > threshold,
        FilterOp.GTE: lambda v: v >= threshold,
        FilterOp.LT: lambda v: v < threshold,
        FilterOp.LTE: lambda v: v <= threshold,
    }[op]

    def check(props: Mapping[str, Any]) -> bool:
        value = numeric(props.get(name))
        return value is not None and compare(value)

    return check


def fingerprint(definition: MetricDefinition) -> str:
    """A short digest of a definition's content: it changes whenever the definition does."""
    payload = orjson.dumps(definition.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class CompiledMetric:
    """A metric definition turned into fast callables for the hot path."""

    definition: MetricDefinition
    predicates: tuple[Predicate, ...]
    fingerprint: str

    @property
    def key(self) -> str:
        return self.definition.id

    @property
    def kind(self) -> MetricKind:
        return self.definition.metric_kind

    def matches(self, properties: Mapping[str, Any]) -> bool:
        return all(check(properties) for check in self.predicates)

    def breakdown_of(self, properties: Mapping[str, Any]) -> str:
        name = self.definition.breakdown
        return NO_BREAKDOWN if name is None else render(properties.get(name))

    def value_of(self, properties: Mapping[str, Any]) -> float | None:
        name = self.definition.property
        return None if name is None else numeric(properties.get(name))


def compile_metric(definition: MetricDefinition) -> CompiledMetric:
    return CompiledMetric(
        definition=definition,
        predicates=tuple(_predicate(f) for f in definition.filters),
        fingerprint=fingerprint(definition),
    )
