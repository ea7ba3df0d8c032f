"""The gateway's timed cache: values kept for their age limit, then computed again."""

from __future__ import annotations

from sextant.gateway.cache import TimedCache
from tests.manual_clock import ManualClock


def test_a_value_is_kept_until_it_is_too_old() -> None:
    clock = ManualClock()
    cache = TimedCache(max_age=300, clock=clock)
    computed: list[int] = []

    def compute() -> int:
        computed.append(len(computed))
        return len(computed)

    assert cache.get("q", compute) == 1
    clock.now = 299.9
    assert cache.get("q", compute) == 1
    clock.now = 300.0
    assert cache.get("q", compute) == 2
    assert cache.get("other", compute) == 3
    assert computed == [0, 1, 2]


def test_the_oldest_entries_go_first_beyond_the_limit() -> None:
    cache = TimedCache(max_age=60, max_entries=2, clock=ManualClock())
    for key in ("a", "b", "c"):
        cache.get(key, lambda key=key: key)
    assert cache.get("a", lambda: "again") == "again"
    assert cache.get("c", lambda: "missing") == "c"
