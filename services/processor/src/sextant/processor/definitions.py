"""How one metric definition reads one event: filters, the breakdown value, the numeric value.

An NPS or CSAT metric's value is the response's value (``100``/``0``/``-100``, or ``1``/``0``)
of its numeric score, by :func:`sextant.schemas.metric_values.response_value`.

Filters and numeric values follow the one rule of :mod:`sextant.schemas.filters` (the backfill
and the gateway's queries use the same module). Breakdown values are rendered as text: strings
as they are, booleans ``true``/``false``, integral numbers without a fraction (``2.0`` →
``2``), a missing or null value ``(none)``; the backfill writes the same rule in SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import orjson

from sextant.schemas.config import SURVEY_KINDS, MetricDefinition, MetricKind
from sextant.schemas.filters import Predicate, compile_filters, number_of
from sextant.schemas.metric_values import response_value
from sextant.schemas.windows import NO_BREAKDOWN, NONE_VALUE


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


def fingerprint(definition: MetricDefinition) -> str:
    """A short digest of a definition's content: it changes whenever the definition does."""
    payload = orjson.dumps(definition.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()[:16]


class CompiledMetric:
    """A metric definition turned into plain attributes and callables for the hot path."""

    __slots__ = (
        "breakdown",
        "conversion_event",
        "definition",
        "event",
        "fingerprint",
        "key",
        "kind",
        "matches",
        "property",
        "scorer",
    )

    def __init__(self, definition: MetricDefinition) -> None:
        self.definition = definition
        self.key = definition.id
        self.kind: MetricKind = definition.metric_kind
        self.event = definition.event
        self.conversion_event = definition.conversion_event
        self.breakdown = definition.breakdown
        self.property = definition.property
        self.fingerprint = fingerprint(definition)
        self.matches: Predicate = compile_filters(definition.filters)
        """Whether an event's properties pass every filter of the definition."""
        self.scorer: Callable[[float], float] | None = None
        """The value of a numeric score (NPS and CSAT); None: the number is the value."""
        if self.kind in SURVEY_KINDS:
            self.scorer = partial(
                response_value, self.kind, satisfied_from=definition.satisfied_from
            )

    def breakdown_of(self, properties: Mapping[str, Any]) -> str:
        name = self.breakdown
        return NO_BREAKDOWN if name is None else render(properties.get(name))

    def value_of(self, properties: Mapping[str, Any]) -> float | None:
        """What an event adds to the window's ``sum``; None: the event has no value."""
        name = self.property
        number = None if name is None else number_of(properties.get(name))
        if number is None or self.scorer is None:
            return number
        return self.scorer(number)


def compile_metric(definition: MetricDefinition) -> CompiledMetric:
    return CompiledMetric(definition)
