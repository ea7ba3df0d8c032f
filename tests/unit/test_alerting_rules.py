"""Metric and experiment rules: what each kind judges a breach, a recovery, or neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from sextant.core.alerting import Outcome, RuleState
from sextant.gateway.experiment_rules import (
    ExperimentSnapshot,
    VariantResult,
    evaluate_experiment_rule,
    judge_guardrail,
    judge_srm,
)
from sextant.processor.alert_rules import MetricRuleEvaluator, merge_points, metric_value
from sextant.schemas.config import AlertRule, Experiment, MetricKind
from sextant.schemas.records import AlertState, AlertTransition, MetricPoint
from sextant.schemas.sketches import HLL_REGISTERS, hll_add, hll_pack

T0 = datetime(2025, 3, 3, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def rule(**fields: Any) -> AlertRule:
    base: dict[str, Any] = {"id": "r", "project_id": "shop", "metric": "checkout"}
    return AlertRule.model_validate(base | fields)


def point(at: datetime, count: int = 0, denominator: int = 0, **fields: Any) -> MetricPoint:
    values: dict[str, Any] = {
        "project_id": "shop",
        "metric": "checkout",
        "window_start": at,
        "count": count,
        "denominator": denominator,
        "emitted_at": at + MINUTE,
    }
    return MetricPoint.model_validate(values | fields)


def feed(
    evaluator: MetricRuleEvaluator, series: list[list[MetricPoint]], start: datetime = T0
) -> list[AlertTransition]:
    transitions = []
    for i, points in enumerate(series):
        t = evaluator.close(start + i * evaluator.window, points)
        if t is not None:
            transitions.append(t)
    return transitions


def conversion(rate: float, users: int = 1000) -> list[MetricPoint]:
    return [point(T0, round(rate * users), users)]  # window_start is not read by the judge


# --- values ---------------------------------------------------------------------------------


def test_values_by_metric_kind() -> None:
    merged = merge_points([point(T0, 30, 300), point(T0 + MINUTE, 20, 200)])
    assert metric_value(MetricKind.CONVERSION, merged) == (0.1, 500.0)
    assert metric_value(MetricKind.COUNT, merged) == (50.0, 50.0)
    mean = merge_points([point(T0, 4, sum=10.0), point(T0, 1, sum=5.0)])
    assert metric_value(MetricKind.MEAN, mean)[0] == 3.0


def test_an_empty_window_is_zero_for_counts_and_no_value_for_ratios() -> None:
    empty = merge_points([])
    assert metric_value(MetricKind.COUNT, empty) == (0.0, 0.0)
    assert metric_value(MetricKind.CONVERSION, empty)[0] is None
    assert metric_value(MetricKind.PERCENTILES, empty)[0] is None


def _sketch(users: range) -> list[int]:
    registers = bytearray(HLL_REGISTERS)
    for user in users:
        hll_add(registers, f"user-{user}")
    return hll_pack(registers)


def test_distinct_users_and_quantiles_come_from_the_sketches() -> None:
    minutes = [point(T0, hll=_sketch(range(600))), point(T0, hll=_sketch(range(400, 1000)))]
    users, _ = metric_value(MetricKind.UNIQUE_USERS, merge_points(minutes))
    assert users == pytest.approx(1000, abs=10)  # the union, not the sum
    digest = [(float(v), 1.0) for v in range(1, 101)]
    p90, _ = metric_value(MetricKind.PERCENTILES, merge_points([point(T0, digest=digest)]), 0.9)
    assert p90 == pytest.approx(90.5, abs=0.6)


def test_the_total_is_the_unbroken_point_or_the_union_of_breakdowns() -> None:
    per_value = [point(T0, 10, 100, breakdown="eu"), point(T0, 30, 100, breakdown="us")]
    evaluator = MetricRuleEvaluator(
        "shop", rule(rule_kind="threshold", threshold=0.5), MetricKind.CONVERSION
    )
    assert evaluator.judge(T0, per_value).value == 0.2
    with_total = [*per_value, point(T0, 40, 200)]
    assert evaluator.judge(T0, with_total).value == 0.2
    eu = MetricRuleEvaluator(
        "shop", rule(rule_kind="threshold", threshold=0.5, breakdown="eu"), MetricKind.CONVERSION
    )
    assert eu.judge(T0, with_total).value == 0.1


# --- threshold ------------------------------------------------------------------------------


def test_threshold_with_hysteresis_does_not_flap() -> None:
    r = rule(rule_kind="threshold", direction="below", threshold=0.08, recovery_threshold=0.09)
    evaluator = MetricRuleEvaluator("shop", r, MetricKind.CONVERSION)
    # Oscillating around the threshold after firing: inside the band, it stays firing.
    rates = [0.10, 0.07, 0.085, 0.079, 0.085, 0.081, 0.089, 0.095]
    transitions = feed(evaluator, [conversion(x) for x in rates])
    assert [t.to_state for t in transitions] == [AlertState.FIRING, AlertState.RESOLVED]
    assert transitions[1].at == T0 + 8 * MINUTE


def test_threshold_ignores_windows_below_the_minimum_volume() -> None:
    r = rule(rule_kind="threshold", direction="below", threshold=0.08, min_volume=100)
    evaluator = MetricRuleEvaluator("shop", r, MetricKind.CONVERSION)
    assert feed(evaluator, [conversion(0.0, users=20)] * 5) == []
    assert feed(evaluator, [conversion(0.02, users=200)])[0].to_state is AlertState.FIRING


def test_an_undefined_metric_is_an_error_state() -> None:
    evaluator = MetricRuleEvaluator("shop", rule(rule_kind="threshold", threshold=1), None)
    transitions = feed(evaluator, [[]])
    assert transitions[0].to_state is AlertState.ERROR
    assert "not defined" in transitions[0].message


# --- relative change ------------------------------------------------------------------------


def test_relative_change_against_the_same_window_a_day_earlier() -> None:
    r = rule(
        rule_kind="relative_change",
        baseline="day",
        direction="below",
        change_percent=30,
        evaluation_window_minutes=60,
    )
    evaluator = MetricRuleEvaluator("shop", r, MetricKind.COUNT)
    daily = [100, 120, 300, 80] * 6  # a daily pattern: 24 hourly windows
    yesterday = [[point(T0, c)] for c in daily]
    assert feed(evaluator, yesterday) == []  # no baseline yet: holds
    today = [[point(T0, c)] for c in daily]
    today[2] = [point(T0, 150)]  # half of yesterday's 300 at the same hour
    transitions = feed(evaluator, today, T0 + timedelta(days=1))
    assert [t.to_state for t in transitions] == [AlertState.FIRING, AlertState.RESOLVED]
    assert transitions[0].at == T0 + timedelta(days=1, hours=3)
    assert transitions[0].threshold == pytest.approx(210.0)


def test_relative_change_against_a_trailing_mean() -> None:
    r = rule(
        rule_kind="relative_change",
        baseline="trailing",
        baseline_windows=5,
        direction="either",
        change_percent=50,
    )
    evaluator = MetricRuleEvaluator("shop", r, MetricKind.COUNT)
    counts = [100] * 5 + [160] + [100] * 5
    transitions = feed(evaluator, [[point(T0, c)] for c in counts])
    assert [t.to_state for t in transitions] == [AlertState.FIRING, AlertState.RESOLVED]


# --- anomaly ----------------------------------------------------------------------------------


def anomaly_rule(**fields: Any) -> AlertRule:
    return rule(
        rule_kind="anomaly",
        direction="either",
        k_sigma=3.0,
        pending_windows=3,
        min_volume=200,
        **fields,
    )


def test_noise_around_a_steady_rate_does_not_fire_in_a_long_run() -> None:
    rng = np.random.default_rng(7)
    users = rng.poisson(2000, size=4320)  # three days of minutes
    converted = rng.binomial(users, 0.10)
    evaluator = MetricRuleEvaluator("shop", anomaly_rule(), MetricKind.CONVERSION)
    breaches = 0
    for i, (n, c) in enumerate(zip(users, converted, strict=True)):
        at = T0 + i * MINUTE
        breaches += evaluator.judge(at, [point(at, int(c), int(n))]).outcome is Outcome.BREACH
    # The deviation is estimated, not assumed: single-window breaches stay near the nominal
    # two-sided 3-sigma rate (0.27 %), far from zero and far from frequent.
    assert breaches < 0.01 * len(users)


def test_a_steady_rate_never_fires_with_a_pending_period() -> None:
    rng = np.random.default_rng(11)
    evaluator = MetricRuleEvaluator("shop", anomaly_rule(), MetricKind.CONVERSION)
    users = rng.poisson(2000, size=4320)
    converted = rng.binomial(users, 0.1)
    series = [[point(T0, int(c), int(n))] for n, c in zip(users, converted, strict=True)]
    transitions = feed(evaluator, series)
    assert AlertState.FIRING not in {t.to_state for t in transitions}
    # Single 3-sigma excursions happen (pending), about as often as a normal tail says.
    assert sum(t.to_state is AlertState.PENDING for t in transitions) < 0.01 * len(series)


def test_a_drop_fires_within_the_pending_period_and_quiet_hours_do_not() -> None:
    rng = np.random.default_rng(3)
    evaluator = MetricRuleEvaluator("shop", anomaly_rule(), MetricKind.CONVERSION)
    steady = [[point(T0, int(rng.binomial(2000, 0.10)), 2000)] for _ in range(240)]
    quiet = [[point(T0, 0, 50)] for _ in range(30)]  # a conversion of 0 on 50 users
    drop = [[point(T0, int(rng.binomial(2000, 0.05)), 2000)] for _ in range(10)]
    recovered = [[point(T0, int(rng.binomial(2000, 0.10)), 2000)] for _ in range(5)]
    transitions = feed(evaluator, steady + quiet + drop + recovered)
    states = [t.to_state for t in transitions]
    assert states == [AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED]
    assert transitions[1].at == T0 + (240 + 30 + 3) * MINUTE  # the third window of the drop
    assert transitions[1].value is not None
    assert transitions[1].value < 0.06
    assert transitions[2].at == T0 + (240 + 30 + 10 + 1) * MINUTE


def test_a_lasting_new_level_is_learnt_after_baseline_windows() -> None:
    evaluator = MetricRuleEvaluator(
        "shop", anomaly_rule(baseline_windows=20), MetricKind.CONVERSION
    )
    rng = np.random.default_rng(5)
    before = [[point(T0, int(rng.binomial(2000, 0.10)), 2000)] for _ in range(100)]
    after = [[point(T0, int(rng.binomial(2000, 0.05)), 2000)] for _ in range(100)]
    transitions = feed(evaluator, before + after)
    states = [t.to_state for t in transitions]
    assert states[:3] == [AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED]
    assert AlertState.FIRING not in states[3:]


# --- experiments ------------------------------------------------------------------------------


EXPERIMENT = Experiment.model_validate(
    {
        "id": "new-checkout",
        "project_id": "shop",
        "variants": [{"id": "control", "weight": 0.5}, {"id": "one-page", "weight": 0.5}],
        "guardrail_metrics": ["order-value"],
        "min_sample_per_variant": 100,
    }
)


def snapshot(
    lift: float, low: float, high: float, srm: bool = False, units: int = 5000
) -> ExperimentSnapshot:
    result = VariantResult("order-value", "one-page", units, lift, low, high)
    return ExperimentSnapshot("new-checkout", "control", True, srm, 1e-6 if srm else 0.4, (result,))


GUARDRAIL = rule(
    rule_kind="experiment_guardrail",
    metric=None,
    experiment="new-checkout",
    direction="below",
    min_effect=0.02,
)


@pytest.mark.parametrize(
    ("lift", "low", "high", "outcome"),
    [
        (-0.08, -0.12, -0.04, Outcome.BREACH),  # large and significant
        (-0.08, -0.20, 0.04, Outcome.RECOVERED),  # large, not significant
        (-0.01, -0.015, -0.005, Outcome.HOLD),  # significant, smaller than the minimum
        (0.05, 0.01, 0.09, Outcome.RECOVERED),  # better, not a regression
    ],
)
def test_a_guardrail_needs_both_the_minimum_effect_and_significance(
    lift: float, low: float, high: float, outcome: Outcome
) -> None:
    assert judge_guardrail(GUARDRAIL, EXPERIMENT, snapshot(lift, low, high)).outcome is outcome


def test_a_guardrail_is_suppressed_while_the_experiment_fails_srm() -> None:
    judged = judge_guardrail(GUARDRAIL, EXPERIMENT, snapshot(-0.08, -0.12, -0.04, srm=True))
    assert judged.outcome is Outcome.HOLD
    assert "SRM" in judged.detail


def test_a_guardrail_waits_for_the_minimum_sample() -> None:
    judged = judge_guardrail(GUARDRAIL, EXPERIMENT, snapshot(-0.5, -0.9, -0.1, units=40))
    assert judged.outcome is Outcome.HOLD


def test_srm_fires_only_once_checked_and_flagged() -> None:
    assert judge_srm(snapshot(0, -1, 1, srm=True)).outcome is Outcome.BREACH
    assert judge_srm(snapshot(0, -1, 1)).outcome is Outcome.RECOVERED
    unchecked = ExperimentSnapshot("new-checkout", "control", False, False, 0.0)
    assert judge_srm(unchecked).outcome is Outcome.HOLD


def test_experiment_rules_fire_and_resolve_when_the_experiment_stops() -> None:
    srm_rule = rule(rule_kind="srm", metric=None, experiment="new-checkout")
    state, fired = evaluate_experiment_rule(
        "shop", srm_rule, RuleState(), EXPERIMENT, snapshot(0, -1, 1, srm=True), T0
    )
    assert fired is not None
    assert fired.to_state is AlertState.FIRING
    stopped = EXPERIMENT.model_copy(update={"stop": T0 + MINUTE})
    _, resolved = evaluate_experiment_rule(
        "shop", srm_rule, state, stopped, snapshot(0, -1, 1, srm=True), T0 + 2 * MINUTE
    )
    assert resolved is not None
    assert resolved.to_state is AlertState.RESOLVED


def test_unavailable_results_are_an_error_and_a_missing_experiment_too() -> None:
    srm_rule = rule(rule_kind="srm", metric=None, experiment="new-checkout")
    _, failed = evaluate_experiment_rule(
        "shop", srm_rule, RuleState(), EXPERIMENT, RuntimeError("warehouse down"), T0
    )
    assert failed is not None
    assert failed.to_state is AlertState.ERROR
    _, missing = evaluate_experiment_rule("shop", srm_rule, RuleState(), None, None, T0)
    assert missing is not None
    assert "not defined" in missing.message
