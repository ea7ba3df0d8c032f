"""The audit topic: appending entries, and following them into memory.

Audit entries are few next to events (config changes, key events, refusals), so every gateway
follows the whole topic into memory, as the config is followed, and answers
``GET /v1/admin/audit`` from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from sextant.core.background import BackgroundLoop
from sextant.core.kafka import TopicReader, make_producer, note_use
from sextant.core.logging import get_logger
from sextant.core.settings import KafkaSection
from sextant.schemas.audit import AuditEntry
from sextant.schemas.topics import Topic, topic_name

__all__ = ["AuditFollower", "AuditPublisher"]

log = get_logger(__name__)


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
