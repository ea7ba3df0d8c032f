"""The two stages as the runner drives them: plain classes over the log's records.

Stage one (``metrics``) reads ``events.raw``: per partition, a
:class:`~sextant.processor.partition.PartitionState` applies events in offset order; a flush
sends each changed window's partial to the ``partials`` topic and the exposures (waiting for
the broker to acknowledge the exposures), then writes the state to its table. Stage two
(``merge``) reads ``partials``: per partition, a :class:`~sextant.processor.merge.MergeState`
keeps the newest partial per source partition and window; a flush sends the changed metric
points, then writes the merge table.

A flush that finds a rebalance began since its batch (``still_valid()`` false) writes
nothing: recovery rebuilds the state from the table, and the runner holds the batch back.
No faust, no Kafka client here: records come from a
:class:`~sextant.processor.log.PartitionLog`, outputs go to
:class:`~sextant.processor.log.Outputs`, state to a :class:`~sextant.processor.log.StateTable`.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

import orjson

from sextant.core.logging import get_logger
from sextant.processor.experiment_stats import ExperimentStatistics, Plans
from sextant.processor.forgetting import Forgetting, Passes
from sextant.processor.gaps import Sequenced
from sextant.processor.log import LogRecord, Outputs, StateTable
from sextant.processor.merge import MergeState
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.partition import Catalog, DedupPolicy, EventView, FlushResult, PartitionState
from sextant.processor.sequence import Outcome
from sextant.schemas.windows import Partial

log = get_logger(__name__)
T = TypeVar("T")
StillValid = Callable[[], bool]
"""True while no rebalance began since the batch was taken."""


class LatenessCatalog(Catalog, Protocol):
    def lateness_by_project(self) -> dict[str, int]: ...


class Stage(Protocol, Generic[T]):
    """One stage as the runner sees it."""

    name: str
    topic: str
    interval: float
    """A batch is taken at most this long after its first record."""

    def states(self) -> Mapping[int, Sequenced]:
        """The partitions' states in memory."""
        ...

    def take(self, records: Sequence[LogRecord], assigned: set[int]) -> tuple[T, list[LogRecord]]:
        """Apply a batch in offset order: (what to flush, the records refused as ahead of
        a missing offset). Records of partitions not ``assigned`` are passed over."""
        ...

    async def flush(self, taken: T, still_valid: StillValid) -> bool:
        """Send, then persist; False (nothing persisted) if ``still_valid()`` turned false."""
        ...

    async def tick(self, assigned: set[int], still_valid: StillValid) -> None:
        """The timer's step."""
        ...

    def reload(self, partition: int) -> Sequenced:
        """Rebuild one partition's state from the table, in place of the one in memory."""
        ...

    def recovered(self, active: set[int]) -> None:
        """The table holds every active partition's changelog: rebuild them all, forget the
        rest."""
        ...


def stable_partition(key: str, partitions: int) -> int:
    """The ``partials`` partition of a window key: the same on every worker and restart."""
    return zlib.crc32(key.encode()) % partitions


class StageOne:
    """Events in, window partials and exposures out; state per ``events.raw`` partition."""

    name = "one"

    def __init__(
        self,
        *,
        topic: str,
        partials_topic: str,
        exposures_topic: str,
        partitions: int,
        interval: float,
        catalog: Catalog,
        dedup: DedupPolicy,
        table: StateTable,
        outputs: Outputs,
        metrics: ProcessorMetrics,
        wall_clock: Callable[[], float] = time.time,
        statistics_topic: str | None = None,
        plans: Plans | None = None,
        forgetting: Forgetting | None = None,
        deletions_topic: str = "",
    ) -> None:
        self.topic = topic
        self.forgetting = forgetting
        """With it, deleted persons are forgotten, reported to ``deletions_topic``."""
        self.deletions_topic = deletions_topic
        self.statistics_topic = statistics_topic
        self.plans = plans
        """With both, the partitions stream experiment statistics to ``statistics_topic``."""
        self.interval = interval
        self.partials_topic = partials_topic
        self.exposures_topic = exposures_topic
        self.partitions = partitions
        self.catalog = catalog
        self.dedup = dedup
        self.table = table
        self.outputs = outputs
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.partition_states: dict[int, PartitionState] = {}

    def states(self) -> Mapping[int, Sequenced]:
        return self.partition_states

    def _load(self, partition: int) -> PartitionState:
        statistics = None
        if self.plans is not None and self.statistics_topic is not None:
            statistics = ExperimentStatistics(partition, self.partitions, self.plans)
        state = PartitionState(partition, self.dedup, statistics)
        state.load(self.table)
        return state

    def reload(self, partition: int) -> PartitionState:
        state = self.partition_states[partition] = self._load(partition)
        if self.forgetting is not None:
            self.forgetting.forget_partition(partition)
        return state

    def recovered(self, active: set[int]) -> None:
        self.table.forget_partitions(set(range(self.partitions)) - active)
        self.partition_states = {p: self._load(p) for p in sorted(active)}
        if self.forgetting is not None:
            for partition in range(self.partitions):
                self.forgetting.forget_partition(partition)

    def take(
        self, records: Sequence[LogRecord], assigned: set[int]
    ) -> tuple[set[int], list[LogRecord]]:
        touched: set[int] = set()
        refused: list[LogRecord] = []
        newest_received = 0.0
        states = self.partition_states
        catalog = self.catalog
        for record in records:
            partition = record.partition
            if partition not in assigned:
                continue  # revoked while buffered: its new owner processes it
            state = states.get(partition)
            if state is None:
                state = self.reload(partition)
            try:
                view: EventView | None = EventView.parse(record.value or b"")
            except ValueError:
                view = None
            outcome = state.process(record.offset, view, catalog)
            if outcome is Outcome.OUT_OF_ORDER:
                refused.append(record)
                continue
            if view is None and outcome is Outcome.APPLIED:
                self.metrics.invalid.inc()
                log.warning(
                    "skipping an unreadable record", partition=partition, offset=record.offset
                )
            elif view is not None and view.received_at > newest_received:
                newest_received = view.received_at
            touched.add(partition)
        if newest_received:
            self.metrics.event_age.set(max(0.0, self.wall_clock() - newest_received))
        return touched, refused

    async def flush(self, taken: set[int], still_valid: StillValid) -> bool:
        results: list[FlushResult] = []
        forgotten: dict[int, Passes] = {}
        for partition in sorted(taken):
            state = self.partition_states[partition]
            if self.forgetting is not None:
                forgotten[partition] = self.forgetting.apply(partition, state.forget)
            results.append(state.flush(self.catalog))
            counters = state.counters
            self.metrics.events.inc(counters.processed)
            self.metrics.duplicates.inc(counters.duplicates)
            for project, late in counters.late.items():
                self.metrics.late.labels(project=project).inc(late)
            counters.processed = counters.duplicates = 0
            counters.late.clear()
        acknowledged: list[Awaitable[None]] = []
        send = self.outputs.send
        for result in results:
            for partial in result.partials:
                key = partial.window_key
                await send(
                    self.partials_topic,
                    key.encode(),
                    partial.to_bytes(),
                    stable_partition(key, self.partitions),
                )
            for exposure in result.exposures:
                acknowledged.append(
                    await send(
                        self.exposures_topic,
                        exposure.kafka_key().encode(),
                        orjson.dumps(exposure.model_dump(mode="json")),
                    )
                )
                self.metrics.exposures.labels(multi_variant=str(exposure.multi_variant)).inc()
            for record in result.statistics:
                # No wait: a restart re-sends the records of every restored experiment.
                assert self.statistics_topic is not None
                await send(
                    self.statistics_topic,
                    record.kafka_key().encode(),
                    orjson.dumps(record.model_dump(mode="json")),
                )
            self.metrics.partials.inc(len(result.partials))
        if acknowledged:
            # An exposure's state says "sent": it must not be persisted before the broker has
            # the exposure. Partials need no wait: recovery re-sends every restored window.
            await asyncio.gather(*acknowledged)
        if not still_valid():
            return False
        for result in results:
            self.table.write(result.writes)
        if self.forgetting is not None:
            for partition, applied in forgotten.items():
                await self.forgetting.persisted(
                    partition, applied, self.outputs, self.deletions_topic
                )
        return True

    async def tick(self, assigned: set[int], still_valid: StillValid) -> None:
        await self.flush({p for p in self.partition_states if p in assigned}, still_valid)


class StageTwo:
    """Partials in, metric points out; state per ``partials`` partition."""

    name = "two"

    def __init__(
        self,
        *,
        topic: str,
        points_topic: str,
        partitions: int,
        interval: float,
        idle_seconds: float,
        catalog: LatenessCatalog,
        table: StateTable,
        outputs: Outputs,
        metrics: ProcessorMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.points_topic = points_topic
        self.partitions = partitions
        self.interval = interval
        self.idle_seconds = idle_seconds
        self.catalog = catalog
        self.table = table
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self.merges: dict[int, MergeState] = {}

    def states(self) -> Mapping[int, Sequenced]:
        return self.merges

    def _load(self, partition: int) -> MergeState:
        merge = MergeState(partition)
        merge.load(self.table.items_with_prefix(f"{partition}|"))
        return merge

    def reload(self, partition: int) -> MergeState:
        merge = self.merges[partition] = self._load(partition)
        return merge

    def recovered(self, active: set[int]) -> None:
        self.table.forget_partitions(set(range(self.partitions)) - active)
        self.merges = {p: self._load(p) for p in sorted(active)}

    def take(
        self, records: Sequence[LogRecord], assigned: set[int]
    ) -> tuple[list[tuple[str, bytes | None]], list[LogRecord]]:
        now = self.clock()
        writes: list[tuple[str, bytes | None]] = []
        refused: list[LogRecord] = []
        for record in records:
            partition = record.partition
            if partition not in assigned:
                continue
            merge = self.merges.get(partition)
            if merge is None:
                merge = self.reload(partition)
            outcome = merge.admit(record.offset)
            if outcome is Outcome.OUT_OF_ORDER:
                refused.append(record)
            elif outcome is Outcome.APPLIED and record.value is not None:
                key = merge.accept(Partial.from_bytes(record.value), now)
                if key is not None:
                    writes.append((key, record.value))
        return writes, refused

    async def flush(self, taken: list[tuple[str, bytes | None]], still_valid: StillValid) -> bool:
        emitted_at = datetime.now(UTC)
        send = self.outputs.send
        for merge in self.merges.values():
            points, emitted_writes = merge.flush(emitted_at)
            taken.extend(emitted_writes)
            for point in points:
                await send(
                    self.points_topic,
                    point.kafka_key().encode(),
                    orjson.dumps(point.model_dump(mode="json")),
                )
            self.metrics.windows.inc(len(points))
        # No wait for the points: a restart re-emits every restored window's points.
        if not still_valid():
            return False
        self.table.write(taken)
        return True

    async def tick(self, assigned: set[int], still_valid: StillValid) -> None:
        lateness = self.catalog.lateness_by_project()
        deletes: list[tuple[str, bytes | None]] = []
        now = self.clock()
        for partition, merge in self.merges.items():
            if partition in assigned:
                deletes.extend((key, None) for key in merge.evict(lateness, now, self.idle_seconds))
        await self.flush(deletes, still_valid)
