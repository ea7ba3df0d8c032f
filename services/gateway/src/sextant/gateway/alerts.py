"""Alert history (``alert_events``) and the current state of each rule.

History pages newest first by ``(at, transition_id)``; the cursor is that pair of the last
row, opaque to clients, so a page never repeats or skips a transition while new ones arrive.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway import examples
from sextant.gateway.context import Gateway
from sextant.gateway.problems import invalid
from sextant.gateway.sql import DATETIME, FINAL_PER_PARTITION, Params, in_range_utc, run_query, utc
from sextant.schemas.config import AlertRule
from sextant.schemas.records import AlertState


class AlertEvent(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": examples.ALERT_EVENT})

    transition_id: str
    rule_id: str
    episode_id: str
    from_state: str
    to_state: str
    at: datetime
    value: float | None
    threshold: float | None
    severity: str
    message: str


class AlertPage(BaseModel):
    items: list[AlertEvent]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older ones")


class RuleState(BaseModel):
    rule: AlertRule
    state: AlertState = Field(description="The state after the rule's latest transition")
    since: datetime | None


def _encode(at: datetime, transition_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{transition_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        at, transition_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return in_range_utc(datetime.fromisoformat(at)), transition_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise invalid("not a cursor this API returned", "cursor") from error


def alert_history(
    gateway: Gateway,
    project_id: str,
    limit: int,
    cursor: str | None,
    rule_id: str | None,
    state: AlertState | None,
    start: datetime | None,
    end: datetime | None,
) -> AlertPage:
    """Transitions of the project's rules, newest first, filtered and paged."""
    params = Params()
    where = [f"project_id = {params.add(project_id, 'String')}"]
    if rule_id is not None:
        where.append(f"rule_id = {params.add(rule_id, 'String')}")
    if state is not None:
        where.append(f"to_state = {params.add(state.value, 'String')}")
    if start is not None:
        where.append(f"at >= {params.add(start, DATETIME)}")
    if end is not None:
        where.append(f"at < {params.add(end, DATETIME)}")
    if cursor is not None:
        at, transition_id = _decode(cursor)
        where.append(
            f"(at, transition_id) < ({params.add(at, DATETIME)},"
            f" {params.add(transition_id, 'String')})"
        )
    sql = f"""
        SELECT transition_id, rule_id, episode_id, from_state, to_state, at, value, threshold,
               severity, message
        FROM alert_events_unique
        WHERE {" AND ".join(where)}
        ORDER BY at DESC, transition_id DESC
        LIMIT {int(limit) + 1}
    """
    rows = run_query(gateway, "alerts", sql, params, FINAL_PER_PARTITION)
    items = [
        AlertEvent(
            transition_id=r[0],
            rule_id=r[1],
            episode_id=r[2],
            from_state=r[3],
            to_state=r[4],
            at=utc(r[5]),
            value=r[6],
            threshold=r[7],
            severity=r[8],
            message=r[9],
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return AlertPage(
        items=items, next_cursor=_encode(items[-1].at, items[-1].transition_id) if more else None
    )


def without_secrets(rule: AlertRule) -> AlertRule:
    """Read keys see where a rule notifies, never what signs or addresses it: webhook URLs
    (a Slack URL is itself a credential) keep only their scheme and host."""
    targets = [
        target.model_copy(update={"secret": "", "url": _origin(target.url)})
        for target in rule.targets
    ]
    return rule.model_copy(update={"targets": targets})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def rule_states(gateway: Gateway, project_id: str, rules: list[AlertRule]) -> list[RuleState]:
    """Each rule with the state its latest transition left it in (``ok`` if none yet)."""
    params = Params()
    sql = f"""
        SELECT rule_id, argMax(to_state, (at, transition_id)), max(at)
        FROM alert_events_unique
        WHERE project_id = {params.add(project_id, "String")}
        GROUP BY rule_id
    """
    latest = {
        str(r[0]): (str(r[1]), utc(r[2]))
        for r in run_query(gateway, "alert_states", sql, params, FINAL_PER_PARTITION)
    }
    states = []
    for rule in sorted(rules, key=lambda r: r.id):
        state, since = latest.get(rule.id, (AlertState.OK.value, None))
        try:
            current = AlertState(state)
        except ValueError:
            current = AlertState.ERROR
        states.append(RuleState(rule=without_secrets(rule), state=current, since=since))
    return states
