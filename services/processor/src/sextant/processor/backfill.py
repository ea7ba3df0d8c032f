"""``sextant metrics backfill``: a definition's history from the ``events`` table.

The windows are recomputed by :mod:`sextant.core.metric_history` (the SQL, and the points
shaped as live shapes them) and sent to ``metric_points`` for the sink to write, versioned
above live. By default a backfill covers only windows the live processor has closed
(``until`` = now - the project's lateness - one minute): there it replaces what live computed
(live may have seen only part of the minute the definition was created in), and live
corrections cannot arrive afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sextant.core.metric_history import (
    BACKFILL_VERSION_BASE,
    PointSender,
    closed_until,
    points_for,
    window_groups,
)
from sextant.core.settings import KafkaSection
from sextant.core.warehouse import Warehouse
from sextant.schemas.config import MetricDefinition

Progress = Callable[[datetime, datetime, int], None]
"""Called after each chunk with (chunk start, chunk end, points produced so far)."""


@dataclass(frozen=True)
class BackfillReport:
    windows: int
    points: int
    version: int


def backfill(
    kafka: KafkaSection,
    warehouse: Warehouse,
    definition: MetricDefinition,
    since: datetime,
    until: datetime,
    chunk: timedelta = timedelta(hours=1),
    progress: Progress | None = None,
) -> BackfillReport:
    """Compute ``definition`` for [since, until) and send its points to ``metric_points``."""
    since = since.astimezone(UTC).replace(second=0, microsecond=0)
    until = until.astimezone(UTC)
    version = BACKFILL_VERSION_BASE + int(time.time() * 1000)
    emitted_at = datetime.now(UTC)
    send = PointSender(kafka)
    windows = points = 0
    try:
        start = since
        while start < until:
            end = min(start + chunk, until)
            groups = window_groups(warehouse, definition, start, end)
            windows += len(groups)
            for point in points_for(definition, groups, version, emitted_at):
                send(point)
                points += 1
            send.flush()
            if progress is not None:
                progress(start, end, points)
            start = end
    finally:
        send.close()
    return BackfillReport(windows=windows, points=points, version=version)


def run_backfill_command(
    kafka: KafkaSection,
    warehouse: Warehouse,
    metric_key: str,
    project_id: str,
    since: datetime,
    until: datetime | None = None,
    config_wait_seconds: float = 30.0,
) -> BackfillReport:
    """What ``sextant metrics backfill`` runs: find the definition, then backfill with a bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sextant.core.config_plane import ConfigFollower
    from sextant.processor.catalog import ConfigCatalog

    follower = ConfigFollower(kafka).start()
    try:
        if not follower.wait_caught_up(config_wait_seconds):
            raise RuntimeError("the config topic could not be read in time")
        catalog = ConfigCatalog(follower.state)
        compiled = catalog.metric(project_id, metric_key)
        if compiled is None:
            raise LookupError(f"no metric {metric_key!r} in project {project_id!r}")
        lateness = catalog.lateness(project_id)
    finally:
        follower.stop()
    end = until or closed_until(lateness)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    total = max((end - since).total_seconds(), 1.0)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[points]} points"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(f"backfill {project_id}/{metric_key}", total=total, points=0)

        def advance(start: datetime, chunk_end: datetime, points: int) -> None:
            bar.update(task, completed=(chunk_end - since).total_seconds(), points=points)

        return backfill(kafka, warehouse, compiled.definition, since, end, progress=advance)
