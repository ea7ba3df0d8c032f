"""Every consumer's progress: stalls named in /readyz and /metrics, the stall guard, and the
background loop every consumer runs in."""

from __future__ import annotations

import threading

import httpx
from fastapi import FastAPI

from sextant.core.background import BackgroundLoop
from sextant.core.progress import ProgressBoard, StallGuard
from sextant.core.service import add_operational_routes
from tests.infra import wait_for
from tests.manual_clock import ManualClock


def test_a_consumer_with_records_waiting_that_does_not_move_is_stalled() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(60.0, clock=clock, wall=clock)
    sink = board.consumer("sink")
    sink.moved("events.raw:3", 120)
    sink.waiting("events.raw:3", 40)
    sink.waiting("events.raw:4", 0)
    clock.now += 59
    assert board.stalls() == []
    clock.now += 2
    [stall] = board.stalls()
    assert (stall.consumer, stall.partition, stall.waiting, stall.offset) == (
        "sink",
        "events.raw:3",
        40,
        120,
    )


def test_moving_or_catching_up_is_not_a_stall() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(60.0, clock=clock, wall=clock)
    follower = board.consumer("config")
    follower.waiting(0, 5)
    for step in range(10):
        clock.now += 30
        follower.moved(0, step + 1)  # slow, but moving
    assert board.stalls() == []
    follower.waiting(0, 0)
    clock.now += 600
    assert board.stalls() == []


def test_waiting_counts_from_when_records_began_to_wait() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(60.0, clock=clock, wall=clock)
    feed = board.consumer("live-feed")
    feed.moved(1, 10)
    clock.now += 3600  # idle for an hour: nothing to do is not a stall
    feed.waiting(1, 3)
    clock.now += 30
    assert board.stalls() == []
    clock.now += 31
    assert [s.partition for s in board.stalls()] == ["1"]


async def test_readyz_names_the_stalled_consumer_and_metrics_show_progress() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(10.0, clock=clock, wall=lambda: 1_700_000_000.0)
    app = FastAPI()
    add_operational_routes(app, {"kafka": lambda: True}, progress=board)
    stage = board.consumer("stage-two")
    stage.moved(5, 77)
    stage.waiting(5, 12)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    assert (await client.get("/readyz")).status_code == 200
    clock.now += 11
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["checks"] == {"kafka": True, "progress": False}
    assert body["stalled"] == [
        {"consumer": "stage-two", "partition": "5", "waiting": 12, "offset": 77, "seconds": 11.0}
    ]
    text = (await client.get("/metrics")).text
    await client.aclose()
    assert (
        'sextant_consumer_last_progress_timestamp_seconds{consumer="stage-two",partition="5"} '
        "1.7e+09" in text
    )
    assert 'sextant_consumer_last_progress_offset{consumer="stage-two",partition="5"} 77.0' in text
    assert 'sextant_consumer_waiting_records{consumer="stage-two",partition="5"} 12.0' in text
    assert 'sextant_consumer_stalled{consumer="stage-two",partition="5"} 1.0' in text


def test_a_stall_that_lasts_restarts_the_part_once() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(60.0, clock=clock, wall=clock)
    stops: list[int] = []
    guard = StallGuard(board, 300.0, request_stop=lambda: stops.append(1))
    notifier = board.consumer("notifier")
    notifier.waiting("alerts:0", 2)
    clock.now += 200
    assert guard.check() == []
    clock.now += 101
    assert [s.consumer for s in guard.check()] == ["notifier"]
    assert guard.check() == []
    assert stops == [1]
    assert guard.restart_requested


def test_no_restart_when_disabled() -> None:
    clock = ManualClock(1000.0)
    board = ProgressBoard(60.0, clock=clock, wall=clock)
    guard = StallGuard(board, 0.0, request_stop=lambda: None)
    board.consumer("x").waiting(0, 1)
    clock.now += 10_000
    assert guard.check() == []


class Flaky(BackgroundLoop):
    """Fails its first session, then stays connected until stopped."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__(retry_initial_s=0.01, retry_max_s=0.01)
        self.sessions = 0
        self.failures: list[Exception] = []
        self.closed = threading.Event()

    def session(self) -> None:
        self.sessions += 1
        if self.sessions == 1:
            raise RuntimeError("the broker went away")
        self.connected()
        self.stopping.wait()
        self.closed.set()

    def on_session_failed(self, error: Exception) -> None:
        self.failures.append(error)


def test_a_background_loop_starts_a_failed_session_again_and_stops() -> None:
    loop = Flaky()
    assert not loop.ready()
    loop.start()
    wait_for(loop.ready, 10, 0.01, "second session")
    assert loop.sessions == 2
    assert [str(e) for e in loop.failures] == ["the broker went away"]
    loop.stop()
    assert loop.closed.is_set()
    assert not loop.ready()
