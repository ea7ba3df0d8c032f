"""Statistics of experiment results, as pure functions over sufficient statistics.

The warehouse reduces each variant to a handful of sums (:class:`MeanStats` for
a per-unit metric, :class:`RatioStats` for a ratio of per-unit sums); everything
here is computed from those sums, so a result costs microseconds however many
units the experiment has.

Methods
-------
* Absolute lift ``mean_t - mean_c``: Welch's unequal-variance t-test, with the
  Welch-Satterthwaite degrees of freedom (identical to
  ``scipy.stats.ttest_ind(equal_var=False)``).
* Relative lift ``(mean_t - mean_c) / |mean_c|``: delta method on the two
  independent means, interval and test on Welch's degrees of freedom (the
  absolute value keeps the sign of the lift when the baseline is negative, as
  GrowthBook does).
* Ratio metrics ``sum(numerator) / sum(denominator)`` per variant (e.g. revenue
  per session when units are users): delta-method variance of each ratio, t
  intervals on the Welch-Satterthwaite degrees of freedom of the two ratio
  variances (as GrowthBook's gbstats).
* CUPED, ratio CUPED and quantile metrics: :mod:`sextant.gateway.estimators`.
* Bayesian read-out (:func:`bayesian`): GrowthBook's Gaussian effect model; the
  posterior of the lift from its estimate and standard error and a flat or a
  proper Gaussian prior: chance to win, risk (expected loss) and credible
  interval.
* Always-valid 95 % interval: the asymptotic confidence sequence of
  Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit
  theory and asymptotic confidence sequences" (2021, arXiv:2103.06476): the
  Gaussian-mixture boundary, with its tuning parameter ``rho``. Its p-value
  is the normal-mixture mSPRT p-value of Johari, Pekelis and Walsh, "Peeking
  at A/B tests" (KDD 2017), with mixing variance ``tau^2 = n * rho^2 * se^2``;
  ``p < alpha`` exactly when the interval excludes zero. A team may look at it
  after every event without inflating the false-positive rate.
* Sample-ratio mismatch: Pearson's chi-square goodness of fit of the unit
  counts against the configured weights, flagged at ``p < 0.001`` once the
  experiment has a minimum number of units.
* Multiple testing: Holm (family-wise error) or Benjamini-Hochberg (false
  discovery rate) adjusted p-values.
* Verdicts: ``invalid_srm``, ``too_early``, then ``win`` / ``loss`` when the
  (adjusted) always-valid p-value is below ``alpha``, else ``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from scipy import special

__all__ = [
    "DEFAULT_RHO",
    "Bayesian",
    "Comparison",
    "Correction",
    "CupedAdjustment",
    "Effect",
    "Estimate",
    "GaussianPrior",
    "Interval",
    "MeanStats",
    "RatioStats",
    "SrmResult",
    "Verdict",
    "absolute_effect",
    "adjust_p_values",
    "always_valid_p_value",
    "bayesian",
    "benjamini_hochberg",
    "compare_effects",
    "compare_means",
    "compare_ratios",
    "confidence_sequence",
    "decide",
    "fixed_test",
    "holm",
    "ratio_lift",
    "ratio_relative_lift",
    "relative_effect",
    "relative_lift",
    "rho_for_sample_size",
    "scaled_prior",
    "srm_check",
    "verdict",
    "welch_df",
    "welch_test",
]

Correction = Literal["holm", "bh"]

SRM_THRESHOLD = 0.001
DEFAULT_SRM_MIN_UNITS = 200
DEFAULT_MIN_UNITS_PER_VARIANT = 100


# --- Inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeanStats:
    """Sufficient statistics of a per-unit value ``x`` in one variant.

    ``n`` units, ``sum`` = Σx, ``sum_sq`` = Σx². For a conversion metric x is
    0 or 1, so ``sum == sum_sq``. ``ddof`` is the variance's delta degrees of
    freedom: 1 (the sample variance, as scipy's Welch test) everywhere in
    Sextant; 0 gives GrowthBook's binomial ``p (1 - p)``.
    """

    n: int
    sum: float
    sum_sq: float
    ddof: int = 1

    def __post_init__(self) -> None:
        if self.n < 0 or self.sum_sq < 0:
            raise ValueError("n and sum_sq must be non-negative")

    @property
    def mean(self) -> float:
        """Σx / n (requires ``n >= 1``)."""
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Sample variance (``ddof``; requires ``n >= 2``), never negative."""
        return max(self.sum_sq - self.sum * self.mean, 0.0) / (self.n - self.ddof)

    @property
    def variance_of_mean(self) -> float:
        """Estimated variance of :attr:`mean`: ``variance / n``."""
        return self.variance / self.n


@dataclass(frozen=True, slots=True)
class RatioStats:
    """Sufficient statistics of a ratio metric ``Σx / Σy`` over ``n`` units.

    ``x`` is the per-unit numerator (e.g. revenue), ``y`` the per-unit
    denominator (e.g. sessions); the sums are over units: Σx, Σx², Σy, Σy²
    and the cross product Σxy.
    """

    n: int
    sum_num: float
    sum_num_sq: float
    sum_den: float
    sum_den_sq: float
    sum_num_den: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be non-negative")

    @property
    def ratio(self) -> float:
        """Σx / Σy."""
        return self.sum_num / self.sum_den

    @property
    def variance_of_ratio(self) -> float:
        """Delta-method variance of :attr:`ratio` (requires ``n >= 2``).

        ``(s_x² - 2 R s_xy + R² s_y²) / (n ȳ²)`` with sample (co)variances
        (ddof = 1), the first-order Taylor expansion of ``x̄ / ȳ``.
        """
        n, r = self.n, self.ratio
        mean_den = self.sum_den / n
        var_num = (self.sum_num_sq - self.sum_num**2 / n) / (n - 1)
        var_den = (self.sum_den_sq - self.sum_den**2 / n) / (n - 1)
        cov = (self.sum_num_den - self.sum_num * self.sum_den / n) / (n - 1)
        return max(var_num - 2 * r * cov + r * r * var_den, 0.0) / (n * mean_den**2)


# --- Outputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval ``[low, high]``."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether ``low <= value <= high``."""
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class Estimate:
    """A lift estimate with its standard error and two-sided test of zero.

    ``df`` is the degrees of freedom of the reference t distribution
    (``math.inf`` for a normal one); ``statistic = estimate / se``.
    """

    estimate: float
    se: float
    df: float
    statistic: float
    p_value: float
    ci: Interval


@dataclass(frozen=True, slots=True)
class Effect:
    """A lift, its standard error and the degrees of freedom of its t reference.

    What every kind of metric reduces to (GrowthBook's "effect moments"): the
    fixed-horizon test, the always-valid interval and the Bayesian posterior are
    all computed from it.
    """

    estimate: float
    se: float
    df: float


@dataclass(frozen=True, slots=True)
class GaussianPrior:
    """A proper Gaussian prior ``N(mean, variance)`` on the relative lift."""

    mean: float
    variance: float

    def __post_init__(self) -> None:
        if not self.variance > 0:
            raise ValueError("a prior's variance must be positive")


@dataclass(frozen=True, slots=True)
class Bayesian:
    """The Gaussian posterior of a lift and what a team reads from it.

    ``chance_to_win``: posterior probability that the treatment is better (in
    the metric's good direction). ``risk``: expected loss, in the lift's own
    unit, of shipping the treatment, ``E[max(-δ, 0)]`` for a metric where
    higher is better; ``risk_control`` the same for keeping the control.
    ``ci``: the equal-tailed ``1 - alpha`` credible interval.
    """

    mean: float
    sd: float
    ci: Interval
    chance_to_win: float
    risk: float
    risk_control: float


@dataclass(frozen=True, slots=True)
class CupedAdjustment:
    """How the regression adjustment (CUPED) was applied to one comparison.

    ``theta`` is pooled across both variants; ``control_mean`` and
    ``treatment_mean`` are the adjusted means (the adjusted ratios for a ratio
    metric); ``unadjusted`` and ``unadjusted_relative`` are the read-outs
    without adjustment, for reference. ``theta == 0`` means the adjustment was
    not possible (no variance before or after exposure) and the read-out is
    the unadjusted one.
    """

    theta: float
    control_mean: float
    treatment_mean: float
    unadjusted: Estimate
    unadjusted_relative: Estimate


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric, treatment against control.

    ``sequential`` and ``sequential_relative`` are always-valid intervals for
    the absolute and relative lift; ``sequential_p_value`` is the matching
    always-valid p-value for "no difference". ``bayesian`` and
    ``bayesian_relative`` are the posterior read-outs of the same lifts;
    ``cuped`` says how the regression adjustment was applied, if it was.
    """

    control_units: int
    treatment_units: int
    absolute: Estimate
    relative: Estimate
    sequential: Interval
    sequential_relative: Interval
    sequential_p_value: float
    bayesian: Bayesian | None = None
    bayesian_relative: Bayesian | None = None
    cuped: CupedAdjustment | None = None


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Chi-square goodness of fit of the unit counts against the weights.

    ``flagged`` is true when ``checked`` (enough units) and
    ``p_value < threshold``.
    """

    statistic: float
    p_value: float
    checked: bool
    flagged: bool


class Verdict(StrEnum):
    """Plain-language outcome of one metric."""

    WIN = "win"
    LOSS = "loss"
    INCONCLUSIVE = "inconclusive"
    INVALID_SRM = "invalid_srm"
    TOO_EARLY = "too_early"


# --- Fixed-horizon tests ------------------------------------------------------------------


def _estimate(estimate: float, se: float, df: float, alpha: float) -> Estimate:
    """Two-sided t (or, with ``df = inf``, z) test and ``1 - alpha`` interval."""
    if se > 0:
        statistic = estimate / se
        p_value = float(2 * special.stdtr(df, -abs(statistic)))
    else:  # no variance: the difference is known exactly
        statistic = math.copysign(math.inf, estimate) if estimate else math.nan
        p_value = 0.0 if estimate else 1.0
    half = float(special.stdtrit(df, 1 - alpha / 2)) * se
    ci = Interval(estimate - half, estimate + half)
    return Estimate(estimate, se, df, statistic, p_value, ci)


def _undefined() -> Estimate:
    """An estimate that cannot be computed (all fields NaN)."""
    nan = math.nan
    return Estimate(nan, nan, nan, nan, nan, Interval(nan, nan))


def welch_df(var_c: float, var_t: float, n_c: int, n_t: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the variances of the two means
    (``inf`` when both are 0)."""
    denominator = var_c**2 / (n_c - 1) + var_t**2 / (n_t - 1)
    return (var_c + var_t) ** 2 / denominator if denominator > 0 else math.inf


def _require_units(*counts: int) -> None:
    if min(counts) < 2:
        raise ValueError("each variant needs at least 2 units")


def welch_test(control: MeanStats, treatment: MeanStats, alpha: float = 0.05) -> Estimate:
    """Welch's t-test of ``mean_t - mean_c`` and its ``1 - alpha`` interval.

    Matches ``scipy.stats.ttest_ind(t, c, equal_var=False)`` (statistic,
    two-sided p-value, df and confidence interval). Needs ``n >= 2`` per arm.
    """
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_mean, treatment.variance_of_mean
    df = welch_df(var_c, var_t, control.n, treatment.n)
    return _estimate(treatment.mean - control.mean, math.sqrt(var_c + var_t), df, alpha)


def _relative_se(mean_c: float, mean_t: float, var_c: float, var_t: float) -> float:
    """Delta-method s.e. of ``(mean_t - mean_c) / |mean_c|`` for independent means."""
    return math.sqrt(var_t / mean_c**2 + mean_t**2 * var_c / mean_c**4)


def absolute_effect(
    mean_c: float, mean_t: float, var_c: float, var_t: float, n_c: int, n_t: int
) -> Effect:
    """``mean_t - mean_c`` of two independent estimates with variances ``var_*``.

    Welch-Satterthwaite degrees of freedom (``n_*`` the sample sizes).
    """
    return Effect(mean_t - mean_c, math.sqrt(var_c + var_t), welch_df(var_c, var_t, n_c, n_t))


def relative_effect(
    mean_c: float, mean_t: float, var_c: float, var_t: float, n_c: int, n_t: int
) -> Effect | None:
    """``(mean_t - mean_c) / |mean_c|`` by the delta method; ``None`` when ``mean_c == 0``.

    Variance ``v_t / m_c² + m_t² v_c / m_c⁴``, degrees of freedom as the absolute lift.
    """
    if mean_c == 0:
        return None
    return Effect(
        (mean_t - mean_c) / abs(mean_c),
        _relative_se(mean_c, mean_t, var_c, var_t),
        welch_df(var_c, var_t, n_c, n_t),
    )


def fixed_test(effect: Effect | None, alpha: float) -> Estimate:
    """The two-sided t test and ``1 - alpha`` interval of ``effect`` (NaN if ``None``)."""
    if effect is None:
        return _undefined()
    return _estimate(effect.estimate, effect.se, effect.df, alpha)


def relative_lift(control: MeanStats, treatment: MeanStats, alpha: float = 0.05) -> Estimate:
    """Relative lift ``(mean_t - mean_c) / |mean_c|`` with a delta-method interval.

    Variance ``v_t / m_c² + m_t² v_c / m_c⁴`` (``v`` the variances of the
    means); the interval and test use Welch's degrees of freedom. All fields
    are NaN when the control mean is zero (the lift is undefined).
    """
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_mean, treatment.variance_of_mean
    args = (control.mean, treatment.mean, var_c, var_t, control.n, treatment.n)
    return fixed_test(relative_effect(*args), alpha)


def ratio_lift(control: RatioStats, treatment: RatioStats, alpha: float = 0.05) -> Estimate:
    """Absolute lift ``R_t - R_c`` of a ratio metric, delta method, Welch t interval."""
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_ratio, treatment.variance_of_ratio
    args = (control.ratio, treatment.ratio, var_c, var_t, control.n, treatment.n)
    return fixed_test(absolute_effect(*args), alpha)


def ratio_relative_lift(
    control: RatioStats, treatment: RatioStats, alpha: float = 0.05
) -> Estimate:
    """Relative lift ``(R_t - R_c) / |R_c|`` of a ratio metric, delta method, Welch t interval.

    All fields are NaN when the control ratio is zero (the lift is undefined).
    """
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_ratio, treatment.variance_of_ratio
    args = (control.ratio, treatment.ratio, var_c, var_t, control.n, treatment.n)
    return fixed_test(relative_effect(*args), alpha)


# --- Always-valid inference ---------------------------------------------------------------


def rho_for_sample_size(n_units: float, alpha: float = 0.05) -> float:
    """The ``rho`` that makes the confidence sequence narrowest at ``n_units``.

    ``rho² = (-2 log α + log(1 - 2 log α)) / n`` (Waudby-Smith et al. 2021).
    The sequence stays valid at every sample size for any ``rho > 0``; tuning
    only moves where it is tightest.
    """
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(1 - 2 * log_alpha)) / n_units)


DEFAULT_RHO = rho_for_sample_size(10_000)
"""Tuned for experiments of about ten thousand units."""


def confidence_sequence(
    estimate: float, se: float, n_units: int, rho: float = DEFAULT_RHO, alpha: float = 0.05
) -> Interval:
    """Always-valid ``1 - alpha`` interval (asymptotic confidence sequence).

    Waudby-Smith et al. (2021), Gaussian-mixture boundary: with ``t``
    observations and per-observation standard deviation ``σ̂ = se * sqrt(t)``,
    ``estimate ± σ̂ sqrt(2 (t ρ² + 1) / (t² ρ²) · log(sqrt(t ρ² + 1) / α))``.
    ``n_units`` is ``t`` (all units in both arms) and ``se`` the standard
    error of ``estimate`` at that sample size. The probability that the true
    value ever leaves the interval, over all sample sizes, is asymptotically
    at most ``alpha``.
    """
    v = n_units * rho**2
    half = se * math.sqrt(2 * (v + 1) / v * math.log(math.sqrt(v + 1) / alpha))
    return Interval(estimate - half, estimate + half)


def always_valid_p_value(
    estimate: float, se: float, n_units: int, rho: float = DEFAULT_RHO
) -> float:
    """Always-valid p-value of "true value is 0", matching :func:`confidence_sequence`.

    ``min(1, sqrt(v + 1) exp(-z² v / (2 (v + 1))))`` with ``v = n ρ²`` and
    ``z = estimate / se``: the reciprocal of the normal-mixture likelihood
    ratio of Johari et al. (2017) with mixing variance ``τ² = v se²``. It is
    below ``alpha`` exactly when the ``1 - alpha`` sequence excludes 0.
    """
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    v = n_units * rho**2
    z2 = (estimate / se) ** 2
    log_p = 0.5 * math.log1p(v) - z2 * v / (2 * (v + 1))
    return math.exp(min(log_p, 0.0))


# --- Bayesian read-out --------------------------------------------------------------------


def _expected_positive_part(mu: float, sigma: float) -> float:
    """``E[max(X, 0)]`` for ``X ~ N(mu, sigma²)``: ``σ φ(z) + μ Φ(z)``, ``z = μ / σ``.

    For ``z < 0`` written ``σ φ(z) (1 - |z| R(|z|))`` with Mills' ratio ``R``
    (``Φ(-t) = φ(t) R(t)``), so a far tail loses no more than ``z²`` ulps.
    """
    z = mu / sigma
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if z >= 0:
        return sigma * pdf + mu * float(special.ndtr(z))
    mills = math.sqrt(math.pi / 2) * float(special.erfcx(-z / math.sqrt(2)))
    return sigma * pdf * (1 + z * mills)


def bayesian(
    effect: Effect,
    prior: GaussianPrior | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> Bayesian:
    """GrowthBook's Gaussian effect model: the posterior of a lift and its read-out.

    The likelihood of the lift is ``N(estimate, se²)``. With no prior (flat,
    improper) the posterior is that Gaussian; with a proper prior
    ``N(m0, v0)`` it is ``N(m1, v1)``, ``1/v1 = 1/se² + 1/v0``,
    ``m1 = v1 (estimate/se² + m0/v0)``. Chance to win ``P(δ > 0)`` (``P(δ < 0)``
    when lower is better); risk ``E[max(-δ, 0)]`` of shipping and
    ``E[max(δ, 0)]`` of keeping the control (swapped when lower is better),
    in closed form; beyond ``|m1/sd| > 37``, where ``Φ`` is 0 or 1 in double
    precision, the limits ``max(∓m1, 0)``, as gbstats. Credible interval:
    ``m1 ± Φ⁻¹(1 - alpha/2) sd``.

    ``prior`` must be on the scale of ``effect`` (see :func:`scaled_prior`).
    """
    if effect.se > 0:
        precision = 1 / effect.se**2 + (1 / prior.variance if prior else 0.0)
        mean = (
            (effect.estimate / effect.se**2 + prior.mean / prior.variance) / precision
            if prior
            else effect.estimate
        )
    elif prior:  # no information in the data: the prior itself
        precision, mean = 1 / prior.variance, prior.mean
    else:
        raise ValueError("a flat prior needs a positive standard error")
    sd = math.sqrt(1 / precision)
    half = float(special.ndtri(1 - alpha / 2)) * sd
    ci = Interval(mean - half, mean + half)
    if abs(mean / sd) > 37:
        gain, loss = max(mean, 0.0), max(-mean, 0.0)
    else:
        gain, loss = _expected_positive_part(mean, sd), _expected_positive_part(-mean, sd)
    win = float(special.ndtr(mean / sd))
    if higher_is_better:
        return Bayesian(mean, sd, ci, win, loss, gain)
    return Bayesian(mean, sd, ci, 1 - win, gain, loss)


def scaled_prior(prior: GaussianPrior | None, control_mean: float) -> GaussianPrior | None:
    """A prior on the relative lift, rescaled for the absolute lift (GrowthBook).

    ``N(m |c|, v c²)`` with ``c`` the control's unadjusted mean; ``None`` (flat)
    stays flat, and so does a proper prior when ``c == 0`` (no scale to map it).
    """
    if prior is None or control_mean == 0:
        return None
    return GaussianPrior(prior.mean * abs(control_mean), prior.variance * control_mean**2)


# --- Comparisons --------------------------------------------------------------------------


def compare_effects(
    n_c: int,
    n_t: int,
    absolute: Effect,
    relative: Effect | None,
    control_mean: float,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
    sample_size: int | None = None,
    cuped: CupedAdjustment | None = None,
) -> Comparison:
    """Every read-out of one comparison from its absolute and relative lifts.

    Fixed-horizon t tests and intervals, the always-valid intervals and
    p-value (``sample_size`` observations, default ``n_c + n_t``), and the
    Bayesian posteriors: ``prior`` is on the relative lift and rescaled by
    ``control_mean`` (the control's unadjusted mean) for the absolute one.
    ``relative`` is ``None`` when it is undefined (zero control mean).
    """
    n = n_c + n_t if sample_size is None else sample_size
    fixed, fixed_relative = fixed_test(absolute, alpha), fixed_test(relative, alpha)
    nan_interval = Interval(math.nan, math.nan)
    absolute_prior = scaled_prior(prior, control_mean)
    return Comparison(
        control_units=n_c,
        treatment_units=n_t,
        absolute=fixed,
        relative=fixed_relative,
        sequential=confidence_sequence(absolute.estimate, absolute.se, n, rho, alpha),
        sequential_relative=(
            nan_interval
            if relative is None
            else confidence_sequence(relative.estimate, relative.se, n, rho, alpha)
        ),
        sequential_p_value=always_valid_p_value(absolute.estimate, absolute.se, n, rho),
        bayesian=(
            bayesian(absolute, absolute_prior, alpha, higher_is_better)
            if absolute.se > 0 or absolute_prior
            else None
        ),
        bayesian_relative=(
            bayesian(relative, prior, alpha, higher_is_better)
            if relative is not None and (relative.se > 0 or prior)
            else None
        ),
        cuped=cuped,
    )


def compare_means(
    control: MeanStats,
    treatment: MeanStats,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> Comparison:
    """Welch, delta-method, always-valid and Bayesian results for a per-unit mean metric.

    Needs at least 2 units per arm (``ValueError`` otherwise); report such an
    experiment as ``too_early`` without a comparison.
    """
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_mean, treatment.variance_of_mean
    args = (control.mean, treatment.mean, var_c, var_t, control.n, treatment.n)
    return compare_effects(
        control.n,
        treatment.n,
        absolute_effect(*args),
        relative_effect(*args),
        control.mean,
        alpha,
        rho,
        prior,
        higher_is_better,
    )


def compare_ratios(
    control: RatioStats,
    treatment: RatioStats,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> Comparison:
    """Delta-method, always-valid and Bayesian results for a ratio metric ``Σx / Σy``.

    Needs at least 2 units per arm and a non-zero denominator sum per arm.
    """
    _require_units(control.n, treatment.n)
    var_c, var_t = control.variance_of_ratio, treatment.variance_of_ratio
    args = (control.ratio, treatment.ratio, var_c, var_t, control.n, treatment.n)
    return compare_effects(
        control.n,
        treatment.n,
        absolute_effect(*args),
        relative_effect(*args),
        control.ratio,
        alpha,
        rho,
        prior,
        higher_is_better,
    )


# --- Sample-ratio mismatch ----------------------------------------------------------------


def srm_check(
    counts: Sequence[int],
    weights: Sequence[float],
    min_units: int = DEFAULT_SRM_MIN_UNITS,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    """Pearson chi-square test of unit ``counts`` against configured ``weights``.

    Expected counts are ``total * w / Σw`` (weights need not sum to 1); the
    statistic has ``k - 1`` degrees of freedom, as ``scipy.stats.chisquare``.
    Units in a variant of weight 0 make the mismatch certain (``p = 0``).
    The check runs only from ``min_units`` units on (``checked``), and flags a
    mismatch when ``p < threshold``.
    """
    if len(counts) != len(weights) or len(counts) < 2:
        raise ValueError("need one weight per variant and at least two variants")
    total, weight_sum = sum(counts), math.fsum(weights)
    statistic = 0.0
    for observed, weight in zip(counts, weights, strict=True):
        expected = total * weight / weight_sum
        if expected > 0:
            statistic += (observed - expected) ** 2 / expected
        elif observed > 0:
            statistic = math.inf
    p_value = float(special.chdtrc(len(counts) - 1, statistic))
    checked = total >= min_units
    return SrmResult(statistic, p_value, checked, checked and p_value < threshold)


# --- Multiple testing ---------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order (as statsmodels ``holm``).

    The i-th smallest p (0-based) becomes ``max_{j<=i} min(1, (m - j) p_(j))``.
    Controls the family-wise error rate under any dependence.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in input order.

    The i-th smallest p (1-based) becomes ``min_{j>=i} min(1, m p_(j) / j)``,
    as statsmodels ``fdr_bh``. Controls the false discovery rate for
    independent or positively dependent tests.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 1.0
    order = sorted(range(m), key=lambda i: p_values[i])
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        running = min(running, m * p_values[index] / rank)
        adjusted[index] = running
    return adjusted


def adjust_p_values(p_values: Sequence[float], method: Correction) -> list[float]:
    """Holm (``"holm"``) or Benjamini-Hochberg (``"bh"``) adjusted p-values."""
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown correction {method!r}")


# --- Verdicts -----------------------------------------------------------------------------


def verdict(
    comparison: Comparison,
    srm: SrmResult,
    p_value: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    min_units: int = DEFAULT_MIN_UNITS_PER_VARIANT,
) -> Verdict:
    """The plain-language verdict for one metric.

    In order: ``invalid_srm`` if the SRM check flagged the experiment;
    ``too_early`` if an arm has fewer than ``min_units`` units; ``win`` or
    ``loss`` (by the sign of the lift and ``higher_is_better``) when
    ``p_value`` is below ``alpha``; ``inconclusive`` otherwise. ``p_value``
    defaults to the always-valid p-value, so the verdict may be read at any
    time; pass a multiplicity-adjusted one when testing several metrics or
    variants (see :func:`decide`).
    """
    if srm.flagged:
        return Verdict.INVALID_SRM
    if min(comparison.control_units, comparison.treatment_units) < min_units:
        return Verdict.TOO_EARLY
    p = comparison.sequential_p_value if p_value is None else p_value
    if p >= alpha or comparison.absolute.estimate == 0:
        return Verdict.INCONCLUSIVE
    improved = (comparison.absolute.estimate > 0) == higher_is_better
    return Verdict.WIN if improved else Verdict.LOSS


def decide(
    comparisons: Sequence[Comparison],
    srm: SrmResult,
    correction: Correction = "holm",
    higher_is_better: Sequence[bool] | None = None,
    alpha: float = 0.05,
    min_units: int = DEFAULT_MIN_UNITS_PER_VARIANT,
) -> list[Verdict]:
    """Verdicts for a family of comparisons (several metrics and/or variants).

    The always-valid p-values are adjusted together with ``correction``. Holm
    keeps the family-wise error at ``alpha`` at every look, because each
    always-valid p-value is valid at any stopping time; Benjamini-Hochberg
    controls the false discovery rate at the time of each look.
    """
    directions = higher_is_better or [True] * len(comparisons)
    adjusted = adjust_p_values([c.sequential_p_value for c in comparisons], correction)
    return [
        verdict(c, srm, p, alpha, better, min_units)
        for c, p, better in zip(comparisons, adjusted, directions, strict=True)
    ]
