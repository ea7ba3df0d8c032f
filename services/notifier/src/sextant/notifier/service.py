"""The notifier's consumer: alerts topic in, webhook deliveries out, offsets committed after.

Each transition is looked up against its rule in the config plane: delivered when its new
state is in the rule's ``notify_on``, to every target of the rule (in parallel), unless the
rule is muted or the same transition id was handled already (evaluators may emit a transition
twice; the id is deterministic). Offsets are committed once every transition of a polled batch
is handled, so a crash re-delivers at most one batch, which receivers drop by
``Idempotency-Key``. A delivery that still fails after its retries is recorded as failed and
the notifier moves on: one dead endpoint must not hold every other team's alerts.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from sextant.core.background import BackgroundLoop
from sextant.core.batch_consumer import BatchConsumer, Partition
from sextant.core.config_plane import ConfigState
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.core.secrets import (
    MissingSecretKey,
    SecretBox,
    UnreadableSecret,
    is_sealed,
    open_secret,
)
from sextant.notifier.delivery import Delivery, DeliveryLog, NotifierMetrics, WebhookSender
from sextant.notifier.settings import NotifierSettings
from sextant.notifier.targets import Resolver, TargetRefused, check_target, redact, resolve_host
from sextant.schemas.config import AlertMute, AlertRule, WebhookTarget
from sextant.schemas.records import AlertTransition
from sextant.schemas.topics import Topic, topic_name

__all__ = ["NotifierService"]

log = get_logger(__name__)


class _Interrupted(Exception):  # noqa: N818 - internal signal
    """Stopping in the middle of a delivery: leave the batch uncommitted."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class NotifierService(BackgroundLoop):
    """The consumer loop in a thread of its own (a
    :class:`~sextant.core.background.BackgroundLoop`); its progress per ``alerts`` partition
    (committed offsets) is reported under ``notifier``.

    :meth:`handle` is the whole decision for one transition and may be called directly.
    """

    name = "notifier"

    def __init__(
        self,
        settings: NotifierSettings,
        config: ConfigState,
        deliveries: DeliveryLog,
        metrics: NotifierMetrics,
        *,
        config_ready: Callable[[], bool] = lambda: True,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = _utc_now,
        jitter: Callable[[], float] = random.random,
        resolve: Resolver = resolve_host,
        secrets: SecretBox | None = None,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(progress=progress, retry_initial_s=1.0, retry_max_s=10.0)
        self.settings = settings
        self.secrets = secrets
        self.config = config
        self.deliveries = deliveries
        self.metrics = metrics
        self.config_ready = config_ready
        self.clock = clock
        self.resolve = resolve
        self.topic = topic_name(Topic.ALERTS, settings.topic_prefix)
        # Redirects are not followed: a redirect could lead to an address never checked.
        self.client = httpx.Client(
            timeout=settings.webhook_timeout_seconds, transport=transport, follow_redirects=False
        )
        self.sender = WebhookSender(
            self.client,
            metrics,
            max_attempts=settings.webhook_max_attempts,
            backoff_base_s=settings.webhook_backoff_base_seconds,
            backoff_max_s=settings.webhook_backoff_max_seconds,
            wait=self.stopping.wait,
            jitter=jitter,
        )
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook")

    # --- BackgroundService ---

    def stop(self, timeout_s: float = 15.0) -> None:
        super().stop(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # --- one transition ---

    def handle(self, transition: AlertTransition) -> list[Delivery]:
        """Deliver ``transition`` as its rule says; the deliveries made (also logged)."""
        rule = self.config.get(f"alert_rule:{transition.project_id}:{transition.rule_id}")
        if not isinstance(rule, AlertRule):
            self.metrics.transitions.labels("no_rule").inc()
            log.warning("transition of an unknown rule", rule=transition.rule_id)
            return []
        if transition.to_state not in rule.notify_on:
            self.metrics.transitions.labels("not_notified").inc()
            return []
        if transition.transition_id in self._seen:
            self.metrics.transitions.labels("duplicate").inc()
            return self._record([self._skipped(transition, t, "duplicate") for t in rule.targets])
        self.metrics.transitions.labels("notify").inc()
        if self._muted(rule):
            deliveries = [self._skipped(transition, t, "muted") for t in rule.targets]
        else:
            deliveries = list(
                self._pool.map(lambda t: self._deliver(transition, rule, t), rule.targets)
            )
        if any(d.outcome == "interrupted" for d in deliveries):
            raise _Interrupted
        self._remember(transition.transition_id)
        return self._record(deliveries)

    def _deliver(
        self, transition: AlertTransition, rule: AlertRule, target: WebhookTarget
    ) -> Delivery:
        try:
            check_target(
                target.url,
                refuse_private=self.settings.webhook_refuse_private,
                allow_loopback=self.settings.webhook_allow_loopback,
                resolve=self.resolve,
            )
        except TargetRefused as refused:
            return self._skipped(transition, target, "refused", str(refused))
        try:
            secret = open_secret(target.secret, self.secrets, "the target's signing secret")
        except (MissingSecretKey, UnreadableSecret) as error:
            log.error(
                "a webhook signing secret cannot be opened",
                rule=rule.id,
                target=redact(target.url),
                reason=str(error),
            )
            return self._skipped(
                transition,
                target,
                "refused",
                "the target's signing secret does not open with SEXTANT_SECRET_KEY",
            )
        if secret and not is_sealed(target.secret):
            log.warning(
                "a webhook signing secret is stored in clear; `sextant secrets rotate` seals it",
                rule=rule.id,
            )
        return self.sender.send(transition, rule, target, secret)

    def _muted(self, rule: AlertRule) -> bool:
        mute = self.config.get(f"alert_mute:{rule.project_id}:{rule.id}")
        return isinstance(mute, AlertMute) and mute.until > self.clock()

    def _skipped(
        self, transition: AlertTransition, target: WebhookTarget, outcome: Any, error: str = ""
    ) -> Delivery:
        self.metrics.deliveries.labels(outcome).inc()
        return Delivery(
            transition_id=transition.transition_id,
            project_id=transition.project_id,
            rule_id=transition.rule_id,
            to_state=transition.to_state.value,
            target=redact(target.url),
            outcome=outcome,
            attempts=0,
            status_code=None,
            error=error,
            at=self.clock(),
            seconds=0.0,
        )

    def _record(self, deliveries: list[Delivery]) -> list[Delivery]:
        for d in deliveries:
            self.deliveries.add(d)
            log.info(
                "webhook delivery",
                rule=d.rule_id,
                state=d.to_state,
                target=d.target,
                outcome=d.outcome,
                attempts=d.attempts,
                status=d.status_code,
                error=d.error or None,
            )
        return deliveries

    def _remember(self, transition_id: str) -> None:
        self._seen[transition_id] = None
        while len(self._seen) > self.settings.dedupe_size:
            self._seen.popitem(last=False)

    # --- the consumer loop ---

    def session(self) -> None:
        while not self.config_ready():
            if self.wait(0.2):
                return
        consumer = BatchConsumer(
            self.settings,
            self.settings.notifier_group,
            [self.topic],
            # Retries can take minutes: a long poll interval before the group would consider
            # this member gone (batches are small).
            max_poll_interval_ms=900_000,
        )
        try:
            self.connected()
            next_lag = 0.0
            while not self.stopping.is_set():
                records = consumer.poll(0.5, 20)
                for record in records:
                    self._handle_value(record.value)
                if records:
                    done: dict[Partition, int] = {}
                    for record in records:
                        key = (record.topic, record.partition)
                        done[key] = max(done.get(key, 0), record.offset + 1)
                    consumer.commit(done)
                    for (topic, partition), offset in done.items():
                        self.progress.moved(f"{topic}:{partition}", offset)
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + 5.0
                    for (topic, partition), lag in consumer.lag().items():
                        self.progress.waiting(f"{topic}:{partition}", lag)
        except _Interrupted:
            return  # stopping in the middle of a delivery: nothing of the batch is committed
        finally:
            consumer.close()

    def _handle_value(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            transition = AlertTransition.model_validate_json(value)
        except ValidationError:
            self.metrics.transitions.labels("unreadable").inc()
            log.error("skipping an unreadable alert transition")
            return
        self.handle(transition)
