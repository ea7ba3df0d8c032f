"""Alert rules, judged and tracked: the pure logic behind every alert Sextant raises.

Two steps, both free of I/O and of the wall clock:

1. A *judgement* of one window: a metric rule (``threshold``, ``relative_change``,
   ``anomaly``) looks at the metric's value over one closed event-time window; an experiment
   rule (``experiment_guardrail``, ``srm``) at the experiment's current results. The outcome
   is ``breach``, ``recovered`` (the recovery condition holds), ``hold`` (neither: inside the
   hysteresis band, too little volume, no baseline yet), ``no_data`` or ``error``.
2. :func:`advance` moves the rule's :class:`RuleState` through ok → pending → firing →
   resolved (plus ``no_data`` and ``error``) and returns the :class:`AlertTransition`, if the
   state changed.

Contracts a caller may rely on:

* A transition's id is a function of (project, rule, ``at``, from state, to state) only, so
  judging the same windows again (a replay, a restart, a second evaluator) yields the same
  ids, and consumers deduplicate on them.
* An *episode* starts when a rule leaves a quiet state (``ok``, ``resolved``) and ends when it
  returns to one; every transition carries its episode's id. ``firing`` is entered at most
  once per episode, so a team is paged once per episode, never once per window.
* While ``firing``, only the recovery condition (``recovery_windows`` times in a row) changes
  the state: missing data or a failing evaluation do not resolve an incident.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sextant.schemas.config import AlertRule, AlertRuleKind, Experiment, MetricKind
from sextant.schemas.records import AlertState, AlertTransition, MetricPoint
from sextant.schemas.sketches import hll_estimate, hll_merge_sparse

__all__ = [
    "METRIC_RULE_KINDS",
    "QUIET_STATES",
    "Clock",
    "EwmaBaseline",
    "ExperimentSnapshot",
    "Judgement",
    "MetricRuleEvaluator",
    "Outcome",
    "RuleState",
    "VariantResult",
    "WindowValues",
    "advance",
    "episode_id",
    "evaluate_experiment_rule",
    "judge_guardrail",
    "judge_srm",
    "merge_points",
    "metric_value",
    "resume",
    "seed_state",
    "transition_id",
    "utc_now",
    "window_floor",
]

Clock = Callable[[], datetime]
"""Where evaluators on a schedule get the time: injected, so tests never sleep."""

METRIC_RULE_KINDS = frozenset(
    {AlertRuleKind.THRESHOLD, AlertRuleKind.RELATIVE_CHANGE, AlertRuleKind.ANOMALY}
)
QUIET_STATES = frozenset({AlertState.OK, AlertState.RESOLVED})
_ADDITIVE = frozenset({MetricKind.COUNT, MetricKind.UNIQUE_USERS, MetricKind.SUM})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


def window_floor(at: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long window (aligned on the Unix epoch) holding ``at``."""
    elapsed = (at - _EPOCH) // timedelta(seconds=1)
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


# --- States, transitions, episodes --------------------------------------------------------


class Outcome(StrEnum):
    """What one judgement found."""

    BREACH = "breach"
    RECOVERED = "recovered"
    HOLD = "hold"
    NO_DATA = "no_data"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Judgement:
    """One window judged: the outcome, the value seen, the boundary it was held against."""

    outcome: Outcome
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RuleState:
    """A rule's state and the streaks that decide its next transition.

    ``breaches``, ``recoveries`` and ``missing`` count consecutive breaching, recovered and
    value-less windows; ``episode_id`` is the current (or, in a quiet state, the last) episode.
    """

    state: AlertState = AlertState.OK
    episode_id: str = ""
    since: datetime | None = None
    breaches: int = 0
    recoveries: int = 0
    missing: int = 0


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def transition_id(
    project_id: str, rule_id: str, at: datetime, from_state: AlertState, to_state: AlertState
) -> str:
    """The deterministic id of a transition: equal inputs, equal ids, on any machine."""
    return _digest("transition", project_id, rule_id, _stamp(at), from_state, to_state)


def episode_id(project_id: str, rule_id: str, started_at: datetime) -> str:
    """The deterministic id of the episode that started at ``started_at``."""
    return _digest("episode", project_id, rule_id, _stamp(started_at))


def _counted(state: RuleState, outcome: Outcome) -> RuleState:
    breaches = state.breaches + 1 if outcome is Outcome.BREACH else 0
    recoveries = state.recoveries + 1 if outcome is Outcome.RECOVERED else 0
    missing = state.missing + 1 if outcome is Outcome.NO_DATA else 0
    return RuleState(state.state, state.episode_id, state.since, breaches, recoveries, missing)


def _next_state(rule: AlertRule, counted: RuleState, outcome: Outcome) -> AlertState:
    current = counted.state
    if current is AlertState.FIRING:
        recovered = outcome is Outcome.RECOVERED and counted.recoveries >= rule.recovery_windows
        return AlertState.RESOLVED if recovered else AlertState.FIRING
    if outcome is Outcome.BREACH:
        return AlertState.FIRING if counted.breaches >= rule.pending_windows else AlertState.PENDING
    if outcome is Outcome.ERROR:
        return AlertState.ERROR
    if outcome is Outcome.NO_DATA and (
        current is AlertState.NO_DATA or counted.missing >= rule.no_data_windows
    ):
        return AlertState.NO_DATA
    # Not breaching: a pending streak is broken, and a value (or its absence) clears errors.
    return current if current in QUIET_STATES else AlertState.OK


def _episode_for(
    project_id: str, rule_id: str, state: RuleState, target: AlertState, at: datetime
) -> str:
    if target in QUIET_STATES:
        return state.episode_id  # the episode this transition closes
    if target is AlertState.FIRING and state.state is AlertState.PENDING:
        return state.episode_id
    return episode_id(project_id, rule_id, at)


def _message(rule: AlertRule, target: AlertState, detail: str) -> str:
    label = rule.name or rule.id
    return f"{label}: {target.value}" + (f" ({detail})" if detail else "")


def _transition(
    project_id: str,
    rule: AlertRule,
    state: RuleState,
    target: AlertState,
    judgement: Judgement,
    at: datetime,
) -> tuple[RuleState, AlertTransition]:
    episode = _episode_for(project_id, rule.id, state, target, at)
    moved = replace(state, state=target, episode_id=episode, since=at)
    transition = AlertTransition(
        transition_id=transition_id(project_id, rule.id, at, state.state, target),
        project_id=project_id,
        rule_id=rule.id,
        episode_id=episode,
        from_state=state.state,
        to_state=target,
        at=at,
        value=_finite(judgement.value),
        threshold=_finite(judgement.threshold),
        severity=rule.severity.value,
        message=_message(rule, target, judgement.detail),
    )
    return moved, transition


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def advance(
    project_id: str, rule: AlertRule, state: RuleState, judgement: Judgement, at: datetime
) -> tuple[RuleState, AlertTransition | None]:
    """The state after ``judgement`` of the window that ended at ``at``, and the transition
    (``None`` when the state stays). Pure: the same inputs give the same outputs."""
    counted = _counted(state, judgement.outcome)
    target = _next_state(rule, counted, judgement.outcome)
    if target is state.state:
        return counted, None
    return _transition(project_id, rule, counted, target, judgement, at)


def seed_state(recorded: AlertTransition | None) -> RuleState:
    """The state a rule resumes in, from the last transition recorded on the alerts topic."""
    if recorded is None:
        return RuleState()
    return RuleState(state=recorded.to_state, episode_id=recorded.episode_id, since=recorded.at)


def resume(
    project_id: str,
    rule: AlertRule,
    computed: RuleState,
    recorded: AlertTransition | None,
    at: datetime,
) -> tuple[RuleState, AlertTransition | None]:
    """Reconcile a state rebuilt silently (by replaying history) with the recorded one.

    The recorded state (the last transition on the alerts topic) is what consumers know. When
    the two agree (or both are quiet) nothing is emitted and the recorded episode continues;
    otherwise one transition, at ``at``, brings the recorded state to the computed one.
    """
    known = seed_state(recorded)
    same = known.state is computed.state
    if same or (known.state in QUIET_STATES and computed.state in QUIET_STATES):
        kept = replace(computed, state=known.state, episode_id=known.episode_id, since=known.since)
        return (kept if recorded is not None else computed), None
    target = computed.state
    if target in QUIET_STATES:
        target = AlertState.RESOLVED if known.state is AlertState.FIRING else AlertState.OK
    base = replace(computed, state=known.state, episode_id=known.episode_id, since=known.since)
    judgement = Judgement(Outcome.HOLD, detail="state recovered after a restart")
    return _transition(project_id, rule, base, target, judgement, at)


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


def _quantile(centroids: Sequence[tuple[float, float]], q: float) -> float | None:
    """Quantile of t-digest centroids, interpolating between centroid centres."""
    ordered = sorted((mean, weight) for mean, weight in centroids if weight > 0)
    total = math.fsum(w for _, w in ordered)
    if not ordered:
        return None
    target, cumulative = q * total, 0.0
    previous: tuple[float, float] | None = None  # (centre, mean)
    for mean, weight in ordered:
        centre = cumulative + weight / 2
        if target <= centre:
            if previous is None or centre == previous[0]:
                return mean
            share = (target - previous[0]) / (centre - previous[0])
            return previous[1] + share * (mean - previous[1])
        previous, cumulative = (centre, mean), cumulative + weight
    return ordered[-1][0]


def metric_value(
    kind: MetricKind, values: WindowValues, quantile: float = 0.5
) -> tuple[float | None, float]:
    """(value, volume) of a window. Additive metrics read an empty window as 0 (no events is a
    count of zero, the broken-checkout case); ratios and distributions as ``None``."""
    if kind is MetricKind.COUNT:
        return float(values.count), float(values.count)
    if kind is MetricKind.SUM:
        return values.sum, float(values.count)
    if kind is MetricKind.UNIQUE_USERS:
        users = hll_estimate(values.hll) if values.hll else float(values.count)
        return users, users
    if kind is MetricKind.MEAN:
        return (values.sum / values.count if values.count else None), float(values.count)
    if kind is MetricKind.PERCENTILES:
        return _quantile(values.digest, quantile), float(values.count)
    rate = values.count / values.denominator if values.denominator else None
    return rate, float(values.denominator)


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


def _badness(direction: str, signed: float) -> float:
    """How far ``signed`` lies on the rule's bad side (negative: on the good side)."""
    if direction == "below":
        return -signed
    if direction == "above":
        return signed
    return abs(signed)


def _bound(direction: str, centre: float, spread: float, signed: float) -> float:
    below = direction == "below" or (direction == "either" and signed < 0)
    return centre - spread if below else centre + spread


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
            _badness(rule.direction, value - limit),
            _badness(rule.direction, value - recovery),
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
        boundary = _bound(rule.direction, baseline, abs(baseline) * limit / 100, change)
        detail = f"{rule.metric} = {value:.6g}, {change:+.1f}% against {baseline:.6g}"
        bad = _badness(rule.direction, change)
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
        boundary = _bound(rule.direction, ewma.mean, k * sd, z)
        detail = f"{rule.metric} = {value:.6g}, z = {z:+.2f} against {ewma.mean:.6g} ± {sd:.3g}"
        bad = _badness(rule.direction, z)
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


# --- Experiment rules ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One metric in one treatment variant against control: the relative lift and its
    always-valid (sequential) interval, valid at whatever time it is looked at."""

    metric: str
    variant: str
    units: int
    relative_lift: float
    interval_low: float
    interval_high: float


@dataclass(frozen=True, slots=True)
class ExperimentSnapshot:
    """An experiment's results as experiment rules need them."""

    experiment: str
    control: str
    srm_checked: bool
    srm_flagged: bool
    srm_p_value: float
    results: tuple[VariantResult, ...] = ()


def _running(experiment: Experiment, at: datetime) -> bool:
    started = experiment.start is None or experiment.start <= at
    return started and (experiment.stop is None or at < experiment.stop)


def _regression(rule: AlertRule, result: VariantResult) -> tuple[float, bool]:
    """(how large the regression is, whether the interval excludes zero on the bad side)."""
    bad = _badness(rule.direction, result.relative_lift)
    if rule.direction == "below":
        significant = result.interval_high < 0
    elif rule.direction == "above":
        significant = result.interval_low > 0
    else:
        significant = result.interval_high < 0 or result.interval_low > 0
    return bad, significant


def judge_guardrail(
    rule: AlertRule, experiment: Experiment, snapshot: ExperimentSnapshot
) -> Judgement:
    """A guardrail metric worse in some variant, by more than ``min_effect`` (relative lift,
    e.g. 0.02 = 2 %) AND significantly so on the always-valid interval. Suppressed (``hold``)
    while the experiment fails its SRM check: its results cannot be trusted then.

    ``direction`` names the bad direction of the metric: ``below`` when a drop hurts."""
    if snapshot.srm_flagged:
        return Judgement(Outcome.HOLD, detail="suppressed: the experiment fails its SRM check")
    metrics = {rule.metric} if rule.metric else set(experiment.guardrail_metrics)
    if not metrics:
        return Judgement(Outcome.ERROR, detail="the experiment has no guardrail metric")
    judged = [
        r
        for r in snapshot.results
        if r.metric in metrics
        and r.variant != snapshot.control
        and r.units >= experiment.min_sample_per_variant
        and math.isfinite(r.relative_lift)
    ]
    if not judged:
        return Judgement(Outcome.HOLD, detail="too few units to judge yet")
    assessed = [(r, *_regression(rule, r)) for r in judged]
    breaching = [
        (r, bad) for r, bad, significant in assessed if significant and bad >= rule.min_effect
    ]
    worst, _ = max(breaching or [(r, bad) for r, bad, _ in assessed], key=lambda item: item[1])
    threshold = rule.min_effect if rule.direction == "above" else -rule.min_effect
    detail = (
        f"{worst.metric} in {worst.variant}: {worst.relative_lift:+.2%}, always-valid interval "
        f"[{worst.interval_low:+.2%}, {worst.interval_high:+.2%}]"
    )
    if breaching:
        return Judgement(Outcome.BREACH, worst.relative_lift, threshold, detail)
    # Significantly worse but by less than the minimum effect: not healthy either.
    smaller = any(significant and bad > 0 for _, bad, significant in assessed)
    outcome = Outcome.HOLD if smaller else Outcome.RECOVERED
    return Judgement(outcome, worst.relative_lift, threshold, detail)


def judge_srm(snapshot: ExperimentSnapshot) -> Judgement:
    """Sample-ratio mismatch: the units split unlike the configured weights (p < 0.001)."""
    detail = f"SRM p = {snapshot.srm_p_value:.2g}"
    if not snapshot.srm_checked:
        return Judgement(Outcome.HOLD, snapshot.srm_p_value, 0.001, "too few units to check")
    outcome = Outcome.BREACH if snapshot.srm_flagged else Outcome.RECOVERED
    return Judgement(outcome, snapshot.srm_p_value, 0.001, detail)


def _judge_experiment(
    rule: AlertRule,
    experiment: Experiment | None,
    snapshot: ExperimentSnapshot | Exception | None,
    at: datetime,
) -> Judgement:
    if experiment is None:
        return Judgement(Outcome.ERROR, detail=f"experiment '{rule.experiment}' is not defined")
    if not _running(experiment, at):
        return Judgement(Outcome.RECOVERED, detail="the experiment is not running")
    if isinstance(snapshot, Exception):
        return Judgement(Outcome.ERROR, detail=f"results unavailable: {snapshot}")
    if snapshot is None:
        return Judgement(Outcome.NO_DATA, detail="no results yet")
    if rule.rule_kind is AlertRuleKind.SRM:
        return judge_srm(snapshot)
    if rule.rule_kind is AlertRuleKind.EXPERIMENT_GUARDRAIL:
        return judge_guardrail(rule, experiment, snapshot)
    return Judgement(Outcome.ERROR, detail=f"{rule.rule_kind} is not an experiment rule")


def evaluate_experiment_rule(
    project_id: str,
    rule: AlertRule,
    state: RuleState,
    experiment: Experiment | None,
    snapshot: ExperimentSnapshot | Exception | None,
    at: datetime,
) -> tuple[RuleState, AlertTransition | None]:
    """Judge an experiment rule on the results as of ``at`` (an exception: they could not be
    computed) and advance its state."""
    judgement = _judge_experiment(rule, experiment, snapshot, at)
    return advance(project_id, rule, state, judgement, at)
