"""The audit log: who changed what in the config, and what happened to keys and access.

Entries are appended to the ``audit`` topic (never compacted, never expired) and nothing
rewrites them. ``before`` and ``after`` are config documents as stored: secrets sealed, key
secrets never present (keys hold hashes only), accounts without their password hash.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditAction(StrEnum):
    CONFIG_CREATED = "config.created"
    CONFIG_CHANGED = "config.changed"
    CONFIG_DELETED = "config.deleted"
    KEY_CREATED = "key.created"
    KEY_FIRST_USED = "key.first_used"
    KEY_USED = "key.used"
    """A key was used (recorded at most once per key and ``key_usage_resolution_seconds``)."""
    KEY_REVOKED = "key.revoked"
    KEY_ROTATED = "key.rotated"
    ACCESS_DENIED = "access.denied"
    """A valid key asked for something beyond its role or project."""
    AUTH_FAILURES = "auth.failures"
    """Unknown or revoked keys from one address reached the threshold within a minute."""
    PERSON_DELETION = "person.deletion"
    PERSON_EXPORT = "person.export"
    PERSON_MERGE = "person.merge"
    PERSON_SPLIT = "person.split"
    LOGIN_SUCCEEDED = "login.succeeded"
    """A person signed in (by password or single sign-on)."""
    LOGIN_FAILED = "login.failed"
    """A sign-in was refused: wrong password, unknown email, disabled account, refused SSO."""
    LOGIN_LOCKED = "login.locked"
    """Failed sign-ins for one account from one address reached the limit: locked out."""
    LOGOUT = "logout"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 - an action name, not a secret
    """A person changed their own password (their other sessions end)."""


class Actor(BaseModel):
    """Who acted: a key (id and name), a person, or the system (schedules, ramps)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["key", "person", "system", "anonymous"]
    id: str
    name: str = ""


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    at: datetime
    project_id: str
    """The project concerned, or ``*`` for the organisation (projects list, admin keys)."""
    action: AuditAction
    actor: Actor
    target: str = ""
    """A config key (``metric:shop:revenue``), or the request (``DELETE /v1/admin/...``)."""
    source: str = ""
    """The client address the request came from."""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    detail: str = Field(default="", max_length=2000)

    def kafka_key(self) -> str:
        return self.project_id
