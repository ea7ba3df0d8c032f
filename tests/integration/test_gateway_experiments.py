"""Experiment results from exposures and events in the real engine, checked against scipy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sextant.gateway import stats
from sextant.schemas.config import Experiment, MetricDefinition, MetricKind, Variant
from tests.integration.test_gateway_harness import Harness, make_harness

T0 = datetime(2025, 8, 1, tzinfo=UTC)
METRICS = [
    MetricDefinition(
        id="revenue",
        project_id="acme",
        metric_kind=MetricKind.SUM,
        event="Purchase",
        property="amount",
    ),
    MetricDefinition(
        id="purchases", project_id="acme", metric_kind=MetricKind.COUNT, event="Purchase"
    ),
    MetricDefinition(
        id="buyers", project_id="acme", metric_kind=MetricKind.UNIQUE_USERS, event="Purchase"
    ),
    MetricDefinition(
        id="aov",
        project_id="acme",
        metric_kind=MetricKind.MEAN,
        event="Purchase",
        property="amount",
    ),
    MetricDefinition(
        id="conv",
        project_id="acme",
        metric_kind=MetricKind.CONVERSION,
        event="Cart",
        conversion_event="Purchase",
        conversion_window_seconds=3600,
    ),
]


def experiment(key: str, **overrides: Any) -> Experiment:
    fields: dict[str, Any] = {
        "id": key,
        "project_id": "acme",
        "variants": [Variant(id="control", weight=0.5), Variant(id="treat", weight=0.5)],
        "primary_metric": "revenue",
        "guardrail_metrics": ["purchases", "buyers", "aov", "conv"],
        "min_sample_per_variant": 20,
        "start": T0 - timedelta(days=1),
        "stop": T0 + timedelta(days=10),
        "cuped_lookback_days": 0,
    }
    return Experiment(**(fields | overrides))


@dataclass
class Truth:
    """What each analysed unit did after its first exposure, per variant."""

    per_variant: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)

    def add(self, variant: str, values: dict[str, tuple[float, float]]) -> None:
        arm = self.per_variant.setdefault(variant, {})
        for metric, xy in values.items():
            arm.setdefault(metric, []).append(xy)

    def xs(self, variant: str, metric: str) -> np.ndarray:
        return np.array([x for x, _ in self.per_variant[variant][metric]])

    def ratio(self, variant: str, metric: str) -> stats.RatioStats:
        pairs = np.array(self.per_variant[variant][metric])
        x, y = pairs[:, 0], pairs[:, 1]
        return stats.RatioStats(
            len(x), x.sum(), (x * x).sum(), y.sum(), (y * y).sum(), (x * y).sum()
        )


def generate(harness: Harness, key: str, units_per_variant: dict[str, int], seed: int) -> Truth:
    rng = np.random.default_rng(seed)
    truth = Truth()
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for variant, count in units_per_variant.items():
        for i in range(count):
            unit = f"{key}-{variant}-{i}"
            exposed = T0 + timedelta(minutes=i)
            exposures.append(
                {"experiment": key, "unit_id": unit, "variation_id": variant, "timestamp": exposed}
            )
            # Before the exposure: must not count.
            events.append(
                {
                    "event": "Purchase",
                    "distinct_id": unit,
                    "timestamp": exposed - timedelta(hours=1),
                    "properties": {"amount": 1000},
                }
            )
            purchases = int(rng.poisson(1.0 + (0.4 if variant == "treat" else 0.0)))
            amounts = [int(a) for a in rng.integers(5, 50, purchases)]
            carted = bool(rng.integers(0, 3))
            if carted:
                events.append(
                    {
                        "event": "Cart",
                        "distinct_id": unit,
                        "timestamp": exposed + timedelta(seconds=10),
                    }
                )
            for j, amount in enumerate(amounts):
                events.append(
                    {
                        "event": "Purchase",
                        "distinct_id": unit,
                        "timestamp": exposed + timedelta(seconds=60 * (j + 1)),
                        "properties": {"amount": amount},
                    }
                )
            truth.add(
                variant,
                {
                    "revenue": (float(sum(amounts)), 0.0),
                    "purchases": (float(purchases), 0.0),
                    "buyers": (float(purchases > 0), 0.0),
                    "aov": (float(sum(amounts)), float(purchases)),
                    "conv": (float(carted and purchases > 0), float(carted)),
                },
            )
    harness.insert_exposures(exposures)
    harness.insert_events(events)
    return truth


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(*METRICS)
        yield running


def results(harness: Harness, key: str) -> dict[str, Any]:
    response = harness.client.get(f"/v1/experiments/{key}/results", headers=harness.read)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_results_match_the_statistics_of_the_raw_units(harness: Harness) -> None:
    harness.put_config(experiment("main"))
    truth = generate(harness, "main", {"control": 150, "treat": 150}, seed=7)
    # A unit seen in both variants, and one flagged by the processor: both left out.
    harness.insert_exposures(
        [
            {"experiment": "main", "unit_id": "both", "variation_id": "control", "timestamp": T0},
            {
                "experiment": "main",
                "unit_id": "both",
                "variation_id": "treat",
                "timestamp": T0 + timedelta(seconds=5),
            },
            {
                "experiment": "main",
                "unit_id": "flagged",
                "variation_id": "treat",
                "timestamp": T0,
                "multi_variant": True,
            },
        ]
    )
    harness.insert_events(
        [
            {
                "event": "Purchase",
                "distinct_id": "both",
                "timestamp": T0 + timedelta(minutes=1),
                "properties": {"amount": 999},
            },
            {
                "event": "Purchase",
                "distinct_id": "main-control-0",
                "timestamp": T0 + timedelta(days=11),
                "properties": {"amount": 999},
            },
        ]
    )
    body = results(harness, "main")
    assert [v["units"] for v in body["variants"]] == [150, 150]
    assert body["multi_variant_units"] == 2
    assert body["srm"]["flagged"] is False
    assert body["correction"] == "holm"

    by_metric = {m["metric"]: m for m in body["metrics"]}
    assert [m["role"] for m in body["metrics"]] == [
        "primary",
        "guardrail",
        "guardrail",
        "guardrail",
        "guardrail",
    ]
    for key in ("revenue", "purchases", "buyers"):
        control, treat = truth.xs("control", key), truth.xs("treat", key)
        welch = scipy_stats.ttest_ind(treat, control, equal_var=False)
        ci = welch.confidence_interval(0.95)
        comparison = by_metric[key]["comparisons"][0]
        assert comparison["absolute"]["estimate"] == pytest.approx(
            treat.mean() - control.mean(), rel=1e-9
        )
        assert comparison["absolute"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
        assert comparison["absolute"]["ci"]["low"] == pytest.approx(ci.low, rel=1e-6)
        assert comparison["absolute"]["ci"]["high"] == pytest.approx(ci.high, rel=1e-6)
        assert by_metric[key]["variants"][0]["mean"] == pytest.approx(control.mean(), rel=1e-9)
        assert by_metric[key]["variants"][0]["variance"] == pytest.approx(
            control.var(ddof=1), rel=1e-9
        )
    assert by_metric["buyers"]["analysed_as"] == "proportion"

    for key in ("aov", "conv"):
        expected = stats.compare_ratios(
            truth.ratio("control", key), truth.ratio("treat", key), rho=stats.DEFAULT_RHO
        )
        comparison = by_metric[key]["comparisons"][0]
        assert by_metric[key]["analysed_as"] == "ratio"
        assert comparison["absolute"]["estimate"] == pytest.approx(
            expected.absolute.estimate, rel=1e-9
        )
        assert comparison["relative"]["ci"]["low"] == pytest.approx(
            expected.relative.ci.low, rel=1e-6
        )
        assert comparison["always_valid_p_value"] == pytest.approx(
            expected.sequential_p_value, rel=1e-6
        )

    raw = [
        by_metric[m]["comparisons"][0]["always_valid_p_value"]
        for m in ("revenue", "purchases", "buyers", "aov", "conv")
    ]
    adjusted = [
        by_metric[m]["comparisons"][0]["adjusted_p_value"]
        for m in ("revenue", "purchases", "buyers", "aov", "conv")
    ]
    assert adjusted == pytest.approx(stats.holm(raw), rel=1e-9)
    for m in by_metric.values():
        comparison = m["comparisons"][0]
        low, high = comparison["always_valid"]["low"], comparison["always_valid"]["high"]
        assert (
            low
            <= comparison["absolute"]["ci"]["low"]
            <= comparison["absolute"]["ci"]["high"]
            <= high
        )
        significant = comparison["adjusted_p_value"] < 0.05
        expected_verdict = (
            ("win" if comparison["absolute"]["estimate"] > 0 else "loss")
            if significant
            else "inconclusive"
        )
        assert comparison["verdict"] == expected_verdict


def test_a_holdout_has_results_of_its_own(harness: Harness) -> None:
    """A project's holdout is an experiment like any other: units held back from new features
    beside the general population, each with its metrics."""
    holdout = experiment(
        "global-holdout",
        holdout=True,
        variants=[Variant(id="holdout", weight=0.1), Variant(id="general", weight=0.9)],
    )
    harness.put_config(holdout)
    truth = generate(harness, "global-holdout", {"holdout": 40, "general": 360}, seed=5)
    body = results(harness, "global-holdout")
    assert [(v["id"], v["units"]) for v in body["variants"]] == [("holdout", 40), ("general", 360)]
    assert body["srm"]["flagged"] is False
    revenue = {m["metric"]: m for m in body["metrics"]}["revenue"]
    held, general = truth.xs("holdout", "revenue"), truth.xs("general", "revenue")
    assert revenue["variants"][0]["mean"] == pytest.approx(held.mean(), rel=1e-9)
    welch = scipy_stats.ttest_ind(general, held, equal_var=False)
    comparison = revenue["comparisons"][0]
    assert comparison["absolute"]["estimate"] == pytest.approx(general.mean() - held.mean())
    assert comparison["absolute"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)


def test_a_lopsided_split_is_flagged_and_its_verdicts_invalid(harness: Harness) -> None:
    harness.put_config(experiment("skewed", correction="benjamini_hochberg"))
    generate(harness, "skewed", {"control": 300, "treat": 150}, seed=11)
    body = results(harness, "skewed")
    assert body["srm"]["checked"] is True
    assert body["srm"]["flagged"] is True
    assert body["srm"]["p_value"] < 1e-6
    assert {c["verdict"] for m in body["metrics"] for c in m["comparisons"]} == {"invalid_srm"}


def test_few_units_are_too_early_and_missing_metrics_are_named(harness: Harness) -> None:
    harness.put_config(experiment("young", guardrail_metrics=["purchases", "nonexistent"]))
    generate(harness, "young", {"control": 5, "treat": 1}, seed=3)
    body = results(harness, "young")
    by_metric = {m["metric"]: m for m in body["metrics"]}
    assert by_metric["revenue"]["comparisons"][0]["verdict"] == "too_early"
    assert by_metric["revenue"]["comparisons"][0]["absolute"]["estimate"] is None
    assert by_metric["nonexistent"]["error"] == "metric 'nonexistent' is not defined"
    assert body["srm"]["checked"] is False


def test_results_of_an_experiment_without_exposures(harness: Harness) -> None:
    harness.put_config(experiment("empty"))
    body = results(harness, "empty")
    assert [v["units"] for v in body["variants"]] == [0, 0]
    assert {c["verdict"] for m in body["metrics"] for c in m["comparisons"]} == {"too_early"}


def test_definitions_list_the_projects_experiments_with_an_etag(harness: Harness) -> None:
    harness.put_config(experiment("listed"))
    response = harness.client.get("/v1/experiments/definitions", headers=harness.read)
    assert response.status_code == 200
    documents = response.json()
    assert isinstance(documents, list)
    assert "listed" in [d["id"] for d in documents]
    assert all(Experiment.model_validate(d).project_id == "acme" for d in documents)
    again = harness.client.get(
        "/v1/experiments/definitions",
        headers=harness.read | {"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    foreign = harness.client.get("/v1/experiments/definitions", headers=harness.foreign)
    assert foreign.json() == []


SURVEYS = [
    MetricDefinition(
        id="nps",
        project_id="acme",
        metric_kind=MetricKind.NPS,
        event="Survey Answered",
        property="score",
    ),
    MetricDefinition(
        id="csat",
        project_id="acme",
        metric_kind=MetricKind.CSAT,
        event="Rating Given",
        property="stars",
        satisfied_from=4,
    ),
]


def test_survey_metrics_compare_scores_not_raw_answers(harness: Harness) -> None:
    """An NPS experiment compares % promoters - % detractors per variant, a CSAT one the
    satisfied share: per unit the sum of each response's value over its responses."""
    harness.put_config(
        *SURVEYS,
        experiment("survey", primary_metric="nps", guardrail_metrics=["csat"]),
    )
    rng = np.random.default_rng(11)
    answers: dict[str, dict[str, list[int]]] = {}
    exposures, events = [], []
    for variant, lift in (("control", 0), ("treat", 2)):
        answers[variant] = {"nps": [], "csat": []}
        for i in range(120):
            unit = f"survey-{variant}-{i}"
            exposed = T0 + timedelta(minutes=i)
            exposures.append(
                {
                    "experiment": "survey",
                    "unit_id": unit,
                    "variation_id": variant,
                    "timestamp": exposed,
                }
            )
            scores = [int(min(10, s + lift)) for s in rng.integers(0, 11, rng.integers(0, 3))]
            stars = [int(s) for s in rng.integers(1, 6, rng.integers(0, 2))]
            for j, score in enumerate(scores):
                events.append(
                    {
                        "event": "Survey Answered",
                        "distinct_id": unit,
                        "timestamp": exposed + timedelta(minutes=j + 1),
                        "properties": {"score": score},
                    }
                )
            for star in stars:
                events.append(
                    {
                        "event": "Rating Given",
                        "distinct_id": unit,
                        "timestamp": exposed + timedelta(minutes=5),
                        "properties": {"stars": star},
                    }
                )
            answers[variant]["nps"].extend(scores)
            answers[variant]["csat"].extend(stars)
    harness.insert_exposures(exposures)
    harness.insert_events(events)

    body = results(harness, "survey")
    by_metric = {m["metric"]: m for m in body["metrics"]}
    for variant_index, variant in enumerate(("control", "treat")):
        scores = np.array(answers[variant]["nps"])
        nps = 100 * ((scores >= 9).mean() - (scores <= 6).mean())
        stars = np.array(answers[variant]["csat"])
        assert by_metric["nps"]["variants"][variant_index]["mean"] == pytest.approx(nps, rel=1e-9)
        assert by_metric["csat"]["variants"][variant_index]["mean"] == pytest.approx(
            (stars >= 4).mean(), rel=1e-9
        )
    for key in ("nps", "csat"):
        assert by_metric[key]["analysed_as"] == "ratio"
        control = np.array(answers["control"][key])
        treat = np.array(answers["treat"][key])
        if key == "nps":
            c_value = 100 * ((control >= 9).mean() - (control <= 6).mean())
            t_value = 100 * ((treat >= 9).mean() - (treat <= 6).mean())
        else:
            c_value, t_value = (control >= 4).mean(), (treat >= 4).mean()
        comparison = by_metric[key]["comparisons"][0]
        assert comparison["absolute"]["estimate"] == pytest.approx(t_value - c_value, rel=1e-9)
