"""Per-key rate limits: a token bucket of events per second, refilled continuously."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key; each holds up to one second of its rate.

    A request of ``n`` events passes when the bucket holds ``n`` tokens, or when it is full (so
    a batch larger than one second's allowance is not refused forever; the bucket then goes
    into debt). ``share`` divides every rate, for processes that split one key's traffic.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, share: int = 1) -> None:
        self._clock = clock
        self._share = share
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, events: int, per_second: float) -> float:
        """Take ``events`` tokens and return 0, or return the seconds until they would pass."""
        rate = per_second / self._share
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=rate, updated=now)
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= events or bucket.tokens >= rate:
            bucket.tokens -= events
            return 0.0
        return (min(events, rate) - bucket.tokens) / rate


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1 (``Retry-After`` has no fractions)."""
    return str(max(1, math.ceil(seconds)))
