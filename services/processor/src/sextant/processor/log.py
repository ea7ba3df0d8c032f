"""The processor's seam with Kafka: the partition log both stages read, and their outputs.

Nothing here imports faust, mode or a Kafka client. :mod:`sextant.processor.faust_log` is the
one implementation over a real broker (faust's consumer group, tables and producer);
``tests/contract/partition_log.py`` states what a caller may rely on and runs against it and
against the in-memory fake of the unit tests, as arroyo does for its backends.

What a caller may rely on (the contract suite checks each point):

* **Delivery.** :meth:`PartitionLog.batches` yields the records of the partitions assigned to
  this consumer, each partition's records in increasing offset order, starting at the
  partition's committed offset (or the log start, for a group that never committed). A
  record delivered before a rebalance or a seek may still arrive after it: records can come
  *ahead* of the offset a caller expects, never silently *instead* of it.
* **Commits.** An offset is committed only once every record below it was acknowledged
  (:meth:`PartitionLog.acknowledge`); commits happen on the log's own schedule. A record
  neither acknowledged nor held back counts as held back.
* **Holding back.** :meth:`PartitionLog.hold_back` keeps records from being committed; they
  are delivered again after a seek to their offset, or to the committed offset after a
  restart or a rebalance.
* **Seeking.** After :meth:`PartitionLog.seek` returns, the partition is fetched again from
  that offset (a partition the log had stopped fetching is fetched again too), and every
  record from there on is delivered again, in order.
* **Rebalances.** :attr:`PartitionLog.generation` changes when a rebalance begins, and
  :attr:`PartitionLog.rebalancing` is true until the partitions are assigned and their state
  is recovered. While it is true, records may still be delivered: hold them back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


class LogUnavailable(Exception):  # noqa: N818 - the name says what a caller handles
    """The log could not answer now (broker unreachable, partition no longer assigned, a
    timeout): try again later."""


class LogRecord(Protocol):
    """One record as the stages read it."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class PartitionStatus:
    """What the log holds for one partition: for logs, metrics and stall diagnostics."""

    topic: str
    partition: int
    assigned: bool
    fetching: bool
    """Assigned and neither paused nor waiting for its buffer to drain."""
    paused: bool
    """Taken out of the fetch (a rebalance or a recovery does this until it ends)."""
    buffered: int
    """Records fetched and not yet taken by a batch."""
    committed: int | None
    high_watermark: int | None
    delivered: int | None
    """The offset of the last record delivered (None: none since the assignment)."""
    delivered_at: float | None
    """When it was delivered (monotonic seconds)."""


class PartitionLog(Protocol):
    """The partitions of the topics one consumer reads; see the module docstring."""

    @property
    def generation(self) -> int:
        """The number of rebalances begun so far."""
        ...

    @property
    def rebalancing(self) -> bool:
        """A rebalance (or the recovery after it) is under way."""
        ...

    def batches(
        self, topic: str, max_records: int, within: float
    ) -> AsyncIterator[Sequence[LogRecord]]:
        """Batches of ``topic``'s records: at most ``max_records``, taken at most ``within``
        seconds after the first of them arrived (every partition's records in order)."""
        ...

    def acknowledge(self, records: Sequence[LogRecord]) -> None:
        """These records are done with: their offsets may be committed."""
        ...

    def hold_back(self, records: Sequence[LogRecord]) -> None:
        """These records must come again: never commit their offsets (see the contract)."""
        ...

    def assigned(self, topic: str) -> set[int]:
        """The partitions of ``topic`` assigned to this consumer now."""
        ...

    def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset (the next to read), None if it never committed."""
        ...

    def high_watermark(self, topic: str, partition: int) -> int | None:
        """The offset after the partition's last record, as last seen; None if unknown."""
        ...

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """The broker's end offset of every assigned partition of ``topic`` now (not as of
        the last fetch: a partition the log does not fetch has one too); raises
        :class:`LogUnavailable`."""
        ...

    async def log_start(self, topic: str, partition: int) -> int | None:
        """The partition's first offset still stored (retention moves it on); raises
        :class:`LogUnavailable`."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Fetch the partition again from ``offset`` (see the contract); raises
        :class:`LogUnavailable`."""
        ...

    def status(self, topic: str, partition: int) -> PartitionStatus:
        """What the log holds for the partition now."""
        ...


class Outputs(Protocol):
    """Where the stages send what they compute."""

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> Awaitable[None]:
        """Hand one record to the producer; await the result for the broker's ack."""
        ...

    async def flush(self) -> None:
        """Wait until everything handed over is acknowledged by the broker."""
        ...


class StateTable(Protocol):
    """A stage's durable state: entries keyed ``<partition>|...``, each written to the
    partition's changelog in the order given, and restored on the worker that owns it."""

    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    def write(self, writes: Sequence[tuple[str, bytes | None]]) -> None:
        """Set (or, for None, delete) entries, in order."""
        ...

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the local copy of these partitions' entries (not their changelog)."""
        ...
