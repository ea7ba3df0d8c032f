"""The admin API of features: versioned writes, history, revert, environment switches.

Every write goes through :func:`sextant.core.feature_versions.versioned`: the feature gets its
next version, stamped with the admin key that wrote it, and a revision records what changed.
A revert writes the content of an earlier revision as a new version, so history only grows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sextant.core.feature_versions import revisions, versioned, versioned_delete
from sextant.gateway import examples
from sextant.gateway.admin_api import (
    _ERRORS,
    DocumentId,
    ProjectId,
    _commit,
    project_or_404,
    validation_problem,
)
from sextant.gateway.auth import AdminScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.pages import IdCursor, Limit, Page, page_by_id
from sextant.gateway.problems import (
    NO_CONTENT,
    ProblemError,
    example_response,
    not_found,
    problem_responses,
)
from sextant.schemas.config import IDENTIFIER, Feature, FeatureEnvironment, FeatureRevision

router = APIRouter(prefix="/v1/admin/projects/{project_id}/features", tags=["admin", "features"])
Environment = Annotated[str, Path(pattern=IDENTIFIER, examples=["production"])]
_BOOKKEEPING = ("version", "created_at", "updated_at", "updated_by")


class FeatureInput(BaseModel):
    """A feature as a client writes it (``version`` and the times are the server's)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": examples.FEATURE_INPUT})

    id: str | None = Field(default=None, pattern=IDENTIFIER)
    description: str = ""
    value_type: str = "boolean"
    default_value: Any = False
    environments: dict[str, Any] = Field(default_factory=dict)
    comment: str = Field(default="", max_length=1000)


class Revert(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"version": 3}})

    version: int = Field(ge=1)
    comment: str = Field(default="", max_length=1000)


class Switch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"enabled": False}})

    enabled: bool
    comment: str = Field(default="", max_length=1000)


def _now() -> datetime:
    return datetime.now(UTC)


def _feature_or_404(gateway: Gateway, project_id: str, feature_id: str) -> Feature:
    feature = gateway.state.get(f"feature:{project_id}:{feature_id}")
    if not isinstance(feature, Feature):
        raise not_found(f"feature '{feature_id}'", "feature_id")
    return feature


def _build(project_id: str, feature_id: str, body: FeatureInput) -> Feature:
    data = body.model_dump(exclude={"id", "comment"}, exclude_unset=True)
    try:
        return Feature.model_validate(data | {"id": feature_id, "project_id": project_id})
    except ValidationError as error:
        raise validation_problem(error) from error


def write_feature(gateway: Gateway, feature: Feature, by: str, comment: str) -> Feature:
    """Store ``feature`` as its next version (nothing when it changes nothing); the stored one."""
    documents = versioned(gateway.state, [feature], by=by, comment=comment, now=_now())
    if documents:
        _commit(gateway, documents)
    stored = gateway.state.get(feature.config_key())
    assert isinstance(stored, Feature)
    return stored


_ONE = example_response(examples.FEATURE)


@router.get(
    "",
    summary="List a project's features",
    responses=example_response({"items": [examples.FEATURE], "next_cursor": None}) | _ERRORS,
)
def list_features(
    _: AdminScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    limit: Limit = 100,
    cursor: IdCursor = None,
) -> Page[Feature]:
    project_or_404(gateway, project_id)
    return page_by_id(gateway.state.features(project_id), lambda f: f.id, limit, cursor)


@router.post(
    "",
    status_code=201,
    summary="Create a feature (version 1)",
    responses=example_response(examples.FEATURE, 201) | _ERRORS | problem_responses(409),
)
def create_feature(
    scope: AdminScope, gateway: GatewayDep, project_id: ProjectId, body: FeatureInput
) -> Feature:
    project_or_404(gateway, project_id)
    if body.id is None:
        raise ProblemError(422, "invalid-parameter", "id: a new feature needs an id", "id")
    if gateway.state.get(f"feature:{project_id}:{body.id}") is not None:
        raise ProblemError(409, "conflict", f"feature '{body.id}' exists", "id")
    return write_feature(gateway, _build(project_id, body.id, body), scope.key_id, body.comment)


@router.get("/{feature_id}", summary="Get a feature", responses=_ONE | _ERRORS)
def get_feature(
    _: AdminScope, gateway: GatewayDep, project_id: ProjectId, feature_id: DocumentId
) -> Feature:
    return _feature_or_404(gateway, project_id, feature_id)


@router.put(
    "/{feature_id}",
    summary="Create or replace a feature (its next version; nothing when nothing changes)",
    responses=_ONE | _ERRORS,
)
def replace_feature(
    scope: AdminScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    feature_id: DocumentId,
    body: FeatureInput,
) -> Feature:
    project_or_404(gateway, project_id)
    if body.id not in (None, feature_id):
        raise ProblemError(422, "invalid-parameter", "id differs from the path", "id")
    return write_feature(gateway, _build(project_id, feature_id, body), scope.key_id, body.comment)


@router.delete(
    "/{feature_id}",
    status_code=204,
    summary="Delete a feature (its history keeps a revision saying so)",
    responses=NO_CONTENT | _ERRORS,
)
def delete_feature(
    scope: AdminScope, gateway: GatewayDep, project_id: ProjectId, feature_id: DocumentId
) -> Response:
    _feature_or_404(gateway, project_id, feature_id)
    revision = versioned_delete(gateway.state, project_id, feature_id, by=scope.key_id, now=_now())
    _commit(gateway, [revision] if revision else [], [f"feature:{project_id}:{feature_id}"])
    return Response(status_code=204)


@router.put(
    "/{feature_id}/environments/{environment}/enabled",
    summary="Switch a feature on or off in one environment (off: everyone gets the default)",
    responses=_ONE | _ERRORS,
)
def switch_environment(
    scope: AdminScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    feature_id: DocumentId,
    environment: Environment,
    body: Annotated[Switch, Body()],
) -> Feature:
    feature = _feature_or_404(gateway, project_id, feature_id)
    current = feature.environments.get(environment, FeatureEnvironment())
    environments = feature.environments | {
        environment: current.model_copy(update={"enabled": body.enabled})
    }
    changed = feature.model_copy(update={"environments": environments})
    return write_feature(gateway, changed, scope.key_id, body.comment)


@router.get(
    "/{feature_id}/history",
    summary="A feature's versions, newest first: who, when, what changed",
    responses=example_response({"items": [examples.FEATURE_REVISION]}) | _ERRORS,
)
def history(
    _: AdminScope, gateway: GatewayDep, project_id: ProjectId, feature_id: DocumentId
) -> dict[str, list[FeatureRevision]]:
    project_or_404(gateway, project_id)
    found = revisions(gateway.state, project_id, feature_id)
    if not found and gateway.state.get(f"feature:{project_id}:{feature_id}") is None:
        raise not_found(f"feature '{feature_id}'", "feature_id")
    return {"items": list(reversed(found))}


@router.post(
    "/{feature_id}/revert",
    summary="Restore an earlier version (written as the next version)",
    responses=_ONE | _ERRORS,
)
def revert(
    scope: AdminScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    feature_id: DocumentId,
    body: Revert,
) -> Feature:
    project_or_404(gateway, project_id)
    revision = gateway.state.get(f"feature_revision:{project_id}:{feature_id}@{body.version}")
    if not isinstance(revision, FeatureRevision) or revision.document is None:
        raise not_found(f"version {body.version} of feature '{feature_id}'", "version")
    restored = revision.document.model_copy(update=dict.fromkeys(("updated_at", "updated_by")))
    comment = body.comment or f"revert to version {body.version}"
    return write_feature(gateway, restored, scope.key_id, comment)
