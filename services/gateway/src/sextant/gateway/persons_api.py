"""Persons: one person's ids, seen times, properties and merges, its events (read key); a
split of a wrong merge and an explicit merge (admin key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from sextant.core.kafka import make_producer
from sextant.gateway import persons
from sextant.gateway.auth import OwnerScope, ReadScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.pages import Limit
from sextant.gateway.problems import (
    ProblemError,
    example_response,
    not_found,
    problem_responses,
)
from sextant.schemas.audit import AuditAction
from sextant.schemas.config import IDENTIFIER, person_hash
from sextant.schemas.identity import EdgeKind, IdentityEdge
from sextant.schemas.topics import Topic, topic_name

router = APIRouter(prefix="/v1", tags=["persons"])
DistinctId = Annotated[str, Path(min_length=1, max_length=200, examples=["user-42"])]
ProjectId = Annotated[str, Path(pattern=IDENTIFIER, examples=["shop"])]
_ERRORS = problem_responses(401, 403, 404, 422, 503)
_AT = "2025-03-01T10:00:00Z"
_MERGE: dict[str, Any] = {
    "kind": "identify",
    "source": "anon-7f3a",
    "target": "user-42",
    "decision": "merged",
    "reason": "anonymous id joins a known user",
    "person_id": "user-42",
    "moved": ["anon-7f3a"],
    "message_id": "0c5e4c1e-6f1e-4f55-9d53-2e1b8f1b8a11",
    "timestamp": _AT,
    "decided_at": _AT,
}
_PERSON = {
    "person_id": "user-42",
    "distinct_ids": ["anon-7f3a", "user-42"],
    "first_seen": "2025-03-01T09:58:12Z",
    "last_seen": "2025-03-02T17:03:40Z",
    "properties": {"plan": "pro"},
    "merges": [_MERGE],
}
_EVENTS = {
    "items": [
        {
            "timestamp": _AT,
            "event": "Order Completed",
            "type": "track",
            "distinct_id": "user-42",
            "message_id": "9d2b7e0c-4a52-4c8e-9a55-1f0c2e3d4b5a",
            "properties": {"revenue": 42.5},
        }
    ],
    "next_cursor": "MjAyNS0wMy0wMVQxMDowMDowMCswMDowMHw5ZDJi",
}
_EDGE = {
    "accepted": {
        "project_id": "shop",
        "kind": "split",
        "source": "",
        "target": "user-42",
        "message_id": "",
        "timestamp": _AT,
    }
}


@router.get(
    "/persons/{distinct_id}",
    summary="The person of an id",
    responses=example_response(_PERSON) | _ERRORS,
)
def get_person(scope: ReadScope, gateway: GatewayDep, distinct_id: DistinctId) -> persons.Person:
    found = persons.person(gateway, scope.project_id, distinct_id)
    if found is None:
        raise not_found(f"person of '{distinct_id}'", "distinct_id")
    return found


@router.get(
    "/persons/{distinct_id}/events",
    summary="The events of every id of the person, newest first",
    responses=example_response(_EVENTS) | _ERRORS,
)
def get_person_events(
    scope: ReadScope,
    gateway: GatewayDep,
    distinct_id: DistinctId,
    limit: Limit = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=400,
            description="`next_cursor` of the previous page",
            examples=["MjAyNS0wMy0wMVQxMDowMDowMCswMDowMHw5ZDJi"],
        ),
    ] = None,
) -> persons.PersonEventPage:
    return persons.person_events_page(gateway, scope.project_id, distinct_id, limit, cursor)


class MergeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"source": "user-7", "target": "user-42"}}
    )

    source: str = Field(min_length=1, max_length=200, description="Its person joins the target's")
    target: str = Field(min_length=1, max_length=200)


class EdgeAccepted(BaseModel):
    accepted: IdentityEdge
    """Applied by the resolver in order with the project's other edges; its decision shows in
    the person's ``merges``."""


def _send(gateway: Gateway, edge: IdentityEdge) -> EdgeAccepted:
    topic = topic_name(Topic.IDENTITIES, gateway.settings.topic_prefix)
    try:
        producer = make_producer(gateway.settings)
        try:
            producer.send(
                topic, key=edge.project_id.encode(), value=edge.model_dump_json().encode()
            ).get(timeout=10)
        finally:
            producer.close(timeout=5)
    except Exception as error:
        raise ProblemError(
            503, "kafka-unavailable", "the identities topic did not take the edge; retry"
        ) from error
    ids = [i for i in (edge.source, edge.target) if i]
    gateway.audit.record(
        AuditAction.PERSON_MERGE if edge.kind is EdgeKind.MERGE else AuditAction.PERSON_SPLIT,
        edge.project_id,
        # The log names persons by digests only, as deletions do.
        detail=" ".join(person_hash(edge.project_id, i) for i in ids),
    )
    return EdgeAccepted(accepted=edge)


def _project(gateway: Gateway, project_id: str) -> None:
    if gateway.state.project(project_id) is None:
        raise not_found(f"project '{project_id}'", "project_id")


@router.post(
    "/admin/projects/{project_id}/persons/{distinct_id}/split",
    status_code=202,
    tags=["admin"],
    summary="Split a wrong merge: every id of the person becomes a person of its own",
    responses=example_response(_EDGE, 202) | _ERRORS,
)
def split_person(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, distinct_id: DistinctId
) -> EdgeAccepted:
    _project(gateway, project_id)
    edge = IdentityEdge(
        project_id=project_id, kind=EdgeKind.SPLIT, target=distinct_id, timestamp=datetime.now(UTC)
    )
    return _send(gateway, edge)


@router.post(
    "/admin/projects/{project_id}/persons/merge",
    status_code=202,
    tags=["admin"],
    summary="Merge two persons, identified or not",
    responses=example_response(_EDGE, 202) | _ERRORS,
)
def merge_persons(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, body: MergeRequest
) -> EdgeAccepted:
    _project(gateway, project_id)
    edge = IdentityEdge(
        project_id=project_id,
        kind=EdgeKind.MERGE,
        source=body.source,
        target=body.target,
        timestamp=datetime.now(UTC),
    )
    return _send(gateway, edge)
