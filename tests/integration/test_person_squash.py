"""The person squash on the real embedded engine: person-aware answers are the same before a
squash, while it runs, after it, with overrides and events that come after it, and after a
split; the squashed events carry their persons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from sextant.cli.main import app as cli
from sextant.core.config_plane import ConfigFollower, ConfigPublisher
from sextant.core.kafka import read_all
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.gateway import insights, persons
from sextant.gateway.context import Gateway
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.config import MetricDefinition
from sextant.schemas.topics import Topic, topic_name
from sextant.sink import squash
from sextant.sink.retention import RetentionService
from sextant.sink.settings import SinkSettings
from tests.infra import wait_for
from tests.integration.persons_support import insert_event, insert_override

DAY = datetime(2025, 3, 3, tzinfo=UTC)
RANGE = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=3)).isoformat()}
TREND = insights.TrendsQuery.model_validate(
    {"event": "Viewed", "measure": "unique_users", "interval": "day"} | RANGE
)
FUNNEL = insights.FunnelQuery.model_validate(
    {"steps": [{"event": "Viewed"}, {"event": "Paid"}], "window_seconds": 3 * 86400} | RANGE
)
RETENTION = insights.RetentionQuery.model_validate(
    {"cohort_event": "Viewed", "return_event": "Paid", "periods": 2} | RANGE
)


class World:
    """The events and overrides written so far, and what they mean for persons."""

    def __init__(self, warehouse: Warehouse, gateway: Gateway) -> None:
        self.warehouse = warehouse
        self.gateway = gateway
        self.events: list[tuple[str, str, datetime]] = []
        self.overrides: dict[str, tuple[int, str]] = {}

    def send(self, distinct_id: str, event: str, day: int) -> None:
        at = DAY + timedelta(days=day, hours=1)
        insert_event(self.warehouse, distinct_id, event, at)
        self.events.append((distinct_id, event, at))

    def link(self, distinct_id: str, person_id: str) -> None:
        version = len(self.overrides) + 100
        insert_override(self.warehouse, distinct_id, person_id, version)
        self.overrides[distinct_id] = (version, person_id)

    def person(self, distinct_id: str) -> str:
        return self.overrides.get(distinct_id, (0, distinct_id))[1]

    def expected_trend(self) -> list[int]:
        """Unique persons who viewed, per day: computed here, not by the warehouse."""
        days: list[set[str]] = [set(), set(), set()]
        for distinct_id, event, at in self.events:
            if event == "Viewed":
                days[(at - DAY).days].add(self.person(distinct_id))
        return [len(d) for d in days]

    def trend(self) -> list[int]:
        return [p.value for p in insights.trends(self.gateway, "acme", TREND).series[0].points]

    def answers(self) -> tuple[Any, ...]:
        return (
            self.trend(),
            insights.funnel(self.gateway, "acme", FUNNEL).model_dump(),
            insights.retention(self.gateway, "acme", RETENTION).model_dump(),
        )

    def answers_joining_every_override(self) -> tuple[Any, ...]:
        """The same queries with every override applied at query time, the squash ignored."""

        def every_override(params: Any, project_id: str, id_sql: str | None = None) -> str:
            source = id_sql or "_src.distinct_id"
            return persons.with_person(params, project_id, "events_unique", source)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(insights, "person_events", every_override)
            return self.answers()

    def check(self) -> None:
        answers = self.answers()
        assert answers[0] == self.expected_trend()
        assert answers == self.answers_joining_every_override()


@pytest.fixture
def world(warehouse: Warehouse, warehouse_url: str) -> World:
    settings = GatewaySettings(clickhouse_url=warehouse_url)
    return World(warehouse, Gateway(settings, ConfigFollower(settings)))


def _seed(world: World) -> None:
    for day, ids in enumerate((["anon-1", "user-1", "anon-2", "solo"], ["user-2", "anon-1"])):
        for distinct_id in ids:
            world.send(distinct_id, "Viewed", day)
    world.send("user-1", "Paid", 1)
    world.send("anon-2", "Paid", 2)
    world.link("anon-1", "user-1")
    world.link("anon-2", "user-2")


def _unsquashed(warehouse: Warehouse) -> int:
    [[count]] = warehouse.query_rows(
        "SELECT count() FROM person_overrides FINAL WHERE NOT squashed"
    )
    return int(count)


def test_answers_are_the_same_before_and_after_a_squash(world: World) -> None:
    _seed(world)
    world.check()
    before = world.answers()

    result = squash.squash_persons(world.warehouse)

    assert (result.overrides, result.unstamped_events) == (2, len(world.events))
    assert _unsquashed(world.warehouse) == 0
    stamped = world.warehouse.query_rows(
        "SELECT DISTINCT distinct_id, person_id FROM events ORDER BY distinct_id"
    )
    assert stamped == [(d, world.person(d)) for d in sorted({e[0] for e in world.events})]
    assert world.answers() == before
    world.check()
    assert squash.squash_persons(world.warehouse).overrides == 0


def test_a_query_while_the_squash_writes_counts_the_same_persons(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(world)
    before = world.answers()
    seen: list[tuple[Any, ...]] = []
    mark: Callable[[Warehouse, str], None] = squash._mark_squashed

    def query_then_mark(warehouse: Warehouse, rows: str) -> None:
        seen.append(world.answers())  # persons written onto the events, overrides unsquashed
        world.link("solo", "user-2")  # an edge arriving meanwhile: not in this round
        seen.append(world.answers())
        mark(warehouse, rows)

    monkeypatch.setattr(squash, "_mark_squashed", query_then_mark)
    squash.squash_persons(world.warehouse)

    assert seen[0] == before
    assert seen[1][0] == world.expected_trend() != before[0]
    assert _unsquashed(world.warehouse) == 1
    world.check()


def test_overrides_and_events_after_a_squash_count_at_once(world: World) -> None:
    _seed(world)
    squash.squash_persons(world.warehouse)

    world.send("anon-1", "Viewed", 2)  # a squashed id's new event: no person on it yet
    world.send("anon-3", "Viewed", 2)
    world.send("user-1", "Viewed", 2)
    world.link("anon-3", "user-1")  # a merge after the squash
    world.link("anon-2", "solo")  # an id moved to another person after the squash
    world.check()

    assert squash.squash_persons(world.warehouse).overrides == 2
    world.check()


def test_rows_squashed_before_their_person_hash_count_the_same_persons(world: World) -> None:
    """Rows a squash stamped before ``person_hash`` existed (``person_id`` set, hash 0) are
    looked up through every override, and the next squash writes their hashes."""
    _seed(world)
    squash.squash_persons(world.warehouse)
    before = world.answers()
    world.warehouse.command(
        "ALTER TABLE events UPDATE person_hash = 0 WHERE 1 SETTINGS mutations_sync = 1"
    )
    assert world.answers() == before
    world.check()

    assert squash.squash_persons(world.warehouse).unstamped_events == len(world.events)
    [[unhashed]] = world.warehouse.query_rows(
        "SELECT count() FROM events WHERE person_hash != cityHash64(person_id)"
    )
    assert unhashed == 0
    assert world.answers() == before


def test_a_split_after_a_squash_gives_the_events_back_to_their_ids(world: World) -> None:
    _seed(world)
    squash.squash_persons(world.warehouse)
    merged = world.trend()

    world.link("anon-1", "anon-1")  # an admin split: the id is its own person again
    world.check()
    assert world.trend() != merged

    squash.squash_persons(world.warehouse)
    world.check()
    [[person]] = world.warehouse.query_rows(
        "SELECT DISTINCT person_id FROM events WHERE distinct_id = 'anon-1'"
    )
    assert person == "anon-1"


def test_an_override_sent_again_after_its_squash_changes_nothing(world: World) -> None:
    _seed(world)
    squash.squash_persons(world.warehouse)
    version, person = world.overrides["anon-1"]
    world.warehouse.insert(  # the resolver's record replayed: the same version again
        "person_overrides",
        [["acme", "anon-1", person, version, datetime.now(UTC)]],
        ["project_id", "distinct_id", "person_id", "version", "updated_at"],
    )
    assert _unsquashed(world.warehouse) == 1
    world.check()
    assert squash.squash_persons(world.warehouse).overrides == 1
    assert _unsquashed(world.warehouse) == 0
    world.check()


def test_the_command_line_squashes_now(
    world: World, warehouse_url: str, kafka_settings: KafkaSection
) -> None:
    _seed(world)
    before = world.answers()
    publisher = ConfigPublisher(kafka_settings)
    publisher.put(
        [
            MetricDefinition(
                id="viewers", project_id="acme", metric_kind="unique_users", event="Viewed"
            )
        ]
    )
    publisher.close()
    env = {
        "SEXTANT_CLICKHOUSE_URL": warehouse_url,
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
    }

    done = CliRunner().invoke(cli, ["persons", "squash"], env=env)

    assert done.exit_code == 0, done.output
    assert "squashed 2 overrides" in done.output
    assert _unsquashed(world.warehouse) == 0
    assert world.answers() == before
    # Both days' minutes of viewers held a linked id: counted again by person.
    assert "2 live windows counted again by person" in " ".join(done.output.split())
    topic = topic_name(Topic.METRIC_POINTS, kafka_settings.topic_prefix)
    points = [orjson.loads(r.value) for r in read_all(kafka_settings, topic)]
    assert sorted(p["count"] for p in points) == [2, 4]  # the minutes' Viewed events


def test_the_sink_squashes_on_its_interval(
    world: World, warehouse_url: str, kafka_settings: KafkaSection
) -> None:
    _seed(world)
    settings = SinkSettings(
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=kafka_settings.topic_prefix,
        clickhouse_url=warehouse_url,
        sink_person_squash_interval_seconds=0.2,
    )
    service = RetentionService(settings, open_warehouse=lambda _: world.warehouse)
    service.start()
    try:
        wait_for(lambda: _unsquashed(world.warehouse) == 0, 60, message="first squash")
        world.check()
        world.send("solo", "Viewed", 2)
        world.link("solo", "user-1")
        wait_for(lambda: _unsquashed(world.warehouse) == 0, 60, message="a later squash")
        world.check()
        [[person]] = world.warehouse.query_rows(
            "SELECT DISTINCT person_id FROM events WHERE distinct_id = 'solo'"
        )
        assert person == "user-1"
    finally:
        service.stop()
