"""Person squash: every event's person written onto the event (``events.person_id`` and its
hash ``person_hash``).

Person-aware queries (:mod:`sextant.gateway.persons`) read an event's person as: its id's
override when that override is not squashed yet or the row has no person yet
(``person_hash`` 0), else ``person_hash``. A squash round keeps that equal to applying every
override at query time, at every moment, whatever else writes meanwhile:

1. Copy ``person_overrides FINAL`` (each id's newest override) into a round table.
2. One mutation writes each row's person (its override's, else the id itself) onto every
   event that has none yet or whose id has an unsquashed override in the copy. Until step 3
   those ids are unsquashed, so queries apply their overrides whatever the mutation has
   reached; rows written during the mutation keep 0 and are looked up too.
3. Mark the copied unsquashed overrides squashed (a copy with ``squashed = 1``, same key and
   version, written later, so ``FINAL`` keeps it). An override newer than the copy is still
   unsquashed and keeps applying; the same override sent again reads unsquashed again.

The mutation reads the round's map through ``joinGet`` on a ``Join`` table, which the engine
(embedded or a server) evaluates once per row without a join of the whole events table.

The round also says which minutes hold events whose person may have changed (those of the
ids with an override not squashed before, or updated since ``recheck_since``) and which
hold events of those ids' persons. The live windows of those minutes counted ids;
:mod:`sextant.sink.corrections` counts them again by person.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from sextant.core.logging import get_logger
from sextant.core.warehouse import Warehouse

log = get_logger(__name__)

SQUASHED = Counter(
    "sextant_sink_person_overrides_squashed_total",
    "Person overrides written onto the events and marked squashed",
)
SQUASH_SECONDS = Histogram(
    "sextant_sink_person_squash_seconds",
    "How long a person squash round took",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
)
_OVERRIDE_COLUMNS = "project_id, distinct_id, person_id, version, updated_at"


@dataclass(frozen=True)
class ChangedMinutes:
    """Minutes (epoch seconds) of one project's event, sorted."""

    of_ids: list[int]
    """Holding events of ids whose person changed: their unique users changed."""
    of_persons: list[int]
    """Holding events of those ids' persons, by any id: where a conversion may have."""


@dataclass(frozen=True)
class SquashResult:
    overrides: int
    """Overrides written onto the events in this round (those not squashed before)."""
    unstamped_events: int
    """Event rows that had no person yet when the round began."""
    seconds: float
    changed_windows: dict[tuple[str, str], ChangedMinutes] = field(default_factory=dict)
    """(project, event) → the minutes whose persons the round changed."""


def squash_persons(
    warehouse: Warehouse, recheck_since: datetime | None = None, *, find_changed: bool = True
) -> SquashResult:
    """One squash round over every project (see the module's description); overrides
    updated since ``recheck_since`` count as changed again for ``changed_windows``, which
    is left empty (and costs nothing) without ``find_changed``."""
    started = time.perf_counter()
    [[database]] = warehouse.query_rows("SELECT currentDatabase()")
    tag = f"person_squash_{secrets.token_hex(6)}"
    rows, person_map = f"`{database}`.{tag}_rows", f"`{database}`.{tag}_map"
    try:
        _copy_overrides(warehouse, rows, person_map)
        [[overrides]] = warehouse.query_rows(f"SELECT count() FROM {rows} WHERE squashed = 0")
        [[unstamped]] = warehouse.query_rows("SELECT count() FROM events WHERE person_hash = 0")
        if overrides or unstamped:
            _write_persons(warehouse, rows, person_map, database, tag)
        changed = _changed_windows(warehouse, rows, recheck_since) if find_changed else {}
        if overrides or unstamped:
            _mark_squashed(warehouse, rows)
    finally:
        warehouse.command(f"DROP TABLE IF EXISTS {rows}")
        warehouse.command(f"DROP TABLE IF EXISTS {person_map}")
    seconds = time.perf_counter() - started
    SQUASHED.inc(overrides)
    SQUASH_SECONDS.observe(seconds)
    log.info("persons squashed", overrides=overrides, events=unstamped, seconds=round(seconds, 2))
    return SquashResult(int(overrides), int(unstamped), seconds, changed)


def _copy_overrides(warehouse: Warehouse, rows: str, person_map: str) -> None:
    warehouse.command(
        f"CREATE TABLE {rows} (project_id String, distinct_id String, person_id String,"
        " version UInt64, updated_at DateTime64(3, 'UTC'), squashed UInt8)"
        " ENGINE = MergeTree ORDER BY (project_id, distinct_id)"
    )
    warehouse.command(
        f"INSERT INTO {rows} SELECT {_OVERRIDE_COLUMNS}, squashed FROM person_overrides FINAL"
    )
    warehouse.command(
        f"CREATE TABLE {person_map} (project_id String, distinct_id String, person_id String)"
        " ENGINE = Join(ANY, LEFT, project_id, distinct_id)"
    )
    warehouse.command(
        f"INSERT INTO {person_map} SELECT project_id, distinct_id, person_id FROM {rows}"
    )


def _write_persons(
    warehouse: Warehouse, rows: str, person_map: str, database: str, tag: str
) -> None:
    # Mutations run without a current database: every table is named with its database.
    # joinGet answers '' for an id without an override (no person_id is ever '').
    found = f"joinGet('{database}.{tag}_map', 'person_id', toString(project_id), distinct_id)"
    person = f"if(empty({found}), distinct_id, {found})"
    try:
        warehouse.command(
            f"ALTER TABLE events UPDATE person_id = {person}, person_hash = cityHash64({person})"
            " WHERE person_hash = 0 OR (toString(project_id), distinct_id) IN"
            f" (SELECT project_id, distinct_id FROM {rows} WHERE squashed = 0)"
            " SETTINGS mutations_sync = 1, allow_nondeterministic_mutations = 1"
        )
    except Exception:
        # A failed mutation stays queued and retried, holding up every later one: end it.
        warehouse.command(
            "KILL MUTATION WHERE database = currentDatabase() AND table = 'events'"
            f" AND position(command, '{tag}') > 0"
        )
        raise


def _changed_windows(
    warehouse: Warehouse, rows: str, recheck_since: datetime | None
) -> dict[tuple[str, str], ChangedMinutes]:
    changed = "squashed = 0"
    parameters: dict[str, Any] = {}
    if recheck_since is not None:
        changed += " OR updated_at >= {since:DateTime64(3, 'UTC')}"
        parameters["since"] = recheck_since
    return _minutes_of(warehouse, rows, changed, parameters)


def changed_since(
    warehouse: Warehouse,
    since: datetime,
    events: Sequence[tuple[str, str]],
    minutes_from: datetime,
) -> dict[tuple[str, str], ChangedMinutes]:
    """The minutes from ``minutes_from`` on of ``events`` (project, event name) whose persons
    the overrides updated since ``since`` changed, between squash rounds: read from the
    newest overrides, with the events of ids not squashed yet found by their ids."""
    if not events:
        return {}
    overrides = (
        "(SELECT toString(project_id) AS project_id, distinct_id, person_id, updated_at"
        " FROM person_overrides FINAL)"
    )
    parameters = {
        "since": since,
        "from": minutes_from,
        "events": [tuple(e) for e in events],
    }
    changed = "updated_at >= {since:DateTime64(3, 'UTC')}"
    among = (
        "(toString(project_id), event) IN {events:Array(Tuple(String, String))}"
        " AND timestamp >= {from:DateTime64(3, 'UTC')}"
    )
    return _minutes_of(warehouse, overrides, changed, parameters, among)


def _minutes_of(
    warehouse: Warehouse,
    overrides: str,
    changed: str,
    parameters: dict[str, Any],
    among: str | None = None,
) -> dict[tuple[str, str], ChangedMinutes]:
    """Per project and event, the minutes of the ids of ``overrides`` (a table or a
    subquery) matching ``changed``, and of every id of their persons: the events stamped
    with those persons; and, for events not squashed yet (``among`` given: between squash
    rounds), the persons' names and the ids whose newest override names them."""
    [[found]] = warehouse.query_rows(f"SELECT count() FROM {overrides} WHERE {changed}", parameters)
    if not found:
        return {}
    minute = "toUInt32(toUnixTimestamp(toStartOfMinute(timestamp)))"
    ids = f"(SELECT project_id, distinct_id FROM {overrides} WHERE {changed})"
    persons = f"(SELECT project_id, person_id FROM {overrides} WHERE {changed})"
    linked = f"(toString(project_id), distinct_id) IN {ids}"
    where = f"{linked} OR (toString(project_id), person_id) IN {persons}"
    if among is not None:
        members = (
            f"(SELECT project_id, distinct_id FROM {overrides}"
            f" WHERE (project_id, person_id) IN {persons})"
        )
        where = (
            f"({among}) AND ({where} OR (toString(project_id), distinct_id) IN {persons}"
            f" OR (toString(project_id), distinct_id) IN {members})"
        )
    result = warehouse.query_rows(
        f"SELECT toString(project_id), event, groupUniqArrayIf({minute}, {linked}),"
        f" groupUniqArray({minute}) FROM events WHERE {where} GROUP BY project_id, event",
        parameters,
    )
    return {
        (str(p), str(e)): ChangedMinutes(sorted(map(int, of_ids)), sorted(map(int, of_persons)))
        for p, e, of_ids, of_persons in result
    }


def _mark_squashed(warehouse: Warehouse, rows: str) -> None:
    # Not deduplicated: a later round may need to write the same marks again (the resolver
    # sent the same override again in between).
    warehouse.command(
        f"INSERT INTO person_overrides ({_OVERRIDE_COLUMNS}, squashed)"
        f" SELECT {_OVERRIDE_COLUMNS}, 1 FROM {rows} WHERE squashed = 0"
        " SETTINGS insert_deduplicate = 0"
    )
