"""What do persons cost: the resolver's edges per second, and person-aware queries beside the
same queries by id.

1. *Resolver.* ``--edges`` identity edges (a visitor's anonymous id joins its user; every
   tenth an alias, every hundredth a refused second user of a device) taken by the resolver
   stage as it takes a batch from ``identities`` (decode, apply, overrides and decisions to
   send), in batches of 5,000. Baseline in the same process: decoding the same records alone.
2. *Queries.* One embedded engine loaded with ``--events`` events of ``--users`` users over
   30 days (``bench.gateway_queries``' events); a third of each user's events carry an
   anonymous id of its own, and half of the users are linked (one override per anonymous id),
   so a person-aware count differs from a count of ids. The overrides are then squashed into
   the events (``sextant.sink.squash``, as the sink does periodically; its time is reported)
   and one more override per tenth of the linked users is written after the squash (edges
   newer than the last squash, joined at query time). A 30-day daily unique-users trend and
   a five-step funnel run through the gateway's own code, person-aware, beside the same
   queries reading ``distinct_id`` as the person (what they were before persons): p50 latency
   over ``--rounds`` rounds after a warm-up, alternating. Target: person-aware within 1.5x of
   id-based.
3. *Live windows counted again by person.* Last, a squash round takes the overrides written
   after the first one (spread over the 30 days: every minute holds events of a moved id, the
   worst case), finds the minutes they changed, and ``sextant.sink.corrections`` recomputes
   a unique-users metric's windows of those minutes by person, as the sink does after each
   round; its time beside the squash round's own (finding the minutes included). Then the
   steady state: ten minutes of traffic after the data's end (``STEADY_EVENTS`` page views,
   a tenth of them by ``STEADY_LINKS`` new anonymous visitors who then sign up as existing
   users) and the next round over them, squash and correction; before it, the recount the
   sink runs every minute between squash rounds over the same new links (the minutes of the
   last day found from the newest overrides, counted again reading each event's person
   through them).

Run: ``python -m bench.persons [--edges N] [--events N] [--users N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from bench.common import Figure, report
from bench.gateway_queries import DAYS, PROJECT, START, STEPS, gateway_over
from sextant.core.migrations import migrate
from sextant.core.warehouse import Warehouse, connect
from sextant.gateway import insights
from sextant.processor.metrics import ProcessorMetrics
from sextant.processor.resolver import ResolverStage
from sextant.schemas.config import MetricDefinition
from sextant.schemas.identity import EdgeKind, IdentityEdge
from sextant.sink.corrections import RECOUNT_SPAN, correct_windows
from sextant.sink.squash import changed_since, squash_persons

COMMAND = "python -m bench.persons"
BATCH = 5_000


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class _Table:
    def items_with_prefix(self, prefix: str) -> Any:
        return iter(())

    def write(self, writes: Any) -> None:
        del writes

    def forget_partitions(self, partitions: set[int]) -> None:
        del partitions


def edge_records(count: int) -> list[Record]:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    records = []
    for i in range(count):
        kind, source, target = EdgeKind.IDENTIFY, f"anon-{i}", f"user-{i}"
        if i % 10 == 9:
            kind, source, target = EdgeKind.ALIAS, f"user-{i - 1}", f"email-{i - 1}"
        elif i % 100 == 50:
            source = f"anon-{i - 1}"  # a second user on a device: refused
        edge = IdentityEdge(
            project_id=PROJECT, kind=kind, source=source, target=target, timestamp=at
        )
        records.append(Record("identities", 0, i, edge.model_dump_json().encode()))
    return records


def resolver_rate(records: list[Record]) -> tuple[float, float, int]:
    """(edges/s through the stage's take, records/s decoded alone, overrides emitted)."""
    stage = ResolverStage(
        topic="identities",
        overrides_topic="o",
        decisions_topic="d",
        partitions=1,
        interval=0.1,
        max_ids=1_000,
        junk=lambda _project: frozenset(),
        table=_Table(),
        outputs=mock.Mock(),
        metrics=ProcessorMetrics(),
    )
    overrides = 0
    started = time.perf_counter()
    for first in range(0, len(records), BATCH):
        (applied, _), refused = stage.take(records[first : first + BATCH], {0})
        assert not refused
        overrides += len(applied.overrides)
    taken = time.perf_counter() - started
    started = time.perf_counter()
    for record in records:
        IdentityEdge.model_validate_json(record.value or b"")
    decoded = time.perf_counter() - started
    return len(records) / taken, len(records) / decoded, overrides


def load(warehouse: Warehouse, events: int, users: int) -> None:
    """``bench.gateway_queries``' events, a third of them under an anonymous id per user,
    and an override for the anonymous id of every other user."""
    from bench.gateway_queries import load_events

    load_events(warehouse, events, users)
    # distinct_id is in the sorting key: the events are copied with it changed.
    warehouse.command("CREATE TABLE loaded AS events")
    warehouse.command(
        "INSERT INTO loaded SELECT * REPLACE (if(cityHash64(message_id) % 3 = 0,"
        " concat('anon-', substring(distinct_id, 6)), distinct_id) AS distinct_id) FROM events"
    )
    warehouse.command("DROP TABLE events")
    warehouse.command("RENAME TABLE loaded TO events")
    warehouse.command(
        f"""
        INSERT INTO person_overrides (project_id, distinct_id, person_id, version, updated_at)
        SELECT '{PROJECT}', concat('anon-', toString(number)), concat('user-', toString(number)),
               number, now64(3)
        FROM numbers({users}) WHERE number % 2 = 0
        """
    )
    for table in ("events", "person_overrides"):
        warehouse.command(f"OPTIMIZE TABLE {table} FINAL")


def squash(warehouse: Warehouse, users: int) -> float:
    """Squash the loaded overrides into the events, then write the overrides that arrive
    before the next squash (a tenth of the linked users' anonymous ids move to another
    user); the squash's seconds."""
    squashed = squash_persons(warehouse, find_changed=False)
    warehouse.command(
        f"""
        INSERT INTO person_overrides (project_id, distinct_id, person_id, version, updated_at)
        SELECT '{PROJECT}', concat('anon-', toString(number)),
               concat('user-', toString((number + 2) % {users})), {users} + number, now64(3)
        FROM numbers({users}) WHERE number % 20 = 0
        """
    )
    # What the background merges do between squashes.
    warehouse.command("OPTIMIZE TABLE person_overrides FINAL")
    return squashed.seconds


VIEWERS = MetricDefinition(
    id="viewers", project_id=PROJECT, metric_kind="unique_users", event="Page Viewed"
)


def correction(warehouse: Warehouse, now: datetime | None = None) -> tuple[float, float, int, int]:
    """A squash round and the correction after it: each one's seconds, the overrides the
    round squashed and the windows counted again."""
    viewers = VIEWERS
    squashed = squash_persons(warehouse)
    started = time.perf_counter()
    changed = squashed.changed_windows
    corrected = correct_windows(warehouse, [viewers], {}, changed, lambda _: None, now)
    return squashed.seconds, time.perf_counter() - started, squashed.overrides, corrected.windows


STEADY_EVENTS = 100_000
STEADY_LINKS = 2_000


def recount_round(warehouse: Warehouse, since: datetime, now: datetime) -> tuple[float, int]:
    """What the sink does every minute between squash rounds (``corrections.recount``), its
    first pass (the second reads only the minutes closed since the round before): the
    minutes of the last day holding ids of the overrides updated since ``since`` found, and
    counted again by person through the overrides at query time. Its seconds and the
    windows counted again."""
    started = time.perf_counter()
    minutes_from = now - RECOUNT_SPAN
    changed = changed_since(warehouse, since, [(PROJECT, VIEWERS.event)], minutes_from)
    corrected = correct_windows(
        warehouse, [VIEWERS], {}, changed, lambda _: None, now, by_overrides=True
    )
    return time.perf_counter() - started, corrected.windows


def steady_round(
    warehouse: Warehouse, users: int
) -> tuple[tuple[float, float, int, int], tuple[float, int]]:
    """The round after ten minutes of traffic with new sign-ups: as :func:`correction`; and
    before it, the recount between squash rounds over the same links."""
    [[end]] = warehouse.query_rows(
        f"SELECT toUnixTimestamp(max(timestamp)) FROM events WHERE project_id = '{PROJECT}'"
    )
    anonymous = STEADY_EVENTS // 10
    warehouse.command(
        f"""
        INSERT INTO events (project_id, event, timestamp, distinct_id, message_id, type,
                            properties, received_at)
        SELECT '{PROJECT}', 'Page Viewed', ts, uid, concat('steady-', toString(number)),
               'track', CAST('{{}}', 'JSON'), ts
        FROM (
            SELECT number,
                   toDateTime64({end}, 3, 'UTC') + toIntervalMillisecond(number * 6) AS ts,
                   if(number < {anonymous}, concat('new-anon-', toString(number % {STEADY_LINKS})),
                      concat('user-', toString(cityHash64(number) % {users}))) AS uid
            FROM numbers({STEADY_EVENTS})
        )
        """
    )
    linked_since = datetime.now(UTC) - timedelta(seconds=1)
    warehouse.command(
        f"""
        INSERT INTO person_overrides (project_id, distinct_id, person_id, version, updated_at)
        SELECT '{PROJECT}', concat('new-anon-', toString(number)),
               concat('user-', toString(number * 7 % {users})), {3 * users} + number, now64(3)
        FROM numbers({STEADY_LINKS})
        """
    )
    closed = datetime.fromtimestamp(int(end), UTC) + timedelta(hours=1)
    recounted = recount_round(warehouse, linked_since, closed)
    return correction(warehouse, now=closed), recounted


def by_id(params: Any, project_id: str, id_sql: str = "") -> str:
    """The events as they were read before persons: each id its own person."""
    del params, project_id, id_sql
    return "(SELECT *, cityHash64(distinct_id) AS person_key FROM events_unique)"


def alternate(
    person: Callable[[], Any], ids: Callable[[], Any], rounds: int
) -> tuple[float, float, Any, Any]:
    """p50 seconds of each, alternating rounds after a warm-up of each; and their answers."""
    answers = person(), ids()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for run, samples in ((person, times[0]), (ids, times[1])):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1]), *answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    edges, decoded, overrides = resolver_rate(edge_records(args.edges))
    print(
        f"resolver: {edges:,.0f} edges/s ({overrides:,} overrides); decode alone {decoded:,.0f}/s"
    )
    figures = [
        Figure(
            "persons",
            f"resolver stage, edges/s ({args.edges:,} edges, batches of {BATCH:,})",
            round(edges),
            "edges/s",
            "decoding the edges alone",
            round(decoded),
            command=COMMAND,
        )
    ]
    with tempfile.TemporaryDirectory(prefix="sextant-bench-") as folder:
        url = f"chdb://{folder}?database=b{uuid.uuid4().hex[:8]}"
        warehouse = connect(url)
        migrate(warehouse)
        started = time.perf_counter()
        load(warehouse, args.events, args.users)
        loaded = warehouse.query_rows("SELECT count() FROM events")[0][0]
        print(f"loaded {loaded:,} events in {time.perf_counter() - started:.0f} s")
        squash_s = squash(warehouse, args.users)
        print(f"squashed the overrides into the events in {squash_s:.1f} s")
        figures.append(
            Figure(
                "persons",
                f"person squash, {args.users // 2:,} overrides into {loaded / 1e6:.0f}M events",
                round(squash_s, 1),
                "s",
                command=COMMAND,
            )
        )
        gateway = gateway_over(url)
        month = {"from": START.isoformat(), "to": (START + timedelta(days=DAYS)).isoformat()}
        trend = insights.TrendsQuery.model_validate(
            {"event": "Page Viewed", "measure": "unique_users", "interval": "day"} | month
        )
        funnel = insights.FunnelQuery.model_validate(
            {"steps": [{"event": s} for s in STEPS], "window_seconds": 7 * 86400} | month
        )
        cases: dict[str, Callable[[], Any]] = {
            "30-day daily unique-users trend": lambda: insights.trends(gateway, PROJECT, trend),
            "30-day five-step funnel": lambda: insights.funnel(gateway, PROJECT, funnel),
        }
        for name, run in cases.items():

            def ids(run: Callable[[], Any] = run) -> Any:
                with mock.patch.object(insights, "person_events", by_id):
                    return run()

            person_s, id_s, person_answer, id_answer = alternate(run, ids, args.rounds)
            print(f"{name}: person-aware {person_s * 1000:.0f} ms, by id {id_s * 1000:.0f} ms")
            print(f"  answers differ as persons should: {person_answer != id_answer}")
            figures.append(
                Figure(
                    "persons",
                    f"{name}, person-aware p50 ({loaded / 1e6:.0f}M events)",
                    round(person_s * 1000, 1),
                    "ms",
                    "the same query by id, p50",
                    round(id_s * 1000, 1),
                    "within 1.5x",
                    COMMAND,
                )
            )
        squash_s, correct_s, overrides, windows = correction(warehouse)
        print(
            f"squash round with {overrides:,} new overrides {squash_s:.1f} s;"
            f" {windows:,} unique-users windows counted again by person in {correct_s:.1f} s"
        )
        figures.append(
            Figure(
                "persons",
                f"{windows:,} unique-users windows counted again by person after a squash"
                f" round of {overrides:,} overrides ({loaded / 1e6:.0f}M events)",
                round(correct_s, 1),
                "s",
                "the squash round itself",
                round(squash_s, 1),
                command=COMMAND,
            )
        )
        (squash_s, correct_s, overrides, windows), recount = steady_round(warehouse, args.users)
        recount_s, recounted = recount
        print(
            f"recount between squash rounds: {recounted:,} windows counted again by person"
            f" in {recount_s:.2f} s"
        )
        print(
            f"steady round: {overrides:,} new overrides squashed in {squash_s:.1f} s;"
            f" {windows:,} windows counted again by person in {correct_s:.2f} s"
        )
        figures.append(
            Figure(
                "persons",
                f"the next round after {STEADY_EVENTS:,} more events and {overrides:,} new"
                f" links: {windows:,} unique-users windows counted again by person",
                round(correct_s, 2),
                "s",
                "the squash round itself",
                round(squash_s, 2),
                command=COMMAND,
            )
        )
        figures.append(
            Figure(
                "persons",
                f"the same {overrides:,} links counted again between squash rounds (the"
                f" sink's recount's first pass): {recounted:,} unique-users windows, finding"
                " them included",
                round(recount_s, 2),
                "s",
                "the squash round and its correction",
                round(squash_s + correct_s, 2),
                command=COMMAND,
            )
        )
    report("persons", figures)


if __name__ == "__main__":
    main()
