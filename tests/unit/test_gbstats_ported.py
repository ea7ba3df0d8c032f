"""GrowthBook's own gbstats test cases, run against Sextant's statistics.

Ported from GrowthBook's repository (``packages/stats/tests``: ``frequentist/test_tests.py``,
``bayesian/test_tests.py``, ``test_shared_models.py``), inputs and expected values as there,
to the same rounding (5 decimals unless the original says otherwise). These are GrowthBook's
current methods, so they also pin what changed after the gbstats on PyPI (0.8.0): the
relative CUPED variance, CUPED for ratio metrics and relative lifts over negative
baselines. Cases of features Sextant does not have (one-sided tests, post-stratification,
bandits, scaled impact, power) are not ported.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from sextant.gateway import estimators, stats
from sextant.schemas.statistics import SufficientStatistics

DECIMALS = 5


def rounded(value: float, decimals: int = DECIMALS) -> float:
    return float(np.round(value, decimals))


def mean(n: int, total: float, total_sq: float) -> stats.MeanStats:
    return stats.MeanStats(n, total, total_sq)


def proportion(n: int, successes: float) -> stats.MeanStats:
    """GrowthBook's ProportionStatistic: variance p (1 - p)."""
    return stats.MeanStats(n, successes, successes, ddof=0)


def assert_estimate(
    estimate: stats.Estimate, expected: float, ci: tuple[float, float], sd: float, p: float
) -> None:
    assert rounded(estimate.estimate) == pytest.approx(expected, abs=1e-12)
    assert (rounded(estimate.ci.low), rounded(estimate.ci.high)) == pytest.approx(ci, abs=1e-12)
    assert rounded(estimate.se) == pytest.approx(sd, abs=1e-12)
    assert rounded(estimate.p_value) == pytest.approx(p, abs=1e-12)


# --- frequentist/test_tests.py ---------------------------------------------------------------

A = mean(3407, 1396.87, 52377.9767)
B = mean(3461, 2422.7, 134698.29)


def test_two_sided_ttest() -> None:
    result = stats.compare_means(A, B)
    assert_estimate(result.relative, 0.70732, (-0.03526, 1.44989), 0.37879, 0.06191)


def test_two_sided_ttest_absolute() -> None:
    result = stats.compare_means(A, B)
    assert_estimate(result.absolute, 0.29, (0.04538, 0.53462), 0.12478, 0.02016)


def test_two_sided_ttest_binom() -> None:
    result = stats.compare_means(proportion(28, 14), proportion(30, 16))
    expected = rounded((16 / 30 - 0.5) / 0.5)
    assert_estimate(result.relative, expected, (-0.47767, 0.61101), 0.2717, 0.80707)


def _ratio_cuped_pair() -> tuple[SufficientStatistics, SufficientStatistics]:
    """test_two_sided_ttest_test_runs_ratio_ra's statistics (m: numerator, d: denominator)."""
    control = SufficientStatistics(
        n=100,
        sum_x=485.112236689623,
        sum_x_sq=2715.484666118136,
        sum_y=679.9093275844917,
        sum_y_sq=4939.424001640236,
        sum_x_pre=192.59138069991536,
        sum_x_pre_sq=460.076026390857,
        sum_y_pre=290.1398399750233,
        sum_y_pre_sq=920.9461385038898,
        sum_x_x_pre=1113.6215759318352,
        sum_y_y_pre=2130.9404074446747,
        sum_x_pre_y_pre=634.239482353647,
        sum_xy=3602.146836776702,
        sum_x_y_pre=1559.2878434944676,
        sum_y_x_pre=1460.3181079276983,
    )
    treatment = SufficientStatistics(
        n=100,
        sum_x=514.7757826608777,
        sum_x_sq=2994.897482705013,
        sum_y=705.4090874383759,
        sum_y_sq=5291.36604146392,
        sum_x_pre=206.94157227402536,
        sum_x_pre_sq=514.2903702246757,
        sum_y_pre=302.54389139107326,
        sum_y_pre_sq=994.4506208125663,
        sum_x_x_pre=1237.0953021125997,
        sum_y_y_pre=2292.081739775257,
        sum_x_pre_y_pre=698.4173425817908,
        sum_xy=3918.1561431600717,
        sum_x_y_pre=1701.0287270040265,
        sum_y_x_pre=1604.0759503266522,
    )
    return control, treatment


def test_two_sided_ttest_test_runs_ratio_ra() -> None:
    result = estimators.compare_ratio_cuped(*_ratio_cuped_pair())
    assert_estimate(result.relative, -0.0007, (-0.00841, 0.00700), 0.00391, 0.85771)


def test_two_sided_ttest_missing_variance() -> None:
    """One unit's worth of variance is none: no comparison (gbstats' default output)."""
    with pytest.raises(ValueError, match="at least 2 units"):
        stats.compare_means(mean(1, 1396.87, 52377.9767), B)


SEQ_A = mean(3000, 1396.87, 52377.9767)
SEQ_B = mean(3461, 2422.7, 134698.29)


def test_sequential_test_runs() -> None:
    result = stats.compare_means(SEQ_A, SEQ_B, rho=stats.rho_for_sample_size(1000))
    interval = result.sequential_relative
    assert (rounded(interval.low), rounded(interval.high)) == (-0.55844, 1.56516)
    assert rounded(result.relative.estimate) == 0.50336
    assert rounded(result.relative.se) == 0.33341


def test_sequential_test_runs_prop() -> None:
    result = stats.compare_means(
        proportion(3000, 1396), proportion(3461, 2422), rho=stats.rho_for_sample_size(5000)
    )
    interval = result.sequential_relative
    assert (rounded(interval.low), rounded(interval.high)) == (0.40098, 0.60675)
    assert rounded(result.relative.estimate) == 0.50386
    assert rounded(result.relative.se) == 0.03386


def test_sequential_test_runs_ra() -> None:
    """The relative CUPED variance of GrowthBook's current engine (not 0.8.0's)."""
    control = estimators.CupedStats(3000, 1396.87, 52377.9767, 16.87, 527.9767, 1)
    treatment = estimators.CupedStats(3461, 2422.7, 134698.29, 22.7, 1348.29, 1)
    result = estimators.compare_cuped(control, treatment, rho=stats.rho_for_sample_size(5000))
    interval = result.sequential_relative
    assert (rounded(interval.low), rounded(interval.high)) == (-0.50969, 1.51646)
    assert rounded(result.relative.estimate) == 0.50338
    assert rounded(result.relative.se) == 0.33341


def test_sequential_test_runs_ratio_ra() -> None:
    result = estimators.compare_ratio_cuped(
        *_ratio_cuped_pair(), rho=stats.rho_for_sample_size(5000)
    )
    interval = result.sequential_relative
    assert (rounded(interval.low), rounded(interval.high)) == (-0.02063, 0.01923)
    assert rounded(result.relative.estimate) == -0.0007
    assert rounded(result.relative.se) == 0.00391
    assert result.sequential_p_value == 1.0


def test_sequential_test_tuning_as_expected() -> None:
    def interval(tuning: float) -> stats.Interval:
        return stats.compare_means(
            SEQ_A, SEQ_B, rho=stats.rho_for_sample_size(tuning)
        ).sequential_relative

    below, near, above = interval(10), interval(6461), interval(10_000)
    assert below.low < above.low
    assert below.high > above.high
    assert below.low < near.low
    assert below.high > near.high
    assert above.low < near.low
    assert above.high > near.high


# --- bayesian/test_tests.py ------------------------------------------------------------------


def assert_bayesian(
    read_out: stats.Bayesian | None,
    expected: float,
    ci: tuple[float, float],
    sd: float,
    chance_to_win: float,
    risk: tuple[float, float],
) -> None:
    assert read_out is not None
    assert rounded(read_out.mean) == expected
    assert (rounded(read_out.ci.low), rounded(read_out.ci.high)) == ci
    assert rounded(read_out.sd) == sd
    assert rounded(read_out.chance_to_win) == chance_to_win
    assert (rounded(read_out.risk_control), rounded(read_out.risk)) == risk


def test_bayesian_binomial_ab_test() -> None:
    result = stats.compare_means(proportion(100, 49), proportion(100, 51))
    assert_bayesian(
        result.bayesian_relative, 0.04082, (-0.24779, 0.32943), 0.14725, 0.60918, (0.0814, 0.04058)
    )


NORM_A = mean(10, 100, 1002.25)
NORM_B = mean(10, 105, 1111.5)


def test_bayesian_gaussian_ab_test() -> None:
    result = stats.compare_means(NORM_A, NORM_B)
    assert_bayesian(
        result.bayesian_relative, 0.05, (-0.02, 0.12), 0.03572, 0.91923, (0.05131, 0.00131)
    )


def test_bayesian_gaussian_ab_test_informative() -> None:
    result = stats.compare_means(NORM_A, NORM_B, prior=stats.GaussianPrior(0.1, 0.1))
    assert_bayesian(
        result.bayesian_relative,
        0.05063,
        (-0.01893, 0.12019),
        0.03549,
        0.92315,
        (0.05186, 0.00123),
    )


def _quantiles(s: float | None = None) -> tuple[estimators.QuantileStats, ...]:
    nu, n_c, n_t = 0.9, 11054, 10861
    q_c, q_t = 7.157987489967789, 7.694499927525767
    low_c, low_t = 7.098780136176828, 7.64180598628119
    high_c, high_t = 7.217194843758751, 7.747193868770344
    if s is not None:
        low_c, low_t, high_c, high_t = q_c - s, q_t - s, q_c + s, q_t + s
    return (
        estimators.QuantileStats(n_c, n_c, nu, q_c, low_c, high_c),
        estimators.QuantileStats(n_t, n_t, nu, q_t, low_t, high_t),
    )


def test_bayesian_effect_ab_test() -> None:
    """Quantile statistics under flat, nearly flat and informative priors; the expected
    values are GrowthBook's, compared exactly there and to 1e-12 here."""
    control, treatment = _quantiles()

    def read_out(prior: stats.GaussianPrior | None, relative: bool) -> stats.Bayesian:
        result = estimators.compare_quantiles(control, treatment, prior=prior)
        found = result.bayesian_relative if relative else result.bayesian
        assert found is not None
        return found

    # GrowthBook's priors are on the relative lift (prior_type "relative"), rescaled by the
    # control for the absolute read-out: Sextant's are too.
    def absolute_prior(variance: float) -> stats.GaussianPrior:
        return stats.GaussianPrior(0.0, variance)

    cases = [
        (read_out(None, False), 0.5365124375579775, (0.4572559589115422, 0.6157689162044128)),
        (
            read_out(absolute_prior(1e6), False),
            0.536512437540855,
            (0.4572559588956844, 0.6157689161860256),
        ),
        (
            read_out(stats.GaussianPrior(0.0, 1e6), True),
            0.07495297222736319,
            (0.06341005842481906, 0.08649588602990732),
        ),
        (
            read_out(absolute_prior(1.0), False),
            0.536495315442269,
            (0.4572401014910488, 0.6157505293934892),
        ),
        (
            read_out(stats.GaussianPrior(0.0, 1.0), True),
            0.07495037261804469,
            (0.06340765898986044, 0.08649308624622894),
        ),
    ]
    for found, expected, (low, high) in cases:
        assert found.mean == pytest.approx(expected, rel=1e-12)
        assert found.ci.low == pytest.approx(low, rel=1e-12)
        assert found.ci.high == pytest.approx(high, rel=1e-12)

    # Risk against a simulation of the posterior (GrowthBook: 3 decimals).
    control, treatment = _quantiles(s=1.0)
    flat = estimators.compare_quantiles(control, treatment, prior=absolute_prior(1e6)).bayesian
    assert flat is not None
    m, sd = flat.mean, (flat.ci.high - flat.ci.low) / (2 * norm.ppf(0.975))
    rng = np.random.RandomState(20240329)
    y = sd * rng.normal(size=int(1e7)) + m
    np.testing.assert_almost_equal(flat.risk_control, np.mean(y[y > 0]) * np.mean(y > 0), 3)
    np.testing.assert_almost_equal(flat.risk, -np.mean(y[y < 0]) * np.mean(y < 0), 3)


def test_bayesian_effect_relative_effect() -> None:
    """A relative prior rescaled to the absolute lift keeps the chance to win close."""
    control, treatment = mean(100, 1000, 200000), mean(100, 1100, 200005)
    result = stats.compare_means(control, treatment, prior=stats.GaussianPrior(1, 1))
    assert result.bayesian is not None
    assert result.bayesian_relative is not None
    assert round(result.bayesian.chance_to_win, 2) == round(
        result.bayesian_relative.chance_to_win, 2
    )


def test_missing_data() -> None:
    with pytest.raises(ValueError, match="at least 2 units"):
        stats.compare_means(mean(0, 0, 0), mean(0, 0, 0))


def _risk(mu: float, sigma: float) -> list[float]:
    read_out = stats.bayesian(stats.Effect(mu, sigma, np.inf))
    return [read_out.risk_control, read_out.risk]


def test_extreme_mu_over_sigma_no_overflow() -> None:
    assert _risk(0.01, 4.5e-9) == [0.01, 0.0]
    assert _risk(-0.01, 4.5e-9) == [0.0, 0.01]


def test_normal_inputs_bit_exact_regression() -> None:
    expected = [round(x, 10) for x in [0.1004245351308, 0.0004245351308414]]
    assert [round(x, 10) for x in _risk(0.1, 0.05)] == expected


# --- test_shared_models.py -------------------------------------------------------------------

METRIC_1 = np.array([0.3, 0.5, 0.9, 22])
METRIC_3 = np.array([2.0, 1, 5, 3])


def test_sample_mean_statistic() -> None:
    stat = stats.MeanStats(4, float(METRIC_1.sum()), float((METRIC_1**2).sum()))
    assert stat.mean == pytest.approx(np.mean(METRIC_1), rel=1e-15)
    assert stat.variance == pytest.approx(np.var(METRIC_1, ddof=1), rel=1e-12)


def test_ratio_statistic_covariance_and_zero_denominator() -> None:
    s = SufficientStatistics.of_units(METRIC_1, METRIC_3)
    cuped = estimators.RatioCupedStats.of(s)
    assert cuped.covariance[0][1] == pytest.approx(np.cov(METRIC_1, METRIC_3)[0, 1])


def test_regression_adjusted_statistic() -> None:
    stat = estimators.CupedStats.of(SufficientStatistics.of_units(METRIC_3, x_pre=METRIC_1))
    assert stat.adjusted_mean(0) == np.mean(METRIC_3)
    assert stat.adjusted_variance(0) == pytest.approx(stat.post.variance)
    assert stat.adjusted_mean(0.23) != stat.post.mean
    assert stat.adjusted_variance(0.23) != pytest.approx(stat.post.variance)


def test_regression_adjusted_small_n() -> None:
    stat = estimators.CupedStats(1, 31.7, 500, 11, 39, 40)
    assert stat.adjusted_variance(0.3) == 0


def test_compute_theta_returns_0_no_variance() -> None:
    both = estimators.CupedStats.of(SufficientStatistics.of_units(METRIC_3, x_pre=METRIC_1))
    assert round(estimators.cuped_theta(both, both), 5) == 0.01864
    flat = estimators.CupedStats.of(SufficientStatistics.of_units(METRIC_3))
    assert estimators.cuped_theta(flat, flat) == 0


def test_quantile_statistic_zero_variance() -> None:
    def make(n: int, lower: float, upper: float) -> estimators.QuantileStats:
        return estimators.QuantileStats(n, n, 0.9, 5.0, lower, upper)

    assert not make(60_000_000, 5.0, 5.0).has_variance
    assert not make(999, 5.0, 5.0).has_variance
    assert make(60_000_000, 4.99, 5.01).has_variance
    with pytest.raises(ValueError, match="distinct bounds"):
        estimators.compare_quantiles(make(60_000_000, 5.0, 5.0), make(60_000_000, 4.99, 5.01))


@pytest.mark.parametrize(("mean_a", "mean_b"), [(-10, -5), (-10, -15), (-2, 3), (10, 15), (10, 5)])
def test_relative_sign_matches_absolute_sign(mean_a: float, mean_b: float) -> None:
    n = 1000
    a = stats.MeanStats(n, mean_a * n, (mean_a**2 + 4) * n)
    b = stats.MeanStats(n, mean_b * n, (mean_b**2 + 4) * n)
    result = stats.compare_means(a, b)
    assert np.sign(result.relative.estimate) == np.sign(result.absolute.estimate)


def test_relative_magnitude_scaled_by_baseline_magnitude() -> None:
    n = 1000
    a = stats.MeanStats(n, -10 * n, 104 * n)
    b = stats.MeanStats(n, -5 * n, 29 * n)
    result = stats.compare_means(a, b)
    assert result.relative.estimate == pytest.approx(0.5)
    assert result.relative.se > 0


@pytest.mark.parametrize(
    ("treatment_post", "expected_lift", "expected_se"),
    [
        ([17.0, 12.0, 23.0, 28.0, 12.0, 22.0, 29.0, 16.0], 0.1039280, 0.0286196),
        ([14.0, 9.0, 17.0, 23.0, 9.0, 18.0, 22.0, 13.0], -0.1372068, 0.0223934),
    ],
    ids=["improving", "declining"],
)
def test_cuped_ratio_negating_the_metric_negates_lift_and_keeps_standard_error(
    treatment_post: list[float], expected_lift: float, expected_se: float
) -> None:
    def relative(sign: int) -> stats.Effect:
        d_post_a = [1.0, 2.0, 1.5, 2.5, 2.0, 1.0, 1.5, 2.5]
        d_pre_a = [1.5, 1.0, 2.0, 2.0, 2.5, 1.0, 1.0, 2.0]
        m_post_a = [sign * v for v in [12.0, 19.0, 16.0, 24.0, 21.0, 9.0, 14.0, 26.0]]
        m_pre_a = [sign * v for v in [16.0, 11.0, 21.0, 19.0, 26.0, 11.0, 9.0, 21.0]]
        d_post_b = [1.5, 1.0, 2.0, 2.5, 1.0, 2.0, 2.5, 1.5]
        d_pre_b = [1.0, 1.5, 2.0, 2.5, 1.0, 2.5, 2.0, 1.5]
        m_pre_b = [sign * v for v in [11.0, 17.0, 22.0, 27.0, 10.0, 27.0, 21.0, 16.0]]
        m_post_b = [sign * v for v in treatment_post]
        a = SufficientStatistics.of_units(m_post_a, d_post_a, m_pre_a, d_pre_a)
        b = SufficientStatistics.of_units(m_post_b, d_post_b, m_pre_b, d_pre_b)
        _, effect = estimators.ratio_cuped_effects(
            estimators.RatioCupedStats.of(a), estimators.RatioCupedStats.of(b), 0.5
        )
        assert effect is not None
        return effect

    positive, negative = relative(1), relative(-1)
    assert positive.estimate == pytest.approx(expected_lift, abs=5e-8)
    assert positive.se == pytest.approx(expected_se, abs=5e-8)
    assert negative.estimate == pytest.approx(-positive.estimate)
    assert negative.se == pytest.approx(positive.se)
