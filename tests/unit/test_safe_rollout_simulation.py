"""Simulated experiments through the whole guard: the always-valid interval (gateway.stats),
the guardrail rule's evaluation with its states (core.alerting), and the automatic stop
(gateway.rollouts). Each experiment is looked at 20 times as units accrue, as the gateway's
schedule looks at a running experiment.

A/A: Sextant stops no more harmless experiments than the guardrail's nominal error rate
allows (5 % of experiments, judged with a binomial bound from scipy); A/B with a planted
harm: it stops nearly all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import stats as scipy_stats

from sextant.core.alerting import RuleState
from sextant.core.config_plane import ConfigState
from sextant.gateway.experiment_rules import (
    ExperimentSnapshot,
    VariantResult,
    evaluate_experiment_rule,
)
from sextant.gateway.rollouts import stop_on_alerts
from sextant.gateway.stats import MeanStats, compare_means, rho_for_sample_size
from sextant.schemas.config import AlertRule, ConfigDocument, Experiment, Feature, Variant

EXPERIMENTS = 200
PEEKS = 20
UNITS_PER_ARM_PER_PEEK = 100
NOMINAL_ALPHA = 0.05
T0 = datetime(2026, 3, 2, tzinfo=UTC)
RHO = rho_for_sample_size(2 * PEEKS * UNITS_PER_ARM_PER_PEEK)


def _documents(key: str) -> list[ConfigDocument]:
    experiment = Experiment(
        id=key,
        project_id="shop",
        start=T0 - timedelta(days=1),
        guardrail_metrics=["orders"],
        min_sample_per_variant=100,
        variants=[Variant(id="control", weight=0.5), Variant(id="treat", weight=0.5)],
    )
    rule = AlertRule(
        id=f"{key}-guard",
        project_id="shop",
        rule_kind="experiment_guardrail",
        experiment=key,
        direction="below",
    )
    feature = Feature.model_validate(
        {
            "id": f"{key}-flag",
            "project_id": "shop",
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "experiment",
                            "id": "test",
                            "experiment": key,
                            "values": {"control": False, "treat": True},
                        }
                    ]
                }
            },
        }
    )
    return [experiment, rule, feature]


def _stopped(lift: float, seed: int) -> int:
    """How many of the simulated experiments Sextant switched off."""
    rng = np.random.default_rng(seed)
    state = ConfigState()

    def commit(documents: list[ConfigDocument]) -> None:
        for document in documents:
            state.apply(document.config_key(), document)

    stopped = 0
    for e in range(EXPERIMENTS):
        key = f"exp-{e}"
        commit(_documents(key))
        experiment = state.get(f"experiment:shop:{key}")
        rule = state.get(f"alert_rule:shop:{key}-guard")
        assert isinstance(experiment, Experiment)
        assert isinstance(rule, AlertRule)
        orders = rng.poisson(2.0, (2, PEEKS * UNITS_PER_ARM_PER_PEEK)).astype(float)
        orders[1] = rng.poisson(2.0 * (1 + lift), PEEKS * UNITS_PER_ARM_PER_PEEK)
        rule_state = RuleState()
        for peek in range(1, PEEKS + 1):
            n = peek * UNITS_PER_ARM_PER_PEEK
            control, treat = (
                MeanStats(n, float(orders[i, :n].sum()), float((orders[i, :n] ** 2).sum()))
                for i in (0, 1)
            )
            comparison = compare_means(control, treat, rho=RHO)
            snapshot = ExperimentSnapshot(
                experiment=key,
                control="control",
                srm_checked=True,
                srm_flagged=False,
                srm_p_value=0.5,
                results=(
                    VariantResult(
                        "orders",
                        "treat",
                        n,
                        comparison.relative.estimate,
                        comparison.sequential_relative.low,
                        comparison.sequential_relative.high,
                    ),
                ),
            )
            at = T0 + timedelta(minutes=peek)
            rule_state, transition = evaluate_experiment_rule(
                "shop", rule, rule_state, experiment, snapshot, at
            )
            if transition is not None:
                stop_on_alerts(state, [transition], commit, at)
        feature = state.get(f"feature:shop:{key}-flag")
        assert isinstance(feature, Feature)
        stopped += not feature.environments["production"].rules[0].enabled
    return stopped


def test_harmless_experiments_are_not_stopped_beyond_the_nominal_error_rate() -> None:
    stopped = _stopped(lift=0.0, seed=11)
    # Beyond this many stops out of 200, a 5 % error rate has less than a 0.1 % chance.
    bound = int(scipy_stats.binom.ppf(0.999, EXPERIMENTS, NOMINAL_ALPHA))
    assert stopped <= bound, f"{stopped} of {EXPERIMENTS} harmless experiments stopped"


def test_experiments_that_hurt_the_guardrail_are_stopped() -> None:
    stopped = _stopped(lift=-0.15, seed=12)
    assert stopped >= 0.9 * EXPERIMENTS, f"only {stopped} of {EXPERIMENTS} stopped"
