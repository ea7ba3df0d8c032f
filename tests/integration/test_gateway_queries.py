"""Metric series, trends, funnels, retention and alert history against the real engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.sketches import (
    HLL_REGISTERS,
    hll_add,
    hll_estimate,
    hll_merge_sparse,
    hll_pack,
)
from tests.integration.test_gateway_harness import Harness, make_harness

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)  # a Monday


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


METRICS = (
    MetricDefinition(
        id="orders",
        project_id="acme",
        metric_kind=MetricKind.COUNT,
        event="Order",
        breakdown="currency",
    ),
    MetricDefinition(
        id="order-mean",
        project_id="acme",
        metric_kind=MetricKind.MEAN,
        event="Order",
        property="amount",
    ),
    MetricDefinition(
        id="visitors", project_id="acme", metric_kind=MetricKind.UNIQUE_USERS, event="View"
    ),
    MetricDefinition(
        id="visitors-by-plan",
        project_id="acme",
        metric_kind=MetricKind.UNIQUE_USERS,
        event="View",
        breakdown="plan",
    ),
    MetricDefinition(
        id="amounts-by-plan",
        project_id="acme",
        metric_kind=MetricKind.PERCENTILES,
        event="Order",
        property="amount",
        breakdown="plan",
    ),
    MetricDefinition(
        id="amounts",
        project_id="acme",
        metric_kind=MetricKind.PERCENTILES,
        event="Order",
        property="amount",
    ),
    MetricDefinition(
        id="checkout",
        project_id="acme",
        metric_kind=MetricKind.CONVERSION,
        event="Cart",
        conversion_event="Order",
    ),
    MetricDefinition(id="orders", project_id="globex", metric_kind=MetricKind.COUNT, event="Order"),
)


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(*METRICS)
        yield running


def series(h: Harness, key: str, **params: Any) -> dict[str, Any]:
    response = h.client.get(f"/v1/metrics/{key}/series", params=params, headers=h.read)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- series from metric_points ------------------------------------------------------------


def test_series_sums_minutes_and_takes_the_newest_version(harness: Harness) -> None:
    harness.insert_points(
        [
            {
                "metric": "orders",
                "window_start": minute(0),
                "breakdown": "EUR",
                "count": 3,
                "version": 1,
            },
            {
                "metric": "orders",
                "window_start": minute(0),
                "breakdown": "EUR",
                "count": 5,
                "version": 2,
            },
            {
                "metric": "orders",
                "window_start": minute(0),
                "breakdown": "USD",
                "count": 2,
                "version": 1,
            },
            {
                "metric": "orders",
                "window_start": minute(1),
                "breakdown": "EUR",
                "count": 1,
                "version": 4,
            },
            {"metric": "orders", "window_start": minute(0), "count": 1000, "project_id": "globex"},
        ]
    )
    window = {"from": iso(minute(0)), "to": iso(minute(5))}
    total = series(harness, "orders", interval="minute", **window)
    assert [p["value"] for p in total["series"][0]["points"]] == [7, 1, 0, 0, 0]
    assert total["series"][0]["breakdown"] is None

    split = series(harness, "orders", interval="minute", breakdown="true", **window)
    by_value = {s["breakdown"]: [p["count"] for p in s["points"]] for s in split["series"]}
    assert by_value == {"EUR": [5, 1, 0, 0, 0], "USD": [2, 0, 0, 0, 0]}

    hourly = series(harness, "orders", interval="hour", **window)
    assert [p["value"] for p in hourly["series"][0]["points"]] == [8]
    assert hourly["from"] == "2025-03-03T10:00:00Z"


def test_mean_and_conversion_are_ratios_of_summed_components(harness: Harness) -> None:
    harness.insert_points(
        [
            {"metric": "order-mean", "window_start": minute(10), "count": 2, "sum": 30.0},
            {"metric": "order-mean", "window_start": minute(11), "count": 3, "sum": 15.0},
            {"metric": "checkout", "window_start": minute(10), "count": 1, "denominator": 4},
            {"metric": "checkout", "window_start": minute(11), "count": 2, "denominator": 4},
        ]
    )
    window = {"from": iso(minute(10)), "to": iso(minute(12))}
    mean = series(harness, "order-mean", interval="minute", **window)["series"][0]["points"]
    assert [p["value"] for p in mean] == [15.0, 5.0]
    rolled = series(harness, "order-mean", interval="hour", **window)["series"][0]["points"]
    assert rolled[0]["value"] == pytest.approx(45.0 / 5)
    conversion = series(harness, "checkout", interval="hour", **window)["series"][0]["points"]
    assert conversion[0]["value"] == pytest.approx(3 / 8)
    empty = series(
        harness, "order-mean", interval="minute", **{"from": iso(minute(30)), "to": iso(minute(31))}
    )
    assert empty["series"][0]["points"][0]["value"] is None


def _registers(users: range) -> list[int]:
    """Sparse HyperLogLog registers of ``users``, built as the processor builds them."""
    registers = bytearray(HLL_REGISTERS)
    for user in users:
        hll_add(registers, f"user-{user}")
    return hll_pack(registers)


def test_unique_users_merge_sketches_instead_of_adding_minutes(harness: Harness) -> None:
    harness.insert_points(
        [
            {
                "metric": "visitors",
                "window_start": minute(20),
                "count": 5000,
                "hll": _registers(range(5000)),
            },
            {
                "metric": "visitors",
                "window_start": minute(21),
                "count": 5000,
                "hll": _registers(range(2500, 7500)),
            },
        ]
    )
    window = {"from": iso(minute(20)), "to": iso(minute(22))}
    minutes = series(harness, "visitors", interval="minute", **window)["series"][0]["points"]
    assert [p["value"] for p in minutes] == [pytest.approx(5000, rel=0.03)] * 2
    hour = series(harness, "visitors", interval="hour", **window)["series"][0]["points"][0]
    assert hour["value"] == pytest.approx(7500, rel=0.03)
    merged = hll_merge_sparse(_registers(range(5000)), _registers(range(2500, 7500)))
    assert hour["value"] == round(hll_estimate(merged))


def test_sketches_of_breakdown_values_merge_into_the_total(harness: Harness) -> None:
    harness.insert_points(
        [
            {
                "metric": "visitors-by-plan",
                "window_start": minute(50),
                "breakdown": "pro",
                "hll": _registers(range(3000)),
            },
            {
                "metric": "visitors-by-plan",
                "window_start": minute(50),
                "breakdown": "free",
                "hll": _registers(range(2000, 6000)),
            },
            {
                "metric": "visitors-by-plan",
                "window_start": minute(51),
                "breakdown": "pro",
                "hll": _registers(range(100)),
            },
            {
                "metric": "amounts-by-plan",
                "window_start": minute(50),
                "breakdown": "pro",
                "digest": [(1.0, 1.0), (3.0, 1.0)],
            },
            {
                "metric": "amounts-by-plan",
                "window_start": minute(50),
                "breakdown": "free",
                "digest": [(2.0, 1.0), (4.0, 1.0)],
            },
        ]
    )
    window = {"from": iso(minute(50)), "to": iso(minute(52))}
    total = series(harness, "visitors-by-plan", interval="minute", **window)["series"][0]["points"]
    merged = hll_merge_sparse(_registers(range(3000)), _registers(range(2000, 6000)))
    assert [p["value"] for p in total] == [
        round(hll_estimate(merged)),
        round(hll_estimate(_registers(range(100)))),
    ]
    split = series(harness, "visitors-by-plan", interval="minute", breakdown="true", **window)[
        "series"
    ]
    assert {s["breakdown"]: s["points"][0]["value"] for s in split} == {
        "pro": round(hll_estimate(_registers(range(3000)))),
        "free": round(hll_estimate(_registers(range(2000, 6000)))),
    }
    for interval in ("minute", "hour"):
        pooled = series(harness, "amounts-by-plan", interval=interval, **window)["series"][0][
            "points"
        ][0]
        assert pooled["quantiles"]["p50"] == pytest.approx(2.5)


def test_percentiles_pool_the_digests(harness: Harness) -> None:
    harness.insert_points(
        [
            {
                "metric": "amounts",
                "window_start": minute(40),
                "count": 50,
                "digest": [(float(v), 1.0) for v in range(1, 101, 2)],
            },
            {
                "metric": "amounts",
                "window_start": minute(41),
                "count": 50,
                "digest": [(float(v), 1.0) for v in range(2, 101, 2)],
            },
        ]
    )
    point = series(
        harness, "amounts", interval="hour", **{"from": iso(minute(40)), "to": iso(minute(42))}
    )
    quantiles = point["series"][0]["points"][0]["quantiles"]
    assert quantiles["p50"] == pytest.approx(50.5, abs=0.6)
    assert quantiles["p90"] == pytest.approx(90.5, abs=0.6)
    assert quantiles["p99"] == pytest.approx(99.5, abs=0.6)


def test_series_validates_its_parameters(harness: Harness) -> None:
    c = harness.client
    bad_interval = c.get(
        "/v1/metrics/orders/series", params={"interval": "week"}, headers=harness.read
    )
    assert bad_interval.status_code == 422
    assert bad_interval.json()["parameter"] == "interval"
    too_many = c.get(
        "/v1/metrics/orders/series",
        params={"interval": "minute", "from": "2020-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
        headers=harness.read,
    )
    assert too_many.status_code == 422
    assert too_many.json()["parameter"] == "interval"
    backwards = c.get(
        "/v1/metrics/orders/series",
        params={"from": iso(minute(5)), "to": iso(minute(1))},
        headers=harness.read,
    )
    assert backwards.json()["parameter"] == "from"
    assert c.get("/v1/metrics/unknown/series", headers=harness.read).status_code == 404


def test_query_limits_answer_with_a_clear_error(kafka_bootstrap: str, warehouse_root: Path) -> None:
    with make_harness(kafka_bootstrap, warehouse_root, query_max_result_rows=3) as small:
        small.put_config(
            MetricDefinition(id="m", project_id="acme", metric_kind=MetricKind.COUNT, event="e")
        )
        small.insert_points(
            [{"metric": "m", "window_start": minute(i), "count": 1} for i in range(10)]
        )
        response = small.client.get(
            "/v1/metrics/m/series",
            params={"interval": "minute", "from": iso(minute(0)), "to": iso(minute(10))},
            headers=small.read,
        )
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("/result-too-large")
        assert "coarser interval" in response.json()["detail"]


# --- trends -------------------------------------------------------------------------------

PLANS = ["pro", "pro", "free", "team", "free", "pro", "enterprise", ""]


@pytest.fixture(scope="module")
def trend_events(harness: Harness) -> list[dict[str, Any]]:
    day = datetime(2025, 4, 1, tzinfo=UTC)
    rows = []
    for i in range(40):
        plan = PLANS[i % len(PLANS)]
        properties: dict[str, Any] = {"amount": i, "country": "DE" if i % 3 else "FR"}
        if plan:
            properties["plan"] = plan
        rows.append(
            {
                "event": "Trend",
                "distinct_id": f"u{i % 7}",
                "timestamp": day + timedelta(hours=i % 4, minutes=i),
                "properties": properties,
            }
        )
    rows.append({"event": "Other", "distinct_id": "u1", "timestamp": day})
    rows.append({"event": "Trend", "distinct_id": "x", "timestamp": day, "project_id": "globex"})
    harness.insert_events(rows)
    return rows


def trend(h: Harness, **body: Any) -> dict[str, Any]:
    request = {
        "event": "Trend",
        "from": "2025-04-01T00:00:00Z",
        "to": "2025-04-01T04:00:00Z",
    } | body
    response = h.client.post("/v1/insights/trends", json=request, headers=h.read)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def acme_trend_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["event"] == "Trend" and r.get("project_id", "acme") == "acme"]


def test_trend_counts_per_interval(harness: Harness, trend_events: list[dict[str, Any]]) -> None:
    rows = acme_trend_rows(trend_events)
    result = trend(harness, interval="hour")
    expected = [sum(1 for r in rows if r["timestamp"].hour == h) for h in range(4)]
    assert [p["value"] for p in result["series"][0]["points"]] == expected
    assert result["series"][0]["total"] == len(rows)

    uniques = trend(harness, interval="hour", measure="unique_users")
    assert uniques["series"][0]["total"] == len({r["distinct_id"] for r in rows})
    per_hour = [len({r["distinct_id"] for r in rows if r["timestamp"].hour == h}) for h in range(4)]
    assert [p["value"] for p in uniques["series"][0]["points"]] == per_hour


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ([{"property": "plan", "op": "eq", "value": "pro"}], lambda p: p.get("plan") == "pro"),
        ([{"property": "plan", "op": "neq", "value": "pro"}], lambda p: p.get("plan") != "pro"),
        (
            [{"property": "plan", "op": "in", "value": ["free", "team"]}],
            lambda p: p.get("plan") in ("free", "team"),
        ),
        ([{"property": "amount", "op": "gt", "value": 30}], lambda p: p["amount"] > 30),
        ([{"property": "amount", "op": "lte", "value": 5}], lambda p: p["amount"] <= 5),
        ([{"property": "amount", "op": "eq", "value": 7}], lambda p: p["amount"] == 7),
        ([{"property": "plan", "op": "exists"}], lambda p: "plan" in p),
        (
            [
                {"property": "plan", "op": "eq", "value": "pro"},
                {"property": "country", "op": "eq", "value": "DE"},
            ],
            lambda p: p.get("plan") == "pro" and p["country"] == "DE",
        ),
    ],
)
def test_trend_filters(
    harness: Harness, trend_events: list[dict[str, Any]], filters: list[dict[str, Any]], keep: Any
) -> None:
    rows = acme_trend_rows(trend_events)
    assert trend(harness, filters=filters)["series"][0]["total"] == sum(
        1 for r in rows if keep(r["properties"])
    )


def test_trend_breakdown_keeps_the_top_values_and_folds_the_rest(
    harness: Harness, trend_events: list[dict[str, Any]]
) -> None:
    rows = acme_trend_rows(trend_events)
    result = trend(harness, breakdown="plan", breakdown_limit=2)
    totals = {s["breakdown"]: s["total"] for s in result["series"]}
    plans = [r["properties"].get("plan", "") for r in rows]
    assert totals == {
        "pro": plans.count("pro"),
        "free": plans.count("free"),
        "$other": plans.count("team") + plans.count("enterprise") + plans.count(""),
    }
    everything = trend(harness, breakdown="plan", breakdown_limit=10)
    assert {s["breakdown"] for s in everything["series"]} == {
        "pro",
        "free",
        "team",
        "enterprise",
        None,
    }


# --- funnels ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def funnel_events(harness: Harness) -> None:
    t = datetime(2025, 5, 1, 12, tzinfo=UTC)
    s = timedelta(seconds=1)
    paths: dict[str, list[tuple[str, int]]] = {
        "f1": [("A", 0), ("B", 10), ("C", 30)],
        "f2": [("A", 0), ("B", 20)],
        "f3": [("A", 0), ("C", 5)],
        "f4": [("A", 0), ("B", 7200)],
        "f5": [("B", 0), ("C", 1)],
        "f6": [("A", 0), ("B", 40), ("C", 100)],
    }
    plans = {"f1": "pro", "f2": "pro", "f3": "free", "f4": "free", "f5": "pro", "f6": "team"}
    harness.insert_events(
        [
            {
                "event": name,
                "distinct_id": user,
                "timestamp": t + offset * s,
                "properties": {"plan": plans[user]},
            }
            for user, steps in paths.items()
            for name, offset in steps
        ]
    )


def test_funnel_counts_conversions_and_median_times(harness: Harness, funnel_events: None) -> None:
    request = {
        "steps": [{"event": "A"}, {"event": "B"}, {"event": "C"}],
        "from": "2025-05-01T00:00:00Z",
        "to": "2025-05-02T00:00:00Z",
        "window_seconds": 3600,
    }
    response = harness.client.post("/v1/insights/funnels", json=request, headers=harness.read)
    assert response.status_code == 200, response.text
    steps = response.json()["groups"][0]["steps"]
    assert [s["users"] for s in steps] == [5, 3, 2]
    assert steps[1]["conversion_from_previous"] == pytest.approx(3 / 5)
    assert steps[2]["conversion_from_start"] == pytest.approx(2 / 5)
    assert steps[1]["median_seconds_from_previous"] == pytest.approx(20)  # 10, 20, 40
    assert steps[2]["median_seconds_from_previous"] == pytest.approx(40)  # 20, 60
    assert steps[2]["median_seconds_from_start"] == pytest.approx(65)  # 30, 100
    assert steps[0]["median_seconds_from_previous"] is None


def test_funnel_breakdown_and_step_filters(harness: Harness, funnel_events: None) -> None:
    request = {
        "steps": [
            {"event": "A"},
            {"event": "B", "filters": [{"property": "plan", "op": "neq", "value": "team"}]},
        ],
        "from": "2025-05-01T00:00:00Z",
        "to": "2025-05-02T00:00:00Z",
        "window_seconds": 3600,
        "breakdown": "plan",
    }
    response = harness.client.post("/v1/insights/funnels", json=request, headers=harness.read)
    assert response.status_code == 200, response.text
    groups = {g["breakdown"]: [s["users"] for s in g["steps"]] for g in response.json()["groups"]}
    assert groups == {"pro": [2, 2], "free": [2, 0], "team": [1, 0]}


# --- retention ----------------------------------------------------------------------------


def test_retention_by_day(harness: Harness) -> None:
    day = datetime(2025, 6, 2, 9, tzinfo=UTC)
    d = timedelta(days=1)
    harness.insert_events(
        [
            {"event": "Signed Up", "distinct_id": "r1", "timestamp": day},
            {"event": "Signed Up", "distinct_id": "r2", "timestamp": day + timedelta(hours=3)},
            {"event": "Signed Up", "distinct_id": "r3", "timestamp": day},
            {"event": "Signed Up", "distinct_id": "r4", "timestamp": day + d},
            {"event": "Signed Up", "distinct_id": "r1", "timestamp": day + d},  # not a new cohort
            {"event": "Login", "distinct_id": "r1", "timestamp": day + d},
            {"event": "Login", "distinct_id": "r1", "timestamp": day + 2 * d},
            {"event": "Login", "distinct_id": "r1", "timestamp": day + 2 * d + timedelta(hours=1)},
            {"event": "Login", "distinct_id": "r2", "timestamp": day + 2 * d},
            {"event": "Login", "distinct_id": "r4", "timestamp": day + 2 * d},
        ]
    )
    request = {
        "cohort_event": "Signed Up",
        "return_event": "Login",
        "from": "2025-06-02T00:00:00Z",
        "to": "2025-06-04T00:00:00Z",
        "period": "day",
        "periods": 2,
    }
    response = harness.client.post("/v1/insights/retention", json=request, headers=harness.read)
    assert response.status_code == 200, response.text
    cohorts = response.json()["cohorts"]
    assert [(c["cohort"], c["users"], c["returned"]) for c in cohorts] == [
        ("2025-06-02T00:00:00Z", 3, [3, 1, 2]),
        ("2025-06-03T00:00:00Z", 1, [1, 1, 0]),
    ]
    assert cohorts[0]["rates"][2] == pytest.approx(2 / 3, rel=1e-5)

    weekly = harness.client.post(
        "/v1/insights/retention",
        json=request | {"period": "week", "periods": 1},
        headers=harness.read,
    ).json()["cohorts"]
    assert [(c["cohort"], c["users"], c["returned"]) for c in weekly] == [
        ("2025-06-02T00:00:00Z", 4, [4, 0])
    ]


def test_insight_bodies_are_validated(harness: Harness) -> None:
    c = harness.client
    one_step = c.post(
        "/v1/insights/funnels",
        json={
            "steps": [{"event": "A"}],
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-02T00:00:00Z",
        },
        headers=harness.read,
    )
    assert one_step.status_code == 422
    assert one_step.json()["parameter"] == "steps"
    many = c.post(
        "/v1/insights/retention",
        json={
            "cohort_event": "a",
            "return_event": "b",
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-02T00:00:00Z",
            "periods": 40,
        },
        headers=harness.read,
    )
    assert many.json()["parameter"] == "periods"
    numeric = c.post(
        "/v1/insights/trends",
        json={
            "event": "a",
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-02T00:00:00Z",
            "filters": [{"property": "x", "op": "gt", "value": "high"}],
        },
        headers=harness.read,
    )
    assert numeric.status_code == 422
    assert numeric.json()["parameter"].startswith("filters.0")


# --- alerts -------------------------------------------------------------------------------


def test_alert_history_pages_newest_first(harness: Harness) -> None:
    start = datetime(2025, 7, 1, tzinfo=UTC)
    states = [
        ("ok", "pending"),
        ("pending", "firing"),
        ("firing", "resolved"),
        ("resolved", "pending"),
        ("pending", "firing"),
    ]
    harness.insert_alerts(
        [
            {
                "rule_id": "drop",
                "transition_id": f"t{i}",
                "from_state": a,
                "to_state": b,
                "at": start + timedelta(minutes=i),
                "value": float(i),
            }
            for i, (a, b) in enumerate(states)
        ]
        + [
            {
                "rule_id": "other",
                "transition_id": "o1",
                "from_state": "ok",
                "to_state": "pending",
                "at": start,
            }
        ]
        + [
            {
                "rule_id": "drop",
                "transition_id": "g1",
                "from_state": "ok",
                "to_state": "firing",
                "at": start,
                "project_id": "globex",
            }
        ]
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"rule_id": "drop", "limit": 2} | (
            {"cursor": cursor} if cursor else {}
        )
        page = harness.client.get("/v1/alerts", params=params, headers=harness.read).json()
        seen += [item["transition_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["t4", "t3", "t2", "t1", "t0"]
    firing = harness.client.get(
        "/v1/alerts", params={"state": "firing"}, headers=harness.read
    ).json()["items"]
    assert [i["transition_id"] for i in firing] == ["t4", "t1"]
    assert (
        harness.client.get(
            "/v1/alerts", params={"cursor": "garbage!"}, headers=harness.read
        ).json()["parameter"]
        == "cursor"
    )


def test_an_event_stored_twice_counts_once(harness: Harness) -> None:
    row = {
        "event": "Twice",
        "distinct_id": "d1",
        "message_id": "same-message",
        "timestamp": datetime(2025, 8, 1, 12, tzinfo=UTC),
    }
    harness.insert_events([row])
    harness.insert_events([row])  # a batch the sink inserted again after a restart
    body = {"event": "Twice", "from": "2025-08-01T00:00:00Z", "to": "2025-08-02T00:00:00Z"}
    trend_total = harness.client.post("/v1/insights/trends", json=body, headers=harness.read)
    assert trend_total.json()["series"][0]["total"] == 1
