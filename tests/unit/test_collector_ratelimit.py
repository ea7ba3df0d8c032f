"""The per-key token bucket, on an injected clock."""

from __future__ import annotations

from sextant.collector.ratelimit import RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_takes_one_second_of_events_then_refuses() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("k", 60, per_second=100) == 0
    assert limiter.acquire("k", 40, per_second=100) == 0
    wait = limiter.acquire("k", 10, per_second=100)
    assert wait == 0.1


def test_tokens_refill_with_time() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.acquire("k", 100, per_second=100)
    clock.now += 0.5
    assert limiter.acquire("k", 50, per_second=100) == 0
    assert limiter.acquire("k", 1, per_second=100) > 0


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(Clock())
    limiter.acquire("a", 100, per_second=100)
    assert limiter.acquire("b", 100, per_second=100) == 0


def test_a_batch_larger_than_a_second_passes_a_full_bucket_then_owes() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("k", 500, per_second=100) == 0
    clock.now += 2
    assert limiter.acquire("k", 1, per_second=100) > 0  # still paying off the debt
    clock.now += 3
    assert limiter.acquire("k", 1, per_second=100) == 0


def test_workers_share_a_keys_rate() -> None:
    limiter = RateLimiter(Clock(), share=4)
    assert limiter.acquire("k", 25, per_second=100) == 0
    assert limiter.acquire("k", 1, per_second=100) > 0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"
