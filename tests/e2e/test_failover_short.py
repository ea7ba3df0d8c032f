"""The short failover: the pipeline as processes on a three-node Kafka cluster under load; the
node leading the busiest partitions is killed with -9 and restarted, then the active
controller; every acknowledged event is counted exactly once in the topic, the warehouse and
the count metric, and the 503s and recovery times are measured (``make failover`` runs the
long form three times and writes the figures)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.failover import SHORT, failover


def test_a_broker_and_the_controller_die_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    run = asyncio.run(failover(SHORT, tmp_path))
    result = run.result
    assert [f.label for f in run.faults] == [
        "leader of the busiest partitions",
        "active controller",
    ]
    # Two kills and two restarts (a part that exited and was started again is noted too).
    assert sum(1 for f in run.tally.faults if f.startswith(("kill -9", "node "))) == 4
    assert result.acknowledged > 2_000
    assert result.unacknowledged_at_end == 0
    assert result.lost == 0
    assert result.duplicated == 0
    assert result.in_topic == result.in_warehouse == result.acknowledged
    assert result.metric_total == result.acknowledged
    # A rejected event re-sent in a batch that was not acknowledged is dead-lettered again.
    assert result.dead_letters >= result.rejected > 0
    for fault in run.faults:
        assert fault.healthy_after_restart_s >= 0
