"""The batch loop of both stages over a partition log: exactness around faults.

For every batch the log yields, :class:`StageRunner`:

1. holds it back while a rebalance is under way (or before the first recovery): nothing is
   applied, and the records come again after the seek to the committed offsets;
2. lets the stage apply it and flush (send, then persist); a rebalance that began meanwhile
   makes the flush write nothing, and the batch is held back the same way;
3. acknowledges what it applied or passed over, and holds back the records the stage refused
   as ahead of a missing offset, then fetches their partitions again from the offset the
   state expects (or the committed one, if lower: see :meth:`StageRunner._seek`);
4. on an exception, holds the batch back and rebuilds its partitions from the table, fetching
   them again from the offset the table's state expects.

The timer (:meth:`StageRunner.tick`) sends what recovery marked dirty and forgets closed
merge windows, finds partitions that are behind and make no progress (a safety net: see
:mod:`sextant.processor.gaps`), fetches gaps again, and updates the lag. Failures there
rebuild too instead of ending the timer: it is what fetches gaps again once the load stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.processor.gaps import GapTracker, Key, Marker, Sequenced
from sextant.processor.log import LogRecord, LogUnavailable, PartitionLog
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.stages import Stage

log = get_logger(__name__)
AnyStage = Stage[Any]


class StageRunner:
    """Drives the stages over ``log``; the first stage's recovery makes the worker start."""

    def __init__(
        self,
        log: PartitionLog,
        stages: Sequence[AnyStage],
        metrics: ProcessorMetrics,
        *,
        batch_max: int,
        tracker: GapTracker | None = None,
        progress: Mapping[str, ConsumerProgress] | None = None,
        ends_every_s: float = 5.0,
    ) -> None:
        self.log = log
        self.stages = tuple(stages)
        self.metrics = metrics
        self.batch_max = batch_max
        self.tracker = tracker or GapTracker()
        self.started = False
        self._locks = {stage.name: asyncio.Lock() for stage in self.stages}
        self.progress = {
            stage.name: (progress or {}).get(stage.name)
            or ConsumerProgress(f"stage-{stage.name}", self.tracker.clock, time.time)
            for stage in self.stages
        }
        """Per stage: its progress per partition (the offset its state expects next)."""
        self.ends_every_s = ends_every_s
        self._ends: dict[str, dict[int, int]] = {}
        self._ends_at = -ends_every_s

    def ready(self) -> bool:
        return self.started and not self.log.rebalancing

    # the batch loop -------------------------------------------------------------------------

    async def run(self, stage: AnyStage) -> None:
        """Take ``stage``'s batches for as long as the log delivers them."""
        batches = self.log.batches(stage.topic, self.batch_max, stage.interval)
        async for records in batches:
            async with self._locks[stage.name]:
                await self.batch(stage, records)

    def _rebalanced_since(self, generation: int) -> bool:
        """Whether a rebalance is under way or began after ``generation`` was read."""
        return self.log.rebalancing or self.log.generation != generation

    async def batch(self, stage: AnyStage, records: Sequence[LogRecord]) -> None:
        generation = self.log.generation
        if not self.started or self._rebalanced_since(generation):
            self._hold_back(records, "rebalance")
            return
        try:
            taken, refused = stage.take(records, self.log.assigned(stage.topic))
            flushed = await stage.flush(taken, lambda: not self._rebalanced_since(generation))
        except Exception:
            log.exception("a batch failed; its partitions are rebuilt", stage=stage.name)
            self._hold_back(records, "error")
            await self._rebuild(stage, {r.partition for r in records}, "batch")
            return
        if not flushed:
            self._hold_back(records, "rebalance")
            return
        if not refused:
            self.log.acknowledge(records)
        else:
            held = {id(r) for r in refused}
            self.log.acknowledge([r for r in records if id(r) not in held])
        self._moved(stage, {r.partition for r in records})
        if refused:
            await self._refetch(stage, refused)

    def _moved(self, stage: AnyStage, partitions: set[int]) -> None:
        states, progress = stage.states(), self.progress[stage.name]
        for partition in partitions:
            state = states.get(partition)
            if state is not None:
                progress.moved(partition, state.expected_offset)

    def _hold_back(self, records: Sequence[LogRecord], reason: str) -> None:
        self.log.hold_back(records)
        self.metrics.refetched.labels(reason=reason).inc(len(records))

    async def _rebuild(self, stage: AnyStage, partitions: set[int], cause: str) -> None:
        """After a failure: state back to what the table holds, reading back to its offset.

        Whatever the failed step changed in memory but did not persist is dropped; the
        partition is fetched again from the offset the persisted state expects.
        """
        self.metrics.errors.labels(stage=f"{stage.name}_{cause}").inc()
        for partition in sorted(partitions & self.log.assigned(stage.topic)):
            self._mark_gap((stage.topic, partition), stage.reload(partition))
        await self._seek_gaps(stage)

    async def _refetch(self, stage: AnyStage, refused: Sequence[LogRecord]) -> None:
        """Hold the refused records back and seek their partitions back (see :meth:`_seek`)."""
        self._hold_back(refused, "out_of_order")
        states = stage.states()
        for partition in sorted({r.partition for r in refused} & states.keys()):
            self._mark_gap((stage.topic, partition), states[partition])
        await self._seek_gaps(stage)

    # gaps -----------------------------------------------------------------------------------

    def _marker(self, key: Key, state: Sequenced) -> Marker:
        return state.expected_offset, self.log.committed(*key)

    def _mark_gap(self, key: Key, state: Sequenced) -> None:
        self.tracker.mark(key, state, self._marker(key, state))

    async def _seek_gaps(self, stage: AnyStage) -> None:
        """Seek every partition of ``stage`` with an open gap that is due (see
        :class:`~sextant.processor.gaps.GapTracker`)."""
        for key, state in self.tracker.gaps(stage.topic):
            if self.tracker.due(key, self._marker(key, state)):
                await self._seek(key, state)

    async def _seek(self, key: Key, state: Sequenced) -> None:
        """Seek to the committed offset, or the state's if lower (or the log start).

        Not to the state's offset alone: the log commits only over a run of acknowledged
        offsets that starts at the committed one, so offsets between the committed one and
        the state's must be delivered (they are replays, passed over) and acknowledged too,
        or the partition is never committed again.
        """
        topic, partition = key
        expected = state.expected_offset
        try:
            earliest = await self.log.log_start(topic, partition)
            if earliest is not None and expected < earliest:
                log.warning(
                    "offsets deleted before they were processed",
                    topic=topic,
                    partition=partition,
                    expected=expected,
                    log_start=earliest,
                )
                state.skip_to(earliest)
                expected = earliest
            committed = self.log.committed(topic, partition)
            target = expected if committed is None else min(expected, committed)
            target = max(target, earliest or 0)
            log.info(
                "fetching again", topic=topic, partition=partition, offset=target, expected=expected
            )
            await self.log.seek(topic, partition, target)
        except LogUnavailable as exc:  # again on the next tick
            log.warning(
                "cannot fetch again", topic=topic, partition=partition, error=repr(exc.__cause__)
            )
        self.tracker.sought(key, self._marker(key, state))

    def _note_stalls(self, stage: AnyStage) -> None:
        """Treat a partition that is behind and makes no progress for a while as a gap.

        Behind means records waiting beyond the state's offset, or a committed offset below
        it. A safety net: the log can stop fetching a partition, or never deliver offsets
        between the committed one and the state's (then it never commits again).
        """
        topic = stage.topic
        assigned = self.log.assigned(topic)
        ends = self._ends.get(topic, {})
        progress = self.progress[stage.name]
        for partition, state in stage.states().items():
            if partition not in assigned:
                continue
            key = (topic, partition)
            # The broker's end too, not only the last fetch's: a partition the log stopped
            # fetching before it ever fetched it has no high watermark of its own.
            highwater = max(self.log.high_watermark(topic, partition) or 0, ends.get(partition, 0))
            marker = self._marker(key, state)
            expected, committed = marker
            progress.waiting(partition, highwater - expected)
            backlog = max(
                highwater - expected, expected - committed if committed is not None else 0
            )
            if backlog <= 0:
                self.tracker.caught_up(key)
            elif self.tracker.stalled(key, marker, backlog) and not self.tracker.has_gap(key):
                log.warning(
                    "no progress on a partition that is behind",
                    topic=topic,
                    partition=partition,
                    expected=expected,
                    committed=committed,
                    highwater=highwater,
                )
                self.metrics.refetched.labels(reason="stalled").inc()
                self._mark_gap(key, state)

    # the timer, recovery --------------------------------------------------------------------

    async def tick(self) -> None:
        """Send what recovery marked dirty, forget closed windows, fetch gaps, update the lag."""
        generation = self.log.generation
        if not self.started or self._rebalanced_since(generation):
            return
        await self._refresh_ends()
        for stage in self.stages:
            async with self._locks[stage.name]:
                try:
                    assigned = self.log.assigned(stage.topic)
                    await stage.tick(assigned, lambda: not self._rebalanced_since(generation))
                    self._note_stalls(stage)
                    await self._seek_gaps(stage)
                except Exception:
                    log.exception("a timer step failed; rebuilding", stage=stage.name)
                    await self._rebuild(stage, set(stage.states()), "timer")
        self._update_lag()

    async def _refresh_ends(self) -> None:
        """Every ``ends_every_s``: each stage's end offsets, as the broker has them."""
        now = self.tracker.clock()
        if now - self._ends_at < self.ends_every_s:
            return
        self._ends_at = now
        for stage in self.stages:
            try:
                self._ends[stage.topic] = await self.log.end_offsets(stage.topic)
            except LogUnavailable:
                log.warning("end offsets unavailable", topic=stage.topic)

    async def recovered(self, stage: AnyStage, active: set[int]) -> None:
        """Rebuild every active partition of ``stage`` from its table, which recovery just
        made current; the log seeks to the committed offsets after it, so held records come
        again.

        Kept partitions are rebuilt too: a partition can stay with this worker across a
        rebalance whose generation never completed here, while another worker moved it on.
        """
        async with self._locks[stage.name]:
            stage.recovered(active)
            self.tracker.forget(stage.topic)
            progress = self.progress[stage.name]
            progress.forget()
            for partition, state in stage.states().items():
                progress.moved(partition, state.expected_offset)
            if stage is self.stages[0]:
                self.started = True

    def _update_lag(self) -> None:
        stage = self.stages[0]
        assigned = self.log.assigned(stage.topic)
        for partition, state in stage.states().items():
            if partition not in assigned:
                continue
            highwater = self.log.high_watermark(stage.topic, partition)
            if highwater is not None:
                self.metrics.lag.labels(partition=str(partition)).set(
                    max(0, highwater - state.expected_offset)
                )
