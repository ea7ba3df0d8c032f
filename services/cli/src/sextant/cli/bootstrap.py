"""A deployment's own secrets: the first admin key, the master key, their rotation, and the
end of the demo keys. The commands in ``main.py`` call these and print what they return.

Each function that changes the config plane reads the topic to its end first, so it acts on
what is there: ``ensure_admin_key`` never creates a second key when one exists, and
``rotate_secrets`` re-seals the documents as they stand.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sextant.cli.settings import CliSettings
from sextant.core.config_plane import ConfigFollower, ConfigPublisher, ConfigState
from sextant.core.demo import DEMO_KEY_HASHES, active_demo_keys
from sextant.core.secrets import SecretBox, UnreadableSecret, generate_secret_key, reseal_secrets
from sextant.schemas.config import ALL_PROJECTS, ApiKey, ConfigDocument, KeyKind, hash_key

__all__ = [
    "AdminKeyResult",
    "ConfigUnreadable",
    "RotationResult",
    "compose_env",
    "ensure_admin_key",
    "read_config",
    "revoke_demo_keys",
    "rotate_secrets",
]


class ConfigUnreadable(RuntimeError):  # noqa: N818 - the name says what happened
    """The config topic could not be read to its end in time."""


def read_config(settings: CliSettings) -> ConfigState:
    """The config plane as it stands: the topic read to its end, then no longer followed."""
    follower = ConfigFollower(settings).start()
    try:
        if not follower.wait_caught_up(settings.config_wait_seconds):
            raise ConfigUnreadable(
                f"the config topic was not read to its end within "
                f"{settings.config_wait_seconds:.0f}s: is Kafka reachable at "
                f"{settings.kafka_bootstrap}, and have the topics been created (`sextant topics`)?"
            )
        return follower.state
    finally:
        follower.stop()


def _publish(settings: CliSettings, documents: list[ConfigDocument]) -> None:
    if not documents:
        return
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(documents)
    finally:
        publisher.close()


@dataclass(frozen=True)
class AdminKeyResult:
    """Either the key just created and its secret (shown once), or the keys that exist."""

    created: ApiKey | None
    secret: str | None
    existing: list[ApiKey]


def _own_admin_keys(state: ConfigState) -> list[ApiKey]:
    """Admin keys that open this deployment: not revoked, and not the public demo key."""
    return [
        key
        for key in state.of_kind(ApiKey, ALL_PROJECTS)
        if key.key_kind is KeyKind.ADMIN and not key.revoked and key.key_hash not in DEMO_KEY_HASHES
    ]


def ensure_admin_key(settings: CliSettings, state: ConfigState) -> AdminKeyResult:
    """Create the organisation's admin key unless one exists; only its hash is stored.

    The id carries a random suffix, so two first starts racing each other make two valid
    keys rather than one overwriting the other's hash.
    """
    existing = _own_admin_keys(state)
    if existing:
        return AdminKeyResult(None, None, existing)
    secret = f"sx_admin_{secrets.token_urlsafe(24)}"
    key = ApiKey(
        id=f"admin-{secrets.token_hex(3)}",
        project_id=ALL_PROJECTS,
        key_kind=KeyKind.ADMIN,
        key_hash=hash_key(secret),
        name="Organisation admin (sextant bootstrap)",
        created_at=datetime.now(UTC),
    )
    _publish(settings, [key])
    return AdminKeyResult(key, secret, [])


def compose_env() -> str:
    """The ``.env`` docker compose needs: a new master key and a ClickHouse password (hex,
    so it needs no escaping inside the ClickHouse URL)."""
    return (
        "# Sextant's secrets for docker compose. Keep this file private; never commit it.\n"
        "# Made by `sextant bootstrap --env` (README.md, Docker).\n"
        f"SEXTANT_SECRET_KEY={generate_secret_key()}\n"
        f"CLICKHOUSE_PASSWORD={secrets.token_hex(24)}\n"
    )


@dataclass
class RotationResult:
    resealed: list[str] = field(default_factory=list)
    """Config keys of the documents re-sealed and written back."""
    unreadable: list[str] = field(default_factory=list)
    """``config key: field`` of the secrets no key opens (left as they are)."""


def rotate_secrets(settings: CliSettings, state: ConfigState, box: SecretBox) -> RotationResult:
    """Re-seal every stored secret under the newest key (clear ones left by older writers
    included) and write the documents back."""
    result = RotationResult()
    changed: list[ConfigDocument] = []
    for document in state.documents():
        try:
            resealed = reseal_secrets(document, box)
        except UnreadableSecret as error:
            result.unreadable.append(f"{document.config_key()}: {error.field}")
            continue
        if resealed is not document:
            changed.append(resealed)
            result.resealed.append(document.config_key())
    _publish(settings, changed)
    return result


def revoke_demo_keys(settings: CliSettings, state: ConfigState) -> list[ApiKey]:
    """Revoke every active demo key; the keys revoked."""
    revoked = [key.model_copy(update={"revoked": True}) for key in active_demo_keys(state)]
    _publish(settings, list(revoked))
    return revoked
