"""The admin API of accounts: the people who sign in to the workspace, and their roles.

For the admin key or an organisation admin. Every change is a config document (audited with
who, when, from where, and the account before and after, without its password hash).
Passwords are taken in clear over the request, hashed with argon2 and never shown again;
changing a password or disabling an account ends its sessions on every gateway.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sextant.gateway.admin_api import commit_documents, validation_problem
from sextant.gateway.auth import OrganisationScope, Scope
from sextant.gateway.context import Gateway, GatewayDep
from sextant.gateway.pages import IdCursor, Limit, Page, page_by_id
from sextant.gateway.passwords import hash_password, password_problem
from sextant.gateway.people import account_by_email, account_by_id
from sextant.gateway.problems import (
    ProblemError,
    example_response,
    invalid,
    not_found,
    problem_responses,
)
from sextant.schemas.config import IDENTIFIER, Account, Email, Identifier, Role

router = APIRouter(prefix="/v1/admin", tags=["accounts"])
AccountId = Annotated[str, Path(pattern=IDENTIFIER, examples=["ada"])]
_ERRORS = problem_responses(401, 403, 404, 422, 503)
_VIEW_EXAMPLE: dict[str, Any] = {
    "id": "ada",
    "email": "ada@example.com",
    "display_name": "Ada Lovelace",
    "roles": {"shop": "editor"},
    "org_admin": False,
    "disabled": False,
    "password_set": True,
    "created_at": "2025-03-01T09:30:00Z",
    "updated_at": "2025-03-01T09:30:00Z",
}
Password = Annotated[
    str,
    Field(
        max_length=1024,
        description="In clear over the request; stored as an argon2 hash, never shown",
    ),
]


class AccountView(BaseModel):
    """An account as the API shows it: never its password or its hash."""

    model_config = ConfigDict(json_schema_extra={"example": _VIEW_EXAMPLE})

    id: str
    email: str
    display_name: str
    roles: dict[str, Role]
    org_admin: bool
    disabled: bool
    password_set: bool
    """False for an account that signs in by single sign-on only."""
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.id,
            email=account.email,
            display_name=account.display_name,
            roles=dict(account.roles),
            org_admin=account.org_admin,
            disabled=account.disabled,
            password_set=bool(account.password_hash),
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class AccountCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "email": "ada@example.com",
                "display_name": "Ada Lovelace",
                "password": "correct horse battery staple",
                "roles": {"shop": "editor"},
            }
        },
    )

    id: Identifier | None = None
    """Default: a random one."""
    email: Email
    display_name: str = Field(default="", max_length=200)
    password: Password | None = None
    """None: the person signs in by single sign-on only."""
    roles: dict[Identifier, Role] = Field(default_factory=dict)
    org_admin: bool = False


class AccountUpdate(BaseModel):
    """The fields to change; those left out keep their value."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"roles": {"shop": "owner"}, "disabled": False}},
    )

    email: Email | None = None
    display_name: str | None = Field(default=None, max_length=200)
    password: Password | None = None
    roles: dict[Identifier, Role] | None = None
    """Replaces every role (``{}``: none)."""
    org_admin: bool | None = None
    disabled: bool | None = None
    """Disabling ends the account's sessions at once."""


def _stored(gateway: Gateway, account_id: str) -> Account:
    account = account_by_id(gateway.state, account_id)
    if account is None:
        raise not_found(f"account '{account_id}'", "account_id")
    return account


def _check_roles(gateway: Gateway, roles: dict[str, Role]) -> None:
    for project_id in roles:
        if gateway.state.project(project_id) is None:
            raise invalid(f"roles.{project_id}: project '{project_id}' does not exist", "roles")


def _check_email_free(gateway: Gateway, email: str, account_id: str) -> None:
    holder = account_by_email(gateway.state, email)
    if holder is not None and holder.id != account_id:
        raise ProblemError(409, "conflict", f"an account with email '{email}' exists", "email")


def _hashed(password: str) -> str:
    why = password_problem(password)
    if why is not None:
        raise invalid(f"password: {why}", "password")
    return hash_password(password)


def store_account(gateway: Gateway, account: Account) -> Account:
    """Write ``account`` (its ``updated_at`` now) and wait until this gateway sees it."""
    stored = account.model_copy(update={"updated_at": gateway.now()})
    commit_documents(gateway, [stored])
    return stored


def new_account(
    gateway: Gateway,
    email: str,
    display_name: str,
    roles: dict[str, Role],
    *,
    account_id: str | None = None,
    password_hash: str = "",
    org_admin: bool = False,
) -> Account:
    """Create an account; 409 when the id or the email is taken."""
    account_id = account_id or f"u-{secrets.token_hex(6)}"
    if account_by_id(gateway.state, account_id) is not None:
        raise ProblemError(409, "conflict", f"account '{account_id}' exists", "id")
    _check_email_free(gateway, email, account_id)
    _check_roles(gateway, roles)
    account = Account(
        id=account_id,
        email=email,
        display_name=display_name,
        password_hash=password_hash,
        roles=roles,
        org_admin=org_admin,
        created_at=gateway.now(),
    )
    return store_account(gateway, account)


def end_sessions(gateway: Gateway, account: Account) -> Account:
    """Every session of ``account`` ends, on every gateway (its generation goes up)."""
    return store_account(
        gateway, account.model_copy(update={"session_generation": account.session_generation + 1})
    )


@router.get(
    "/accounts",
    summary="List accounts",
    responses=example_response({"items": [_VIEW_EXAMPLE], "next_cursor": None}) | _ERRORS,
)
def list_accounts(
    _: OrganisationScope, gateway: GatewayDep, limit: Limit = 100, cursor: IdCursor = None
) -> Page[AccountView]:
    views = [AccountView.of(a) for a in gateway.state.of_kind(Account)]
    return page_by_id(views, lambda v: v.id, limit, cursor)


@router.post(
    "/accounts",
    status_code=201,
    summary="Create an account (a person who signs in)",
    responses=example_response(_VIEW_EXAMPLE, 201) | _ERRORS | problem_responses(409),
)
def create_account(_: OrganisationScope, gateway: GatewayDep, body: AccountCreate) -> AccountView:
    account = new_account(
        gateway,
        body.email,
        body.display_name,
        body.roles,
        account_id=body.id,
        password_hash=_hashed(body.password) if body.password is not None else "",
        org_admin=body.org_admin,
    )
    return AccountView.of(account)


@router.get(
    "/accounts/{account_id}",
    summary="Get an account",
    responses=example_response(_VIEW_EXAMPLE) | _ERRORS,
)
def get_account(_: OrganisationScope, gateway: GatewayDep, account_id: AccountId) -> AccountView:
    return AccountView.of(_stored(gateway, account_id))


def _refuse_self_lockout(scope: Scope, account: Account, body: AccountUpdate) -> None:
    if scope.account_id != account.id:
        return
    if body.disabled or body.org_admin is False:
        raise ProblemError(
            409, "conflict", "an organisation admin cannot disable or demote themselves", "body"
        )


@router.patch(
    "/accounts/{account_id}",
    summary="Change an account: email, name, password, roles, admin flag, disabled",
    responses=example_response(_VIEW_EXAMPLE) | _ERRORS | problem_responses(409),
)
def update_account(
    scope: OrganisationScope, gateway: GatewayDep, account_id: AccountId, body: AccountUpdate
) -> AccountView:
    account = _stored(gateway, account_id)
    _refuse_self_lockout(scope, account, body)
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    if body.email is not None:
        _check_email_free(gateway, body.email, account_id)
    if body.roles is not None:
        _check_roles(gateway, body.roles)
    if body.password is not None:
        changes["password_hash"] = _hashed(body.password)
    if body.password is not None or (body.disabled and not account.disabled):
        changes["session_generation"] = account.session_generation + 1
    try:
        changed = Account.model_validate(account.model_dump() | changes)
    except ValidationError as error:
        raise validation_problem(error) from error
    return AccountView.of(store_account(gateway, changed))


@router.post(
    "/accounts/{account_id}/end-sessions",
    summary="End every session of an account, on every gateway",
    responses=example_response(_VIEW_EXAMPLE) | _ERRORS,
)
def end_account_sessions(
    _: OrganisationScope, gateway: GatewayDep, account_id: AccountId
) -> AccountView:
    return AccountView.of(end_sessions(gateway, _stored(gateway, account_id)))
