"""How a metric definition reads an event: filter semantics and breakdown rendering."""

from __future__ import annotations

from typing import Any

import pytest

from sextant.processor.definitions import compile_metric, render
from sextant.schemas.config import MetricDefinition, PropertyFilter


def _metric(*filters: PropertyFilter, **extra: Any) -> MetricDefinition:
    return MetricDefinition(
        id="m", project_id="p", metric_kind="count", event="E", filters=list(filters), **extra
    )


@pytest.mark.parametrize(
    ("op", "value", "props", "expected"),
    [
        ("eq", "pro", {"plan": "pro"}, True),
        ("eq", "pro", {"plan": "free"}, False),
        ("eq", 5, {"plan": 5.0}, True),
        ("eq", 5, {"plan": "5"}, False),
        ("eq", True, {"plan": 1}, False),
        ("eq", True, {"plan": True}, True),
        ("neq", "pro", {}, True),
        ("neq", "pro", {"plan": "pro"}, False),
        ("in", ["a", 2], {"plan": 2}, True),
        ("in", ["a", 2], {"plan": "b"}, False),
        ("gt", 10, {"plan": 11}, True),
        ("gt", 10, {"plan": 10}, False),
        ("gte", 10, {"plan": 10}, True),
        ("lt", 10, {"plan": "9"}, False),
        ("lte", 1, {"plan": True}, False),
        ("exists", None, {"plan": None}, False),
        ("exists", None, {"plan": 0}, True),
        ("exists", False, {}, True),
    ],
)
def test_filter_semantics(op: str, value: Any, props: dict[str, Any], expected: bool) -> None:
    metric = compile_metric(_metric(PropertyFilter(property="plan", op=op, value=value)))
    assert metric.matches(props) is expected


def test_all_filters_must_match() -> None:
    metric = compile_metric(
        _metric(
            PropertyFilter(property="plan", op="eq", value="pro"),
            PropertyFilter(property="amount", op="gt", value=0),
        )
    )
    assert metric.matches({"plan": "pro", "amount": 3})
    assert not metric.matches({"plan": "pro", "amount": 0})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (True, "true"),
        (False, "false"),
        (2.0, "2"),
        (2.5, "2.5"),
        (7, "7"),
        (None, "(none)"),
    ],
)
def test_breakdown_rendering(value: Any, text: str) -> None:
    assert render(value) == text


def test_breakdown_and_value_of_an_event() -> None:
    definition = MetricDefinition(
        id="m", project_id="p", metric_kind="sum", event="E", property="amount", breakdown="plan"
    )
    metric = compile_metric(definition)
    assert metric.breakdown_of({"amount": 3}) == "(none)"
    assert metric.value_of({"amount": True}) is None
    assert metric.value_of({"amount": 3}) == 3.0


def test_fingerprint_follows_the_content() -> None:
    first = compile_metric(_metric())
    assert compile_metric(_metric()).fingerprint == first.fingerprint
    changed = compile_metric(_metric(PropertyFilter(property="a", op="exists")))
    assert changed.fingerprint != first.fingerprint
