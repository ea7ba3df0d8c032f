"""Experiment alert rules (``experiment_guardrail``, ``srm``), evaluated on a schedule.

:class:`ExperimentAlertService` is a ``BackgroundService``: every ``interval_s`` it judges each
experiment rule whose evaluation window has moved on (one judgement per rule per window of
``evaluation_window_minutes``, aligned on the clock), with results from a callable, and writes
the transitions to the ``alerts`` topic. It depends only on that callable, not on how results
are computed; :func:`warehouse_results` is the one the gateway uses (the warehouse, as the
experiment results endpoint computes them).

A transition is stamped with the start of its window, so its id is deterministic; rule states
resume from the last transition recorded on the alerts topic, so a restart neither repeats a
transition nor forgets an open episode. A state is kept only once its transition is on the
topic: a failed publish is retried at the next tick.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime

from sextant.core.alert_log import AlertPublisher, RuleKey, read_recorded
from sextant.core.alerting import Clock, RuleState, seed_state, utc_now, window_floor
from sextant.core.background import BackgroundLoop
from sextant.core.config_plane import ConfigState
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.core.settings import KafkaSection
from sextant.gateway.context import Gateway
from sextant.gateway.experiment_rules import (
    ExperimentSnapshot,
    VariantResult,
    evaluate_experiment_rule,
)
from sextant.gateway.experiments import ExperimentResults, experiment_results
from sextant.schemas.config import EXPERIMENT_RULE_KINDS, AlertRule, Experiment
from sextant.schemas.records import AlertState, AlertTransition

__all__ = [
    "ExperimentAlertService",
    "ResultsProvider",
    "snapshot_from_results",
    "warehouse_results",
]

log = get_logger(__name__)

Judged = tuple[RuleKey, datetime, RuleState, AlertTransition | None]
"""A rule, the window judged, its state after, and the transition (if the state changed)."""

ResultsProvider = Callable[[str, Experiment], ExperimentSnapshot | None]
"""(project_id, experiment) → the experiment's results now, or ``None`` while there are none.
It may raise: the rule then goes to ``error``."""


def snapshot_from_results(experiment: Experiment, results: ExperimentResults) -> ExperimentSnapshot:
    """The experiment results endpoint's answer, as experiment rules read it."""
    units = {v.id: v.units for v in results.variants}
    control = experiment.variants[0].id
    found: list[VariantResult] = []
    for metric in results.metrics:
        for comparison in metric.comparisons:
            lift = comparison.relative.estimate
            low = comparison.always_valid_relative.low
            high = comparison.always_valid_relative.high
            if lift is None or low is None or high is None:
                continue
            arms = min(units.get(comparison.variant, 0), units.get(control, 0))
            found.append(VariantResult(metric.metric, comparison.variant, arms, lift, low, high))
    p_value = results.srm.p_value
    return ExperimentSnapshot(
        experiment=experiment.id,
        control=control,
        srm_checked=results.srm.checked,
        srm_flagged=results.srm.flagged,
        srm_p_value=math.nan if p_value is None else p_value,
        results=tuple(found),
    )


def warehouse_results(gateway: Gateway) -> ResultsProvider:
    """Results from the warehouse, exactly as ``GET /v1/experiments/{key}/results`` has them."""

    def results(project_id: str, experiment: Experiment) -> ExperimentSnapshot | None:
        metrics = {m.id: m for m in gateway.state.metrics(project_id)}
        computed = experiment_results(gateway, project_id, experiment, metrics)
        if not any(v.units for v in computed.variants):
            return None
        return snapshot_from_results(experiment, computed)

    return results


class ExperimentAlertService(BackgroundLoop):
    """Judges experiment rules on a schedule and publishes their transitions."""

    name = "experiment-alerts"

    def __init__(
        self,
        settings: KafkaSection,
        config: ConfigState,
        results: ResultsProvider,
        *,
        config_ready: Callable[[], bool] = lambda: True,
        interval_s: float = 15.0,
        clock: Clock = utc_now,
        act: Callable[[list[AlertTransition]], list[AlertTransition]] | None = None,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(progress=progress, retry_initial_s=interval_s, retry_max_s=interval_s)
        self.act = act
        """Called with the transitions before they are published (the safe-rollout guard
        switches features off and says so in their messages); returns what to publish."""
        self.settings = settings
        self.config = config
        self.results = results
        self.config_ready = config_ready
        self.interval_s = interval_s
        self.clock = clock
        self.recorded: dict[RuleKey, AlertTransition] = {}
        self._states: dict[RuleKey, RuleState] = {}
        self._judged: dict[RuleKey, datetime] = {}
        self._seeded = threading.Event()

    def ready(self) -> bool:
        return self.alive and self._seeded.is_set()

    # --- evaluation ---

    def seed(self, recorded: dict[RuleKey, AlertTransition]) -> None:
        """Resume from the last recorded transition of every rule."""
        self.recorded = dict(recorded)
        self._states = {key: seed_state(t) for key, t in recorded.items()}
        self._seeded.set()

    def evaluate(self, now: datetime) -> list[Judged]:
        """Judge every experiment rule whose window moved on; nothing is kept until
        :meth:`accept` (so a failed publish leaves the state as it was)."""
        snapshots: dict[tuple[str, str], ExperimentSnapshot | Exception | None] = {}
        judged: list[Judged] = []
        for rule in sorted(self._rules(), key=lambda r: (r.project_id, r.id)):
            key = (rule.project_id, rule.id)
            slot = window_floor(now, rule.evaluation_window_minutes * 60)
            if key in self._judged and self._judged[key] >= slot:
                continue
            experiment = self.config.get(f"experiment:{rule.project_id}:{rule.experiment}")
            found = experiment if isinstance(experiment, Experiment) else None
            snapshot = self._snapshot(snapshots, rule.project_id, found)
            state = self._states.get(key) or seed_state(self.recorded.get(key))
            new_state, transition = evaluate_experiment_rule(
                rule.project_id, rule, state, found, snapshot, slot
            )
            judged.append((key, slot, new_state, transition))
        return judged

    def accept(self, judged: list[Judged]) -> None:
        """Keep the states of judgements whose transitions are on the topic."""
        for key, slot, state, transition in judged:
            self._states[key] = state
            self._judged[key] = slot
            if transition is not None:
                self.recorded[key] = transition

    def firing_experiments(self) -> set[tuple[str, str]]:
        """(project, experiment) of every experiment rule firing now."""
        firing: set[tuple[str, str]] = set()
        for rule in self._rules():
            state = self._states.get((rule.project_id, rule.id))
            if state is not None and state.state is AlertState.FIRING and rule.experiment:
                firing.add((rule.project_id, rule.experiment))
        return firing

    def _rules(self) -> list[AlertRule]:
        return [r for r in self.config.of_kind(AlertRule) if r.rule_kind in EXPERIMENT_RULE_KINDS]

    def _snapshot(
        self,
        cache: dict[tuple[str, str], ExperimentSnapshot | Exception | None],
        project_id: str,
        experiment: Experiment | None,
    ) -> ExperimentSnapshot | Exception | None:
        if experiment is None:
            return None
        key = (project_id, experiment.id)
        if key not in cache:
            try:
                cache[key] = self.results(project_id, experiment)
            except Exception as error:  # noqa: BLE001 - any failure puts the rule in 'error'
                log.warning("experiment results failed", experiment=experiment.id, error=str(error))
                cache[key] = error
        return cache[key]

    # --- the loop ---

    def session(self) -> None:
        """Seed from the alerts topic once, then a round every ``interval_s``; a failed round
        closes the publisher and is tried again after ``interval_s``."""
        while not self._seeded.is_set():
            if self.config_ready():
                self.seed(read_recorded(self.settings))
            elif self.wait(0.2):
                return
        publisher = AlertPublisher(self.settings)
        try:
            self.connected()
            while not self.stopping.is_set():
                self.tick(publisher)
                self.wait(self.interval_s)
        finally:
            publisher.close()

    def tick(self, publisher: AlertPublisher) -> list[AlertTransition]:
        """One round: judge, publish, keep. The transitions published."""
        judged = self.evaluate(self.clock())
        transitions = [t for _, _, _, t in judged if t is not None]
        if self.act is not None and transitions:
            transitions = self.act(transitions)
        publisher.publish(transitions)
        self.accept(judged)
        for t in transitions:
            log.info("alert transition", rule=t.rule_id, to=t.to_state.value, at=str(t.at))
        return transitions
