"""People signing in to the workspace: password sign-in, single sign-on, who am I, sign-out.

A sign-in sets the session cookie (:mod:`sextant.gateway.sessions`). Failed sign-ins are
audited, and repeated ones lock the account out from that address for a while
(:mod:`sextant.gateway.login_throttle`); an unknown email takes as long to refuse as a wrong
password and gets the same answer.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Cookie, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from sextant.gateway.accounts_api import end_sessions, new_account, store_account
from sextant.gateway.audit import ACTOR, Caller
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.passwords import check_password, hash_password, password_problem
from sextant.gateway.people import (
    account_by_email,
    end_session,
    secret_key_missing,
    signed_in,
    start_session,
)
from sextant.gateway.problems import (
    ProblemError,
    example_response,
    invalid,
    problem_responses,
)
from sextant.gateway.sessions import (
    SESSION_COOKIE,
    clear_cookie,
    expected_origin,
    same_origin,
    set_cookie,
)
from sextant.gateway.sso import SSO_COOKIE, SSO_COOKIE_SECONDS, Identity, OpenIdClient, SsoError
from sextant.schemas.audit import Actor, AuditAction
from sextant.schemas.config import Account, Role

router = APIRouter(prefix="/v1/auth", tags=["auth"])
SessionCookie = Annotated[
    str | None,
    Cookie(
        alias=SESSION_COOKIE,
        description="The session cookie `POST /v1/auth/login` set (the browser sends it)",
        examples=["v1.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"],
    ),
]
PendingSignOn = Annotated[
    str | None,
    Cookie(
        alias=SSO_COOKIE,
        description="The pending single sign-on `GET /v1/auth/sso/login` set",
        examples=["v1.eyJzdGF0ZSI6Ii4uLiJ9.c2lnbmF0dXJl"],
    ),
]
CALLBACK_PATH = "/v1/auth/sso/callback"
_WRONG = "wrong email or password"
_ME_EXAMPLE: dict[str, Any] = {
    "id": "ada",
    "email": "ada@example.com",
    "display_name": "Ada Lovelace",
    "org_admin": False,
    "projects": [{"id": "shop", "name": "Shop", "role": "editor"}],
}


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"email": "ada@example.com", "password": "correct horse battery staple"}
        },
    )

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"everywhere": True}})

    everywhere: bool = False
    """End every session of the account, on every device, not only this one."""


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "current_password": "correct horse battery staple",
                "new_password": "a longer and newer passphrase",
            }
        },
    )

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(max_length=1024, description="Stored as an argon2 hash, never shown")


class ProjectRole(BaseModel):
    id: str
    name: str
    role: Role


class Me(BaseModel):
    """The signed-in person and the projects they may open."""

    model_config = ConfigDict(json_schema_extra={"example": _ME_EXAMPLE})

    id: str
    email: str
    display_name: str
    org_admin: bool
    projects: list[ProjectRole]

    @classmethod
    def of(cls, gateway: Gateway, account: Account) -> Me:
        projects = []
        for project_id, role in sorted(account.roles.items()):
            project = gateway.state.project(project_id)
            if project is not None:
                projects.append(ProjectRole(id=project_id, name=project.name, role=role))
        return cls(
            id=account.id,
            email=account.email,
            display_name=account.display_name,
            org_admin=account.org_admin,
            projects=projects,
        )


class Status(BaseModel):
    """How people may sign in here, and who is signed in (null: nobody) — for a page that
    must not treat "not signed in" as an error."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"password": True, "sso": True, "person": _ME_EXAMPLE}}
    )

    password: bool
    sso: bool
    person: Me | None


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _person(account: Account) -> Actor:
    return Actor(kind="person", id=account.config_key(), name=account.display_name or account.email)


def _audit(
    gateway: Gateway,
    request: Request,
    action: AuditAction,
    actor: Actor,
    target: str = "",
    detail: str = "",
) -> None:
    caller = Caller(actor, _address(request))
    gateway.audit.record(action, "*", target, detail=detail, caller=caller)


def _refuse_foreign_origin(gateway: Gateway, request: Request) -> None:
    """A sign-in form posted from another site would sign the browser in as someone else."""
    if "origin" in request.headers and not same_origin(request, gateway.settings.public_url):
        raise ProblemError(
            403, "forbidden", "sign in from the workspace's own page (Origin header)", "Origin"
        )


def _check_login(gateway: Gateway, request: Request, email: str, password: str) -> Account:
    """The account ``email`` and ``password`` open; 401 (audited) or 429 when locked out."""
    address = _address(request)
    throttle = gateway.login_throttle
    wait = throttle.locked_for(email, address)
    if wait > 0:
        raise ProblemError(
            429,
            "locked-out",
            "too many failed sign-ins for this account from this address: try again later",
            "email",
            {"Retry-After": str(int(wait) + 1)},
        )
    account = account_by_email(gateway.state, email)
    check = check_password(account.password_hash if account else "", password)
    if account is not None and check.matches and not account.disabled:
        throttle.succeeded(email, address)
        if check.needs_rehash:
            account = store_account(
                gateway, account.model_copy(update={"password_hash": hash_password(password)})
            )
        return account
    why = "no such account" if account is None else "wrong password"
    if account is not None and check.matches:
        why = "account disabled"
    anonymous = Actor(kind="anonymous", id=email)
    target = account.config_key() if account else ""
    _audit(gateway, request, AuditAction.LOGIN_FAILED, anonymous, target, why)
    if throttle.failed(email, address):
        detail = f"{throttle.max_failures} failed sign-ins; locked out from this address"
        _audit(gateway, request, AuditAction.LOGIN_LOCKED, anonymous, target, detail)
    raise ProblemError(401, "unauthorized", _WRONG, "password")


@router.get("/status", summary="How people may sign in here, and who is signed in")
def status(gateway: GatewayDep, session: SessionCookie = None) -> Status:
    account = signed_in(gateway, session) if session else None
    return Status(
        password=gateway.sessions is not None,
        sso=gateway.sso is not None,
        person=Me.of(gateway, account) if account else None,
    )


@router.post(
    "/login",
    summary="Sign in with email and password (sets the session cookie)",
    responses=example_response(_ME_EXAMPLE) | problem_responses(401, 403, 422, 429, 503),
)
async def login(
    body: LoginRequest, request: Request, response: Response, gateway: GatewayDep
) -> Me:
    _refuse_foreign_origin(gateway, request)
    if gateway.sessions is None:
        raise secret_key_missing()
    email = body.email.strip().lower()
    account = await anyio.to_thread.run_sync(_check_login, gateway, request, email, body.password)
    start_session(gateway, request, response, account)
    _audit(gateway, request, AuditAction.LOGIN_SUCCEEDED, _person(account), account.config_key())
    return Me.of(gateway, account)


@router.post(
    "/logout",
    status_code=204,
    summary="Sign out (`everywhere`: end every session of the account)",
    responses={**problem_responses(403, 422), 204: {"description": "Signed out"}},
)
async def logout(
    request: Request,
    gateway: GatewayDep,
    body: Annotated[LogoutRequest | None, Body(examples=[{"everywhere": True}])] = None,
    session: SessionCookie = None,
) -> Response:
    response = Response(status_code=204)
    account = signed_in(gateway, session) if session else None
    if account is not None:
        if not same_origin(request, gateway.settings.public_url):
            raise ProblemError(
                403, "forbidden", "sign out from the workspace's own page (Origin header)"
            )
        ACTOR.set(Caller(_person(account), _address(request)))
        if body is not None and body.everywhere:
            await anyio.to_thread.run_sync(end_sessions, gateway, account)
        detail = "every session" if body is not None and body.everywhere else "this session"
        _audit(gateway, request, AuditAction.LOGOUT, _person(account), account.config_key(), detail)
    end_session(gateway, request, response)
    return response


def _new_password(gateway: Gateway, account: Account, password: str) -> Account:
    """``account`` with ``password``; its other sessions end on every gateway."""
    why = password_problem(password)
    if why is not None:
        raise invalid(f"new_password: {why}", "new_password")
    changes = {
        "password_hash": hash_password(password),
        "session_generation": account.session_generation + 1,
    }
    return store_account(gateway, account.model_copy(update=changes))


@router.post(
    "/password",
    summary="Change one's own password (every other session of the account ends)",
    responses=example_response(_ME_EXAMPLE) | problem_responses(401, 403, 422, 429, 503),
)
async def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    gateway: GatewayDep,
    session: SessionCookie = None,
) -> Me:
    account = signed_in(gateway, session) if session else None
    if account is None:
        raise ProblemError(401, "unauthorized", "not signed in (or the session has ended)")
    if not same_origin(request, gateway.settings.public_url):
        raise ProblemError(
            403, "forbidden", "change the password from the workspace's own page (Origin header)"
        )
    checked = await anyio.to_thread.run_sync(
        _check_login, gateway, request, account.email, body.current_password
    )
    ACTOR.set(Caller(_person(checked), _address(request)))
    changed = await anyio.to_thread.run_sync(_new_password, gateway, checked, body.new_password)
    start_session(gateway, request, response, changed)
    _audit(gateway, request, AuditAction.PASSWORD_CHANGED, _person(changed), changed.config_key())
    return Me.of(gateway, changed)


@router.get(
    "/me",
    summary="The signed-in person and their projects",
    responses=example_response(_ME_EXAMPLE) | problem_responses(401),
)
def me(gateway: GatewayDep, session: SessionCookie = None) -> Me:
    account = signed_in(gateway, session) if session else None
    if account is None:
        raise ProblemError(401, "unauthorized", "not signed in (or the session has ended)")
    return Me.of(gateway, account)


# --- Single sign-on -----------------------------------------------------------------------


def _sso(gateway: Gateway) -> OpenIdClient:
    if gateway.sso is None:
        raise ProblemError(404, "not-found", "single sign-on is not configured here")
    return gateway.sso


def _callback_url(gateway: Gateway, request: Request) -> str:
    return expected_origin(request, gateway.settings.public_url) + CALLBACK_PATH


@router.get(
    "/sso/login",
    summary="Sign in with single sign-on: redirects to the OpenID provider",
    status_code=303,
    responses={**problem_responses(404, 503), 303: {"description": "To the provider"}},
)
async def sso_login(request: Request, gateway: GatewayDep) -> Response:
    client = _sso(gateway)
    try:
        url, pending = await client.begin(_callback_url(gateway, request))
    except SsoError as error:
        raise ProblemError(503, "sso-unavailable", str(error)) from error
    response = RedirectResponse(url, status_code=303)
    public_url = gateway.settings.public_url
    set_cookie(response, request, public_url, SSO_COOKIE, pending, SSO_COOKIE_SECONDS)
    return response


def _sso_account(gateway: Gateway, identity: Identity) -> Account:
    """The account a provider's identity signs in to; created at the first sign-in when its
    email's domain is allowed. :class:`SsoError` otherwise."""
    if not identity.email or not identity.email_verified:
        raise SsoError("the provider did not confirm this person's email address")
    account = account_by_email(gateway.state, identity.email)
    if account is not None:
        if account.disabled:
            raise SsoError("this account is disabled")
        return account
    domain = identity.email.rsplit("@", 1)[-1]
    allowed = {d.strip().lower() for d in gateway.settings.oidc_allowed_domains}
    if domain not in allowed:
        raise SsoError(f"no account for {identity.email}: ask an organisation admin for one")
    roles = {
        project: role
        for project, role in gateway.settings.oidc_default_roles.items()
        if gateway.state.project(project) is not None
    }
    return new_account(gateway, identity.email, identity.name, roles)


@router.get(
    CALLBACK_PATH.removeprefix("/v1/auth"),
    summary="Where the OpenID provider sends the person back (sets the session cookie)",
    status_code=303,
    responses={**problem_responses(401, 404), 303: {"description": "To the workspace"}},
)
async def sso_callback(
    request: Request,
    gateway: GatewayDep,
    code: Annotated[str, Query(max_length=2000, examples=["4Kx9Qh2t"])] = "",
    state: Annotated[str, Query(max_length=200, examples=["Zr3Jt8YwQ0"])] = "",
    error: Annotated[str, Query(max_length=200, examples=["access_denied"])] = "",
    pending: PendingSignOn = None,
) -> Response:
    client = _sso(gateway)
    anonymous = Actor(kind="anonymous", id="")
    try:
        if error or not code:
            raise SsoError(f"the provider did not sign the person in: {error or 'no code'}")
        identity = await client.finish(code, state, pending or "", _callback_url(gateway, request))
        account = await anyio.to_thread.run_sync(_sso_account, gateway, identity)
    except SsoError as failure:
        detail = f"single sign-on: {failure}"
        await anyio.to_thread.run_sync(
            lambda: _audit(gateway, request, AuditAction.LOGIN_FAILED, anonymous, detail=detail)
        )
        raise ProblemError(401, "sso-failed", str(failure)) from failure
    response = RedirectResponse("/#/outcomes", status_code=303)
    clear_cookie(response, request, gateway.settings.public_url, SSO_COOKIE)
    start_session(gateway, request, response, account)
    _audit(
        gateway,
        request,
        AuditAction.LOGIN_SUCCEEDED,
        _person(account),
        account.config_key(),
        "single sign-on",
    )
    return response
