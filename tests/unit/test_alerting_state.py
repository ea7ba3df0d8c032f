"""The alert state machine: pending period, one page per episode, hysteresis, no data, ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sextant.core.alerting import (
    Judgement,
    Outcome,
    RuleState,
    advance,
    resume,
    seed_state,
    transition_id,
)
from sextant.schemas.config import AlertRule
from sextant.schemas.records import AlertState, AlertTransition

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
BREACH = Judgement(Outcome.BREACH, 0.04, 0.05)
RECOVERED = Judgement(Outcome.RECOVERED, 0.1, 0.05)
HOLD = Judgement(Outcome.HOLD, 0.05, 0.05)
NO_DATA = Judgement(Outcome.NO_DATA)
ERROR = Judgement(Outcome.ERROR, detail="boom")


def rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "id": "checkout-drop",
        "project_id": "shop",
        "rule_kind": "threshold",
        "metric": "checkout",
        "direction": "below",
        "threshold": 0.05,
        "pending_windows": 3,
        "recovery_windows": 2,
        "no_data_windows": 2,
    }
    return AlertRule.model_validate(fields | overrides)


def run(
    r: AlertRule, judgements: list[Judgement], state: RuleState | None = None
) -> tuple[RuleState, list[AlertTransition]]:
    current = state or RuleState()
    transitions: list[AlertTransition] = []
    for minute, judgement in enumerate(judgements, start=1):
        current, transition = advance("shop", r, current, judgement, T0 + timedelta(minutes=minute))
        if transition is not None:
            transitions.append(transition)
    return current, transitions


def path(transitions: list[AlertTransition]) -> list[str]:
    return [f"{t.from_state.value}->{t.to_state.value}" for t in transitions]


def test_fires_only_after_the_pending_period_of_consecutive_breaches() -> None:
    state, transitions = run(rule(), [BREACH, BREACH])
    assert state.state is AlertState.PENDING
    assert path(transitions) == ["ok->pending"]

    state, transitions = run(rule(), [BREACH, BREACH, BREACH])
    assert state.state is AlertState.FIRING
    assert path(transitions) == ["ok->pending", "pending->firing"]
    assert transitions[1].at == T0 + timedelta(minutes=3)


def test_a_broken_streak_returns_pending_to_ok_without_firing() -> None:
    state, transitions = run(rule(), [BREACH, BREACH, HOLD, BREACH, BREACH])
    assert state.state is AlertState.PENDING
    assert path(transitions) == ["ok->pending", "pending->ok", "ok->pending"]


def test_one_pending_window_fires_on_the_first_breach() -> None:
    _, transitions = run(rule(pending_windows=1), [BREACH])
    assert path(transitions) == ["ok->firing"]


def test_one_firing_per_episode_however_long_it_lasts() -> None:
    judgements = [BREACH] * 3 + [BREACH, HOLD, NO_DATA, ERROR, RECOVERED, BREACH] * 20
    _, transitions = run(rule(), judgements)
    assert path(transitions) == ["ok->pending", "pending->firing"]
    assert len({t.episode_id for t in transitions}) == 1


def test_resolves_after_consecutive_recovered_windows_only() -> None:
    firing = [BREACH] * 3
    state, transitions = run(rule(), [*firing, RECOVERED, HOLD, RECOVERED, BREACH, RECOVERED])
    assert state.state is AlertState.FIRING  # never two recovered windows in a row

    state, transitions = run(rule(), [*firing, RECOVERED, RECOVERED])
    assert state.state is AlertState.RESOLVED
    assert path(transitions) == ["ok->pending", "pending->firing", "firing->resolved"]
    assert transitions[-1].episode_id == transitions[0].episode_id


def test_a_new_episode_after_resolution_gets_a_new_id() -> None:
    episode = [BREACH] * 3 + [RECOVERED] * 2
    _, transitions = run(rule(), episode + episode)
    assert path(transitions) == [
        "ok->pending",
        "pending->firing",
        "firing->resolved",
        "resolved->pending",
        "pending->firing",
        "firing->resolved",
    ]
    first, second = transitions[0].episode_id, transitions[3].episode_id
    assert first != second
    assert {t.episode_id for t in transitions[:3]} == {first}
    assert {t.episode_id for t in transitions[3:]} == {second}


def test_no_data_after_the_configured_number_of_missing_windows() -> None:
    state, transitions = run(rule(), [RECOVERED, NO_DATA])
    assert state.state is AlertState.OK
    assert transitions == []

    state, transitions = run(rule(), [RECOVERED, NO_DATA, NO_DATA, NO_DATA, RECOVERED])
    assert path(transitions) == ["ok->no_data", "no_data->ok"]
    assert state.state is AlertState.OK


def test_missing_data_never_resolves_a_firing_rule() -> None:
    state, transitions = run(rule(), [BREACH] * 3 + [NO_DATA] * 10)
    assert state.state is AlertState.FIRING
    assert path(transitions) == ["ok->pending", "pending->firing"]


def test_errors_are_a_state_and_clear_with_the_next_judgement() -> None:
    state, transitions = run(rule(), [ERROR, ERROR, RECOVERED])
    assert path(transitions) == ["ok->error", "error->ok"]
    assert state.state is AlertState.OK


def test_replay_gives_identical_transitions_and_ids() -> None:
    judgements = ([RECOVERED] * 5 + [BREACH] * 4 + [HOLD] + [RECOVERED] * 3 + [NO_DATA] * 3) * 3
    _, first = run(rule(), judgements)
    _, second = run(rule(), judgements)
    assert first == second
    assert len({t.transition_id for t in first}) == len(first)
    assert first[0].transition_id == transition_id(
        "shop", "checkout-drop", first[0].at, AlertState.OK, AlertState.PENDING
    )


def test_transitions_carry_the_rule_severity_value_and_boundary() -> None:
    _, transitions = run(rule(pending_windows=1, severity="critical"), [BREACH])
    assert transitions[0].severity == "critical"
    assert (transitions[0].value, transitions[0].threshold) == (0.04, 0.05)


def test_resume_emits_nothing_when_the_rebuilt_state_matches_the_record() -> None:
    _, transitions = run(rule(), [BREACH] * 3)
    recorded = transitions[-1]
    rebuilt, _ = run(rule(), [RECOVERED] * 4 + [BREACH] * 3)  # another episode id
    state, emitted = resume("shop", rule(), rebuilt, recorded, T0 + timedelta(minutes=9))
    assert emitted is None
    assert (state.state, state.episode_id) == (AlertState.FIRING, recorded.episode_id)


def test_resume_closes_a_recorded_episode_that_is_over() -> None:
    _, transitions = run(rule(), [BREACH] * 3)
    recorded = transitions[-1]
    rebuilt, _ = run(rule(), [RECOVERED] * 3)
    at = T0 + timedelta(minutes=20)
    state, emitted = resume("shop", rule(), rebuilt, recorded, at)
    assert emitted is not None
    assert (emitted.from_state, emitted.to_state) == (AlertState.FIRING, AlertState.RESOLVED)
    assert emitted.episode_id == recorded.episode_id
    assert state.state is AlertState.RESOLVED


def test_resume_without_a_record_reports_an_ongoing_incident_once() -> None:
    rebuilt, _ = run(rule(), [BREACH] * 5)
    state, emitted = resume("shop", rule(), rebuilt, None, T0 + timedelta(minutes=5))
    assert emitted is not None
    assert emitted.to_state is AlertState.FIRING
    assert state.state is AlertState.FIRING
    quiet, _ = run(rule(), [RECOVERED] * 5)
    assert resume("shop", rule(), quiet, None, T0)[1] is None


def test_seed_state_continues_the_recorded_episode() -> None:
    _, transitions = run(rule(), [BREACH] * 3)
    state, more = run(rule(), [RECOVERED] * 2, seed_state(transitions[-1]))
    assert path(more) == ["firing->resolved"]
    assert more[0].episode_id == transitions[-1].episode_id
    assert state.state is AlertState.RESOLVED
