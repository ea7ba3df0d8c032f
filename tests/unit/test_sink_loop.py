"""The consume loop against in-memory fakes of Kafka and the warehouse, on a fake clock.

The same behaviour is shown against the real broker and engine in
tests/integration/test_sink_service.py and tests/integration/test_sink_crash.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import orjson
import pytest

from sextant.core.batch_consumer import Partition
from sextant.core.kafka import KafkaError, Record
from sextant.core.warehouse import ClickHouseError
from sextant.schemas.events import Envelope, EventType
from sextant.schemas.records import MetricPoint, SinkDeadLetter
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.batch import BatchLimits
from sextant.sink.loop import STALL_SECONDS, Backoff, ConsumerStalledError, SinkLoop
from sextant.sink.tables import TABLES

PREFIX = "unit"
RAW = topic_name(Topic.EVENTS_RAW, PREFIX)
POINTS = topic_name(Topic.METRIC_POINTS, PREFIX)
SPECS = {topic_name(topic, PREFIX): spec for topic, spec in TABLES.items()}
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Log:
    """Partitions of records; a consumer's positions, pauses and commits over them."""

    def __init__(self, clock: Clock, partitions: int = 3) -> None:
        self.clock = clock
        self.records: dict[Partition, list[Record]] = {(RAW, p): [] for p in range(partitions)}
        self.position = dict.fromkeys(self.records, 0)
        self.committed: dict[Partition, int] = {}
        self.commits = 0
        self.paused: set[Partition] = set()
        self.commit_fails = False
        self.on_revoked: Callable[[list[Partition]], None] = lambda _: None
        self.revoke_on_next_poll = False
        self.revoke_inside: str | None = None
        """The next call of this name (``commit``, ``pause_all``, ``resume_all``) hears of a
        rebalance first, as every call of the real member may; a commit then fails."""
        self.moves_away: Partition | None = None
        """Goes to another member at the next poll, after that poll returned its records."""
        self.wedged = False
        """Return nothing while records wait, as a consumer that stopped fetching does."""

    def produce(self, partition: int, value: bytes | None, topic: str = RAW) -> None:
        if (topic, partition) not in self.records:
            self.records[(topic, partition)] = []
            self.position[(topic, partition)] = 0
        log = self.records[(topic, partition)]
        log.append(Record(topic, partition, len(log), None, value, 0))

    def poll(self, timeout_s: float, max_records: int) -> list[Record]:
        if self.revoke_on_next_poll:
            self.revoke_on_next_poll = False
            self.on_revoked(sorted(self.position))  # all reassigned: positions are kept
        out: list[Record] = []
        for partition in sorted(self.position):
            if partition in self.paused or self.wedged:
                continue
            start = self.position[partition]
            taken = self.records[partition][start : start + max_records - len(out)]
            out.extend(taken)
            self.position[partition] = start + len(taken)
        if self.moves_away is not None:
            del self.position[self.moves_away]
            self.moves_away = None
        if not out:
            self.clock.now += timeout_s
        return out

    def _revoke_inside(self, call: str) -> bool:
        if self.revoke_inside != call:
            return False
        self.revoke_inside = None
        self.on_revoked(sorted(self.position))
        self.paused = set()  # the partitions come back unpaused, as a new assignment does
        return True

    def pause_all(self) -> None:
        self.paused = set(self.position)  # the assignment a rebalance is ending
        self._revoke_inside("pause_all")

    def resume_all(self) -> None:
        self._revoke_inside("resume_all")
        self.paused = set()

    def seek(self, partition: Partition, offset: int) -> None:
        self.position[partition] = offset

    def assignment(self) -> set[Partition]:
        return set(self.position)

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        if self._revoke_inside("commit"):
            raise KafkaError("CommitFailedError: the group is rebalancing")
        if self.commit_fails:
            raise KafkaError("coordinator not available")
        if set(next_offsets) - set(self.position):
            raise KafkaError("IllegalStateError: partition is not assigned")
        for partition, offset in next_offsets.items():
            assert offset >= self.committed.get(partition, 0), "commits never go back"
            self.committed[partition] = offset
        self.commits += 1

    def lag(self) -> dict[Partition, int]:
        return {p: len(r) - self.committed.get(p, 0) for p, r in self.records.items()}

    def end(self) -> dict[Partition, int]:
        return {p: len(r) for p, r in self.records.items() if r}


class Warehouse:
    """Stores rows, drops a repeated dedup token, refuses rows with a poison property."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, object]]] = {}
        self.tokens: set[str] = set()
        self.down = False
        self.attempts = 0

    def insert_json(
        self, table: str, rows: bytes, column_names: tuple[str, ...], dedup_token: str | None = None
    ) -> None:
        self.attempts += 1
        if self.down:
            raise ClickHouseError("Code: 60. Table db.events does not exist. (UNKNOWN_TABLE)")
        parsed = [orjson.loads(line) for line in rows.split(b"\n")]
        if any("poison" in row.get("properties", {}) for row in parsed):
            raise ClickHouseError("Code: 117. Duplicate path found (INCORRECT_DATA)")
        assert dedup_token is not None
        if dedup_token not in self.tokens:
            self.tokens.add(dedup_token)
            self.rows.setdefault(table, []).extend(parsed)

    def ping(self) -> bool:
        return not self.down

    def message_ids(self) -> list[str]:
        return [str(row["message_id"]) for row in self.rows.get("events", [])]


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[SinkDeadLetter] = []
        self.down = False

    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        if self.down:
            raise KafkaError("broker not available")
        self.letters.extend(letters)


def envelope(message_id: str, **properties: object) -> bytes:
    return (
        Envelope(
            project_id="demo",
            type=EventType.TRACK,
            event="Purchased",
            distinct_id="u1",
            properties=properties,
            timestamp=AT,
            received_at=AT,
            message_id=message_id,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


class Rig:
    def __init__(
        self, rows: int = 100, seconds: float = 1.0, live_seconds: float | None = None
    ) -> None:
        self.clock = Clock()
        self.log = Log(self.clock)
        self.warehouse = Warehouse()
        self.dead = DeadLetters()
        self.loop = SinkLoop(
            self.log,
            self.warehouse,
            self.dead,
            SPECS,
            BatchLimits(rows=rows, bytes=10**9, seconds=seconds, live_seconds=live_seconds),
            Backoff(initial=0.2, maximum=5.0),
            clock=self.clock,
            ping=self.warehouse.ping,
        )
        self.log.on_revoked = self.loop.revoked

    def produce(self, count: int, start: int = 0) -> list[str]:
        ids = [f"m{i}" for i in range(start, start + count)]
        for i, message_id in enumerate(ids):
            self.log.produce(i % 3, envelope(message_id, n=i))
        return ids

    def run(self, seconds: float) -> None:
        """Step the loop until ``seconds`` of fake time have passed."""
        deadline = self.clock.now + seconds
        steps = 0
        while self.clock.now < deadline:
            self.loop.step()
            steps += 1
            assert steps < 100_000, "the loop stopped advancing time"

    def caught_up(self) -> bool:
        return self.log.committed == self.log.end()


def test_batches_are_cut_by_records_and_committed_after_their_insert() -> None:
    rig = Rig(rows=100)
    ids = rig.produce(250)
    rig.run(5)
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)
    assert rig.caught_up()
    assert rig.log.commits == 3
    assert rig.loop.health.warehouse_ok
    assert rig.loop.health.kafka_ok


def test_a_trickle_is_written_within_the_batch_age() -> None:
    rig = Rig(rows=1_000, seconds=1.0)
    rig.produce(5)
    rig.run(0.5)
    assert rig.log.commits == 0
    rig.run(1.0)
    assert len(rig.warehouse.message_ids()) == 5
    assert rig.caught_up()


def point(version: int) -> bytes:
    return (
        MetricPoint(
            project_id="demo",
            metric="m",
            window_start=AT,
            count=version,
            version=version,
            emitted_at=AT,
        )
        .model_dump_json()
        .encode()
    )


def test_metric_points_are_written_at_their_own_pace_and_a_trickle_of_events_at_the_batch_age() -> (
    None
):
    rig = Rig(rows=1_000, seconds=1.0, live_seconds=0.1)
    events_due = rig.clock.now + 1.0
    ids = rig.produce(5)
    points = 0
    while rig.clock.now < events_due - 0.3:
        points += 1
        rig.log.produce(0, point(points), topic=POINTS)
        rig.run(0.15)  # at least; a quiet poll moves the fake clock by up to a wait slice
        # every point is in the warehouse and committed soon after it came ...
        assert len(rig.warehouse.rows["metric_points"]) == points
        assert rig.log.committed[(POINTS, 0)] == points
    # ... while the events wait for their own age, neither written nor committed
    assert points >= 2
    assert rig.warehouse.message_ids() == []
    assert all(rig.log.committed.get((RAW, p), 0) == 0 for p in range(3))
    rig.run(0.5)
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)
    assert rig.caught_up()


def test_nothing_is_committed_while_the_warehouse_is_down_and_it_catches_up_after() -> None:
    rig = Rig(rows=100)
    rig.warehouse.down = True
    ids = rig.produce(150)
    rig.run(60)
    assert rig.log.committed == {}
    assert not rig.loop.health.warehouse_ok
    assert rig.log.paused  # it stopped fetching instead of piling records up in memory
    assert rig.warehouse.attempts < 25  # backed off, not hammering
    more = rig.produce(60, start=150)
    rig.warehouse.down = False
    rig.run(20)
    assert sorted(rig.warehouse.message_ids()) == sorted(ids + more)
    assert rig.caught_up()
    assert rig.loop.health.warehouse_ok
    assert not rig.log.paused


def test_poison_goes_to_the_dead_letters_and_the_partition_moves_on() -> None:
    rig = Rig(rows=50)
    ids = rig.produce(40)
    rig.log.produce(0, b"{ not json")
    rig.log.produce(1, envelope("bad", poison=True))  # decodes, but the engine refuses it
    more = rig.produce(40, start=40)
    rig.run(5)
    assert sorted(rig.warehouse.message_ids()) == sorted(ids + more)
    assert rig.caught_up()
    assert {(d.partition, d.reason.split(":")[0]) for d in rig.dead.letters} == {
        (0, "not a valid record"),
        (1, "warehouse refused the row"),
    }


def test_dead_letters_are_durable_before_the_offsets_are_committed() -> None:
    rig = Rig(rows=10)
    rig.produce(5)
    rig.log.produce(2, b"garbage")
    rig.dead.down = True
    rig.run(30)
    assert rig.log.committed == {}
    assert not rig.loop.health.kafka_ok
    rig.dead.down = False
    rig.run(10)
    assert rig.caught_up()
    assert len(rig.dead.letters) == 1


def test_a_failed_commit_is_retried_without_inserting_again() -> None:
    rig = Rig(rows=10)
    ids = rig.produce(10)
    rig.log.commit_fails = True
    rig.run(10)
    inserted = rig.warehouse.attempts
    rig.log.commit_fails = False
    rig.run(10)  # the next try is at most the longest backoff (5 s, +20 % jitter) away
    assert rig.caught_up()
    assert rig.warehouse.attempts == inserted
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)


def test_a_rebalance_drops_the_batch_and_reads_it_again_from_its_first_offsets() -> None:
    rig = Rig(rows=100, seconds=5.0)
    ids = rig.produce(60)
    rig.loop.step()  # the 60 records are in the batch, not yet due
    assert rig.log.commits == 0
    rig.log.revoke_on_next_poll = True  # the partitions stay here and keep their positions
    ids += rig.produce(30, start=60)
    rig.run(10)
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)  # each once, none lost
    assert rig.caught_up()


def test_a_rebalance_during_an_outage_loses_nothing() -> None:
    rig = Rig(rows=20)
    ids = rig.produce(50)
    rig.warehouse.down = True
    rig.run(3)
    rig.log.revoke_on_next_poll = True
    rig.run(3)
    rig.warehouse.down = False
    rig.run(30)
    assert sorted(set(rig.warehouse.message_ids())) == sorted(ids)
    assert rig.caught_up()


@pytest.mark.parametrize("call", ["commit", "pause_all", "resume_all"])
def test_a_rebalance_heard_inside_any_call_to_the_consumer_loses_and_holds_back_nothing(
    call: str,
) -> None:
    """The member serves a rebalance inside whichever of its calls is running; the loop must
    come out of it reading, not waiting for a retry of a batch it dropped or paused."""
    rig = Rig(rows=10)
    ids = rig.produce(30)
    if call != "commit":
        rig.log.commit_fails = True  # a failed commit pauses, and its success resumes
    rig.loop.step()
    rig.log.revoke_inside = call
    rig.run(2)
    rig.log.commit_fails = False
    ids += rig.produce(30, start=30)
    rig.run(30)
    assert rig.log.revoke_inside is None, "the rebalance happened"
    assert sorted(set(rig.warehouse.message_ids())) == sorted(ids)
    assert rig.caught_up()


def test_records_of_a_partition_that_moved_away_are_not_committed_here() -> None:
    rig = Rig(rows=100)
    moved = (RAW, 2)
    ids = rig.produce(30)
    rig.log.moves_away = moved  # its records came with the poll that heard of the move
    rig.run(5)
    rig.produce(30, start=30)
    rig.run(5)
    assert moved not in rig.log.committed  # the new owner reads them again
    assert all(rig.log.committed[p] == len(rig.log.records[p]) for p in rig.log.position)
    assert set(ids) <= set(rig.warehouse.message_ids())


@pytest.mark.parametrize("down", ["warehouse", "dead letters"])
def test_stopping_during_an_outage_commits_nothing(down: str) -> None:
    rig = Rig(rows=10)
    rig.produce(10)
    rig.log.produce(0, b"garbage")
    if down == "warehouse":
        rig.warehouse.down = True
    else:
        rig.dead.down = True
    rig.run(5)
    assert not rig.loop.flush()
    assert rig.log.committed == {}


class HeldWriter:
    """A writer whose inserts run only when the test says so, as if the engine were slow."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], None], Future[None]]] = []

    def submit(self, fn: Callable[[], None], /) -> Future[None]:
        future: Future[None] = Future()
        self.queue.append((fn, future))
        return future

    def finish(self) -> None:
        """Run every insert handed over so far, in order."""
        queue, self.queue = self.queue, []
        for fn, future in queue:
            try:
                fn()
            except Exception as error:  # noqa: BLE001 - handed back through the future
                future.set_exception(error)
            else:
                future.set_result(None)


def held_rig(rows: int) -> tuple[Rig, HeldWriter]:
    rig = Rig(rows=rows)
    writer = HeldWriter()
    rig.loop = SinkLoop(
        rig.log,
        rig.warehouse,
        rig.dead,
        SPECS,
        BatchLimits(rows=rows, bytes=10**9, seconds=1.0),
        Backoff(initial=0.2, maximum=5.0),
        writer=writer,
        clock=rig.clock,
        ping=rig.warehouse.ping,
    )
    rig.log.on_revoked = rig.loop.revoked
    return rig, writer


def test_the_next_batch_is_read_while_an_insert_runs_and_commits_keep_their_order() -> None:
    rig, writer = held_rig(rows=30)
    ids = rig.produce(90)
    rig.loop.step()  # batch 1 due: handed to the writer
    assert len(writer.queue) == 1
    rig.loop.step()  # batch 2 read and decoded meanwhile
    rig.loop.step()
    assert rig.log.commits == 0
    assert len(writer.queue) == 1  # never two inserts at once
    assert sum(rig.log.position.values()) == 60
    writer.finish()
    rig.loop.step()  # batch 1 committed, batch 2 handed over
    assert rig.log.commits == 1
    assert rig.log.committed == {(RAW, 0): 30}  # the fake log hands out partition 0 first
    assert len(writer.queue) == 1
    for _ in range(10):
        writer.finish()
        rig.loop.step()
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)
    assert rig.caught_up()
    assert rig.log.commits == 3


def test_a_rebalance_during_an_insert_reads_both_batches_again() -> None:
    rig, writer = held_rig(rows=30)
    ids = rig.produce(50)
    rig.loop.step()
    rig.loop.step()  # one batch in the writer, twenty records in the next
    rig.log.revoke_on_next_poll = True
    rig.loop.step()
    writer.finish()  # the dropped insert ends after the rebalance: harmless, never committed
    assert rig.log.committed == {}
    for _ in range(20):
        writer.finish()
        rig.loop.step()
    assert sorted(set(rig.warehouse.message_ids())) == sorted(ids)
    assert rig.caught_up()


def test_a_failed_insert_holds_the_next_batch_back_until_it_succeeds() -> None:
    rig, writer = held_rig(rows=30)
    rig.warehouse.down = True
    ids = rig.produce(90)
    rig.loop.step()
    writer.finish()
    rig.loop.step()  # the failure is seen: back off, stop fetching
    assert not rig.loop.health.warehouse_ok
    assert rig.log.paused
    rig.warehouse.down = False
    for _ in range(200):
        writer.finish()
        rig.loop.step()
        if rig.caught_up():
            break
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)
    assert rig.caught_up()


def test_flush_waits_for_the_insert_in_progress_then_writes_the_rest() -> None:
    rig = Rig(rows=30)
    with ThreadPoolExecutor(max_workers=1) as pool:
        rig.loop = SinkLoop(
            rig.log,
            rig.warehouse,
            rig.dead,
            SPECS,
            BatchLimits(rows=30, bytes=10**9, seconds=1.0),
            Backoff(initial=0.2, maximum=5.0),
            writer=pool,
            clock=rig.clock,
        )
        ids = rig.produce(45)
        rig.loop.step()
        rig.loop.step()
        assert rig.loop.flush()
    assert sorted(rig.warehouse.message_ids()) == sorted(ids)
    assert rig.caught_up()


def test_a_consumer_that_stops_fetching_what_it_owns_is_given_up() -> None:
    rig = Rig(rows=10)
    rig.produce(10)
    rig.run(5)
    assert rig.caught_up()
    rig.run(STALL_SECONDS * 2)  # idle with nothing to read: fine
    rig.log.wedged = True
    rig.produce(5, start=10)
    with pytest.raises(ConsumerStalledError, match="5 waiting in"):
        rig.run(STALL_SECONDS * 2)
