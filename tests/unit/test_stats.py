"""Experiment statistics checked against scipy and statsmodels on raw data."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import optimize, stats
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from sextant.gateway.stats import (
    Comparison,
    Estimate,
    Interval,
    MeanStats,
    RatioStats,
    SrmResult,
    Verdict,
    adjust_p_values,
    always_valid_p_value,
    benjamini_hochberg,
    compare_means,
    compare_ratios,
    confidence_sequence,
    decide,
    holm,
    ratio_lift,
    ratio_relative_lift,
    relative_lift,
    rho_for_sample_size,
    srm_check,
    verdict,
    welch_test,
)

Array = NDArray[np.float64]
REL = 1e-9


def close(actual: float, expected: float, rel: float = REL) -> bool:
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=0.0)


def mean_stats(x: Array) -> MeanStats:
    return MeanStats(n=len(x), sum=float(x.sum()), sum_sq=float((x * x).sum()))


def ratio_stats(x: Array, y: Array) -> RatioStats:
    return RatioStats(
        n=len(x),
        sum_num=float(x.sum()),
        sum_num_sq=float((x * x).sum()),
        sum_den=float(y.sum()),
        sum_den_sq=float((y * y).sum()),
        sum_num_den=float((x * y).sum()),
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    make: Callable[[np.random.Generator], tuple[Array, Array]]


SCENARIOS = [
    Scenario(
        "normal-unequal-var",
        lambda r: (r.normal(10, 2, 500), r.normal(10.3, 3, 700)),
    ),
    Scenario(
        "conversion",
        lambda r: (
            r.binomial(1, 0.10, 2000).astype(float),
            r.binomial(1, 0.12, 2100).astype(float),
        ),
    ),
    Scenario(
        "revenue-lognormal",
        lambda r: (r.lognormal(3, 1.2, 300), r.lognormal(3.1, 1.0, 250)),
    ),
    Scenario("tiny-samples", lambda r: (r.normal(5, 1, 5), r.normal(6, 2, 8))),
    Scenario("large-offset", lambda r: (r.normal(100, 1, 1000), r.normal(100.05, 1, 1000))),
    Scenario(
        "counts", lambda r: (r.poisson(3, 5000).astype(float), r.poisson(3.1, 4000).astype(float))
    ),
]
SCENARIO_IDS = [s.name for s in SCENARIOS]


@pytest.fixture(params=SCENARIOS, ids=SCENARIO_IDS)
def samples(request: pytest.FixtureRequest) -> tuple[Array, Array]:
    scenario: Scenario = request.param
    return scenario.make(np.random.default_rng(zlib.crc32(scenario.name.encode())))


# --- Welch ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_welch_matches_scipy(samples: tuple[Array, Array], alpha: float) -> None:
    c, t = samples
    ours = welch_test(mean_stats(c), mean_stats(t), alpha)
    ref = stats.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(confidence_level=1 - alpha)
    assert close(ours.estimate, t.mean() - c.mean())
    assert close(ours.statistic, ref.statistic)
    assert close(ours.p_value, ref.pvalue)
    assert close(ours.df, ref.df)
    assert close(ours.ci.low, ci.low)
    assert close(ours.ci.high, ci.high)


def test_welch_matches_statsmodels(samples: tuple[Array, Array]) -> None:
    c, t = samples
    ours = welch_test(mean_stats(c), mean_stats(t))
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    statistic, p_value, df = cm.ttest_ind(usevar="unequal")
    low, high = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    assert close(ours.statistic, statistic)
    assert close(ours.p_value, p_value)
    assert close(ours.df, df)
    assert close(ours.ci.low, low)
    assert close(ours.ci.high, high)


def test_mean_and_variance_from_sums(samples: tuple[Array, Array]) -> None:
    for x in samples:
        s = mean_stats(x)
        assert close(s.mean, float(np.mean(x)))
        assert close(s.variance, float(np.var(x, ddof=1)))


# --- Relative lift (delta method) -------------------------------------------------------------


def _relative_delta(c: Array, t: Array, deriv: bool) -> NonlinearDeltaCov:
    def func(p: Array) -> Array:
        return np.atleast_1d(p[0] / p[1] - 1)

    def grad(p: Array) -> Array:
        return np.array([[1 / p[1], -p[0] / p[1] ** 2]])

    cov = np.diag([np.var(t, ddof=1) / len(t), np.var(c, ddof=1) / len(c)])
    params = np.array([t.mean(), c.mean()])
    return NonlinearDeltaCov(func, params, cov, deriv=grad if deriv else None)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_relative_lift_matches_statsmodels_delta_method(
    samples: tuple[Array, Array], alpha: float
) -> None:
    c, t = samples
    ours = relative_lift(mean_stats(c), mean_stats(t), alpha)
    df = stats.ttest_ind(t, c, equal_var=False).df
    ref = _relative_delta(c, t, deriv=True)
    se = float(ref.se_vectorized()[0])
    ((low, high),) = ref.conf_int(alpha=alpha, use_t=True, df=df)
    assert close(ours.estimate, t.mean() / c.mean() - 1)
    assert close(ours.se, se)
    assert close(ours.df, df)
    assert close(ours.ci.low, low)
    assert close(ours.ci.high, high)
    assert close(ours.p_value, 2 * stats.t.sf(abs(ours.estimate) / se, df))


def test_relative_lift_gradient_matches_numerical_differentiation(
    samples: tuple[Array, Array],
) -> None:
    # Same delta method with statsmodels' own numerical derivative.
    c, t = samples
    ours = relative_lift(mean_stats(c), mean_stats(t))
    assert close(ours.se, float(_relative_delta(c, t, deriv=False).se_vectorized()[0]), 1e-6)


def test_relative_lift_undefined_for_zero_control_mean() -> None:
    zero = MeanStats(n=100, sum=0.0, sum_sq=0.0)
    some = MeanStats(n=100, sum=3.0, sum_sq=3.0)
    assert math.isnan(relative_lift(zero, some).estimate)
    assert math.isnan(compare_means(zero, some).relative.se)


# --- Ratio metrics (delta method) -----------------------------------------------------------


def _ratio_arm(rng: np.random.Generator, n: int, rate: float) -> tuple[Array, Array]:
    """Per-user sessions (denominator) and revenue (numerator), correlated."""
    sessions = rng.poisson(3, n).astype(float) + 1
    revenue = rng.gamma(2.0, rate, n) * sessions + rng.normal(0, 1, n)
    return revenue, sessions


def _ratio_params(x: Array, y: Array) -> tuple[Array, Array]:
    return np.array([x.mean(), y.mean()]), np.cov(x, y, ddof=1) / len(x)


def _ratio_grad(p: Array) -> Array:
    return np.array([[1 / p[1], -p[0] / p[1] ** 2]])


@pytest.mark.parametrize(("n_c", "n_t"), [(400, 450), (3000, 2500), (30, 25)])
def test_ratio_variance_matches_statsmodels(n_c: int, n_t: int) -> None:
    rng = np.random.default_rng(n_c)
    for x, y in (_ratio_arm(rng, n_c, 5.0), _ratio_arm(rng, n_t, 5.5)):
        params, cov = _ratio_params(x, y)
        exact = NonlinearDeltaCov(lambda p: np.atleast_1d(p[0] / p[1]), params, cov, _ratio_grad)
        numeric = NonlinearDeltaCov(lambda p: np.atleast_1d(p[0] / p[1]), params, cov)
        ours = ratio_stats(x, y)
        assert close(ours.ratio, x.sum() / y.sum())
        assert close(ours.variance_of_ratio, float(exact.var()[0]))
        assert close(ours.variance_of_ratio, float(numeric.var()[0]), 1e-6)


@pytest.mark.parametrize(("n_c", "n_t"), [(400, 450), (3000, 2500)])
def test_ratio_lifts_match_statsmodels(n_c: int, n_t: int) -> None:
    rng = np.random.default_rng(n_t)
    (xc, yc), (xt, yt) = _ratio_arm(rng, n_c, 5.0), _ratio_arm(rng, n_t, 5.5)
    (pc, cov_c), (pt, cov_t) = _ratio_params(xc, yc), _ratio_params(xt, yt)
    params = np.concatenate([pt, pc])
    cov = np.block([[cov_t, np.zeros((2, 2))], [np.zeros((2, 2)), cov_c]])

    def abs_lift(p: Array) -> Array:
        return np.atleast_1d(p[0] / p[1] - p[2] / p[3])

    def rel_lift(p: Array) -> Array:
        return np.atleast_1d((p[0] / p[1]) / (p[2] / p[3]) - 1)

    def abs_grad(p: Array) -> Array:
        return np.array([[1 / p[1], -p[0] / p[1] ** 2, -1 / p[3], p[2] / p[3] ** 2]])

    def rel_grad(p: Array) -> Array:
        r_t, r_c = p[0] / p[1], p[2] / p[3]
        return np.array(
            [
                [
                    1 / (p[1] * r_c),
                    -r_t / (p[1] * r_c),
                    -r_t / (p[3] * r_c**2),
                    r_t * p[2] / (p[3] ** 2 * r_c**2),
                ]
            ]
        )

    control, treatment = ratio_stats(xc, yc), ratio_stats(xt, yt)
    cases = [
        (ratio_lift(control, treatment), abs_lift, abs_grad),
        (ratio_relative_lift(control, treatment), rel_lift, rel_grad),
    ]
    # The reference distribution is Student's t on the Welch-Satterthwaite degrees of
    # freedom of the two ratio variances, as GrowthBook's gbstats.
    v_c, v_t = control.variance_of_ratio, treatment.variance_of_ratio
    df = (v_c + v_t) ** 2 / (v_c**2 / (n_c - 1) + v_t**2 / (n_t - 1))
    for ours, func, grad in cases:
        ref = NonlinearDeltaCov(func, params, cov, deriv=grad)
        estimate, se = float(ref.predicted()[0]), float(ref.se_vectorized()[0])
        assert close(ours.estimate, estimate)
        assert close(ours.se, se)
        assert close(ours.df, df)
        half = float(stats.t.ppf(0.975, df)) * se
        assert close(ours.ci.low, estimate - half)
        assert close(ours.ci.high, estimate + half)
        assert close(ours.p_value, float(2 * stats.t.sf(abs(estimate / se), df)))


def test_ratio_delta_method_by_simulation() -> None:
    """The delta-method s.e. matches the Monte Carlo spread, and the relative
    lift interval covers the true relative lift about 95 % of the time."""
    rng = np.random.default_rng(7)
    reps, n = 2000, 800
    sessions = rng.poisson(3, (2, reps, n)).astype(float) + 1
    rate = np.array([5.0, 5.5])[:, None, None]
    revenue = rng.gamma(2.0, rate, (2, reps, n)) * sessions
    true_rel = 5.5 / 5.0 - 1  # E[revenue] / E[sessions] = 2 * rate
    estimates, ses, covered = [], [], 0
    for i in range(reps):
        control = ratio_stats(revenue[0, i], sessions[0, i])
        treatment = ratio_stats(revenue[1, i], sessions[1, i])
        rel = ratio_relative_lift(control, treatment)
        estimates.append(rel.estimate)
        ses.append(rel.se)
        covered += rel.ci.contains(true_rel)
    assert float(np.mean(ses)) == pytest.approx(float(np.std(estimates, ddof=1)), rel=0.05)
    assert 0.93 <= covered / reps <= 0.97


# --- Always-valid interval --------------------------------------------------------------------


def _msprt_p_value(estimate: float, se: float, n: int, rho: float) -> float:
    """Johari et al. (2017): p = 1 / Λ, Λ the normal-mixture likelihood ratio
    sqrt(V / (V + τ²)) exp(τ² θ² / (2 V (V + τ²))), with V = se² and τ² = n ρ² V."""
    v = se**2
    tau2 = n * rho**2 * v
    log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * estimate**2 / (2 * v * (v + tau2))
    return min(1.0, math.exp(-log_lambda))


@given(
    estimate=st.floats(-5, 5),
    se=st.floats(0.01, 3),
    n=st.integers(2, 10**7),
    rho=st.floats(1e-4, 1.0),
)
def test_always_valid_p_value_is_the_msprt_p_value(
    estimate: float, se: float, n: int, rho: float
) -> None:
    expected = _msprt_p_value(estimate, se, n, rho)
    assert math.isclose(always_valid_p_value(estimate, se, n, rho), expected, rel_tol=1e-9)


def test_confidence_sequence_formula() -> None:
    # Waudby-Smith et al. (2021), Gaussian-mixture boundary, with sigma = se * sqrt(t).
    estimate, se, t, rho, alpha = 0.3, 0.1, 5000, 0.02, 0.05
    sigma = se * math.sqrt(t)
    half = sigma * math.sqrt(
        2 * (t * rho**2 + 1) / (t**2 * rho**2) * math.log(math.sqrt(t * rho**2 + 1) / alpha)
    )
    cs = confidence_sequence(estimate, se, t, rho, alpha)
    assert close(cs.low, estimate - half)
    assert close(cs.high, estimate + half)


@given(
    se=st.floats(0.01, 3),
    n=st.integers(2, 10**7),
    rho=st.floats(1e-3, 1.0),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    inside=st.booleans(),
)
def test_p_below_alpha_exactly_when_sequence_excludes_zero(
    se: float, n: int, rho: float, alpha: float, inside: bool
) -> None:
    half = confidence_sequence(0.0, se, n, rho, alpha).high
    estimate = half * (0.999 if inside else 1.001)
    p = always_valid_p_value(estimate, se, n, rho)
    excludes_zero = not confidence_sequence(estimate, se, n, rho, alpha).contains(0.0)
    assert excludes_zero is (not inside)
    assert (p < alpha) is excludes_zero


def test_sequence_is_wider_than_fixed_interval(samples: tuple[Array, Array]) -> None:
    c, t = samples
    comparison = compare_means(mean_stats(c), mean_stats(t))
    assert comparison.sequential.low < comparison.absolute.ci.low
    assert comparison.sequential.high > comparison.absolute.ci.high
    assert comparison.sequential_relative.low < comparison.relative.ci.low


@pytest.mark.parametrize("n_star", [1_000, 10_000, 1_000_000])
def test_rho_for_sample_size_minimises_width(n_star: int) -> None:
    sigma = 2.0

    def width(rho: float) -> float:
        return confidence_sequence(0.0, sigma / math.sqrt(n_star), n_star, rho).high

    best = optimize.minimize_scalar(
        lambda log_rho: width(math.exp(log_rho)), bounds=(-15, 2), method="bounded"
    )
    # The closed form minimises an approximation of the width: near-optimal.
    assert width(rho_for_sample_size(n_star)) <= width(math.exp(best.x)) * 1.01


# --- Sample-ratio mismatch ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([5000, 5000], [0.5, 0.5]),
        ([5120, 4880], [0.5, 0.5]),
        ([5300, 4700], [0.5, 0.5]),
        ([1900, 3100, 5000], [0.2, 0.3, 0.5]),
        ([2400, 2500, 2600, 2500], [1, 1, 1, 1]),
        ([900, 8200], [0.1, 0.9]),
    ],
)
def test_srm_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    total = sum(counts)
    expected = [total * w / sum(weights) for w in weights]
    ref = stats.chisquare(counts, expected)
    ours = srm_check(counts, weights)
    assert close(ours.statistic, ref.statistic) or ours.statistic == ref.statistic == 0
    assert close(ours.p_value, ref.pvalue)
    assert ours.checked
    assert ours.flagged is bool(ref.pvalue < 0.001)


def test_srm_flags_clear_mismatch_only_after_minimum_sample() -> None:
    assert srm_check([5300, 4700], [0.5, 0.5]).flagged
    assert not srm_check([5120, 4880], [0.5, 0.5]).flagged
    early = srm_check([90, 10], [0.5, 0.5], min_units=200)
    assert early.p_value < 0.001
    assert not early.checked
    assert not early.flagged


def test_srm_units_in_zero_weight_variant() -> None:
    result = srm_check([500, 500, 3], [0.5, 0.5, 0.0])
    assert result.p_value == 0.0
    assert result.flagged
    assert not srm_check([500, 500, 0], [0.5, 0.5, 0.0]).flagged


# --- Multiple testing ---------------------------------------------------------------------------

P_VALUE_SETS = [
    [0.01, 0.04, 0.03, 0.005, 0.2],
    [0.001, 0.001, 0.02, 0.02, 0.5, 0.9],
    [0.5],
    [0.049, 0.051],
    [1e-12, 0.3, 0.0004, 0.8, 0.012, 0.012, 0.7, 0.03],
]


@pytest.mark.parametrize(
    ("method", "sm_method", "ours_fn"),
    [("holm", "holm", holm), ("bh", "fdr_bh", benjamini_hochberg)],
    ids=["holm", "bh"],
)
@pytest.mark.parametrize("p_values", P_VALUE_SETS)
def test_corrections_match_statsmodels(
    method: str,
    sm_method: str,
    ours_fn: Callable[[list[float]], list[float]],
    p_values: list[float],
) -> None:
    reject, corrected, _, _ = multipletests(p_values, alpha=0.05, method=sm_method)
    ours = ours_fn(p_values)
    assert adjust_p_values(p_values, "holm" if method == "holm" else "bh") == ours
    for a, b in zip(ours, corrected, strict=True):
        assert close(a, float(b))
    assert [p <= 0.05 for p in ours] == list(reject)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_bh_matches_statsmodels_property(p_values: list[float]) -> None:
    _, corrected, _, _ = multipletests(p_values, method="fdr_bh")
    for a, b in zip(benjamini_hochberg(p_values), corrected, strict=True):
        assert math.isclose(a, float(b), rel_tol=REL, abs_tol=1e-300)


@settings(max_examples=25, deadline=None)  # statsmodels' holm runs gc.collect() per call
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_holm_matches_statsmodels_property(p_values: list[float]) -> None:
    _, corrected, _, _ = multipletests(p_values, method="holm")
    for a, b in zip(holm(p_values), corrected, strict=True):
        assert math.isclose(a, float(b), rel_tol=REL, abs_tol=1e-300)


def test_unknown_correction() -> None:
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_p_values([0.1], "bonferroni")  # type: ignore[arg-type]


# --- Verdicts ---------------------------------------------------------------------------------

OK_SRM = SrmResult(statistic=0.1, p_value=0.75, checked=True, flagged=False)
BAD_SRM = SrmResult(statistic=40.0, p_value=1e-9, checked=True, flagged=True)


def _comparison(lift: float, n: int = 20_000, sd: float = 1.0) -> Comparison:
    control = MeanStats(n=n, sum=10.0 * n, sum_sq=n * (100.0 + sd**2) - 100.0)
    mean_t = 10.0 + lift
    treatment = MeanStats(n=n, sum=mean_t * n, sum_sq=n * (mean_t**2 + sd**2) - mean_t**2)
    return compare_means(control, treatment)


def test_verdicts() -> None:
    assert verdict(_comparison(0.1), OK_SRM) is Verdict.WIN
    assert verdict(_comparison(-0.1), OK_SRM) is Verdict.LOSS
    assert verdict(_comparison(-0.1), OK_SRM, higher_is_better=False) is Verdict.WIN
    assert verdict(_comparison(0.001), OK_SRM) is Verdict.INCONCLUSIVE
    assert verdict(_comparison(0.1), BAD_SRM) is Verdict.INVALID_SRM
    assert verdict(_comparison(0.5, n=50), OK_SRM) is Verdict.TOO_EARLY
    assert verdict(_comparison(0.5, n=50), BAD_SRM) is Verdict.INVALID_SRM


def test_verdict_uses_always_valid_not_fixed_p_value() -> None:
    # Significant at a fixed horizon, not yet with the always-valid interval.
    comparison = _comparison(0.025)
    assert comparison.absolute.p_value < 0.05
    assert comparison.sequential_p_value > 0.05
    assert verdict(comparison, OK_SRM) is Verdict.INCONCLUSIVE


def test_decide_applies_correction() -> None:
    # Always-valid p-values: about 1e-60, 0.028 and 1.
    comparisons = [_comparison(0.1), _comparison(0.033), _comparison(0.0)]
    raw = [verdict(c, OK_SRM) for c in comparisons]
    corrected = decide(comparisons, OK_SRM, correction="holm")
    assert raw == [Verdict.WIN, Verdict.WIN, Verdict.INCONCLUSIVE]
    assert corrected == [Verdict.WIN, Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE]
    assert decide(comparisons, OK_SRM, "bh", [True, False, True])[1] is Verdict.LOSS
    assert decide(comparisons, BAD_SRM) == [Verdict.INVALID_SRM] * 3


# --- Edge cases -------------------------------------------------------------------------------


def test_zero_variance() -> None:
    same = MeanStats(n=10, sum=10.0, sum_sq=10.0)
    higher = MeanStats(n=10, sum=20.0, sum_sq=40.0)
    assert welch_test(same, same).p_value == 1.0
    result = welch_test(same, higher)
    assert result.p_value == 0.0
    assert result.ci == Interval(1.0, 1.0)


def test_needs_two_units_per_arm() -> None:
    one = MeanStats(n=1, sum=1.0, sum_sq=1.0)
    with pytest.raises(ValueError, match="at least 2 units"):
        welch_test(one, MeanStats(n=10, sum=10.0, sum_sq=12.0))


def test_ratio_comparison_shape() -> None:
    rng = np.random.default_rng(3)
    (xc, yc), (xt, yt) = _ratio_arm(rng, 500, 5.0), _ratio_arm(rng, 500, 5.0)
    comparison = compare_ratios(ratio_stats(xc, yc), ratio_stats(xt, yt))
    assert isinstance(comparison.absolute, Estimate)
    assert comparison.sequential.contains(comparison.absolute.estimate)
    assert comparison.control_units == comparison.treatment_units == 500
