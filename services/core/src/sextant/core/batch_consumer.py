"""A consumer-group member for work that commits offsets only once its output is durable.

:class:`BatchConsumer` wraps kafka-python's consumer with the few operations such work needs:
poll records, hear about partitions taken away by a rebalance, pause fetching while the output
is unavailable (the member keeps heartbeating, so it keeps its partitions), commit explicit
offsets, and read the lag. Nothing outside ``sextant.core`` imports a Kafka client library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from sextant.core.kafka import make_consumer, note_use
from sextant.core.native_records import use_native_records
from sextant.core.settings import KafkaSection

__all__ = ["BatchConsumer", "ConsumedRecord", "Partition"]

Partition = tuple[str, int]
"""A topic partition: (topic, partition)."""


class ConsumedRecord(Protocol):
    """What a consumed record offers: where it was in the log, and its bytes."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, on_revoked: Callable[[list[Partition]], None]) -> None:
        self._on_revoked = on_revoked

    def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
        self._on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
        pass


class BatchConsumer:
    """One member of a consumer group over ``topics`` that never commits on its own.

    Not thread-safe: one thread polls, commits, seeks and pauses. ``on_revoked`` runs inside
    :meth:`poll` when a rebalance is about to take partitions away (or has taken them); it must
    not call back into the consumer. A partition that stays with this member keeps its read
    position across the rebalance, so a caller that drops uncommitted records then must
    :meth:`seek` back to them; a partition that moves resumes from its committed offset.
    """

    def __init__(
        self,
        settings: KafkaSection,
        group_id: str,
        topics: Sequence[str],
        *,
        on_revoked: Callable[[list[Partition]], None] = lambda _: None,
        instance_id: str | None = None,
        session_timeout_ms: int = 10_000,
        max_partition_fetch_bytes: int = 4 * 1024 * 1024,
        metadata_max_age_ms: int = 30_000,
        metadata_wait_s: float = 10.0,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        # check_crcs=False: kafka-python verifies CRC32C in pure Python, which costs more than
        # everything else it does per record; TCP and the broker (which validates CRCs on
        # produce) already guard the bytes, and librdkafka does not check them by default.
        self._consumer: KafkaConsumer = make_consumer(
            settings,
            group_id,
            group_instance_id=instance_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 4, 500),
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            check_crcs=False,
            # A topic without metadata when the group forms gets no partitions until the next
            # refresh; kafka-python's default refresh is 5 minutes.
            metadata_max_age_ms=metadata_max_age_ms,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        use_native_records(self._consumer)
        for topic in topics:
            note_use(topic, "reads")
        self._committed: dict[Partition, int] = {}
        self._on_revoked = on_revoked
        self._consumer.subscribe(list(topics), listener=_Listener(self._revoked))
        # After subscribing: the group's assignment snapshot is taken from the first metadata
        # that arrives for the subscription. Fetched before it, the member would join with an
        # empty snapshot and rebalance again about a second later.
        self._await_metadata(topics, metadata_wait_s)

    def _await_metadata(self, topics: Sequence[str], wait_s: float) -> None:
        """Wait (a little) until every topic's partitions are known, so the first assignment
        covers them; a topic that does not exist yet is picked up by a later refresh."""
        deadline = time.monotonic() + wait_s
        missing = list(topics)
        while missing and time.monotonic() < deadline:
            missing = [t for t in missing if not self._consumer.partitions_for_topic(t)]
            if missing:
                time.sleep(0.1)

    def _revoked(self, partitions: list[Partition]) -> None:
        for partition in partitions:
            self._committed.pop(partition, None)  # the next owner commits its own
        self._on_revoked(partitions)

    def poll(self, timeout_s: float, max_records: int) -> list[ConsumedRecord]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""
        batches = self._consumer.poll(
            timeout_ms=max(int(timeout_s * 1000), 0), max_records=max(max_records, 1)
        )
        records: list[ConsumedRecord] = []
        for messages in batches.values():
            records.extend(messages)
        return records

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (if this member still owns it)."""
        self._consumer.seek(TopicPartition(*partition), offset)

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; :meth:`poll` still keeps the membership."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def commit(self, next_offsets: Mapping[Partition, int], timeout_s: float = 10.0) -> None:
        """Commit, per partition, the offset of the next record to read (last done + 1).

        Raises ``KafkaError`` when the commit fails, e.g. because a rebalance took the
        partitions away; nothing is committed then.
        """
        if not next_offsets:
            return
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in next_offsets.items()
        }
        self._consumer.commit(offsets=offsets, timeout_ms=int(timeout_s * 1000))
        self._committed.update(next_offsets)

    def lag(self, timeout_s: float = 5.0) -> dict[Partition, int]:
        """Records in each assigned partition after its last committed offset."""
        tps = list(self._consumer.assignment())
        if not tps:
            return {}
        timeout_ms = int(timeout_s * 1000)
        ends = self._consumer.end_offsets(tps, timeout_ms=timeout_ms)
        unknown = [tp for tp in tps if (tp.topic, tp.partition) not in self._committed]
        for tp in unknown:
            committed = self._consumer.committed(tp, timeout_ms=timeout_ms)
            if committed is not None:
                self._committed[(tp.topic, tp.partition)] = committed
        never = [tp for tp in unknown if (tp.topic, tp.partition) not in self._committed]
        if never:  # nothing committed yet: everything from the log start is still to do
            starts = self._consumer.beginning_offsets(never, timeout_ms=timeout_ms)
            self._committed.update({(tp.topic, tp.partition): starts[tp] for tp in never})
        return {
            (tp.topic, tp.partition): max(ends[tp] - self._committed[(tp.topic, tp.partition)], 0)
            for tp in tps
        }

    def close(self) -> None:
        """Leave without committing anything."""
        self._consumer.close(autocommit=False)
