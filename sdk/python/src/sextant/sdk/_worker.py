"""The background thread: takes serialised events off the queue in batches and sends them.

A batch closes when it holds ``flush_at`` events, when the next event would take it past
``max_batch_bytes``, ``flush_interval`` seconds after its first event, or when a flush is
requested (a ``None`` marker on the queue). Every item taken off the queue is marked done only
once its batch is resolved (delivered, refused or given up), so waiting for the queue's
unfinished count to reach zero is waiting for delivery.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sextant.sdk._errors import DeliveryError
from sextant.sdk._sender import BATCH_OVERHEAD, Outcome, Sender, decode_events

log = logging.getLogger("sextant.sdk")

EventQueue = queue.Queue[bytes | None]
"""Serialised events, and ``None`` markers that close the batch being built (flush, stop)."""

_IDLE_POLL_S = 1.0


class Worker:
    """One sending thread for one client (per process: a forked child builds its own)."""

    def __init__(
        self,
        events: EventQueue,
        sender: Sender,
        report: Callable[[Outcome], None],
        *,
        flush_at: int,
        flush_interval: float,
        max_batch_bytes: int,
    ) -> None:
        self._queue = events
        self._sender = sender
        self._report = report
        self._flush_at = flush_at
        self._flush_interval = flush_interval
        self._max_batch_bytes = max_batch_bytes
        self._carry: bytes | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sextant-sdk-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, join_timeout: float) -> bool:
        """Stop after the batch in hand (waits between retries are cut short); True if it ended."""
        self._stop.set()
        wake(self._queue)
        self._thread.join(join_timeout)
        return not self._thread.is_alive()

    def abandon(self) -> list[bytes]:
        """After :meth:`stop`: the events never sent, marked done so no one waits for them."""
        left: list[bytes] = []
        if self._carry is not None:
            left.append(self._carry)
            self._carry = None
            self._queue.task_done()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return left
            self._queue.task_done()
            if item is not None:
                left.append(item)

    def _run(self) -> None:
        while not self._stop.is_set():
            items, markers = self._collect()
            if items:
                self._report(self._send(items))
            for _ in range(len(items) + markers):
                self._queue.task_done()

    def _send(self, items: list[bytes]) -> Outcome:
        try:
            return self._sender.send(items, self._stop)
        except Exception as exc:
            # The thread outlives any surprise: the batch is reported, the next one is sent.
            log.exception("unexpected error while sending a batch")
            error = DeliveryError("gave_up", f"unexpected error: {exc!r}", decode_events(items))
            return Outcome(0, 1, error)

    def _collect(self) -> tuple[list[bytes], int]:
        """The next batch, and the number of ``None`` markers taken with it."""
        items: list[bytes] = []
        size = BATCH_OVERHEAD
        deadline = 0.0
        if self._carry is not None:
            items.append(self._carry)
            size += len(self._carry) + 1
            self._carry = None
            deadline = time.monotonic() + self._flush_interval
        while len(items) < self._flush_at:
            timeout = deadline - time.monotonic() if items else _IDLE_POLL_S
            if timeout <= 0:
                break
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if items or self._stop.is_set():
                    break
                continue
            if item is None:
                return items, 1
            if size + len(item) + 1 > self._max_batch_bytes:
                self._carry = item  # marked done with the batch that finally carries it
                break
            if not items:
                deadline = time.monotonic() + self._flush_interval
            items.append(item)
            size += len(item) + 1
        return items, 0


def wake(events: EventQueue) -> bool:
    """Ask the worker to close its current batch now; False when the queue had no room."""
    try:
        events.put_nowait(None)
    except queue.Full:
        return False
    return True


def join(events: EventQueue, timeout: float | None, poll: float = 0.05) -> bool:
    """Wait until every item put on ``events`` is done; False if ``timeout`` passed first.

    Asks the worker to close its batch at once, and keeps asking while a full queue refuses
    the request, so a partial batch never waits out ``flush_interval``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    woken = False
    while True:
        with events.all_tasks_done:
            if not events.unfinished_tasks:
                return True
        woken = woken or wake(events)
        with events.all_tasks_done:
            if not events.unfinished_tasks:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if not woken:
                remaining = poll if remaining is None else min(poll, remaining)
            events.all_tasks_done.wait(remaining)
