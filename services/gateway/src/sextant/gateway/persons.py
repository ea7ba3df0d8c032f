"""Persons at query time: every id read through the resolver's overrides.

An id's person is its newest override (``person_overrides FINAL``: the highest version per
id, exact whatever the merges have done), or the id itself when no edge joined
it. :func:`person_events` is ``events_unique`` with a ``person_key`` column (the person's
hash); unique users, trends, funnels, retention and experiment units count that column, so
an event sent before the edge that links its id is counted for its person as soon as the
override is written.

The sink's person squash (:mod:`sextant.sink.squash`) writes each event's person onto the
event (``events.person_id``) and marks the overrides it wrote ``squashed``. An event's person
is then its id's override when that override is not squashed yet or the row has no person
yet (``person_hash`` 0), else its ``person_hash``: the same persons, with only the few
overrides newer than the last squash joined, and no string hashed per row.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from sextant.gateway.context import Gateway
from sextant.gateway.problems import invalid
from sextant.gateway.sql import (
    DATETIME,
    FINAL_PER_PARTITION,
    Params,
    in_range_utc,
    run_query,
    utc,
)


def _map(params: Params, project_id: str) -> str:
    project = params.add(project_id, "String")
    return (
        "(SELECT cityHash64(distinct_id) AS _mapped, cityHash64(person_id) AS _person"
        f" FROM person_overrides FINAL WHERE project_id = {project})"
    )


def _unsquashed_map(params: Params, project_id: str) -> str:
    """The overrides an event's ``person_id`` may not reflect yet: those not squashed, and
    those of ids with a row no squash has seen (FINAL first: a squashed copy hides the
    override it marks)."""
    project = params.add(project_id, "String")
    return (
        "(SELECT cityHash64(distinct_id) AS _mapped, cityHash64(person_id) AS _person"
        f" FROM person_overrides FINAL WHERE project_id = {project} AND (squashed = 0"
        " OR cityHash64(distinct_id) IN (SELECT id_hash FROM events"
        f" WHERE project_id = {project} AND person_hash = 0)))"
    )


def with_person(params: Params, project_id: str, source: str, id_sql: str) -> str:
    """``source`` (a table or a subquery, aliased ``_src``) with a ``person_key`` column: a
    64-bit hash of the person of ``id_sql`` (an expression over ``_src``'s columns). Filters
    on ``source``'s columns are pushed below the join.

    Ids and persons are joined and counted by their hash, as units and users are elsewhere:
    a join on integers costs a fraction of one on strings, and among a billion ids the chance
    that any two share a hash is below 3 in 100,000."""
    id_key = f"cityHash64({id_sql})"
    return _joined(source, _map(params, project_id), id_key, id_key)


def _joined(source: str, person_map: str, id_key: str, default_key: str) -> str:
    return (
        f"(SELECT _src.*, if(_pm._person = 0, {default_key}, _pm._person) AS person_key"
        f" FROM {source} AS _src LEFT ANY JOIN {person_map} AS _pm"
        f" ON {id_key} = _pm._mapped)"
    )


def person_events(params: Params, project_id: str, id_sql: str | None = None) -> str:
    """``events_unique`` with ``person_key``: use it in place of the view. The person is
    that of ``distinct_id``, read from the squashed ``person_id`` where it holds; with
    ``id_sql``, of that expression (through every override)."""
    if id_sql is not None:
        return with_person(params, project_id, "events_unique", id_sql)
    squashed = "if(_src.person_hash = 0, _src.id_hash, _src.person_hash)"
    return _joined("events_unique", _unsquashed_map(params, project_id), "_src.id_hash", squashed)


# --- one person --------------------------------------------------------------------------------


class MergeRecord(BaseModel):
    """A merge, refusal or split the resolver decided for one of the person's ids."""

    kind: str
    source: str
    target: str
    decision: str
    reason: str
    person_id: str
    moved: list[str]
    message_id: str
    timestamp: datetime
    decided_at: datetime


class Person(BaseModel):
    person_id: str
    distinct_ids: list[str]
    first_seen: datetime | None
    last_seen: datetime | None
    properties: dict[str, Any] = Field(
        description="From identify traits and PostHog's $set (last wins) and $set_once "
        "(first wins), with an identify or any other event, in event time"
    )
    merges: list[MergeRecord]


class PersonEvent(BaseModel):
    timestamp: datetime
    event: str
    type: str
    distinct_id: str
    message_id: str
    properties: dict[str, Any]


class PersonEventPage(BaseModel):
    items: list[PersonEvent]
    next_cursor: str | None


MAX_PROPERTY_EVENTS = 1_000
"""The newest calls (identifies, events with $set) a person's properties are built from."""
SETS_PERSON_PROPERTIES = (
    "arrayExists(p -> startsWith(p, '$set.') OR startsWith(p, '$set_once.'),"
    " JSONAllPaths(properties))"
)
"""SQL: the event carries PostHog's ``$set`` or ``$set_once`` (with any event)."""


def person_id_of(gateway: Gateway, project_id: str, distinct_id: str) -> str:
    """The person ``distinct_id`` belongs to (itself when no edge joined it)."""
    params = Params()
    sql = (
        f"SELECT person_id FROM person_map WHERE project_id = {params.add(project_id, 'String')}"
        f" AND distinct_id = {params.add(distinct_id, 'String')}"
    )
    rows = run_query(gateway, "person", sql, params)
    return str(rows[0][0]) if rows else distinct_id


def person_ids(gateway: Gateway, project_id: str, distinct_id: str) -> tuple[str, list[str]]:
    """``(person_id, every id of the person)`` for ``distinct_id``: what deleting a person
    must delete, what its page shows."""
    person_id = person_id_of(gateway, project_id, distinct_id)
    params = Params()
    sql = f"""
        SELECT distinct_id FROM person_map
        WHERE project_id = {params.add(project_id, "String")}
          AND person_id = {params.add(person_id, "String")}
    """
    ids = {str(r[0]) for r in run_query(gateway, "person_ids", sql, params)}
    if person_id_of(gateway, project_id, person_id) == person_id:
        ids.add(person_id)
    return person_id, sorted(ids)


def person(gateway: Gateway, project_id: str, distinct_id: str) -> Person | None:
    """The person of ``distinct_id``, or None when no event or edge names the id."""
    person_id, ids = person_ids(gateway, project_id, distinct_id)
    params = Params()
    scope = (
        f"project_id = {params.add(project_id, 'String')}"
        f" AND distinct_id IN {params.add(ids, 'Array(String)')}"
    )
    seen = run_query(
        gateway,
        "person_seen",
        f"SELECT min(timestamp), max(timestamp), count() FROM events_unique WHERE {scope}",
        params,
        FINAL_PER_PARTITION,
    )
    merges = _merges(gateway, project_id, ids)
    first, last, count = seen[0] if seen else (None, None, 0)
    if not count and not merges:
        return None
    return Person(
        person_id=person_id,
        distinct_ids=ids,
        first_seen=utc(first) if count else None,
        last_seen=utc(last) if count else None,
        properties=_properties(gateway, project_id, ids),
        merges=merges,
    )


def _merges(gateway: Gateway, project_id: str, ids: list[str]) -> list[MergeRecord]:
    params = Params()
    wanted = params.add(ids, "Array(String)")
    sql = f"""
        SELECT kind, source, target, decision, reason, person_id, moved, message_id,
               timestamp, decided_at
        FROM identity_decisions FINAL
        WHERE project_id = {params.add(project_id, "String")}
          AND (has({wanted}, source) OR has({wanted}, target) OR hasAny(moved, {wanted}))
        ORDER BY edge_partition, edge_offset
    """
    names = list(MergeRecord.model_fields)
    records = []
    for row in run_query(gateway, "person_merges", sql, params):
        fields = dict(zip(names, row, strict=True))
        fields["timestamp"], fields["decided_at"] = utc(row[-2]), utc(row[-1])
        records.append(MergeRecord.model_validate(fields))
    return records


def _properties(gateway: Gateway, project_id: str, ids: list[str]) -> dict[str, Any]:
    params = Params()
    sql = f"""
        SELECT type, toJSONString(traits), toJSONString(properties)
        FROM events_unique
        WHERE project_id = {params.add(project_id, "String")}
          AND distinct_id IN {params.add(ids, "Array(String)")}
          AND (type = 'identify' OR {SETS_PERSON_PROPERTIES})
        ORDER BY timestamp DESC
        LIMIT {MAX_PROPERTY_EVENTS}
    """
    rows = run_query(gateway, "person_properties", sql, params, FINAL_PER_PARTITION)
    found: dict[str, Any] = {}
    for kind, traits, properties in reversed(rows):
        given = _object(properties)
        once = given.get("$set_once")
        for key, value in (once if isinstance(once, dict) else {}).items():
            found.setdefault(key, value)
        always = given.get("$set")
        if isinstance(always, dict):
            found.update(always)
        elif not isinstance(once, dict) and kind == "identify":  # a Segment identify's traits
            found.update(_object(traits))
    return found


def _object(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _cursor(at: datetime, message_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{message_id}".encode()).decode()


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return in_range_utc(datetime.fromisoformat(at)), message_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise invalid("not a cursor this API returned", "cursor") from error


def person_events_page(
    gateway: Gateway, project_id: str, distinct_id: str, limit: int, cursor: str | None
) -> PersonEventPage:
    """The events of every id of ``distinct_id``'s person, newest first."""
    _, ids = person_ids(gateway, project_id, distinct_id)
    params = Params()
    where = [
        f"project_id = {params.add(project_id, 'String')}",
        f"distinct_id IN {params.add(ids, 'Array(String)')}",
    ]
    if cursor is not None:
        at, message_id = _uncursor(cursor)
        where.append(
            f"(timestamp, message_id) < ({params.add(at, DATETIME)},"
            f" {params.add(message_id, 'String')})"
        )
    sql = f"""
        SELECT timestamp, event, type, distinct_id, message_id, toJSONString(properties)
        FROM events_unique
        WHERE {" AND ".join(where)}
        ORDER BY timestamp DESC, message_id DESC
        LIMIT {int(limit) + 1}
    """
    rows = run_query(gateway, "person_events", sql, params, FINAL_PER_PARTITION)
    items = [
        PersonEvent(
            timestamp=utc(r[0]),
            event=r[1],
            type=r[2],
            distinct_id=r[3],
            message_id=r[4],
            properties=_object(r[5]),
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    last = items[-1] if more else None
    return PersonEventPage(
        items=items, next_cursor=_cursor(last.timestamp, last.message_id) if last else None
    )
