"""Write keys: where a request carries one, and whether it may send events."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from sextant.collector.errors import ApiError
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key


@dataclass(frozen=True)
class Writer:
    """An authenticated sender: the key and the project its events belong to."""

    key: ApiKey
    project: Project


def basic_username(authorization: str | None) -> str | None:
    """The username of ``Authorization: Basic base64(user:password)`` (Segment's write key)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if scheme.lower() != "basic":
        raise ApiError(
            401,
            "unauthorized",
            f"unsupported authorization scheme {scheme!r}; use Basic with the write key as user",
            "header Authorization",
        )
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ApiError(
            401, "unauthorized", "the Basic credentials are not base64", "header Authorization"
        ) from error
    return decoded.partition(":")[0] or None


def authenticate(
    state: ConfigState, secret: str | None, where: str, kind: KeyKind = KeyKind.WRITE
) -> Writer:
    """The key of ``kind`` behind ``secret`` (a write key, or a client key for the features
    payload): 401 when missing or unknown, 403 when revoked or of another kind."""
    if not secret:
        raise ApiError(
            401,
            "unauthorized",
            "no write key: send it as the Basic username, or as writeKey (api_key) in the body"
            if kind is KeyKind.WRITE
            else f"no {kind.value} key",
            "header Authorization",
        )
    key = state.key_for_hash(hash_key(secret))
    if key is None:
        raise ApiError(401, "unauthorized", f"unknown {kind.value} key", where)
    if not key.usable_at(datetime.now(UTC)):
        raise ApiError(
            403, "forbidden", f"the {kind.value} key {key.id!r} has been revoked or expired", where
        )
    if key.key_kind is not kind:
        raise ApiError(
            403,
            "forbidden",
            f"{key.id!r} is a {key.key_kind.value} key, not a {kind.value} key",
            where,
        )
    project = state.project(key.project_id)
    if project is None:
        raise ApiError(
            403, "forbidden", f"the key's project {key.project_id!r} does not exist", where
        )
    return Writer(key=key, project=project)
