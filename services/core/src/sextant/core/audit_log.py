"""The audit topic: appending entries, and following them into memory.

Audit entries are few next to events (config changes, key events, refusals), so every gateway
follows the whole topic into memory, as the config is followed, and answers
``GET /v1/admin/audit`` from there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sextant.core.background import BackgroundLoop
from sextant.core.kafka import TopicReader, make_producer, note_use
from sextant.core.logging import get_logger
from sextant.core.settings import KafkaSection
from sextant.schemas.audit import Actor, AuditAction, AuditEntry
from sextant.schemas.config import Account, ApiKey, ConfigDocument, parse_config_key
from sextant.schemas.topics import Topic, topic_name

__all__ = ["AuditFollower", "AuditPublisher", "audit_view", "change_action", "config_entries"]

log = get_logger(__name__)


def change_action(before: ConfigDocument | None, after: ConfigDocument | None) -> AuditAction:
    """What a write of ``after`` over ``before`` means (key events are named as such)."""
    if isinstance(after, ApiKey) or isinstance(before, ApiKey):
        if before is None:
            return AuditAction.KEY_CREATED
        if isinstance(after, ApiKey) and after.revoked and not before.revoked:  # type: ignore[union-attr]
            return AuditAction.KEY_REVOKED
    if before is None:
        return AuditAction.CONFIG_CREATED
    return AuditAction.CONFIG_DELETED if after is None else AuditAction.CONFIG_CHANGED


def audit_view(document: ConfigDocument | None) -> dict[str, Any] | None:
    """A document as the audit log keeps it: an account without its password hash."""
    if document is None:
        return None
    if isinstance(document, Account):
        return document.redacted()
    return document.model_dump(mode="json")


def config_entries(
    writes: Iterable[tuple[str, ConfigDocument | None, ConfigDocument | None]],
    actor: Actor,
    source: str = "",
) -> list[AuditEntry]:
    """One entry per (config key, before, after) that changes something."""
    now = datetime.now(UTC)
    return [
        AuditEntry(
            id=uuid.uuid4().hex,
            at=now,
            project_id=parse_config_key(key)[1],
            action=change_action(before, after),
            actor=actor,
            target=key,
            source=source,
            before=audit_view(before),
            after=audit_view(after),
        )
        for key, before, after in writes
        if before != after
    ]


class AuditPublisher:
    """Appends entries to the audit topic with ``acks=all``, waiting for the broker."""

    def __init__(self, settings: KafkaSection) -> None:
        self.topic = topic_name(Topic.AUDIT, settings.topic_prefix)
        note_use(self.topic, "writes")
        self._producer = make_producer(settings)

    def publish(self, entries: Sequence[AuditEntry], timeout_s: float = 10.0) -> None:
        futures = [
            self._producer.send(
                self.topic, key=e.kafka_key().encode(), value=e.model_dump_json().encode()
            )
            for e in entries
        ]
        if futures:
            self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)

    def send(self, entry: AuditEntry) -> None:
        """Append ``entry`` without waiting: a failure is logged (the producer retries first),
        and :meth:`close` waits for what is still in flight."""
        future = self._producer.send(
            self.topic, key=entry.kafka_key().encode(), value=entry.model_dump_json().encode()
        )
        future.add_errback(
            lambda error: log.error("an audit entry was not stored", id=entry.id, error=str(error))
        )

    def close(self) -> None:
        self._producer.flush(timeout=10)
        self._producer.close(timeout=5)


class AuditFollower(BackgroundLoop):
    """Reads the audit topic from the beginning and keeps following it; ``on_entry`` hears
    each entry once per session (a reconnect reads the topic again: entries carry ids)."""

    name = "audit-follower"

    def __init__(self, settings: KafkaSection, on_entry: Callable[[AuditEntry], None]) -> None:
        super().__init__(retry_initial_s=1.0, retry_max_s=5.0)
        self.settings = settings
        self.topic = topic_name(Topic.AUDIT, settings.topic_prefix)
        self._on_entry = on_entry
        self._caught_up = threading.Event()
        note_use(self.topic, "reads")

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def session(self) -> None:
        reader = TopicReader(self.settings, self.topic)
        try:
            partitions = reader.assign(30.0, self.stopping)
            if not partitions:
                return
            reader.seek_to_beginning()
            end = reader.end_offsets()
            self.connected()
            while not self.stopping.is_set():
                for record in reader.poll(0.5):
                    self._apply(record.value)
                if all(reader.position(p) >= end.get(p, 0) for p in partitions):
                    self._caught_up.set()
        finally:
            reader.close()

    def _apply(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            self._on_entry(AuditEntry.model_validate_json(value))
        except ValidationError:
            log.error("skipping an unreadable audit entry")
