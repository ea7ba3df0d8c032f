from __future__ import annotations

from sextant.gateway.alerts import without_secrets
from sextant.schemas.config import AlertRule


def test_read_keys_never_see_webhook_secrets_or_urls() -> None:
    rule = AlertRule.model_validate(
        {
            "id": "drop",
            "project_id": "shop",
            "rule_kind": "threshold",
            "metric": "conversion",
            "threshold": 0.05,
            "direction": "below",
            "targets": [
                {"url": "https://hooks.slack.com/services/T0/B0/s3cr3t", "secret": "hmac-key"}
            ],
        }
    )
    shown = without_secrets(rule).model_dump_json()
    assert "s3cr3t" not in shown
    assert "hmac-key" not in shown
    assert "https://hooks.slack.com/" in shown
    assert rule.targets[0].secret == "hmac-key"  # the stored rule is untouched
