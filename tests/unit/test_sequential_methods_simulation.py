"""A/A simulations of every sequential read-out, and the interval CUPED buys.

500 experiments, each looked at 20 times as units accrue (data generated and summed with
numpy; each look's statistics are the sufficient statistics of the units so far). Under no
difference, the always-valid interval of every read-out (mean, CUPED, ratio, ratio CUPED,
quantile; absolute and relative) and the always-valid p-value must exclude zero at some look
in at most 5 % of experiments. With a planted pre/post correlation ρ, CUPED narrows the
interval by the factor theory gives, √(1 - ρ²) (ρ = 0.7: 29 % narrower).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from sextant.gateway import estimators, stats
from sextant.schemas.statistics import MOMENT_FIELDS, SufficientStatistics

Array = NDArray[np.float64]
EXPERIMENTS = 500
PEEKS = 20
UNITS_PER_ARM_PER_PEEK = 100
FINAL_UNITS = 2 * PEEKS * UNITS_PER_ARM_PER_PEEK
RHO = stats.rho_for_sample_size(FINAL_UNITS)
_PRODUCTS = (
    ("x", None),
    ("x", "x"),
    ("y", None),
    ("y", "y"),
    ("x", "y"),
    ("u", None),
    ("u", "u"),
    ("v", None),
    ("v", "v"),
    ("u", "v"),
    ("x", "u"),
    ("x", "v"),
    ("y", "u"),
    ("y", "v"),
)


def _units(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> dict[str, Array]:
    """Per unit: a skewed metric x after exposure correlated (ρ) with its value u before,
    sessions y and v before (ratio metrics), all with the same law in both arms."""
    pre = rng.gamma(2.0, 5.0, shape)
    noise = rng.gamma(2.0, 5.0, shape)
    sessions = rng.poisson(3.0, shape) + 1.0
    return {
        "x": rho * pre + math.sqrt(1 - rho**2) * noise,
        "u": pre,
        "y": sessions,
        "v": sessions + rng.poisson(1.0, shape),
    }


def _cumulative(units: dict[str, Array]) -> Array:
    """The 14 sums after each peek: shape (experiments, arms, peeks, 14)."""
    sums = []
    for a, b in _PRODUCTS:
        values = units[a] if b is None else units[a] * units[b]
        blocks = values.reshape(EXPERIMENTS, 2, PEEKS, UNITS_PER_ARM_PER_PEEK).sum(axis=3)
        sums.append(blocks.cumsum(axis=2))
    return np.stack(sums, axis=-1)


def _statistics(sums: Array, peek: int) -> SufficientStatistics:
    n = UNITS_PER_ARM_PER_PEEK * (peek + 1)
    return SufficientStatistics(n=n, **dict(zip(MOMENT_FIELDS, map(float, sums), strict=True)))


Compare = Callable[[SufficientStatistics, SufficientStatistics], stats.Comparison]


def _means(c: SufficientStatistics, t: SufficientStatistics) -> stats.Comparison:
    return stats.compare_means(estimators.mean_stats(c), estimators.mean_stats(t), rho=RHO)


def _cuped(c: SufficientStatistics, t: SufficientStatistics) -> stats.Comparison:
    return estimators.compare_cuped(
        estimators.CupedStats.of(c), estimators.CupedStats.of(t), rho=RHO
    )


def _ratio(c: SufficientStatistics, t: SufficientStatistics) -> stats.Comparison:
    return stats.compare_ratios(estimators.ratio_stats(c), estimators.ratio_stats(t), rho=RHO)


def _ratio_cuped(c: SufficientStatistics, t: SufficientStatistics) -> stats.Comparison:
    return estimators.compare_ratio_cuped(c, t, rho=RHO)


READ_OUTS: dict[str, Compare] = {
    "mean": _means,
    "cuped": _cuped,
    "ratio": _ratio,
    "ratio-cuped": _ratio_cuped,
}


@pytest.fixture(scope="module")
def aa_sums() -> Array:
    rng = np.random.default_rng(20_250_901)
    shape = (EXPERIMENTS, 2, PEEKS * UNITS_PER_ARM_PER_PEEK)
    return _cumulative(_units(rng, shape, rho=0.7))


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


@pytest.mark.parametrize("name", sorted(READ_OUTS))
def test_every_sequential_read_out_keeps_false_positives_at_five_percent(
    aa_sums: Array, name: str
) -> None:
    compare = READ_OUTS[name]
    absolute, relative, p_values = [], [], []
    for e in range(EXPERIMENTS):
        looks = [
            compare(_statistics(aa_sums[e, 0, k], k), _statistics(aa_sums[e, 1, k], k))
            for k in range(PEEKS)
        ]
        absolute.append(any(not c.sequential.contains(0.0) for c in looks))
        relative.append(any(not c.sequential_relative.contains(0.0) for c in looks))
        p_values.append(any(c.sequential_p_value < 0.05 for c in looks))
    assert len(absolute) >= 500
    assert _rate(absolute) <= 0.05
    assert _rate(relative) <= 0.05
    assert _rate(p_values) <= 0.05


def test_quantile_sequential_read_out_keeps_false_positives_at_five_percent() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(3.0, 0.8, (EXPERIMENTS, 2, PEEKS * UNITS_PER_ARM_PER_PEEK))
    flagged = []
    for e in range(EXPERIMENTS):
        ever = False
        for k in range(PEEKS):
            n = UNITS_PER_ARM_PER_PEEK * (k + 1)
            low, high = estimators.quantile_bound_levels(0.5, n)
            arms = []
            for arm in range(2):
                q, lower, upper = np.quantile(values[e, arm, :n], [0.5, low, high])
                arms.append(estimators.QuantileStats(n, n, 0.5, q, lower, upper))
            comparison = estimators.compare_quantiles(*arms, rho=RHO)
            ever = ever or not comparison.sequential.contains(0.0)
            ever = ever or not comparison.sequential_relative.contains(0.0)
        flagged.append(ever)
    assert _rate(flagged) <= 0.05


@pytest.mark.parametrize("rho", [0.5, 0.7, 0.9])
def test_cuped_narrows_the_interval_as_theory_predicts(rho: float) -> None:
    """Var(x - θu) = (1 - ρ²) Var(x) at the optimal θ: the interval shrinks by √(1 - ρ²)."""
    rng = np.random.default_rng(int(rho * 10))
    # Normal margins make the planted ρ the Pearson correlation exactly.
    pre = rng.normal(0, 1, (200, 2, 4000))
    post = 10 + rho * pre + math.sqrt(1 - rho**2) * rng.normal(0, 1, pre.shape)
    sums = {
        "sum_x": post.sum(axis=2),
        "sum_x_sq": (post * post).sum(axis=2),
        "sum_x_pre": pre.sum(axis=2),
        "sum_x_pre_sq": (pre * pre).sum(axis=2),
        "sum_x_x_pre": (post * pre).sum(axis=2),
    }
    ratios = []
    for e in range(200):
        control, treatment = (
            SufficientStatistics(n=4000, **{k: float(v[e, arm]) for k, v in sums.items()})
            for arm in range(2)
        )
        cuped = _cuped(control, treatment)
        assert cuped.cuped is not None
        ratios.append(cuped.absolute.se / cuped.cuped.unadjusted.se)
        relative = cuped.relative.se / cuped.cuped.unadjusted_relative.se
        assert relative == pytest.approx(math.sqrt(1 - rho**2), abs=0.03)
    narrower = 1 - float(np.mean(ratios))
    assert narrower == pytest.approx(1 - math.sqrt(1 - rho**2), abs=0.005)
    if rho == 0.7:
        assert round(narrower, 2) == 0.29
