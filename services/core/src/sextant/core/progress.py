"""The progress of every consumer of a process, per partition: metrics, and stalls.

Each consumer (a processor stage, the alert evaluator, the sink, the live stream, the
notifier, each config follower) reports, per partition, when and to which offset it last
moved (:meth:`ConsumerProgress.moved`) and how many records wait for it
(:meth:`ConsumerProgress.waiting`). The :class:`ProgressBoard` of the process publishes them as
Prometheus figures and names every *stall*: records waiting, and nothing moved for longer than
its bound. ``/readyz`` turns not ready with the stalled consumers and partitions named
(:func:`sextant.core.service.add_operational_routes`), and a part that cannot clear a stall
restarts itself (:class:`StallGuard`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sextant.core.logging import get_logger

__all__ = ["ConsumerProgress", "ProgressBoard", "Stall", "StallGuard"]

log = get_logger(__name__)
Clock = Callable[[], float]


@dataclass(frozen=True)
class Stall:
    """Records wait for ``consumer`` on ``partition`` and it has not moved for ``seconds``."""

    consumer: str
    partition: str
    waiting: int
    offset: int | None
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "consumer": self.consumer,
            "partition": self.partition,
            "waiting": self.waiting,
            "offset": self.offset,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class _Partition:
    offset: int | None = None
    moved: float | None = None
    """When it last moved (monotonic); None: never since it was first seen."""
    moved_wall: float | None = None
    waiting: int = 0
    waiting_since: float | None = None
    first_seen: float = 0.0


class ConsumerProgress:
    """One consumer's progress per partition (any label: ``"3"``, ``"events.raw:3"``).

    Thread-safe, and cheap enough to call once per batch.
    """

    def __init__(self, name: str, clock: Clock, wall: Clock) -> None:
        self.name = name
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._partitions: dict[str, _Partition] = {}

    def _get(self, partition: str) -> _Partition:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = _Partition(first_seen=self._clock())
        return found

    def moved(self, partition: object, offset: int) -> None:
        """The consumer has handled ``partition`` up to ``offset`` (it moves when it grows)."""
        key = str(partition)
        with self._lock:
            state = self._get(key)
            if state.offset is None or offset > state.offset:
                state.offset = offset
                state.moved = self._clock()
                state.moved_wall = self._wall()

    def waiting(self, partition: object, records: int) -> None:
        """``records`` wait for the consumer on ``partition`` now (0: it is caught up)."""
        key = str(partition)
        with self._lock:
            state = self._get(key)
            if records > 0 and state.waiting <= 0:
                state.waiting_since = self._clock()
            elif records <= 0:
                state.waiting_since = None
            state.waiting = max(records, 0)

    def forget(self, partitions: Iterable[object] | None = None) -> None:
        """Stop reporting these partitions (all of them: none), e.g. after a rebalance."""
        with self._lock:
            if partitions is None:
                self._partitions.clear()
            else:
                for partition in partitions:
                    self._partitions.pop(str(partition), None)

    def stalls(self, bound_s: float) -> list[Stall]:
        now = self._clock()
        found = []
        with self._lock:
            for key, state in self._partitions.items():
                if state.waiting <= 0 or state.waiting_since is None:
                    continue
                still_since = max(state.waiting_since, state.moved or state.first_seen)
                if now - still_since > bound_s:
                    found.append(
                        Stall(self.name, key, state.waiting, state.offset, now - still_since)
                    )
        return found

    def rows(self) -> list[tuple[str, _Partition]]:
        with self._lock:
            return [(key, _Partition(**vars(state))) for key, state in self._partitions.items()]


class ProgressBoard(Collector):
    """Every consumer's progress in one process: Prometheus figures and stalls."""

    def __init__(
        self,
        stall_after_s: float,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._wall = wall
        self._consumers: dict[str, ConsumerProgress] = {}
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        """The board's figures, on a registry of its own (``/metrics`` serves it too)."""
        self.registry.register(self)

    def consumer(self, name: str) -> ConsumerProgress:
        """The progress of the consumer ``name`` (made on first use)."""
        with self._lock:
            found = self._consumers.get(name)
            if found is None:
                found = self._consumers[name] = ConsumerProgress(name, self._clock, self._wall)
            return found

    def stalls(self) -> list[Stall]:
        with self._lock:
            consumers = list(self._consumers.values())
        return [s for c in consumers for s in c.stalls(self.stall_after_s)]

    def collect(self) -> Iterator[Metric]:
        labels = ["consumer", "partition"]
        at = GaugeMetricFamily(
            "sextant_consumer_last_progress_timestamp_seconds",
            "When the consumer last moved on the partition (Unix time)",
            labels=labels,
        )
        offset = GaugeMetricFamily(
            "sextant_consumer_last_progress_offset",
            "The offset the consumer last moved to on the partition",
            labels=labels,
        )
        waiting = GaugeMetricFamily(
            "sextant_consumer_waiting_records",
            "Records waiting for the consumer on the partition",
            labels=labels,
        )
        stalled = GaugeMetricFamily(
            "sextant_consumer_stalled",
            "1 while records wait and the consumer has not moved for longer than its bound",
            labels=labels,
        )
        with self._lock:
            consumers = list(self._consumers.values())
        for consumer in consumers:
            stuck = {s.partition for s in consumer.stalls(self.stall_after_s)}
            for key, state in consumer.rows():
                names = [consumer.name, key]
                if state.moved_wall is not None:
                    at.add_metric(names, state.moved_wall)
                if state.offset is not None:
                    offset.add_metric(names, state.offset)
                waiting.add_metric(names, state.waiting)
                stalled.add_metric(names, 1.0 if key in stuck else 0.0)
        yield from (at, offset, waiting, stalled)


def _stop_gracefully() -> None:
    """What a supervisor does to stop a part: SIGTERM (the part's own shutdown path)."""
    os.kill(os.getpid(), signal.SIGTERM)


class StallGuard:
    """Restarts the process, through its public shutdown path, when a stall outlasts
    ``restart_after_s``: the supervisor (``make run``'s, Kubernetes) starts it again, and
    every consumer resumes from what it committed, so the restart is exact."""

    EXIT_CODE = 75
    """The exit code of a part that stopped itself for a stall (EX_TEMPFAIL)."""

    def __init__(
        self,
        board: ProgressBoard,
        restart_after_s: float,
        *,
        request_stop: Callable[[], None] = _stop_gracefully,
    ) -> None:
        self.board = board
        self.restart_after_s = restart_after_s
        self.request_stop = request_stop
        self.restart_requested = False
        self._stop = threading.Event()

    def check(self) -> list[Stall]:
        """One look; the stalls that made it ask for a restart (none: it did not)."""
        if self.restart_requested or self.restart_after_s <= 0:
            return []
        lasting = [s for s in self.board.stalls() if s.seconds > self.restart_after_s]
        if lasting:
            log.error(
                "a stall did not clear; restarting",
                stalls=[s.as_dict() for s in lasting],
                seconds=self.restart_after_s,
            )
            self.restart_requested = True
            self.request_stop()
        return lasting

    def start(self, every_s: float = 1.0) -> StallGuard:
        def loop() -> None:
            while not self._stop.wait(every_s):
                self.check()

        threading.Thread(target=loop, name="stall-guard", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
