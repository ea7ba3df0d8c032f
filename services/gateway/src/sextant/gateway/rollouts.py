"""Safe rollouts: Sextant switches a harmful experiment rule off itself, and ramps coverage.

* :func:`stop_on_alerts`: when an experiment's guardrail or sample-ratio rule fires, every
  feature rule of that experiment with ``auto_stop`` is switched off (``enabled: false``, and
  ``stopped_reason`` says which alert and why) as the feature's next version, written by
  ``sextant`` through the config plane: every SDK serves what the rules below it (or the
  default) give within seconds, and the history shows it. The transition's message says what
  was switched off, so the webhook tells the team what happened and why.
* :func:`ramp_changes`: a rule's ``ramp`` (steps of time and coverage) raises its coverage to
  the step in force, one version per step, and stops there: a rule switched off (by a
  guardrail or by hand) is never raised again, and an experiment rule is not raised while one
  of its experiment's alert rules is firing.

:class:`RampService` runs the ramps on a schedule in the gateway; the experiment alert service
calls :func:`stop_on_alerts` before it publishes the transitions it judged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from sextant.core.background import BackgroundLoop
from sextant.core.config_plane import ConfigState
from sextant.core.feature_versions import versioned
from sextant.core.logging import get_logger
from sextant.schemas.config import (
    AlertRule,
    AlertRuleKind,
    ConfigDocument,
    ExperimentRule,
    Feature,
    FeatureEnvironment,
    RampStep,
    RolloutRule,
)
from sextant.schemas.records import AlertState, AlertTransition

__all__ = ["SEXTANT", "RampService", "ramp_changes", "stop_on_alerts"]

log = get_logger(__name__)
SEXTANT = "sextant"
"""Who the history names for the changes Sextant makes itself."""
GUARD_KINDS = frozenset({AlertRuleKind.EXPERIMENT_GUARDRAIL, AlertRuleKind.SRM})
Commit = Callable[[Sequence[ConfigDocument]], None]


def _replace_rule(
    feature: Feature, env: str, index: int, rule: ExperimentRule | RolloutRule
) -> Feature:
    settings = feature.environments[env]
    rules = list(settings.rules)
    rules[index] = rule
    environments = feature.environments | {
        env: FeatureEnvironment(enabled=settings.enabled, rules=rules)
    }
    return feature.model_copy(update={"environments": environments})


def stop_on_alerts(
    state: ConfigState,
    transitions: Sequence[AlertTransition],
    commit: Commit,
    now: datetime,
) -> list[AlertTransition]:
    """Switch off the feature rules of every experiment whose guardrail or SRM rule fires in
    ``transitions``; the transitions, their messages saying what was switched off."""
    out: list[AlertTransition] = []
    for transition in transitions:
        rule = state.get(f"alert_rule:{transition.project_id}:{transition.rule_id}")
        if (
            transition.to_state is not AlertState.FIRING
            or not isinstance(rule, AlertRule)
            or rule.rule_kind not in GUARD_KINDS
            or rule.experiment is None
        ):
            out.append(transition)
            continue
        actions = _switch_off(state, rule, transition, commit, now)
        if actions:
            transition = transition.model_copy(
                update={"message": f"{transition.message} Sextant {'; '.join(actions)}."}
            )
        out.append(transition)
    return out


def _switch_off(
    state: ConfigState,
    rule: AlertRule,
    transition: AlertTransition,
    commit: Commit,
    now: datetime,
) -> list[str]:
    reason = (
        f"alert rule {rule.id!r} ({rule.rule_kind.value}) fired at {transition.at.isoformat()}: "
        f"{transition.message}"
    )[:1000]
    actions: list[str] = []
    for feature in sorted(state.features(rule.project_id), key=lambda f: f.id):
        changed = feature
        switched: list[str] = []
        for env, settings in sorted(feature.environments.items()):
            for index, candidate in enumerate(settings.rules):
                if (
                    isinstance(candidate, ExperimentRule)
                    and candidate.experiment == rule.experiment
                    and candidate.auto_stop
                    and candidate.enabled
                ):
                    stopped = candidate.model_copy(
                        update={"enabled": False, "stopped_reason": reason}
                    )
                    changed = _replace_rule(changed, env, index, stopped)
                    switched.append(f"rule {candidate.id!r} of feature {feature.id!r} in {env}")
        if not switched:
            continue
        documents = versioned(
            state,
            [changed],
            by=SEXTANT,
            comment=f"guardrail: alert rule {rule.id!r} fired",
            now=now,
        )
        commit(documents)
        version = next(d.version for d in documents if isinstance(d, Feature))
        actions.append(f"switched off {', '.join(switched)} (version {version})")
        log.warning(
            "guardrail switched feature rules off",
            alert_rule=rule.id,
            feature=feature.id,
            rules=switched,
        )
    return actions


def _target(steps: Sequence[RampStep], now: datetime) -> float | None:
    due = [s for s in steps if s.at <= now]
    return due[-1].coverage if due else None


def ramp_changes(
    state: ConfigState, now: datetime, firing_experiments: Collection[tuple[str, str]]
) -> list[tuple[Feature, list[str]]]:
    """Features whose ramps move now: (the feature with the new coverages, what moved).
    ``firing_experiments`` holds (project, experiment) pairs with an alert rule firing."""
    moved: list[tuple[Feature, list[str]]] = []
    for feature in sorted(state.features(), key=lambda f: (f.project_id, f.id)):
        changed = feature
        notes: list[str] = []
        for env, settings in sorted(feature.environments.items()):
            for index, rule in enumerate(settings.rules):
                if not isinstance(rule, RolloutRule | ExperimentRule) or not rule.ramp:
                    continue
                if not rule.enabled or rule.stopped_reason:
                    continue
                if (
                    isinstance(rule, ExperimentRule)
                    and (feature.project_id, rule.experiment) in firing_experiments
                ):
                    continue
                target = _target(rule.ramp, now)
                current = rule.coverage
                if target is None or (current is not None and target <= current):
                    continue
                changed = _replace_rule(
                    changed, env, index, rule.model_copy(update={"coverage": target})
                )
                was = "the experiment's" if current is None else f"{current:.0%}"
                notes.append(f"{env}: rule {rule.id!r} {was} → {target:.0%}")
        if notes:
            moved.append((changed, notes))
    return moved


class RampService(BackgroundLoop):
    """Raises ramped coverages on schedule (a background loop of the gateway)."""

    name = "ramps"

    def __init__(
        self,
        state: ConfigState,
        commit: Commit,
        firing: Callable[[], Collection[tuple[str, str]]],
        *,
        config_ready: Callable[[], bool] = lambda: True,
        interval_s: float = 15.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(retry_initial_s=interval_s, retry_max_s=interval_s)
        self.state = state
        self.commit = commit
        self.firing = firing
        self.config_ready = config_ready
        self.interval_s = interval_s
        self.clock = clock

    def ready(self) -> bool:
        return self.alive

    def tick(self) -> list[tuple[Feature, list[str]]]:
        """Move every ramp that is due; what moved."""
        now = self.clock()
        moved = ramp_changes(self.state, now, self.firing())
        for feature, notes in moved:
            documents = versioned(
                self.state, [feature], by=SEXTANT, comment="ramp: " + "; ".join(notes), now=now
            )
            self.commit(documents)
            log.info("ramp raised coverage", feature=feature.id, changes=notes)
        return moved

    def session(self) -> None:
        """A round every ``interval_s`` once the config plane has caught up; a failed round
        is tried again after ``interval_s``."""
        self.connected()
        while not self.stopping.is_set():
            if self.config_ready():
                self.tick()
            self.wait(self.interval_s)
