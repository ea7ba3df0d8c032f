"""Lifts of CUPED-adjusted, ratio-CUPED and quantile metrics, from their statistics.

Each estimator reduces two variants to an absolute and a relative :class:`~stats.Effect`
(estimate, standard error, degrees of freedom); :func:`sextant.gateway.stats.compare_effects`
turns those into the fixed-horizon, always-valid and Bayesian read-outs. The formulas are
GrowthBook's (``gbstats``, ``models/statistics.py`` and ``models/tests.py``), written again
here over Sextant's one structure of sums, :class:`sextant.schemas.statistics.SufficientStatistics`.

Methods
-------
* CUPED (Deng, Xu, Kohavi and Walker, "Improving the sensitivity of online controlled
  experiments by utilizing pre-experiment data", WSDM 2013): each unit's post-exposure value
  ``x`` is adjusted by its pre-exposure value ``u`` of the same metric, ``x - θ u``, with
  ``θ = cov(x, u) / var(u)`` pooled over both variants. Adjusted mean ``x̄ - θ ū``; adjusted
  per-unit variance ``s_x² + θ² s_u² - 2 θ s_xu``. Absolute lift: Welch on the adjusted
  means and variances. Relative lift ``(adj_t - adj_c) / |x̄_c|`` with the delta-method
  variance that keeps the covariance of the adjusted control mean with its unadjusted
  denominator: ``v_t / (n_t x̄_c²) + (s_xc² x̄_t² / x̄_c² - 2 θ s_xu,c x̄_t / x̄_c
  + θ² s_uc²) / (n_c x̄_c²)``. θ = 0 (no variance before or after) falls back to the
  unadjusted read-out.
* Ratio CUPED: ``R = Σx / Σy`` adjusted by ``R_pre = Σu / Σv``: ``R - θ R_pre``. With
  ``β = (x̄, ȳ, ū, v̄)`` and ``Λ`` the 4×4 per-unit covariance matrix, the gradient
  ``∇ = (1/ȳ, -x̄/ȳ², -θ/v̄, θ ū/v̄²)`` gives the per-unit variance ``∇ᵀ Λ ∇``; θ minimises
  it over both variants, ``θ = -Σ_arms ∇₂ᵀ Λ₂₁ ∇₁ / Σ_arms ∇₂ᵀ Λ₂₂ ∇₂`` (∇ at θ = 1), and
  ``|θ| < 1e-8`` falls back to the plain ratio. The relative lift's variance is the delta
  method over both arms' four means.
* Quantiles (GrowthBook's quantile metrics): the sample quantile ``q̂`` at level ``ν`` and
  the order statistics at the levels ``ν ∓ z₀.₉₇₅ √(ν(1-ν)/n*)`` (Price and Bonett's
  distribution-free interval) give ``Var(q̂) ≈ ((U - L) / (2 z₀.₉₇₅))²``. For event
  quantiles, events of one unit are correlated: the variance is scaled by the ratio of the
  clustered (delta-method) variance of the share of events at or below ``q̂`` to its i.i.d.
  variance ``ν(1-ν)/n``. Lifts then as independent means (Welch degrees of freedom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from sextant.gateway.stats import (
    DEFAULT_RHO,
    Comparison,
    CupedAdjustment,
    Effect,
    Estimate,
    GaussianPrior,
    MeanStats,
    RatioStats,
    absolute_effect,
    compare_effects,
    compare_means,
    compare_ratios,
    fixed_test,
    relative_effect,
    welch_df,
)
from sextant.schemas.statistics import SufficientStatistics

__all__ = [
    "QUANTILE_LEVEL_LIMITS",
    "CupedStats",
    "QuantileStats",
    "RatioCupedStats",
    "compare_cuped",
    "compare_quantiles",
    "compare_ratio_cuped",
    "cuped_effects",
    "cuped_theta",
    "mean_stats",
    "quantile_bound_levels",
    "ratio_cuped_effects",
    "ratio_cuped_theta",
    "ratio_stats",
]

Matrix = tuple[tuple[float, ...], ...]
Vector = tuple[float, ...]


def _covariance(n: int, sum_a: float, sum_b: float, sum_ab: float) -> float:
    """Sample covariance (ddof = 1) from sums; 0 below two units."""
    return (sum_ab - sum_a * sum_b / n) / (n - 1) if n > 1 else 0.0


def mean_stats(s: SufficientStatistics) -> MeanStats:
    """The post-exposure ``x`` of a variant as :class:`MeanStats`."""
    return MeanStats(s.n, s.sum_x, s.sum_x_sq)


def ratio_stats(s: SufficientStatistics) -> RatioStats:
    """``Σx / Σy`` of a variant as :class:`RatioStats`."""
    return RatioStats(s.n, s.sum_x, s.sum_x_sq, s.sum_y, s.sum_y_sq, s.sum_xy)


# --- CUPED for mean metrics -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CupedStats:
    """A variant's post-exposure ``x`` and pre-exposure ``u``: n, Σx, Σx², Σu, Σu², Σxu."""

    n: int
    sum: float
    sum_sq: float
    pre_sum: float
    pre_sum_sq: float
    sum_products: float

    @classmethod
    def of(cls, s: SufficientStatistics) -> CupedStats:
        return cls(s.n, s.sum_x, s.sum_x_sq, s.sum_x_pre, s.sum_x_pre_sq, s.sum_x_x_pre)

    @property
    def post(self) -> MeanStats:
        return MeanStats(self.n, self.sum, self.sum_sq)

    @property
    def pre(self) -> MeanStats:
        return MeanStats(self.n, self.pre_sum, self.pre_sum_sq)

    @property
    def covariance(self) -> float:
        """Sample covariance of ``x`` and ``u`` (ddof = 1)."""
        return _covariance(self.n, self.sum, self.pre_sum, self.sum_products)

    def adjusted_mean(self, theta: float) -> float:
        """``x̄ - θ ū``."""
        return self.post.mean - theta * self.pre.mean

    def adjusted_variance(self, theta: float) -> float:
        """Per-unit variance of ``x - θ u``: ``s_x² + θ² s_u² - 2 θ s_xu``."""
        if self.n <= 1:
            return 0.0
        value = self.post.variance + theta**2 * self.pre.variance - 2 * theta * self.covariance
        return max(value, 0.0)

    def __add__(self, other: CupedStats) -> CupedStats:
        return CupedStats(
            self.n + other.n,
            self.sum + other.sum,
            self.sum_sq + other.sum_sq,
            self.pre_sum + other.pre_sum,
            self.pre_sum_sq + other.pre_sum_sq,
            self.sum_products + other.sum_products,
        )


def cuped_theta(control: CupedStats, treatment: CupedStats) -> float:
    """θ pooled over both variants: ``cov(x, u) / var(u)`` of the joint sample.

    0 when the joint ``x`` or ``u`` has no variance (gbstats ``compute_theta``).
    """
    joint = control + treatment
    if joint.pre.n < 2 or joint.pre.variance == 0 or joint.post.variance == 0:
        return 0.0
    return joint.covariance / joint.pre.variance


def _cuped_relative_variance(c: CupedStats, t: CupedStats, theta: float) -> float:
    """Delta-method variance of ``(adj_t - adj_c) / |x̄_c|`` (gbstats
    ``frequentist_variance_relative_cuped``): the control's adjusted numerator and its
    unadjusted denominator are correlated, so both enter through one gradient."""
    mean_c, mean_t = c.post.mean, t.post.mean
    v_t = t.adjusted_variance(theta) / (t.n * mean_c**2)
    ratio = mean_t / mean_c
    v_c = (
        c.post.variance * ratio**2 - 2 * theta * c.covariance * ratio + theta**2 * c.pre.variance
    ) / (c.n * mean_c**2)
    return v_t + v_c


def cuped_effects(
    control: CupedStats, treatment: CupedStats, theta: float
) -> tuple[Effect, Effect | None]:
    """The absolute and relative lifts of the adjusted means at ``theta``."""
    n_c, n_t = control.n, treatment.n
    var_c = control.adjusted_variance(theta) / n_c
    var_t = treatment.adjusted_variance(theta) / n_t
    adj_c, adj_t = control.adjusted_mean(theta), treatment.adjusted_mean(theta)
    df = welch_df(var_c, var_t, n_c, n_t)
    absolute = Effect(adj_t - adj_c, math.sqrt(var_c + var_t), df)
    mean_c = control.post.mean
    if mean_c == 0:
        return absolute, None
    variance = max(_cuped_relative_variance(control, treatment, theta), 0.0)
    return absolute, Effect((adj_t - adj_c) / abs(mean_c), math.sqrt(variance), df)


def _unadjusted(
    control: MeanStats, treatment: MeanStats, alpha: float
) -> tuple[Estimate, Estimate]:
    var_c, var_t = control.variance_of_mean, treatment.variance_of_mean
    args = (control.mean, treatment.mean, var_c, var_t, control.n, treatment.n)
    return fixed_test(absolute_effect(*args), alpha), fixed_test(relative_effect(*args), alpha)


def compare_cuped(
    control: CupedStats,
    treatment: CupedStats,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> Comparison:
    """Every read-out of a mean metric with CUPED; ``cuped`` says what was adjusted.

    Falls back to :func:`~sextant.gateway.stats.compare_means` (with ``θ = 0`` reported)
    when the adjustment is not possible. Needs at least 2 units per arm.
    """
    if min(control.n, treatment.n) < 2:
        raise ValueError("each variant needs at least 2 units")
    theta = cuped_theta(control, treatment)
    unadjusted, unadjusted_relative = _unadjusted(control.post, treatment.post, alpha)
    if theta == 0:
        plain = compare_means(control.post, treatment.post, alpha, rho, prior, higher_is_better)
        adjustment = CupedAdjustment(
            0.0, control.post.mean, treatment.post.mean, unadjusted, unadjusted_relative
        )
        return _with_cuped(plain, adjustment)
    absolute, relative = cuped_effects(control, treatment, theta)
    adjustment = CupedAdjustment(
        theta,
        control.adjusted_mean(theta),
        treatment.adjusted_mean(theta),
        unadjusted,
        unadjusted_relative,
    )
    return compare_effects(
        control.n,
        treatment.n,
        absolute,
        relative,
        control.post.mean,
        alpha,
        rho,
        prior,
        higher_is_better,
        cuped=adjustment,
    )


def _with_cuped(comparison: Comparison, adjustment: CupedAdjustment) -> Comparison:
    return Comparison(
        comparison.control_units,
        comparison.treatment_units,
        comparison.absolute,
        comparison.relative,
        comparison.sequential,
        comparison.sequential_relative,
        comparison.sequential_p_value,
        comparison.bayesian,
        comparison.bayesian_relative,
        adjustment,
    )


# --- CUPED for ratio metrics ----------------------------------------------------------------


def _quad(a: Vector, m: Matrix, b: Vector, rows: range, cols: range) -> float:
    """``a[rows]ᵀ m[rows, cols] b[cols]``."""
    return math.fsum(a[i] * m[i][j] * b[j] for i in rows for j in cols)


_POST, _PRE, _ALL = range(2), range(2, 4), range(4)


@dataclass(frozen=True, slots=True)
class RatioCupedStats:
    """A ratio metric's four per-unit variables ``(x, y, u, v)``: means and covariances."""

    n: int
    means: Vector
    """``(x̄, ȳ, ū, v̄)``: numerator and denominator after, then before, exposure."""
    sums: Vector
    covariance: Matrix
    """The 4×4 sample covariance matrix (ddof = 1) of ``(x, y, u, v)``."""

    @classmethod
    def of(cls, s: SufficientStatistics) -> RatioCupedStats:
        n = s.n
        sums = (s.sum_x, s.sum_y, s.sum_x_pre, s.sum_y_pre)
        products = (
            (s.sum_x_sq, s.sum_xy, s.sum_x_x_pre, s.sum_x_y_pre),
            (s.sum_xy, s.sum_y_sq, s.sum_y_x_pre, s.sum_y_y_pre),
            (s.sum_x_x_pre, s.sum_y_x_pre, s.sum_x_pre_sq, s.sum_x_pre_y_pre),
            (s.sum_x_y_pre, s.sum_y_y_pre, s.sum_x_pre_y_pre, s.sum_y_pre_sq),
        )
        covariance = tuple(
            tuple(_covariance(n, sums[i], sums[j], products[i][j]) for j in _ALL) for i in _ALL
        )
        means = tuple(total / n if n else 0.0 for total in sums)
        return cls(n, means, sums, covariance)

    @property
    def ratio(self) -> float:
        """``Σx / Σy`` (0 without a denominator)."""
        return self.sums[0] / self.sums[1] if self.sums[1] else 0.0

    @property
    def pre_ratio(self) -> float:
        """``Σu / Σv`` (0 without a pre-exposure denominator)."""
        return self.sums[2] / self.sums[3] if self.sums[3] else 0.0

    def adjusted_ratio(self, theta: float) -> float:
        """``R - θ R_pre`` (0 without either denominator, as gbstats)."""
        if self.sums[1] == 0 or self.sums[3] == 0:
            return 0.0
        return self.ratio - theta * self.pre_ratio

    def gradient(self, theta: float) -> Vector:
        """∂(x̄/ȳ - θ ū/v̄) / ∂(x̄, ȳ, ū, v̄); zeros without a denominator mean."""
        x, y, u, v = self.means
        if y == 0 or v == 0:
            return (0.0, 0.0, 0.0, 0.0)
        return (1 / y, -x / y**2, -theta / v, theta * u / v**2)

    def variance(self, theta: float) -> float:
        """Per-unit variance ``∇ᵀ Λ ∇`` of the adjusted ratio."""
        g = self.gradient(theta)
        return _quad(g, self.covariance, g, _ALL, _ALL)


def ratio_cuped_theta(control: RatioCupedStats, treatment: RatioCupedStats) -> float:
    """θ minimising the adjusted ratio's variance, pooled over both variants (gbstats
    ``compute_theta_regression_adjusted_ratio``); 0 when the pre-period ratio has no
    variance."""
    covariance = pre_variance = 0.0
    for arm in (control, treatment):
        g = arm.gradient(1.0)
        covariance += _quad(g, arm.covariance, g, _PRE, _POST)
        pre_variance += _quad(g, arm.covariance, g, _PRE, _PRE)
    return -covariance / pre_variance if pre_variance else 0.0


def _ratio_cuped_relative_variance(c: RatioCupedStats, t: RatioCupedStats, theta: float) -> float:
    """Delta-method variance of ``(adj_t - adj_c) / |R_c|`` over both arms' four means
    (gbstats ``frequentist_variance_relative_cuped_ratio``)."""
    ratio_c = c.ratio
    lift = (t.adjusted_ratio(theta) - c.adjusted_ratio(theta)) * math.copysign(1.0, ratio_c)
    scale = abs(ratio_c)
    x_c, y_c = c.means[0], c.means[1]
    g_c = c.gradient(theta)
    control = (
        -(scale + lift) / y_c / scale**2,
        (x_c * scale / y_c**2 + x_c * lift / y_c**2) / scale**2,
        -g_c[2] / scale,
        -g_c[3] / scale,
    )
    treatment = tuple(g / scale for g in t.gradient(theta))
    return (
        _quad(control, c.covariance, control, _ALL, _ALL) / c.n
        + _quad(treatment, t.covariance, treatment, _ALL, _ALL) / t.n
    )


def ratio_cuped_effects(
    c: RatioCupedStats, t: RatioCupedStats, theta: float
) -> tuple[Effect, Effect | None]:
    """The absolute and relative lifts of the adjusted ratios at ``theta``."""
    adj_c, adj_t = c.adjusted_ratio(theta), t.adjusted_ratio(theta)
    v_c, v_t = c.variance(theta) / c.n, t.variance(theta) / t.n
    df = welch_df(v_c, v_t, c.n, t.n)
    absolute = Effect(adj_t - adj_c, math.sqrt(v_c + v_t), df)
    if c.ratio == 0:
        return absolute, None
    variance = max(_ratio_cuped_relative_variance(c, t, theta), 0.0)
    return absolute, Effect((adj_t - adj_c) / abs(c.ratio), math.sqrt(variance), df)


def compare_ratio_cuped(
    control: SufficientStatistics,
    treatment: SufficientStatistics,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> Comparison:
    """Every read-out of a ratio metric with CUPED on the pre-exposure ratio.

    Falls back to :func:`~sextant.gateway.stats.compare_ratios` (``θ = 0`` reported) when
    ``|θ| < 1e-8``. Needs at least 2 units and a post-exposure denominator per arm.
    """
    c, t = RatioCupedStats.of(control), RatioCupedStats.of(treatment)
    if min(c.n, t.n) < 2:
        raise ValueError("each variant needs at least 2 units")
    plain_c, plain_t = ratio_stats(control), ratio_stats(treatment)
    var_c, var_t = plain_c.variance_of_ratio, plain_t.variance_of_ratio
    args = (plain_c.ratio, plain_t.ratio, var_c, var_t, c.n, t.n)
    unadjusted = fixed_test(absolute_effect(*args), alpha)
    unadjusted_relative = fixed_test(relative_effect(*args), alpha)
    theta = ratio_cuped_theta(c, t)
    if abs(theta) < 1e-8:
        plain = compare_ratios(plain_c, plain_t, alpha, rho, prior, higher_is_better)
        adjustment = CupedAdjustment(0.0, c.ratio, t.ratio, unadjusted, unadjusted_relative)
        return _with_cuped(plain, adjustment)
    absolute, relative = ratio_cuped_effects(c, t, theta)
    adj_c, adj_t = c.adjusted_ratio(theta), t.adjusted_ratio(theta)
    adjustment = CupedAdjustment(theta, adj_c, adj_t, unadjusted, unadjusted_relative)
    return compare_effects(
        c.n,
        t.n,
        absolute,
        relative,
        c.ratio,
        alpha,
        rho,
        prior,
        higher_is_better,
        cuped=adjustment,
    )


# --- Quantiles ------------------------------------------------------------------------------

QUANTILE_LEVEL_LIMITS = (1e-8, 1 - 1e-8)
_Z_95 = float(special.ndtri(0.975))


def quantile_bound_levels(nu: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The quantile levels whose order statistics bound the ``nu`` quantile of ``n`` values.

    ``ν ∓ z √(ν(1-ν)/n)`` with ``z = Φ⁻¹(1 - alpha/2)``, kept inside (1e-8, 1 - 1e-8), as
    GrowthBook's ``getQuantileBoundValues`` (which evaluates them on a grid of ``n*``; here
    ``n* = n``, the exact count, because the events table gives it before the quantiles).
    """
    z = float(special.ndtri(1 - alpha / 2))
    se = math.sqrt(nu * (1 - nu) / n)
    low, high = QUANTILE_LEVEL_LIMITS
    return max(nu - z * se, low), min(nu + z * se, high)


@dataclass(frozen=True, slots=True)
class QuantileStats:
    """A variant's sample quantile and its bounding order statistics (GrowthBook).

    ``n`` observations (events, or units), ``n_star`` the sample size the bound levels were
    computed for, ``nu`` the level, ``estimate`` the sample quantile, ``lower``/``upper``
    the order statistics at :func:`quantile_bound_levels`. For event quantiles, the
    clustering sums over the variant's ``units``: ``c`` the unit's events at or below
    ``estimate`` and ``m`` its events: Σc, Σc², Σm, Σm², Σcm.
    """

    n: int
    n_star: int
    nu: float
    estimate: float
    lower: float
    upper: float
    units: int = 0
    sum_c: float = 0.0
    sum_c_sq: float = 0.0
    sum_m: float = 0.0
    sum_m_sq: float = 0.0
    sum_cm: float = 0.0

    @property
    def clustered(self) -> bool:
        return self.units > 0

    def _iid_variance(self) -> float:
        if self.n <= 1:
            return 0.0
        width = (self.upper - self.lower) / (2 * _Z_95)
        return (self.n_star / self.n) * (self.n - 1) * width**2

    def _cluster_variance(self) -> float:
        """Delta-method variance of ``Σc / Σm`` over the units (the share at or below q̂)."""
        k = self.units
        mu_c, mu_m = self.sum_c / k, self.sum_m / k
        var_c = (self.sum_c_sq / k - mu_c**2) * k / (k - 1)
        var_m = (self.sum_m_sq / k - mu_m**2) * k / (k - 1)
        cov = (self.sum_cm / k - mu_c * mu_m) * k / (k - 1)
        return (var_c - 2 * mu_c * cov / mu_m + mu_c**2 * var_m / mu_m**2) / (k * mu_m**2)

    @property
    def variance_init(self) -> float:
        """Per-observation variance before its floor (gbstats ``variance_init``)."""
        if not self.clustered:
            return self._iid_variance()
        if self.n <= 1 or self.nu == 0 or self.units <= 1 or self.sum_m <= 0:
            return 0.0
        iid_level_variance = self.nu * (1 - self.nu) / self.n
        return self._iid_variance() * self._cluster_variance() / iid_level_variance

    @property
    def variance(self) -> float:
        """Per-observation variance: ``variance_init``, floored at 1e-5 from 100 on."""
        return self.variance_init if self.n < 100 else max(self.variance_init, 1e-5)

    @property
    def has_variance(self) -> bool:
        """Whether a test is possible: enough observations for both bounds to exist
        (``n > z² ν/(1-ν)`` and ``n > z² (1-ν)/ν``) and bounds that differ."""
        z2 = _Z_95**2
        if self.n <= z2 * self.nu / (1 - self.nu) or self.n <= z2 * (1 - self.nu) / self.nu:
            return False
        return self.variance_init > 0


def compare_quantiles(
    control: QuantileStats,
    treatment: QuantileStats,
    alpha: float = 0.05,
    rho: float = DEFAULT_RHO,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> Comparison:
    """Every read-out of a quantile metric (sequential over ``n_c + n_t`` observations).

    ``ValueError`` when either variant's quantile has no variance yet (too few
    observations, or bounds that coincide).
    """
    if not (control.has_variance and treatment.has_variance):
        raise ValueError("a quantile needs more observations, or distinct bounds")
    n_c, n_t = control.n, treatment.n
    var_c, var_t = control.variance / n_c, treatment.variance / n_t
    args = (control.estimate, treatment.estimate, var_c, var_t, n_c, n_t)
    return compare_effects(
        n_c,
        n_t,
        absolute_effect(*args),
        relative_effect(*args),
        control.estimate,
        alpha,
        rho,
        prior,
        higher_is_better,
    )
