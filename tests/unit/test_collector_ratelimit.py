"""The per-key token bucket, on an injected clock; shared by processes through a file."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from sextant.collector.ratelimit import RateLimiter, SharedBuckets, retry_after_header
from tests.manual_clock import ManualClock


def test_a_full_bucket_takes_one_second_of_events_then_refuses() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(clock)
    assert limiter.acquire("k", 60, per_second=100) == 0
    assert limiter.acquire("k", 40, per_second=100) == 0
    wait = limiter.acquire("k", 10, per_second=100)
    assert wait == 0.1


def test_tokens_refill_with_time() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(clock)
    limiter.acquire("k", 100, per_second=100)
    clock.now += 0.5
    assert limiter.acquire("k", 50, per_second=100) == 0
    assert limiter.acquire("k", 1, per_second=100) > 0


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(ManualClock(1000.0))
    limiter.acquire("a", 100, per_second=100)
    assert limiter.acquire("b", 100, per_second=100) == 0


def test_a_batch_larger_than_a_second_passes_a_full_bucket_then_owes() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(clock)
    assert limiter.acquire("k", 500, per_second=100) == 0
    clock.now += 2
    assert limiter.acquire("k", 1, per_second=100) > 0  # still paying off the debt
    clock.now += 3
    assert limiter.acquire("k", 1, per_second=100) == 0


def test_limiters_on_one_file_share_each_keys_bucket(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    first = RateLimiter(clock, SharedBuckets(tmp_path / "buckets"))
    second = RateLimiter(clock, SharedBuckets(tmp_path / "buckets"))
    assert first.acquire("k", 60, per_second=100) == 0
    assert second.acquire("k", 40, per_second=100) == 0
    assert first.acquire("k", 10, per_second=100) == 0.1
    assert second.acquire("other", 100, per_second=100) == 0
    clock.now += 0.5
    assert second.acquire("k", 50, per_second=100) == 0
    assert first.acquire("k", 1, per_second=100) > 0


def test_keys_beyond_the_shared_slots_get_buckets_of_their_own(tmp_path: Path) -> None:
    limiter = RateLimiter(ManualClock(1000.0), SharedBuckets(tmp_path / "buckets", slots=2))
    for key in ("a", "b", "c", "d"):
        assert limiter.acquire(key, 100, per_second=100) == 0
        assert limiter.acquire(key, 1, per_second=100) > 0


def _take_one_at_a_time(path: Path, attempts: int, start: float) -> int:
    limiter = RateLimiter(store=SharedBuckets(path))
    while time.monotonic() < start:
        pass
    return sum(limiter.acquire("k", 1, per_second=1_000) == 0 for _ in range(attempts))


def test_concurrent_processes_never_grant_more_than_the_rate(tmp_path: Path) -> None:
    path = tmp_path / "buckets"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        started = time.monotonic()
        start = started + 1.0  # both processes begin together, after spawning
        granted = pool.starmap(_take_one_at_a_time, [(path, 20_000, start)] * 2)
        elapsed = time.monotonic() - start
    # One second's worth in the full bucket, plus what refilled meanwhile; an update lost
    # between the two processes would grant more than this.
    assert sum(granted) <= 1_000 + 1_000 * elapsed + 1
    assert sum(granted) >= 1_000  # and the bucket's second is all granted


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"
