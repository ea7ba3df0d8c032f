"""Gap and stall tracking, on an injected clock."""

from __future__ import annotations

from dataclasses import dataclass

from sextant.processor.gaps import GapTracker, StallPolicy
from tests.manual_clock import ManualClock

KEY = ("sextant.events.raw", 2)


@dataclass
class State:
    expected_offset: int

    def skip_to(self, offset: int) -> None:
        self.expected_offset = max(self.expected_offset, offset)


def test_a_partition_crawling_behind_counts_as_stalled() -> None:
    """One record a second, 900 behind: never caught up, so fetched again after 30 s."""
    clock = ManualClock()
    tracker = GapTracker(clock=clock)
    crawl = []
    for s in range(31):
        clock.now = float(s)
        crawl.append(tracker.stalled(KEY, (900, 100 + s), 900 - s))
    assert crawl[:30] == [False] * 30
    assert crawl[30]


def test_a_partition_catching_up_is_not_stalled() -> None:
    clock = ManualClock()
    tracker = GapTracker(clock=clock)
    catching_up = []
    for s in range(31):
        clock.now = float(s)
        catching_up.append(tracker.stalled(KEY, (900, 100 + 30 * s), 900 - 30 * s))
    assert not any(catching_up)


def test_a_partition_standing_still_counts_as_stalled_after_15_s() -> None:
    clock = ManualClock()
    tracker = GapTracker(clock=clock)
    still = []
    for s in range(16):
        clock.now = float(s)
        still.append(tracker.stalled(KEY, (900, 100), 50))
    assert still[:15] == [False] * 15
    assert still[15]


def test_a_gap_is_sought_every_second_until_its_marker_moves() -> None:
    clock = ManualClock()
    tracker = GapTracker(StallPolicy(refetch_every=1.0), clock=clock)
    state = State(10)
    tracker.mark(KEY, state, (10, 8))
    assert tracker.due(KEY, (10, 8))
    tracker.sought(KEY, (10, 8))
    clock.now = 0.5
    assert not tracker.due(KEY, (10, 8))
    clock.now = 1.0
    assert tracker.due(KEY, (10, 8))
    tracker.sought(KEY, (10, 8))
    assert not tracker.due(KEY, (11, 8))  # the records flow again: filled
    assert not tracker.has_gap(KEY)


def test_after_a_recovery_the_topics_gaps_are_forgotten() -> None:
    tracker = GapTracker(clock=ManualClock())
    tracker.mark(KEY, State(3), (3, None))
    tracker.mark(("other", 0), State(3), (3, None))
    tracker.forget(KEY[0])
    assert [key for key, _ in tracker.gaps(KEY[0])] == []
    assert tracker.has_gap(("other", 0))
