"""The faust side: topics, the two state tables, the two agents and the flush timer.

Stage one (agent ``metrics``) reads ``events.raw`` in batches of at most
``processor_flush_interval_seconds``; per partition it applies events to a
:class:`~sextant.processor.partition.PartitionState`, sends window partials to the internal
``partials`` topic and exposures to ``exposures`` (waiting for the broker to acknowledge the
exposures), then writes the state to its table. Stage two (agent ``merge``) reads ``partials``,
keeps the newest partial per source partition and window, and sends the changed metric points
(in batches of at most ``processor_merge_interval_seconds``: partials come in bursts, one per
stage-one flush, so a short wait gathers a burst).
faust acknowledges a batch's events only after the batch body returns, and flushes the
producer before committing offsets, so nothing is committed before it is durable.

Rebalances: while faust rebalances, batches are neither applied nor written, and their events
are held back from acknowledgement (so they cannot be committed) to come again after the
seek to the committed offsets; after every recovery both stages rebuild their state from the
table, which faust has just brought up to the changelog's end. An event that arrives ahead
of a missing offset (either stage) is held back too, and the partition is fetched again
from that offset.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import faust
import orjson
from aiokafka.errors import KafkaError
from faust.types import TP, EventT, StreamT

from sextant.core.logging import get_logger
from sextant.processor.aggregates import Partial
from sextant.processor.catalog import ConfigCatalog
from sextant.processor.merge import MergeState
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.partition import (
    DedupPolicy,
    EventView,
    FlushResult,
    PartitionState,
)
from sextant.processor.sequence import Outcome
from sextant.processor.settings import ProcessorSettings
from sextant.processor.transport import tuned_transport
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)
RecoveredHook = Callable[["KeyPartitionedTable", set[int]], Awaitable[None]]
T = TypeVar("T")
Marker = tuple[int, int | None]
"""A partition's progress: (the offset its state expects next, faust's committed offset)."""
_REFETCH_EVERY_S = 1.0
_STALL_S = 15.0
_SLOW_S = 30.0
_SLOW_MIN_BACKLOG = 200


class KeyPartitionedTable(faust.Table[bytes, bytes]):
    """A table whose keys start with ``<partition>|``: that partition holds their changelog.

    faust derives the changelog partition from "the current event", which a batch (``take``)
    or a timer does not have; here the key says it, so state can be written after a batch.
    """

    def __init__(self, *args: Any, on_recovered: RecoveredHook, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_recovered = on_recovered

    def partition_for_key(self, key: Any) -> int | None:
        text = key.decode() if isinstance(key, bytes) else str(key)
        return int(text.split("|", 1)[0])

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        changelog = self.changelog_topic.get_topic_name()
        await self._on_recovered(self, {tp.partition for tp in active_tps if tp.topic == changelog})

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

    def write(self, writes: list[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.pop(key.encode(), None)
            else:
                self[key.encode()] = value


class Sequenced(Protocol):
    """A stage's state of one partition that applies offsets in sequence."""

    @property
    def expected_offset(self) -> int: ...

    def skip_to(self, offset: int) -> None: ...


@dataclass(frozen=True)
class Stage(Generic[T]):
    """One stage as the batch loop, the timer and the gap seeker see it."""

    name: str
    topic: str
    interval: float
    """A batch is taken at most this long after its first record."""
    lock: asyncio.Lock
    states: Callable[[], Mapping[int, Sequenced]]
    take: Callable[[list[EventT[bytes]]], tuple[T, list[EventT[bytes]]]]
    """Apply a batch in offset order: (what to flush, the records refused as out of order)."""
    flush: Callable[[T, int], Awaitable[bool]]
    """Send, then persist; False (nothing persisted) if a rebalance began since ``int``."""
    tick: Callable[[int], Awaitable[None]]
    """The timer's step."""
    reload: Callable[[int], Sequenced]
    """Rebuild one partition's state from the table, in place of the one in memory."""


def _stable_partition(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def _hold_back(events: list[EventT[bytes]]) -> None:
    """Keep these events from being acknowledged, hence committed: they must come again.

    ``take_events`` acknowledges every event of a batch once the batch body returns; one
    extra reference keeps a message's count above zero, so its offset is never committed and
    the consumer delivers it again after the next seek.
    """
    for event in events:
        event.message.incref()


class ProcessorAgents:
    """Owns the faust app and both stages' in-memory state."""

    def __init__(
        self,
        settings: ProcessorSettings,
        catalog: ConfigCatalog,
        metrics: ProcessorMetrics,
        partitions: int,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.metrics = metrics
        self.partitions = partitions
        self.dedup = DedupPolicy(
            settings.processor_dedup_window_seconds, settings.processor_dedup_max_ids
        )
        self.states: dict[int, PartitionState] = {}
        self.merges: dict[int, MergeState] = {}
        self._gaps: dict[TP, Sequenced] = {}
        self._sought: dict[TP, tuple[Marker, float]] = {}
        self._progress: dict[TP, tuple[Marker, float]] = {}
        self._behind: dict[TP, tuple[int, float]] = {}
        """Per partition behind: its backlog when the current window began, and when."""
        self.started = False
        self.app = self._build_app()
        self.stage_one: Stage[set[int]] = Stage(
            "one",
            self.events_topic.get_topic_name(),
            settings.processor_flush_interval_seconds,
            asyncio.Lock(),
            lambda: self.states,
            self._apply_events,
            self._flush_stage_one,
            self._tick_stage_one,
            self._reload_state,
        )
        self.stage_two: Stage[list[tuple[str, bytes | None]]] = Stage(
            "two",
            self.partials_topic.get_topic_name(),
            settings.processor_merge_interval_seconds,
            asyncio.Lock(),
            lambda: self.merges,
            self._accept_partials,
            self._flush_stage_two,
            self._tick_stage_two,
            self._reload_merge,
        )

    # wiring ---------------------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        s = self.settings
        prefix = s.topic_prefix
        app = faust.App(
            s.app_id,
            broker=f"kafka://{s.kafka_bootstrap}",
            store="memory://",
            web_enabled=False,
            datadir=str(s.processor_data_dir / s.app_id),
            topic_partitions=self.partitions,
            topic_replication_factor=1,
            # No standby replicas: a rebalance during standby recovery crashes faust's
            # recovery service (a seek to an offset it has not built yet), and restoring a
            # memory store reads the changelog in full either way.
            table_standby_replicas=0,
            producer_acks=-1,
            broker_commit_interval=s.processor_commit_interval_seconds,
            broker_session_timeout=s.processor_session_timeout_seconds,
            broker_heartbeat_interval=max(0.5, s.processor_session_timeout_seconds / 10),
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=False,
            # Both agents share one consumer: small polls and buffers keep the partials of
            # stage two from queueing behind thousands of buffered raw events (measured:
            # freshness p50 2.7 s → 0.4 s at 1,500 events/s).
            broker_max_poll_records=500,
            stream_buffer_maxsize=1000,
            key_serializer="raw",
            value_serializer="raw",
        )
        app.transport = tuned_transport(
            app, s.processor_fetch_min_bytes, s.processor_fetch_max_wait_ms
        )
        self.events_topic = app.topic(topic_name(Topic.EVENTS_RAW, prefix))
        self.partials_topic = app.topic(s.partials_topic, partitions=self.partitions, internal=True)
        self.points_topic = app.topic(topic_name(Topic.METRIC_POINTS, prefix))
        self.exposures_topic = app.topic(topic_name(Topic.EXPOSURES, prefix))
        self.state_table = KeyPartitionedTable(
            app,
            name="windows",
            partitions=self.partitions,
            key_type=bytes,
            value_type=bytes,
            on_recovered=self._recovered_stage_one,
        )
        app.tables.add(self.state_table)
        self.merge_table = KeyPartitionedTable(
            app,
            name="merge",
            partitions=self.partitions,
            key_type=bytes,
            value_type=bytes,
            on_recovered=self._recovered_stage_two,
        )
        app.tables.add(self.merge_table)
        app.agent(self.events_topic, name="metrics")(self._stage_one)
        app.agent(self.partials_topic, name="merge")(self._stage_two)
        app.timer(max(1.0, s.processor_flush_interval_seconds), name="flush")(self._tick)
        return app

    def ready(self) -> bool:
        return self.started and not self.app.rebalancing

    # recovery -------------------------------------------------------------------------------

    async def _recovered_stage_one(self, table: KeyPartitionedTable, active: set[int]) -> None:
        """Rebuild every active partition from the table, which recovery just made current.

        Kept partitions are rebuilt too: faust may keep a partition across a rebalance it
        lost for a generation that never completed here, while another worker moved it on.
        """
        async with self.stage_one.lock:
            table.forget_partitions(set(range(self.partitions)) - active)
            self.states = {p: self._load_state(p) for p in sorted(active)}
            self._forget_gaps(self.stage_one.topic)
            self.started = True

    async def _recovered_stage_two(self, table: KeyPartitionedTable, active: set[int]) -> None:
        async with self.stage_two.lock:
            table.forget_partitions(set(range(self.partitions)) - active)
            self.merges = {p: self._load_merge(p) for p in sorted(active)}
            self._forget_gaps(self.stage_two.topic)

    def _forget_gaps(self, topic: str) -> None:
        """After a recovery faust seeks to the committed offsets: held records come again."""
        for tp in [tp for tp in self._gaps if tp.topic == topic]:
            del self._gaps[tp]
            self._sought.pop(tp, None)
        for tp in [tp for tp in self._progress if tp.topic == topic]:
            del self._progress[tp]
        for tp in [tp for tp in self._behind if tp.topic == topic]:
            del self._behind[tp]

    def _load_state(self, partition: int) -> PartitionState:
        state = PartitionState(partition, self.dedup)
        state.load(self.state_table)
        return state

    def _load_merge(self, partition: int) -> MergeState:
        merge = MergeState(partition)
        merge.load(self.merge_table.items_with_prefix(f"{partition}|"))
        return merge

    def _assigned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    # the batch loop of both stages ----------------------------------------------------------

    def _rebalanced_since(self, rebalances: int) -> bool:
        """Whether a rebalance is under way or began after ``rebalances`` was read."""
        return bool(self.app.rebalancing) or self.app.rebalancing_count != rebalances

    async def _stage_one(self, stream: StreamT[bytes]) -> None:
        await self._run(self.stage_one, stream)

    async def _stage_two(self, stream: StreamT[bytes]) -> None:
        await self._run(self.stage_two, stream)

    async def _run(self, stage: Stage[Any], stream: StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            self.settings.processor_batch_max, within=stage.interval
        )
        async for events in batches:
            async with stage.lock:
                await self._batch(stage, events)

    async def _batch(self, stage: Stage[Any], events: list[EventT[bytes]]) -> None:
        rebalances = self.app.rebalancing_count
        if not self.started or self._rebalanced_since(rebalances):
            self._hold_back(events, "rebalance")
            return
        try:
            taken, refused = stage.take(events)
            flushed = await stage.flush(taken, rebalances)
        except Exception:
            log.exception("a batch failed; its partitions are rebuilt", stage=stage.name)
            self._hold_back(events, "error")
            await self._rebuild(stage, {e.message.partition for e in events}, "batch")
            return
        if not flushed:
            self._hold_back(events, "rebalance")
            return
        await self._refetch(stage, refused)

    async def _rebuild(self, stage: Stage[Any], partitions: set[int], cause: str) -> None:
        """After a failure: state back to what the table holds, reading back to its offset.

        Whatever the failed step changed in memory but did not persist is dropped; the
        partition is fetched again from the offset the persisted state expects.
        """
        self.metrics.errors.labels(stage=f"{stage.name}_{cause}").inc()
        for partition in partitions & self._assigned(stage.topic):
            self._mark_gap(TP(stage.topic, partition), stage.reload(partition))
        await self._seek_gaps(stage.topic)

    def _reload_state(self, partition: int) -> PartitionState:
        state = self.states[partition] = self._load_state(partition)
        return state

    def _reload_merge(self, partition: int) -> MergeState:
        merge = self.merges[partition] = self._load_merge(partition)
        return merge

    def _mark_gap(self, tp: TP, state: Sequenced) -> None:
        """Fetch ``tp`` again (see :meth:`_seek`) until its state or its commit moves on."""
        self._gaps[tp] = state
        sought = self._sought.get(tp)
        if sought is not None and sought[0] != self._marker(tp, state):
            del self._sought[tp]  # an earlier gap, filled since: this one is new

    def _committed(self, tp: TP) -> int | None:
        """The offset faust last committed for ``tp`` (None before the group's first)."""
        committed: int | None = self.app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return committed

    def _marker(self, tp: TP, state: Sequenced) -> Marker:
        return state.expected_offset, self._committed(tp)

    def _hold_back(self, events: list[EventT[bytes]], reason: str) -> None:
        _hold_back(events)
        self.metrics.refetched.labels(reason=reason).inc(len(events))

    # stage one ------------------------------------------------------------------------------

    def _apply_events(self, events: list[EventT[bytes]]) -> tuple[set[int], list[EventT[bytes]]]:
        """Apply the batch in offset order; returns the partitions touched and the refused."""
        assigned = self._assigned(self.stage_one.topic)
        touched: set[int] = set()
        refused: list[EventT[bytes]] = []
        newest_received = 0.0
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            if partition not in assigned:
                continue  # revoked while buffered: its new owner processes it
            state = self.states.get(partition)
            if state is None:
                state = self._reload_state(partition)
            try:
                view: EventView | None = EventView.parse(event.value)
            except ValueError:
                view = None
            outcome = state.process(offset, view, self.catalog)
            if outcome is Outcome.OUT_OF_ORDER:
                refused.append(event)
                continue
            if view is None and outcome is Outcome.APPLIED:
                self.metrics.invalid.inc()
                log.warning("skipping an unreadable record", partition=partition, offset=offset)
            elif view is not None:
                newest_received = max(newest_received, view.received_at)
            touched.add(partition)
        if newest_received:
            self.metrics.event_age.set(max(0.0, time.time() - newest_received))
        return touched, refused

    async def _refetch(self, stage: Stage[Any], refused: list[EventT[bytes]]) -> None:
        """Hold the refused records back and seek their partitions back (see ``_seek``)."""
        if not refused:
            return
        self._hold_back(refused, "out_of_order")
        states = stage.states()
        for partition in sorted({e.message.partition for e in refused} & states.keys()):
            self._mark_gap(TP(stage.topic, partition), states[partition])
        await self._seek_gaps(stage.topic)

    def _note_stalls(self, topic: str, states: Mapping[int, Sequenced]) -> None:
        """Treat a partition that is behind and makes no progress for a while as a gap.

        Behind means records waiting beyond the state's offset, or a committed offset below
        it. A safety net: faust can stop fetching a partition (a full stream buffer takes it
        out of the fetch set until the buffer drains), or never deliver offsets between the
        committed one and the state's (then it never commits again, see :meth:`_seek`).
        Progress so slow that it never catches up counts too: a partition seen advancing one
        record a second, hundreds behind, once the load had stopped.
        """
        consumer, now = self.app.consumer, time.monotonic()
        for partition, state in states.items():
            tp = TP(topic, partition)
            try:
                highwater = consumer.highwater(tp)
            except AssertionError:  # not assigned (any more)
                continue
            marker = self._marker(tp, state)
            expected, committed = marker
            backlog = max(
                (highwater or 0) - expected, expected - committed if committed is not None else 0
            )
            if backlog <= 0:
                self._progress.pop(tp, None)
                self._behind.pop(tp, None)
            elif self._stalled(tp, marker, backlog, now) and tp not in self._gaps:
                log.warning(
                    "no progress on a partition that is behind",
                    tp=str(tp),
                    expected=expected,
                    committed=committed,
                    highwater=highwater,
                )
                self.metrics.refetched.labels(reason="stalled").inc()
                self._mark_gap(tp, state)

    def _stalled(self, tp: TP, marker: Marker, backlog: int, now: float) -> bool:
        """Whether ``tp``, behind by ``backlog``, has stood still for ``_STALL_S`` or has
        not caught up half of a backlog of more than ``_SLOW_MIN_BACKLOG`` in ``_SLOW_S``."""
        progress = self._progress.get(tp)
        if progress is None or progress[0] != marker:
            self._progress[tp] = progress = (marker, now)
        behind = self._behind.setdefault(tp, (backlog, now))
        still = now - progress[1] >= _STALL_S
        slow = (
            now - behind[1] >= _SLOW_S and backlog > _SLOW_MIN_BACKLOG and backlog > behind[0] / 2
        )
        if still or slow:
            self._progress[tp] = (marker, now)
            self._behind[tp] = (backlog, now)
        elif now - behind[1] >= _SLOW_S:
            self._behind[tp] = (backlog, now)  # caught up enough: a new window
        return still or slow

    async def _seek_gaps(self, topic: str) -> None:
        """Seek every partition of ``topic`` with a gap back (see :meth:`_seek`).

        After a rebalance faust seeks to the committed offsets, but a record fetched before it
        can still arrive; faust then drops every record below it as already read. The seek
        brings those records back. It is repeated every second (from the timer too) until the
        state's offset or the committed one moves: records already on their way can overtake
        a seek once more, and once the load stops nothing else would bring them again.
        """
        now = time.monotonic()
        for tp, state in list(self._gaps.items()):
            if tp.topic != topic:
                continue
            sought = self._sought.get(tp)
            if sought is not None and sought[0] != self._marker(tp, state):
                del self._gaps[tp], self._sought[tp]  # records flow in order from the seek
            elif sought is None or now - sought[1] >= _REFETCH_EVERY_S:
                await self._seek(tp, state, now)

    async def _seek(self, tp: TP, state: Sequenced, now: float) -> None:
        """Seek ``tp`` to the committed offset, or the state's if lower (or the log start).

        Not to the state's offset alone: faust commits only over a run of acknowledged
        offsets that starts at the committed one, so offsets between the committed one and
        the state's must be delivered (they are replays, passed over) and acknowledged too,
        or the partition is never committed again.
        """
        consumer = self.app.consumer
        expected = state.expected_offset
        try:
            earliest = (await consumer.earliest_offsets(tp)).get(tp)
            if earliest is not None and expected < earliest:
                log.warning(
                    "offsets deleted before they were processed",
                    tp=str(tp),
                    expected=expected,
                    log_start=earliest,
                )
                state.skip_to(earliest)
                expected = earliest
            committed = self._committed(tp)
            target = expected if committed is None else min(expected, committed)
            target = max(target, earliest or 0)
            log.info("fetching again", tp=str(tp), offset=target, expected=expected)
            # faust took the offsets between the last read one and the early record for a
            # gap (transaction markers) it may commit over, and drops anything read below
            # it: forget that gap, then the seek sets the read offset back. `seek_wait` runs
            # in the consumer's thread (faust's `seek` calls aiokafka from this one).
            consumer._gap.pop(tp, None)  # type: ignore[attr-defined]
            consumer.resume_partitions({tp})
            # A partition faust took out of the fetch for a full stream buffer comes back
            # only when that buffer reports it drained; fetch it again regardless.
            consumer.on_buffer_drop(tp)
            await consumer.seek_wait({tp: target})
        except (KafkaError, AssertionError, TimeoutError) as exc:  # again on the next tick
            log.warning("cannot fetch again", tp=str(tp), offset=expected, error=repr(exc))
        self._sought[tp] = (self._marker(tp, state), now)

    async def _flush_stage_one(self, partitions: set[int], rebalances: int) -> bool:
        """Send, then persist, what the partitions changed; False if a rebalance intervened.

        After a rebalance began nothing is written: recovery rebuilds the state from the
        changelog, and the caller holds the batch back to be applied to that state again.
        """
        results: list[FlushResult] = []
        for partition in sorted(partitions):
            state = self.states[partition]
            results.append(state.flush(self.catalog))
            counters = state.counters
            self.metrics.events.inc(counters.processed)
            self.metrics.duplicates.inc(counters.duplicates)
            for project, late in counters.late.items():
                self.metrics.late.labels(project=project).inc(late)
            counters.processed = counters.duplicates = 0
            counters.late.clear()
        exposures_acked = []
        for result in results:
            for partial in result.partials:
                key = partial.window_key
                await self.partials_topic.send(
                    key=key.encode(),
                    value=partial.to_bytes(),
                    partition=_stable_partition(key, self.partitions),
                )
            for exposure in result.exposures:
                exposures_acked.append(
                    await self.exposures_topic.send(
                        key=exposure.kafka_key().encode(),
                        value=orjson.dumps(exposure.model_dump(mode="json")),
                    )
                )
                self.metrics.exposures.labels(multi_variant=str(exposure.multi_variant)).inc()
            self.metrics.partials.inc(len(result.partials))
        if exposures_acked:
            # An exposure's state says "sent": it must not be persisted before the broker has
            # the exposure. Partials need no wait: recovery re-sends every restored window.
            await asyncio.gather(*exposures_acked)
        if self._rebalanced_since(rebalances):
            return False
        for result in results:
            self.state_table.write(result.writes)
        return True

    # stage two ------------------------------------------------------------------------------

    def _accept_partials(
        self, events: list[EventT[bytes]]
    ) -> tuple[list[tuple[str, bytes | None]], list[EventT[bytes]]]:
        """Take the partials in offset order; returns the table writes and the refused."""
        assigned = self._assigned(self.stage_two.topic)
        now = time.monotonic()
        writes: list[tuple[str, bytes | None]] = []
        refused: list[EventT[bytes]] = []
        for event in events:
            partition = event.message.partition
            if partition not in assigned:
                continue
            merge = self.merges.get(partition)
            if merge is None:
                merge = self._reload_merge(partition)
            outcome = merge.admit(event.message.offset)
            if outcome is Outcome.OUT_OF_ORDER:
                refused.append(event)
            elif outcome is Outcome.APPLIED:
                key = merge.accept(Partial.from_bytes(event.value), now)
                if key is not None:
                    writes.append((key, event.value))
        return writes, refused

    async def _flush_stage_two(
        self, writes: list[tuple[str, bytes | None]], rebalances: int
    ) -> bool:
        """Send the changed points, then persist; False (nothing written) after a rebalance."""
        emitted_at = datetime.now(UTC)
        for merge in self.merges.values():
            points, emitted_writes = merge.flush(emitted_at)
            writes.extend(emitted_writes)
            for point in points:
                await self.points_topic.send(
                    key=point.kafka_key().encode(),
                    value=orjson.dumps(point.model_dump(mode="json")),
                )
            self.metrics.windows.inc(len(points))
        # No wait for the points: a restart re-emits every restored window's points.
        if self._rebalanced_since(rebalances):
            return False
        self.merge_table.write(writes)
        return True

    # the timer ------------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Send what recovery marked dirty, forget closed merge windows, update the lag."""
        rebalances = self.app.rebalancing_count
        if not self.started or self._rebalanced_since(rebalances):
            return
        # An exception must not end the timer: it is what fetches gaps again once the load
        # stops. A failed step rebuilds its stage from the table instead.
        for stage in (self.stage_one, self.stage_two):
            async with stage.lock:
                try:
                    await stage.tick(rebalances)
                    self._note_stalls(stage.topic, stage.states())
                    await self._seek_gaps(stage.topic)
                except Exception:
                    log.exception("a timer step failed; rebuilding", stage=stage.name)
                    await self._rebuild(stage, set(stage.states()), "timer")
        self._update_lag()

    async def _tick_stage_one(self, rebalances: int) -> None:
        assigned = self._assigned(self.stage_one.topic)
        await self._flush_stage_one({p for p in self.states if p in assigned}, rebalances)

    async def _tick_stage_two(self, rebalances: int) -> None:
        assigned = self._assigned(self.stage_two.topic)
        lateness = self.catalog.lateness_by_project()
        deletes: list[tuple[str, bytes | None]] = []
        for partition, merge in self.merges.items():
            if partition in assigned:
                deletes.extend(
                    (key, None)
                    for key in merge.evict(
                        lateness, time.monotonic(), self.settings.processor_merge_idle_seconds
                    )
                )
        await self._flush_stage_two(deletes, rebalances)

    def _update_lag(self) -> None:
        topic = self.stage_one.topic
        consumer = self.app.consumer
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        for partition, state in self.states.items():
            if partition not in assigned:
                continue
            try:
                highwater = consumer.highwater(TP(topic, partition))
            except AssertionError:  # revoked by a rebalance since the assignment was read
                continue
            if highwater is not None:
                self.metrics.lag.labels(partition=str(partition)).set(
                    max(0, highwater - state.last_offset - 1)
                )
