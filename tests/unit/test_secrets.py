"""Sealing the secrets the parts need in clear: the box, rotation, and finding them in documents."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from sextant.core.secrets import (
    MissingSecretKey,
    SecretBox,
    SecretKeyInvalid,
    UnreadableSecret,
    generate_secret_key,
    has_clear_secrets,
    is_sealed,
    open_secret,
    reseal_secrets,
    seal_secrets,
)
from sextant.schemas.config import AlertRule, MetricDefinition, WebhookTarget

OLD, NEW = generate_secret_key(), generate_secret_key()


def rule(*secrets: str) -> AlertRule:
    targets: list[dict[str, Any]] = [
        {"url": f"https://hooks.example/{i}", "secret": s} for i, s in enumerate(secrets)
    ]
    return AlertRule.model_validate(
        {
            "id": "drop",
            "project_id": "shop",
            "rule_kind": "threshold",
            "metric": "checkout",
            "threshold": 0.05,
            "direction": "below",
            "targets": targets,
        }
    )


def test_a_sealed_value_opens_under_its_key_only() -> None:
    box = SecretBox([NEW])
    sealed = box.seal("whsec_0123456789")
    assert is_sealed(sealed)
    assert "whsec_0123456789" not in sealed
    assert box.open(sealed) == "whsec_0123456789"
    with pytest.raises(UnreadableSecret):
        SecretBox([OLD]).open(sealed)
    with pytest.raises(UnreadableSecret):
        box.open(sealed[:-4] + "AAAA")  # altered


def test_a_rotated_list_opens_old_values_and_reseals_them_under_the_newest_key() -> None:
    sealed_old = SecretBox([OLD]).seal("s3cret")
    both = SecretBox.from_setting(SecretStr(f"{NEW}, {OLD}"))
    assert both is not None
    assert both.key_count == 2
    assert both.open(sealed_old) == "s3cret"
    resealed = both.reseal(sealed_old)
    assert SecretBox([NEW]).open(resealed) == "s3cret"
    with pytest.raises(UnreadableSecret):
        SecretBox([OLD]).open(resealed)
    assert SecretBox([NEW]).open(both.reseal("left in clear")) == "left in clear"


def test_a_malformed_or_empty_key_is_refused_with_a_clear_message() -> None:
    with pytest.raises(SecretKeyInvalid, match="key 2 of the list is not a Fernet key"):
        SecretBox.from_setting(SecretStr(f"{NEW},change-me"))
    assert SecretBox.from_setting(None) is None
    assert SecretBox.from_setting(SecretStr(" ")) is None
    with pytest.raises(SecretKeyInvalid):
        SecretBox([",", ""])


def test_sealing_a_document_seals_every_clear_secret_and_keeps_sealed_ones() -> None:
    box = SecretBox([NEW])
    already = box.seal("kept")
    sealed = seal_secrets(rule("first", "", already), box)
    secrets = [t.secret for t in sealed.targets]
    assert is_sealed(secrets[0])
    assert box.open(secrets[0]) == "first"
    assert secrets[1] == ""
    assert secrets[2] == already
    assert "first" not in sealed.model_dump_json()
    assert not has_clear_secrets(sealed)
    assert has_clear_secrets(rule("first"))


def test_a_document_without_secrets_is_returned_as_it_is() -> None:
    metric = MetricDefinition(id="m", project_id="p", metric_kind="count", event="E")
    assert seal_secrets(metric, None) is metric
    empty = rule("")
    assert seal_secrets(empty, None) is empty


def test_without_a_key_a_clear_secret_cannot_be_stored() -> None:
    with pytest.raises(MissingSecretKey, match=r"targets\.0\.secret.*SEXTANT_SECRET_KEY"):
        seal_secrets(rule("s3cret"), None)


def test_a_sealed_value_under_another_key_is_refused_naming_the_field() -> None:
    foreign = SecretBox([OLD]).seal("x")
    with pytest.raises(UnreadableSecret, match=r"targets\.1\.secret"):
        seal_secrets(rule("", foreign), SecretBox([NEW]))


def test_resealing_a_document_moves_every_secret_to_the_newest_key() -> None:
    old = SecretBox([OLD])
    stored = seal_secrets(rule("a", "b"), old)
    rotated = reseal_secrets(stored, SecretBox([NEW, OLD]))
    assert [SecretBox([NEW]).open(t.secret) for t in rotated.targets] == ["a", "b"]


def test_opening_needs_the_key_for_sealed_values_only() -> None:
    box = SecretBox([NEW])
    assert open_secret(box.seal("x"), box) == "x"
    assert open_secret("legacy clear", None) == "legacy clear"
    with pytest.raises(MissingSecretKey):
        open_secret(box.seal("x"), None)


def test_a_clear_secret_is_limited_and_a_sealed_one_may_be_longer() -> None:
    with pytest.raises(ValidationError):
        WebhookTarget(url="https://a.example/", secret="x" * 201)
    sealed = SecretBox([NEW]).seal("x" * 200)
    assert len(sealed) > 200
    assert WebhookTarget(url="https://a.example/", secret=sealed).secret == sealed


def test_reports_about_a_bad_config_file_never_quote_its_values() -> None:
    import yaml

    from sextant.core.config_file import (
        ConfigFile,
        describe_validation_error,
        describe_yaml_error,
    )

    text = 'projects:\n  - id: p\n    keys: [{id: k, secret: "whsec_unterminated_0123'
    with pytest.raises(yaml.YAMLError) as not_yaml:
        yaml.safe_load(text)
    assert "whsec_unterminated" in str(not_yaml.value)  # the parser's own message quotes it
    described = describe_yaml_error(not_yaml.value)
    assert "whsec_unterminated" not in described
    assert "line 3" in described

    with pytest.raises(ValidationError) as invalid:
        ConfigFile.model_validate({"admin_keys": [{"id": "a", "secret": "tiny-secret", "x": "y"}]})
    assert "tiny-secret" in str(invalid.value)  # pydantic's own message quotes it
    described = describe_validation_error(invalid.value)
    assert "admin_keys.0.secret" in described
    assert "tiny-secret" not in described
