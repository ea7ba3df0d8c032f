"""The notifier's decisions: signatures, targets, retries with jitter, mutes and duplicates."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from sextant.core.config_plane import ConfigState
from sextant.core.secrets import SecretBox, generate_secret_key
from sextant.notifier.delivery import DeliveryLog, NotifierMetrics, WebhookSender, render_body
from sextant.notifier.service import NotifierService
from sextant.notifier.settings import NotifierSettings
from sextant.notifier.signing import sign, verify
from sextant.notifier.targets import TargetRefused, check_target, redact
from sextant.schemas.config import AlertMute, AlertRule, WebhookTarget
from sextant.schemas.records import AlertState, AlertTransition

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
URL = "https://hooks.example.com/services/T0/B0/very-secret-token"
BOX = SecretBox([generate_secret_key()])
SEALED = BOX.seal("s3cret")


def rule(**fields: Any) -> AlertRule:
    base: dict[str, Any] = {
        "id": "checkout-drop",
        "project_id": "shop",
        "name": "Checkout dropped",
        "rule_kind": "threshold",
        "metric": "checkout",
        "direction": "below",
        "threshold": 0.08,
        "severity": "critical",
        "targets": [{"url": URL, "secret": SEALED}],
    }
    return AlertRule.model_validate(base | fields)


def transition(to: AlertState = AlertState.FIRING, tid: str = "t-1") -> AlertTransition:
    return AlertTransition(
        transition_id=tid,
        project_id="shop",
        rule_id="checkout-drop",
        episode_id="e-1",
        from_state=AlertState.PENDING,
        to_state=to,
        at=NOW,
        value=0.05,
        threshold=0.08,
        severity="critical",
        message="Checkout dropped: firing",
    )


class Receiver:
    """An httpx transport answering with the given statuses in turn, recording requests."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status, headers=self.headers)


def sender(receiver: Receiver, waits: list[float], attempts: int = 6) -> WebhookSender:
    client = httpx.Client(transport=httpx.MockTransport(receiver))
    return WebhookSender(
        client,
        NotifierMetrics(CollectorRegistry()),
        max_attempts=attempts,
        backoff_base_s=1.0,
        backoff_max_s=30.0,
        wait=lambda s: waits.append(s) is not None,
        jitter=lambda: 1.0,
        clock=lambda: 1_741_000_000.0,
    )


# --- signatures ---------------------------------------------------------------------------


def test_the_signature_is_an_hmac_of_timestamp_and_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", b'1741000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign("s3cret", 1_741_000_000, body) == expected
    header = f"t=1741000000,v1={expected}"
    assert verify("s3cret", header, body, now=1_741_000_100)
    assert not verify("other", header, body, now=1_741_000_100)
    assert not verify("s3cret", header, b'{"a":2}', now=1_741_000_100)
    assert not verify("s3cret", header, body, now=1_741_000_000 + 3600)  # a replay


# --- targets ------------------------------------------------------------------------------


def resolver(*addresses: str) -> Any:
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("url", "addresses", "reason"),
    [
        ("ftp://example.com/x", ("93.184.216.34",), "http and https"),
        ("https://user:pw@example.com/x", ("93.184.216.34",), "credentials"),
        ("https://internal.corp/x", ("10.0.0.7",), "private"),
        ("http://metadata/x", ("169.254.169.254",), "private"),
        ("http://localhost:8080/x", ("127.0.0.1",), "private"),
        ("http://[::ffff:192.168.1.1]/x", ("::ffff:192.168.1.1",), "private"),
        ("https://split.example/x", ("93.184.216.34", "192.168.0.1"), "private"),
    ],
)
def test_targets_are_refused(url: str, addresses: tuple[str, ...], reason: str) -> None:
    with pytest.raises(TargetRefused, match=reason) as refused:
        check_target(url, resolve=resolver(*addresses))
    assert "pw" not in str(refused.value)


def test_loopback_and_private_targets_are_allowed_by_the_settings() -> None:
    check_target("http://127.0.0.1:9/x", allow_loopback=True, resolve=resolver("127.0.0.1"))
    check_target("http://10.1.2.3/x", refuse_private=False)
    check_target("https://hooks.example.com/x", resolve=resolver("93.184.216.34"))


def test_logs_never_show_the_path_or_credentials_of_a_target() -> None:
    shown = redact(URL)
    assert shown.startswith("https://hooks.example.com/…#")
    assert "secret" not in shown
    assert redact(URL) != redact(URL + "x")


# --- retries ------------------------------------------------------------------------------


def test_failures_are_retried_with_full_jitter_and_one_idempotency_key() -> None:
    receiver, waits = Receiver(500, 502, 503, 200), []
    delivery = sender(receiver, waits).send(transition(), rule(), rule().targets[0], "s3cret")
    assert (delivery.outcome, delivery.attempts, delivery.status_code) == ("delivered", 4, 200)
    assert waits == [1.0, 2.0, 4.0]  # jitter() = 1: the ceiling of each backoff
    assert {r.headers["idempotency-key"] for r in receiver.requests} == {"t-1"}
    assert len({r.content for r in receiver.requests}) == 1


def test_the_backoff_ceiling_doubles_up_to_the_maximum() -> None:
    s = sender(Receiver(200), [])
    s.jitter = lambda: 0.5
    assert [s.backoff(n) for n in (1, 2, 3, 6, 10)] == [0.5, 1.0, 2.0, 15.0, 15.0]


def test_a_client_error_is_final_and_retries_run_out() -> None:
    waits: list[float] = []
    refused = sender(Receiver(400), waits).send(transition(), rule(), rule().targets[0], "s3cret")
    assert (refused.outcome, refused.attempts, waits) == ("failed", 1, [])
    down = sender(Receiver(503), waits, attempts=3).send(
        transition(), rule(), rule().targets[0], "s3cret"
    )
    assert (down.outcome, down.attempts, down.error) == ("failed", 3, "HTTP 503")


def test_retry_after_is_honoured_up_to_the_maximum_wait() -> None:
    waits: list[float] = []
    receiver = Receiver(429, 200, headers={"Retry-After": "7"})
    sender(receiver, waits).send(transition(), rule(), rule().targets[0], "s3cret")
    assert waits == [7.0]


def test_the_signature_header_verifies_against_the_body_sent() -> None:
    receiver = Receiver(200)
    sender(receiver, []).send(transition(), rule(), rule().targets[0], "s3cret")
    request = receiver.requests[0]
    assert verify("s3cret", request.headers["x-sextant-signature"], request.content, 1_741_000_001)
    body = json.loads(request.content)
    assert body["transition"]["transition_id"] == "t-1"
    assert body["rule"]["severity"] == "critical"


def test_the_slack_format_is_a_message() -> None:
    body = json.loads(render_body(transition(), rule(), "slack"))
    assert body["text"].startswith("*[CRITICAL] Checkout dropped is FIRING*")
    assert "value 0.05" in body["text"]


# --- the decision per transition ----------------------------------------------------------


def service(
    state: ConfigState,
    receiver: Receiver,
    now: datetime = NOW,
    address: str = "93.184.216.34",
    secrets: SecretBox | None = BOX,
) -> NotifierService:
    settings = NotifierSettings(webhook_backoff_base_seconds=0.001)
    return NotifierService(
        settings,
        state,
        DeliveryLog(100),
        NotifierMetrics(CollectorRegistry()),
        transport=httpx.MockTransport(receiver),
        clock=lambda: now,
        resolve=resolver(address),
        secrets=secrets,
    )


def with_documents(*documents: Any) -> ConfigState:
    state = ConfigState()
    for document in documents:
        state.apply(document.config_key(), document)
    return state


def test_only_the_states_a_rule_notifies_on_are_delivered() -> None:
    receiver = Receiver(200)
    notifier = service(with_documents(rule()), receiver)
    assert notifier.handle(transition(AlertState.PENDING, "t-0")) == []
    assert [d.outcome for d in notifier.handle(transition())] == ["delivered"]
    assert [d.outcome for d in notifier.handle(transition(AlertState.RESOLVED, "t-2"))] == [
        "delivered"
    ]
    assert len(receiver.requests) == 2


def test_a_repeated_transition_is_delivered_once() -> None:
    receiver = Receiver(200)
    notifier = service(with_documents(rule()), receiver)
    notifier.handle(transition())
    assert [d.outcome for d in notifier.handle(transition())] == ["duplicate"]
    assert len(receiver.requests) == 1


def test_a_muted_rule_is_not_delivered_until_the_mute_expires() -> None:
    mute = AlertMute(id="checkout-drop", project_id="shop", until=NOW + timedelta(hours=1))
    receiver = Receiver(200)
    muted = service(with_documents(rule(), mute), receiver)
    assert [d.outcome for d in muted.handle(transition())] == ["muted"]
    later = service(with_documents(rule(), mute), receiver, NOW + timedelta(hours=2))
    assert [d.outcome for d in later.handle(transition())] == ["delivered"]


def test_every_target_is_called_and_refused_ones_are_logged() -> None:
    targets = [
        WebhookTarget(url="https://a.example/hook"),
        WebhookTarget(url="https://b.example/hook", format="slack"),
    ]
    receiver = Receiver(200)
    notifier = service(with_documents(rule(targets=targets)), receiver)
    assert sorted(d.outcome for d in notifier.handle(transition())) == ["delivered"] * 2
    internal = service(with_documents(rule(targets=targets)), receiver, address="10.0.0.8")
    refused = internal.handle(transition(tid="t-9"))
    assert [d.outcome for d in refused] == ["refused", "refused"]
    assert len(receiver.requests) == 2  # the two deliveries above, nothing more


def test_a_transition_of_an_unknown_rule_is_skipped() -> None:
    assert service(ConfigState(), Receiver(200)).handle(transition()) == []


# --- sealed signing secrets -----------------------------------------------------------------


def test_a_sealed_secret_is_opened_to_sign_and_never_shown() -> None:
    receiver = Receiver(200)
    notifier = service(with_documents(rule()), receiver)
    [delivery] = notifier.handle(transition())
    assert delivery.outcome == "delivered"
    request = receiver.requests[0]
    assert verify("s3cret", request.headers["x-sextant-signature"], request.content, time.time())
    assert "s3cret" not in delivery.model_dump_json()
    assert SEALED not in delivery.model_dump_json()


def test_a_secret_the_key_does_not_open_refuses_the_delivery_with_a_reason() -> None:
    receiver = Receiver(200)
    other = service(with_documents(rule()), receiver, secrets=SecretBox([generate_secret_key()]))
    [refused] = other.handle(transition())
    assert (refused.outcome, len(receiver.requests)) == ("refused", 0)
    assert "SEXTANT_SECRET_KEY" in refused.error
    keyless = service(with_documents(rule()), receiver, secrets=None)
    assert [d.outcome for d in keyless.handle(transition(tid="t-2"))] == ["refused"]


def test_a_secret_left_in_clear_by_an_older_writer_still_signs() -> None:
    receiver = Receiver(200)
    legacy = rule(targets=[{"url": URL, "secret": "s3cret"}])
    service(with_documents(legacy), receiver).handle(transition())
    request = receiver.requests[0]
    assert verify("s3cret", request.headers["x-sextant-signature"], request.content, time.time())


def test_the_notifier_does_not_start_without_the_master_key() -> None:
    from sextant.core.secrets import MissingSecretKey
    from sextant.notifier.app import create_app

    with pytest.raises(MissingSecretKey, match="SEXTANT_SECRET_KEY is not set"):
        create_app(NotifierSettings(), state=ConfigState())
