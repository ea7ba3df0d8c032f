"""Person properties as filters and breakdowns of trends, funnels and retention, on the real
engine: every answer equals one computed here from the generated identify calls, events and
links, and each person's value equals the one the person's page shows."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sextant.sink import squash
from tests.integration.test_gateway_harness import Harness, make_harness

DAY = datetime(2025, 3, 3, tzinfo=UTC)
RANGE = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=4)).isoformat()}
PERIODS = 3
PLANS = ("free", "pro", "team")


@dataclass
class Call:
    """One call that sets person properties: ``kind`` is a Segment identify (traits),
    PostHog's $set or $set_once, with an identify or with any other event."""

    distinct_id: str
    at: datetime
    kind: str
    values: dict[str, Any]
    on_event: bool = False
    """$set or $set_once sent with a captured event (``posthog.capture(..., {$set})``)."""


@dataclass
class World:
    links: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    events: list[tuple[str, str, datetime]] = field(default_factory=list)

    def person(self, distinct_id: str) -> str:
        return self.links.get(distinct_id, distinct_id)

    def value(self, person: str, name: str) -> Any:
        """The newest call that sets ``name`` wins; else the first $set_once of it."""
        mine = sorted(
            (c for c in self.calls if self.person(c.distinct_id) == person and name in c.values),
            key=lambda c: c.at,
        )
        setting = [c for c in mine if c.kind != "set_once"]
        if setting:
            return setting[-1].values[name]
        return mine[0].values[name] if mine else None

    def people(self) -> set[str]:
        return {self.person(d) for d, _, _ in self.events}


def _calls_and_events(world: World) -> None:
    # The cases named in the documentation: free while anonymous, pro once identified...
    world.links["anon-ada"] = "ada"
    world.calls += [
        Call("anon-ada", DAY - timedelta(days=2), "set", {"plan": "free"}),
        Call("ada", DAY - timedelta(days=1), "set", {"plan": "pro", "seats": 42}),
        # ...and a later $set_once that must not override either person's value
        Call("anon-ada", DAY + timedelta(days=1), "set_once", {"plan": "team"}),
        Call("bob", DAY - timedelta(days=1), "segment", {"plan": "team", "seats": 12}),
        Call("bob", DAY, "set_once", {"plan": "free", "seats": 1}),
        # a captured event's $set sets as an identify's does
        Call("bob", DAY + timedelta(hours=5), "set", {"seats": 30}, on_event=True),
    ]
    world.events += [
        ("anon-ada", "Viewed", DAY + timedelta(hours=1)),
        ("ada", "Viewed", DAY + timedelta(days=1, hours=2)),
        ("ada", "Paid", DAY + timedelta(days=2, hours=2)),
        ("bob", "Viewed", DAY + timedelta(hours=3)),
    ]
    rng = random.Random(20250303)
    for i in range(40):
        ids = [f"anon-{i}", f"user-{i}"] if i % 3 else [f"anon-{i}"]
        if len(ids) == 2:
            world.links[ids[0]] = ids[1]
        for minute in rng.sample(range(-3 * 1440, 6 * 1440), rng.randrange(0, 4)):
            kind = rng.choice(("segment", "set", "set_once"))
            values = {"plan": rng.choice(PLANS)}
            if rng.random() < 0.5:
                values["seats"] = rng.randrange(1, 20)
            on_event = kind != "segment" and rng.random() < 0.3
            at = DAY + timedelta(minutes=minute)
            world.calls.append(Call(rng.choice(ids), at, kind, values, on_event))
        for minute in rng.sample(range(5 * 1440), rng.randrange(1, 5)):
            event = rng.choice(("Viewed", "Viewed", "Paid"))
            world.events.append((rng.choice(ids), event, DAY + timedelta(minutes=minute)))


def _rows(world: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for call in world.calls:
        properties = {"$set": call.values} if call.kind == "set" else {}
        if call.kind == "set_once":
            properties = {"$set_once": call.values}
        if call.on_event:
            # a track event: its traits (none are sent) would never be read
            kind = {"type": "track", "event": "Clicked", "traits": {}}
        else:
            kind = {"type": "identify", "traits": call.values}
        rows.append(
            kind | {"distinct_id": call.distinct_id, "timestamp": call.at, "properties": properties}
        )
    for distinct_id, event, at in world.events:
        rows.append(
            {
                "event": event,
                "distinct_id": distinct_id,
                "timestamp": at,
                "traits": {},
                # an event property of the same name, which a person filter must not read
                "properties": {"plan": "on-the-event"},
            }
        )
    return rows


@pytest.fixture(scope="module")
def world() -> World:
    built = World()
    _calls_and_events(built)
    return built


@pytest.fixture(scope="module")
def harness(kafka_bootstrap: str, warehouse_root: Path, world: World) -> Iterator[Harness]:
    with make_harness(kafka_bootstrap, warehouse_root) as running:
        running.insert_events(_rows(world))
        running.warehouse.insert(
            "person_overrides",
            [
                ["acme", source, target, 1, datetime.now(UTC)]
                for source, target in world.links.items()
            ],
            ["project_id", "distinct_id", "person_id", "version", "updated_at"],
        )
        yield running


def _post(h: Harness, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    response = h.client.post(f"/v1/insights/{kind}", json=body | RANGE, headers=h.read)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _in_range(at: datetime) -> bool:
    return DAY <= at < DAY + timedelta(days=4)


def _label(value: Any) -> str | None:
    return None if value is None else str(value)


def _totals(result: dict[str, Any]) -> dict[str | None, int]:
    return {s["breakdown"]: s["total"] for s in result["series"]}


def test_a_person_counts_under_their_current_value_for_events_under_every_id(
    harness: Harness, world: World
) -> None:
    trend = {
        "event": "Viewed",
        "interval": "day",
        "breakdown": {"property": "plan", "type": "person"},
    }
    ada = _post(
        harness,
        "trends",
        trend | {"filters": [{"property": "seats", "type": "person", "op": "eq", "value": 42}]},
    )
    assert _totals(ada) == {"pro": 2}  # the events as anon-ada and as ada, $set_once ignored
    assert world.value("ada", "plan") == "pro"
    assert world.value("bob", "plan") == "team"
    assert world.value("bob", "seats") == 30

    everyone = _post(harness, "trends", trend)
    expected = Counter(
        _label(world.value(world.person(d), "plan"))
        for d, event, at in world.events
        if event == "Viewed" and _in_range(at)
    )
    assert _totals(everyone) == dict(expected)

    by_event = _post(harness, "trends", {"event": "Viewed", "breakdown": "plan"})
    assert _totals(by_event) == {"on-the-event": sum(expected.values())}


def test_unique_persons_per_day_by_a_person_property(harness: Harness, world: World) -> None:
    result = _post(
        harness,
        "trends",
        {
            "event": "Viewed",
            "measure": "unique_users",
            "interval": "day",
            "breakdown": {"property": "plan", "type": "person"},
            "filters": [{"property": "seats", "type": "person", "op": "gt", "value": 5}],
        },
    )
    expected: dict[str | None, list[set[str]]] = {}
    for distinct_id, event, at in world.events:
        person = world.person(distinct_id)
        seats = world.value(person, "seats")
        if event != "Viewed" or not _in_range(at) or seats is None or seats <= 5:
            continue
        days = expected.setdefault(_label(world.value(person, "plan")), [set() for _ in range(4)])
        days[(at - DAY).days].add(person)
    got = {s["breakdown"]: [p["value"] for p in s["points"]] for s in result["series"]}
    assert got == {label: [len(d) for d in days] for label, days in expected.items()}
    assert got  # the data holds such persons


def test_filters_select_exactly_the_persons_with_the_value(harness: Harness, world: World) -> None:
    for op, value, keep in (
        ("eq", "pro", lambda v: v == "pro"),
        ("in", ["free", "team"], lambda v: v in ("free", "team")),
        ("exists", False, lambda v: v is None),
    ):
        persons = {p for p in world.people() if keep(world.value(p, "plan"))}
        result = _post(
            harness,
            "trends",
            {
                "event": "Viewed",
                "measure": "unique_users",
                "filters": [{"property": "plan", "type": "person", "op": op, "value": value}],
            },
        )
        viewed = {
            world.person(d) for d, event, at in world.events if event == "Viewed" and _in_range(at)
        }
        assert result["series"][0]["total"] == len(persons & viewed), op


def test_person_values_equal_the_persons_page(harness: Harness, world: World) -> None:
    for person in sorted(world.people()):
        response = harness.client.get(f"/v1/persons/{person}", headers=harness.read)
        assert response.status_code == 200, response.text
        shown = response.json()["properties"]
        assert shown.get("plan") == world.value(person, "plan"), person
        assert shown.get("seats") == world.value(person, "seats"), person


def _funnel_expected(world: World, keep: Any) -> dict[str | None, list[int]]:
    """Persons who viewed in the range and paid later (the window covers it all)."""
    views: dict[str, datetime] = {}
    pays: dict[str, list[datetime]] = {}
    for distinct_id, event, at in world.events:
        person = world.person(distinct_id)
        if event == "Viewed" and _in_range(at) and keep(person):
            views[person] = min(at, views.get(person, at))
        elif event == "Paid":
            pays.setdefault(person, []).append(at)
    groups: dict[str | None, list[int]] = {}
    for person, first in views.items():
        counts = groups.setdefault(_label(world.value(person, "plan")), [0, 0])
        counts[0] += 1
        counts[1] += any(first < at for at in pays.get(person, []))
    return groups


def test_funnels_filter_and_break_down_by_person_properties(harness: Harness, world: World) -> None:
    seats = {"property": "seats", "type": "person", "op": "lt", "value": 10}
    result = _post(
        harness,
        "funnels",
        {
            "steps": [{"event": "Viewed", "filters": [seats]}, {"event": "Paid"}],
            "window_seconds": 7 * 86400,
            "breakdown": {"property": "plan", "type": "person"},
        },
    )
    got = {g["breakdown"]: [s["users"] for s in g["steps"]] for g in result["groups"]}

    def few_seats(person: str) -> bool:
        value = world.value(person, "seats")
        return value is not None and value < 10

    assert got == _funnel_expected(world, few_seats)
    assert got["pro"][0] >= 1  # ada


def test_retention_cohorts_filtered_by_a_person_property(harness: Harness, world: World) -> None:
    pro = [{"property": "plan", "type": "person", "op": "eq", "value": "pro"}]
    result = _post(
        harness,
        "retention",
        {
            "cohort_event": "Viewed",
            "return_event": "Paid",
            "periods": PERIODS,
            "cohort_filters": pro,
            "return_filters": pro,
        },
    )
    cohorts: dict[str, datetime] = {}
    for distinct_id, event, at in world.events:
        person = world.person(distinct_id)
        if event == "Viewed" and _in_range(at) and world.value(person, "plan") == "pro":
            day = at.replace(hour=0, minute=0, second=0, microsecond=0)
            cohorts[person] = min(day, cohorts.get(person, day))
    expected: dict[str, list[int]] = {}
    for person, cohort in cohorts.items():
        returned = {
            (at - cohort).days
            for d, event, at in world.events
            if event == "Paid" and world.person(d) == person
        }
        row = expected.setdefault(cohort.isoformat(), [0] * (PERIODS + 1))
        row[0] += 1
        for k in range(1, PERIODS + 1):
            row[k] += k in returned
    got = {c["cohort"].replace("Z", "+00:00"): c["returned"] for c in result["cohorts"]}
    assert got == expected
    assert got


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        (
            {"filters": [{"property": "plan", "type": "group", "op": "eq", "value": "x"}]},
            "filters.0.type",
        ),
        ({"breakdown": {"property": "plan", "type": "cohort"}}, "breakdown.type"),
    ],
)
def test_an_unknown_property_type_is_refused(
    harness: Harness, body: dict[str, Any], parameter: str
) -> None:
    response = harness.client.post(
        "/v1/insights/trends", json={"event": "Viewed"} | body | RANGE, headers=harness.read
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["parameter"] == parameter


def test_answers_are_the_same_after_a_squash(harness: Harness, world: World) -> None:
    """Last in this module: the squash writes each event's person onto the event."""
    by_person = {"property": "plan", "type": "person"}
    queries = [
        ("trends", {"event": "Viewed", "measure": "unique_users", "breakdown": by_person}),
        (
            "funnels",
            {"steps": [{"event": "Viewed"}, {"event": "Paid"}], "breakdown": by_person},
        ),
    ]
    before = [_post(harness, kind, body) for kind, body in queries]

    squash.squash_persons(harness.warehouse)

    assert harness.warehouse.query_rows(
        "SELECT count() FROM events WHERE empty(person_id) OR person_hash = 0"
    ) == [(0,)]
    assert [_post(harness, kind, body) for kind, body in queries] == before
