"""Both stages over the fake partition log: exact results through rebalances, records that
arrive ahead of a missing one, failed batches and stalled partitions, in milliseconds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from sextant.core.config_plane import ConfigState
from sextant.processor.catalog import ConfigCatalog
from sextant.processor.gaps import GapTracker
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.partition import DedupPolicy
from sextant.processor.runner import StageRunner
from sextant.processor.stages import StageOne, StageTwo
from sextant.schemas.config import MetricDefinition, Project
from tests.contract.fake_log import FakeBroker, FakeOutputs, FakePartitionLog, FakeTable

EVENTS, PARTIALS, POINTS, EXPOSURES = "t.events.raw", "t-partials", "t.metric_points", "t.expo"
PARTITIONS = 3
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Pipeline:
    """Two stages, a runner, the fake log; the second stage reads what the first sends."""

    def __init__(self) -> None:
        self.broker = FakeBroker({EVENTS: PARTITIONS, PARTIALS: PARTITIONS})
        self.clock = Clock()
        self.log = FakePartitionLog(self.broker, clock=self.clock)
        self.outputs = FakeOutputs(self.broker)
        state = ConfigState()
        state.apply("project:p:p", Project(id="p", project_id="p", name="P"))
        state.apply(
            "metric:p:orders",
            MetricDefinition(id="orders", project_id="p", metric_kind="count", event="Order"),
        )
        catalog = ConfigCatalog(state)
        self.metrics = ProcessorMetrics()
        self.windows, self.merges = FakeTable(), FakeTable()
        self.one = StageOne(
            topic=EVENTS,
            partials_topic=PARTIALS,
            exposures_topic=EXPOSURES,
            partitions=PARTITIONS,
            interval=0.25,
            catalog=catalog,
            dedup=DedupPolicy(),
            table=self.windows,
            outputs=self.outputs,
            metrics=self.metrics,
        )
        self.two = StageTwo(
            topic=PARTIALS,
            points_topic=POINTS,
            partitions=PARTITIONS,
            interval=0.1,
            idle_seconds=120,
            catalog=catalog,
            table=self.merges,
            outputs=self.outputs,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.runner = StageRunner(
            self.log,
            (self.one, self.two),
            self.metrics,
            batch_max=1000,
            tracker=GapTracker(clock=self.clock),
        )

    def send(self, partition: int, count: int) -> None:
        for i in range(count):
            at = T0.replace(second=i % 60).isoformat()
            envelope = {
                "project_id": "p",
                "type": "track",
                "event": "Order",
                "distinct_id": f"u{partition}-{i}",
                "messageId": str(uuid.uuid4()),
                "timestamp": at,
                "received_at": at,
                "properties": {},
            }
            self.broker.append(EVENTS, partition, orjson.dumps(envelope))

    async def recover(self) -> None:
        for stage in (self.one, self.two):
            await self.runner.recovered(stage, set(range(PARTITIONS)))

    async def step(self) -> None:
        """Deliver what is waiting to both stages, once, then run the timer."""
        for stage in (self.one, self.two):
            batch = self.log.poll(stage.topic, 1000)
            if batch:
                await self.runner.batch(stage, batch)
        await self.runner.tick()

    async def settle(self, steps: int = 20) -> None:
        for _ in range(steps):
            await self.step()

    def total(self) -> int:
        newest: dict[tuple[str, str], tuple[int, int]] = {}
        for _, value, _ in self.outputs.sent.get(POINTS, []):
            point = orjson.loads(value)
            window = (point["window_start"], point["breakdown"])
            if window not in newest or point["version"] >= newest[window][0]:
                newest[window] = (point["version"], point["count"])
        return sum(count for _, count in newest.values())

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def committed(self) -> dict[int, int | None]:
        return {p: self.log.committed(EVENTS, p) for p in range(PARTITIONS)}


@pytest.fixture
async def pipeline() -> Pipeline:
    found = Pipeline()
    await found.recover()
    return found


async def test_every_event_is_counted_once(pipeline: Pipeline) -> None:
    for partition in range(PARTITIONS):
        pipeline.send(partition, 40)
    await pipeline.settle()
    assert pipeline.total() == 120
    assert pipeline.committed() == {0: 40, 1: 40, 2: 40}


async def test_nothing_is_applied_before_the_first_recovery() -> None:
    pipeline = Pipeline()
    pipeline.send(0, 5)
    await pipeline.step()
    assert pipeline.log.held_back == [(EVENTS, 0, offset) for offset in range(5)]
    assert pipeline.committed()[0] is None


async def test_a_batch_during_a_rebalance_is_held_back_and_applied_after_it(
    pipeline: Pipeline,
) -> None:
    pipeline.send(0, 10)
    await pipeline.settle(2)
    pipeline.send(0, 10)
    pipeline.log.begin_rebalance()
    await pipeline.step()
    assert len(pipeline.log.held_back) == 10
    pipeline.log.end_rebalance()
    await pipeline.recover()
    await pipeline.settle()
    assert pipeline.total() == 20
    assert pipeline.committed()[0] == 20


async def test_a_record_ahead_of_a_missing_one_is_refused_and_fetched_again_in_order(
    pipeline: Pipeline,
) -> None:
    """As after a rebalance, when a record fetched before the seek still arrives."""
    pipeline.send(1, 12)
    await pipeline.settle(2)
    pipeline.send(1, 8)
    pipeline.log.stop_fetching(EVENTS, 1)
    pipeline.log.deliver_ahead(EVENTS, 1, [15, 16])
    await pipeline.step()
    assert (EVENTS, 1, 15) in pipeline.log.held_back
    assert pipeline.log.seeks[-1] == (EVENTS, 1, 12)
    await pipeline.settle()
    assert pipeline.total() == 20
    assert pipeline.committed()[1] == 20
    assert pipeline.sample("sextant_processor_refetched_events_total", reason="out_of_order") == 2


async def test_a_failed_batch_is_rebuilt_from_the_table_and_fetched_again(
    pipeline: Pipeline,
) -> None:
    pipeline.send(2, 30)
    await pipeline.settle(2)
    pipeline.send(2, 30)
    pipeline.outputs.fail_next = 1
    await pipeline.step()
    assert pipeline.sample("sextant_processor_errors_total", stage="one_batch") == 1
    await pipeline.settle()
    assert pipeline.total() == 60
    assert pipeline.committed()[2] == 60


async def test_a_partition_that_stops_moving_is_fetched_again(pipeline: Pipeline) -> None:
    pipeline.send(0, 5)
    await pipeline.settle(2)
    pipeline.log.stop_fetching(EVENTS, 0)
    pipeline.send(0, 5)
    await pipeline.settle(3)
    assert pipeline.total() == 5
    pipeline.clock.now += 16.0  # nothing moved for longer than the stall bound
    await pipeline.settle()
    assert pipeline.sample("sextant_processor_refetched_events_total", reason="stalled") == 1
    assert pipeline.total() == 10


async def test_a_seek_goes_back_to_the_committed_offset_when_it_is_lower(
    pipeline: Pipeline,
) -> None:
    """A state that is ahead of the group's commit (another worker applied and persisted,
    then died before its commit): the offsets between are delivered again and passed over,
    so the commit can move on."""
    pipeline.send(0, 10)
    await pipeline.settle()
    pipeline.broker.committed[(EVENTS, 0)] = 4  # the commit a dead worker never made
    pipeline.send(0, 2)
    pipeline.log.stop_fetching(EVENTS, 0)
    pipeline.log.deliver_ahead(EVENTS, 0, [11])
    await pipeline.step()
    assert pipeline.log.seeks[-1] == (EVENTS, 0, 4)
    await pipeline.settle()
    assert pipeline.total() == 12
    assert pipeline.committed()[0] == 12


async def test_a_seek_that_cannot_be_made_now_is_tried_again(pipeline: Pipeline) -> None:
    pipeline.send(1, 3)
    await pipeline.settle(2)
    pipeline.send(1, 3)
    pipeline.log.unavailable = True
    pipeline.log.stop_fetching(EVENTS, 1)
    pipeline.log.deliver_ahead(EVENTS, 1, [4])
    await pipeline.step()
    pipeline.log.unavailable = False
    pipeline.clock.now += 1.0
    await pipeline.settle()
    assert pipeline.total() == 6
