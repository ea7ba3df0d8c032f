"""An asyncio Kafka producer (aiokafka) for request handlers that acknowledge after Kafka does.

:class:`BatchingProducer` appends the records of every concurrent caller to one open record
batch per partition and hands full or lingered batches to aiokafka's idempotent ``acks=all``
producer. A caller awaits only the batches its records went into, so a request is answered
after the broker has written all of its records, and never before.

Why batches rather than aiokafka's per-message ``send()``: ``send()`` costs a partitioner call
in pure Python, a future and several awaits per record; appending to a batch costs one call
into aiokafka's C record builder. docs/decisions/collector-producer.md has the measurements.

Nothing outside ``sextant.core`` imports a Kafka client library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from sextant.core.logging import get_logger
from sextant.core.settings import KafkaSection
from sextant.core.turns import Turns

__all__ = ["BatchingProducer", "OutgoingRecord", "ProducerUnavailable"]

log = get_logger(__name__)

_PARTITION_CACHE_LIMIT = 200_000
PUMP_AHEAD_OF = 4
"""A hand-over round goes ahead of fewer queued request handlers than this, behind more."""
_CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
"""A record batch's compression attribute per codec (Kafka's protocol)."""


class OutgoingRecord(NamedTuple):
    topic: str
    key: bytes
    value: bytes


class ProducerUnavailable(Exception):  # noqa: N818 - the name says what a caller handles
    """Kafka did not take the records in time (broker down, or the buffer is full).

    Some of the records may still be written later: callers answer "retry", and consumers
    deduplicate on the event's ``messageId``.
    """


class _Waiter:
    """One :meth:`BatchingProducer.send` call: its future resolves once every batch its
    records went into is acknowledged, or fails with the first that is not.

    A future per call, rather than the callers awaiting the batches' own (shared) futures:
    a caller that is cancelled then cancels only its own future, and one await costs a
    third of ``asyncio.wait`` with a timeout (which set a timer per call).
    """

    __slots__ = ("future", "pending")

    def __init__(self, future: asyncio.Future[None], pending: int) -> None:
        self.future = future
        self.pending = pending

    def settle(self, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
            return
        self.pending -= 1
        if not self.pending:
            self.future.set_result(None)


@dataclass
class _OpenBatch:
    builder: BatchBuilder
    waiters: list[_Waiter] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None
    """Fails the waiters when Kafka has not acknowledged the batch by the deadline of the
    first of them (one timer a batch, not one a call); a batch that stays open after it
    fired gets a new one with its next waiter."""
    size: int = 0


TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    """One partition's full batches waiting their turn, and whether one is in flight."""

    sealed: deque[_OpenBatch] = field(default_factory=deque)
    in_flight: bool = False


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Marks a failure as seen even when every waiter gave up (timed out) before it arrived.
    if not future.cancelled():
        future.exception()


class BatchingProducer:
    """Idempotent, ``acks=all`` producer shared by the coroutines of one event loop.

    Contract: :meth:`send` returns once Kafka has acknowledged every record passed to it, or
    raises :class:`ProducerUnavailable` within ``timeout_s``. Records with the same key go to
    the same partition as the Java client's default partitioner puts them (murmur2), and
    records of one partition reach Kafka in the order :meth:`send` was called. A topic's
    partition count is read once per producer (adding partitions to a keyed topic moves keys
    anyway; restart the producer after doing so).
    """

    def __init__(
        self,
        settings: KafkaSection,
        *,
        linger_ms: float = 2.0,
        batch_bytes: int = 256 * 1024,
        buffer_bytes: int = 32 * 1024 * 1024,
        compression: str | None = "zstd",
        request_timeout_ms: int = 30_000,
        turns: Turns | None = None,
    ) -> None:
        self._settings = settings
        self._linger_s = linger_ms / 1000
        self._batch_bytes = batch_bytes
        self._buffer_limit = buffer_bytes
        self._compression = compression
        self._compression_attrs = _CODECS[compression] if compression else 0
        self._request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._open: dict[TopicPartition, _OpenBatch] = {}
        self._state: dict[TopicPartition, _Partition] = {}
        self._ready: dict[TopicPartition, None] = {}  # insertion-ordered set
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_wake = asyncio.Event()
        self._all_settled = asyncio.Event()
        self._turns = turns
        self._partitions: dict[str, int] = {}
        self._partition_of: dict[tuple[bytes, int], int] = {}
        self._buffered = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._starting = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    async def start(self, timeout_s: float = 5.0) -> None:
        """Connect to Kafka; when it is down, the first :meth:`send` tries again."""
        with contextlib.suppress(ProducerUnavailable):
            await self._started(time.monotonic() + timeout_s)

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id=self._settings.kafka_client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=self._compression,
            max_batch_size=self._batch_bytes,
            max_request_size=max(self._batch_bytes * 2, 1024 * 1024),
            linger_ms=0,
            request_timeout_ms=self._request_timeout_ms,
            retry_backoff_ms=200,
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is buffered (up to ``timeout_s``), then close."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._buffered:
            self._all_settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_settled.wait(), timeout_s)
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._producer.stop(), timeout=timeout_s)
            self._producer = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes appended and not yet acknowledged or failed."""
        return self._buffered

    async def send(self, records: Sequence[OutgoingRecord], timeout_s: float) -> None:
        """Write ``records``; return after Kafka acknowledged them all (see class contract).

        The deadline is each batch's: a call whose records join a batch that an earlier call
        is waiting on shares that call's deadline, so it may be answered "unavailable" up to
        the time a batch stays open (a few milliseconds) sooner than ``timeout_s``.
        """
        if not records:
            return
        deadline = time.monotonic() + timeout_s
        for topic in {r.topic for r in records}:
            await self._know_partitions(topic, deadline)
        size = sum(len(r.key) + len(r.value) for r in records)
        if self._buffered + size > self._buffer_limit:
            raise ProducerUnavailable("the producer buffer is full: Kafka is not keeping up")
        batches = {id(batch): batch for batch in (self._append(r) for r in records)}
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), len(batches))
        for batch in batches.values():
            batch.waiters.append(waiter)
            if batch.expiry is None:  # a new batch, or one whose waiters were answered
                batch.expiry = loop.call_later(timeout_s, self._expire, batch, timeout_s)
        self._buffered += size
        self._schedule_flush()
        try:
            await waiter.future
        except ProducerUnavailable:
            raise
        except Exception as error:
            raise ProducerUnavailable(f"Kafka refused the records: {error!r}") from error

    async def partitions(self, topic: str, timeout_s: float) -> int:
        """How many partitions ``topic`` has (raises :class:`ProducerUnavailable`)."""
        await self._know_partitions(topic, time.monotonic() + timeout_s)
        return self._partitions[topic]

    async def _know_partitions(self, topic: str, deadline: float) -> None:
        if topic in self._partitions:
            return
        producer = await self._started(deadline)
        try:
            found = await asyncio.wait_for(
                producer.partitions_for(topic), max(0.01, deadline - time.monotonic())
            )
        except (TimeoutError, KafkaError, OSError) as error:
            raise ProducerUnavailable(f"no metadata for topic {topic}: {error!r}") from error
        self._partitions[topic] = len(found)

    async def _started(self, deadline: float) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._starting:
            if self._producer is None:
                producer = self._new_producer()
                try:
                    await asyncio.wait_for(producer.start(), max(0.01, deadline - time.monotonic()))
                except (TimeoutError, KafkaError, OSError) as error:
                    with contextlib.suppress(KafkaError, OSError, asyncio.TimeoutError):
                        await asyncio.wait_for(producer.stop(), 1.0)
                    raise ProducerUnavailable(f"Kafka is unreachable: {error!r}") from error
                self._producer = producer
        return self._producer

    def _partition(self, key: bytes, count: int) -> int:
        cache_key = (key, count)
        partition = self._partition_of.get(cache_key)
        if partition is None:
            partition = (murmur2(key) & 0x7FFFFFFF) % count
            if len(self._partition_of) >= _PARTITION_CACHE_LIMIT:
                self._partition_of.clear()
            self._partition_of[cache_key] = partition
        return partition

    def _append(self, record: OutgoingRecord) -> _OpenBatch:
        tp = (record.topic, self._partition(record.key, self._partitions[record.topic]))
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = self._new_batch()
        if batch.builder.append(timestamp=None, key=record.key, value=record.value) is None:
            self._seal(tp)
            batch = self._open[tp] = self._new_batch()
            if batch.builder.append(timestamp=None, key=record.key, value=record.value) is None:
                raise ValueError(f"a record of {len(record.value)} bytes exceeds the batch size")
        batch.size += len(record.key) + len(record.value)
        return batch

    def _new_batch(self) -> _OpenBatch:
        builder = BatchBuilder(self._batch_bytes, self._compression_attrs, is_transactional=False)
        return _OpenBatch(builder)

    def _expire(self, batch: _OpenBatch, timeout_s: float) -> None:
        """The deadline passed: the waiters are answered; the batch itself still goes (or
        is already in flight), and its records may yet be written (callers retry, consumers
        deduplicate on ``messageId``)."""
        batch.expiry = None
        timeout = ProducerUnavailable(f"Kafka did not acknowledge within {timeout_s:g}s")
        for waiter in batch.waiters:
            waiter.settle(timeout)
        batch.waiters.clear()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self._linger_s, self._flush)

    def _flush(self) -> None:
        """Linger over: every open batch may go as soon as its partition has nothing in flight."""
        self._flush_handle = None
        for tp in self._open:
            self._mark_ready(tp)

    def _seal(self, tp: TopicPartition) -> None:
        """A full batch: it waits behind the partition's earlier full batches."""
        self._state.setdefault(tp, _Partition()).sealed.append(self._open.pop(tp))
        self._mark_ready(tp)

    def _mark_ready(self, tp: TopicPartition) -> None:
        if self._state.setdefault(tp, _Partition()).in_flight:
            return  # its delivery marks it ready again
        self._ready[tp] = None
        self._pump_wake.set()
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        """Hand each ready partition's next batch to aiokafka, one batch in flight per partition.

        While a partition's batch is in flight its next one keeps filling, so batches grow with
        the broker's round trip instead of queueing up behind it: under load each produce
        request carries everything that arrived during the previous one. One task serves every
        partition, so the partitions freed by one produce response go out in one round.

        With ``turns`` (shared with the request handlers), a round goes ahead of a short queue
        of handlers (fewer than :data:`PUMP_AHEAD_OF`), so that at moderate load the next
        produce request leaves as soon as the last one is answered. Behind a longer queue, at
        the peak, it waits its turn and then carries those handlers' records too, in fewer and
        fuller produce requests. (Always going first cut the p99 at 45,000 events/s from 47–51
        to 39–45 ms but the peak by a tenth; always waiting cost the latency.)
        """
        while True:
            if not self._ready:
                self._pump_wake.clear()
                await self._pump_wake.wait()
                continue
            if self._turns is not None:
                await self._turns.take(first=self._turns.waiting < PUMP_AHEAD_OF)
            while self._ready:
                tp = next(iter(self._ready))
                del self._ready[tp]
                await self._hand_over(tp)

    async def _hand_over(self, tp: TopicPartition) -> None:
        state = self._state[tp]
        batch = state.sealed.popleft() if state.sealed else self._open.pop(tp, None)
        if batch is None:
            return
        state.in_flight = True
        try:
            delivery = await self._send_batch(tp, batch)
        except (TimeoutError, KafkaError, OSError, ProducerUnavailable) as error:
            self._delivered(tp, batch, error)
            if not isinstance(error, KafkaTimeoutError | TimeoutError | ProducerUnavailable):
                # aiokafka raises anything else only once its sender stopped on a fatal
                # error (a sequence gap, a fenced producer): it cannot be revived.
                self._replace_producer(error)
            return
        except Exception as error:  # not Kafka's doing: fail this batch, keep the partition going
            log.exception("handing a batch to aiokafka failed", topic=tp[0], partition=tp[1])
            self._delivered(tp, batch, error)
            return
        delivery.add_done_callback(functools.partial(self._on_delivery, tp, batch))

    def _replace_producer(self, error: BaseException) -> None:
        old, self._producer = self._producer, None
        if old is None:
            return
        log.error("the Kafka producer failed; starting a new one", error=repr(error))
        task = asyncio.get_running_loop().create_task(old.stop())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        task.add_done_callback(_retrieve)

    async def _send_batch(self, tp: TopicPartition, batch: _OpenBatch) -> asyncio.Future[Any]:
        batch.builder.close()
        deadline = time.monotonic() + self._request_timeout_ms / 1000
        producer = await self._started(deadline)
        delivery: asyncio.Future[Any] = await producer.send_batch(
            batch.builder, tp[0], partition=tp[1]
        )
        return delivery

    def _on_delivery(
        self, tp: TopicPartition, batch: _OpenBatch, delivery: asyncio.Future[Any]
    ) -> None:
        error = delivery.exception() if not delivery.cancelled() else asyncio.CancelledError()
        self._delivered(tp, batch, error)

    def _delivered(
        self, tp: TopicPartition, batch: _OpenBatch, error: BaseException | None
    ) -> None:
        self._settle(batch, error)
        state = self._state[tp]
        state.in_flight = False
        if state.sealed or tp in self._open:
            self._mark_ready(tp)

    def _settle(self, batch: _OpenBatch, error: BaseException | None) -> None:
        self._buffered -= batch.size
        if not self._buffered:
            self._all_settled.set()
        if batch.expiry is not None:
            batch.expiry.cancel()
            batch.expiry = None
        if error is not None:
            log.warning("a batch was not written", error=repr(error))
        for waiter in batch.waiters:
            waiter.settle(error)
        batch.waiters.clear()
