"""The outcome board: each outcome's value, trend, progress to target and forecast, and the
experiments and features that aim at it.

Values are the metric's daily values from the events table
(:func:`sextant.gateway.event_metrics.metric_values`) since the outcome's ``start_date`` (at
most a year back). The forecast is :func:`sextant.gateway.forecast.linear_forecast` over the
complete days (today is left out of the fit for counts and sums, whose day is not over).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from sextant.gateway import forecast
from sextant.gateway.context import Gateway
from sextant.gateway.event_metrics import metric_values
from sextant.gateway.series import Interval
from sextant.schemas.config import (
    Experiment,
    ExperimentRule,
    Feature,
    MetricDefinition,
    MetricKind,
    Outcome,
    OutcomeDirection,
)

MAX_DAYS = 366
BASELINE_DAYS = 7
_BOUNDS: dict[MetricKind, tuple[float, float]] = {
    MetricKind.CONVERSION: (0.0, 1.0),
    MetricKind.CSAT: (0.0, 1.0),
    MetricKind.NPS: (-100.0, 100.0),
    MetricKind.COUNT: (0.0, math.inf),
    MetricKind.UNIQUE_USERS: (0.0, math.inf),
}
"""What a metric's value can be: a forecast (and its interval) is kept within it."""
_PARTIAL_TODAY = (MetricKind.COUNT, MetricKind.UNIQUE_USERS, MetricKind.SUM)
Status = Literal["achieved", "on_track", "off_track", "no_forecast", "no_data"]


class DayValue(BaseModel):
    t: datetime
    value: float | None


class ForecastOut(BaseModel):
    at: date
    estimate: float
    low: float
    high: float
    slope_per_day: float
    points: int
    method: str


class Aiming(BaseModel):
    id: str
    name: str
    role: Literal["primary", "guardrail", "feature"]
    experiment: str | None = None


class OutcomeView(BaseModel):
    outcome: Outcome
    metric_name: str
    metric_kind: MetricKind | None
    current: float | None = Field(description="The latest day's value (today so far)")
    baseline: float | None
    progress: float | None = Field(description="0 at the baseline, 1 at the target")
    status: Status
    forecast: ForecastOut | None
    days: list[DayValue]
    experiments: list[Aiming]
    features: list[Aiming]


def _meets(direction: OutcomeDirection, value: float, target: float) -> bool:
    return value >= target if direction is OutcomeDirection.INCREASE else value <= target


def _aiming(
    outcome: Outcome, experiments: list[Experiment], features: list[Feature]
) -> tuple[list[Aiming], list[Aiming]]:
    aimed: list[Aiming] = []
    for e in sorted(experiments, key=lambda e: e.id):
        if e.primary_metric == outcome.metric:
            aimed.append(Aiming(id=e.id, name=e.name or e.id, role="primary"))
        elif outcome.metric in e.guardrail_metrics:
            aimed.append(Aiming(id=e.id, name=e.name or e.id, role="guardrail"))
    ids = {a.id for a in aimed}
    found: list[Aiming] = []
    for f in sorted(features, key=lambda f: f.id):
        for environment in f.environments.values():
            rule = next(
                (
                    r
                    for r in environment.rules
                    if isinstance(r, ExperimentRule) and r.experiment in ids
                ),
                None,
            )
            if rule is not None:
                found.append(Aiming(id=f.id, name=f.id, role="feature", experiment=rule.experiment))
                break
    return aimed, found


def outcome_view(
    gateway: Gateway,
    project_id: str,
    outcome: Outcome,
    metric: MetricDefinition | None,
    experiments: list[Experiment],
    features: list[Feature],
    now: datetime,
) -> OutcomeView:
    aimed, aimed_features = _aiming(outcome, experiments, features)
    days: list[tuple[datetime, float | None]] = []
    if metric is not None:
        today = datetime.combine(now.date(), time(), UTC)
        start = max(
            datetime.combine(outcome.start_date, time(), UTC), today - timedelta(days=MAX_DAYS)
        )
        if start <= today:
            days = metric_values(
                gateway, project_id, metric, start, today + timedelta(days=1), Interval.DAY
            )
    known = [(t, v) for t, v in days if v is not None]
    current = known[-1][1] if known else None
    # Without a stated baseline: the mean of the first week's values (a single day is noisy).
    first_week = [v for t, v in known if t < known[0][0] + timedelta(days=BASELINE_DAYS)]
    baseline = (
        outcome.baseline
        if outcome.baseline is not None
        else (sum(first_week) / len(first_week) if first_week else None)
    )
    progress = (
        forecast.progress(baseline, current, outcome.target)
        if baseline is not None and current is not None
        else None
    )
    fit = known
    if metric is not None and metric.metric_kind in _PARTIAL_TODAY:
        fit = [(t, v) for t, v in known if t.date() < now.date()]
    origin = datetime.combine(outcome.start_date, time(), UTC)
    predicted = forecast.linear_forecast(
        [(t - origin).total_seconds() / 86_400 for t, _ in fit],
        [v for _, v in fit],
        (datetime.combine(outcome.target_date, time(), UTC) - origin).total_seconds() / 86_400,
    )
    if predicted is not None and metric is not None and metric.metric_kind in _BOUNDS:
        low, high = _BOUNDS[metric.metric_kind]
        predicted = forecast.Forecast(
            min(high, max(low, predicted.estimate)),
            min(high, max(low, predicted.low)),
            min(high, max(low, predicted.high)),
            predicted.slope_per_day,
            predicted.points,
            predicted.method + f"; kept within {low:g} to {high:g}",
        )
    status: Status
    if current is None:
        status = "no_data"
    elif _meets(outcome.direction, current, outcome.target):
        status = "achieved"
    elif predicted is None:
        status = "no_forecast"
    elif _meets(outcome.direction, predicted.estimate, outcome.target):
        status = "on_track"
    else:
        status = "off_track"
    return OutcomeView(
        outcome=outcome,
        metric_name=(metric.name or metric.id) if metric else outcome.metric,
        metric_kind=metric.metric_kind if metric else None,
        current=current,
        baseline=baseline,
        progress=progress,
        status=status,
        forecast=(
            ForecastOut(
                at=outcome.target_date,
                estimate=predicted.estimate,
                low=predicted.low,
                high=predicted.high,
                slope_per_day=predicted.slope_per_day,
                points=predicted.points,
                method=predicted.method,
            )
            if predicted
            else None
        ),
        days=[DayValue(t=t, value=v) for t, v in days],
        experiments=aimed,
        features=aimed_features,
    )
