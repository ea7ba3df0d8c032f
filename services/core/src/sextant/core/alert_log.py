"""The alerts topic as evaluators use it: what has been recorded, and publishing more.

An evaluator (the processor's metric rules, the gateway's experiment rules) resumes from the
last transition recorded per rule, so a restart neither repeats a transition nor forgets an
open episode; it publishes with ``acks=all`` and waits, so a transition it counts as emitted
is on the topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from sextant.core.kafka import make_producer, note_use, read_all
from sextant.core.logging import get_logger
from sextant.core.settings import KafkaSection
from sextant.schemas.records import AlertTransition
from sextant.schemas.topics import Topic, topic_name

__all__ = ["AlertPublisher", "RuleKey", "read_recorded"]

log = get_logger(__name__)
RuleKey = tuple[str, str]
"""(project_id, rule_id)."""


def read_recorded(
    settings: KafkaSection, timeout_s: float = 30.0
) -> dict[RuleKey, AlertTransition]:
    """The last transition (latest ``at``; on a tie, the later record) of every rule."""
    recorded: dict[RuleKey, AlertTransition] = {}
    topic = topic_name(Topic.ALERTS, settings.topic_prefix)
    for record in read_all(settings, topic, timeout_s):
        if record.value is None:
            continue
        try:
            transition = AlertTransition.model_validate_json(record.value)
        except ValidationError:
            log.error("skipping an unreadable alert transition", offset=record.offset)
            continue
        key = (transition.project_id, transition.rule_id)
        known = recorded.get(key)
        if known is None or transition.at >= known.at:
            recorded[key] = transition
    return recorded


class AlertPublisher:
    """Writes transitions to the alerts topic, keyed ``project_id:rule_id``."""

    def __init__(self, settings: KafkaSection) -> None:
        self.topic = topic_name(Topic.ALERTS, settings.topic_prefix)
        note_use(self.topic, "writes")
        self._producer = make_producer(settings)

    def publish(self, transitions: Sequence[AlertTransition], timeout_s: float = 10.0) -> None:
        """Return once the broker has every transition; raise if it has not within
        ``timeout_s`` (the caller keeps them and retries: ids make a repeat harmless)."""
        futures = [
            self._producer.send(
                self.topic,
                key=t.kafka_key().encode(),
                value=t.model_dump_json().encode(),
            )
            for t in transitions
        ]
        if futures:
            self._producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)
