"""A consumer-group member for work that commits offsets only once its output is durable.

:class:`BatchConsumer` gives such work the few operations it needs: poll records, hear about
partitions taken away by a rebalance, pause fetching while the output is unavailable (the
member keeps heartbeating, so it keeps its partitions), commit explicit offsets, and read the
lag. It is aiokafka's consumer (whose compiled reader parses fetched records several times
faster than kafka-python's) run on an event loop of its own thread, behind a blocking API for
the caller's thread: group membership and heartbeats go on while the caller inserts a batch or
delivers a webhook. Nothing outside ``sextant.core`` imports a Kafka client library.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError
from kafka.errors import KafkaError

from sextant.core.kafka import note_use
from sextant.core.settings import KafkaSection

__all__ = ["BatchConsumer", "ConsumedRecord", "Partition"]

T = TypeVar("T")
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


class ConsumerFailedError(KafkaError):  # type: ignore[misc]  # kafka-python is untyped
    """The consumer could not do what was asked (the broker, a rebalance): nothing was done.
    A ``KafkaError``, as callers of the group member handle Kafka's failures."""


class _Revocation:
    """Partitions a rebalance is taking away, handed to the caller's thread and back."""

    def __init__(self, partitions: list[Partition]) -> None:
        self.partitions = partitions
        self.handled: Future[None] = Future()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Holds the rebalance until the caller's thread has heard of the revoked partitions."""

    def __init__(self, consumer: BatchConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
        if revoked:
            await self._consumer.revoking([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
        return None


class BatchConsumer:
    """One member of a consumer group over ``topics`` that never commits on its own.

    Not thread-safe: one thread polls, commits, seeks and pauses. ``on_revoked`` runs on that
    thread, inside a call (:meth:`poll`, :meth:`commit`, ...), when a rebalance is about to
    take partitions away; the rebalance waits for it, so nothing of those partitions is
    committed after it returns. It must not call back into the consumer. A partition that
    stays with this member keeps its read position across the rebalance, so a caller that
    drops uncommitted records then must :meth:`seek` back to them; a partition that moves
    resumes from its committed offset.
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
        for topic in topics:
            note_use(topic, "reads")
        self._on_revoked = on_revoked
        self._committed: dict[Partition, int] = {}
        self._pending: list[_Revocation] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"kafka-{group_id}", daemon=True
        )
        self._thread.start()

        async def build() -> AIOKafkaConsumer:
            # check_crcs=False: TCP and the broker (which validates CRCs on produce) already
            # guard the bytes, and librdkafka does not check them by default either.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap,
                client_id=settings.kafka_client_id,
                group_id=group_id,
                group_instance_id=instance_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(session_timeout_ms // 4, 500),
                max_partition_fetch_bytes=max_partition_fetch_bytes,
                check_crcs=False,
                # A topic without metadata when the group forms gets no partitions until the
                # next refresh (five minutes by default).
                metadata_max_age_ms=metadata_max_age_ms,
                fetch_min_bytes=fetch_min_bytes,
                fetch_max_wait_ms=fetch_max_wait_ms,
                max_poll_interval_ms=max_poll_interval_ms,
            )
            await consumer.start()
            await self._await_metadata(consumer, topics, metadata_wait_s)
            consumer.subscribe(list(topics), listener=_Listener(self))
            return consumer

        try:
            self._consumer: AIOKafkaConsumer = self._call(build())
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _await_metadata(
        consumer: AIOKafkaConsumer, topics: Sequence[str], wait_s: float
    ) -> None:
        """Wait (a little) until every topic's partitions are known, so the first assignment
        covers them; a topic that does not exist yet is picked up by a later refresh."""
        deadline = time.monotonic() + wait_s
        missing = list(topics)
        while missing and time.monotonic() < deadline:
            missing = [t for t in missing if not consumer.partitions_for_topic(t)]
            if missing:
                await consumer.topics()  # a metadata request
                await asyncio.sleep(0.1)

    # --- the caller's side of a rebalance ---

    async def revoking(self, partitions: list[Partition]) -> None:
        """(On the consumer's loop.) Hand the revocation to the caller's thread and wait."""
        revocation = _Revocation(partitions)
        with self._pending_lock:
            self._pending.append(revocation)
        self._wake.set()
        await asyncio.wrap_future(revocation.handled)

    def _serve_revocations(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for revocation in pending:
            for partition in revocation.partitions:
                self._committed.pop(partition, None)  # the next owner commits its own
            try:
                self._on_revoked(revocation.partitions)
            finally:
                revocation.handled.set_result(None)

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the consumer's loop; serve revocations while waiting for it."""
        done = asyncio.run_coroutine_threadsafe(work, self._loop)
        done.add_done_callback(lambda _: self._wake.set())
        while True:
            self._serve_revocations()
            self._wake.clear()
            if done.done():
                break
            self._wake.wait(1.0)
            if done.done():
                self._serve_revocations()
                break
        try:
            return done.result()
        except (AIOKafkaError, TimeoutError) as error:
            raise ConsumerFailedError(repr(error)) from error

    # --- what the caller does ---

    def poll(self, timeout_s: float, max_records: int) -> list[ConsumedRecord]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""
        batches = self._call(
            self._consumer.getmany(
                timeout_ms=max(int(timeout_s * 1000), 0), max_records=max(max_records, 1)
            )
        )
        records: list[ConsumedRecord] = []
        for messages in batches.values():
            records.extend(messages)
        return records

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (if this member still owns it)."""

        async def seek() -> None:
            self._consumer.seek(TopicPartition(*partition), offset)

        self._call(seek())

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; the member keeps heartbeating."""

        async def pause() -> None:
            self._consumer.pause(*self._consumer.assignment())

        self._call(pause())

    def resume_all(self) -> None:
        async def resume() -> None:
            self._consumer.resume(*self._consumer.paused())

        self._call(resume())

    def commit(self, next_offsets: Mapping[Partition, int], timeout_s: float = 10.0) -> None:
        """Commit, per partition, the offset of the next record to read (last done + 1).

        Raises ``KafkaError`` when the commit fails, e.g. because a rebalance took the
        partitions away; nothing is committed then.
        """
        if not next_offsets:
            return
        offsets = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in next_offsets.items()
        }
        self._call(asyncio.wait_for(self._consumer.commit(offsets), timeout_s))
        self._committed.update(next_offsets)

    def lag(self, timeout_s: float = 5.0) -> dict[Partition, int]:
        """Records in each assigned partition after its last committed offset."""
        tps = list(self._consumer.assignment())
        if not tps:
            return {}

        async def measure() -> tuple[dict[Any, int], dict[Any, int | None], dict[Any, int]]:
            ends = await self._consumer.end_offsets(tps)
            unknown = [tp for tp in tps if (tp.topic, tp.partition) not in self._committed]
            committed = {tp: await self._consumer.committed(tp) for tp in unknown}
            never = [tp for tp in unknown if committed[tp] is None]
            starts = await self._consumer.beginning_offsets(never) if never else {}
            return ends, committed, starts

        ends, committed, starts = self._call(asyncio.wait_for(measure(), timeout_s))
        for tp, offset in committed.items():
            if offset is not None:
                self._committed[(tp.topic, tp.partition)] = offset
        # Nothing committed yet: everything from the log start is still to do.
        self._committed.update({(tp.topic, tp.partition): start for tp, start in starts.items()})
        return {
            (tp.topic, tp.partition): max(ends[tp] - self._committed[(tp.topic, tp.partition)], 0)
            for tp in tps
            if (tp.topic, tp.partition) in self._committed
        }

    def close(self) -> None:
        """Leave without committing anything."""
        try:
            self._call(self._consumer.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
