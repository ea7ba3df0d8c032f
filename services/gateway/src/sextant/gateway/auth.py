"""API keys and roles: ``Authorization: Bearer <key>``, looked up by hash in the followed config.

- A read key belongs to one project and carries a role there: ``viewer`` (the read API and the
  workspace), ``editor`` (also the project's config documents) or ``owner`` (also the
  project's settings, keys, audit log and persons). Every read query takes its project from
  the key, never from the request; an admin route names its project in the path, and a key of
  another project is refused.
- The admin key (``project_id`` ``*``) is the organisation's: every project's config, the
  projects themselves and the admin keys. It reads no data.
- Write and client keys are public (they sit in pages) and open nothing here.
- A person signed in to the workspace (the session cookie, :mod:`sextant.gateway.sessions`)
  has the role their account gives them in each project: the project is the path's, or for
  the read API the one ``X-Sextant-Project`` names (their only project by default); an
  organisation admin does what the admin key does. Their writes must come from the
  workspace's own origin.

A key beyond its role or project is answered 403 and recorded in the audit log; unknown keys
are counted per address, and recorded once they reach a threshold.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from sextant.gateway.audit import ACTOR, Caller
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.people import PROJECT_HEADER, selected_project, signed_in
from sextant.gateway.problems import ProblemError
from sextant.gateway.sessions import SAFE_METHODS, SESSION_COOKIE, same_origin
from sextant.schemas.audit import Actor, AuditAction
from sextant.schemas.config import ROLE_RANK, Account, ApiKey, KeyKind, Role, hash_key

_read_scheme = HTTPBearer(
    scheme_name="ReadKey",
    description="A project's read key (any role): `Authorization: Bearer <read key>`",
    auto_error=False,
)
_admin_scheme = HTTPBearer(
    scheme_name="AdminKey",
    description="The admin key, or a project's read key whose role allows the operation",
    auto_error=False,
)
_session_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="Session",
    description="A person signed in to the workspace (`POST /v1/auth/login`); writes must "
    "come from the workspace's origin",
    auto_error=False,
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
ORGANISATION = "*"


class Access(IntEnum):
    """What an operation needs, in increasing order."""

    READ = 1
    """Any role in the project (``viewer`` and up)."""
    CONFIG = 2
    """``editor`` and up: the project's config documents."""
    PROJECT = 3
    """``owner``: the project's settings, keys, audit log and persons."""
    ORGANISATION = 4
    """The admin key only: projects, admin keys, files spanning projects."""


_NEEDED_ROLE = {Access.READ: Role.VIEWER, Access.CONFIG: Role.EDITOR, Access.PROJECT: Role.OWNER}


@dataclass(frozen=True)
class Scope:
    """Who is asking and where: the key's id (a person's email), the project (``*`` for the
    organisation's operations) and the role there."""

    key_id: str
    project_id: str
    role: Role | None = None
    key_name: str = ""
    account_id: str | None = None
    """The signed-in person's account; None for a key."""

    @property
    def organisation(self) -> bool:
        return self.project_id == ORGANISATION


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


async def _key(
    request: Request, gateway: Gateway, credentials: HTTPAuthorizationCredentials | None
) -> ApiKey:
    if credentials is None or not credentials.credentials:
        raise ProblemError(
            401, "unauthorized", "send 'Authorization: Bearer <key>', or sign in", None, _CHALLENGE
        )
    key = gateway.state.key_for_hash(hash_key(credentials.credentials))
    if key is None or not key.usable_at(gateway.now()):
        reason = "unknown key" if key is None else f"key {key.id!r} revoked or expired"
        caller = Caller(Actor(kind="anonymous", id=""), _source(request))
        await anyio.to_thread.run_sync(gateway.audit.failed_attempt, caller, reason)
        raise ProblemError(401, "unauthorized", "unknown or revoked key", None, _CHALLENGE)
    caller = Caller(Actor(kind="key", id=key.config_key(), name=key.name), _source(request))
    ACTOR.set(caller)
    await anyio.to_thread.run_sync(gateway.audit.key_used, key, caller)
    return key


async def _deny(request: Request, gateway: Gateway, home_project: str, why: str) -> ProblemError:
    target = f"{request.method} {request.url.path}"
    project = request.path_params.get("project_id") or home_project
    await anyio.to_thread.run_sync(
        lambda: gateway.audit.record(AuditAction.ACCESS_DENIED, project, target, detail=why)
    )
    return ProblemError(403, "forbidden", why)


def _refusal(key: ApiKey, access: Access, project_id: str | None) -> str | None:
    """Why ``key`` may not do what needs ``access`` on ``project_id``; None if it may."""
    if key.key_kind is KeyKind.ADMIN:
        return "the admin key reads no data: use a read key" if access is Access.READ else None
    if key.key_kind is not KeyKind.READ:
        return f"a {key.key_kind.value} key is public and opens nothing here"
    if access is Access.ORGANISATION or (project_id is None and access is not Access.READ):
        return "this operation needs the admin key"
    if project_id is not None and project_id != key.project_id:
        return f"the key belongs to project '{key.project_id}', not '{project_id}'"
    role = key.project_role or Role.VIEWER
    needed = _NEEDED_ROLE[access]
    if ROLE_RANK[role] < ROLE_RANK[needed]:
        return f"the {role.value} role may not do this: it needs {needed.value}"
    return None


async def _person(request: Request, gateway: Gateway, session: str) -> Account:
    """The signed-in person; 401 for an ended session, 403 for a write from another site."""
    account = signed_in(gateway, session)
    if account is None:
        raise ProblemError(
            401, "unauthorized", "the session has ended: sign in again", None, _CHALLENGE
        )
    caller = Caller(
        Actor(kind="person", id=account.config_key(), name=account.display_name or account.email),
        _source(request),
    )
    ACTOR.set(caller)
    if request.method not in SAFE_METHODS and not same_origin(request, gateway.settings.public_url):
        raise await _deny(
            request,
            gateway,
            ORGANISATION,
            "a signed-in write must come from the workspace's own origin (Origin header)",
        )
    return account


def _person_refusal(account: Account, access: Access, project_id: str | None) -> str | None:
    """Why ``account`` may not do what needs ``access`` on ``project_id``; None if it may."""
    organisation = access is Access.ORGANISATION or project_id is None
    if organisation and access is not Access.READ:
        return None if account.org_admin else "this operation needs an organisation admin"
    if project_id is None:
        return (
            f"choose a project with the {PROJECT_HEADER} header"
            if account.roles
            else "this account has no role in any project"
        )
    if account.org_admin and access is not Access.READ:
        return None
    role = account.roles.get(project_id)
    if role is None:
        return f"this account has no role in project '{project_id}'"
    needed = _NEEDED_ROLE[access]
    if ROLE_RANK[role] < ROLE_RANK[needed]:
        return f"the {role.value} role may not do this: it needs {needed.value}"
    return None


async def _person_scope(request: Request, gateway: Gateway, session: str, access: Access) -> Scope:
    account = await _person(request, gateway, session)
    project_id = None if access is Access.ORGANISATION else selected_project(request, account)
    why = _person_refusal(account, access, project_id)
    if why is not None:
        raise await _deny(request, gateway, project_id or ORGANISATION, why)
    if access is Access.READ and gateway.state.project(str(project_id)) is None:
        raise ProblemError(404, "not-found", f"project '{project_id}' does not exist")
    role = account.roles.get(project_id) if project_id else None
    return Scope(
        account.email,
        project_id or ORGANISATION,
        role,
        account.display_name,
        account_id=account.id,
    )


def _requires(
    access: Access, scheme: HTTPBearer, *, by_path: bool = False
) -> Callable[..., Awaitable[Scope]]:
    """A dependency admitting keys allowed ``access`` (on the path's project, if any).

    ``by_path``: the organisation's operations when the path names no project."""

    async def check(
        request: Request,
        gateway: Gateway,
        credentials: HTTPAuthorizationCredentials | None,
        session: str | None,
    ) -> Scope:
        project_id = request.path_params.get("project_id")
        needed = Access.ORGANISATION if by_path and project_id is None else access
        if session and (credentials is None or not credentials.credentials):
            return await _person_scope(request, gateway, session, needed)
        key = await _key(request, gateway, credentials)
        why = _refusal(key, needed, project_id)
        if why is not None:
            raise await _deny(request, gateway, key.project_id, why)
        if key.key_kind is KeyKind.READ and gateway.state.project(key.project_id) is None:
            raise ProblemError(401, "unauthorized", "the key's project no longer exists")
        return Scope(key.id, key.project_id, key.project_role, key.name)

    # The scheme differs per dependency, so the signature FastAPI reads is built here.
    keyword = inspect.Parameter.KEYWORD_ONLY
    credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)]
    check.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", keyword, annotation=Request),
            inspect.Parameter("gateway", keyword, annotation=GatewayDep),
            inspect.Parameter("credentials", keyword, annotation=credentials),
            inspect.Parameter(
                "session", keyword, annotation=Annotated[str | None, Depends(_session_scheme)]
            ),
        ],
        return_annotation=Scope,
    )
    return check


read_scope = _requires(Access.READ, _read_scheme)
admin_scope = _requires(Access.CONFIG, _admin_scheme, by_path=True)
owner_scope = _requires(Access.PROJECT, _admin_scheme, by_path=True)
organisation_scope = _requires(Access.ORGANISATION, _admin_scheme)

ReadScope = Annotated[Scope, Depends(read_scope)]
"""Any role in the key's own project."""
AdminScope = Annotated[Scope, Depends(admin_scope)]
"""``editor`` of the path's project, or the admin key; the admin key alone without one."""
OwnerScope = Annotated[Scope, Depends(owner_scope)]
"""``owner`` of the path's project, or the admin key; the admin key alone without one."""
OrganisationScope = Annotated[Scope, Depends(organisation_scope)]
"""The admin key only."""
