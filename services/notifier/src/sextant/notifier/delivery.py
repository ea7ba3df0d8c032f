"""Delivering one transition to one webhook: the body, the signature, retries, the record.

Contract of :meth:`WebhookSender.send`: it returns a :class:`Delivery` saying what happened;
it never raises. Every attempt carries the same body and the same ``Idempotency-Key`` (the
transition id), so a receiver that saw an attempt succeed without the notifier hearing back
can drop the repeat. Attempts are retried on connection errors, timeouts, 408, 425, 429 and
5xx answers, after a random wait in ``[0, min(max, base * 2^(n-1))]`` ("full jitter", which
spreads the retries of many notifiers instead of synchronising them); a ``Retry-After`` of
429/503 is honoured up to the maximum wait. Other answers are final.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import httpx
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict

from sextant.notifier.signing import SIGNATURE_HEADER, signature_header
from sextant.notifier.targets import redact
from sextant.schemas.config import AlertRule, WebhookTarget
from sextant.schemas.records import AlertState, AlertTransition

__all__ = [
    "Delivery",
    "DeliveryLog",
    "NotifierMetrics",
    "Outcome",
    "WebhookSender",
    "render_body",
]

Outcome = Literal["delivered", "failed", "refused", "muted", "duplicate", "interrupted"]
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_USER_AGENT = "sextant-notifier/0.1"
_COLOURS = {
    AlertState.FIRING: "#d1242f",
    AlertState.RESOLVED: "#1a7f37",
    AlertState.PENDING: "#bf8700",
    AlertState.NO_DATA: "#6e7781",
    AlertState.ERROR: "#8250df",
    AlertState.OK: "#1a7f37",
}


class Delivery(BaseModel):
    """What became of one transition for one target (the target as :func:`redact` shows it)."""

    model_config = ConfigDict(frozen=True)

    transition_id: str
    project_id: str
    rule_id: str
    to_state: str
    target: str
    outcome: Outcome
    attempts: int
    status_code: int | None
    error: str
    at: datetime
    seconds: float


class DeliveryLog:
    """The latest deliveries, newest first; safe to use from any thread."""

    def __init__(self, size: int) -> None:
        self._items: deque[Delivery] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            self._items.appendleft(delivery)

    def list(
        self,
        limit: int = 100,
        transition_id: str | None = None,
        rule_id: str | None = None,
        outcome: str | None = None,
    ) -> list[Delivery]:
        with self._lock:
            items = list(self._items)
        return [
            d
            for d in items
            if (transition_id is None or d.transition_id == transition_id)
            and (rule_id is None or d.rule_id == rule_id)
            and (outcome is None or d.outcome == outcome)
        ][:limit]


class NotifierMetrics:
    """The notifier's Prometheus metrics, on a registry of the app's own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.transitions = Counter(
            "sextant_notifier_transitions",
            "Transitions read from the alerts topic, by what was done (notify, not_notified, "
            "no_rule, unreadable, duplicate)",
            ["handling"],
            registry=registry,
        )
        self.deliveries = Counter(
            "sextant_notifier_deliveries",
            "Deliveries to webhook targets, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "sextant_notifier_delivery_attempts",
            "HTTP attempts made to webhook targets (retries included)",
            registry=registry,
        )
        self.seconds = Histogram(
            "sextant_notifier_delivery_seconds",
            "Time from the first attempt to the final outcome of a delivery",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
            registry=registry,
        )


def _rule_summary(rule: AlertRule) -> dict[str, object]:
    return {
        "id": rule.id,
        "name": rule.name,
        "rule_kind": rule.rule_kind.value,
        "metric": rule.metric,
        "experiment": rule.experiment,
        "severity": rule.severity.value,
    }


def _slack_text(transition: AlertTransition, rule: AlertRule) -> str:
    label = rule.name or rule.id
    head = f"[{transition.severity.upper()}] {label} is {transition.to_state.value.upper()}"
    facts = [f"project `{transition.project_id}`", f"at {transition.at.isoformat()}"]
    if transition.value is not None:
        facts.insert(0, f"value {transition.value:.6g}")
    if transition.threshold is not None:
        facts.insert(1, f"threshold {transition.threshold:.6g}")
    return f"*{head}*\n{transition.message}\n" + " · ".join(facts)


def render_body(
    transition: AlertTransition, rule: AlertRule, body_format: Literal["json", "slack"]
) -> bytes:
    """The request body: Sextant's JSON document, or a Slack incoming-webhook message."""
    if body_format == "slack":
        text = _slack_text(transition, rule)
        colour = _COLOURS.get(transition.to_state, "#6e7781")
        return orjson.dumps({"text": text, "attachments": [{"color": colour, "text": text}]})
    return orjson.dumps(
        {
            "type": "sextant.alert.transition",
            "transition": transition.model_dump(mode="json"),
            "rule": _rule_summary(rule),
        }
    )


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in (429, 503):
        return None
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class WebhookSender:
    """Sends transitions to targets with retries. ``wait(seconds)`` pauses between attempts
    and returns ``True`` when the notifier is stopping (the delivery is then interrupted)."""

    def __init__(
        self,
        client: httpx.Client,
        metrics: NotifierMetrics,
        *,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
        wait: Callable[[float], bool],
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.wait = wait
        self.jitter = jitter
        self.clock = clock

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based): full jitter."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry - 1))
        return self.jitter() * ceiling

    def send(
        self, transition: AlertTransition, rule: AlertRule, target: WebhookTarget, secret: str
    ) -> Delivery:
        """Deliver to ``target``, signing with ``secret`` (the target's secret in clear; no
        signature when empty)."""
        body = render_body(transition, rule, target.format)
        started = time.monotonic()
        status: int | None = None
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            self.metrics.attempts.inc()
            retry_after: float | None = None
            try:
                response = self.client.post(
                    target.url, content=body, headers=self._headers(transition, secret, body)
                )
                status, error = response.status_code, ""
                if 200 <= status < 300:
                    return self._done(transition, target, "delivered", attempt, status, "", started)
                error = f"HTTP {status}"
                if status not in _RETRYABLE:
                    return self._done(transition, target, "failed", attempt, status, error, started)
                retry_after = _retry_after(response)
            except httpx.HTTPError as failure:
                status, error = None, type(failure).__name__
            if attempt == self.max_attempts:
                break
            delay = self.backoff(attempt)
            if retry_after is not None:
                delay = min(max(delay, retry_after), self.backoff_max_s)
            if self.wait(delay):
                return self._done(
                    transition, target, "interrupted", attempt, status, error, started
                )
        return self._done(transition, target, "failed", self.max_attempts, status, error, started)

    def _headers(self, transition: AlertTransition, secret: str, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "Idempotency-Key": transition.transition_id,
        }
        if secret:
            headers[SIGNATURE_HEADER] = signature_header(secret, int(self.clock()), body)
        return headers

    def _done(
        self,
        transition: AlertTransition,
        target: WebhookTarget,
        outcome: Outcome,
        attempts: int,
        status: int | None,
        error: str,
        started: float,
    ) -> Delivery:
        seconds = time.monotonic() - started
        self.metrics.deliveries.labels(outcome).inc()
        self.metrics.seconds.observe(seconds)
        return Delivery(
            transition_id=transition.transition_id,
            project_id=transition.project_id,
            rule_id=transition.rule_id,
            to_state=transition.to_state.value,
            target=redact(target.url),
            outcome=outcome,
            attempts=attempts,
            status_code=status,
            error=error,
            at=datetime.now(UTC),
            seconds=round(seconds, 4),
        )
