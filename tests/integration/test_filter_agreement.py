"""One meaning for a property filter: the live processor, the backfill's SQL and the gateway's
SQL select the same events, for random events and random filters.

Events take the path the sink gives them (the collector's record, the sink's row, the real
ClickHouse engine's ``JSON`` column); the processor reads the same record as it does live.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sextant.core.metric_history import _Sql
from sextant.core.migrations import migrate
from sextant.core.warehouse import Warehouse, connect
from sextant.gateway.sql import Params, filters_sql
from sextant.processor.definitions import compile_metric
from sextant.processor.partition import EventView
from sextant.schemas.config import FilterOp, MetricDefinition, PropertyFilter
from sextant.schemas.events import Envelope, EventType
from sextant.schemas.topics import Topic
from sextant.sink.tables import TABLES

NAMES = ("plan", "n", "flag")
AT = datetime(2026, 2, 3, 4, 5, tzinfo=UTC)

texts = st.one_of(
    st.sampled_from(["", "1", "1.0", "0", "-3", "true", "false", "null", "pro", "Pro", "2e3"]),
    st.text(max_size=4),
)
integers = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([0, 1, 7, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),
)
floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 7.0, -3.0, 1e20, 9007199254740992.0]),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)
values = st.one_of(
    scalars,
    st.lists(st.one_of(integers, texts), max_size=3).map(
        lambda items: [i for i in items if isinstance(i, type(items[0]))] if items else items
    ),
)
properties = st.dictionaries(st.sampled_from(NAMES), values, max_size=3)


@st.composite
def filters(draw: st.DrawFn) -> PropertyFilter:
    name = draw(st.sampled_from(NAMES))
    op = draw(st.sampled_from(list(FilterOp)))
    value: Any
    if op in (FilterOp.EQ, FilterOp.NEQ):
        value = draw(scalars)
    elif op is FilterOp.IN:
        value = draw(st.lists(scalars, min_size=1, max_size=4))
    elif op is FilterOp.EXISTS:
        value = draw(st.sampled_from([None, True, False]))
    else:
        value = draw(st.one_of(integers, floats))
    return PropertyFilter(property=name, op=op, value=value)


@pytest.fixture(scope="module")
def store(warehouse_root: Any) -> Warehouse:
    warehouse = connect(f"chdb://{warehouse_root}?database=t{uuid.uuid4().hex[:12]}")
    migrate(warehouse)
    return warehouse


class _Record:
    """A consumed ``events.raw`` record, as the sink's encoder reads it."""

    topic, partition, offset, key = "events.raw", 0, 0, None

    def __init__(self, value: bytes) -> None:
        self.value = value


def _store(warehouse: Warehouse, project: str, events: list[dict[str, Any]]) -> list[bytes]:
    """Write the events as the sink does; their records as the processor reads them."""
    spec = TABLES[Topic.EVENTS_RAW]
    records = []
    for i, props in enumerate(events):
        envelope = Envelope(
            project_id=project,
            type=EventType.TRACK,
            event="E",
            distinct_id=f"u{i}",
            user_id=f"u{i}",
            properties=props,
            timestamp=AT,
            received_at=AT,
            message_id=f"m{i}",
        )
        records.append(orjson.dumps(envelope.model_dump(mode="json", by_alias=True)))
    lines = b"\n".join(spec.encode(_Record(r)).line for r in records)
    warehouse.insert_json("events", lines, spec.columns)
    return records


def _selected(warehouse: Warehouse, project: str, condition: str, params: Any) -> set[str]:
    sql = (
        f"SELECT message_id FROM events FINAL WHERE project_id = {{project:String}}"
        f" AND ({condition})"
    )
    rows = warehouse.query_rows(sql, {**params, "project": project})
    return {str(row[0]) for row in rows}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(properties, min_size=1, max_size=8), chosen=st.lists(filters(), max_size=3))
@example(  # a string never equals a number, nor a boolean a number
    events=[{"n": 1}, {"n": "1"}, {"n": 1.0}, {"n": True}, {"n": "true"}, {}],
    chosen=[PropertyFilter(property="n", op=FilterOp.IN, value=["1", 1, True])],
).via("the rule's own cases")
@example(
    events=[{"n": 2**53 + 1}, {"n": 9007199254740992.0}, {"n": "x"}, {"n": None}, {}],
    chosen=[PropertyFilter(property="n", op=FilterOp.EQ, value=2**53)],
).via("numbers compare as 64-bit floats")
@example(
    events=[{"plan": None}, {}, {"plan": []}, {"plan": ""}],
    chosen=[PropertyFilter(property="plan", op=FilterOp.NEQ, value=None)],
).via("null is missing")
def test_processor_backfill_and_gateway_select_the_same_events(
    store: Warehouse, events: list[dict[str, Any]], chosen: list[PropertyFilter]
) -> None:
    project = f"p{uuid.uuid4().hex[:12]}"
    records = _store(store, project, events)
    definition = MetricDefinition(
        id="m", project_id=project, metric_kind="count", event="E", filters=chosen
    )
    metric = compile_metric(definition)
    live = {
        view.message_id
        for view in (EventView.parse(record) for record in records)
        if metric.matches(view.properties)
    }
    backfill = _Sql(definition)
    from_backfill = _selected(store, project, backfill.matches(), backfill.params)
    params = Params()
    from_gateway = _selected(store, project, filters_sql(params, chosen, "filters"), params.values)
    assert live == from_backfill == from_gateway, (events, chosen)
