"""A person's data: deletion (with a status to poll) and export.

Deletion writes a :class:`PersonDeletion` document to the config plane: the sink (the
warehouse's only writer) deletes the person's rows from every table that names persons, the
processor removes their entries from its state (each stage's partitions report it on
``person_deletions``), and the collectors drop events under their ids until
``suppress_until``. The status is done once every step is: no row under any of their ids is
left in the warehouse, the identity resolver has forgotten them, and the processor's other
state holds none of their ids. Kafka's topics age their copies out by ``kafka_copies_gone_by``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from sextant.core.kafka import end_offsets, read_all
from sextant.core.kafka_cluster import retention_ms
from sextant.core.logging import get_logger
from sextant.core.persons import PERSON_COLUMNS, person_predicate
from sextant.gateway import persons
from sextant.gateway.admin_api import ProjectId, commit_documents, project_or_404
from sextant.gateway.audit import ACTOR
from sextant.gateway.auth import OwnerScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.problems import example_response, not_found, problem_responses
from sextant.gateway.sql import run_query
from sextant.schemas.audit import AuditAction
from sextant.schemas.config import IDENTIFIER, PersonDeletion, person_hash
from sextant.schemas.identity import (
    FIRST_STAGE,
    FORGETTING_STAGES,
    RESOLVER_STAGE,
    DeletionProgress,
)
from sextant.schemas.topics import PERSON_ID_TOPICS, Topic, topic_name

log = get_logger(__name__)

router = APIRouter(prefix="/v1/admin/projects/{project_id}/persons", tags=["admin"])
_ERRORS = problem_responses(401, 403, 404, 422, 503)
_EXPORT_ORDER = {"person_overrides": "updated_at"}
"""A person's export lists each table's rows oldest first; by its time column."""
DistinctId = Annotated[str, Path(min_length=1, max_length=500, examples=["user-42"])]
RequestId = Annotated[str, Path(pattern=IDENTIFIER, examples=["del-3f9a1c2b"])]


def person_ids(gateway: Gateway, project_id: str, distinct_id: str) -> set[str]:
    """Every id of the person known by ``distinct_id``, as the identity resolver joined them:
    the one place deletion and export learn who a person is."""
    _, ids = persons.person_ids(gateway, project_id, distinct_id)
    return {distinct_id, *ids}


class DeletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"suppress_days": 30}})

    suppress_days: int = Field(default=30, ge=0, le=3650)
    """How long events under the person's ids are dropped at ingest."""


class DeletionSteps(BaseModel):
    warehouse: bool
    """No row under any of their ids is left in the warehouse."""
    identities: bool
    """The identity resolver has forgotten the person (every ``identities`` partition)."""
    processor_state: bool
    """The processor's state (first exposures, conversion users, experiment units) holds none
    of their ids (every ``events.raw`` partition); the changelogs have the tombstones."""


class DeletionStatus(BaseModel):
    id: str
    project_id: str
    status: Literal["pending", "done"]
    """``done`` once every step is."""
    steps: DeletionSteps
    ids: int
    """How many ids the person had (the ids themselves are not kept)."""
    rows_left: dict[str, int]
    """Rows still under the person's ids, per table."""
    requested_at: datetime
    suppress_until: datetime
    kafka_copies_gone_by: datetime | None
    """When the retention of the topics that can hold their ids (raw events, dead letters,
    identity edges, exposures, overrides, decisions) has deleted the last copy written before
    the request (``None``: a topic keeps records forever, or the broker did not say)."""


def _kafka_copies_gone_by(gateway: Gateway, requested_at: datetime) -> datetime | None:
    longest = 0
    for topic in PERSON_ID_TOPICS:
        try:
            kept = retention_ms(gateway.settings, topic_name(topic, gateway.settings.topic_prefix))
        except Exception as error:  # noqa: BLE001 - the status is still worth answering
            log.warning("topic retention unknown", topic=topic.value, error=str(error))
            return None
        if kept is None or kept < 0:
            return None
        longest = max(longest, kept)
    return requested_at + timedelta(milliseconds=longest)


def _forgotten_by_processor(gateway: Gateway, request: PersonDeletion) -> dict[str, bool]:
    """Per stage that keeps ids: whether every one of its partitions reported the person
    forgotten. The progress topic is small (one record per stage's partition and request)."""
    settings = gateway.settings
    reported: dict[str, set[int]] = {stage: set() for stage in FORGETTING_STAGES}
    try:
        for record in read_all(settings, topic_name(Topic.PERSON_DELETIONS, settings.topic_prefix)):
            if record.value is None:
                continue
            progress = DeletionProgress.model_validate_json(record.value)
            if progress.request_id == request.id and progress.project_id == request.project_id:
                reported.setdefault(progress.stage, set()).add(progress.partition)
        return {
            stage: reported[stage]
            >= set(end_offsets(settings, topic_name(source, settings.topic_prefix)))
            for stage, source in FORGETTING_STAGES.items()
        }
    except Exception as error:  # noqa: BLE001 - the status is still worth answering
        log.warning("deletion progress unknown", request=request.id, error=str(error))
        return dict.fromkeys(FORGETTING_STAGES, False)


_STATUS_EXAMPLE: dict[str, Any] = {
    "id": "del-3f9a1c2b",
    "project_id": "shop",
    "status": "pending",
    "steps": {"warehouse": False, "identities": True, "processor_state": True},
    "ids": 3,
    "rows_left": {"events": 12, "exposures": 1},
    "requested_at": "2025-03-01T09:30:00Z",
    "suppress_until": "2025-03-31T09:30:00Z",
    "kafka_copies_gone_by": "2025-03-08T09:30:00Z",
}


def _status(gateway: Gateway, request: PersonDeletion) -> DeletionStatus:
    parameters = {"p": request.project_id, "hashes": list(request.id_hashes)}
    left = {
        table: int(
            run_query(
                gateway,
                "person_rows",
                f"SELECT count() FROM {table} WHERE {person_predicate(table)}",
                parameters,
            )[0][0]
        )
        for table in PERSON_COLUMNS
    }
    processor = _forgotten_by_processor(gateway, request)
    steps = DeletionSteps(
        warehouse=not any(left.values()),
        identities=processor[RESOLVER_STAGE],
        processor_state=processor[FIRST_STAGE],
    )
    return DeletionStatus(
        id=request.id,
        project_id=request.project_id,
        status="done" if all(dict(steps).values()) else "pending",
        steps=steps,
        ids=len(request.id_hashes),
        rows_left=left,
        requested_at=request.requested_at,
        suppress_until=request.suppress_until,
        kafka_copies_gone_by=_kafka_copies_gone_by(gateway, request.requested_at),
    )


@router.post(
    "/{distinct_id}/delete",
    status_code=202,
    summary="Delete everything stored about a person (poll the status it returns)",
    responses=example_response(_STATUS_EXAMPLE, 202) | _ERRORS,
)
def delete_person(
    _: OwnerScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    distinct_id: DistinctId,
    body: DeletionRequest,
) -> DeletionStatus:
    project_or_404(gateway, project_id)
    ids = person_ids(gateway, project_id, distinct_id)
    now = datetime.now(UTC)
    caller = ACTOR.get()
    request = PersonDeletion(
        id=f"del-{secrets.token_hex(6)}",
        project_id=project_id,
        id_hashes=sorted(person_hash(project_id, i) for i in ids),
        requested_at=now,
        suppress_until=now + timedelta(days=body.suppress_days),
        requested_by=caller.actor.id if caller else "",
    )
    commit_documents(gateway, [request])
    gateway.audit.record(
        AuditAction.PERSON_DELETION,
        project_id,
        request.config_key(),
        detail=f"{len(ids)} ids; suppressed for {body.suppress_days} days",
    )
    return _status(gateway, request)


@router.get(
    "/deletions/{request_id}",
    summary="The status of a person's deletion",
    responses=example_response(_STATUS_EXAMPLE | {"status": "done"}) | _ERRORS,
)
def deletion_status(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, request_id: RequestId
) -> DeletionStatus:
    request = gateway.state.get(f"person_deletion:{project_id}:{request_id}")
    if not isinstance(request, PersonDeletion):
        raise not_found(f"deletion '{request_id}'", "request_id")
    return _status(gateway, request)


@router.get(
    "/{distinct_id}/export",
    summary="Everything stored about a person, as JSON",
    responses=example_response(
        {"ids": ["user-42"], "tables": {"events": [{"event": "Paid"}], "exposures": []}}
    )
    | _ERRORS,
)
def export_person(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, distinct_id: DistinctId
) -> dict[str, Any]:
    project_or_404(gateway, project_id)
    ids = person_ids(gateway, project_id, distinct_id)
    parameters = {"p": project_id, "hashes": sorted(person_hash(project_id, i) for i in ids)}
    tables = {
        table: gateway.warehouse().query_dicts(
            f"SELECT * FROM {table} WHERE {person_predicate(table)} "
            f"ORDER BY {_EXPORT_ORDER.get(table, 'timestamp')}",
            parameters,
        )
        for table in PERSON_COLUMNS
    }
    gateway.audit.record(AuditAction.PERSON_EXPORT, project_id, detail=f"{len(ids)} ids")
    return {"ids": sorted(ids), "tables": tables}
