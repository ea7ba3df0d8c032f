"""Retries: what is retried, how long the client waits, and when it gives up."""

from __future__ import annotations

import email.utils
from datetime import timedelta

import httpx
import pytest

from sextant.sdk import Client, DeliveryError, RetryPolicy
from tests.sdk_fakes import FakeClock, FakeServer, Step

POLICY = RetryPolicy(base_delay=0.5, max_delay=8.0, max_retry_time=60.0)


def deliver(
    script: list[Step], events: int = 3, policy: RetryPolicy = POLICY
) -> tuple[FakeServer, FakeClock, Client, list[DeliveryError]]:
    """Send ``events`` events as one batch through a collector answering ``script``."""
    server, clock = FakeServer(script), FakeClock()
    errors: list[DeliveryError] = []
    client = Client(
        "wk",
        host="http://c.test",
        transport=server.transport,
        clock=clock,
        retry=policy,
        on_error=errors.append,
    )
    for i in range(events):
        client.track("u", "Clicked", {"i": i})
    assert client.flush(5)
    client.shutdown()
    return server, clock, client, errors


@pytest.mark.parametrize("failure", [500, 502, 503, 429, httpx.ConnectError("refused")])
def test_transient_failures_are_retried_until_the_batch_gets_through(
    failure: Step,
) -> None:
    server, clock, client, errors = deliver([failure, failure, 200])

    assert len(server.requests) == 3
    ids = [[e["messageId"] for e in r.batch] for r in server.requests]
    assert ids[0] == ids[1] == ids[2]  # the same events, so the collector can dedup them
    assert len(server.delivered()) == 3
    assert errors == []
    stats = client.stats()
    assert (stats.delivered, stats.retries, stats.failed) == (3, 2, 0)
    # Full jitter: a random wait up to base * 2**(n-1).
    assert 0 <= clock.sleeps[0] <= 0.5
    assert 0 <= clock.sleeps[1] <= 1.0


def test_sent_at_is_stamped_at_each_attempt() -> None:
    server, _, _, _ = deliver([(503, {"Retry-After": "4"}), 200])

    first, second = (r.body["sentAt"] for r in server.requests)
    assert (first, second) == ("2026-03-01T12:00:00Z", "2026-03-01T12:00:04Z")


def test_retry_after_in_seconds_is_honoured() -> None:
    _, clock, client, _ = deliver([(429, {"Retry-After": "7"}), (503, {"Retry-After": "2.5"}), 200])

    assert clock.sleeps == [7.0, 2.5]
    assert client.stats().delivered == 3


def test_retry_after_as_an_http_date_is_honoured() -> None:
    later = FakeClock().now() + timedelta(seconds=9)
    header = email.utils.format_datetime(later, usegmt=True)

    _, clock, _, _ = deliver([(503, {"Retry-After": header}), 200])

    assert clock.sleeps == [9.0]


def test_an_unreadable_retry_after_falls_back_to_backoff() -> None:
    _, clock, _, _ = deliver([(503, {"Retry-After": "soon"}), 200])

    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_other_than_429_are_final(status: int) -> None:
    server, clock, client, errors = deliver([status])

    assert len(server.requests) == 1
    assert clock.sleeps == []
    (error,) = errors
    assert (error.reason, error.status, error.attempts) == ("http_status", status, 1)
    assert [e["properties"]["i"] for e in error.events] == [0, 1, 2]
    stats = client.stats()
    assert (stats.rejected, stats.delivered, stats.retries) == (3, 0, 0)


def test_the_client_gives_up_after_the_retry_budget() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, max_retry_time=30.0)
    server, clock, client, errors = deliver([500] * 1000, policy=policy)

    assert sum(clock.sleeps) <= 30.0
    assert len(server.requests) == len(clock.sleeps) + 1 > 5
    assert all(0 <= delay <= 4.0 for delay in clock.sleeps)
    (error,) = errors
    assert (error.reason, error.status) == ("gave_up", 500)
    assert "HTTP 500" in str(error)
    stats = client.stats()
    assert (stats.failed, stats.delivered, stats.pending) == (3, 0, 0)


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    server, clock, _, errors = deliver([(503, {"Retry-After": "3600"})] * 5)

    assert len(server.requests) == 1
    assert clock.sleeps == []
    assert [e.reason for e in errors] == ["gave_up"]


def test_events_the_collector_rejects_one_by_one_are_reported() -> None:
    server = FakeServer()
    server.reject = lambda batch: [
        {
            "index": 1,
            "messageId": batch[1]["messageId"],
            "errors": [{"field": "properties.plan", "message": "not in the tracking plan"}],
        }
    ]
    errors: list[DeliveryError] = []
    with Client(
        "wk", host="http://c.test", transport=server.transport, on_error=errors.append
    ) as client:
        ids = [client.track("u", "Clicked", {"i": i}) for i in range(3)]
        assert client.flush(5)

        (error,) = errors
        assert error.reason == "rejected"
        assert [e["messageId"] for e in error.events] == [ids[1]]
        assert error.problems[ids[1]][0].field == "properties.plan"
        stats = client.stats()
        assert (stats.delivered, stats.rejected) == (2, 1)


@pytest.mark.parametrize(
    ("retry", "draw", "expected"),
    [(1, 1.0, 0.5), (2, 1.0, 1.0), (4, 1.0, 4.0), (5, 1.0, 8.0), (40, 1.0, 8.0), (3, 0.0, 0.0)],
)
def test_backoff_is_exponential_with_full_jitter_and_capped(
    retry: int, draw: float, expected: float
) -> None:
    assert POLICY.backoff(retry, lambda: draw) == expected


@pytest.mark.parametrize(
    "options",
    [{"base_delay": 0}, {"base_delay": 2, "max_delay": 1}, {"max_retry_time": -1}],
)
def test_an_impossible_retry_policy_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(**options)
