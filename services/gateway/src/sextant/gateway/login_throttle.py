"""Failed sign-ins counted per account and address: too many lock that pair out for a while.

Counting per pair (not per account alone) keeps one attacker from locking a person out
everywhere by guessing at their email; counting per account (not per address alone) keeps
many addresses from sharing one allowance. Counts live in each gateway's memory: behind
several replicas an address gets the allowance on each replica it reaches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

_MAX_PAIRS = 100_000
"""Pairs counted before the stale ones are dropped (bounds memory under a spray of emails)."""


class LoginThrottle:
    """``max_failures`` failures of one pair within ``period_s`` lock it out for ``period_s``."""

    def __init__(
        self,
        max_failures: int,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.period_s = period_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def locked_for(self, email: str, address: str) -> float:
        """Seconds until ``email`` may try again from ``address``; 0 when it may now."""
        pair = (email, address)
        with self._lock:
            remaining = self._locked_until.get(pair, 0.0) - self._clock()
            if remaining <= 0:
                self._locked_until.pop(pair, None)
            return max(0.0, remaining)

    def failed(self, email: str, address: str) -> bool:
        """Count a failure; True when it is the one that locks the pair out."""
        pair = (email, address)
        now = self._clock()
        with self._lock:
            if len(self._failures) >= _MAX_PAIRS:
                self._drop_stale(now)
            window = self._failures.setdefault(pair, deque())
            while window and now - window[0] > self.period_s:
                window.popleft()
            window.append(now)
            if len(window) < self.max_failures:
                return False
            del self._failures[pair]
            self._locked_until[pair] = now + self.period_s
            return True

    def _drop_stale(self, now: float) -> None:
        stale = [p for p, w in self._failures.items() if not w or now - w[-1] > self.period_s]
        for pair in stale:
            del self._failures[pair]

    def succeeded(self, email: str, address: str) -> None:
        with self._lock:
            self._failures.pop((email, address), None)
