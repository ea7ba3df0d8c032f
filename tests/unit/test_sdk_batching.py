"""The background thread: batches by count, time and bytes; a bounded queue; flush; shutdown."""

from __future__ import annotations

import threading
import time

import httpx

from sextant.sdk import Client, DeliveryError, RetryPolicy
from tests.infra import wait_for
from tests.sdk_fakes import FakeServer


def make(server: FakeServer, **options: object) -> Client:
    return Client("wk", host="http://c.test", transport=server.transport, **options)  # type: ignore[arg-type]


def test_batches_close_at_flush_at_events() -> None:
    server = FakeServer()
    with make(server, flush_at=100, flush_interval=30) as client:
        ids = [client.track(f"u{i}", "Clicked") for i in range(250)]
        assert client.flush(5)

        assert [len(r.batch) for r in server.requests] == [100, 100, 50]
        assert [e["messageId"] for e in server.delivered()] == ids
        stats = client.stats()
        assert (stats.queued, stats.delivered, stats.batches, stats.pending) == (250, 250, 3, 0)


def test_a_partial_batch_goes_out_after_flush_interval_without_a_flush() -> None:
    server = FakeServer()
    with make(server, flush_at=100, flush_interval=0.05) as client:
        client.track("u", "Clicked")
        client.track("u", "Clicked again")

        wait_for(lambda: len(server.delivered()) == 2, timeout_s=5, message="interval flush")
        assert len(server.requests) == 1


def test_batches_stay_under_max_batch_bytes() -> None:
    server = FakeServer()
    padding = "x" * 10_000
    with make(server, flush_at=100, flush_interval=30, max_batch_bytes=40_000) as client:
        ids = [client.track("u", "Big", {"pad": padding}) for _ in range(12)]
        assert client.flush(5)

    assert all(r.raw_size <= 40_000 for r in server.requests)
    assert len(server.requests) == 4
    assert [e["messageId"] for e in server.delivered()] == ids


def test_a_full_queue_drops_new_events_and_never_blocks_the_caller() -> None:
    server = FakeServer()
    server.gate.clear()  # the collector hangs: nothing leaves the process
    client = make(server, flush_at=5, flush_interval=30, max_queue_size=10)
    try:
        started = time.monotonic()
        for i in range(100):
            client.track("u", "Clicked", {"i": i})
        elapsed = time.monotonic() - started

        stats = client.stats()
        assert elapsed < 1.0
        assert stats.queued + stats.dropped == 100
        assert 10 <= stats.queued <= 15  # the queue, plus at most one batch in flight
        server.gate.set()
        assert client.flush(5)
        assert client.stats().delivered == stats.queued
        delivered = [e["properties"]["i"] for e in server.delivered()]
        assert len(delivered) == stats.queued
        assert delivered[:10] == list(range(10))  # the first ones fit; later ones as room frees
        assert delivered == sorted(delivered)
    finally:
        server.gate.set()
        client.shutdown()


def test_when_full_block_waits_for_room_instead_of_dropping() -> None:
    server = FakeServer()
    server.gate.clear()
    with make(server, flush_at=2, max_queue_size=2, when_full="block") as client:
        producer = threading.Thread(target=lambda: [client.track("u", f"E{i}") for i in range(10)])
        producer.start()
        wait_for(lambda: client.stats().queued >= 4, timeout_s=5, message="queue filled")
        assert producer.is_alive()  # blocked on the full queue

        server.gate.set()
        producer.join(5)
        assert client.flush(5)
        assert [e["event"] for e in server.delivered()] == [f"E{i}" for i in range(10)]
        assert client.stats().dropped == 0


def test_flush_gives_up_waiting_at_its_timeout() -> None:
    server = FakeServer()
    server.gate.clear()
    with make(server) as client:
        client.track("u", "Clicked")
        started = time.monotonic()

        assert client.flush(0.2) is False
        assert time.monotonic() - started < 2
        server.gate.set()
        assert client.flush(5) is True


def test_shutdown_delivers_what_is_queued_then_drops_later_calls() -> None:
    server = FakeServer()
    client = make(server, flush_interval=30)
    for i in range(30):
        client.track("u", "Clicked", {"i": i})

    assert client.shutdown() is True
    assert len(server.delivered()) == 30
    client.track("u", "Too late")
    assert client.shutdown() is True  # idempotent
    stats = client.stats()
    assert (stats.delivered, stats.dropped) == (30, 1)
    assert len(server.delivered()) == 30


def test_shutdown_is_bounded_and_reports_what_it_could_not_deliver() -> None:
    server = FakeServer([(503, {"Retry-After": "60"})])
    errors: list[DeliveryError] = []
    client = make(server, retry=RetryPolicy(max_retry_time=300), on_error=errors.append)
    client.track("u", "Clicked")
    wait_for(lambda: server.requests, timeout_s=5, message="first attempt")

    started = time.monotonic()
    assert client.shutdown(timeout=0.2) is False
    assert time.monotonic() - started < 5
    assert [(e.reason, len(e.events)) for e in errors] == [("shutdown", 1)]
    assert client.stats().failed == 1


def test_the_sending_thread_survives_a_failing_callback_and_an_unexpected_error() -> None:
    server = FakeServer([RuntimeError("a bug in a transport"), 400])
    calls: list[str] = []

    def on_error(error: DeliveryError) -> None:
        calls.append(error.reason)
        raise ValueError("the callback itself fails")

    with make(server, flush_at=1, on_error=on_error) as client:
        for event in ("A", "B", "C"):
            client.track("u", event)
        assert client.flush(5)

        assert calls == ["gave_up", "http_status"]
        assert [e["event"] for e in server.delivered()] == ["C"]
        stats = client.stats()
        assert (stats.delivered, stats.failed, stats.rejected) == (1, 1, 1)


def test_an_injected_transport_error_is_a_network_error() -> None:
    server = FakeServer([httpx.ReadTimeout("slow"), 200])
    with make(server, retry=RetryPolicy(base_delay=0.01, max_delay=0.01)) as client:
        client.track("u", "Clicked")
        assert client.flush(5)

        assert len(server.delivered()) == 1
        assert client.stats().retries == 1


def test_shutdown_called_from_on_error_does_not_hang() -> None:
    server = FakeServer([400])
    holder: list[Client] = []
    outcomes: list[bool] = []

    def on_error(_: DeliveryError) -> None:
        outcomes.append(holder[0].shutdown(timeout=0.1))

    client = make(server, flush_at=1, on_error=on_error)
    holder.append(client)
    client.track("u", "Refused")

    wait_for(lambda: outcomes, timeout_s=5, message="shutdown from the callback")
    client.track("u", "After")
    assert client.stats().dropped == 1
