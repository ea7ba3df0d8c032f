"""The dead-letter topic: records the sink can never write, kept with the reason."""

from __future__ import annotations

from collections.abc import Sequence

from sextant.core.kafka import make_producer, note_use
from sextant.core.settings import KafkaSection
from sextant.schemas.records import SinkDeadLetter
from sextant.schemas.topics import Topic, topic_name


class KafkaDeadLetters:
    """Writes :class:`SinkDeadLetter` records, keyed ``topic:partition:offset``.

    At least once: a batch replayed after a crash between sending its letters and committing
    its offsets sends them again; the key tells a reader which copies are the same record.
    """

    def __init__(self, settings: KafkaSection, timeout_s: float = 10.0) -> None:
        self._producer = make_producer(settings, max_block_ms=int(timeout_s * 1000))
        self._topic = topic_name(Topic.SINK_DEAD_LETTER, settings.topic_prefix)
        note_use(self._topic, "writes")
        self._timeout_s = timeout_s

    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        """Return once the broker has every letter; raise ``KafkaError`` otherwise."""
        futures = [
            self._producer.send(
                self._topic,
                key=f"{letter.source_topic}:{letter.partition}:{letter.offset}".encode(),
                value=letter.model_dump_json().encode(),
            )
            for letter in letters
        ]
        self._producer.flush(timeout=self._timeout_s)
        for future in futures:
            future.get(timeout=self._timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=self._timeout_s)
