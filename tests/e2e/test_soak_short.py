"""The short soak: the whole pipeline as processes, a minute of load, a kill -9 of the
collector, a processor worker and the sink. After each fault every part is live again: ready,
every consumer group caught up with its topics, every metric's newest window current, and an
alert rule of the fault's own firing and resolving on time. At the end every acknowledged
event is counted exactly once in the topic, the warehouse and the count metric; rejected ones
are in the dead letter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.soak import soak


# Three faults, each followed by its liveness checks (an alert rule firing and resolving with
# its windows, lag drained): with the processor's resolver and statistics stages restoring
# their state after the kill, the run outlasts the suite's default five minutes.
@pytest.mark.timeout(600)
def test_every_acknowledged_event_is_counted_exactly_once(tmp_path: Path) -> None:
    result, tally, checks = asyncio.run(soak(rate=150, duration_s=45, short=True, root=tmp_path))
    assert len(tally.faults) == 3
    assert len(checks) == 3
    assert [c.problems for c in checks] == [[], [], []]
    assert result.acknowledged > 4_000
    assert result.unacknowledged_at_end == 0
    assert result.lost == 0
    assert result.duplicated == 0
    assert result.in_topic == result.in_warehouse == result.acknowledged
    assert result.dead_letters == result.rejected > 0
    assert result.metric_total == result.acknowledged
