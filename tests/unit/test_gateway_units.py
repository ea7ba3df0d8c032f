"""The gateway's pure parts: sketches, SQL building, positions, buckets and its OpenAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sextant.gateway.app import create_app
from sextant.gateway.live import (
    FeedRecord,
    LivePoint,
    LiveStream,
    MetricPointFeed,
    format_position,
    parse_position,
)
from sextant.gateway.problems import ProblemError
from sextant.gateway.series import Interval, bucket_starts
from sextant.gateway.settings import GatewaySettings
from sextant.gateway.sql import Params, filter_sql, filters_sql
from sextant.schemas.config import FilterOp, MetricDefinition, PropertyFilter
from sextant.schemas.records import MetricPoint

# --- SQL building -------------------------------------------------------------------------

HOSTILE = "plan') OR 1=1 --"


@pytest.mark.parametrize(
    ("op", "value"),
    [
        (FilterOp.EQ, HOSTILE),
        (FilterOp.NEQ, HOSTILE),
        (FilterOp.IN, [HOSTILE, 1]),
        (FilterOp.GT, 5),
        (FilterOp.EXISTS, None),
        (FilterOp.EQ, 1.0),
        (FilterOp.EQ, True),
    ],
)
def test_filters_bind_every_name_and_value(op: FilterOp, value: Any) -> None:
    params = Params()
    name = "weird key$"
    sql = filter_sql(params, PropertyFilter(property=name, op=op, value=value), "filters.0")
    assert HOSTILE not in sql
    assert name not in sql
    assert "getSubcolumn(properties, {p" in sql
    assert name in params.values.values()


def test_filter_values_keep_their_json_type() -> None:
    """A string never equals a number (sextant.schemas.filters): each value is bound with its
    own type and compared with the property's value of that type only."""
    params = Params()
    sql = filter_sql(
        params, PropertyFilter(property="x", op=FilterOp.IN, value=[1, True, "a", 2.5]), "f"
    )
    assert list(params.values.values())[1:] == [1.0, True, "a", 2.5]
    assert "dynamicElement(" in sql
    assert "toString(" not in sql


@pytest.mark.parametrize(
    ("op", "value"),
    [(FilterOp.EQ, {"nested": 1}), (FilterOp.IN, [[1]]), (FilterOp.EQ, float("nan"))],
)
def test_filters_refuse_values_they_cannot_compare(op: FilterOp, value: Any) -> None:
    with pytest.raises(ProblemError) as raised:
        filter_sql(
            Params(), PropertyFilter.model_construct(property="x", op=op, value=value), "filters.3"
        )
    assert raised.value.parameter == "filters.3"


def test_property_names_outside_the_allow_list_are_refused() -> None:
    bad = PropertyFilter.model_construct(
        property="x'); DROP TABLE events --", op=FilterOp.EXISTS, value=None
    )
    with pytest.raises(ProblemError) as raised:
        filters_sql(Params(), [bad], "filters")
    assert raised.value.status == 422
    assert raised.value.parameter == "filters.0"


# --- positions and buckets ----------------------------------------------------------------


def test_positions_round_trip_and_refuse_garbage() -> None:
    assert parse_position(format_position({2: 7, 0: 15})) == {0: 15, 2: 7}
    for bad in ("", "0:", "a:1", "0:1,", "0:-1", "1:2:3", "9999999:1"):
        with pytest.raises(ProblemError):
            parse_position(bad)


def test_buckets_floor_the_start_and_cover_the_end() -> None:
    start = datetime(2025, 1, 1, 10, 30, 15, tzinfo=UTC)
    end = datetime(2025, 1, 1, 12, 0, 1, tzinfo=UTC)
    hours = bucket_starts(start, end, Interval.HOUR, 100)
    assert [h.hour for h in hours] == [10, 11, 12]
    with pytest.raises(ProblemError) as raised:
        bucket_starts(start, end, Interval.MINUTE, 10)
    assert raised.value.parameter == "interval"


# --- the OpenAPI document ------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = GatewaySettings(clickhouse_url="chdb:///nonexistent/never-opened")
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def _example_in(content: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = content.get("schema", {})
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return any(k in content or k in schema for k in ("example", "examples"))


def test_every_operation_is_documented_with_examples(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    operations = [(m, p, op) for p, ops in document["paths"].items() for m, op in ops.items()]
    assert len(operations) > 40
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        # A redirect (single sign-on) succeeds too, with no body to show.
        successes = {s: r for s, r in op["responses"].items() if s.startswith(("2", "3"))}
        assert successes, where
        assert any(
            status == "204"
            or status.startswith("3")
            or any(_example_in(c, components) for c in r.get("content", {}).values())
            for status, r in successes.items()
        ), f"{where}: no response example"
        for parameter in op.get("parameters", []):
            assert (
                "example" in parameter
                or "examples" in parameter
                or "examples" in parameter["schema"]
            ), f"{where}: parameter {parameter['name']} has no example"
        if "requestBody" in op:
            assert any(_example_in(c, components) for c in op["requestBody"]["content"].values()), (
                f"{where}: no request body example"
            )
        if not path.startswith(("/healthz", "/readyz", "/metrics", "/openapi")):
            assert any(str(s).startswith("4") for s in op["responses"]) or path == "/metrics", where


def test_errors_are_documented_as_problems(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "parameter"}
    series = document["paths"]["/v1/metrics/{key}/series"]["get"]["responses"]
    assert "application/problem+json" in series["422"]["content"]


# --- sketches as the gateway reads them ---------------------------------------------------


def test_the_histogram_estimate_equals_the_register_estimate() -> None:
    from sextant.schemas.sketches import (
        HLL_REGISTERS,
        hll_add,
        hll_estimate,
        hll_estimate_from_histogram,
        hll_histogram,
        hll_pack,
    )

    for n in (0, 1, 500, 40_000):
        registers = bytearray(HLL_REGISTERS)
        for i in range(n):
            hll_add(registers, f"u{i}")
        sparse = hll_pack(registers)
        histogram = hll_histogram(sparse)
        assert hll_estimate_from_histogram(histogram) == hll_estimate(sparse)
        # SQL sends the histogram up to the largest rank only
        top = max(registers, default=0)
        assert hll_estimate_from_histogram(histogram[: top + 1]) == hll_estimate(sparse)


def test_unique_users_without_registers_are_unknown() -> None:
    from sextant.gateway.series import point_value, unique_users
    from sextant.schemas.config import MetricKind
    from sextant.schemas.sketches import HLL_REGISTERS

    assert unique_users(0, [HLL_REGISTERS]) == 0.0
    assert unique_users(12, [HLL_REGISTERS]) is None  # events, but no register: before 0006
    assert point_value(MetricKind.UNIQUE_USERS, 12, 0.0, 0, None) is None
    assert unique_users(1, [HLL_REGISTERS - 1, 1]) == pytest.approx(1.0, abs=0.01)


# --- the live stream's point events ----------------------------------------------------------


def test_a_live_point_event_carries_the_window_as_the_openapi_document_describes_it() -> None:
    metric = MetricDefinition(
        id="revenue",
        project_id="shop",
        metric_kind="sum",
        event="Paid",
        property="amount",
        breakdown="currency",
    )
    stream = LiveStream(
        MetricPointFeed(GatewaySettings(), 10, 10_000), "shop", "revenue", metric, None, 15.0
    )
    point = MetricPoint(
        project_id="shop",
        metric="revenue",
        window_start=datetime(2025, 3, 1, 10, 4, tzinfo=UTC),
        breakdown="EUR",
        count=9,
        sum=412.5,
        version=3,
        emitted_at=datetime(2025, 3, 1, 10, 4, 41, 120000, tzinfo=UTC),
    )
    record = FeedRecord(0, 120, b"shop:revenue", point.model_dump_json().encode())
    chunk = stream._event(record, {})
    assert chunk is not None
    event, event_id, data = chunk.decode().strip().split("\n")
    assert (event, event_id) == ("event: point", "id: 0:121")
    payload = json.loads(data.removeprefix("data: "))
    assert payload == {
        "metric": "revenue",
        "window_start": "2025-03-01T10:04:00+00:00",
        "window_seconds": 60,
        "breakdown": "EUR",
        "version": 3,
        "value": 412.5,
        "count": 9,
        "sum": 412.5,
        "denominator": 0,
        "quantiles": None,
        "emitted_at": "2025-03-01T10:04:41.120000+00:00",
    }
    assert LivePoint.model_validate(payload).value == 412.5
