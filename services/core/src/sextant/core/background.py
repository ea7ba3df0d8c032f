"""One base for every background consumer loop of a part.

A :class:`BackgroundLoop` is a :class:`~sextant.core.service.BackgroundService`: a daemon
thread that runs *sessions* (connect, work until asked to stop, close) until it is stopped.
A session that fails (the broker went away, the warehouse refused) is logged and started again
after a backoff; the loop is ready only while a session is connected. Subclasses write
:meth:`BackgroundLoop.session` and nothing else of the thread's life: the config follower, the
live stream's feed, the processor's alert evaluator, the gateway's experiment alerts, the sink
and the notifier.

Each loop has a :class:`~sextant.core.progress.ConsumerProgress` for the partitions it reads,
so a stall shows in ``/metrics`` and ``/readyz`` (:mod:`sextant.core.progress`).
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod

from sextant.core.logging import get_logger
from sextant.core.progress import ConsumerProgress, ProgressBoard

__all__ = ["BackgroundLoop"]

log = get_logger(__name__)


def _unreported(name: str) -> ConsumerProgress:
    """Progress nobody publishes (a loop built without a board, as in unit tests)."""
    return ConsumerProgress(name, time.monotonic, time.time)


class BackgroundLoop(ABC):
    """A thread running :meth:`session` again and again until :meth:`stop`."""

    name = "background"

    def __init__(
        self,
        *,
        progress: ConsumerProgress | None = None,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self.progress = progress or _unreported(self.name)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.stopping = threading.Event()
        """Set by :meth:`stop`: a session returns soon after it is set."""
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None

    # --- BackgroundService ---

    def start(self) -> None:
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def ready(self) -> bool:
        return self.alive and self._connected.is_set()

    def attach(self, board: ProgressBoard) -> None:
        """Report progress on ``board`` (before :meth:`start`), under the loop's name."""
        self.progress = board.consumer(self.name)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- for sessions ---

    def connected(self) -> None:
        """The session is up (readiness)."""
        self._connected.set()

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopped first; True if stopped."""
        return self.stopping.wait(seconds)

    @abstractmethod
    def session(self) -> None:
        """Connect, work until :attr:`stopping` is set, close. Raise to be started again."""

    def on_session_failed(self, error: Exception) -> None:  # noqa: B027 - optional hook
        """Called after a session raised (before the backoff)."""

    # --- the thread ---

    def _run(self) -> None:
        delay: float | None = None
        while not self.stopping.is_set():
            try:
                self.session()
                delay = None
            except Exception as error:
                self._connected.clear()
                log.warning(
                    "a background loop failed; starting it again", loop=self.name, exc_info=True
                )
                self.on_session_failed(error)
                delay = self._next_delay(delay)
                self.stopping.wait(delay)
            else:
                self._connected.clear()

    def _next_delay(self, previous: float | None) -> float:
        """Double the previous delay up to the maximum, with ±20 % jitter."""
        base = self.retry_initial_s if previous is None else min(previous * 2, self.retry_max_s)
        return base * random.uniform(0.8, 1.2)
