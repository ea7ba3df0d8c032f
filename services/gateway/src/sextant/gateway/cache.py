"""A small cache of values that are recomputed on a schedule rather than on every request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class TimedCache:
    """Values kept for ``max_age`` seconds of ``clock``, then recomputed on the next read.

    At most ``max_entries`` are kept (the oldest go first). One value is computed at a time
    per key; readers of other keys are not held up. The clock is injected so tests do not
    wait.
    """

    def __init__(
        self,
        max_age: float,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key``, computed with ``compute`` when missing or too old."""
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._entries.get(key)
            if found is not None and self._clock() - found[0] < self.max_age:
                value: T = found[1]
                return value
            value = compute()
            with self._lock:
                self._entries.pop(key, None)
                self._entries[key] = (self._clock(), value)
                while len(self._entries) > self._max_entries:
                    oldest = next(iter(self._entries))
                    del self._entries[oldest]
                    self._computing.pop(oldest, None)
            return value
