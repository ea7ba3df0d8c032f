"""Forecasts of an outcome's metric: a linear trend with its prediction interval.

Method (stated to the user with every forecast): ordinary least squares of the daily values
on the day number, ``y = a + b t``, and the 95 % *prediction* interval of the value on the
target day, ``ŷ(t0) ± t(n-2, 0.975) · s · sqrt(1 + 1/n + (t0 - t̄)² / Σ(t - t̄)²)``, where
``s²`` is the residual variance with ``n - 2`` degrees of freedom. It is what
``statsmodels.OLS(...).get_prediction(...).summary_frame()`` calls ``obs_ci_lower/upper``
(a test holds the two equal), and it covers 95 % of the values of series that are a line
plus independent noise (a test draws them). With fewer than three days there is no forecast:
two points always fit a line exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

METHOD = "linear trend (least squares on daily values), 95 % prediction interval"
MIN_POINTS = 3


@dataclass(frozen=True)
class Forecast:
    estimate: float
    low: float
    high: float
    slope_per_day: float
    points: int
    method: str = METHOD


def linear_forecast(
    days: Sequence[float], values: Sequence[float], at: float, level: float = 0.95
) -> Forecast | None:
    """The value forecast on day ``at`` from ``values`` observed on ``days``; ``None`` with
    fewer than :data:`MIN_POINTS` points or when every point falls on one day."""
    pairs = [(float(d), float(v)) for d, v in zip(days, values, strict=True) if math.isfinite(v)]
    n = len(pairs)
    if n < MIN_POINTS:
        return None
    mean_t = sum(d for d, _ in pairs) / n
    mean_y = sum(v for _, v in pairs) / n
    sxx = sum((d - mean_t) ** 2 for d, _ in pairs)
    if sxx == 0:
        return None
    slope = sum((d - mean_t) * (v - mean_y) for d, v in pairs) / sxx
    intercept = mean_y - slope * mean_t
    residual = sum((v - intercept - slope * d) ** 2 for d, v in pairs)
    s = math.sqrt(residual / (n - 2))
    estimate = intercept + slope * at
    half = (
        float(stats.t.ppf(0.5 + level / 2, n - 2))
        * s
        * math.sqrt(1 + 1 / n + (at - mean_t) ** 2 / sxx)
    )
    return Forecast(estimate, estimate - half, estimate + half, slope, n)


def progress(baseline: float, current: float, target: float) -> float | None:
    """The share of the way from ``baseline`` to ``target`` that ``current`` has come (may be
    negative, or above 1 once the target is passed); ``None`` when they coincide."""
    if target == baseline:
        return None
    return (current - baseline) / (target - baseline)
