"""Live metric windows as Server-Sent Events, fed from the ``metric_points`` topic.

One :class:`MetricPointFeed` thread per gateway follows every partition of the topic the
processor writes, keeps the most recent records in memory and hands each new one to the
streams open on its ``project:metric`` key. Reading the topic, not the warehouse, is what
keeps a window on screen within a second of its emission whatever the sink's batching, and
gives every record an exact position (partition, offset) to resume from.

Reconnection misses nothing: each event's ``id`` is the stream's position in the topic
(``partition:next_offset`` for every partition). A client that reconnects with
``Last-Event-ID`` first gets, in order, what it missed: records older than the memory buffer
read back from Kafka, then the buffered ones, then the live ones. A client more than
:data:`REPLAY_LIMIT` records behind gets ``event: reset`` instead (reload the series).
Heartbeats carry the position too, so a quiet stream's id keeps moving and a reconnect never
rereads much.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field, ValidationError

from sextant.core.background import BackgroundLoop
from sextant.core.kafka import KafkaError, TopicReader
from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress
from sextant.core.settings import KafkaSection
from sextant.gateway.problems import invalid
from sextant.gateway.series import point_value, quantiles_of
from sextant.schemas.config import MetricDefinition, MetricKind
from sextant.schemas.metric_values import unique_users_of
from sextant.schemas.records import MetricPoint
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)

LIVE_STREAMS = Gauge("sextant_gateway_live_streams", "Open live metric streams")
LIVE_EVENTS = Counter("sextant_gateway_live_events_total", "Metric windows pushed to streams")
LIVE_REPLAYED = Counter(
    "sextant_gateway_live_replayed_total", "Records replayed to reconnecting streams", ["source"]
)
Position = dict[int, int]
_QUEUE_LIMIT = 1_000
REPLAY_LIMIT = 200_000
"""Most records a reconnecting stream reads back from Kafka; beyond, it is told to reset."""


@dataclass(frozen=True)
class FeedRecord:
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Mark:
    """Every record before ``position`` has been handed out (a safe place to resume)."""

    position: Position


class Overflow:
    """The stream fell too far behind; it ends and the client resumes from its last id."""


@dataclass
class Subscription:
    key: bytes
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[FeedRecord | Mark | Overflow] = field(
        default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT + 1)
    )
    overflowed: bool = False

    def push(self, item: FeedRecord | Mark) -> None:
        """Called from the feed thread."""
        self.loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: FeedRecord | Mark) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= _QUEUE_LIMIT:
            self.overflowed = True
            self.queue.put_nowait(Overflow())
            return
        self.queue.put_nowait(item)


def format_position(position: Position) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(position.items()))


def parse_position(text: str) -> Position:
    """``"0:12,1:40"`` → ``{0: 12, 1: 40}``; a 422 problem for anything else."""
    position: Position = {}
    try:
        for part in text.split(","):
            partition, offset = part.split(":")
            if not (partition.isdigit() and offset.isdigit()) or len(partition) > 6:
                raise ValueError(part)
            position[int(partition)] = int(offset)
    except ValueError as error:
        raise invalid("not an event id this stream sent", "Last-Event-ID") from error
    return position


class MetricPointFeed(BackgroundLoop):
    """Follows ``metric_points`` from its end and fans records out to subscriptions.

    A background loop (``start``/``stop``/``ready``); its progress is reported under
    ``live-feed``. Thread-safe.
    """

    name = "live-feed"

    def __init__(
        self,
        settings: KafkaSection,
        buffer_records: int = 20_000,
        buffer_bytes: int = 64 * 1024 * 1024,
        *,
        progress: ConsumerProgress | None = None,
    ) -> None:
        super().__init__(progress=progress, retry_initial_s=1.0, retry_max_s=5.0)
        self.settings = settings
        self.topic = topic_name(Topic.METRIC_POINTS, settings.topic_prefix)
        self._buffer: deque[FeedRecord] = deque()
        self._buffer_limit = buffer_records
        # Unique-user windows carry a packed int per non-zero register (up to 65,536, several
        # hundred kilobytes of JSON for a window of a hundred thousand users): bound bytes too.
        self._buffer_bytes_limit = buffer_bytes
        self._buffer_bytes = 0
        self._buffer_start: Position = {}
        self._position: Position = {}
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # --- the feed thread ------------------------------------------------------------------

    def session(self) -> None:
        reader = TopicReader(self.settings, self.topic, fetch_max_wait_ms=100)
        try:
            partitions = reader.assign(30.0, self.stopping)
            if not partitions:
                return
            self._start_at(reader, partitions)
            self.connected()
            while not self.stopping.is_set():
                records = [
                    FeedRecord(r.partition, r.offset, r.key or b"", r.value or b"")
                    for r in reader.poll(0.2)
                ]
                position = {p: reader.position(p) for p in partitions}
                self._take(records, position)
                for partition in partitions:
                    if records:
                        self.progress.moved(partition, position[partition])
                    highwater = reader.highwater(partition)
                    waiting = (highwater - position[partition]) if highwater is not None else 0
                    self.progress.waiting(partition, waiting)
        finally:
            reader.close()

    def _start_at(self, reader: TopicReader, partitions: list[int]) -> None:
        ends = reader.end_offsets()
        with self._lock:
            for partition in partitions:
                # First start: from the end. After a reconnect: exactly where we stopped.
                start = self._position.setdefault(partition, ends[partition])
                self._buffer_start.setdefault(partition, start)
                reader.seek(partition, start)

    def _take(self, records: list[FeedRecord], position: Position) -> None:
        with self._lock:
            for record in records:
                self._buffer.append(record)
                self._buffer_bytes += len(record.value)
                self._position[record.partition] = record.offset + 1
            while self._buffer and (
                len(self._buffer) > self._buffer_limit
                or self._buffer_bytes > self._buffer_bytes_limit
            ):
                dropped = self._buffer.popleft()
                self._buffer_bytes -= len(dropped.value)
                self._buffer_start[dropped.partition] = dropped.offset + 1
            for partition, offset in position.items():
                # Positions also move over transaction markers and compacted gaps.
                self._position[partition] = max(self._position.get(partition, 0), offset)
            subscriptions = list(self._subscriptions)
            mark = Mark(dict(self._position))
        for subscription in subscriptions:
            for record in records:
                if record.key == subscription.key:
                    subscription.push(record)
            if records:
                subscription.push(mark)

    # --- streams --------------------------------------------------------------------------

    def subscribe(
        self, key: bytes, loop: asyncio.AbstractEventLoop, since: Position | None
    ) -> tuple[Subscription, Position, list[FeedRecord], list[tuple[int, int, int]]]:
        """Register a stream for ``key``.

        Returns the subscription (live records from now on), the position the stream starts
        at, the buffered records it missed since ``since``, and the ``(partition, from, to)``
        ranges older than the buffer that must be read back from Kafka first. Without
        ``since`` the stream starts live, from the current position.
        """
        subscription = Subscription(key, loop)
        with self._lock:
            now = dict(self._position)
            start = dict(now) if since is None else {p: since.get(p, 0) for p in now}
            gaps = [
                (p, start[p], self._buffer_start.get(p, now[p]))
                for p in now
                if start[p] < self._buffer_start.get(p, now[p])
            ]
            backlog = [
                r for r in self._buffer if r.key == key and r.offset >= start.get(r.partition, 0)
            ]
            self._subscriptions.append(subscription)
        return subscription, start, backlog, gaps

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def read_back(
        self, key: bytes, gaps: Iterable[tuple[int, int, int]], timeout_s: float = 30.0
    ) -> list[FeedRecord]:
        """Records of ``key`` in the ``(partition, from, to)`` ranges, read from Kafka;
        ``TimeoutError`` if that takes longer than ``timeout_s``."""
        found: list[FeedRecord] = []
        deadline = time.monotonic() + timeout_s
        reader = TopicReader(self.settings, self.topic)
        try:
            for partition, start, end in gaps:
                reader.assign_partitions([partition])
                reader.seek(partition, start)
                while reader.position(partition) < end:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reading back {self.topic}[{partition}] took too long")
                    batch = reader.poll(1.0)
                    if not batch and reader.position(partition) < end:
                        # Nothing more comes (the range was deleted by retention): stop here.
                        if reader.beginning_offsets()[partition] >= end:
                            break
                        continue
                    found += [
                        FeedRecord(r.partition, r.offset, r.key or b"", r.value or b"")
                        for r in batch
                        if r.offset < end and r.key == key
                    ]
        finally:
            reader.close()
        return found


# --- the SSE stream -----------------------------------------------------------------------


class LivePoint(BaseModel):
    """The data of a live stream's ``event: point``: one window of the metric, as the
    processor emitted it (a higher ``version`` replaces an earlier one of the same window and
    breakdown). ``value`` and ``quantiles`` mean what they mean in a series' points."""

    metric: str
    window_start: datetime
    window_seconds: int
    breakdown: str | None = Field(description="The breakdown value; null for the total")
    version: int
    value: float | None
    count: int
    sum: float
    denominator: int
    quantiles: dict[str, float | None] | None
    emitted_at: datetime


def _live_point(point: MetricPoint, metric: MetricDefinition | None) -> LivePoint:
    kind = metric.metric_kind if metric is not None else MetricKind.COUNT
    uniques = None
    if kind is MetricKind.UNIQUE_USERS:
        uniques = unique_users_of(point.count, point.hll)
    quantiles = None
    if kind is MetricKind.PERCENTILES:
        quantiles = quantiles_of(point.digest)
    return LivePoint(
        metric=point.metric,
        window_start=point.window_start,
        window_seconds=point.window_seconds,
        breakdown=point.breakdown or None,
        version=point.version,
        value=point_value(kind, point.count, point.sum, point.denominator, uniques, point.digest),
        count=point.count,
        sum=point.sum,
        denominator=point.denominator,
        quantiles=quantiles,
        emitted_at=point.emitted_at,
    )


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One Server-Sent Event."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


@dataclass
class LiveStream:
    """One client's stream of a metric's windows."""

    feed: MetricPointFeed
    project_id: str
    metric_id: str
    metric: MetricDefinition | None
    since: Position | None
    heartbeat_s: float

    async def events(self) -> AsyncIterator[bytes]:
        key = f"{self.project_id}:{self.metric_id}".encode()
        subscription, cursor, backlog, gaps = self.feed.subscribe(
            key, asyncio.get_running_loop(), self.since
        )
        LIVE_STREAMS.inc()
        try:
            yield sse("ready", {"metric": self.metric_id}, format_position(cursor))
            if sum(end - start for _, start, end in gaps) > REPLAY_LIMIT:
                # Too far behind to replay: the client reloads the series, then goes live.
                yield sse("reset", {"reason": "too far behind to replay; reload the series"})
                for partition, _, end in gaps:
                    cursor[partition] = end
                gaps = []
            try:
                older = await asyncio.to_thread(self.feed.read_back, key, gaps) if gaps else []
            except (TimeoutError, KafkaError):
                log.warning("could not replay a stream's gap", metric=self.metric_id, exc_info=True)
                yield sse("reset", {"reason": "the gap could not be replayed; reload the series"})
                for partition, _, end in gaps:
                    cursor[partition] = end
                older = []
            LIVE_REPLAYED.labels("kafka").inc(len(older))
            LIVE_REPLAYED.labels("buffer").inc(len(backlog))
            for record in [*older, *backlog]:
                if (chunk := self._event(record, cursor)) is not None:
                    yield chunk
            async for chunk in self._live(subscription, cursor):
                yield chunk
        finally:
            self.feed.unsubscribe(subscription)
            LIVE_STREAMS.dec()

    async def _live(self, subscription: Subscription, cursor: Position) -> AsyncIterator[bytes]:
        while True:
            try:
                item = await asyncio.wait_for(subscription.queue.get(), self.heartbeat_s)
            except TimeoutError:
                yield sse("heartbeat", {}, format_position(cursor))
                continue
            if isinstance(item, Overflow):
                return
            if isinstance(item, Mark):
                for partition, offset in item.position.items():
                    cursor[partition] = max(cursor.get(partition, 0), offset)
                continue
            if (chunk := self._event(item, cursor)) is not None:
                yield chunk

    def _event(self, record: FeedRecord, cursor: Position) -> bytes | None:
        if record.offset < cursor.get(record.partition, 0):
            return None  # already sent
        cursor[record.partition] = record.offset + 1
        try:
            point = MetricPoint.model_validate_json(record.value)
        except ValidationError:
            log.warning("skipping an unreadable metric point", offset=record.offset)
            return None
        if point.project_id != self.project_id or point.metric != self.metric_id:
            return None
        LIVE_EVENTS.inc()
        # model_dump, not mode="json": orjson writes the datetimes as isoformat() does.
        data = _live_point(point, self.metric).model_dump()
        return sse("point", data, format_position(cursor))
