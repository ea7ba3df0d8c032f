"""API keys: ``Authorization: Bearer <key>``, looked up by hash in the followed config state.

A read key answers for its own project only; every read query takes its project from the key,
never from the request. The admin key (``project_id`` ``*``) manages the config of every
project and reads no data. Write keys are for the collector and open nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sextant.gateway.context import GatewayDep
from sextant.gateway.problems import ProblemError
from sextant.schemas.config import ApiKey, KeyKind, hash_key

_read_scheme = HTTPBearer(
    scheme_name="ReadKey",
    description="A project's read key: `Authorization: Bearer <read key>`",
    auto_error=False,
)
_admin_scheme = HTTPBearer(
    scheme_name="AdminKey",
    description="The admin key: `Authorization: Bearer <admin key>`",
    auto_error=False,
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Scope:
    """Who is asking: the key's id and the one project it may read."""

    key_id: str
    project_id: str


def _key(gateway: GatewayDep, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    if credentials is None or not credentials.credentials:
        raise ProblemError(
            401, "unauthorized", "send 'Authorization: Bearer <key>'", None, _CHALLENGE
        )
    key = gateway.state.key_for_hash(hash_key(credentials.credentials))
    if key is None or key.revoked:
        raise ProblemError(401, "unauthorized", "unknown or revoked key", None, _CHALLENGE)
    return key


def read_scope(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_read_scheme)],
) -> Scope:
    """The caller's project, from a valid read key; 401/403 problems otherwise."""
    key = _key(gateway, credentials)
    if key.key_kind is not KeyKind.READ:
        raise ProblemError(403, "forbidden", f"a {key.key_kind.value} key cannot read data")
    if gateway.state.project(key.project_id) is None:
        raise ProblemError(401, "unauthorized", "the key's project no longer exists")
    return Scope(key.id, key.project_id)


def admin_scope(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_scheme)],
) -> Scope:
    """A valid admin key; 401/403 problems otherwise."""
    key = _key(gateway, credentials)
    if key.key_kind is not KeyKind.ADMIN:
        raise ProblemError(403, "forbidden", "the admin API needs the admin key")
    return Scope(key.id, key.project_id)


ReadScope = Annotated[Scope, Depends(read_scope)]
AdminScope = Annotated[Scope, Depends(admin_scope)]
