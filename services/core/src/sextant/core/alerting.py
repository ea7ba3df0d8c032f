"""Alert states, transitions and episodes: the one state machine behind every alert.

Rules are judged where their data is: metric rules (``threshold``, ``relative_change``,
``anomaly``) in the processor (:mod:`sextant.processor.alert_rules`), experiment rules
(``experiment_guardrail``, ``srm``) in the gateway (:mod:`sextant.gateway.experiment_rules`).
Each judges one window into a :class:`Judgement`: ``breach``, ``recovered`` (the recovery
condition holds), ``hold`` (neither: inside the hysteresis band, too little volume, no baseline
yet), ``no_data`` or ``error``. :func:`advance` then moves the rule's :class:`RuleState`
through ok → pending → firing → resolved (plus ``no_data`` and ``error``) and returns the
:class:`AlertTransition`, if the state changed. Everything here is free of I/O and of the wall
clock.

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sextant.schemas.config import AlertRule
from sextant.schemas.records import AlertState, AlertTransition

__all__ = [
    "QUIET_STATES",
    "Clock",
    "Judgement",
    "Outcome",
    "RuleState",
    "advance",
    "badness",
    "bound",
    "episode_id",
    "resume",
    "seed_state",
    "transition_id",
    "utc_now",
    "window_floor",
]

Clock = Callable[[], datetime]
"""Where evaluators on a schedule get the time: injected, so tests never sleep."""

QUIET_STATES = frozenset({AlertState.OK, AlertState.RESOLVED})
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


# --- Boundaries both kinds of rules use -------------------------------------------------------


def badness(direction: str, signed: float) -> float:
    """How far ``signed`` lies on the rule's bad side (negative: on the good side)."""
    if direction == "below":
        return -signed
    if direction == "above":
        return signed
    return abs(signed)


def bound(direction: str, centre: float, spread: float, signed: float) -> float:
    below = direction == "below" or (direction == "either" and signed < 0)
    return centre - spread if below else centre + spread
