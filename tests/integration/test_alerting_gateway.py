"""Experiment alerts from the warehouse, and the alert API, on a running gateway.

Exposures and events go into the real engine as the sink writes them; the experiment rules
are judged on the results the experiment endpoint computes; transitions go to the real alerts
topic and reach a webhook receiver on loopback through the notifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sextant.core.alert_log import AlertPublisher, read_recorded
from sextant.core.config_plane import ConfigState
from sextant.core.kafka import read_all
from sextant.gateway.experiment_alerts import ExperimentAlertService, warehouse_results
from sextant.schemas.config import AlertMute, AlertRule, Experiment, MetricDefinition, Variant
from sextant.schemas.records import AlertTransition
from sextant.schemas.topics import Topic, topic_name
from tests.infra import wait_for
from tests.integration.alerting_support import SECRET, notifier, receiver
from tests.integration.test_gateway_harness import Harness, make_harness

T0 = datetime(2025, 8, 1, tzinfo=UTC)
PURCHASES = MetricDefinition(
    id="purchases", project_id="acme", metric_kind="count", event="Purchase"
)


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.put_config(PURCHASES)
        yield running


def experiment(key: str) -> Experiment:
    return Experiment(
        id=key,
        project_id="acme",
        variants=[Variant(id="control", weight=0.5), Variant(id="treat", weight=0.5)],
        guardrail_metrics=["purchases"],
        min_sample_per_variant=50,
        start=T0 - timedelta(days=1),
        stop=T0 + timedelta(days=10),
    )


def rule(rule_id: str, kind: str, key: str, url: str = "", **fields: Any) -> AlertRule:
    targets = [{"url": url, "secret": SECRET}] if url else []
    return AlertRule.model_validate(
        {
            "id": rule_id,
            "project_id": "acme",
            "rule_kind": kind,
            "experiment": key,
            "severity": "critical",
            "targets": targets,
        }
        | fields
    )


def generate(harness: Harness, key: str, units: dict[str, int], rates: dict[str, float]) -> None:
    """Units exposed to ``key``; each makes Poisson(rate of its variant) purchases after."""
    rng = np.random.default_rng(17)
    exposures: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for variant, count in units.items():
        for i in range(count):
            unit = f"{key}-{variant}-{i}"
            exposed = T0 + timedelta(seconds=i)
            exposures.append(
                {"experiment": key, "unit_id": unit, "variation_id": variant, "timestamp": exposed}
            )
            for j in range(int(rng.poisson(rates[variant]))):
                events.append(
                    {
                        "event": "Purchase",
                        "distinct_id": unit,
                        "timestamp": exposed + timedelta(minutes=j + 1),
                    }
                )
    harness.insert_exposures(exposures)
    harness.insert_events(events)


def alerts(harness: Harness) -> list[AlertTransition]:
    topic = topic_name(Topic.ALERTS, harness.settings.topic_prefix)
    return [
        AlertTransition.model_validate_json(r.value or b"")
        for r in read_all(harness.settings, topic)
    ]


def test_a_guardrail_regression_and_an_srm_fire_and_srm_suppresses_the_guardrail(
    harness: Harness,
) -> None:
    with receiver() as hook:
        harness.put_config(
            experiment("regress"),
            experiment("skewed"),
            rule(
                "regress-guard",
                "experiment_guardrail",
                "regress",
                hook.url,
                direction="below",
                min_effect=0.05,
            ),
            rule("skewed-srm", "srm", "skewed", hook.url),
            rule(
                "skewed-guard",
                "experiment_guardrail",
                "skewed",
                hook.url,
                direction="below",
                min_effect=0.05,
            ),
        )
        # 'regress': treatment buys 40 % less. 'skewed': the same regression, but a 2:1 split
        # of a 50/50 experiment, so its results are not to be trusted.
        generate(harness, "regress", {"control": 400, "treat": 400}, {"control": 1.0, "treat": 0.6})
        generate(harness, "skewed", {"control": 400, "treat": 200}, {"control": 1.0, "treat": 0.6})
        gateway = harness.app.state.gateway
        service = ExperimentAlertService(
            harness.settings,
            gateway.state,
            warehouse_results(gateway),
            interval_s=0.2,
            clock=lambda: T0 + timedelta(days=1),
        )
        with notifier(harness.settings):
            service.start()
            try:
                wait_for(lambda: len(hook.processed) == 2, 90, message="two alerts delivered")
            finally:
                service.stop()
        on_topic = alerts(harness)

    fired = {t.rule_id: t for t in on_topic if t.to_state == "firing"}
    assert set(fired) == {"regress-guard", "skewed-srm"}
    assert "skewed-guard" not in {t.rule_id for t in on_topic}  # suppressed by the SRM
    guard = fired["regress-guard"]
    assert guard.value is not None
    assert -0.55 < guard.value < -0.25  # the relative lift of purchases in 'treat'
    assert guard.threshold == -0.05
    assert "purchases in treat" in guard.message
    assert fired["skewed-srm"].value is not None
    assert fired["skewed-srm"].value < 0.001
    assert {t["rule_id"] for t in hook.transitions()} == {"regress-guard", "skewed-srm"}


def test_a_restart_resumes_from_the_record_and_repeats_nothing(harness: Harness) -> None:
    state = harness.app.state.gateway.state
    harness.put_config(experiment("again"), rule("again-srm", "srm", "again"))
    generate(harness, "again", {"control": 300, "treat": 100}, {"control": 1.0, "treat": 1.0})
    clock = [T0 + timedelta(days=1)]
    results = warehouse_results(harness.app.state.gateway)

    def run_once(service: ExperimentAlertService) -> list[AlertTransition]:
        service.seed(read_recorded(harness.settings))
        publisher = AlertPublisher(harness.settings)
        try:
            return service.tick(publisher)
        finally:
            publisher.close()

    first = ExperimentAlertService(harness.settings, state, results, clock=lambda: clock[0])
    assert [t.to_state for t in run_once(first)] == ["firing"]
    clock[0] += timedelta(minutes=5)
    again = ExperimentAlertService(harness.settings, state, results, clock=lambda: clock[0])
    assert run_once(again) == []
    assert [t.rule_id for t in alerts(harness)].count("again-srm") == 1


# --- the alert API ----------------------------------------------------------------------------


def test_states_show_episodes_acknowledgements_and_mutes(harness: Harness) -> None:
    watched = AlertRule.model_validate(
        {
            "id": "checkout-drop",
            "project_id": "acme",
            "rule_kind": "threshold",
            "metric": "purchases",
            "direction": "below",
            "threshold": 10,
            "targets": [{"url": "https://hooks.example.com/x", "secret": "never-shown"}],
        }
    )
    harness.put_config(watched)
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    harness.insert_alerts(
        [
            {
                "rule_id": "checkout-drop",
                "from_state": "ok",
                "to_state": "pending",
                "at": at,
                "episode_id": "ep-7",
            },
            {
                "rule_id": "checkout-drop",
                "from_state": "pending",
                "to_state": "firing",
                "at": at + timedelta(minutes=1),
                "episode_id": "ep-7",
                "value": 3.0,
            },
        ]
    )
    client, base = harness.client, "/v1/admin/projects/acme/alert-rules/checkout-drop"

    def status() -> dict[str, Any]:
        response = client.get("/v1/alerts/states", headers=harness.read)
        assert response.status_code == 200, response.text
        assert "never-shown" not in response.text
        found: dict[str, Any] = next(s for s in response.json() if s["rule_id"] == "checkout-drop")
        return found

    current = status()
    assert current["acknowledgement"] is None
    assert (current["state"], current["episode_id"], current["value"]) == ("firing", "ep-7", 3.0)
    assert current["acknowledged"] is False
    assert current["muted_until"] is None

    assert client.post(f"{base}/ack", json={}, headers=harness.read).status_code == 403
    acked = client.post(f"{base}/ack", json={"note": "on it"}, headers=harness.admin)
    assert acked.status_code == 200, acked.text
    assert acked.json()["episode_id"] == "ep-7"
    assert status()["acknowledged"] is True
    assert status()["acknowledgement"]["note"] == "on it"

    muted = client.put(
        f"{base}/mute", json={"minutes": 30, "reason": "fix deploying"}, headers=harness.admin
    )
    assert muted.status_code == 200, muted.text
    until = datetime.fromisoformat(muted.json()["until"])
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
    assert isinstance(state_of(harness, "alert_mute:acme:checkout-drop"), AlertMute)
    assert status()["mute_reason"] == "fix deploying"

    assert client.delete(f"{base}/mute", headers=harness.admin).status_code == 204
    assert status()["muted_until"] is None

    both = client.put(
        f"{base}/mute", json={"minutes": 5, "until": "2030-01-01T00:00:00Z"}, headers=harness.admin
    )
    assert both.status_code == 422
    past = client.put(f"{base}/mute", json={"until": "2020-01-01T00:00:00Z"}, headers=harness.admin)
    assert past.status_code == 422
    unknown = client.put(
        "/v1/admin/projects/acme/alert-rules/nope/mute", json={"minutes": 5}, headers=harness.admin
    )
    assert unknown.status_code == 404


def state_of(harness: Harness, key: str) -> object:
    state: ConfigState = harness.app.state.gateway.state
    return state.get(key)
