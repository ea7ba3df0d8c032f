"""Metric alert rules (``threshold``, ``relative_change``, ``anomaly``): how one closed
window of a metric is judged. No I/O: :mod:`sextant.processor.alerting` feeds them the
metric's points as windows close; :mod:`sextant.core.alerting` moves their states.

A window's value is the metric's value as the dashboard shows it
(:func:`sextant.schemas.metric_values.metric_value`): the rules judge the number the teams see.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sextant.core.alerting import Judgement, Outcome, RuleState, advance, badness, bound
from sextant.schemas.config import AlertRule, AlertRuleKind, MetricKind
from sextant.schemas.metric_values import Components, metric_volume, unique_users_of
from sextant.schemas.metric_values import metric_value as value_of
from sextant.schemas.records import AlertTransition, MetricPoint
from sextant.schemas.sketches import hll_merge_sparse

__all__ = [
    "EwmaBaseline",
    "MetricRuleEvaluator",
    "WindowValues",
    "merge_points",
    "metric_value",
    "select_breakdown",
]


# --- Metric values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowValues:
    """A metric's additive components over one evaluation window (its points merged)."""

    points: int = 0
    count: int = 0
    sum: float = 0.0
    sum_sq: float = 0.0
    denominator: int = 0
    hll: tuple[int, ...] = ()
    """Sparse HyperLogLog registers (``sextant.schemas.sketches``)."""
    digest: tuple[tuple[float, float], ...] = ()

    def components(self) -> Components:
        return Components(
            count=self.count,
            sum=self.sum,
            denominator=self.denominator,
            users=unique_users_of(self.count, self.hll),
            centroids=self.digest,
        )


def select_breakdown(points: Iterable[MetricPoint], breakdown: str | None) -> list[MetricPoint]:
    """The points a rule judges: one breakdown value, or (``None``) the metric's total.

    The total is the points without a breakdown value when the window has any, else the union
    of all breakdown values (their components add up; sketches merge).
    """
    chosen = list(points)
    if breakdown is not None:
        return [p for p in chosen if p.breakdown == breakdown]
    totals = [p for p in chosen if p.breakdown == ""]
    return totals or chosen


def merge_points(points: Iterable[MetricPoint]) -> WindowValues:
    """Add counts and sums, merge HyperLogLog registers (maximum) and digests (union)."""
    n = count = denominator = 0
    total = total_sq = 0.0
    sketches: list[list[int]] = []
    centroids: list[tuple[float, float]] = []
    for p in points:
        n += 1
        count += p.count
        total += p.sum
        total_sq += p.sum_sq
        denominator += p.denominator
        if p.hll:
            sketches.append(p.hll)
        centroids.extend(p.digest)
    registers = tuple(hll_merge_sparse(*sketches))
    return WindowValues(n, count, total, total_sq, denominator, registers, tuple(centroids))


def metric_value(
    kind: MetricKind, values: WindowValues, quantile: float = 0.5
) -> tuple[float | None, float]:
    """(value, volume) of a window, as :mod:`sextant.schemas.metric_values` defines them:
    an empty window is 0 for counts, sums and unique users (no events is a count of zero, the
    broken-checkout case), no value for ratios and distributions."""
    components = values.components()
    return value_of(kind, components, quantile), metric_volume(kind, components)


# --- Metric rules -------------------------------------------------------------------------


@dataclass
class EwmaBaseline:
    """Trailing exponentially weighted mean and variance of a series.

    The first ``warmup`` values give a plain mean and sample variance (Welford), so the
    variance does not start at zero; from then on each value moves the mean by ``alpha`` of its
    deviation and the variance by the matching exponentially weighted update.
    """

    alpha: float
    warmup: int
    n: int = 0
    mean: float = 0.0
    variance: float = 0.0
    _m2: float = 0.0

    @property
    def ready(self) -> bool:
        return self.n >= self.warmup

    @property
    def sd(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def update(self, x: float) -> None:
        if self.n < self.warmup:
            self.n += 1
            delta = x - self.mean
            self.mean += delta / self.n
            self._m2 += delta * (x - self.mean)
            if self.n == self.warmup:
                self.variance = self._m2 / (self.n - 1) if self.n > 1 else 0.0
            return
        self.n += 1
        delta = x - self.mean
        increment = self.alpha * delta
        self.mean += increment
        self.variance = (1 - self.alpha) * (self.variance + delta * increment)


def _sampling_sd(kind: MetricKind, mean: float, volume: float) -> float:
    """The noise a window of ``volume`` carries by counting alone: binomial for a conversion
    rate, Poisson for a count. A floor under the EWMA deviation, so a series that happened to
    be flat does not page on the first ordinary wobble."""
    if kind is MetricKind.CONVERSION and volume > 0:
        p = min(max(mean, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / volume)
    if kind in (MetricKind.COUNT, MetricKind.UNIQUE_USERS):
        return math.sqrt(max(mean, 1.0))
    return 0.0


class MetricRuleEvaluator:
    """Judges one metric rule over consecutive closed windows and tracks its state.

    Call :meth:`close` once per evaluation window, in event-time order, with the newest
    version of every point inside the window. The evaluator keeps what the rule kind needs:
    the values of the last week (``relative_change`` against a day or a week), the trailing
    values, or the EWMA (``anomaly``).
    """

    def __init__(
        self,
        project_id: str,
        rule: AlertRule,
        metric_kind: MetricKind | None,
        state: RuleState | None = None,
    ) -> None:
        self.project_id = project_id
        self.rule = rule
        self.metric_kind = metric_kind
        self.state = state or RuleState()
        self.window = timedelta(minutes=rule.evaluation_window_minutes)
        self._history: dict[datetime, float] = {}
        self._trailing: deque[float] = deque(maxlen=rule.baseline_windows)
        self._ewma = EwmaBaseline(rule.ewma_alpha, max(2, rule.baseline_windows))
        self._breaching_run = 0

    def close(
        self, window_start: datetime, points: Iterable[MetricPoint]
    ) -> AlertTransition | None:
        """Judge the window starting at ``window_start``; the transition it causes, if any."""
        judgement = self.judge(window_start, points)
        at = window_start + self.window
        self.state, transition = advance(self.project_id, self.rule, self.state, judgement, at)
        return transition

    def judge(self, window_start: datetime, points: Iterable[MetricPoint]) -> Judgement:
        """Judge one window (and remember its value for later baselines)."""
        if self.metric_kind is None:
            return Judgement(Outcome.ERROR, detail=f"metric '{self.rule.metric}' is not defined")
        chosen = select_breakdown(points, self.rule.breakdown)
        value, volume = metric_value(self.metric_kind, merge_points(chosen), self.rule.quantile)
        if value is None:
            return Judgement(Outcome.NO_DATA, detail="no value in this window")
        try:
            if self.rule.rule_kind is AlertRuleKind.THRESHOLD:
                return self._threshold(value, volume)
            if self.rule.rule_kind is AlertRuleKind.RELATIVE_CHANGE:
                return self._relative_change(window_start, value, volume)
            if self.rule.rule_kind is AlertRuleKind.ANOMALY:
                return self._anomaly(value, volume)
            return Judgement(Outcome.ERROR, detail=f"{self.rule.rule_kind} is not a metric rule")
        except (ArithmeticError, ValueError) as error:
            return Judgement(Outcome.ERROR, value, detail=f"evaluation failed: {error}")
        finally:
            self._remember(window_start, value)

    def _remember(self, window_start: datetime, value: float) -> None:
        if self.rule.rule_kind is not AlertRuleKind.RELATIVE_CHANGE:
            return
        self._trailing.append(value)
        if self.rule.baseline != "trailing":
            self._history[window_start] = value
            horizon = window_start - timedelta(days=7 if self.rule.baseline == "week" else 1)
            for old in [t for t in self._history if t < horizon]:
                del self._history[old]

    def _low_volume(self, value: float, volume: float) -> Judgement | None:
        if volume < self.rule.min_volume:
            detail = f"volume {volume:g} below the minimum {self.rule.min_volume}"
            return Judgement(Outcome.HOLD, value, detail=detail)
        return None

    def _threshold(self, value: float, volume: float) -> Judgement:
        rule = self.rule
        assert rule.threshold is not None  # the model requires it for this kind
        quiet = self._low_volume(value, volume)
        if quiet is not None:
            return quiet
        limit = rule.threshold
        recovery = limit if rule.recovery_threshold is None else rule.recovery_threshold
        bad, healthy = (
            badness(rule.direction, value - limit),
            badness(rule.direction, value - recovery),
        )
        detail = f"{rule.metric} = {value:.6g}, {rule.direction} {limit:g}"
        if bad > 0:
            return Judgement(Outcome.BREACH, value, limit, detail)
        outcome = Outcome.RECOVERED if healthy <= 0 else Outcome.HOLD
        return Judgement(outcome, value, limit, detail)

    def _baseline(self, window_start: datetime) -> float | None:
        if self.rule.baseline == "trailing":
            full = len(self._trailing) == self._trailing.maxlen
            return math.fsum(self._trailing) / len(self._trailing) if full else None
        back = timedelta(days=7 if self.rule.baseline == "week" else 1)
        return self._history.get(window_start - back)

    def _relative_change(self, window_start: datetime, value: float, volume: float) -> Judgement:
        rule = self.rule
        assert rule.change_percent is not None  # the model requires it for this kind
        baseline = self._baseline(window_start)
        if baseline is None:
            return Judgement(Outcome.HOLD, value, detail=f"no {rule.baseline} baseline yet")
        quiet = self._low_volume(value, volume)
        if quiet is not None:
            return quiet
        if baseline == 0:
            return Judgement(Outcome.HOLD, value, detail="the baseline is zero")
        change = (value - baseline) / abs(baseline) * 100
        limit = rule.change_percent
        recovery = limit if rule.recovery_percent is None else rule.recovery_percent
        boundary = bound(rule.direction, baseline, abs(baseline) * limit / 100, change)
        detail = f"{rule.metric} = {value:.6g}, {change:+.1f}% against {baseline:.6g}"
        bad = badness(rule.direction, change)
        if bad >= limit:
            return Judgement(Outcome.BREACH, value, boundary, detail)
        outcome = Outcome.RECOVERED if bad < recovery else Outcome.HOLD
        return Judgement(outcome, value, boundary, detail)

    def _anomaly(self, value: float, volume: float) -> Judgement:
        rule, ewma = self.rule, self._ewma
        quiet = self._low_volume(value, volume)
        if quiet is not None:
            return quiet  # quiet windows neither page nor teach the baseline
        if not ewma.ready:
            ewma.update(value)
            return Judgement(Outcome.HOLD, value, detail="learning the baseline")
        assert self.metric_kind is not None
        floor = max(_sampling_sd(self.metric_kind, ewma.mean, volume), 1e-9 * abs(ewma.mean))
        sd = max(ewma.sd, floor, 1e-12)
        z = (value - ewma.mean) / sd
        k = rule.k_sigma
        recovery = k if rule.recovery_k_sigma is None else rule.recovery_k_sigma
        boundary = bound(rule.direction, ewma.mean, k * sd, z)
        detail = f"{rule.metric} = {value:.6g}, z = {z:+.2f} against {ewma.mean:.6g} ± {sd:.3g}"
        bad = badness(rule.direction, z)
        if bad >= k:
            self._learn_from_breach(value)
            return Judgement(Outcome.BREACH, value, boundary, detail)
        self._breaching_run = 0
        # In the band between recovery and breach, values teach the baseline only up to the
        # boundary, so a slow slide cannot drag the baseline along with it.
        ewma.update(min(max(value, ewma.mean - k * sd), ewma.mean + k * sd))
        outcome = Outcome.RECOVERED if bad < recovery else Outcome.HOLD
        return Judgement(outcome, value, boundary, detail)

    def _learn_from_breach(self, value: float) -> None:
        """Breaching values do not move the baseline, so a sustained drop keeps firing; after
        ``baseline_windows`` of them in a row the new level is learnt afresh as the normal."""
        self._breaching_run += 1
        if self._breaching_run >= self.rule.baseline_windows:
            self._ewma = EwmaBaseline(self.rule.ewma_alpha, self._ewma.warmup)
            self._ewma.update(value)
            self._breaching_run = 0
