"""Roles, key expiry, audit actions and personal-data rules, without infrastructure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sextant.gateway.audit import change_action
from sextant.gateway.auth import Access, _refusal
from sextant.schemas.audit import AuditAction
from sextant.schemas.config import ApiKey, KeyKind, MetricDefinition, Role, person_hash
from sextant.schemas.privacy import PiiAction, PiiRule, keyed_hash, redact

HASH = "0" * 64
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def _key(kind: KeyKind, project: str = "shop", role: Role | None = None) -> ApiKey:
    return ApiKey(
        id="k",
        project_id="*" if kind is KeyKind.ADMIN else project,
        key_kind=kind,
        key_hash=HASH,
        role=role,
        environment="production" if kind is KeyKind.CLIENT else None,
    )


def test_only_read_keys_have_a_role_and_viewer_is_the_default() -> None:
    assert _key(KeyKind.READ).project_role is Role.VIEWER
    assert _key(KeyKind.READ, role=Role.OWNER).project_role is Role.OWNER
    assert _key(KeyKind.ADMIN).project_role is None
    with pytest.raises(ValidationError, match="only read keys have a role"):
        _key(KeyKind.WRITE, role=Role.EDITOR)


def test_a_key_stops_at_its_expiry() -> None:
    key = _key(KeyKind.READ).model_copy(update={"expires_at": NOW})
    assert key.usable_at(NOW - timedelta(seconds=1))
    assert not key.usable_at(NOW)
    assert not key.model_copy(update={"revoked": True, "expires_at": None}).usable_at(NOW)


@pytest.mark.parametrize(
    ("key", "access", "project", "allowed"),
    [
        (_key(KeyKind.ADMIN), Access.ORGANISATION, None, True),
        (_key(KeyKind.ADMIN), Access.PROJECT, "shop", True),
        (_key(KeyKind.ADMIN), Access.READ, None, False),
        (_key(KeyKind.READ), Access.READ, None, True),
        (_key(KeyKind.READ), Access.CONFIG, "shop", False),
        (_key(KeyKind.READ, role=Role.EDITOR), Access.CONFIG, "shop", True),
        (_key(KeyKind.READ, role=Role.EDITOR), Access.PROJECT, "shop", False),
        (_key(KeyKind.READ, role=Role.OWNER), Access.PROJECT, "shop", True),
        (_key(KeyKind.READ, role=Role.OWNER), Access.PROJECT, "other", False),
        (_key(KeyKind.READ, role=Role.OWNER), Access.ORGANISATION, None, False),
        (_key(KeyKind.WRITE), Access.READ, None, False),
        (_key(KeyKind.CLIENT), Access.READ, None, False),
    ],
)  # fmt: skip
def test_what_each_key_may_do(
    key: ApiKey, access: Access, project: str | None, allowed: bool
) -> None:
    assert (_refusal(key, access, project) is None) is allowed


def test_a_refusal_says_why() -> None:
    why = _refusal(_key(KeyKind.READ, role=Role.EDITOR), Access.PROJECT, "shop")
    assert why == "the editor role may not do this: it needs owner"
    assert "belongs to project 'shop'" in str(_refusal(_key(KeyKind.READ), Access.READ, "x"))


def test_audit_actions_name_key_events() -> None:
    key = _key(KeyKind.READ)
    metric = MetricDefinition(id="m", project_id="shop", metric_kind="count", event="Paid")
    assert change_action(None, key) is AuditAction.KEY_CREATED
    assert change_action(key, key.model_copy(update={"revoked": True})) is AuditAction.KEY_REVOKED
    assert change_action(None, metric) is AuditAction.CONFIG_CREATED
    assert change_action(metric, metric.model_copy(update={"name": "M"})) is (
        AuditAction.CONFIG_CHANGED
    )
    assert change_action(metric, None) is AuditAction.CONFIG_DELETED


def test_pii_rules_drop_hash_and_truncate_every_place_a_person_is_described() -> None:
    rules = [
        PiiRule(property="email", action=PiiAction.DROP),
        PiiRule(property="phone", action=PiiAction.HASH),
        PiiRule(property="zip", action=PiiAction.TRUNCATE, keep_characters=2),
    ]
    event = {
        "properties": {"email": "a@b.c", "phone": "123", "zip": 12345, "n": 1},
        "traits": {"email": "a@b.c", "zip": {"nested": 1}},
        "context": {"traits": {"phone": "123"}, "ip": "1.2.3.4"},
    }
    out = redact(event, rules, b"k", "shop")
    digest = keyed_hash(b"k", "shop", "123")
    assert out["properties"] == {"phone": digest, "zip": "12", "n": 1}
    assert out["traits"] == {}
    assert out["context"] == {"traits": {"phone": digest}, "ip": "1.2.3.4"}
    assert keyed_hash(b"k", "other", "123") != digest
    assert redact(event, rules, None, "shop")["properties"] == {"zip": "12", "n": 1}
    assert event["properties"]["email"] == "a@b.c"  # the input is left as it was


def test_pii_rules_are_checked() -> None:
    with pytest.raises(ValidationError, match="keep_characters"):
        PiiRule(property="zip", action=PiiAction.TRUNCATE)
    with pytest.raises(ValidationError, match="keep_characters"):
        PiiRule(property="zip", action=PiiAction.DROP, keep_characters=3)


def test_a_person_is_named_by_a_digest_the_warehouse_can_compute() -> None:
    assert (
        person_hash("a", "b") == "6783a31eabf68ccc0660f935c0826282bdd2241f3a80a9f2d10d59aea9ebb5d8"
    )
