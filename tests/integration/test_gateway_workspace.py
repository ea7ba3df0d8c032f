"""The workspace's reads against the real engine: outcomes, NPS and CSAT (checked against
scipy and statsmodels over the same answers), comments, web analytics, metric values from the
events table (the live windows of NPS metrics: test_survey_metrics_live.py), the admin API and
YAML for outcomes and surveys."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from sextant.schemas.config import (
    Experiment,
    MetricDefinition,
    MetricKind,
    Outcome,
    PropertyFilter,
    Survey,
    SurveyKind,
    Variant,
)
from tests.integration.test_gateway_harness import Harness, make_harness

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY - timedelta(days=6)


@pytest.fixture(scope="module", autouse=True)
def _days_from_now() -> None:
    """Days counted from when the module runs, not when the suite collected it: a long run
    can cross midnight in between, and the gateway's boards count from its own today."""
    global TODAY, START
    TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    START = TODAY - timedelta(days=6)


@pytest.fixture(scope="module")
def answers() -> list[dict[str, Any]]:
    rng = random.Random(4)
    rows: list[dict[str, Any]] = []
    for i in range(400):
        plan = rng.choice(["free", "pro"])
        day = START + timedelta(days=i % 6, hours=rng.uniform(1, 20))
        nps = rng.choices(range(11), weights=[1, 1, 1, 1, 2, 2, 3, 5, 8, 9, 6])[0]
        rows.append(
            {
                "distinct_id": f"u{i}",
                "event": "Survey Responded",
                "timestamp": day,
                "properties": {"survey": "nps", "score": nps, "plan": plan}
                | ({"comment": f"Delivery was slow #{i}"} if i % 10 == 0 else {}),
            }
        )
        if i % 2 == 0:
            rows.append(
                {
                    "distinct_id": f"u{i}",
                    "event": "Survey Responded",
                    "timestamp": day,
                    "properties": {"survey": "csat", "score": rng.randint(1, 5), "plan": plan},
                }
            )
    return rows


@pytest.fixture(scope="module")
def harness(
    kafka_bootstrap: str, warehouse_root: Path, answers: list[dict[str, Any]]
) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(
            MetricDefinition(
                id="orders", project_id="acme", metric_kind=MetricKind.COUNT, event="Order"
            ),
            MetricDefinition(
                id="nps-score",
                project_id="acme",
                metric_kind=MetricKind.NPS,
                event="Survey Responded",
                property="score",
                filters=[PropertyFilter(property="survey", op="eq", value="nps")],
            ),
            MetricDefinition(
                id="checkout",
                project_id="acme",
                metric_kind=MetricKind.CONVERSION,
                event="Cart",
                conversion_event="Paid",
                conversion_window_seconds=600,
            ),
            Survey(id="nps", project_id="acme", survey_kind=SurveyKind.NPS, question="Tell us?"),
            Survey(
                id="csat",
                project_id="acme",
                survey_kind=SurveyKind.CSAT,
                scale_min=1,
                scale_max=5,
            ),
            Outcome(
                id="more-orders",
                project_id="acme",
                name="More orders",
                metric="orders",
                target=50,
                start_date=START.date(),
                target_date=(TODAY + timedelta(days=30)).date(),
            ),
            Experiment(
                id="checkout-test",
                project_id="acme",
                variants=[Variant(id="a", weight=0.5), Variant(id="b", weight=0.5)],
                primary_metric="orders",
            ),
        )
        orders = [
            {
                "distinct_id": f"o{d}-{k}",
                "event": "Order",
                "timestamp": START + timedelta(days=d, hours=k % 20),
            }
            for d in range(7)
            for k in range(10 + 3 * d)
        ]
        funnel = [
            {"distinct_id": "c1", "event": "Cart", "timestamp": START + timedelta(hours=1)},
            {
                "distinct_id": "c1",
                "event": "Paid",
                "timestamp": START + timedelta(hours=1, minutes=5),
            },
            {"distinct_id": "c2", "event": "Cart", "timestamp": START + timedelta(hours=2)},
            {"distinct_id": "c2", "event": "Paid", "timestamp": START + timedelta(hours=3)},
            {"distinct_id": "c3", "event": "Cart", "timestamp": START + timedelta(hours=2)},
        ]
        running.insert_events([*answers, *orders, *funnel])
        running.insert_exposures(
            [
                {
                    "experiment": "checkout-test",
                    "unit_id": f"u{i}",
                    "variation_id": "ab"[i % 2],
                    "timestamp": START,
                }
                for i in range(0, 400, 3)
            ]
        )
        yield running


def _range() -> dict[str, str]:
    return {"from": START.isoformat(), "to": (TODAY + timedelta(days=1)).isoformat()}


def _nps_of(rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    x = np.array(
        [1 if s >= 9 else -1 if s <= 6 else 0 for s in (r["properties"]["score"] for r in rows)]
    )
    low, high = stats.norm.interval(0.95, loc=x.mean(), scale=x.std(ddof=0) / math.sqrt(x.size))
    return 100 * x.mean(), 100 * low, 100 * high


def test_nps_overall_and_by_plan_match_scipy(
    harness: Harness, answers: list[dict[str, Any]]
) -> None:
    response = harness.client.get(
        "/v1/surveys/nps/results", params=_range() | {"breakdown": "plan"}, headers=harness.read
    )
    assert response.status_code == 200, response.text
    body = response.json()
    nps = [r for r in answers if r["properties"]["survey"] == "nps"]
    value, low, high = _nps_of(nps)
    assert body["overall"]["value"] == pytest.approx(value)
    assert (body["overall"]["low"], body["overall"]["high"]) == pytest.approx((low, high))
    assert body["overall"]["responses"] == len(nps)
    assert sum(body["overall"]["distribution"].values()) == len(nps)
    for group in body["groups"]:
        mine = [r for r in nps if r["properties"]["plan"] == group["breakdown"]]
        assert group["value"] == pytest.approx(_nps_of(mine)[0])
    assert sum(p["responses"] for p in body["daily"]) == len(nps)


def test_nps_by_variant_reads_first_exposures(
    harness: Harness, answers: list[dict[str, Any]]
) -> None:
    response = harness.client.get(
        "/v1/surveys/nps/results",
        params=_range() | {"experiment": "checkout-test"},
        headers=harness.read,
    )
    groups = {g["breakdown"]: g for g in response.json()["groups"]}
    nps = [r for r in answers if r["properties"]["survey"] == "nps"]
    exposed = {f"u{i}": "ab"[i % 2] for i in range(0, 400, 3)}
    for variant in ("a", "b"):
        mine = [r for r in nps if exposed.get(r["distinct_id"]) == variant]
        assert groups[variant]["responses"] == len(mine)
        assert groups[variant]["value"] == pytest.approx(_nps_of(mine)[0])
    assert groups["(not exposed)"]["responses"] == len(nps) - sum(
        1 for r in nps if r["distinct_id"] in exposed
    )


def test_csat_matches_statsmodels_wilson(harness: Harness, answers: list[dict[str, Any]]) -> None:
    body = harness.client.get(
        "/v1/surveys/csat/results", params=_range(), headers=harness.read
    ).json()
    csat = [r["properties"]["score"] for r in answers if r["properties"]["survey"] == "csat"]
    satisfied = sum(1 for s in csat if s >= 4)
    low, high = proportion_confint(satisfied, len(csat), method="wilson")
    assert body["overall"]["value"] == pytest.approx(satisfied / len(csat))
    assert (body["overall"]["low"], body["overall"]["high"]) == pytest.approx((low, high))


def test_comments_are_searchable(harness: Harness) -> None:
    response = harness.client.get(
        "/v1/surveys/nps/comments",
        params=_range() | {"q": "SLOW #1", "limit": 200},
        headers=harness.read,
    )
    comments = response.json()["comments"]
    assert {c["comment"] for c in comments} == {
        f"Delivery was slow #{i}" for i in (10, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190)
    }
    every = harness.client.get(
        "/v1/surveys/nps/comments", params=_range() | {"limit": 200}, headers=harness.read
    )
    assert len(every.json()["comments"]) == 40
    stamps = [c["timestamp"] for c in every.json()["comments"]]
    assert stamps == sorted(stamps, reverse=True)


def test_nps_metric_values_from_the_events_table(
    harness: Harness, answers: list[dict[str, Any]]
) -> None:
    from sextant.gateway.event_metrics import metric_values
    from sextant.gateway.series import Interval

    gateway = harness.app.state.gateway
    metric = gateway.state.get("metric:acme:nps-score")
    days = metric_values(gateway, "acme", metric, START, TODAY, Interval.DAY)
    nps = [r for r in answers if r["properties"]["survey"] == "nps"]
    for day, value in days:
        answered = [r for r in nps if r["timestamp"].date() == day.date()]
        assert value == pytest.approx(_nps_of(answered)[0])


def test_conversion_values_from_events(harness: Harness) -> None:
    from sextant.gateway.event_metrics import metric_values
    from sextant.gateway.series import Interval

    gateway = harness.app.state.gateway
    metric = gateway.state.get("metric:acme:checkout")
    values = metric_values(gateway, "acme", metric, START, START + timedelta(days=1), Interval.DAY)
    assert values == [(START, pytest.approx(1 / 3))]  # c1 within 10 minutes; c2 too late; c3 never


def test_the_outcome_board_forecasts_the_daily_counts(harness: Harness) -> None:
    response = harness.client.get("/v1/outcomes", headers=harness.read)
    assert response.status_code == 200, response.text
    (view,) = response.json()
    assert [d["value"] for d in view["days"]] == [10 + 3 * d for d in range(7)]
    assert view["current"] == 28
    assert view["baseline"] == pytest.approx(19)  # the first week's mean
    assert view["progress"] == pytest.approx((28 - 19) / (50 - 19))
    forecast = view["forecast"]  # today is left out of the fit: six complete days
    assert forecast["points"] == 6
    assert forecast["slope_per_day"] == pytest.approx(3.0)
    assert forecast["estimate"] == pytest.approx(10 + 3 * (6 + 30))
    assert view["status"] == "on_track"
    assert [e["id"] for e in view["experiments"]] == ["checkout-test"]


def test_outcomes_and_surveys_through_the_admin_api_and_yaml(harness: Harness) -> None:
    body = {
        "id": "happier",
        "name": "Happier customers",
        "metric": "nps-score",
        "target": 40,
        "start_date": "2026-01-01",
        "target_date": "2026-06-30",
    }
    created = harness.client.post(
        "/v1/admin/projects/acme/outcomes", json=body, headers=harness.admin
    )
    assert created.status_code == 201, created.text
    bad = harness.client.put(
        "/v1/admin/projects/acme/outcomes/happier",
        json=body | {"target_date": "2025-01-01"},
        headers=harness.admin,
    )
    assert bad.status_code == 422
    survey = harness.client.put(
        "/v1/admin/projects/acme/surveys/exit",
        json={"survey_kind": "csat", "scale_min": 1, "scale_max": 5, "question": "Happy?"},
        headers=harness.admin,
    )
    assert survey.status_code == 200, survey.text
    yaml = (
        "projects:\n  - id: acme\n    name: Acme\n    outcomes:\n      - {id: later, name: Later,"
        " metric: orders, target: 5, start_date: today-3, target_date: today+3}\n"
    )
    applied = harness.client.post(
        "/v1/admin/apply",
        content=yaml,
        headers=harness.admin | {"Content-Type": "application/yaml"},
    )
    assert applied.status_code == 200, applied.text
    later = harness.client.get(
        "/v1/admin/projects/acme/outcomes/later", headers=harness.admin
    ).json()
    assert (
        later["start_date"] == (date.today() - timedelta(days=3)).isoformat()
        or later["start_date"] == (datetime.now(UTC).date() - timedelta(days=3)).isoformat()
    )
    assert harness.client.get("/v1/surveys", headers=harness.foreign).json() == []


def test_web_analytics_sessions_and_bounces(harness: Harness) -> None:
    t = TODAY - timedelta(days=1)

    def page(user: str, minutes: float, path: str, **context: Any) -> dict[str, Any]:
        return {
            "distinct_id": user,
            "event": "$page",
            "type": "page",
            "timestamp": t + timedelta(minutes=minutes),
            "properties": {"path": path, "referrer": context.pop("referrer", "")},
            "context": {"locale": "fr-FR", "userAgent": "Mozilla (iPhone) Mobile"} | context,
        }

    harness.insert_events(
        [
            page("w1", 0, "/", referrer="https://www.google.com/x"),
            page("w1", 5, "/pricing"),
            page("w1", 50, "/"),  # 45 minutes later: a second session, one page
            page("w2", 10, "/blog", campaign={"name": "spring", "source": "newsletter"}),
        ]
    )
    response = harness.client.get(
        "/v1/web",
        params={
            "from": (t - timedelta(hours=1)).isoformat(),
            "to": (t + timedelta(hours=3)).isoformat(),
        },
        headers=harness.read,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"] == {
        "visitors": 2,
        "sessions": 3,
        "pageviews": 4,
        "bounce_rate": pytest.approx(2 / 3),
        "views_per_session": pytest.approx(4 / 3),
        "mean_session_seconds": pytest.approx(100.0),
    }
    dims = {k: {r["value"]: r["sessions"] for r in v} for k, v in body["breakdowns"].items()}
    assert dims["entry"] == {"/": 2, "/blog": 1}
    assert dims["exit"] == {"/pricing": 1, "/": 1, "/blog": 1}
    assert dims["referrer"] == {"google.com": 1, "(direct)": 2}
    assert dims["campaign"] == {"spring": 1, "(none)": 2}
    assert dims["device"] == {"Mobile": 3}
    assert dims["country"] == {"FR": 3}
    assert {r["value"]: r["pageviews"] for r in body["pages"]} == {
        "/": 2,
        "/pricing": 1,
        "/blog": 1,
    }
