"""Live windows counted again by person on the real embedded engine: after a squash round
links an anonymous id to a known user, the minutes holding either's events are recomputed by
person (unique users, conversions), only once the live processor has closed them, and a
minute still open in one round is recomputed in a later one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sextant.core.config_plane import ConfigState
from sextant.core.metric_history import BACKFILL_VERSION_BASE, window_groups
from sextant.core.warehouse import Warehouse
from sextant.schemas.config import MetricDefinition, Project
from sextant.schemas.metric_values import unique_users_of
from sextant.schemas.records import MetricPoint
from sextant.schemas.sketches import hll_pack, hll_unpack
from sextant.schemas.windows import WindowId, to_point
from sextant.sink.corrections import correct_windows, recount
from sextant.sink.squash import ChangedMinutes, changed_since, squash_persons
from tests.integration.persons_support import insert_event, insert_override

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
HOUR_AGO = NOW - timedelta(hours=1)
LATENESS = 300
PROJECTS = {"acme": Project(id="acme", project_id="acme", name="Acme")}
VISITORS = MetricDefinition(
    id="visitors", project_id="acme", metric_kind="unique_users", event="Viewed"
)
BUYERS = MetricDefinition(
    id="buyers",
    project_id="acme",
    metric_kind="conversion",
    event="Viewed",
    conversion_event="Paid",
    conversion_window_seconds=1200,
)


def _correct(
    warehouse: Warehouse,
    changed: dict[tuple[str, str], list[int]],
    now: datetime = NOW,
    projects: dict[str, Project] = PROJECTS,
) -> list[MetricPoint]:
    sent: list[MetricPoint] = []
    correct_windows(warehouse, [VISITORS, BUYERS], projects, changed, sent.append, now)
    return sent


def _users(points: list[MetricPoint]) -> int:
    """Unique users over every point given (their registers merged), rounded as the
    metric's value is."""
    registers = bytearray(2**16)
    for point in points:
        hll_unpack(point.hll, into=registers)
    estimate = unique_users_of(sum(p.count for p in points), hll_pack(registers))
    assert estimate is not None
    return round(estimate)


def _id_counted(warehouse: Warehouse) -> list[MetricPoint]:
    """What live counted: the minutes' points before any person was known."""
    groups = window_groups(warehouse, VISITORS, HOUR_AGO - timedelta(hours=1), NOW)
    return [
        to_point(WindowId("acme", VISITORS.id, VISITORS.metric_kind, start), name, group, 1, NOW)
        for start, found in groups.items()
        for name, group in found.items()
    ]


@pytest.fixture
def visits(warehouse: Warehouse) -> Warehouse:
    """anon-1 views an hour ago, signs up as user-1, views and pays ten minutes later;
    anon-9 views and is never linked."""
    insert_event(warehouse, "anon-1", "Viewed", HOUR_AGO)
    insert_event(warehouse, "anon-9", "Viewed", HOUR_AGO + timedelta(seconds=5))
    insert_event(warehouse, "user-1", "Viewed", HOUR_AGO + timedelta(minutes=10))
    insert_event(warehouse, "user-1", "Paid", HOUR_AGO + timedelta(minutes=11))
    return warehouse


def test_unique_users_and_conversions_count_persons_after_the_squash(
    visits: Warehouse,
) -> None:
    live = _id_counted(visits)
    assert _users(live) == 3  # anon-1, anon-9 and user-1 apart
    first_minute = window_groups(visits, BUYERS, HOUR_AGO, HOUR_AGO + timedelta(minutes=1))
    [by_id] = first_minute.values()
    assert (by_id[""].denominator, by_id[""].count) == (2, 0)  # anon-1 never paid as anon-1
    insert_override(visits, "anon-1", "user-1", 100)

    changed = squash_persons(visits, recheck_since=None).changed_windows
    first, later = int(HOUR_AGO.timestamp()), int((HOUR_AGO + timedelta(minutes=10)).timestamp())
    assert changed == {
        ("acme", "Viewed"): ChangedMinutes(of_ids=[first], of_persons=[first, later]),
        ("acme", "Paid"): ChangedMinutes(of_ids=[], of_persons=[later + 60]),
    }
    points = _correct(visits, changed)

    # Only anon-1's minute: user-1's own minute counted user-1 already.
    [visitors] = [p for p in points if p.metric == "visitors"]
    assert int(visitors.window_start.timestamp()) == first
    assert all(p.version > BACKFILL_VERSION_BASE for p in points)
    [kept] = [p for p in live if int(p.window_start.timestamp()) == later]
    assert _users([visitors, kept]) == 2  # user-1 (both ids) and anon-9 over both minutes
    # The first minute's viewers: user-1 (as anon-1), who paid 11 minutes later, and anon-9.
    [conversion] = [
        p for p in points if p.metric == "buyers" and p.window_start.timestamp() == first
    ]
    assert (conversion.denominator, conversion.count) == (2, 1)


def test_between_squash_rounds_the_linked_ids_windows_are_counted_again(
    visits: Warehouse,
) -> None:
    """The same minutes and points as after a squash, with nothing written onto the events:
    user-1's own events are not stamped with their person, and are found by their id."""
    assert _users(_id_counted(visits)) == 3
    two_days_ago = NOW - timedelta(days=2)
    insert_event(visits, "anon-1", "Viewed", two_days_ago)  # left to the next squash round
    insert_override(visits, "anon-1", "user-1", 100, updated_at=NOW)  # linked "now"
    first, later = int(HOUR_AGO.timestamp()), int((HOUR_AGO + timedelta(minutes=10)).timestamp())
    viewed = [("acme", "Viewed")]
    since, day_ago = NOW - timedelta(minutes=5), NOW - timedelta(days=1)
    assert changed_since(visits, since, viewed, day_ago) == {
        ("acme", "Viewed"): ChangedMinutes(of_ids=[first], of_persons=[first, later])
    }
    # Only the metrics' own events are read, and only overrides updated since.
    assert changed_since(visits, since, [("acme", "Paid")], day_ago) == {
        ("acme", "Paid"): ChangedMinutes(of_ids=[], of_persons=[later + 60])
    }
    assert changed_since(visits, NOW + timedelta(minutes=5), viewed, day_ago) == {}
    old = int(two_days_ago.timestamp())
    assert changed_since(visits, since, viewed, two_days_ago) == {
        ("acme", "Viewed"): ChangedMinutes(of_ids=[old, first], of_persons=[old, first, later])
    }

    config = ConfigState()
    for document in (PROJECTS["acme"], VISITORS, BUYERS):
        config.apply(document.config_key(), document)
    sent: list[MetricPoint] = []
    correction = recount(visits, config, sent.append, 120, NOW)
    assert (correction.windows, correction.points) == (3, len(sent))
    [visitors] = [p for p in sent if p.metric == "visitors"]
    assert int(visitors.window_start.timestamp()) == first
    [kept] = [p for p in _id_counted(visits) if int(p.window_start.timestamp()) == later]
    assert _users([visitors, kept]) == 2  # user-1 (both ids) and anon-9, as after a squash
    [conversion] = [p for p in sent if p.metric == "buyers" and p.window_start.timestamp() == first]
    assert (conversion.denominator, conversion.count) == (2, 1)
    [[unstamped]] = visits.query_rows("SELECT count() FROM events WHERE person_hash = 0")
    assert unstamped == 5


def test_a_recount_counts_again_the_minutes_closed_since_the_last_one(
    warehouse: Warehouse,
) -> None:
    """An id linked while its minutes were open, four minutes ago: each recount counts
    again the minutes that closed since the round before, not those it counted then."""
    early, late = NOW - timedelta(minutes=8), NOW - timedelta(minutes=6)
    for at in (early, late):
        insert_event(warehouse, "anon-4", "Viewed", at)
        insert_event(warehouse, "user-4", "Viewed", at)
    insert_override(warehouse, "anon-4", "user-4", 100, updated_at=NOW - timedelta(minutes=4))
    config = ConfigState()
    for document in (PROJECTS["acme"], VISITORS):
        config.apply(document.config_key(), document)

    def recount_at(now: datetime, previous: datetime | None) -> list[MetricPoint]:
        sent: list[MetricPoint] = []
        recount(warehouse, config, sent.append, 120, now, previous)
        return sent

    # The minute of `late` closed (lateness and a minute behind) since the last round; the
    # minute of `early` had closed before it, and was counted again then.
    [point] = recount_at(NOW + timedelta(minutes=1), previous=NOW - timedelta(seconds=30))
    assert point.window_start == late
    assert _users([point]) == 1
    assert recount_at(NOW + timedelta(minutes=2), previous=NOW + timedelta(minutes=1)) == []
    # Without the last round's time, two intervals back stand for it.
    [point] = recount_at(NOW + timedelta(minutes=1), previous=None)
    assert point.window_start == late


def test_a_minute_still_open_is_counted_again_in_a_later_round(warehouse: Warehouse) -> None:
    recent = NOW - timedelta(minutes=2)  # within the lateness: live may still count it
    insert_event(warehouse, "anon-2", "Viewed", recent)
    insert_event(warehouse, "user-2", "Viewed", recent)
    insert_override(warehouse, "anon-2", "user-2", 100)

    changed = squash_persons(warehouse).changed_windows
    minute = int(recent.timestamp())
    assert changed == {("acme", "Viewed"): ChangedMinutes([minute], [minute])}
    assert _correct(warehouse, changed) == []  # not closed yet: left to live for now

    # The next round: nothing new to squash, but the override is recent enough to look at.
    assert squash_persons(warehouse).changed_windows == {}
    again = squash_persons(warehouse, recheck_since=NOW - timedelta(hours=1)).changed_windows
    assert again == changed
    later = NOW + timedelta(seconds=LATENESS + 60)
    visitors = [p for p in _correct(warehouse, again, later) if p.metric == "visitors"]
    assert len(visitors) == 1
    assert _users(visitors) == 1


def test_minutes_retention_may_have_cut_into_are_left_as_they_were(
    warehouse: Warehouse,
) -> None:
    old = NOW - timedelta(days=3)
    insert_event(warehouse, "anon-3", "Viewed", old)
    insert_event(warehouse, "user-3", "Viewed", old)
    insert_override(warehouse, "anon-3", "user-3", 100)
    changed = squash_persons(warehouse).changed_windows

    def keeping(days: int) -> dict[str, Project]:
        return {"acme": PROJECTS["acme"].model_copy(update={"raw_event_retention_days": days})}

    assert _correct(warehouse, changed, projects=keeping(2)) == []
    [point] = [
        p for p in _correct(warehouse, changed, projects=keeping(4)) if p.metric == "visitors"
    ]
    assert _users([point]) == 1
