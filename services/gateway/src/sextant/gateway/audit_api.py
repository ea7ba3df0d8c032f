"""``GET /v1/admin/audit``: the audit log, newest first, paged and filtered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from sextant.gateway.admin_api import ProjectId, project_or_404
from sextant.gateway.auth import OrganisationScope, OwnerScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.pages import Limit, Page
from sextant.gateway.problems import ProblemError, example_response, problem_responses
from sextant.schemas.audit import AuditAction, AuditEntry

router = APIRouter(prefix="/v1/admin", tags=["admin"])
_ERRORS = problem_responses(401, 403, 404, 422)
_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "id": "5f0c3c1e9d7a4b2c8e1f6a7b3c4d5e6f",
            "at": "2025-03-01T09:30:00Z",
            "project_id": "shop",
            "action": "config.changed",
            "actor": {"kind": "key", "id": "api_key:shop:ops", "name": "Operations"},
            "target": "metric:shop:revenue",
            "source": "203.0.113.7",
            "before": {"id": "revenue", "name": "Revenue"},
            "after": {"id": "revenue", "name": "Revenue (EUR)"},
            "detail": "",
        }
    ],
    "next_cursor": None,
}
Cursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9a-f]{32}$",
        description="`next_cursor` of the previous page",
        examples=["5f0c3c1e9d7a4b2c8e1f6a7b3c4d5e6f"],
    ),
]


def _page(
    gateway: Gateway,
    project_id: str | None,
    action: AuditAction | None,
    target: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page[AuditEntry]:
    if since is not None and until is not None and since >= until:
        raise ProblemError(422, "invalid-parameter", "'since' must be before 'until'", "since")
    entries = [
        e
        for e in reversed(gateway.audit.entries())
        if (project_id is None or e.project_id == project_id)
        and (action is None or e.action is action)
        and (target is None or e.target == target or e.target.startswith(f"{target}:"))
        and (actor is None or e.actor.id == actor)
        and (since is None or e.at >= since)
        and (until is None or e.at < until)
    ]
    if cursor is not None:
        ids = [e.id for e in entries]
        if cursor not in ids:
            raise ProblemError(422, "invalid-parameter", "unknown cursor", "cursor")
        entries = entries[ids.index(cursor) + 1 :]
    chunk = entries[:limit]
    more = len(entries) > limit
    return Page[AuditEntry](items=chunk, next_cursor=chunk[-1].id if more and chunk else None)


Action = Annotated[
    AuditAction | None,
    Query(description="Only entries of this action", examples=["config.changed"]),
]
Target = Annotated[
    str | None,
    Query(
        max_length=300,
        description="Only entries about this config key, or under it (`metric:shop`)",
        examples=["metric:shop:revenue"],
    ),
]
ActorId = Annotated[
    str | None,
    Query(max_length=300, description="Only entries by this actor id", examples=["api_key:*:ops"]),
]
Since = Annotated[
    datetime | None,
    Query(description="From this time (inclusive)", examples=["2025-03-01T00:00:00Z"]),
]
Until = Annotated[
    datetime | None, Query(description="Before this time", examples=["2025-03-08T00:00:00Z"])
]


@router.get(
    "/audit",
    summary="The audit log of every project and the organisation, newest first",
    responses=example_response(_EXAMPLE) | _ERRORS,
)
def organisation_audit(
    _: OrganisationScope,
    gateway: GatewayDep,
    project_id: Annotated[
        str | None,
        Query(max_length=64, description="One project (`*`: the organisation)", examples=["shop"]),
    ] = None,
    action: Action = None,
    target: Target = None,
    actor: ActorId = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AuditEntry]:
    return _page(gateway, project_id, action, target, actor, since, until, limit, cursor)


@router.get(
    "/projects/{project_id}/audit",
    summary="A project's audit log, newest first",
    responses=example_response(_EXAMPLE) | _ERRORS,
)
def project_audit(
    _: OwnerScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    action: Action = None,
    target: Target = None,
    actor: ActorId = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AuditEntry]:
    project_or_404(gateway, project_id)
    return _page(gateway, project_id, action, target, actor, since, until, limit, cursor)
