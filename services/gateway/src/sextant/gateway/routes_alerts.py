"""Alert states, acknowledgements and mutes.

``GET /v1/alerts/states`` (a read key) shows each of the project's rules with its current state
and episode, whether that episode is acknowledged, and whether the rule is muted. The admin key
mutes a rule until a time (``PUT``/``DELETE …/alert-rules/{rule_id}/mute``) and acknowledges an
episode (``POST …/alert-rules/{rule_id}/ack``). Both are config-plane documents (``alert_mute``
and ``alert_ack``, one per rule), so the notifier, which follows the config topic, stops
delivering a muted rule's transitions within seconds; see docs/decisions/alerting-mute-ack.md.
The history of transitions is ``GET /v1/alerts``; the rules are ``GET /v1/alerts/rules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from sextant.gateway.auth import AdminScope, ReadScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.problems import ProblemError, not_found, problem_responses
from sextant.gateway.sql import Params, run_query, utc
from sextant.schemas.config import (
    IDENTIFIER,
    AlertAck,
    AlertMute,
    AlertRule,
    AlertRuleKind,
    ConfigDocument,
    Severity,
)
from sextant.schemas.records import AlertState

router = APIRouter(tags=["alerts"])
ProjectId = Annotated[str, Path(pattern=IDENTIFIER, examples=["shop"])]
RuleId = Annotated[str, Path(pattern=IDENTIFIER, examples=["checkout-drop"])]
_ERRORS = problem_responses(401, 403, 404, 422, 503)
MAX_MUTE = timedelta(days=90)


class AlertStatus(BaseModel):
    """A rule as an on-call person sees it (without its webhook targets)."""

    rule_id: str
    name: str
    rule_kind: AlertRuleKind
    severity: Severity
    state: AlertState = Field(description="The state after the rule's latest transition")
    since: datetime | None
    episode_id: str | None = Field(description="The current (or, when quiet, last) episode")
    value: float | None = Field(description="The value of the latest transition")
    acknowledged: bool = Field(description="The current episode is acknowledged")
    acknowledgement: AlertAck | None
    muted_until: datetime | None = Field(description="Set while a mute is in force")
    mute_reason: str | None


class MuteRequest(BaseModel):
    """Mute for ``minutes`` from now, or until ``until``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"minutes": 60, "reason": "deploying the fix"}},
    )

    until: AwareDatetime | None = None
    minutes: int | None = Field(default=None, ge=1, le=int(MAX_MUTE.total_seconds() // 60))
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _one_of(self) -> MuteRequest:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give either 'until' or 'minutes'")
        return self


class AckRequest(BaseModel):
    """Acknowledge ``episode_id``, by default the rule's current episode."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"note": "looking into it"}}
    )

    episode_id: str | None = Field(default=None, min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)


def _latest(
    gateway: Gateway, project_id: str
) -> dict[str, tuple[str, str, float | None, datetime]]:
    """rule_id → (state, episode_id, value, at) of each rule's latest transition."""
    params = Params()
    sql = f"""
        SELECT rule_id, argMax((to_state, episode_id, value), (at, transition_id)), max(at)
        FROM alert_events_unique
        WHERE project_id = {params.add(project_id, "String")}
        GROUP BY rule_id
    """
    rows = run_query(gateway, "alert_latest", sql, params)
    return {str(r[0]): (str(r[1][0]), str(r[1][1]), r[1][2], utc(r[2])) for r in rows}


def _status(
    gateway: Gateway,
    rule: AlertRule,
    latest: tuple[str, str, float | None, datetime] | None,
    now: datetime,
) -> AlertStatus:
    state, episode, value, since = latest or (AlertState.OK.value, None, None, None)
    ack = gateway.state.get(f"alert_ack:{rule.project_id}:{rule.id}")
    mute = gateway.state.get(f"alert_mute:{rule.project_id}:{rule.id}")
    acknowledgement = ack if isinstance(ack, AlertAck) else None
    muted = mute if isinstance(mute, AlertMute) and mute.until > now else None
    try:
        current = AlertState(state)
    except ValueError:
        current = AlertState.ERROR
    return AlertStatus(
        rule_id=rule.id,
        name=rule.name,
        rule_kind=rule.rule_kind,
        severity=rule.severity,
        state=current,
        since=since,
        episode_id=episode,
        value=value,
        acknowledged=acknowledgement is not None and acknowledgement.episode_id == episode,
        acknowledgement=acknowledgement,
        muted_until=muted.until if muted else None,
        mute_reason=muted.reason if muted else None,
    )


@router.get(
    "/v1/alerts/states",
    summary="Each alert rule's state, episode, acknowledgement and mute",
    responses=_ERRORS,
)
def alert_states(scope: ReadScope, gateway: GatewayDep) -> list[AlertStatus]:
    rules = sorted(gateway.state.of_kind(AlertRule, scope.project_id), key=lambda r: r.id)
    latest = _latest(gateway, scope.project_id) if rules else {}
    now = datetime.now(UTC)
    return [_status(gateway, rule, latest.get(rule.id), now) for rule in rules]


def _rule_or_404(gateway: Gateway, project_id: str, rule_id: str) -> AlertRule:
    rule = gateway.state.get(f"alert_rule:{project_id}:{rule_id}")
    if not isinstance(rule, AlertRule):
        raise not_found(f"alert rule '{rule_id}'", "rule_id")
    return rule


def _commit(
    gateway: Gateway, documents: Sequence[ConfigDocument], deletes: Sequence[str] = ()
) -> None:
    gateway.publish(documents, deletes)
    expected: dict[str, Any] = {d.config_key(): d for d in documents}
    gateway.wait_visible(expected | dict.fromkeys(deletes))


_BASE = "/v1/admin/projects/{project_id}/alert-rules/{rule_id}"


@router.put(f"{_BASE}/mute", summary="Mute a rule's notifications until a time", responses=_ERRORS)
async def mute_rule(
    scope: AdminScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    rule_id: RuleId,
    body: MuteRequest,
) -> AlertMute:
    _rule_or_404(gateway, project_id, rule_id)
    now = datetime.now(UTC)
    until = body.until.astimezone(UTC) if body.until else now + timedelta(minutes=body.minutes or 0)
    if not now < until <= now + MAX_MUTE:
        raise ProblemError(
            422, "invalid-parameter", "'until' must be within 90 days from now", "until"
        )
    mute = AlertMute(
        id=rule_id,
        project_id=project_id,
        until=until,
        reason=body.reason,
        created_by=scope.key_id,
        created_at=now,
    )
    await anyio.to_thread.run_sync(_commit, gateway, (mute,))
    return mute


@router.delete(f"{_BASE}/mute", status_code=204, summary="Unmute a rule", responses=_ERRORS)
async def unmute_rule(
    _: AdminScope, gateway: GatewayDep, project_id: ProjectId, rule_id: RuleId
) -> Response:
    _rule_or_404(gateway, project_id, rule_id)
    key = f"alert_mute:{project_id}:{rule_id}"
    if gateway.state.get(key) is not None:
        await anyio.to_thread.run_sync(_commit, gateway, (), (key,))
    return Response(status_code=204)


@router.post(
    f"{_BASE}/ack",
    summary="Acknowledge an episode of a rule (by default the current one)",
    responses=_ERRORS | problem_responses(409),
)
async def acknowledge(
    scope: AdminScope, gateway: GatewayDep, project_id: ProjectId, rule_id: RuleId, body: AckRequest
) -> AlertAck:
    _rule_or_404(gateway, project_id, rule_id)
    episode = body.episode_id
    if episode is None:
        latest = await anyio.to_thread.run_sync(_latest, gateway, project_id)
        if rule_id not in latest or not latest[rule_id][1]:
            raise ProblemError(
                409, "conflict", "the rule has no episode to acknowledge", "episode_id"
            )
        episode = latest[rule_id][1]
    ack = AlertAck(
        id=rule_id,
        project_id=project_id,
        episode_id=episode,
        note=body.note,
        acknowledged_by=scope.key_id,
        acknowledged_at=datetime.now(UTC),
    )
    await anyio.to_thread.run_sync(_commit, gateway, (ack,))
    return ack
