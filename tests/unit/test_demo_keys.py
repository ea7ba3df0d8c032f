"""The public demo keys open nothing outside a demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from sextant.core.config_file import load_config_file
from sextant.core.config_plane import ConfigState
from sextant.core.demo import DEMO_KEY_HASHES, DemoKeysActive, active_demo_keys, guard_demo_keys
from sextant.schemas.config import ALL_PROJECTS, ApiKey, KeyKind, hash_key

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "config" / "demo.yaml"
ADMIN_SECRET = "sx_admin_demo_0000000000000000"


def demo_admin(revoked: bool = False) -> ApiKey:
    return ApiKey(
        id="demo-admin",
        project_id=ALL_PROJECTS,
        key_kind=KeyKind.ADMIN,
        key_hash=hash_key(ADMIN_SECRET),
        revoked=revoked,
    )


def state_of(*keys: ApiKey) -> ConfigState:
    state = ConfigState()
    for key in keys:
        state.apply(key.config_key(), key)
    return state


def test_the_known_hashes_are_the_hashes_of_the_demo_files_secrets() -> None:
    config = load_config_file(DEMO)
    secrets = [k.secret for k in config.admin_keys]
    secrets += [k.secret for p in config.projects for k in p.keys]
    assert {hash_key(s) for s in secrets} == DEMO_KEY_HASHES


def test_an_active_demo_key_stops_a_part_with_the_reason_and_the_remedies() -> None:
    with pytest.raises(DemoKeysActive) as refused:
        guard_demo_keys(state_of(demo_admin()), demo=False, part="gateway")
    message = str(refused.value)
    assert "api_key:*:demo-admin" in message
    assert "SEXTANT_DEMO=true" in message
    assert "sextant config revoke-demo" in message
    assert ADMIN_SECRET not in message


def test_a_demo_runs_with_them_and_a_revoked_one_is_not_active() -> None:
    state = state_of(demo_admin())
    guard_demo_keys(state, demo=True, part="gateway")
    assert state.key_for_hash(hash_key(ADMIN_SECRET)) is not None
    revoked = state_of(demo_admin(revoked=True))
    assert active_demo_keys(revoked) == []
    guard_demo_keys(revoked, demo=False, part="gateway")


def test_outside_a_demo_a_demo_key_applied_later_never_authenticates() -> None:
    own = ApiKey(
        id="ops", project_id=ALL_PROJECTS, key_kind=KeyKind.ADMIN, key_hash=hash_key("x" * 32)
    )
    state = state_of(own)
    guard_demo_keys(state, demo=False, part="collector")
    key = demo_admin()
    state.apply(key.config_key(), key)
    assert state.key_for_hash(hash_key(ADMIN_SECRET)) is None
    assert state.key_for_hash(hash_key("x" * 32)) == own


async def test_the_notifier_app_refuses_to_start_with_an_active_demo_key() -> None:
    from sextant.core.secrets import generate_secret_key
    from sextant.notifier.app import create_app
    from sextant.notifier.settings import NotifierSettings

    settings = NotifierSettings(secret_key=generate_secret_key(), demo=False)
    app = create_app(settings, state=state_of(demo_admin()))
    with pytest.raises(DemoKeysActive, match="the notifier refuses to start"):
        async with app.router.lifespan_context(app):
            pass
