"""A/A and A/B simulations: peeking at the always-valid interval is safe.

Each simulated experiment is looked at 20 times as units accrue. The fixed
Welch interval is right at any single look but, read at every look, declares a
difference far more often than 5 %; the always-valid interval (asymptotic
confidence sequence) keeps the chance of ever excluding the truth below 5 %.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from sextant.gateway.stats import Comparison, MeanStats, compare_means, rho_for_sample_size

Array = NDArray[np.float64]
Sampler = Callable[[np.random.Generator, tuple[int, ...]], Array]

EXPERIMENTS = 1_000
PEEKS = 20
UNITS_PER_ARM_PER_PEEK = 100
FINAL_UNITS = 2 * PEEKS * UNITS_PER_ARM_PER_PEEK
RHO = rho_for_sample_size(FINAL_UNITS)


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    return rng.normal(5.0, 2.0, shape)


def _conversion(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    return rng.binomial(1, 0.2, shape).astype(np.float64)


def _revenue(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    return rng.gamma(2.0, 5.0, shape)


SAMPLERS: dict[str, tuple[Sampler, float]] = {
    "normal": (_normal, 5.0),
    "conversion": (_conversion, 0.2),
    "revenue-skewed": (_revenue, 10.0),
}


def _cumulative_sums(x: Array) -> tuple[Array, Array]:
    """(Σx, Σx²) after each peek: arrays of shape (experiments, arms, peeks)."""
    blocks = x.reshape(EXPERIMENTS, 2, PEEKS, UNITS_PER_ARM_PER_PEEK)
    return blocks.sum(axis=3).cumsum(axis=2), (blocks**2).sum(axis=3).cumsum(axis=2)


def _simulate(sampler: Sampler, lift: float, seed: int) -> list[list[Comparison]]:
    """comparisons[experiment][peek] for A/B data with treatment shifted by ``lift``."""
    rng = np.random.default_rng(seed)
    x = sampler(rng, (EXPERIMENTS, 2, PEEKS * UNITS_PER_ARM_PER_PEEK))
    x[:, 1] += lift
    sums, sums_sq = _cumulative_sums(x)
    n = UNITS_PER_ARM_PER_PEEK * np.arange(1, PEEKS + 1)
    return [
        [
            compare_means(
                MeanStats(int(n[k]), float(sums[e, 0, k]), float(sums_sq[e, 0, k])),
                MeanStats(int(n[k]), float(sums[e, 1, k]), float(sums_sq[e, 1, k])),
                rho=RHO,
            )
            for k in range(PEEKS)
        ]
        for e in range(EXPERIMENTS)
    ]


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


@pytest.fixture(scope="module", params=sorted(SAMPLERS), ids=sorted(SAMPLERS))
def aa(request: pytest.FixtureRequest) -> list[list[Comparison]]:
    sampler, _ = SAMPLERS[request.param]
    return _simulate(sampler, lift=0.0, seed=sorted(SAMPLERS).index(request.param))


def test_always_valid_interval_false_positive_rate(aa: list[list[Comparison]]) -> None:
    ever_excludes_zero = [any(not c.sequential.contains(0.0) for c in e) for e in aa]
    assert len(aa) >= 1_000
    assert all(len(e) == PEEKS for e in aa)
    assert _rate(ever_excludes_zero) <= 0.05


def test_always_valid_p_value_false_positive_rate(aa: list[list[Comparison]]) -> None:
    ever_significant = [any(c.sequential_p_value < 0.05 for c in e) for e in aa]
    assert _rate(ever_significant) <= 0.05


def test_fixed_welch_interval_coverage(aa: list[list[Comparison]]) -> None:
    at_final_look = [e[-1].absolute.ci.contains(0.0) for e in aa]
    at_every_look = [c.absolute.ci.contains(0.0) for e in aa for c in e]
    assert 0.93 <= _rate(at_final_look) <= 0.97
    assert 0.93 <= _rate(at_every_look) <= 0.97


def test_peeking_at_fixed_interval_inflates_false_positives(aa: list[list[Comparison]]) -> None:
    ever_significant = [any(c.absolute.p_value < 0.05 for c in e) for e in aa]
    assert _rate(ever_significant) > 0.10


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_always_valid_interval_covers_true_lift_at_every_look(name: str) -> None:
    sampler, control_mean = SAMPLERS[name]
    lift = 0.05 * control_mean
    experiments = _simulate(sampler, lift=lift, seed=100 + sorted(SAMPLERS).index(name))
    always_covered = [all(c.sequential.contains(lift) for c in e) for e in experiments]
    relative_covered = [
        all(c.sequential_relative.contains(lift / control_mean) for c in e) for e in experiments
    ]
    final_fixed = [e[-1].absolute.ci.contains(lift) for e in experiments]
    assert _rate(always_covered) >= 0.95
    assert _rate(relative_covered) >= 0.95
    assert 0.93 <= _rate(final_fixed) <= 0.97
