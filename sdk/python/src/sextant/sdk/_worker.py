"""The background thread: takes serialised events off a bounded buffer in batches and sends them.

Callers append to a ``deque`` (atomic, no lock) and wake the thread only when a full batch
is waiting; otherwise the thread looks every ``flush_interval`` seconds. A thread woken for
every event, as with ``queue.Queue.get``, costs the application more than the event itself.

A batch holds at most ``flush_at`` events and ``max_batch_bytes`` of body. Full batches go
at once; a partial batch goes when the thread's wait times out (so no event waits much longer
than ``flush_interval``), or when :meth:`Worker.flush` asks for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from sextant.sdk._errors import DeliveryError
from sextant.sdk._sender import BATCH_OVERHEAD, Outcome, Sender, decode_events

log = logging.getLogger("sextant.sdk")

_ROOM_POLL_S = 0.1


class Worker:
    """The buffer and the one sending thread of one client (per process)."""

    def __init__(
        self,
        sender: Sender,
        report: Callable[[Outcome], None],
        *,
        flush_at: int,
        flush_interval: float,
        max_batch_bytes: int,
        max_queue_size: int,
        block_when_full: bool,
    ) -> None:
        self._sender = sender
        self._report = report
        self._flush_at = flush_at
        self._flush_interval = flush_interval
        self._max_batch_bytes = max_batch_bytes
        self._max_queue_size = max_queue_size
        self._block = block_when_full
        self._items: deque[bytes] = deque()
        # Guards the counters below; also signals progress (room freed, batches resolved).
        self._progress = threading.Condition()
        self._taken = 0
        self._resolved = 0
        self._flush_target = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sextant-sdk-sender", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> bool:
        """Buffer one event; False (and not buffered) when the buffer is full.

        With several threads calling at once the bound may be passed by a few events: checking
        and appending under a lock would cost every call more than the bound is worth.
        """
        items = self._items
        if len(items) >= self._max_queue_size and not (self._block and self._wait_for_room()):
            return False
        items.append(data)
        if len(items) >= self._flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    def accepted(self) -> int:
        """Events buffered since the start (sent, being sent or waiting)."""
        with self._progress:
            return self._taken + len(self._items)

    def flush(self, timeout: float | None) -> bool:
        """Wait until every event buffered so far is resolved; False if ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            target = self._taken + len(self._items)
            self._flush_target = max(self._flush_target, target)
        self._wake.set()
        with self._progress:
            while self._resolved < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def stop(self, join_timeout: float) -> bool:
        """Stop after the batch in hand (a wait between retries is cut short); True if ended."""
        self._stop.set()
        self._wake.set()
        with self._progress:
            self._progress.notify_all()
        if self._thread is threading.current_thread():
            return False  # shut down from on_error: the thread ends when the callback returns
        self._thread.join(join_timeout)
        return not self._thread.is_alive()

    def abandon(self) -> list[bytes]:
        """After :meth:`stop`: take the events never sent, so that no one waits for them."""
        left: list[bytes] = []
        with self._progress:
            while self._items:
                left.append(self._items.popleft())
            self._taken += len(left)
            self._resolved += len(left)
            self._progress.notify_all()
        return left

    def _wait_for_room(self) -> bool:
        with self._progress:
            while len(self._items) >= self._max_queue_size:
                if self._stop.is_set():
                    return False
                self._progress.wait(_ROOM_POLL_S)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self._flush_interval)
            self._wake.clear()
            while self._items and not self._stop.is_set():
                if woken and len(self._items) < self._flush_at and not self._flush_wanted():
                    break  # a partial batch waits for the interval, unless someone flushes
                batch = self._take()
                self._report(self._send(batch))
                with self._progress:
                    self._resolved += len(batch)
                    self._progress.notify_all()

    def _flush_wanted(self) -> bool:
        return self._flush_target > self._taken

    def _take(self) -> list[bytes]:
        """The next batch off the buffer: up to ``flush_at`` events within the byte limit."""
        batch: list[bytes] = []
        size = BATCH_OVERHEAD
        items = self._items
        with self._progress:
            while items and len(batch) < self._flush_at:
                if batch and size + len(items[0]) + 1 > self._max_batch_bytes:
                    break
                event = items.popleft()
                batch.append(event)
                size += len(event) + 1
            self._taken += len(batch)
            self._progress.notify_all()  # room for callers waiting in "block" mode
        return batch

    def _send(self, batch: list[bytes]) -> Outcome:
        try:
            return self._sender.send(batch, self._stop)
        except Exception as exc:
            # The thread outlives any surprise: the batch is reported, the next one is sent.
            log.exception("unexpected error while sending a batch")
            error = DeliveryError("gave_up", f"unexpected error: {exc!r}", decode_events(batch))
            return Outcome(0, 1, error)
