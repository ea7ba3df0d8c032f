"""The resolver stage: ``identities`` in, person overrides and identity decisions out.

Per ``identities`` partition a :class:`~sextant.processor.persons.PersonsState` applies edges
in offset order (one project's edges are one partition, so one writer per project). A flush
sends the overrides and decisions, waits until the broker has them, then writes the changed
persons and the offset to the table: a crash before the write replays the same edges from the
persisted offset, which sends the same records again (the warehouse keeps one of each), and a
crash after it applies nothing twice. Driven by the same runner as the other stages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence

import orjson
from pydantic import ValidationError

from sextant.core.logging import get_logger
from sextant.processor.forgetting import Forgetting, Passes
from sextant.processor.gaps import Sequenced
from sextant.processor.log import LogRecord, Outputs, StateTable
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.persons import Applied, Junk, PersonsState
from sextant.processor.sequence import Outcome
from sextant.processor.stages import StillValid
from sextant.schemas.identity import IdentityEdge

log = get_logger(__name__)


class ResolverStage:
    """Edges in, overrides and decisions out; state per ``identities`` partition."""

    name = "persons"

    def __init__(
        self,
        *,
        topic: str,
        overrides_topic: str,
        decisions_topic: str,
        partitions: int,
        interval: float,
        max_ids: int,
        junk: Junk,
        table: StateTable,
        outputs: Outputs,
        metrics: ProcessorMetrics,
        forgetting: Forgetting | None = None,
        deletions_topic: str = "",
    ) -> None:
        self.topic = topic
        self.forgetting = forgetting
        """With it, deleted persons are forgotten, reported to ``deletions_topic``."""
        self.deletions_topic = deletions_topic
        self.overrides_topic = overrides_topic
        self.decisions_topic = decisions_topic
        self.partitions = partitions
        self.interval = interval
        self.max_ids = max_ids
        self.junk = junk
        self.table = table
        self.outputs = outputs
        self.metrics = metrics
        self.persons: dict[int, PersonsState] = {}

    def states(self) -> Mapping[int, Sequenced]:
        return self.persons

    def _load(self, partition: int) -> PersonsState:
        state = PersonsState(partition, self.max_ids)
        state.load(self.table.items_with_prefix(f"{partition}|"))
        return state

    def reload(self, partition: int) -> PersonsState:
        state = self.persons[partition] = self._load(partition)
        if self.forgetting is not None:
            self.forgetting.forget_partition(partition)
        return state

    def recovered(self, active: set[int]) -> None:
        self.table.forget_partitions(set(range(self.partitions)) - active)
        self.persons = {p: self._load(p) for p in sorted(active)}
        if self.forgetting is not None:
            for partition in range(self.partitions):
                self.forgetting.forget_partition(partition)

    def take(
        self, records: Sequence[LogRecord], assigned: set[int]
    ) -> tuple[tuple[Applied, set[int]], list[LogRecord]]:
        applied = Applied()
        touched: set[int] = set()
        refused: list[LogRecord] = []
        for record in records:
            partition = record.partition
            if partition not in assigned:
                continue
            state = self.persons.get(partition)
            if state is None:
                state = self.reload(partition)
            outcome = state.admit(record.offset)
            if outcome is Outcome.OUT_OF_ORDER:
                refused.append(record)
                continue
            touched.add(partition)
            if outcome is not Outcome.APPLIED or record.value is None:
                continue  # a tombstone (null value) says nothing about a person: passed over
            try:
                edge = IdentityEdge.model_validate_json(record.value or b"")
            except ValidationError:
                self.metrics.invalid.inc()
                log.warning(
                    "skipping an unreadable edge", partition=partition, offset=record.offset
                )
                continue
            state.apply(record.offset, edge, self.junk, applied)
        return (applied, touched), refused

    async def flush(self, taken: tuple[Applied, set[int]], still_valid: StillValid) -> bool:
        applied, touched = taken
        forgotten: dict[int, Passes] = {}
        if self.forgetting is not None:
            for partition in sorted(touched):
                forgotten[partition] = self.forgetting.apply(
                    partition, self.persons[partition].forget
                )
        send = self.outputs.send
        acknowledged: list[Awaitable[None]] = []
        for override in applied.overrides:
            acknowledged.append(
                await send(
                    self.overrides_topic,
                    override.kafka_key().encode(),
                    override.model_dump_json().encode(),
                )
            )
        for decision in applied.decisions:
            acknowledged.append(
                await send(
                    self.decisions_topic,
                    decision.kafka_key().encode(),
                    orjson.dumps(decision.model_dump(mode="json")),
                )
            )
            self.metrics.identity_decisions.labels(decision=decision.decision.value).inc()
        if acknowledged:
            # The state says "applied": it must not be persisted before the broker has what
            # the edges produced, or a crash in between would lose it.
            await asyncio.gather(*acknowledged)
        if not still_valid():
            return False
        for partition in sorted(touched):
            self.table.write(self.persons[partition].writes())
        if self.forgetting is not None:
            for partition, done in forgotten.items():
                await self.forgetting.persisted(partition, done, self.outputs, self.deletions_topic)
        return True

    async def tick(self, assigned: set[int], still_valid: StillValid) -> None:
        await self.flush((Applied(), {p for p in self.persons if p in assigned}), still_valid)
