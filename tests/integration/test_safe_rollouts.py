"""Safe rollouts end to end on real Kafka and the real ClickHouse engine: an experiment whose
treatment is planted to hurt a guardrail metric is switched off by Sextant itself (the
gateway's experiment alert service, on its own schedule), the collector's features endpoint
then serves the default, the webhook (through the notifier) says what was switched off and
why, and the feature's history shows it. A harmless experiment beside it keeps running."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sextant.collector.app import create_app as create_collector
from sextant.collector.settings import CollectorSettings
from sextant.schemas.config import (
    AlertRule,
    ApiKey,
    Experiment,
    Feature,
    KeyKind,
    MetricDefinition,
    Variant,
    hash_key,
)
from tests.infra import wait_for
from tests.integration.alerting_support import SECRET, notifier, receiver
from tests.integration.test_gateway_harness import Harness, make_harness, serve_in_thread

NOW = datetime.now(UTC)
CLIENT = "sdk-safe-rollouts-0000000000000"
ORDERS = MetricDefinition(id="orders", project_id="acme", metric_kind="count", event="Order")


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(
        kafka_bootstrap, warehouse_root, experiment_alert_interval_seconds=0.5
    ) as running:
        running.put_config(
            ORDERS,
            ApiKey(
                id="flags",
                project_id="acme",
                key_kind=KeyKind.CLIENT,
                key_hash=hash_key(CLIENT),
                environment="production",
            ),
        )
        yield running


def experiment(key: str) -> Experiment:
    return Experiment(
        id=key,
        project_id="acme",
        variants=[Variant(id="control", weight=0.5), Variant(id="treat", weight=0.5)],
        guardrail_metrics=["orders"],
        min_sample_per_variant=50,
        start=NOW - timedelta(days=1),
        stop=NOW + timedelta(days=10),
    )


def guard(key: str, url: str) -> AlertRule:
    return AlertRule.model_validate(
        {
            "id": f"{key}-guard",
            "project_id": "acme",
            "rule_kind": "experiment_guardrail",
            "experiment": key,
            "direction": "below",
            "min_effect": 0.05,
            "severity": "critical",
            "targets": [{"url": url, "secret": SECRET}],
        }
    )


def feature(key: str) -> Feature:
    rules = [
        {
            "type": "experiment",
            "id": "test",
            "experiment": key,
            "values": {"control": "classic", "treat": "new"},
        }
    ]
    return Feature.model_validate(
        {
            "id": f"{key}-page",
            "project_id": "acme",
            "value_type": "string",
            "default_value": "classic",
            "version": 1,
            "created_at": NOW - timedelta(hours=3),
            "environments": {"production": {"rules": rules}},
        }
    )


def generate(harness: Harness, key: str, rates: dict[str, float], units: int = 400) -> None:
    """Units exposed to ``key`` two hours ago; each orders Poisson(rate of its variant) times."""
    rng = np.random.default_rng(23)
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for variant, rate in rates.items():
        for i in range(units):
            unit = f"{key}-{variant}-{i}"
            exposed = NOW - timedelta(hours=2) + timedelta(seconds=i)
            exposures.append(
                {"experiment": key, "unit_id": unit, "variation_id": variant, "timestamp": exposed}
            )
            events += [
                {"event": "Order", "distinct_id": unit, "timestamp": exposed + timedelta(minutes=j)}
                for j in range(1, int(rng.poisson(rate)) + 1)
            ]
    harness.insert_exposures(exposures)
    harness.insert_events(events)


def test_a_harmful_experiment_is_switched_off_by_sextant_and_a_harmless_one_runs_on(
    harness: Harness,
) -> None:
    settings = CollectorSettings(
        kafka_bootstrap=harness.settings.kafka_bootstrap,
        topic_prefix=harness.settings.topic_prefix,
    )
    with (
        receiver() as hook,
        notifier(harness.settings),
        serve_in_thread(create_collector(settings)) as collector,
    ):

        def payload() -> dict[str, Any]:
            response = httpx.get(f"{collector}/api/features/{CLIENT}", timeout=10)
            assert response.status_code == 200, response.text
            features: dict[str, Any] = response.json()["features"]
            return features

        harness.put_config(
            experiment("harmful"),
            experiment("harmless"),
            feature("harmful"),
            feature("harmless"),
        )
        wait_for(lambda: "rules" in payload().get("harmful-page", {}), 20, 0.1, "rules served")
        # The treatment of 'harmful' orders 40 % less; 'harmless' is an A/A test.
        generate(harness, "harmful", {"control": 1.0, "treat": 0.6})
        generate(harness, "harmless", {"control": 1.0, "treat": 1.0})
        harness.put_config(guard("harmful", hook.url), guard("harmless", hook.url))

        wait_for(lambda: hook.transitions(), 90, 0.2, "the guardrail's webhook")
        wait_for(
            lambda: payload()["harmful-page"] == {"defaultValue": "classic"},
            10,
            0.1,
            "the features endpoint serves the default",
        )
        [delivered] = hook.transitions()
        assert delivered["rule_id"] == "harmful-guard"
        assert delivered["to_state"] == "firing"
        assert "orders in treat" in delivered["message"]
        assert (
            "Sextant switched off rule 'test' of feature 'harmful-page' in production "
            "(version 2)" in delivered["message"]
        )
        assert "rules" in payload()["harmless-page"], "the harmless experiment runs on"

    history = harness.client.get(
        "/v1/admin/projects/acme/features/harmful-page/history", headers=harness.admin
    ).json()["items"]
    latest = history[0]
    assert (latest["version"], latest["by"]) == (2, "sextant")
    assert latest["comment"] == "guardrail: alert rule 'harmful-guard' fired"
    rule = latest["document"]["environments"]["production"]["rules"][0]
    assert rule["enabled"] is False
    assert "harmful-guard" in rule["stopped_reason"]
    assert "orders in treat" in rule["stopped_reason"]
    harmless = harness.client.get(
        "/v1/admin/projects/acme/features/harmless-page", headers=harness.admin
    ).json()
    assert harmless["environments"]["production"]["rules"][0]["enabled"] is True
