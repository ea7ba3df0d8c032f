"""The notifier against a real broker and a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sextant.core.alert_log import AlertPublisher
from sextant.core.config_plane import ConfigPublisher
from sextant.core.settings import KafkaSection
from sextant.notifier.signing import verify
from sextant.schemas.config import AlertMute, AlertRule, ConfigDocument, Project
from sextant.schemas.records import AlertState, AlertTransition
from tests.infra import wait_for
from tests.integration.alerting_support import BOX, SECRET, notifier, receiver

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def rule(url: str, rule_id: str = "checkout-drop") -> AlertRule:
    return AlertRule.model_validate(
        {
            "id": rule_id,
            "project_id": "shop",
            "name": "Checkout conversion dropped",
            "rule_kind": "threshold",
            "metric": "checkout",
            "direction": "below",
            "threshold": 0.08,
            "severity": "critical",
            "targets": [{"url": url, "secret": BOX.seal(SECRET)}],
        }
    )


def transition(
    to: AlertState, tid: str, rule_id: str = "checkout-drop", **fields: Any
) -> AlertTransition:
    values: dict[str, Any] = {
        "transition_id": tid,
        "project_id": "shop",
        "rule_id": rule_id,
        "episode_id": "episode-1",
        "from_state": AlertState.PENDING,
        "to_state": to,
        "at": AT,
        "value": 0.05,
        "threshold": 0.08,
        "severity": "critical",
        "message": "Checkout conversion dropped: firing",
    }
    return AlertTransition.model_validate(values | fields)


def configure(kafka: KafkaSection, *documents: ConfigDocument) -> None:
    publisher = ConfigPublisher(kafka)
    try:
        publisher.put([Project(id="shop", project_id="shop", name="Shop"), *documents])
    finally:
        publisher.close()


def publish(kafka: KafkaSection, *transitions: AlertTransition) -> None:
    publisher = AlertPublisher(kafka)
    try:
        publisher.publish(transitions)
    finally:
        publisher.close()


def deliveries(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    response = client.get("/deliveries", params=query)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_receiver_failing_three_times_gets_the_alert_exactly_once(
    kafka_settings: KafkaSection,
) -> None:
    with receiver(fail_first=3) as hook:
        configure(kafka_settings, rule(hook.url))
        with notifier(kafka_settings) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, 60, message="ready")
            firing = transition(AlertState.FIRING, "t-firing")
            # Pending is not notified; the firing transition arrives twice (two evaluators).
            publish(kafka_settings, transition(AlertState.PENDING, "t-pending"), firing, firing)
            wait_for(
                lambda: deliveries(client, outcome="duplicate"), 60, message="duplicate handled"
            )
            delivered = deliveries(client, outcome="delivered")

    assert [d["transition_id"] for d in delivered] == ["t-firing"]
    assert delivered[0]["attempts"] == 4
    assert "127.0.0.1" in delivered[0]["target"]
    assert "/hooks/" not in delivered[0]["target"]  # paths may hold secrets: never shown
    assert len(hook.requests) == 4  # three failures, one success, nothing after
    assert {r.headers["idempotency-key"] for r in hook.requests} == {"t-firing"}
    assert [t["transition_id"] for t in hook.transitions()] == ["t-firing"]


def test_the_signature_verifies_with_the_shared_secret(kafka_settings: KafkaSection) -> None:
    with receiver() as hook:
        configure(kafka_settings, rule(hook.url))
        with notifier(kafka_settings):
            publish(kafka_settings, transition(AlertState.FIRING, "t-signed"))
            wait_for(lambda: hook.processed, 60, message="delivery")

    request = hook.requests[0]
    header = request.headers["x-sextant-signature"]
    timestamp, signature = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert abs(int(timestamp) - time.time()) < 120
    assert verify(SECRET, header, request.body, now=time.time())
    assert not verify("another secret", header, request.body, now=time.time())
    body = request.json()
    assert body["type"] == "sextant.alert.transition"
    assert body["transition"]["to_state"] == "firing"
    assert body["rule"]["name"] == "Checkout conversion dropped"


def test_a_muted_rule_is_not_delivered_and_the_log_says_so(kafka_settings: KafkaSection) -> None:
    with receiver() as hook:
        mute = AlertMute(
            id="quiet-rule", project_id="shop", until=datetime.now(UTC) + timedelta(hours=1)
        )
        configure(kafka_settings, rule(hook.url), rule(hook.url, "quiet-rule"), mute)
        with notifier(kafka_settings) as client:
            publish(
                kafka_settings,
                transition(AlertState.FIRING, "t-muted", rule_id="quiet-rule"),
                transition(AlertState.FIRING, "t-loud"),
            )
            wait_for(lambda: len(deliveries(client)) == 2, 60, message="both handled")
            outcomes = {d["transition_id"]: d["outcome"] for d in deliveries(client)}
            metrics = client.get("/metrics").text

    assert outcomes == {"t-muted": "muted", "t-loud": "delivered"}
    assert [t["transition_id"] for t in hook.transitions()] == ["t-loud"]
    assert 'sextant_notifier_deliveries_total{outcome="muted"} 1.0' in metrics
