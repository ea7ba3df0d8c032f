"""Retention, deletion of persons and the person squash, by the sink (the warehouse's only
writer).

Each project's raw events older than its ``raw_event_retention_days`` are deleted on a
schedule. Each person deletion on the config plane has its rows deleted from every table
that names persons, and again whenever a row under their ids is found (an event in flight
when the request came), until the request is withdrawn.

The setting is followed from the config plane, so a change applies at the next round without
a rebuild or a restart. Metric windows, exposures and alert history are not touched: they
are kept as long as the warehouse keeps them. Each round reports what it removed (rows per
project and table) in the log, in ``sextant_sink_retention_rows_removed_total`` and in the
sink's ``/status``. Every ``sink_person_squash_interval_seconds`` the person overrides are
written onto the events (:mod:`sextant.sink.squash`), and the live unique-users and
conversion windows whose persons that changed are counted again by person
(:mod:`sextant.sink.corrections`); in between, every ``sink_person_recount_interval_seconds``,
the closed windows of ids linked since are counted again by person without a squash.

On a ClickHouse cluster the deletions run on every node's local tables; the squash does not
run there (its lookup table would have to be on every node), so person-aware queries apply
every override at query time: the same answers, without the squash's speed; live windows
there keep counting ids.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter

from sextant.core.background import BackgroundLoop
from sextant.core.config_plane import ConfigFollower, ConfigState
from sextant.core.logging import get_logger
from sextant.core.metric_history import PointSender
from sextant.core.persons import PERSON_COLUMNS, person_predicate
from sextant.core.warehouse import Warehouse, connect
from sextant.core.warehouse_cluster import mutation
from sextant.schemas.config import PersonDeletion, Project
from sextant.sink.corrections import recount, squash_and_correct
from sextant.sink.settings import SinkSettings

log = get_logger(__name__)

ROWS_REMOVED = Counter(
    "sextant_sink_retention_rows_removed_total",
    "Rows deleted because they outlived their project's retention",
    ["project", "table"],
)
PERSON_ROWS_DELETED = Counter(
    "sextant_sink_person_rows_deleted_total",
    "Rows deleted because the person they are about asked to be forgotten",
    ["table"],
)
RAW_TABLES = {"events": "timestamp", "invalid_events": "received_at"}
"""The raw tables retention applies to, and the time column it reads."""


@dataclass(frozen=True)
class Removal:
    at: datetime
    project_id: str
    table: str
    before: datetime
    rows: int


class RetentionService(BackgroundLoop):
    """Deletes what outlived each project's retention, every ``sink_retention_interval_seconds``;
    deletes requested persons; squashes person overrides into the events."""

    name = "retention"

    def __init__(
        self,
        settings: SinkSettings,
        *,
        open_warehouse: Callable[[str], Warehouse] = connect,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(retry_initial_s=5.0, retry_max_s=60.0)
        self.settings = settings
        self.follower = ConfigFollower(settings)
        self.state: ConfigState = self.follower.state
        self._open_warehouse = open_warehouse
        self._clock = clock
        self._lock = threading.Lock()
        self._report: list[Removal] = []
        self.rounds = 0
        self._points = PointSender(settings)
        self._counted_at: datetime | None = None
        """When the last squash round or recount counted windows again."""

    def start(self) -> None:
        self.follower.start()
        super().start()

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        self.follower.stop()
        self._points.close()

    def report(self) -> list[dict[str, Any]]:
        """The latest removals (the last hundred), newest last."""
        with self._lock:
            return [asdict(r) for r in self._report]

    def session(self) -> None:
        warehouse = self._open_warehouse(self.settings.clickhouse_url)
        try:
            self.follower.wait_caught_up(self.settings.config_wait_seconds)
            self.connected()
            last_retention = last_squash = last_recount = float("-inf")
            while not self.stopping.is_set():
                self.forget_persons(warehouse)
                if (
                    time.monotonic() - last_retention
                    >= self.settings.sink_retention_interval_seconds
                ):
                    self.run_once(warehouse)
                    last_retention = time.monotonic()
                if self.settings.clickhouse_cluster is None:
                    if (
                        time.monotonic() - last_squash
                        >= self.settings.sink_person_squash_interval_seconds
                    ):
                        self.squash_and_correct(warehouse)
                        last_squash = last_recount = time.monotonic()
                    elif (
                        time.monotonic() - last_recount
                        >= self.settings.sink_person_recount_interval_seconds
                    ):
                        self.recount_persons(warehouse)
                        last_recount = time.monotonic()
                if self.wait(self.settings.sink_deletion_interval_seconds):
                    return
        finally:
            warehouse.close()

    def run_once(self, warehouse: Warehouse) -> list[Removal]:
        """One round over every project with a retention."""
        removed = [
            removal
            for project in self.state.of_kind(Project)
            if project.raw_event_retention_days is not None
            for removal in self._expire(warehouse, project.id, project.raw_event_retention_days)
        ]
        with self._lock:
            self.rounds += 1
        return removed

    def squash_and_correct(self, warehouse: Warehouse) -> None:
        """A person squash round, then the live windows whose persons it changed counted
        again by person (overrides looked at over two rounds' time: a round may come late)."""
        now = self._clock()
        interval = self.settings.sink_person_squash_interval_seconds
        squash_and_correct(warehouse, self.state, self._points, 2 * interval, now)
        self._points.flush()
        self._counted_at = now

    def recount_persons(self, warehouse: Warehouse) -> None:
        """The closed windows of ids linked lately counted again by person, no squash."""
        now = self._clock()
        interval = self.settings.sink_person_recount_interval_seconds
        recount(warehouse, self.state, self._points, 2 * interval, now, self._counted_at)
        self._points.flush()
        self._counted_at = now

    def forget_persons(self, warehouse: Warehouse) -> int:
        """Delete the rows of every requested person still found; the rows deleted."""
        deleted = 0
        for request in self.state.of_kind(PersonDeletion):
            parameters = {"p": request.project_id, "hashes": list(request.id_hashes)}
            for table in PERSON_COLUMNS:
                where = person_predicate(table)
                [[rows]] = warehouse.query_rows(
                    f"SELECT count() FROM {table} WHERE {where}", parameters
                )
                if not rows:
                    continue
                warehouse.command(
                    mutation(table, f"DELETE WHERE {where}", self.settings.clickhouse_cluster),
                    parameters,
                )
                PERSON_ROWS_DELETED.labels(table).inc(rows)
                log.info("a person's rows deleted", request=request.id, table=table, rows=rows)
                deleted += int(rows)
        return deleted

    def _expire(self, warehouse: Warehouse, project_id: str, days: int) -> list[Removal]:
        now = self._clock()
        before = now - timedelta(days=days)
        removals = []
        for table, column in RAW_TABLES.items():
            where = f"project_id = {{p:String}} AND {column} < {{before:DateTime64(3, 'UTC')}}"
            parameters = {"p": project_id, "before": before}
            [[rows]] = warehouse.query_rows(
                f"SELECT count() FROM {table} WHERE {where}", parameters
            )
            if not rows:
                continue
            warehouse.command(
                mutation(table, f"DELETE WHERE {where}", self.settings.clickhouse_cluster),
                parameters,
            )
            ROWS_REMOVED.labels(project_id, table).inc(rows)
            log.info("retention removed rows", project=project_id, table=table, rows=rows)
            removal = Removal(now, project_id, table, before, int(rows))
            with self._lock:
                self._report = [*self._report[-99:], removal]
            removals.append(removal)
        return removals
