"""Experiment alert rules (``experiment_guardrail``, ``srm``): how an experiment's results
are judged. No I/O: :mod:`sextant.gateway.experiment_alerts` runs them on a schedule with the
results the experiment results endpoint computes; :mod:`sextant.core.alerting` moves their
states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sextant.core.alerting import Judgement, Outcome, RuleState, advance, badness
from sextant.schemas.config import AlertRule, AlertRuleKind, Experiment
from sextant.schemas.records import AlertTransition

__all__ = [
    "ExperimentSnapshot",
    "VariantResult",
    "evaluate_experiment_rule",
    "judge_guardrail",
    "judge_srm",
]


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
    bad = badness(rule.direction, result.relative_lift)
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
