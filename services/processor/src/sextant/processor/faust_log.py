"""Everything in the processor that touches faust, mode or a Kafka client: this module only.

faust gives the processor what is hard to get right: the consumer group and its co-partitioned
assignment, the tables' changelogs and their recovery on the worker that owns a partition,
commits that wait for the producer, and the producer. The rest of the processor sees it
through small interfaces (:mod:`sextant.processor.log`): a :class:`FaustLog` (the partition
log both stages read), :class:`FaustOutputs` and two :class:`KeyPartitionedTable` (their
state). :class:`FaustProcessor` builds the app and drives the
:class:`~sextant.processor.runner.StageRunner` from faust's tasks and timer.

faust's *public* API is enough for everything but five things, each kept here and checked by
:func:`check_internals` (a unit test calls it, and so does every start: a faust, mode or
aiokafka release that changes them fails loudly, not silently):

1. ``Consumer._drain_messages`` is replaced. faust's loop waits for each record with
   ``Service.wait_first`` (four tasks a record) and hands it to its streams through a
   channel, an ``Event`` and a queue; here the records of the stages' topics go straight
   from each fetched batch into the log's buffers, one wait per batch (the rest, table
   changelogs during recovery, still goes to faust's own callback).
2. ``Consumer._new_offset`` is replaced: the commit goes over every run of acknowledged
   offsets that starts at the committed one, never over one that was not acknowledged
   (faust passes over a single unacknowledged offset, and takes one run per commit).
3. ``Consumer._acked``, ``_acked_index`` and ``_committed_offset``: read (and trimmed) by
   that rule, and the committed offset by :meth:`FaustLog.committed`.
4. ``AIOKafkaConsumerThread._create_worker_consumer`` builds aiokafka's consumer with
   ``fetch_min_bytes=1``; its ``_fetch_min_bytes`` and ``_fetch_max_wait_ms`` are set before
   the consumer starts (faust has no setting for them).
5. ``AIOKafkaConsumerThread._seek_wait`` and ``_fetch_records`` are wrapped, in the
   consumer's thread, to know which seeks each fetch's records follow: a fetch waiting for
   records can span a seek and return the records from its offset, which must be kept, while
   records fetched before a seek must not be.

docs/decisions/processor-faust-seam.md says why each one, and what was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import Counter, deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, Protocol, cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from faust.transport.consumer import CONSUMER_FETCHING, Fetcher
from faust.transport.consumer import Consumer as FaustBaseConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from mode import Service, ServiceT

from sextant.core.kafka import note_use
from sextant.core.logging import get_logger
from sextant.processor.log import LogRecord, LogUnavailable, PartitionStatus
from sextant.processor.settings import ProcessorSettings
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)

_YIELD_EVERY = 200
"""Records handed over before the drain loop lets other coroutines run."""
_FETCH_WAIT_S = 0.02
"""Longest wait for records (faust waits 1 s): a partition left out of the fetch while its
buffer is full comes back as soon as the buffer drains, not a second later."""
_CALL_TIMEOUT_S = 5.0
"""Longest wait for the consumer's thread to answer a seek or an offsets request: the runner
holds a stage meanwhile, and tries again at its next tick."""
_BUFFER_BATCHES = 2
"""A topic's buffer holds at most this many batches before its partitions leave the fetch."""


class FaustInternalsChangedError(RuntimeError):
    """faust, mode or aiokafka no longer have an internal this module relies on."""


def check_internals() -> None:
    """Raise :class:`FaustInternalsChangedError` unless every internal this module relies on is
    there, with the shape it relies on (see the module docstring)."""
    problems: list[str] = []

    def method(owner: type, name: str, parameters: list[str]) -> None:
        found = getattr(owner, name, None)
        if found is None or not callable(found):
            problems.append(f"{owner.__qualname__}.{name} is gone")
            return
        names = list(inspect.signature(found).parameters)
        if names != parameters:
            problems.append(f"{owner.__qualname__}.{name}{tuple(names)} != {tuple(parameters)}")

    method(FaustBaseConsumer, "_drain_messages", ["self", "fetcher"])
    method(FaustBaseConsumer, "_new_offset", ["self", "tp"])
    method(AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"])
    method(AIOKafkaConsumerThread, "_seek_wait", ["self", "consumer", "partitions"])
    method(
        AIOKafkaConsumerThread,
        "_fetch_records",
        ["self", "consumer", "active_partitions", "timeout", "max_records"],
    )
    seek_wait = inspect.getsource(AIOKafkaConsumerThread._seek_wait)
    if seek_wait.find("consumer.seek(") > seek_wait.find("await ") or "consumer.seek(" not in (
        seek_wait
    ):
        problems.append("AIOKafkaConsumerThread._seek_wait no longer seeks before it awaits")
    source = inspect.getsource(FaustBaseConsumer.__init__)
    for attribute in ("_acked", "_acked_index", "_committed_offset"):
        if f"self.{attribute} = " not in source:
            problems.append(f"faust's Consumer no longer sets {attribute}")
    if "self._new_offset(tp)" not in inspect.getsource(FaustBaseConsumer):
        problems.append("faust's Consumer no longer asks _new_offset for the offset to commit")
    drain_caller = inspect.getsource(Fetcher)
    if "_drain_messages" not in drain_caller:
        problems.append("faust's Fetcher no longer runs Consumer._drain_messages")
    aiokafka_start = inspect.getsource(AIOKafkaConsumer.start)
    for attribute in ("_fetch_min_bytes", "_fetch_max_wait_ms"):
        if f"self.{attribute}" not in aiokafka_start:
            problems.append(f"AIOKafkaConsumer.start() no longer reads {attribute}")
    if problems:
        raise FaustInternalsChangedError(
            "the processor's faust workarounds need a look (sextant.processor.faust_log): "
            + "; ".join(problems)
        )


# --- the consumer ---------------------------------------------------------------------------


class _Buffer:
    """One topic's fetched records, waiting for the stage's next batch."""

    def __init__(self, on_full: Callable[[TP], None], on_room: Callable[[TP], None]) -> None:
        self.records: deque[Any] = deque()
        self.counts: Counter[int] = Counter()
        self.first_at = 0.0
        self.batch_size = 1_000
        self.arrived = asyncio.Event()
        self.enough = asyncio.Event()
        self._full: set[TP] = set()
        self._on_full = on_full
        self._on_room = on_room

    def __len__(self) -> int:
        return len(self.records)

    @property
    def full(self) -> set[TP]:
        """Partitions left out of the fetch until this buffer drains."""
        return self._full

    def put(self, tp: TP, message: Any, now: float) -> None:
        records = self.records
        if not records:
            self.first_at = now
            self.arrived.set()
        records.append(message)
        self.counts[tp.partition] += 1
        size = len(records)
        if size >= self.batch_size:
            self.enough.set()
            if size >= _BUFFER_BATCHES * self.batch_size and tp not in self._full:
                self._full.add(tp)
                self._on_full(tp)

    def take(self, most: int) -> list[Any]:
        records = self.records
        if len(records) <= most:
            taken = list(records)
            records.clear()
        else:
            taken = [records.popleft() for _ in range(most)]
        counts = self.counts
        for message in taken:
            counts[message.partition] -= 1
        self._settle()
        return taken

    def drop(self, partitions: set[int] | None = None) -> None:
        """Forget buffered records (of ``partitions``, or all): they will be fetched again."""
        if partitions is None:
            self.records.clear()
            self.counts.clear()
        else:
            self.records = deque(m for m in self.records if m.partition not in partitions)
            for partition in partitions:
                self.counts.pop(partition, None)
        self._settle()

    def _settle(self) -> None:
        size = len(self.records)
        if not size:
            self.arrived.clear()
        if size < self.batch_size:
            self.enough.clear()
        if self._full and size < self.batch_size:
            full, self._full = self._full, set()
            for tp in full:
                self._on_room(tp)


class Router:
    """Where the drain loop hands each fetched record: a stage's buffer, or faust's own
    callback (table changelogs during recovery). No I/O: the tests drive it directly."""

    def __init__(self) -> None:
        self.buffers: dict[str, _Buffer] = {}
        self.seeks: Counter[TP] = Counter()
        """Per partition, the seeks asked for."""
        self.applied: Counter[TP] = Counter()
        """Per partition, the seeks the consumer's thread has carried out."""
        self.fetched_seeks: dict[TP, int] = {}
        """``applied`` when the thread handed over its latest fetch: the positions its records
        were fetched from."""
        self.delivered: dict[TP, tuple[int, float]] = {}
        """Per partition, the last offset delivered and when (monotonic)."""
        self.lowest: dict[TP, int] = {}
        """Per partition, the lowest offset delivered since the assignment."""
        self.room = asyncio.Event()
        """Set whenever a full buffer drained."""

    def add(self, topic: str, on_full: Callable[[TP], None], on_room: Callable[[TP], None]) -> None:
        # faust's partition sets (paused, buffered, active) must hold faust's own ``TP``; a
        # fetched message carries aiokafka's.
        def full(tp: TP) -> None:
            on_full(TP(tp.topic, tp.partition))

        def room(tp: TP) -> None:
            on_room(TP(tp.topic, tp.partition))
            self.room.set()

        self.buffers[topic] = _Buffer(full, room)

    def full(self) -> set[TP]:
        """Partitions left out of the fetch until their buffer drains."""
        return {tp for buffer in self.buffers.values() for tp in buffer.full}

    def sought(self, tp: TP) -> None:
        """``tp`` is fetched again from a seek: what is buffered of it will come again, and
        so will the rest of a batch fetched before the seek."""
        self.seeks[tp] += 1
        buffer = self.buffers.get(tp.topic)
        if buffer is not None:
            buffer.drop({tp.partition})

    def seeks_applied(self, tps: Iterable[TP]) -> None:
        """In the consumer's thread, as it moves the fetch positions of ``tps``."""
        for tp in tps:
            self.applied[tp] = self.seeks[tp]

    def fetch_handed_over(self) -> None:
        """In the consumer's thread, as it returns a fetch: the fetcher returns only records
        of the positions as they are now (it drops what it fetched before a seek)."""
        self.fetched_seeks = dict(self.applied)

    def fetched(self) -> Delivery:
        """The delivery of the next fetched batch."""
        return Delivery(self)


class Delivery:
    """One fetched batch handed over, record by record, in order."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._seeks: dict[TP, int] | None = None
        self._sought: set[TP] = set()

    def route(self, message: Any, now: float) -> bool:
        """Buffer ``message`` for its stage; False if it is not for a stage (faust's)."""
        tp: TP = message.tp
        router = self._router
        buffer = router.buffers.get(tp.topic)
        if buffer is None:
            return False
        if tp in self._sought:
            return True
        if self._seeks is None:
            # Read at the first record, not when the fetch was asked for: a fetch that waits
            # for records may span a seek and bring the records from its offset.
            self._seeks = router.fetched_seeks
        if router.seeks.get(tp, 0) != self._seeks.get(tp, 0):
            # Fetched from where the partition was before a seek: the rest of its records of
            # the partition come again from the seek, in order.
            self._sought.add(tp)
            return True
        buffer.put(tp, message, now)
        offset = message.offset
        router.delivered[tp] = (offset, now)
        if offset < router.lowest.get(tp, offset + 1):
            router.lowest[tp] = offset
        return True


class StatusConsumer(Consumer):
    """faust's aiokafka consumer, telling the log which partitions are paused."""

    router: Router

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.paused: set[TP] = set()
        self.floors: dict[TP, int] = {}
        """Per partition, an offset that commits may start from although it is above the
        committed one: the log start, once retention deleted records never processed."""
        super().__init__(*args, **kwargs)

    # what the log reads, kept up to date through faust's public methods

    def pause_partitions(self, tps: Any) -> None:
        tps = set(tps)
        super().pause_partitions(tps)
        self.paused |= tps

    def resume_partitions(self, tps: Any) -> None:
        tps = set(tps)
        super().resume_partitions(tps)
        self.paused -= tps

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.paused -= revoked
        for tp in revoked:
            self.floors.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.paused &= assigned
        await super().on_partitions_assigned(assigned, generation_id)

    def committed_offset(self, tp: TP) -> int | None:
        """The group's committed offset for ``tp`` as faust knows it."""
        found: int | None = self._committed_offset.get(tp)
        return found


class RoutingConsumer(StatusConsumer):
    """faust's aiokafka consumer, feeding the log's buffers (see the module docstring)."""

    # workaround 1: the drain loop

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust's loop (``faust.transport.consumer.Consumer._drain_messages``), delivering a
        fetched batch at a time; see the module docstring."""
        stop_fetcher = cast(Service, fetcher)
        try:
            while not (self.should_stop or stop_fetcher.should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self._until_fetchable()
                records = cast(AsyncIterator[Any], self.getmany(timeout=_FETCH_WAIT_S))
                # getmany can be called in a loop without ever releasing the event loop.
                await self.sleep(0)
                if not self.should_stop:
                    await self.wait_first(self._deliver(records), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _until_fetchable(self) -> None:
        """Wait while every assigned partition waits for its buffer to drain (faust's getmany
        would sleep a whole second then)."""
        router = self.router
        while not self.should_stop:
            full = router.full()
            if not full or (self.assignment() - self.paused - full):
                return
            router.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(router.room.wait(), timeout=1.0)

    async def _deliver(self, records: AsyncIterator[Any]) -> None:
        """Hand each record to its buffer (or faust's callback), in order."""
        delivery = self.router.fetched()
        route = delivery.route
        callback = self.callback
        # faust's "stream stopped processing, or is slow" check reads when each partition last
        # gave its stream a record: the stages' records count as given.
        inbound = self.app.monitor.stream_inbound_time
        since_yield = 0
        now = time.monotonic()
        async for _, message in records:
            since_yield += 1
            if since_yield > _YIELD_EVERY or since_yield == 1:
                if since_yield > 1:
                    await asyncio.sleep(0)
                    since_yield = 1
                now = time.monotonic()
            if route(message, now):
                inbound[message.tp] = now
            else:
                await callback(message)

    # workaround 2: commits never pass over an offset that was not acknowledged

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: the end of the run of acknowledged offsets that
        starts at the committed offset (or at the partition's floor, see ``floors``). With
        no committed offset yet (a group's first commit), the run starts at the lowest
        offset delivered since the assignment.
        """
        acked: list[int] = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        committed: int | None = self._committed_offset[tp]
        if committed is None:
            start = self.router.lowest.get(tp, acked[0])
        else:
            start = max(committed, self.floors.get(tp, committed))
        while acked and acked[0] < start:  # acknowledged again after a seek back
            self._acked_index[tp].discard(acked.pop(0))
        if not acked or acked[0] != start:
            return None
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return int(run[-1]) + 1


def tuned_transport(
    app: faust.App,
    router: Router,
    fetch_min_bytes: int,
    fetch_max_wait_ms: int,
    *,
    streams: bool = False,
) -> Transport:
    """A transport whose worker consumer is a :class:`RoutingConsumer` feeding ``router``
    (with ``streams``, faust's own consumer and delivery), fetching at least
    ``fetch_min_bytes`` (or waiting ``fetch_max_wait_ms``)."""

    class TunedThread(AIOKafkaConsumerThread):
        # workaround 4: fuller fetches
        def _create_worker_consumer(self, transport: Transport) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its fetcher.
            consumer._fetch_min_bytes = fetch_min_bytes
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

        # workaround 5: which seeks a fetch's records follow
        async def _seek_wait(self, consumer: Any, partitions: Mapping[TP, int]) -> None:
            # Before faust's seeks, which move the positions before their first await.
            router.seeks_applied(partitions)
            await super()._seek_wait(consumer, partitions)

        async def _fetch_records(
            self,
            consumer: Any,
            active_partitions: Any,
            timeout: float | None = None,  # noqa: ASYNC109 - faust's signature
            max_records: int | None = None,
        ) -> Any:
            records = await super()._fetch_records(
                consumer, active_partitions, timeout=timeout, max_records=max_records
            )
            router.fetch_handed_over()
            return records

    class TunedConsumer(StatusConsumer if streams else RoutingConsumer):  # type: ignore[misc]
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return TunedThread(self, loop=self.loop, beacon=self.beacon)

    TunedConsumer.router = router

    class TunedTransport(Transport):
        Consumer = TunedConsumer

    return TunedTransport(app.conf.broker_consumer, app)


# --- the log ---------------------------------------------------------------------------------


class FaustLog:
    """A :class:`~sextant.processor.log.PartitionLog` over faust's worker consumer."""

    def __init__(self, app: faust.App, *, streams: bool = False) -> None:
        self.app = app
        self.router = Router()
        self.streams = streams
        """Records come through faust's own delivery and streams (an agent per topic): the
        baseline of ``bench.processor_consumer``, public API only."""

    @property
    def consumer(self) -> StatusConsumer:
        return cast(StatusConsumer, self.app.consumer)

    def _on_full(self, tp: TP) -> None:
        self.consumer.on_buffer_full(tp)

    def _on_room(self, tp: TP) -> None:
        self.consumer.on_buffer_drop(tp)

    def subscribe(self, topic: str, partitions: int | None = None) -> Any:
        """Read ``topic`` (an internal topic of ``partitions`` when given): its records go to
        :meth:`batches`, not to a faust stream. Before the app starts; returns faust's topic."""
        found = self.app.topic(topic, partitions=partitions, internal=partitions is not None)
        note_use(topic, "reads")
        self.router.add(topic, self._on_full, self._on_room)
        if self.streams:
            self.app.agent(found, name=f"deliver-{topic}")(self._stream_agent)
        else:
            self.app.topics.add(found)
        return found

    async def _stream_agent(self, stream: Any) -> None:
        """faust's public path: each event's message into the buffer, one more reference on
        it until :meth:`acknowledge` (faust acknowledges at the end of the iteration)."""
        async for event in stream.events():
            message = event.message
            message.incref()
            delivery = self.router.fetched()
            delivery.route(message, time.monotonic())

    async def rebalanced(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions revoked or assigned (faust's signals): what is buffered comes again from
        the committed offsets, which faust seeks to once the tables are recovered."""
        for buffer in self.router.buffers.values():
            buffer.drop()
        self.router.delivered.clear()
        self.router.lowest.clear()

    # PartitionLog

    @property
    def generation(self) -> int:
        return int(self.app.rebalancing_count)

    @property
    def rebalancing(self) -> bool:
        return bool(self.app.rebalancing)

    async def batches(
        self, topic: str, max_records: int, within: float
    ) -> AsyncIterator[Sequence[LogRecord]]:
        buffer = self.router.buffers[topic]
        buffer.batch_size = max_records
        while True:
            await buffer.arrived.wait()
            if len(buffer) < max_records:
                delay = buffer.first_at + within - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(buffer.enough.wait(), delay)
            taken = buffer.take(max_records)
            if taken:
                yield taken

    def acknowledge(self, records: Sequence[LogRecord]) -> None:
        consumer = self.consumer
        if self.streams:
            for record in records:
                cast(Any, record).ack(consumer)
            return
        ack = consumer.ack
        for record in records:
            ack(cast(Any, record))

    def hold_back(self, records: Sequence[LogRecord]) -> None:
        """Nothing to do: a record is committed only once acknowledged."""

    def assigned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment() if tp.topic == topic}

    def committed(self, topic: str, partition: int) -> int | None:
        return self.consumer.committed_offset(TP(topic, partition))

    def high_watermark(self, topic: str, partition: int) -> int | None:
        try:
            found: int | None = self.consumer.highwater(TP(topic, partition))
        except AssertionError:  # not assigned (any more)
            return None
        return found

    async def end_offsets(self, topic: str) -> dict[int, int]:
        tps = [tp for tp in self.consumer.assignment() if tp.topic == topic]
        if not tps:
            return {}
        try:
            found = await asyncio.wait_for(self.consumer.highwaters(*tps), _CALL_TIMEOUT_S)
        except (KafkaError, AssertionError, TimeoutError) as exc:
            raise LogUnavailable(topic) from exc
        return {tp.partition: int(offset) for tp, offset in found.items()}

    async def log_start(self, topic: str, partition: int) -> int | None:
        tp = TP(topic, partition)
        try:
            earliest = await asyncio.wait_for(self.consumer.earliest_offsets(tp), _CALL_TIMEOUT_S)
        except (KafkaError, AssertionError, TimeoutError) as exc:
            raise LogUnavailable(str(tp)) from exc
        found: int | None = earliest.get(tp)
        return found

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        tp = TP(topic, partition)
        consumer = self.consumer
        self.router.sought(tp)
        committed = consumer.committed_offset(tp)
        if committed is not None and offset > committed:
            consumer.floors[tp] = offset  # the log start: below it nothing can come
        consumer.resume_partitions({tp})
        consumer.on_buffer_drop(tp)
        try:
            # seek_wait runs in the consumer's thread (faust's seek calls aiokafka from this one)
            await asyncio.wait_for(consumer.seek_wait({tp: offset}), _CALL_TIMEOUT_S)
        except (KafkaError, AssertionError, TimeoutError) as exc:
            raise LogUnavailable(str(tp)) from exc

    def status(self, topic: str, partition: int) -> PartitionStatus:
        tp = TP(topic, partition)
        consumer = self.consumer
        assigned = tp in consumer.assignment()
        buffer = self.router.buffers.get(topic)
        full = buffer is not None and tp in buffer.full
        delivered = self.router.delivered.get(tp)
        return PartitionStatus(
            topic=topic,
            partition=partition,
            assigned=assigned,
            fetching=assigned and tp not in consumer.paused and not full,
            paused=tp in consumer.paused,
            buffered=buffer.counts.get(partition, 0) if buffer is not None else 0,
            committed=consumer.committed_offset(tp),
            high_watermark=self.high_watermark(topic, partition) if assigned else None,
            delivered=delivered[0] if delivered else None,
            delivered_at=delivered[1] if delivered else None,
        )


# --- outputs and tables ----------------------------------------------------------------------


class FaustOutputs:
    """:class:`~sextant.processor.log.Outputs` through faust's producer."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}

    def add(self, topic: Any) -> None:
        name = topic.get_topic_name()
        note_use(name, "writes")
        self._topics[name] = topic

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[None]:
        sent = await self._topics[topic].send(key=key, value=value, partition=partition)
        return cast(Awaitable[None], sent)

    async def flush(self) -> None:
        await self.app.producer.flush()


RecoveredHook = Callable[[set[int]], Awaitable[None]]


class KeyPartitionedTable(faust.Table[bytes, bytes]):
    """A table whose keys start with ``<partition>|``: that partition holds their changelog.

    faust derives the changelog partition from "the current event", which a batch or a timer
    does not have; here the key says it, so state can be written after a batch.
    """

    on_recovered: RecoveredHook | None = None

    def partition_for_key(self, key: Any) -> int | None:
        text = key.decode() if isinstance(key, bytes) else str(key)
        return int(text.split("|", 1)[0])

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        changelog = self.changelog_topic.get_topic_name()
        if self.on_recovered is not None:
            await self.on_recovered({tp.partition for tp in active_tps if tp.topic == changelog})

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the local copy of these partitions' entries (not the changelog).

        faust's memory store forgets only the keys it restored, not the ones this worker
        wrote; a partition that comes back is then rebuilt from its changelog alone.
        """
        prefixes = tuple(f"{p}|".encode() for p in partitions)
        if prefixes:
            for key in [k for k in self.data if k.startswith(prefixes)]:
                del self.data[key]

    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        wanted = prefix.encode()
        for key, value in list(self.data.items()):
            if key.startswith(wanted) and value is not None:
                yield key.decode(), value

    def write(self, writes: Sequence[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.pop(key.encode(), None)
            else:
                self[key.encode()] = value


# --- the app ----------------------------------------------------------------------------------


class Driven(Protocol):
    """What :class:`FaustProcessor` drives (a :class:`~sextant.processor.runner.StageRunner`)."""

    async def run(self, stage: Any) -> None: ...

    async def tick(self) -> None: ...

    async def recovered(self, stage: Any, active: set[int]) -> None: ...


def faust_log(
    app_id: str,
    bootstrap: str,
    *,
    partitions: int,
    datadir: Path,
    commit_interval: float = 1.0,
    session_timeout: float = 30.0,
    fetch_min_bytes: int = 1,
    fetch_max_wait_ms: int = 500,
    max_poll_records: int = 5_000,
    linger_s: float = 0.0,
    streams: bool = False,
) -> FaustLog:
    """A faust app (consumer group ``app_id``) and the :class:`FaustLog` over its consumer;
    :meth:`FaustLog.subscribe` adds the topics it reads. ``streams``: records come through
    faust's own delivery and streams (the benchmark's baseline)."""
    check_internals()
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(datadir),
        topic_partitions=partitions,
        topic_replication_factor=1,
        # No standby replicas: a rebalance during standby recovery crashes faust's recovery
        # service (a seek to an offset it has not built yet), and restoring a memory store
        # reads the changelog in full either way.
        table_standby_replicas=0,
        producer_acks=-1,
        producer_linger=linger_s,
        broker_commit_interval=commit_interval,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 10),
        broker_max_poll_records=max_poll_records,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    log = FaustLog(app, streams=streams)
    app.transport = tuned_transport(
        app, log.router, fetch_min_bytes, fetch_max_wait_ms, streams=streams
    )
    app.on_partitions_revoked.connect(cast(Any, log.rebalanced))
    app.on_partitions_assigned.connect(cast(Any, log.rebalanced))
    return log


class FaustProcessor:
    """The processor's faust app: the group, the two tables, the producer, the runner's loops."""

    def __init__(
        self, settings: ProcessorSettings, partitions: int, identity_partitions: int
    ) -> None:
        s = settings
        self.settings = settings
        self.partitions = partitions
        self.log = faust_log(
            s.app_id,
            s.kafka_bootstrap,
            partitions=partitions,
            datadir=s.processor_data_dir / s.app_id,
            commit_interval=s.processor_commit_interval_seconds,
            session_timeout=s.processor_session_timeout_seconds,
            fetch_min_bytes=s.processor_fetch_min_bytes,
            fetch_max_wait_ms=s.processor_fetch_max_wait_ms,
            max_poll_records=s.processor_batch_max,
            linger_s=s.processor_linger_ms / 1000,
            streams=s.processor_faust_streams,
        )
        app = self.app = self.log.app
        prefix = s.topic_prefix
        self.events_topic = self.log.subscribe(topic_name(Topic.EVENTS_RAW, prefix))
        self.partials_topic = self.log.subscribe(s.partials_topic, partitions=partitions)
        self.identities_topic = self.log.subscribe(topic_name(Topic.IDENTITIES, prefix))
        self.outputs = FaustOutputs(app)
        for topic in (
            self.partials_topic,
            app.topic(topic_name(Topic.METRIC_POINTS, prefix)),
            app.topic(topic_name(Topic.EXPOSURES, prefix)),
            app.topic(topic_name(Topic.EXPERIMENT_STATISTICS, prefix)),
            app.topic(topic_name(Topic.PERSON_OVERRIDES, prefix)),
            app.topic(topic_name(Topic.IDENTITY_DECISIONS, prefix)),
            app.topic(topic_name(Topic.PERSON_DELETIONS, prefix)),
        ):
            self.outputs.add(topic)
        self.windows = KeyPartitionedTable(
            app, name="windows", partitions=partitions, key_type=bytes, value_type=bytes
        )
        self.merges = KeyPartitionedTable(
            app, name="merge", partitions=partitions, key_type=bytes, value_type=bytes
        )
        self.persons = KeyPartitionedTable(
            app,
            name="persons",
            partitions=identity_partitions,
            key_type=bytes,
            value_type=bytes,
        )
        for table in (self.windows, self.merges, self.persons):
            app.tables.add(table)
            changelog = table.changelog_topic.get_topic_name()
            note_use(changelog, "writes")  # its state
            note_use(changelog, "reads")  # its recovery

    def changelogs(self) -> dict[str, int]:
        """The tables' changelog topics and their partitions."""
        return {
            str(table.changelog_topic.get_topic_name()): int(table.partitions or 0)
            for table in (self.windows, self.merges, self.persons)
        }

    @property
    def events_topic_name(self) -> str:
        return str(self.events_topic.get_topic_name())

    @property
    def partials_topic_name(self) -> str:
        return str(self.partials_topic.get_topic_name())

    @property
    def identities_topic_name(self) -> str:
        return str(self.identities_topic.get_topic_name())

    def drive(self, runner: Driven, stage_one: Any, stage_two: Any, resolver: Any) -> None:
        """Run ``runner``'s loops as faust tasks and its tick as a faust timer; each table's
        recovery tells the runner which partitions it restored."""

        def recovered(stage: Any) -> RecoveredHook:
            async def hook(active: set[int]) -> None:
                await runner.recovered(stage, active)

            return hook

        self.windows.on_recovered = recovered(stage_one)
        self.merges.on_recovered = recovered(stage_two)
        self.persons.on_recovered = recovered(resolver)
        for stage in (stage_one, stage_two, resolver):
            self.app.task(_forever(runner, stage))
        interval = max(1.0, self.settings.processor_flush_interval_seconds)
        self.app.timer(interval, name="tick")(runner.tick)

    def run(self, on_worker: Callable[[Any], None]) -> None:
        """Run the faust worker until it is asked to stop (SIGTERM, SIGINT); ``on_worker``
        gets the worker first (its ``should_stop`` says a stop is under way)."""
        worker = faust.Worker(
            self.app,
            loglevel=self.settings.log_level.lower(),
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        on_worker(worker)
        worker.execute_from_commandline()


def _forever(runner: Driven, stage: Any) -> Callable[[], Awaitable[None]]:
    """A task running ``stage``'s batch loop, started again if it ever ends."""

    async def loop() -> None:
        while True:
            try:
                await runner.run(stage)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a stage's batch loop failed; starting it again", stage=stage.name)
                await asyncio.sleep(1.0)

    loop.__name__ = loop.__qualname__ = f"stage_{stage.name}"
    return loop
