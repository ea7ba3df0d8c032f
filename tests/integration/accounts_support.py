"""Accounts for the gateway's integration tests: people seeded on the config topic, and
signing them in. This module holds no tests."""

from __future__ import annotations

import httpx

from sextant.gateway.passwords import hash_password
from sextant.gateway.sessions import SESSION_COOKIE
from sextant.schemas.config import Account, Role

SECRET_KEY = "2Bc3_JohmQT6aWEvox_HVntKQLedobF_g0Y0dhyKEx0="
"""The gateway's master key in these tests (it signs the session cookies)."""
PASSWORD = "a long test password"


def person(
    account_id: str, roles: dict[str, Role], *, org_admin: bool = False, password: str = PASSWORD
) -> Account:
    return Account(
        id=account_id,
        email=f"{account_id}@example.com",
        display_name=account_id.replace("-", " ").title(),
        password_hash=hash_password(password),
        roles=roles,
        org_admin=org_admin,
    )


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> str:
    """Sign in; the session cookie's value (left out of ``client``'s cookies, so that only
    requests that send it on purpose are signed in)."""
    answer = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    client.cookies.clear()
    return answer.cookies[SESSION_COOKIE]


def as_person(
    base_url: str, session: str, project: str | None = None, origin: bool = True
) -> dict[str, str]:
    """Headers of a request from the workspace's page, signed in with ``session``."""
    headers = {"Cookie": f"{SESSION_COOKIE}={session}"}
    if origin:
        headers["Origin"] = base_url
    if project is not None:
        headers["X-Sextant-Project"] = project
    return headers
