"""The sink's consume loop: poll → batch → insert → dead-letter → commit, one step at a time.

The insert of one batch runs on a writer thread while the loop reads and decodes the next.

What a caller may rely on:

* Offsets are committed only after every row of the batch is in the warehouse (or was refused
  for good and its record is on the dead-letter topic). A crash at any point loses nothing;
  what was inserted but not committed is read again and its replay is harmless.
* While the warehouse (or Kafka) fails, the loop keeps the batch, stops fetching (the member
  keeps its partitions) and retries with exponential backoff and jitter; :class:`Health` says
  what is failing. It resumes and catches up by itself.
* A record that can never be decoded or inserted is sent to the dead-letter topic with the
  reason and its partition moves on.

Time is injected (``clock``), and waiting is done by polling the source, so tests with fakes
run without sleeping.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sextant.core.batch_consumer import ConsumedRecord, Partition
from sextant.core.kafka import KafkaError
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.schemas.records import SinkDeadLetter
from sextant.sink import metrics
from sextant.sink.batch import Batch, BatchLimits, dead_letter
from sextant.sink.tables import TableSpec
from sextant.sink.writer import Store, WarehouseUnavailableError, write_rows

log = get_logger(__name__)

WAIT_SLICE_SECONDS = 0.25
"""Longest single poll while waiting, so a stop request is noticed quickly."""
STALL_SECONDS = 60.0
"""A member that owns records to read but has received none for this long is wedged."""
WRITE_CHECK_SECONDS = 0.02
"""Longest single poll while an insert runs, so its batch is committed soon after it ends."""


class Source(Protocol):
    """The consumer-group member (:class:`sextant.core.batch_consumer.BatchConsumer`)."""

    def poll(self, timeout_s: float, max_records: int) -> list[ConsumedRecord]: ...

    def pause_all(self) -> None: ...

    def resume_all(self) -> None: ...

    def seek(self, partition: Partition, offset: int) -> None: ...

    def assignment(self) -> set[Partition]: ...

    def commit(self, next_offsets: Mapping[Partition, int]) -> None: ...

    def lag(self) -> dict[Partition, int]: ...


class DeadLetterOut(Protocol):
    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        """Return once every letter is durable on the dead-letter topic; raise otherwise."""


class ConsumerStalledError(RuntimeError):
    """The consumer stopped fetching records it owns; the service replaces it."""


@dataclass
class Health:
    """What readiness reports; written by the loop's and the writer's threads, read by any."""

    warehouse_ok: bool = False
    kafka_ok: bool = False
    consuming: bool = False
    partitions: int = 0
    """Partitions this member owned at the last lag measurement."""
    last_error: str | None = None
    batches_committed: int = 0
    records_committed: int = 0


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float

    def next(self, previous: float | None) -> float:
        """Double the previous delay up to the maximum, with ±20 % jitter."""
        base = self.initial if previous is None else min(previous * 2, self.maximum)
        return base * random.uniform(0.8, 1.2)


class Writer(Protocol):
    """Runs a batch's inserts: a one-thread executor in production, inline in most tests."""

    def submit(self, fn: Callable[[], None], /) -> Future[None]: ...


class InlineWriter:
    """A :class:`Writer` that runs the insert at once, on the caller's thread."""

    def submit(self, fn: Callable[[], None], /) -> Future[None]:
        done: Future[None] = Future()
        try:
            fn()
        except BaseException as error:  # noqa: BLE001 - handed to the caller with the future
            done.set_exception(error)
        else:
            done.set_result(None)
        return done


class SinkLoop:
    """One consumer's loop. Call :meth:`step` until stopping, then :meth:`flush` once.

    Two batches may be alive: one being flushed (its inserts run on the ``writer``, then its
    dead letters and commit on the loop's thread) and the next one being read and decoded
    meanwhile. The next one is flushed only after the previous one is committed, so commits
    stay in offset order and at most one insert runs at a time.
    """

    # A step returns within about one poll (WAIT_SLICE_SECONDS) plus one flush attempt, so the
    # caller notices a stop request quickly and never leaves the group for being slow.

    def __init__(
        self,
        source: Source,
        store: Store,
        dead_letters: DeadLetterOut,
        specs: dict[str, TableSpec],
        limits: BatchLimits,
        backoff: Backoff,
        *,
        writer: Writer | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        health_interval: float = 5.0,
        ping: Callable[[], bool] | None = None,
        progress: ConsumerProgress | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._dead_letters = dead_letters
        self._specs = specs
        self._limits = limits
        self._backoff = backoff
        self._writer = writer or InlineWriter()
        self.health = health or Health()
        self._clock = clock
        self._health_interval = health_interval
        self._ping = ping
        self._progress = progress
        self._batch = self._new_batch()
        self._flushing: Batch | None = None
        self._writing: Future[None] | None = None
        self._carry: list[ConsumedRecord] = []
        self._rewind: dict[Partition, int] = {}
        self._paused = False
        self._retry_at: float | None = None
        self._delay: float | None = None
        self._began: float | None = None
        self._kafka_failing = False
        self._next_check = clock()
        self._last_write = clock()
        self._last_records = clock()

    def _new_batch(self) -> Batch:
        return Batch(self._specs)

    # -- the steady state -------------------------------------------------------------------

    def step(self) -> None:
        """Do the next bit of work; never blocks much longer than one poll.

        Normally: move the batch being flushed on, read what is there (waiting at most until
        the next batch is due) and hand the next batch to the writer when it is due and the
        writer is free. With a full batch waiting: wait for the writer instead of reading.
        After a failed flush: wait out the backoff, fetching nothing but keeping the
        membership, then try again.
        """
        if self._flushing is not None:
            self._advance_flush()
        if self._retry_at is not None:
            self._wait_for_retry()
        elif self._writing is not None and self._batch.due(self._clock(), self._limits):
            wait([self._writing], timeout=WAIT_SLICE_SECONDS)
        else:
            self._read()
        self._check_health()

    def _read(self) -> None:
        batch = self._batch
        if self._carry:
            records, self._carry = self._carry, []
        else:
            longest = WAIT_SLICE_SECONDS if self._writing is None else WRITE_CHECK_SECONDS
            timeout = min(batch.time_left(self._clock(), self._limits), longest)
            records = self._poll(timeout, self._limits.rows - batch.records)
        batch = self._batch  # a rebalance inside the poll may have replaced it
        now = self._clock()
        for record in records:
            batch.add(record, now)
        if self._flushing is None and batch.due(self._clock(), self._limits):
            self._start_flush()

    def _wait_for_retry(self) -> None:
        assert self._retry_at is not None
        left = self._retry_at - self._clock()
        if left > 0:
            self._source.pause_all()  # also pauses partitions a rebalance just assigned
            records = self._poll(min(left, WAIT_SLICE_SECONDS), self._limits.rows)
            # Anything fetched meanwhile is added to the next batch later. (Poll first: a
            # rebalance inside it replaces self._carry.)
            self._carry.extend(records)

    def _poll(self, timeout_s: float, max_records: int) -> list[ConsumedRecord]:
        records = self._source.poll(timeout_s, max(max_records, 1))
        self.health.consuming = True
        if records:
            self._last_records = self._clock()
        if not self._rewind:
            return records
        rewound, self._rewind = self._rewind, {}
        owned = self._source.assignment()
        for partition, offset in rewound.items():
            if partition in owned:
                self._source.seek(partition, offset)
        return [r for r in records if (r.topic, r.partition) not in rewound]

    def revoked(self, partitions: list[Partition]) -> None:
        """Rebalance: drop the uncommitted batches; they are read again from their first offsets.

        Runs inside whichever call to the source is under way (a poll, a commit, a pause...),
        so it only records what to do, and each caller checks afterwards whether its batch is
        still the one flushing; the next poll seeks the partitions this member keeps back to
        where the dropped batches began. An insert still running is left to finish: what it
        writes is read again, and a replay is harmless (see :mod:`sextant.sink.batch`).
        """
        self._forget_lag(partitions)  # the next owner reports these
        dropped = [b for b in (self._flushing, self._batch) if b is not None and b.records]
        if not dropped and not self._carry:
            return
        firsts = [(p, s.first) for b in dropped for p, s in b.spans.items()]
        firsts += [((r.topic, r.partition), r.offset) for r in self._carry]
        for partition, offset in firsts:
            self._rewind[partition] = min(self._rewind.get(partition, offset), offset)
        self._carry = []
        self._batch = self._new_batch()
        self._flushing = self._writing = None
        self._retry_at = self._delay = self._began = None
        self._kafka_failing = False
        self._resume()
        records = sum(b.records for b in dropped)
        log.info("batches dropped by a rebalance", records=records, revoked=len(partitions))

    def _forget_lag(self, partitions: list[Partition]) -> None:
        if self._progress is not None:
            self._progress.forget(f"{topic}:{partition}" for topic, partition in partitions)
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):  # never measured here
                metrics.CONSUMER_LAG.remove(topic, str(partition))

    # -- flushing ---------------------------------------------------------------------------

    def flush(self) -> bool:
        """Before leaving: one more attempt at each batch still open; True when all committed.

        Waits for an insert in progress. What is not committed now is read again later.
        """
        if self._flushing is not None:
            self._advance_flush(block=True)
            if self._flushing is not None:
                return False
        if self._batch.records == 0:
            return True
        self._start_flush(block=True)
        return self._flushing is None

    def _start_flush(self, *, block: bool = False) -> None:
        """Hand the batch to the writer (only its live records, when only they are due); the
        loop reads into a fresh one (or on into the rest) meanwhile."""
        if not block and self._batch.only_live_due(self._clock(), self._limits):
            self._flushing = self._batch.take_live()
        else:
            self._flushing, self._batch = self._batch, self._new_batch()
        self._began = self._clock()
        self._writing = self._writer.submit(partial(self._write, self._flushing))
        self._advance_flush(block=block)

    def _advance_flush(self, *, block: bool = False) -> None:
        """Take the flushing batch as far as it goes now: inserted, dead letters, committed.

        A failed stage backs off; the retry skips the stages already done (tables written,
        letters sent). ``block`` waits for the insert and retries at once.
        """
        batch = self._flushing
        assert batch is not None
        if self._retry_at is not None:
            if not block and self._clock() < self._retry_at:
                return
            self._retry_at = None
            self._writing = self._writer.submit(partial(self._write, batch))
        if self._writing is not None:
            if block:
                wait([self._writing])
            if not self._writing.done():
                return
            error, self._writing = self._writing.exception(), None
            if isinstance(error, WarehouseUnavailableError):
                self._back_off("warehouse", error)
                return
            if error is not None:
                raise error
        for stage, action in (("dead_letters", self._send_letters), ("commit", self._commit)):
            try:
                action(batch)
            except KafkaError as error:
                self._back_off(stage, error)
                return
            if self._flushing is not batch:
                return  # a rebalance heard inside the call dropped it (see :meth:`revoked`)
        self._committed(batch)

    def _committed(self, batch: Batch) -> None:
        assert self._began is not None
        metrics.BATCH_SECONDS.observe(self._clock() - self._began)
        metrics.BATCH_RECORDS.observe(batch.records)
        self.health.batches_committed += 1
        self.health.records_committed += batch.records
        self._flushing = None
        self._began = self._delay = None
        self._kafka_failing = False
        self._resume()

    def _back_off(self, stage: str, error: Exception) -> None:
        self._failed(stage, error)
        if self._flushing is None:
            return  # a rebalance heard inside the failed call dropped the batch: nothing to retry
        self._delay = self._backoff.next(self._delay)
        self._retry_at = self._clock() + self._delay
        self._paused = True
        self._source.pause_all()
        if self._flushing is None:  # dropped by a rebalance heard inside the pause
            self._resume()

    def _resume(self) -> None:
        if self._paused:
            self._source.resume_all()
            self._paused = False

    def _failed(self, stage: str, error: Exception) -> None:
        metrics.FAILURES.labels(stage).inc()
        if isinstance(error, WarehouseUnavailableError):
            self.health.warehouse_ok = False
            metrics.WAREHOUSE_UP.set(0)
        else:
            self.health.kafka_ok = False
            self._kafka_failing = stage != "lag"
        self.health.last_error = f"{stage}: {error}"[:1_000]
        log.warning("sink stage failed, will retry", stage=stage, error=str(error)[:300])

    def _write(self, batch: Batch) -> None:
        """Insert every table of ``batch`` not inserted yet, the live ones (what dashboards
        and alert views read) first: they are visible without waiting for the events' insert.
        Runs on the writer."""
        ordered = sorted(self._specs.items(), key=lambda item: not item[1].live)
        for topic, spec in ordered:
            rows = batch.tables.get(spec.table)
            if rows is None or spec.table in batch.written:
                continue
            began = self._clock()
            result = write_rows(self._store, spec.table, spec.columns, rows, batch.token(topic))
            metrics.INSERT_SECONDS.labels(spec.table).observe(self._clock() - began)
            metrics.ROWS_INSERTED.labels(spec.table).inc(result.rows)
            metrics.BYTES_INSERTED.labels(spec.table).inc(result.bytes)
            metrics.DUPLICATES_DROPPED.labels(spec.table).inc(rows.duplicates)
            batch.dead_letters.extend(dead_letter(rec, why) for rec, why in result.refused)
            batch.written.add(spec.table)
        self._last_write = self._clock()
        self.health.warehouse_ok = True
        metrics.WAREHOUSE_UP.set(1)

    def _send_letters(self, batch: Batch) -> None:
        if batch.dead_letters and not batch.letters_sent:
            self._dead_letters.send(batch.dead_letters)
            for letter in batch.dead_letters:
                metrics.DEAD_LETTERS.labels(letter.source_topic).inc()
                log.warning(
                    "record sent to the dead-letter topic",
                    topic=letter.source_topic,
                    partition=letter.partition,
                    offset=letter.offset,
                    reason=letter.reason[:300],
                )
        batch.letters_sent = True

    def _commit(self, batch: Batch) -> None:
        # Records fetched while a rebalance was under way may be of partitions that went to
        # another member: their rows are durable, and the new owner reads them again.
        owned = self._source.assignment()
        committed = {p: offset for p, offset in batch.next_offsets().items() if p in owned}
        self._source.commit(committed)
        self.health.kafka_ok = True
        self.health.last_error = None
        if self._progress is not None:
            for (topic, partition), offset in committed.items():
                self._progress.moved(f"{topic}:{partition}", offset)

    # -- health -----------------------------------------------------------------------------

    def _raise_if_stalled(self, now: float, lags: Mapping[Partition, int]) -> None:
        """Raise when records wait beyond the committed offsets, nothing is held here, nothing
        is paused, and the consumer has returned nothing for ``STALL_SECONDS``.

        Seen with kafka-python after a rebalance: every partition stayed assigned but was never
        fetched again. The service closes the consumer and joins with a new one.
        """
        behind = {p: lag for p, lag in lags.items() if lag}
        holding = self._batch.records or self._flushing is not None or self._carry
        if not behind or holding or self._paused or now - self._last_records < STALL_SECONDS:
            return
        metrics.FAILURES.labels("stalled").inc()
        raise ConsumerStalledError(
            f"no records for {now - self._last_records:.0f}s with {sum(behind.values())} "
            f"waiting in {len(behind)} partitions"
        )

    def _check_health(self) -> None:
        """Every ``health_interval``: measure the lag; ping a warehouse nothing was written to.

        Neither clears a failure a pending flush still has: the table may be gone while the
        server answers, or the dead-letter topic refuse while offsets can be read.
        """
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._health_interval
        try:
            lags = self._source.lag()
        except KafkaError as error:
            self._failed("lag", error)
        else:
            self.health.kafka_ok = not self._kafka_failing
            self.health.partitions = len(lags)
            for (topic, partition), lag in lags.items():
                metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
                if self._progress is not None:
                    self._progress.waiting(f"{topic}:{partition}", lag)
            self._raise_if_stalled(now, lags)
        idle = self._flushing is None and now - self._last_write >= self._health_interval
        if self._ping is not None and idle:
            up = self._ping()
            self.health.warehouse_ok = up
            metrics.WAREHOUSE_UP.set(1 if up else 0)
