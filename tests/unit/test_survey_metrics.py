"""NPS and CSAT as live windows: each response's value, the processor's window components
against a direct computation over the answers, the score and its interval from those
components against the gateway's survey formulas, scipy and statsmodels, and alert rules
reading the score as the dashboard does."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from sextant.gateway.feedback import csat_score, nps_score
from sextant.processor.alert_rules import MetricRuleEvaluator, merge_points, metric_value
from sextant.processor.definitions import compile_metric
from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.metric_values import Components, response_value
from sextant.schemas.metric_values import metric_value as value_of
from sextant.schemas.records import AlertState, MetricPoint
from tests.unit.test_alerting_rules import T0 as RULE_T0
from tests.unit.test_alerting_rules import feed, point, rule
from tests.unit.test_processor_partition import T0, Catalog, Pipeline, event

Z95 = stats.norm.ppf(0.975)
NON_SCORES: list[Any] = ["9", "n/a", True, None, [9], {"v": 9}]
"""Values that are not JSON numbers: skipped, as a mean skips them."""


def _definition(kind: str, **extra: Any) -> MetricDefinition:
    return MetricDefinition(
        id=kind,
        project_id="p",
        metric_kind=kind,
        event="Survey Responded",
        property="score",
        breakdown="plan",
        **extra,
    )


def _nps_value(score: float) -> float:
    return 100.0 if score >= 9 else -100.0 if score <= 6 else 0.0


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0, -100), (6, -100), (6.5, 0), (7, 0), (8.99, 0), (9, 100), (10, 100), (11, 100), (-1, -100)],
)
def test_nps_values_promoters_passives_detractors(score: float, expected: float) -> None:
    assert response_value(MetricKind.NPS, score, 4.0) == expected


@pytest.mark.parametrize(
    ("score", "satisfied_from", "expected"),
    [(3, 4.0, 0.0), (3.99, 4.0, 0.0), (4, 4.0, 1.0), (5, 4.0, 1.0), (3.5, 3.5, 1.0), (0, 0.5, 0)],
)
def test_csat_values_satisfied_or_not(score: float, satisfied_from: float, expected: float) -> None:
    assert response_value(MetricKind.CSAT, score, satisfied_from) == expected


def test_a_score_that_is_not_a_json_number_has_no_value() -> None:
    nps = compile_metric(_definition("nps"))
    csat = compile_metric(_definition("csat", satisfied_from=3))
    for raw in NON_SCORES:
        assert nps.value_of({"score": raw}) is None
        assert csat.value_of({"score": raw}) is None
    assert nps.value_of({}) is None
    assert (nps.value_of({"score": 9}), nps.value_of({"score": 8.0})) == (100.0, 0.0)
    assert (csat.value_of({"score": 3}), csat.value_of({"score": 2})) == (1.0, 0.0)


def _answers(seed: int, count: int) -> list[tuple[int, str, Any]]:
    """(second after T0, plan, score) with scores on the scale, off it and not numbers."""
    rng = random.Random(seed)
    scores: list[Any] = [*range(11), 7.5, 11, -1, *NON_SCORES]
    return [
        (rng.randrange(180), rng.choice(["free", "pro", "team"]), rng.choice(scores))
        for _ in range(count)
    ]


def _windows(kind: str, answers: list[tuple[int, str, Any]]) -> dict[tuple[int, str], Any]:
    definition = _definition(kind)
    pipe = Pipeline(Catalog(definition, lateness=600))
    for i, (second, plan, score) in enumerate(answers):
        view = event("Survey Responded", T0 + second, f"u{i}", plan=plan, score=score)
        pipe.send(view, partition=i % 2)
        if i % 50 == 0:
            pipe.flush()
    pipe.flush()
    return {k: p for k, p in pipe.latest(kind).items() if p.count}


def _scored(answers: list[tuple[int, str, Any]]) -> list[tuple[int, str, float]]:
    return [
        (int(T0 + s) // 60 * 60, plan, float(score))
        for s, plan, score in answers
        if type(score) in (int, float)
    ]


def test_nps_windows_are_those_of_a_mean_over_the_response_values() -> None:
    answers = _answers(7, 600)
    windows = _windows("nps", answers)
    expected: dict[tuple[int, str], list[float]] = {}
    for minute, plan, score in _scored(answers):
        expected.setdefault((minute, plan), []).append(score)
    assert set(windows) == set(expected)
    for key, scores in expected.items():
        values = np.array([_nps_value(s) for s in scores])
        window = windows[key]
        assert (window.count, window.sum, window.sum_sq) == (
            len(values),
            pytest.approx(values.sum()),
            pytest.approx((values**2).sum()),
        )
        promoters = sum(s >= 9 for s in scores)
        detractors = sum(s <= 6 for s in scores)
        survey = nps_score(promoters, len(scores) - promoters - detractors, detractors)
        components = Components(window.count, window.sum)
        assert value_of(MetricKind.NPS, components) == pytest.approx(survey.value)


def test_csat_windows_hold_the_satisfied_share() -> None:
    answers = _answers(8, 400)
    windows = _windows("csat", answers)
    for (minute, plan), window in windows.items():
        scores = [s for m, p, s in _scored(answers) if (m, p) == (minute, plan)]
        satisfied = sum(s >= 4 for s in scores)
        assert (window.count, window.sum, window.sum_sq) == (len(scores), satisfied, satisfied)
        share = value_of(MetricKind.CSAT, Components(window.count, window.sum))
        assert share == pytest.approx(csat_score(satisfied, len(scores)).value)


def test_merged_windows_carry_the_intervals_of_the_survey_results() -> None:
    """Minutes and breakdown values add up to the whole range's count, sum and sum of
    squares, which give NPS's normal interval and CSAT's Wilson interval exactly."""
    answers = _answers(9, 800)
    nps = list(_windows("nps", answers).values())
    n, total, squares = (sum(getattr(p, f) for p in nps) for f in ("count", "sum", "sum_sq"))
    values = np.array([_nps_value(s) for _, _, s in _scored(answers)])
    mean, variance = total / n, squares / n - (total / n) ** 2
    half = Z95 * math.sqrt(variance / n)
    low, high = stats.norm.interval(0.95, loc=values.mean(), scale=values.std() / math.sqrt(n))
    assert (mean - half, mean + half) == pytest.approx((low, high))
    promoters, detractors = int((values > 0).sum()), int((values < 0).sum())
    survey = nps_score(promoters, n - promoters - detractors, detractors)
    assert (survey.low, survey.high) == pytest.approx((low, high))

    csat = list(_windows("csat", answers).values())
    n, satisfied = sum(p.count for p in csat), sum(p.sum for p in csat)
    wilson = proportion_confint(round(satisfied), n, alpha=0.05, method="wilson")
    share = csat_score(round(satisfied), n)
    assert (share.low, share.high) == pytest.approx(wilson)


def test_an_empty_window_has_no_score() -> None:
    assert value_of(MetricKind.NPS, Components()) is None
    assert value_of(MetricKind.CSAT, Components()) is None
    assert value_of(MetricKind.NPS, Components(4, -100.0)) == -25.0


def _nps_point(promoters: int, passives: int, detractors: int) -> list[MetricPoint]:
    n = promoters + passives + detractors
    total = 100.0 * (promoters - detractors)
    return [point(RULE_T0, n, sum=total, sum_sq=10_000.0 * (promoters + detractors))]


def test_alert_rules_judge_the_score() -> None:
    merged = merge_points(_nps_point(50, 30, 20) + _nps_point(10, 10, 20))
    value, volume = metric_value(MetricKind.NPS, merged)
    assert value == pytest.approx(100 * 20 / 140)
    assert volume == 140.0
    r = rule(rule_kind="threshold", direction="below", threshold=10, recovery_threshold=20)
    evaluator = MetricRuleEvaluator("shop", r, MetricKind.NPS)
    series = [_nps_point(50, 30, 20), _nps_point(20, 40, 40), _nps_point(60, 30, 10)]
    transitions = feed(evaluator, series)
    assert [t.to_state for t in transitions] == [AlertState.FIRING, AlertState.RESOLVED]
    assert transitions[0].value == pytest.approx(-20.0)
