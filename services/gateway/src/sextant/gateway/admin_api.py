"""The admin API: projects, keys, metrics, experiments, alert rules and tracking plans.

Every write is a document (or a tombstone) on the ``config`` topic, the source of truth every
part follows; nothing is written anywhere else. A write answers once this gateway's own
follower shows it (within ``config_visibility_seconds``), so a read that follows sees it; the
other parts see it within seconds too. Secrets of new keys are returned once and only their
SHA-256 hashes are stored. Secrets the parts need in clear (webhook signing secrets) are
sealed under the master key before they are written, and answers show them sealed only; a
sealed value sent back (a rule read, edited and replaced) is kept as it is.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio.to_thread
import orjson
import yaml
from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sextant.core.config_file import ConfigFile, describe_yaml_error, documents_from_file
from sextant.core.feature_versions import versioned
from sextant.core.secrets import new_payload_key
from sextant.gateway import examples
from sextant.gateway.auth import AdminScope, OrganisationScope, OwnerScope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.pages import IdCursor, Limit, Page, page_by_id
from sextant.gateway.problems import (
    NO_CONTENT,
    ProblemError,
    example_response,
    not_found,
    problem_responses,
)
from sextant.schemas.config import (
    ALL_PROJECTS,
    IDENTIFIER,
    AlertRule,
    ApiKey,
    ConfigDocument,
    Experiment,
    Feature,
    FeatureRevision,
    Identifier,
    KeyKind,
    MetricDefinition,
    Outcome,
    Project,
    Role,
    Survey,
    TrackingPlan,
    hash_key,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ProjectId = Annotated[str, Path(pattern=IDENTIFIER, examples=["shop"])]
DocumentId = Annotated[str, Path(pattern=IDENTIFIER, examples=["revenue"])]
_ERRORS = problem_responses(401, 403, 404, 422, 503)


def validation_problem(error: ValidationError) -> ProblemError:
    """A pydantic error on a request body as a 422 problem naming the field."""
    first = error.errors()[0]
    parameter = ".".join(str(p) for p in first["loc"]) or "body"
    return ProblemError(422, "invalid-parameter", f"{parameter}: {first['msg']}", parameter)


def _commit(
    gateway: Gateway, documents: Sequence[ConfigDocument], deletes: Sequence[str] = ()
) -> list[Any]:
    """Store ``documents`` (their secrets sealed) and ``deletes``; the documents as stored,
    which are what the answer may show."""
    documents = [gateway.seal(document) for document in documents]
    for document in documents:
        try:
            orjson.dumps(document.model_dump(mode="json"))
        except (orjson.JSONEncodeError, TypeError) as error:
            # e.g. an integer beyond 64 bits: valid to the model, not storable as JSON.
            raise ProblemError(
                422, "invalid-parameter", f"{document.config_key()}: {error}", "body"
            ) from error
    gateway.publish(documents, deletes)
    expected: dict[str, ConfigDocument | None] = {d.config_key(): d for d in documents}
    expected |= dict.fromkeys(deletes)
    gateway.wait_visible(expected)
    return documents


def commit_documents(gateway: Gateway, documents: Sequence[ConfigDocument]) -> None:
    """Store documents the gateway writes itself (guardrails, ramps), as the admin API does."""
    _commit(gateway, documents)


def project_or_404(gateway: Gateway, project_id: str) -> Project:
    project = gateway.state.project(project_id)
    if project is None:
        raise not_found(f"project '{project_id}'", "project_id")
    return project


def _with_body(
    endpoint: Callable[..., Any], body_type: type[BaseModel], example: dict[str, Any]
) -> Callable[..., Any]:
    """Give ``endpoint``'s ``body`` parameter a model built at run time, and its example."""
    signature = inspect.signature(endpoint, eval_str=True)
    body = Annotated[body_type, Body(openapi_examples={"example": {"value": example}})]  # type: ignore[valid-type]
    parameters = [
        p.replace(annotation=body) if name == "body" else p
        for name, p in signature.parameters.items()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return endpoint


def _input_model(cls: type[BaseModel], id_required: bool) -> type[BaseModel]:
    """The request body of a document: its fields without ``kind`` and ``project_id``
    (both come from the path), ``id`` optional where the path names it."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in cls.model_fields.items()
        if name not in ("kind", "project_id", "id")
    }
    fields["id"] = (Identifier, ...) if id_required else (Identifier | None, None)
    suffix = "Create" if id_required else "Replace"
    return create_model(
        f"{cls.__name__}{suffix}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def _build(cls: type[BaseModel], body: BaseModel, project_id: str, doc_id: str) -> Any:
    data = body.model_dump(exclude_unset=True, exclude={"id"})
    try:
        return cls.model_validate(data | {"id": doc_id, "project_id": project_id})
    except ValidationError as error:
        raise validation_problem(error) from error


# --- Projects -----------------------------------------------------------------------------


ProjectCreate = _input_model(Project, id_required=True)
ProjectReplace = _input_model(Project, id_required=False)


@router.get(
    "/projects",
    summary="List projects",
    responses=example_response({"items": [examples.PROJECT], "next_cursor": None}) | _ERRORS,
)
def list_projects(
    _: OrganisationScope, gateway: GatewayDep, limit: Limit = 100, cursor: IdCursor = None
) -> Page[Project]:
    return page_by_id(gateway.state.of_kind(Project), lambda p: p.id, limit, cursor)


def _create_project(
    _: OrganisationScope,
    gateway: GatewayDep,
    body: Any,
) -> Project:
    project_id = str(body.id)
    if gateway.state.project(project_id) is not None:
        raise ProblemError(409, "conflict", f"project '{project_id}' exists", "id")
    project: Project = _build(Project, body, project_id, project_id)
    stored: Project = _commit(gateway, [project])[0]
    return stored


router.post(
    "/projects",
    status_code=201,
    summary="Create a project",
    response_model=Project,
    responses=example_response(examples.PROJECT, 201) | _ERRORS | problem_responses(409),
)(_with_body(_create_project, ProjectCreate, examples.PROJECT_INPUT))


@router.get(
    "/projects/{project_id}",
    summary="Get a project",
    responses=example_response(examples.PROJECT) | _ERRORS,
)
def get_project(_: AdminScope, gateway: GatewayDep, project_id: ProjectId) -> Project:
    return project_or_404(gateway, project_id)


def _replace_project(
    _: OwnerScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    body: Any,
) -> Project:
    if body.id not in (None, project_id):
        raise ProblemError(422, "invalid-parameter", "id differs from the path", "id")
    project: Project = _build(Project, body, project_id, project_id)
    stored: Project = _commit(gateway, [project])[0]
    return stored


router.put(
    "/projects/{project_id}",
    summary="Create or replace a project",
    response_model=Project,
    responses=example_response(examples.PROJECT) | _ERRORS,
)(_with_body(_replace_project, ProjectReplace, examples.PROJECT_INPUT))


@router.delete(
    "/projects/{project_id}",
    status_code=204,
    summary="Delete a project with all its keys and definitions",
    responses=NO_CONTENT | _ERRORS,
)
def delete_project(_: OrganisationScope, gateway: GatewayDep, project_id: ProjectId) -> Response:
    project_or_404(gateway, project_id)
    owned = [
        doc.config_key()
        for cls in (
            ApiKey,
            MetricDefinition,
            Experiment,
            AlertRule,
            TrackingPlan,
            Feature,
            FeatureRevision,
        )
        for doc in gateway.state.of_kind(cls, project_id)
    ]
    project_key = f"project:{project_id}:{project_id}"
    # The project goes last: a reader never sees live keys of a deleted project.
    _commit(gateway, [], [*owned, project_key])
    return Response(status_code=204)


# --- Keys ---------------------------------------------------------------------------------


class KeyView(BaseModel):
    """An API key as the admin API shows it: never its secret, nor its hash."""

    model_config = ConfigDict(json_schema_extra={"example": examples.KEY_VIEW})

    id: str
    project_id: str
    key_kind: KeyKind
    name: str
    revoked: bool
    created_at: datetime | None
    environment: str | None = None
    """A client key's environment."""
    encrypted: bool = False
    """A client key whose payload is encrypted (its payload key is shown at creation only)."""
    role: Role | None = None
    """A read key's role in its project."""
    expires_at: datetime | None = None
    """The end of a rotated key's overlap: it stops working then."""
    last_used_at: datetime | None = None
    """When the key was last used here (within ``key_usage_resolution_seconds`` after a
    restart or on another gateway)."""

    @classmethod
    def of(cls, key: ApiKey, last_used_at: datetime | None = None) -> KeyView:
        return cls(
            id=key.id,
            project_id=key.project_id,
            key_kind=key.key_kind,
            name=key.name,
            revoked=key.revoked,
            created_at=key.created_at,
            environment=key.environment,
            encrypted=bool(key.payload_key),
            role=key.project_role,
            expires_at=key.expires_at,
            last_used_at=last_used_at,
        )


class KeyCreate(BaseModel):
    """A new key; ``id`` defaults to a random one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": examples.KEY_INPUT})

    id: Identifier | None = None
    kind: Literal["write", "read", "client"]
    name: str = Field(default="", max_length=200)
    environment: Identifier | None = None
    """Client keys: the environment whose features the key reads (default ``production``)."""
    encrypted: bool = False
    """Client keys: encrypt the payload (GrowthBook's ``decryptionKey``)."""
    role: Role | None = None
    """Read keys: the key's role in the project (default ``viewer``)."""


class KeyRotate(BaseModel):
    """How long the old key keeps working beside the new one."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"overlap_seconds": 86400}}
    )

    overlap_seconds: int = Field(default=86_400, ge=0, le=90 * 86_400)


class AdminKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"id": "ops", "name": "Operations"}}
    )

    id: Identifier | None = None
    name: str = Field(default="", max_length=200)


class KeyCreated(BaseModel):
    """The new key and its secret: shown this once, stored only as a hash."""

    model_config = ConfigDict(json_schema_extra={"example": examples.KEY_CREATED})

    key: KeyView
    secret: str
    payload_key: str | None = None
    """An encrypted client key's decryption key (the SDKs' ``decryptionKey``): shown once."""


def _new_key(
    gateway: Gateway,
    project_id: str,
    kind: KeyKind,
    key_id: str | None,
    name: str,
    environment: str | None = None,
    encrypted: bool = False,
    role: Role | None = None,
) -> KeyCreated:
    key_id = key_id or f"{kind.value}-{secrets.token_hex(4)}"
    if gateway.state.get(f"api_key:{project_id}:{key_id}") is not None:
        raise ProblemError(409, "conflict", f"key '{key_id}' exists", "id")
    client = kind is KeyKind.CLIENT
    if role is not None and kind is not KeyKind.READ:
        raise ProblemError(422, "invalid-parameter", "only read keys have a role", "role")
    if not client and (environment is not None or encrypted):
        raise ProblemError(
            422, "invalid-parameter", "only client keys have an environment", "environment"
        )
    # GrowthBook's SDKs put the client key in URL paths: letters, digits and dashes.
    secret = (
        f"sdk-{secrets.token_hex(16)}" if client else f"sx_{kind.value}_{secrets.token_urlsafe(24)}"
    )
    payload_key = new_payload_key() if client and encrypted else None
    key = ApiKey(
        id=key_id,
        project_id=project_id,
        key_kind=kind,
        key_hash=hash_key(secret),
        name=name or key_id,
        created_at=datetime.now(UTC),
        environment=(environment or "production") if client else None,
        payload_key=payload_key or "",
        role=role,
    )
    _commit(gateway, [key])
    return KeyCreated(key=KeyView.of(key), secret=secret, payload_key=payload_key)


def _stored_key(gateway: Gateway, project_id: str, key_id: str) -> ApiKey:
    key = gateway.state.get(f"api_key:{project_id}:{key_id}")
    if not isinstance(key, ApiKey):
        raise not_found(f"key '{key_id}'", "key_id")
    return key


def _view(gateway: Gateway, key: ApiKey) -> KeyView:
    return KeyView.of(key, gateway.audit.last_used(key))


def _revoke(gateway: Gateway, project_id: str, key_id: str) -> KeyView:
    revoked = _stored_key(gateway, project_id, key_id).model_copy(update={"revoked": True})
    _commit(gateway, [revoked])
    return _view(gateway, revoked)


_KEYS_PAGE = example_response({"items": [examples.KEY_VIEW], "next_cursor": None})


@router.get(
    "/projects/{project_id}/keys", summary="List a project's keys", responses=_KEYS_PAGE | _ERRORS
)
def list_keys(
    _: OwnerScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    limit: Limit = 100,
    cursor: IdCursor = None,
) -> Page[KeyView]:
    project_or_404(gateway, project_id)
    keys = [_view(gateway, k) for k in gateway.state.of_kind(ApiKey, project_id)]
    return page_by_id(keys, lambda k: k.id, limit, cursor)


@router.post(
    "/projects/{project_id}/keys",
    status_code=201,
    summary="Create a write or read key (the secret is shown once)",
    responses=example_response(examples.KEY_CREATED, 201) | _ERRORS | problem_responses(409),
)
def create_key(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, body: KeyCreate
) -> KeyCreated:
    project_or_404(gateway, project_id)
    return _new_key(
        gateway,
        project_id,
        KeyKind(body.kind),
        body.id,
        body.name,
        body.environment,
        body.encrypted,
        body.role,
    )


@router.get(
    "/projects/{project_id}/keys/{key_id}",
    summary="Get a key (without its secret)",
    responses=example_response(examples.KEY_VIEW) | _ERRORS,
)
def get_key(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, key_id: DocumentId
) -> KeyView:
    return _view(gateway, _stored_key(gateway, project_id, key_id))


@router.delete(
    "/projects/{project_id}/keys/{key_id}",
    summary="Revoke a key",
    responses=example_response(examples.KEY_VIEW | {"revoked": True}) | _ERRORS,
)
def revoke_key(
    _: OwnerScope, gateway: GatewayDep, project_id: ProjectId, key_id: DocumentId
) -> KeyView:
    return _revoke(gateway, project_id, key_id)


@router.post(
    "/projects/{project_id}/keys/{key_id}/rotate",
    status_code=201,
    summary="Rotate a key: a new secret now, the old one working until the overlap ends",
    responses=example_response(examples.KEY_CREATED, 201) | _ERRORS,
)
def rotate_key(
    _: OwnerScope,
    gateway: GatewayDep,
    project_id: ProjectId,
    key_id: DocumentId,
    body: KeyRotate,
) -> KeyCreated:
    old = _stored_key(gateway, project_id, key_id)
    if not old.usable_at(gateway.now()):
        raise ProblemError(409, "conflict", f"key '{key_id}' is revoked or expired", "key_id")
    overlap = timedelta(seconds=body.overlap_seconds)
    created = _new_key(
        gateway,
        project_id,
        old.key_kind,
        None,
        old.name,
        old.environment,
        bool(old.payload_key),
        old.role,
    )
    _commit(gateway, [old.model_copy(update={"expires_at": gateway.now() + overlap})])
    return created


_ADMIN_KEY_VIEW = examples.KEY_VIEW | {"id": "ops", "project_id": "*", "key_kind": "admin"}


@router.get(
    "/admin-keys",
    summary="List admin keys",
    responses=example_response({"items": [_ADMIN_KEY_VIEW], "next_cursor": None}) | _ERRORS,
)
def list_admin_keys(
    _: OrganisationScope, gateway: GatewayDep, limit: Limit = 100, cursor: IdCursor = None
) -> Page[KeyView]:
    keys = [_view(gateway, k) for k in gateway.state.of_kind(ApiKey, ALL_PROJECTS)]
    return page_by_id(keys, lambda k: k.id, limit, cursor)


@router.post(
    "/admin-keys",
    status_code=201,
    summary="Create an admin key (the secret is shown once)",
    responses=example_response({"key": _ADMIN_KEY_VIEW, "secret": "sx_admin_EXAMPLE"}, 201)
    | _ERRORS
    | problem_responses(409),
)
def create_admin_key(_: OrganisationScope, gateway: GatewayDep, body: AdminKeyCreate) -> KeyCreated:
    return _new_key(gateway, ALL_PROJECTS, KeyKind.ADMIN, body.id, body.name)


@router.delete(
    "/admin-keys/{key_id}",
    summary="Revoke an admin key (not the one making the request)",
    responses=example_response(_ADMIN_KEY_VIEW | {"revoked": True})
    | _ERRORS
    | problem_responses(409),
)
def revoke_admin_key(scope: OrganisationScope, gateway: GatewayDep, key_id: DocumentId) -> KeyView:
    if key_id == scope.key_id:
        raise ProblemError(409, "conflict", "a key cannot revoke itself", "key_id")
    return _revoke(gateway, ALL_PROJECTS, key_id)


# --- Project documents: metrics, experiments, alert rules, tracking plans -----------------


def _register_documents(
    path: str,
    cls: type[BaseModel],
    kind: str,
    label: str,
    example: dict[str, Any],
    example_input: dict[str, Any],
) -> None:
    """List, create, get, replace and delete one kind of project document."""
    create_model_ = _input_model(cls, id_required=True)
    replace_model = _input_model(cls, id_required=False)
    one = example_response(example)

    def list_documents(
        _: AdminScope,
        gateway: GatewayDep,
        project_id: ProjectId,
        limit: Limit = 100,
        cursor: IdCursor = None,
    ) -> Page[Any]:
        project_or_404(gateway, project_id)
        return page_by_id(gateway.state.of_kind(cls, project_id), lambda d: d.id, limit, cursor)

    def create_document(
        _: AdminScope,
        gateway: GatewayDep,
        project_id: ProjectId,
        body: Any,
    ) -> Any:
        project_or_404(gateway, project_id)
        doc_id = str(body.id)
        if gateway.state.get(f"{kind}:{project_id}:{doc_id}") is not None:
            raise ProblemError(409, "conflict", f"{label} '{doc_id}' exists", "id")
        document = _build(cls, body, project_id, doc_id)
        return _commit(gateway, [document])[0]

    def get_document(
        _: AdminScope, gateway: GatewayDep, project_id: ProjectId, doc_id: DocumentId
    ) -> Any:
        document = gateway.state.get(f"{kind}:{project_id}:{doc_id}")
        if document is None:
            raise not_found(f"{label} '{doc_id}'", "doc_id")
        return document

    def replace_document(
        _: AdminScope,
        gateway: GatewayDep,
        project_id: ProjectId,
        doc_id: DocumentId,
        body: Any,
    ) -> Any:
        project_or_404(gateway, project_id)
        if body.id not in (None, doc_id):
            raise ProblemError(422, "invalid-parameter", "id differs from the path", "id")
        document = _build(cls, body, project_id, doc_id)
        return _commit(gateway, [document])[0]

    def delete_document(
        _: AdminScope, gateway: GatewayDep, project_id: ProjectId, doc_id: DocumentId
    ) -> Response:
        key = f"{kind}:{project_id}:{doc_id}"
        if gateway.state.get(key) is None:
            raise not_found(f"{label} '{doc_id}'", "doc_id")
        _commit(gateway, [], [key])
        return Response(status_code=204)

    name = path.replace("-", "_")
    base = f"/projects/{{project_id}}/{path}"
    article = "an" if label[0] in "aeiou" else "a"
    router.get(
        base,
        summary=f"List a project's {label}s",
        response_model=Page[cls],  # type: ignore[valid-type]
        operation_id=f"list_{name}",
        responses=example_response({"items": [example], "next_cursor": None}) | _ERRORS,
    )(list_documents)
    router.post(
        base,
        status_code=201,
        summary=f"Create {article} {label}",
        response_model=cls,
        operation_id=f"create_{name}",
        responses=example_response(example, 201) | _ERRORS | problem_responses(409),
    )(_with_body(create_document, create_model_, example_input))
    router.get(
        f"{base}/{{doc_id}}",
        summary=f"Get {article} {label}",
        response_model=cls,
        operation_id=f"get_{name}",
        responses=one | _ERRORS,
    )(get_document)
    router.put(
        f"{base}/{{doc_id}}",
        summary=f"Create or replace {article} {label}",
        response_model=cls,
        operation_id=f"replace_{name}",
        responses=one | _ERRORS,
    )(_with_body(replace_document, replace_model, example_input))
    router.delete(
        f"{base}/{{doc_id}}",
        status_code=204,
        summary=f"Delete {article} {label}",
        operation_id=f"delete_{name}",
        responses=NO_CONTENT | _ERRORS,
    )(delete_document)


_register_documents(
    "metrics",
    MetricDefinition,
    "metric",
    "metric definition",
    examples.METRIC,
    examples.METRIC_INPUT,
)
_register_documents(
    "experiments",
    Experiment,
    "experiment",
    "experiment",
    examples.EXPERIMENT,
    examples.EXPERIMENT_INPUT,
)
_register_documents(
    "alert-rules",
    AlertRule,
    "alert_rule",
    "alert rule",
    examples.ALERT_RULE,
    examples.ALERT_RULE_INPUT,
)
_register_documents(
    "tracking-plans",
    TrackingPlan,
    "tracking_plan",
    "tracking plan",
    examples.TRACKING_PLAN,
    examples.TRACKING_PLAN_INPUT,
)
_register_documents(
    "outcomes",
    Outcome,
    "outcome",
    "outcome",
    examples.OUTCOME,
    examples.OUTCOME_INPUT,
)
_register_documents(
    "surveys",
    Survey,
    "survey",
    "survey",
    examples.SURVEY,
    examples.SURVEY_INPUT,
)


# --- The config file format ---------------------------------------------------------------


class ApplyResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": examples.APPLY_RESULT})

    applied: int
    keys: list[str]


_YAML_TYPES = (
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
    "application/json",
)


@router.post(
    "/apply",
    summary="Apply a config file (the YAML format of `sextant config apply`)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}, "example": examples.APPLY_YAML}
            },
        }
    },
    responses=example_response(examples.APPLY_RESULT) | _ERRORS | problem_responses(400, 415),
)
async def apply_file(
    scope: OrganisationScope, gateway: GatewayDep, request: Request
) -> ApplyResult:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _YAML_TYPES:
        raise ProblemError(
            415, "unsupported-media-type", "send the file as application/yaml", "body"
        )
    try:
        raw = yaml.safe_load(await request.body()) or {}
        config = ConfigFile.model_validate(raw)
        documents = documents_from_file(config)
    except yaml.YAMLError as error:
        raise ProblemError(400, "invalid-yaml", describe_yaml_error(error), "body") from error
    except ValidationError as error:
        raise validation_problem(error) from error
    except (TypeError, ValueError) as error:
        raise ProblemError(422, "invalid-parameter", str(error), "body") from error
    # Features get their next version (and a revision); unchanged ones are left as they are.
    documents = versioned(gateway.state, documents, by=scope.key_id, now=datetime.now(UTC))
    await anyio.to_thread.run_sync(_commit, gateway, documents)
    return ApplyResult(applied=len(documents), keys=[d.config_key() for d in documents])
