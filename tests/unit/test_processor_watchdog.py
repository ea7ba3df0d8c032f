"""A worker whose rebalance, or stop, never ends is ended (to be restarted, or to end)."""

from __future__ import annotations

from sextant.processor.app import STUCK_EXIT_CODE, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Process:
    def __init__(self) -> None:
        self.stop_requested = 0
        self.exit_code: int | None = None

    def request_stop(self) -> None:
        self.stop_requested += 1

    def abort(self, code: int) -> None:
        self.exit_code = code


def _watchdog(clock: Clock, process: Process) -> Watchdog:
    return Watchdog(
        300.0, 30.0, request_stop=process.request_stop, abort=process.abort, clock=clock
    )


def test_a_stuck_rebalance_asks_for_a_stop_once_and_the_exit_code_says_restart() -> None:
    clock, process = Clock(), Process()
    watchdog = _watchdog(clock, process)
    for second in range(302):
        clock.now = float(second)
        watchdog.check(rebalancing=True, stopping=False)
    assert process.stop_requested == 1
    assert watchdog.restart_requested
    assert process.exit_code is None
    for second in range(302, 334):  # the stop it asked for hangs too
        clock.now = float(second)
        watchdog.check(rebalancing=True, stopping=True)
    assert process.exit_code == STUCK_EXIT_CODE


def test_a_stop_that_does_not_finish_ends_the_process() -> None:
    clock, process = Clock(), Process()
    watchdog = _watchdog(clock, process)
    for second in range(32):
        clock.now = float(second)
        watchdog.check(rebalancing=False, stopping=True)
    assert process.exit_code == 1
    assert process.stop_requested == 0


def test_a_worker_that_rebalances_now_and_then_keeps_running() -> None:
    clock, process = Clock(), Process()
    watchdog = _watchdog(clock, process)
    for second in range(2_000):
        clock.now = float(second)
        watchdog.check(rebalancing=second % 200 < 150, stopping=False)
    assert process.stop_requested == 0
    assert process.exit_code is None
