"""People: accounts found by email or id, and the signed-in person behind a session cookie."""

from __future__ import annotations

from fastapi import Request, Response

from sextant.core.config_plane import ConfigState
from sextant.gateway.context import Gateway
from sextant.gateway.problems import ProblemError
from sextant.gateway.sessions import (
    SESSION_COOKIE,
    clear_cookie,
    new_session_token,
    read_session,
    set_cookie,
)
from sextant.schemas.config import ALL_PROJECTS, Account, ConfigKind

PROJECT_HEADER = "X-Sextant-Project"
"""Which of a person's projects a read request is about (a key's project is the key's)."""


def account_key(account_id: str) -> str:
    return f"{ConfigKind.ACCOUNT.value}:{ALL_PROJECTS}:{account_id}"


def account_by_id(state: ConfigState, account_id: str) -> Account | None:
    document = state.get(account_key(account_id))
    return document if isinstance(document, Account) else None


def account_by_email(state: ConfigState, email: str) -> Account | None:
    wanted = email.strip().lower()
    return next((a for a in state.of_kind(Account) if a.email == wanted), None)


def signed_in(gateway: Gateway, token: str) -> Account | None:
    """The account whose live session ``token`` is: signed here, not expired, the account
    enabled and its sessions not ended since (``session_generation``)."""
    if gateway.sessions is None:
        return None
    session = read_session(gateway.sessions, token)
    if session is None:
        return None
    account = account_by_id(gateway.state, session.account_id)
    if account is None or account.disabled or account.session_generation != session.generation:
        return None
    return account


def start_session(gateway: Gateway, request: Request, response: Response, account: Account) -> None:
    """Set the session cookie of ``account`` on ``response``."""
    if gateway.sessions is None:
        raise secret_key_missing()
    max_age = gateway.settings.session_max_age_seconds
    token = new_session_token(gateway.sessions, account.id, account.session_generation, max_age)
    set_cookie(response, request, gateway.settings.public_url, SESSION_COOKIE, token, max_age)


def end_session(gateway: Gateway, request: Request, response: Response) -> None:
    clear_cookie(response, request, gateway.settings.public_url, SESSION_COOKIE)


def secret_key_missing() -> ProblemError:
    return ProblemError(
        503,
        "secret-key-missing",
        "this gateway has no master key (SEXTANT_SECRET_KEY), which signs sessions: people "
        "cannot sign in until its operator sets it",
    )


def selected_project(request: Request, account: Account) -> str | None:
    """The project a person's read request is about: the path's, the one the
    ``X-Sextant-Project`` header names, else their only project."""
    chosen = request.path_params.get("project_id") or request.headers.get(PROJECT_HEADER)
    if chosen:
        return str(chosen)
    if len(account.roles) == 1:
        return next(iter(account.roles))
    return None
