"""Live windows counted again by person once an identify links their ids.

The processor counts unique users and conversions per minute by ``distinct_id``: an
anonymous visitor's events are counted under the anonymous id, and a HyperLogLog register
cannot give that id back when an identify later names its person. So after each person
squash round, the minutes whose persons changed
(:attr:`~sextant.sink.squash.SquashResult.changed_windows`) are recomputed from the events
table by person (:mod:`sextant.core.metric_history`, the backfill's SQL) for every unique-users
and conversion metric on their events, and sent to ``metric_points`` versioned above live.

Between squash rounds, :func:`recount` does the same for the overrides updated lately
(every ``sink_person_recount_interval_seconds``, a minute by default): a window counts ids
for about that long after it closes, not until the next squash.

Only minutes the live processor has closed are recomputed (the project's lateness, and a
conversion's window, behind now); an override stays *changed* for a while after its update
(see :func:`squash_and_correct`), so minutes still open in one round are recomputed in a
later one. Recomputing a minute again gives the same points with a higher version: rounds
may repeat. Minutes the project's raw-event retention may have cut into are left as live
counted them: their events are no longer all there to count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from sextant.core.config_plane import ConfigState
from sextant.core.logging import get_logger
from sextant.core.metric_history import (
    BACKFILL_VERSION_BASE,
    closed_until,
    points_for,
    window_groups,
)
from sextant.core.warehouse import Warehouse
from sextant.schemas.config import MetricDefinition, MetricKind, Project
from sextant.schemas.records import MetricPoint
from sextant.schemas.windows import WINDOW_SECONDS
from sextant.sink.squash import ChangedMinutes, SquashResult, changed_since, squash_persons

log = get_logger(__name__)

CORRECTED = Counter(
    "sextant_sink_person_corrected_windows_total",
    "Minute windows of unique-users and conversion metrics counted again by person",
)
PERSON_KINDS = (MetricKind.UNIQUE_USERS, MetricKind.CONVERSION)
"""The metric kinds whose windows depend on who an event's person is."""
_DEFAULT_LATENESS: int = Project.model_fields["allowed_lateness_seconds"].default
SPAN_SECONDS = 6 * 3600
"""Changed minutes within this of the first of them are recomputed by one query: fewer,
longer queries cost less in all (`bench.persons`: 3.8 s for six hours a query against 13.3 s
for one, on one million events), but hold the embedded engine, which the sink's writes
share, longer each."""


RECOUNT_SPAN = timedelta(days=1)
"""How far back a recount between squash rounds looks: the minutes live dashboards show. An
anonymous visitor's older minutes are counted again at the next squash round; reading only
the last day's events (the table's sort key has the day after the event name) keeps a
recount's cost that of a day's events, not of the whole history's."""


@dataclass(frozen=True)
class Correction:
    windows: int
    points: int


def squash_and_correct(
    warehouse: Warehouse,
    config: ConfigState,
    send: Callable[[MetricPoint], None],
    recheck_extra_s: float,
    now: datetime | None = None,
) -> tuple[SquashResult, Correction]:
    """A person squash round, then the closed windows whose persons it changed counted again
    by person. An override is looked at again for ``recheck_extra_s`` beyond the time its
    windows take to close."""
    now = now or datetime.now(UTC)
    definitions, projects, since = _scope(config, recheck_extra_s, now)
    result = squash_persons(warehouse, since, find_changed=bool(definitions))
    correction = correct_windows(
        warehouse, definitions, projects, result.changed_windows, send, now
    )
    return result, correction


def recount(
    warehouse: Warehouse,
    config: ConfigState,
    send: Callable[[MetricPoint], None],
    recheck_extra_s: float,
    now: datetime | None = None,
    previous: datetime | None = None,
) -> Correction:
    """Between squash rounds, without writing persons onto the events: the windows of the
    last :data:`RECOUNT_SPAN` counted again by person where an id was linked lately, so that
    a live window counts ids for a minute or so after it closes, not until the next squash.

    Two passes, so a round repeats little of the last one (``previous``, when that round ran;
    None: ``recheck_extra_s`` ago): every closed minute of the ids linked since the last
    round (the links of the last ``recheck_extra_s``, in case one came late), and the
    minutes that closed since the last round of the ids linked while they were open (the
    links of the last ``recheck_extra_s`` and the time windows take to close)."""
    now = now or datetime.now(UTC)
    definitions, projects, since = _scope(config, recheck_extra_s, now)
    events = sorted({(d.project_id, d.event) for d in definitions})
    lately = now - timedelta(seconds=recheck_extra_s)
    linked = changed_since(warehouse, lately, events, now - RECOUNT_SPAN)
    first = correct_windows(warehouse, definitions, projects, linked, send, now, by_overrides=True)
    since -= timedelta(seconds=WINDOW_SECONDS)  # a window closes up to a minute after its delay
    closing = changed_since(warehouse, since, events, since)
    second = correct_windows(
        warehouse,
        definitions,
        projects,
        closing,
        send,
        now,
        by_overrides=True,
        closed_after=previous or lately,
    )
    return Correction(first.windows + second.windows, first.points + second.points)


def _scope(
    config: ConfigState, recheck_extra_s: float, now: datetime
) -> tuple[list[MetricDefinition], dict[str, Project], datetime]:
    """The metrics whose windows count persons, the projects, and since when an override
    may still change a window not yet counted again."""
    definitions = [d for d in config.of_kind(MetricDefinition) if d.metric_kind in PERSON_KINDS]
    projects = {p.id: p for p in config.of_kind(Project)}
    delay = max((closing_delay(d, projects) for d in definitions), default=0)
    return definitions, projects, now - timedelta(seconds=recheck_extra_s + delay + WINDOW_SECONDS)


def correct_windows(
    warehouse: Warehouse,
    definitions: Iterable[MetricDefinition],
    projects: Mapping[str, Project],
    changed: dict[tuple[str, str], ChangedMinutes],
    send: Callable[[MetricPoint], None],
    now: datetime | None = None,
    *,
    by_overrides: bool = False,
    closed_after: datetime | None = None,
) -> Correction:
    """Recompute, by person, the closed ``changed`` minutes of every metric they concern
    (persons as squashed, or as the newest overrides say with ``by_overrides``); with
    ``closed_after``, only the minutes closed since that moment."""
    now = now or datetime.now(UTC)
    version = BACKFILL_VERSION_BASE + int(now.timestamp() * 1000)
    windows = points = 0
    for definition in definitions:
        moved = changed.get((definition.project_id, definition.event))
        if definition.metric_kind not in PERSON_KINDS or moved is None:
            continue
        # A person's users are counted under their surviving name before and after: only a
        # moved id's minutes change. A conversion of any of the person's ids may change.
        is_conversion = definition.metric_kind is MetricKind.CONVERSION
        minutes = moved.of_persons if is_conversion else moved.of_ids
        delay = closing_delay(definition, projects)
        until = closed_until(delay, now).timestamp()
        kept = _whole_since(projects.get(definition.project_id), now)
        if closed_after is not None:
            kept = max(kept, closed_until(delay, closed_after).timestamp())
        due = {m for m in minutes if kept <= m < until}
        for start, end in _spans(sorted(due)):
            groups = window_groups(warehouse, definition, start, end, by_overrides=by_overrides)
            found = {m: g for m, g in groups.items() if m in due}
            windows += len(found)
            for point in points_for(definition, found, version, now):
                send(point)
                points += 1
    CORRECTED.inc(windows)
    if windows:
        log.info("windows counted again by person", windows=windows, points=points)
    return Correction(windows, points)


def closing_delay(definition: MetricDefinition, projects: Mapping[str, Project]) -> int:
    """Seconds behind now after which live emits nothing more for a window of ``definition``."""
    project = projects.get(definition.project_id)
    delay = _DEFAULT_LATENESS if project is None else project.allowed_lateness_seconds
    if definition.metric_kind is MetricKind.CONVERSION:
        delay += definition.conversion_window_seconds
    return delay


def _whole_since(project: Project | None, now: datetime) -> float:
    """The first minute retention has not cut into: it deletes events older than its run's
    time less the retention, and it has not run after ``now``."""
    if project is None or project.raw_event_retention_days is None:
        return float("-inf")
    cut = now.timestamp() - project.raw_event_retention_days * 86_400
    return -(-cut // WINDOW_SECONDS) * WINDOW_SECONDS


def _spans(minutes: list[int]) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) spans covering sorted ``minutes``, each within ``SPAN_SECONDS``."""
    if not minutes:
        return
    first = last = minutes[0]
    for minute in minutes[1:]:
        if minute - first >= SPAN_SECONDS:
            yield _span(first, last)
            first = minute
        last = minute
    yield _span(first, last)


def _span(first: int, last: int) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(first, UTC),
        datetime.fromtimestamp(last + WINDOW_SECONDS, UTC),
    )
