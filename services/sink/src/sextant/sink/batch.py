"""A batch: the records read since the last commit, as rows per table, plus what to commit.

A batch is bounded by records, bytes and age (:class:`BatchLimits`). Each table's insert
carries a deduplication token naming the topic, the offset range of every partition and a
checksum of the values, so the same batch inserted again (after a crash between the insert
and the commit, cut the same way) is dropped by the engine; a batch cut differently is made
harmless by the tables' keys.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sextant.core.batch_consumer import ConsumedRecord, Partition
from sextant.schemas.records import SinkDeadLetter
from sextant.sink.tables import PoisonRecordError, Row, TableSpec

MAX_REASON = 2_000


@dataclass(frozen=True)
class BatchLimits:
    rows: int
    bytes: int
    seconds: float
    live_seconds: float | None = None
    """The age limit of a live table's records (metric points, alerts: what dashboards and
    alert views read); ``seconds`` when None. When only they are due, they are written on
    their own (:meth:`Batch.take_live`) and the other tables' records keep waiting, so a
    trickle of events is inserted a few times a second, not at every live flush."""


class TableRows:
    """One table's rows in a batch, one per duplicate key, with the records they came from."""

    __slots__ = ("_index", "duplicates", "lines", "sources", "versions")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.sources: list[ConsumedRecord] = []
        self.versions: list[int] = []
        self.duplicates = 0
        self._index: dict[Hashable, int] = {}

    def add(self, row: Row, source: ConsumedRecord) -> None:
        if row.key is not None:
            at = self._index.get(row.key)
            if at is not None:
                self.duplicates += 1
                if row.version > self.versions[at]:
                    self.lines[at], self.sources[at], self.versions[at] = (
                        row.line,
                        source,
                        row.version,
                    )
                return
            self._index[row.key] = len(self.lines)
        self.lines.append(row.line)
        self.sources.append(source)
        self.versions.append(row.version)

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class _Span:
    """The offsets of one partition's records in the batch, and a checksum of their values."""

    first: int
    last: int
    checksum: int = 0


def dead_letter(record: ConsumedRecord, reason: str) -> SinkDeadLetter:
    value = record.value or b""
    return SinkDeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason[:MAX_REASON],
        value=value.decode("utf-8", "backslashreplace"),
        failed_at=datetime.now(UTC),
    )


@dataclass
class Batch:
    """Records added in offset order per partition; nothing here talks to Kafka or ClickHouse."""

    specs: dict[str, TableSpec]
    """The table spec of each full topic name."""
    started_at: float | None = None
    live_since: float | None = None
    """When the first record of a live table came (see :attr:`BatchLimits.live_seconds`)."""
    bulk_since: float | None = None
    """When the first record of any other table came."""
    records: int = 0
    value_bytes: int = 0
    live_records: int = 0
    live_bytes: int = 0
    tables: dict[str, TableRows] = field(default_factory=dict)
    dead_letters: list[SinkDeadLetter] = field(default_factory=list)
    spans: dict[Partition, _Span] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)
    """Tables whose rows are in the warehouse already (a retried flush skips them)."""
    letters_sent: bool = False

    def add(self, record: ConsumedRecord, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.records += 1
        value = record.value or b""
        self.value_bytes += len(value)
        self._track(record, value)
        spec = self.specs[record.topic]
        if spec.live:
            self.live_records += 1
            self.live_bytes += len(value)
            if self.live_since is None:
                self.live_since = now
        elif self.bulk_since is None:
            self.bulk_since = now
        try:
            row = spec.encode(record)
        except PoisonRecordError as error:
            self.dead_letters.append(dead_letter(record, str(error)))
            return
        rows = self.tables.get(spec.table)
        if rows is None:
            rows = self.tables[spec.table] = TableRows()
        rows.add(row, record)

    def _track(self, record: ConsumedRecord, value: bytes) -> None:
        partition = (record.topic, record.partition)
        span = self.spans.get(partition)
        if span is None:
            span = self.spans[partition] = _Span(record.offset, record.offset)
        span.last = record.offset
        span.checksum = zlib.crc32(value, span.checksum)

    def due(self, now: float, limits: BatchLimits) -> bool:
        if self.records == 0:
            return False
        return (
            self.records >= limits.rows
            or self.value_bytes >= limits.bytes
            or self.time_left(now, limits) <= 0
        )

    def only_live_due(self, now: float, limits: BatchLimits) -> bool:
        """Due because its live records waited their limit, while the others may wait on."""
        if self.live_records == 0 or self.live_records == self.records:
            return False
        bulk_left = self.bulk_since + limits.seconds - now if self.bulk_since is not None else 0
        return self.records < limits.rows and self.value_bytes < limits.bytes and bulk_left > 0

    def take_live(self) -> Batch:
        """Move the live tables' rows, offsets and dead letters into a batch of their own.

        Live and other tables come from different topics, so each partition's records stay
        in one batch and both batches commit in offset order.
        """
        live_topics = {topic for topic, spec in self.specs.items() if spec.live}
        live_tables = {spec.table for spec in self.specs.values() if spec.live}
        live = Batch(
            self.specs,
            started_at=self.live_since,
            live_since=self.live_since,
            records=self.live_records,
            value_bytes=self.live_bytes,
            live_records=self.live_records,
            live_bytes=self.live_bytes,
            tables={t: rows for t, rows in self.tables.items() if t in live_tables},
            dead_letters=[d for d in self.dead_letters if d.source_topic in live_topics],
            spans={p: s for p, s in self.spans.items() if p[0] in live_topics},
        )
        self.tables = {t: rows for t, rows in self.tables.items() if t not in live_tables}
        self.dead_letters = [d for d in self.dead_letters if d.source_topic not in live_topics]
        self.spans = {p: s for p, s in self.spans.items() if p[0] not in live_topics}
        self.records -= self.live_records
        self.value_bytes -= self.live_bytes
        self.live_records = self.live_bytes = 0
        self.started_at, self.live_since = self.bulk_since, None
        return live

    def time_left(self, now: float, limits: BatchLimits) -> float:
        """Seconds until the batch is due by age (``limits.seconds`` while it is empty)."""
        if self.started_at is None:
            return limits.seconds
        left = self.started_at + limits.seconds - now
        if self.live_since is not None and limits.live_seconds is not None:
            left = min(left, self.live_since + limits.live_seconds - now)
        return max(left, 0.0)

    def token(self, topic: str) -> str:
        """The deduplication token of ``topic``'s rows: same records, same token."""
        spans = sorted((p, s) for (t, p), s in self.spans.items() if t == topic)
        ranges = ",".join(f"{p}:{s.first}-{s.last}:{s.checksum:08x}" for p, s in spans)
        return f"{topic}|{ranges}"

    def next_offsets(self) -> dict[Partition, int]:
        """What to commit once the batch is durable: each partition's last offset + 1."""
        return {partition: span.last + 1 for partition, span in self.spans.items()}
