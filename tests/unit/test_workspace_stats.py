"""The workspace's statistics against statsmodels and scipy, and by simulation: the outcome
forecast, the time to an experiment's decision, NPS and CSAT intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint

from sextant.gateway import forecast, power
from sextant.gateway.feedback import csat_score, nps_score


def test_the_forecast_is_statsmodels_prediction_interval() -> None:
    rng = np.random.default_rng(7)
    days = np.arange(20, dtype=float)
    values = 100 + 2.5 * days + rng.normal(0, 6, days.size)
    found = forecast.linear_forecast(days, values, at=45.0)
    assert found is not None
    fit = sm.OLS(values, sm.add_constant(days)).fit()
    frame = fit.get_prediction(np.array([[1.0, 45.0]])).summary_frame(alpha=0.05)
    assert found.estimate == pytest.approx(frame["mean"].iloc[0], rel=1e-10)
    assert found.low == pytest.approx(frame["obs_ci_lower"].iloc[0], rel=1e-10)
    assert found.high == pytest.approx(frame["obs_ci_upper"].iloc[0], rel=1e-10)
    assert found.slope_per_day == pytest.approx(fit.params[1], rel=1e-10)


def test_the_forecast_interval_covers_95_percent_of_generated_series() -> None:
    rng = np.random.default_rng(11)
    days = np.arange(14, dtype=float)
    covered = 0
    runs = 2000
    for _ in range(runs):
        slope, level, noise = rng.normal(0, 3), rng.uniform(10, 500), rng.uniform(1, 20)
        values = level + slope * days + rng.normal(0, noise, days.size)
        truth = level + slope * 30 + rng.normal(0, noise)
        found = forecast.linear_forecast(days, values, at=30.0)
        assert found is not None
        covered += found.low <= truth <= found.high
    # 95 % of 2,000 runs: a binomial standard deviation of 0.49 %.
    assert abs(covered / runs - 0.95) < 0.015


def test_no_forecast_from_too_few_days() -> None:
    assert forecast.linear_forecast([0, 1], [1.0, 2.0], at=5) is None
    assert forecast.linear_forecast([3, 3, 3], [1.0, 2.0, 3.0], at=5) is None


def test_progress_runs_from_baseline_to_target() -> None:
    assert forecast.progress(0.2, 0.3, 0.4) == pytest.approx(0.5)
    assert forecast.progress(100, 80, 60) == pytest.approx(0.5)  # a decrease
    assert forecast.progress(1, 1, 1) is None


@pytest.mark.parametrize("effect_size", [0.05, 0.1, 0.2])
def test_units_needed_match_statsmodels_normal_power(effect_size: float) -> None:
    sigma, n_now = 2.0, 400
    se_now = sigma * math.sqrt(2 / n_now)  # two arms of n_now units each
    needed = power.needed_units(n_now, se_now, effect_size * sigma, alpha=0.05, power=0.8)
    reference = NormalIndPower().solve_power(effect_size, alpha=0.05, power=0.8, ratio=1.0)
    assert needed == math.ceil(reference) or abs(needed - reference) <= 1


def test_experiments_of_the_size_needed_detect_the_effect_with_the_stated_power() -> None:
    rng = np.random.default_rng(3)
    p, lift = 0.3, 0.1  # conversion 30 %, a relative lift of 10 % to detect
    pilot = 500
    se_pilot = math.sqrt(2 * p * (1 - p) / pilot)
    n = power.needed_units(pilot, se_pilot, p * lift, power=0.8)
    runs, detected = 2000, 0
    for _ in range(runs):
        control = rng.binomial(n, p) / n
        treatment = rng.binomial(n, p * (1 + lift)) / n
        se = math.sqrt(control * (1 - control) / n + treatment * (1 - treatment) / n)
        detected += abs(treatment - control) / se > stats.norm.ppf(0.975)
    assert abs(detected / runs - 0.8) < 0.03


def test_the_always_valid_size_is_larger_and_reaches_the_effect() -> None:
    n_now, se_now, effect = 1000, 0.02, 0.03
    fixed = power.needed_units(n_now, se_now, effect)
    always = power.needed_units_always_valid(n_now, se_now, effect)
    assert always > fixed
    sigma = se_now * math.sqrt(n_now)
    half = power._always_valid_half_width(always, sigma, 0.05, 2)
    assert half <= effect < power._always_valid_half_width(always - 1, sigma, 0.05, 2)


def test_a_plan_counts_days_at_the_current_rate() -> None:
    plan = power.plan(n_now=1000, se_now=0.02, effect=0.03, elapsed_days=2.0)
    assert plan.units_per_day == pytest.approx(500)
    assert plan.days_remaining == pytest.approx((plan.units_per_variant_needed - 1000) / 500)
    assert power.plan(1000, 0.001, 0.03, 2.0).days_remaining == 0


def test_nps_and_its_interval_are_the_normal_interval_of_the_answers() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 11, 700)
    x = np.where(scores >= 9, 1, np.where(scores <= 6, -1, 0))
    found = nps_score(int((x == 1).sum()), int((x == 0).sum()), int((x == -1).sum()))
    low, high = stats.norm.interval(0.95, loc=x.mean(), scale=x.std(ddof=0) / math.sqrt(x.size))
    assert found.value == pytest.approx(100 * x.mean())
    assert found.low == pytest.approx(100 * low)
    assert found.high == pytest.approx(100 * high)
    assert found.n == 700


def test_csat_is_wilson_as_statsmodels() -> None:
    for satisfied, n in ((45, 60), (0, 12), (12, 12), (3, 1000)):
        found = csat_score(satisfied, n)
        low, high = proportion_confint(satisfied, n, alpha=0.05, method="wilson")
        assert found.value == pytest.approx(satisfied / n)
        assert (found.low, found.high) == pytest.approx((low, high), abs=1e-12)


def test_scores_of_no_answers_are_undefined() -> None:
    assert math.isnan(nps_score(0, 0, 0).value)
    assert math.isnan(csat_score(0, 0).value)
