"""How long until an experiment can decide: a power calculation at its current traffic.

For a two-sided test at level ``alpha`` to detect an absolute lift ``d`` with probability
``power``, the lift's standard error must fall to ``d / (z(1 - alpha/2) + z(power))``. The
standard error of a difference of means shrinks as ``1 / sqrt(n)`` with the units per
variant, so from the standard error ``se`` measured now at ``n`` units per variant, the units
needed are ``n · (se / se_needed)²`` — the textbook sample size
``n = (σ_c² + σ_t²)(z(1-α/2) + z(power))² / d²`` written with the variance the experiment has
shown, which holds for means, ratios (delta method) and conversions alike. Tests hold it
equal to statsmodels' ``NormalIndPower`` and check by simulation that experiments of that
size detect the effect with the stated power.

This is the fixed-horizon size. The workspace's verdict reads the always-valid interval,
which may be looked at every day at the price of a wider interval; :func:`units_needed`
also reports the size at which the always-valid interval's expected half-width equals the
effect (a larger number: the conservative time to a decision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as scipy_stats

from sextant.gateway import stats


@dataclass(frozen=True)
class PowerPlan:
    units_per_variant_now: int
    units_per_variant_needed: int
    units_per_variant_needed_always_valid: int
    units_per_day: float | None
    days_remaining: float | None
    days_remaining_always_valid: float | None
    absolute_effect: float
    method: str = (
        "two-sided test at alpha 0.05; units needed = units now x (se now / se needed)^2, "
        "se needed = effect / (z(1-alpha/2) + z(power))"
    )


def needed_units(
    n_now: float, se_now: float, effect: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Units per variant at which the standard error allows detecting ``effect``."""
    z = float(scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power))
    se_needed = abs(effect) / z
    return math.ceil(n_now * (se_now / se_needed) ** 2)


def needed_units_always_valid(
    n_now: float, se_now: float, effect: float, alpha: float = 0.05, arms: int = 2
) -> int:
    """Units per variant at which the always-valid interval's half-width equals ``effect``
    (the width :func:`sextant.gateway.stats.confidence_sequence` gives at that size)."""
    sigma = se_now * math.sqrt(n_now)  # se = sigma / sqrt(n): the scale of one unit
    low, high = 1, 1
    while _always_valid_half_width(high, sigma, alpha, arms) > abs(effect):
        high *= 2
        if high > 10**12:
            return high
    while low < high:
        middle = (low + high) // 2
        if _always_valid_half_width(middle, sigma, alpha, arms) > abs(effect):
            low = middle + 1
        else:
            high = middle
    return low


def _always_valid_half_width(n: int, sigma: float, alpha: float, arms: int) -> float:
    interval = stats.confidence_sequence(
        0.0, sigma / math.sqrt(n), n * arms, stats.DEFAULT_RHO, alpha
    )
    return (interval.high - interval.low) / 2


def plan(
    n_now: int,
    se_now: float,
    effect: float,
    elapsed_days: float | None,
    alpha: float = 0.05,
    power: float = 0.8,
    arms: int = 2,
) -> PowerPlan:
    needed = needed_units(n_now, se_now, effect, alpha, power)
    needed_av = needed_units_always_valid(n_now, se_now, effect, alpha, arms)
    rate = n_now / elapsed_days if elapsed_days and elapsed_days > 0 and n_now > 0 else None

    def days(target: int) -> float | None:
        if rate is None:
            return None
        return max(0.0, (target - n_now) / rate)

    return PowerPlan(n_now, needed, needed_av, rate, days(needed), days(needed_av), effect)
