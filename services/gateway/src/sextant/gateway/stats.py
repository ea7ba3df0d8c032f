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
* Relative lift ``mean_t / mean_c - 1``: delta method on the two independent
  means, interval and test on Welch's degrees of freedom.
* Ratio metrics ``sum(numerator) / sum(denominator)`` per variant (e.g. revenue
  per session when units are users): delta-method variance of each ratio,
  normal intervals for the absolute and relative lifts.
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
    "Comparison",
    "Correction",
    "Estimate",
    "Interval",
    "MeanStats",
    "RatioStats",
    "SrmResult",
    "Verdict",
    "adjust_p_values",
    "always_valid_p_value",
    "benjamini_hochberg",
    "compare_means",
    "compare_ratios",
    "confidence_sequence",
    "decide",
    "holm",
    "ratio_lift",
    "ratio_relative_lift",
    "relative_lift",
    "rho_for_sample_size",
    "srm_check",
    "verdict",
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
    0 or 1, so ``sum == sum_sq``.
    """

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        if self.n < 0 or self.sum_sq < 0:
            raise ValueError("n and sum_sq must be non-negative")

    @property
    def mean(self) -> float:
        """Σx / n (requires ``n >= 1``)."""
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof = 1, requires ``n >= 2``), never negative."""
        return max(self.sum_sq - self.sum * self.mean, 0.0) / (self.n - 1)

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
class Comparison:
    """One metric, treatment against control.

    ``sequential`` and ``sequential_relative`` are always-valid intervals for
    the absolute and relative lift; ``sequential_p_value`` is the matching
    always-valid p-value for "no difference".
    """

    control_units: int
    treatment_units: int
    absolute: Estimate
    relative: Estimate
    sequential: Interval
    sequential_relative: Interval
    sequential_p_value: float


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


def _welch_df(var_c: float, var_t: float, n_c: int, n_t: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the variances of the two means."""
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
    df = _welch_df(var_c, var_t, control.n, treatment.n)
    return _estimate(treatment.mean - control.mean, math.sqrt(var_c + var_t), df, alpha)


def _relative_se(mean_c: float, mean_t: float, var_c: float, var_t: float) -> float:
    """Delta-method s.e. of ``mean_t / mean_c - 1`` for independent means."""
    return math.sqrt(var_t / mean_c**2 + mean_t**2 * var_c / mean_c**4)


def relative_lift(control: MeanStats, treatment: MeanStats, alpha: float = 0.05) -> Estimate:
    """Relative lift ``mean_t / mean_c - 1`` with a delta-method interval.

    Variance ``v_t / m_c² + m_t² v_c / m_c⁴`` (``v`` the variances of the
    means); the interval and test use Welch's degrees of freedom. All fields
    are NaN when the control mean is zero (the lift is undefined).
    """
    _require_units(control.n, treatment.n)
    if control.mean == 0:
        return _undefined()
    var_c, var_t = control.variance_of_mean, treatment.variance_of_mean
    se = _relative_se(control.mean, treatment.mean, var_c, var_t)
    df = _welch_df(var_c, var_t, control.n, treatment.n)
    return _estimate(treatment.mean / control.mean - 1, se, df, alpha)


def ratio_lift(control: RatioStats, treatment: RatioStats, alpha: float = 0.05) -> Estimate:
    """Absolute lift ``R_t - R_c`` of a ratio metric, delta method, normal interval."""
    _require_units(control.n, treatment.n)
    se = math.sqrt(control.variance_of_ratio + treatment.variance_of_ratio)
    return _estimate(treatment.ratio - control.ratio, se, math.inf, alpha)


def ratio_relative_lift(
    control: RatioStats, treatment: RatioStats, alpha: float = 0.05
) -> Estimate:
    """Relative lift ``R_t / R_c - 1`` of a ratio metric, delta method, normal interval.

    All fields are NaN when the control ratio is zero (the lift is undefined).
    """
    _require_units(control.n, treatment.n)
    if control.ratio == 0:
        return _undefined()
    var_c, var_t = control.variance_of_ratio, treatment.variance_of_ratio
    se = _relative_se(control.ratio, treatment.ratio, var_c, var_t)
    return _estimate(treatment.ratio / control.ratio - 1, se, math.inf, alpha)


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


# --- Comparisons --------------------------------------------------------------------------


def _comparison(
    n_c: int, n_t: int, absolute: Estimate, relative: Estimate, rho: float, alpha: float
) -> Comparison:
    n = n_c + n_t
    return Comparison(
        control_units=n_c,
        treatment_units=n_t,
        absolute=absolute,
        relative=relative,
        sequential=confidence_sequence(absolute.estimate, absolute.se, n, rho, alpha),
        sequential_relative=confidence_sequence(relative.estimate, relative.se, n, rho, alpha),
        sequential_p_value=always_valid_p_value(absolute.estimate, absolute.se, n, rho),
    )


def compare_means(
    control: MeanStats, treatment: MeanStats, alpha: float = 0.05, rho: float = DEFAULT_RHO
) -> Comparison:
    """Welch, delta-method and always-valid results for a per-unit mean metric.

    Needs at least 2 units per arm (``ValueError`` otherwise); report such an
    experiment as ``too_early`` without a comparison.
    """
    absolute = welch_test(control, treatment, alpha)
    relative = relative_lift(control, treatment, alpha)
    return _comparison(control.n, treatment.n, absolute, relative, rho, alpha)


def compare_ratios(
    control: RatioStats, treatment: RatioStats, alpha: float = 0.05, rho: float = DEFAULT_RHO
) -> Comparison:
    """Delta-method and always-valid results for a ratio metric ``Σx / Σy``.

    Needs at least 2 units per arm and a non-zero denominator sum per arm.
    """
    absolute = ratio_lift(control, treatment, alpha)
    relative = ratio_relative_lift(control, treatment, alpha)
    return _comparison(control.n, treatment.n, absolute, relative, rho, alpha)


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
