"""Rate limits per key and per client address: token buckets of events per second, refilled
continuously.

One collector process keeps its buckets in memory. Worker processes on one port share theirs
through a memory-mapped file, so a key gets its project's whole rate whichever worker its
connections reach (a client with one keep-alive connection reaches only one).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import mmap
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class Bucket:
    tokens: float
    updated: float

    def __enter__(self) -> Bucket:
        return self

    def __exit__(self, *_: object) -> None:
        return None


class BucketStore(Protocol):
    def open(self, key: str, full: float, now: float) -> contextlib.AbstractContextManager[Bucket]:
        """``key``'s bucket (a new one holds ``full`` tokens), held alone until closed."""
        ...


class RateLimiter:
    """Token buckets by key; each holds up to one second of its rate.

    A request of ``n`` events passes when the bucket holds ``n`` tokens, or when it is full (so
    a batch larger than one second's allowance is not refused forever; the bucket then goes
    into debt).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, store: BucketStore | None = None
    ) -> None:
        self._clock = clock
        self._store = store or MemoryBuckets()

    def acquire(self, key: str, events: int, per_second: float) -> float:
        """Take ``events`` tokens and return 0, or return the seconds until they would pass."""
        rate, now = per_second, self._clock()
        with self._store.open(key, rate, now) as bucket:
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= events or bucket.tokens >= rate:
                bucket.tokens -= events
                return 0.0
            return (min(events, rate) - bucket.tokens) / rate


IDLE_SECONDS = 60.0
"""A bucket untouched this long is as good as new (full, its debt long paid): its place may
be reused, so buckets per client address do not pile up."""


class MemoryBuckets:
    """The buckets of one process; idle ones are forgotten once there are ``max_keys``."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._max_keys = max_keys

    def open(self, key: str, full: float, now: float) -> Bucket:
        """The bucket itself: one process needs no lock around it, and a bucket is its own
        context (a generator-based one cost twice the rest of ``acquire``)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = Bucket(tokens=full, updated=now)
        return bucket

    def _forget_idle(self, now: float) -> None:
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if now - bucket.updated < IDLE_SECONDS
        }


_SLOT = struct.Struct("16sdd")  # key digest, tokens, updated (CLOCK_MONOTONIC, machine-wide)
SHARED_SLOTS = 8192
MAX_PROBES = 64


class SharedBuckets:
    """Buckets in a file every worker maps; an exclusive ``flock`` guards each update.

    Slots are found by the key's digest with linear probing, at most ``MAX_PROBES`` of them. A
    key that finds none free (thousands of keys) falls back to a bucket of this process alone.
    """

    def __init__(self, path: Path, slots: int = SHARED_SLOTS) -> None:
        self._file = path.open("a+b")
        if self._file.seek(0, 2) < slots * _SLOT.size:
            self._file.truncate(slots * _SLOT.size)  # zero-filled: every slot free
        self._map = mmap.mmap(self._file.fileno(), slots * _SLOT.size)
        self._slots = slots
        self._overflow = MemoryBuckets()

    @contextlib.contextmanager
    def open(self, key: str, full: float, now: float) -> Iterator[Bucket]:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        fcntl.flock(self._file, fcntl.LOCK_EX)
        try:
            offset = self._slot_of(digest, now)
            if offset is None:
                with self._overflow.open(key, full, now) as bucket:
                    yield bucket
                return
            stored, tokens, updated = _SLOT.unpack_from(self._map, offset)
            bucket = Bucket(tokens, updated) if stored == digest else Bucket(full, now)
            yield bucket
            _SLOT.pack_into(self._map, offset, digest, bucket.tokens, bucket.updated)
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)

    def _slot_of(self, digest: bytes, now: float) -> int | None:
        """The key's slot; else the first free or idle one on its probe path."""
        start = int.from_bytes(digest[:8]) % self._slots
        reusable: int | None = None
        for probe in range(min(self._slots, MAX_PROBES)):
            offset = (start + probe) % self._slots * _SLOT.size
            stored, _, updated = _SLOT.unpack_from(self._map, offset)
            if stored == digest:
                return offset
            if stored == bytes(16):
                return offset if reusable is None else reusable
            if reusable is None and now - updated >= IDLE_SECONDS:
                reusable = offset
        return reusable


def retry_after_header(seconds: float) -> str:
    """Whole seconds, at least 1 (``Retry-After`` has no fractions)."""
    return str(max(1, math.ceil(seconds)))
