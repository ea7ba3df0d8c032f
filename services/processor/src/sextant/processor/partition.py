"""The first stage: everything one ``events.raw`` partition knows, kept exact across restarts.

A :class:`PartitionState` applies events in offset order: it drops client retries (same
``messageId`` within the dedup window), decides lateness against the partition's event-time
watermark, updates each matching metric's window, and tracks first exposures. ``flush()``
returns what to send (window partials, exposures) and what to persist (table writes).

Exactness after a crash rests on four rules, all in this module:

0. Offsets are applied strictly in sequence (:mod:`sextant.processor.sequence`): the state
   covers every offset up to ``last_offset`` and none after, so an event that arrives ahead
   of a missing one is refused and fetched again in order, never applied over a hole.
1. Every persisted entry carries the offset of the last event applied to it; a replayed event
   at or below that offset is not applied to it again.
2. A flush's writes go to one changelog partition in order, the partition checkpoint (offset
   and watermarks) last: when the checkpoint says offset N, everything up to N is in the
   changelog, and replayed events decide lateness against exactly the watermark they saw the
   first time.
3. Outputs are idempotent and never lost: a partial replaces the partition's previous partial
   of the window (the second stage keeps the highest offset), and a restart re-sends the
   partial of every restored window, so a send lost in a crash is repaired; an exposure is
   acknowledged by the broker before its state is persisted, and is keyed by its unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import orjson

from sextant.processor.definitions import CompiledMetric, render
from sextant.processor.experiment_stats import ExperimentStatistics
from sextant.processor.sequence import Outcome, admit
from sextant.schemas.config import MetricKind
from sextant.schemas.events import EXPERIMENT_VIEWED, Envelope, EventType
from sextant.schemas.records import Exposure
from sextant.schemas.sketches import hll_add
from sextant.schemas.statistics import ExperimentMetricStatistics
from sextant.schemas.windows import NO_BREAKDOWN, WINDOW_SECONDS, Group, Partial, window_start

LATE_EVENTS_METRIC = "sextant.late_events"
"""Reserved metric key: per project and minute (of the watermark), events too late to count."""


class Catalog(Protocol):
    """What the first stage needs from the config plane."""

    def metrics_for(self, project_id: str, event: str) -> list[CompiledMetric]:
        """Metrics whose event (or conversion event) is ``event``."""
        ...

    def lateness(self, project_id: str) -> int: ...

    def exposure_unit(self, project_id: str, experiment: str) -> str | None:
        """``userId``/``anonymousId`` for a configured experiment, None for the distinct id."""
        ...


class StateStore(Protocol):
    """The durable mirror of the state (a faust table in the processor, a dict in tests)."""

    def items_with_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...


class EventView(NamedTuple):
    """The fields of an envelope the processor reads, parsed once."""

    project_id: str
    type: EventType
    event: str
    distinct_id: str
    user_id: str | None
    anonymous_id: str | None
    properties: Mapping[str, Any]
    timestamp: float
    received_at: float
    message_id: str

    @classmethod
    def parse(cls, raw: bytes) -> EventView:
        """Read an ``Envelope`` as JSON (camelCase aliases, as the collector writes it).

        The hot path picks the fields straight from the JSON and checks their types; anything
        unusual goes through the full ``Envelope`` validation (``ValueError`` if invalid).
        """
        try:
            return _fast_view(orjson.loads(raw))
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        envelope = Envelope.model_validate_json(raw)
        return cls(
            project_id=envelope.project_id,
            type=envelope.type,
            event=envelope.event,
            distinct_id=envelope.distinct_id,
            user_id=envelope.user_id,
            anonymous_id=envelope.anonymous_id,
            properties=envelope.properties,
            timestamp=envelope.timestamp.timestamp(),
            received_at=envelope.received_at.timestamp(),
            message_id=envelope.message_id,
        )


_EVENT_TYPES = {kind.value: kind for kind in EventType}


def _fast_view(data: dict[str, Any]) -> EventView:
    project_id, event, distinct_id = data["project_id"], data["event"], data["distinct_id"]
    message_id = data["messageId"]
    user_id, anonymous_id = data.get("userId"), data.get("anonymousId")
    properties = data.get("properties", {})
    if (
        type(project_id) is not str
        or type(event) is not str
        or type(distinct_id) is not str
        or type(message_id) is not str
        or type(properties) is not dict
        or (user_id is not None and type(user_id) is not str)
        or (anonymous_id is not None and type(anonymous_id) is not str)
    ):
        raise TypeError("not an envelope")
    return EventView(
        project_id,
        _EVENT_TYPES[data["type"]],
        event,
        distinct_id,
        user_id,
        anonymous_id,
        properties,
        _epoch(data["timestamp"]),
        _epoch(data["received_at"]),
        message_id,
    )


_EPOCHS: dict[str, float] = {}
"""Recently parsed timestamps: a batch's events share their ``received_at``."""


def _epoch(text: str) -> float:
    found = _EPOCHS.get(text)
    if found is not None:
        return found
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    found = moment.timestamp()
    if len(_EPOCHS) >= 4096:
        _EPOCHS.clear()
    _EPOCHS[text] = found
    return found


@dataclass(slots=True)
class ConversionUser:
    first_a: float | None = None
    breakdown: str = NO_BREAKDOWN
    conversions: list[float] = field(default_factory=list)
    tallied: tuple[str, bool] | None = None
    """What the window's tally counts of this user: (breakdown, converted)."""

    def converted(self, window_seconds: int) -> bool:
        start = self.first_a
        if start is None:
            return False
        end = start + window_seconds
        return any(start <= t <= end for t in self.conversions)


_CONVERSION = MetricKind.CONVERSION
_COUNT = MetricKind.COUNT
_UNIQUE_USERS = MetricKind.UNIQUE_USERS
_PERCENTILES = MetricKind.PERCENTILES


@dataclass(slots=True)
class WindowState:
    """One metric's window on one partition, with the offset of the last event applied."""

    project_id: str
    metric: str
    kind: MetricKind
    window_start: int
    fingerprint: str
    breakdown_limit: int
    conversion_window: int
    offset: int = -1
    groups: dict[str, Group] = field(default_factory=dict)
    users: dict[str, ConversionUser] = field(default_factory=dict)
    changed_users: set[str] = field(default_factory=set)
    user_chunks: list[str] = field(default_factory=list)
    tally: dict[str, Group] = field(default_factory=dict)
    """Conversion: per breakdown value, the users whose first A is here (denominator) and
    those of them converted (count), kept current as users change (see :meth:`retally`)."""
    untallied: set[str] = field(default_factory=set)

    @classmethod
    def for_metric(cls, project_id: str, metric: CompiledMetric, start: int) -> WindowState:
        d = metric.definition
        return cls(
            project_id=project_id,
            metric=metric.key,
            kind=metric.kind,
            window_start=start,
            fingerprint=metric.fingerprint,
            breakdown_limit=d.breakdown_limit,
            conversion_window=d.conversion_window_seconds,
        )

    def group(self, name: str) -> Group:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = Group()
        return found

    def apply(self, metric: CompiledMetric, event: EventView) -> None:
        """Apply one event that names this metric's event or conversion event."""
        kind = self.kind
        if kind is _CONVERSION:
            self._apply_conversion(metric, event)
            return
        properties = event.properties
        if event.event != metric.event or not metric.matches(properties):
            return
        if kind is _COUNT or kind is _UNIQUE_USERS:
            value = 0.0
        else:
            found: Any = properties.get(metric.property) if metric.property is not None else None
            kind_of = type(found)
            if kind_of is not float and kind_of is not int:
                return  # the same rule as sextant.schemas.filters.number_of
            value = float(found)
            scorer = metric.scorer
            if scorer is not None:
                value = scorer(value)
        name = metric.breakdown
        if name is None:
            label = NO_BREAKDOWN
        else:
            raw = properties.get(name)
            label = raw if type(raw) is str else render(raw)
        groups = self.groups
        group = groups.get(label)
        if group is None:
            group = groups[label] = Group()
        group.count += 1
        if kind is _COUNT:
            return
        if kind is _UNIQUE_USERS:
            registers = group.registers
            if registers is None:
                registers = group.ensure_registers()
            hll_add(registers, event.distinct_id)
            return
        group.total += value
        group.total_sq += value * value
        if kind is _PERCENTILES:
            digest = group.digest
            if digest is None:
                digest = group.ensure_digest()
            digest.add(value)

    def _apply_conversion(self, metric: CompiledMetric, event: EventView) -> None:
        user_id = event.distinct_id
        user = self.users.get(user_id)
        if event.event == metric.event and metric.matches(event.properties):
            if user is None:
                user = self.users[user_id] = ConversionUser()
            if user.first_a is None or event.timestamp < user.first_a:
                user.first_a = event.timestamp
                user.breakdown = metric.breakdown_of(event.properties)
                self.changed_users.add(user_id)
                self.untallied.add(user_id)
        if event.event == metric.conversion_event:
            if user is None:
                user = self.users[user_id] = ConversionUser()
            user.conversions.append(event.timestamp)
            self.changed_users.add(user_id)
            self.untallied.add(user_id)

    @property
    def open_beyond_lateness(self) -> int:
        """Seconds the window stays open after its lateness: a conversion's users can still
        convert for a conversion window after their first A."""
        return self.conversion_window if self.kind is MetricKind.CONVERSION else 0

    def convert(self, user_id: str, at: float) -> bool:
        """A conversion event of ``user_id`` at ``at``, from a later minute: True if it
        converts the user's first A of this window (and was not counted here before)."""
        user = self.users.get(user_id)
        if user is None or user.first_a is None or user.converted(self.conversion_window):
            return False
        if not user.first_a <= at <= user.first_a + self.conversion_window:
            return False
        user.conversions.append(at)
        self.changed_users.add(user_id)
        self.untallied.add(user_id)
        return True

    def retally(self) -> None:
        """Bring the tally up to date with the users changed since the last call."""
        tally, window = self.tally, self.conversion_window
        for user_id in self.untallied:
            user = self.users.get(user_id)
            if user is None:
                continue
            now = None if user.first_a is None else (user.breakdown, user.converted(window))
            before = user.tallied
            if now == before:
                continue
            if before is not None:
                group = tally[before[0]]
                group.denominator -= 1
                group.count -= before[1]
            if now is not None:
                group = tally.get(now[0]) or tally.setdefault(now[0], Group())
                group.denominator += 1
                group.count += now[1]
            user.tallied = now
        self.untallied.clear()

    def forget_users(self, gone: set[str]) -> None:
        """Take these users out of the window, and out of its tally."""
        for user_id in gone:
            user = self.users.pop(user_id)
            if user.tallied is not None:
                group = self.tally[user.tallied[0]]
                group.denominator -= 1
                group.count -= user.tallied[1]
        self.changed_users -= gone
        self.untallied -= gone

    def conversion_groups(self) -> dict[str, Group]:
        """Per breakdown value: users whose first A is here, and those of them converted."""
        self.retally()
        return {
            name: Group(count=group.count, denominator=group.denominator)
            for name, group in self.tally.items()
            if group.denominator
        }

    def partial(self, partition: int) -> Partial:
        groups = self.conversion_groups() if self.kind is MetricKind.CONVERSION else self.groups
        return Partial(
            project_id=self.project_id,
            metric=self.metric,
            kind=self.kind,
            window_start=self.window_start,
            partition=partition,
            offset=self.offset,
            breakdown_limit=self.breakdown_limit,
            groups=dict(groups),
            conversion_window=self.open_beyond_lateness,
        )

    def to_bytes(self, encoded_groups: dict[str, Any] | None = None) -> bytes:
        """The window's entry; ``encoded_groups``: its groups as :meth:`Group.to_json` made
        them for the partial already (the same content, encoded once)."""
        if encoded_groups is None:
            encoded_groups = {name: group.to_json() for name, group in self.groups.items()}
        return orjson.dumps(
            {
                "project_id": self.project_id,
                "metric": self.metric,
                "kind": self.kind.value,
                "ws": self.window_start,
                "f": self.fingerprint,
                "n": self.breakdown_limit,
                "cw": self.conversion_window,
                "o": self.offset,
                "g": encoded_groups,
            }
        )

    def users_chunk(self) -> bytes:
        """The conversion users changed since the last chunk (their whole state each).

        Users are persisted as chunks of changes rather than inside the window entry, so a
        flush writes what changed, not every user of the minute. Reapplying a user's state
        is harmless (first A is a minimum, conversions an existence test).
        """
        changed = {
            uid: [self.users[uid].first_a, self.users[uid].breakdown, self.users[uid].conversions]
            for uid in sorted(self.changed_users)
        }
        self.changed_users.clear()
        return orjson.dumps(changed)

    def apply_users_chunk(self, data: bytes) -> None:
        for uid, (first, breakdown, conversions) in orjson.loads(data).items():
            previous = self.users.get(uid)
            self.users[uid] = ConversionUser(
                first, breakdown, list(conversions), previous.tallied if previous else None
            )
            self.untallied.add(uid)

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        raw = orjson.loads(data)
        return cls(
            project_id=raw["project_id"],
            metric=raw["metric"],
            kind=MetricKind(raw["kind"]),
            window_start=int(raw["ws"]),
            fingerprint=raw["f"],
            breakdown_limit=int(raw["n"]),
            conversion_window=int(raw["cw"]),
            offset=int(raw["o"]),
            groups={name: Group.from_json(g) for name, g in raw["g"].items()},
        )


@dataclass
class ExposureState:
    """A unit's first exposure to an experiment, and every variation it has seen since."""

    exposure: Exposure
    offset: int
    variations: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"e": self.exposure.model_dump(mode="json"), "o": self.offset, "v": self.variations}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ExposureState:
        raw = orjson.loads(data)
        return cls(Exposure.model_validate(raw["e"]), int(raw["o"]), list(raw["v"]))


@dataclass(frozen=True)
class DedupPolicy:
    """Client retries are dropped when their ``messageId`` was seen within this window."""

    window_seconds: float = 600.0
    max_ids: int = 500_000


@dataclass
class FlushResult:
    partials: list[Partial] = field(default_factory=list)
    exposures: list[Exposure] = field(default_factory=list)
    statistics: list[ExperimentMetricStatistics] = field(default_factory=list)
    writes: list[tuple[str, bytes | None]] = field(default_factory=list)


@dataclass
class Counters:
    processed: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: dict[str, int] = field(default_factory=dict)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class PartitionState:
    """The first stage's state for one partition of ``events.raw``; see the module docstring."""

    def __init__(
        self,
        partition: int,
        dedup: DedupPolicy | None = None,
        statistics: ExperimentStatistics | None = None,
    ) -> None:
        self.partition = partition
        self.statistics = statistics
        """The streamed experiment statistics of the partition (None: not kept)."""
        self.dedup_policy = dedup or DedupPolicy()
        self.checkpoint = -1
        self.last_offset = -1
        self.watermarks: dict[str, float] = {}
        self.windows: dict[tuple[str, str, int], WindowState] = {}
        self.exposures: dict[tuple[str, str, str], ExposureState] = {}
        self.seen: dict[str, float] = {}
        self.chunks: dict[str, float] = {}
        self.counters = Counters()
        self._new_ids: list[tuple[str, float]] = []
        self._dirty_windows: set[tuple[str, str, int]] = set()
        self._new_exposures: list[tuple[tuple[str, str, str], Exposure]] = []
        self._orphans: list[str] = []
        self._forgotten: list[str] = []
        """Entries removed for a person's deletion: tombstoned first at the next flush."""
        self._newest_received = 0.0
        self._journeys: dict[tuple[str, str], dict[str, set[int]]] = {}
        """Per conversion metric, user → starts of the open windows holding the user."""

    # keys of the persisted entries -------------------------------------------------------

    @property
    def prefix(self) -> str:
        return f"{self.partition}|"

    def _window_key(self, key: tuple[str, str, int]) -> str:
        return f"{self.partition}|w|{key[0]}|{key[1]}|{key[2]}"

    def _exposure_key(self, key: tuple[str, str, str]) -> str:
        return f"{self.partition}|x|{key[0]}|{key[1]}|{key[2]}"

    @property
    def checkpoint_key(self) -> str:
        return f"{self.partition}|c"

    # recovery ------------------------------------------------------------------------------

    def load(self, store: StateStore) -> None:
        """Rebuild from the persisted entries of this partition (after a restart or rebalance)."""
        chunks: list[tuple[int, list[tuple[str, float]]]] = []
        user_chunks: list[tuple[int, str, bytes]] = []
        statistics: list[tuple[str, bytes]] = []
        for key, value in store.items_with_prefix(self.prefix):
            kind = key.split("|", 2)[1]
            if kind in ("t", "s", "b", "e", "l"):
                statistics.append((key, value))
            elif kind == "u":
                user_chunks.append((int(key.rsplit("|", 1)[1]), key, value))
            elif kind == "w":
                window = WindowState.from_bytes(value)
                self.windows[(window.project_id, window.metric, window.window_start)] = window
            elif kind == "x":
                exposure = ExposureState.from_bytes(value)
                e = exposure.exposure
                self.exposures[(e.project_id, e.experiment, e.unit_id)] = exposure
            elif kind == "d":
                ids = [(str(i), float(t)) for i, t in orjson.loads(value)]
                chunks.append((int(key.rsplit("|", 1)[1]), ids))
                self.chunks[key] = max((t for _, t in ids), default=0.0)
            elif kind == "c":
                raw = orjson.loads(value)
                self.checkpoint = int(raw["o"])
                self.watermarks = {k: float(v) for k, v in raw["wm"].items()}
        for _, ids in sorted(chunks):
            self.seen.update(ids)
        self._newest_received = max(self.chunks.values(), default=0.0)
        for _, key, value in sorted(user_chunks):
            _, _, project, metric, start, _ = key.split("|")
            owner = self.windows.get((project, metric, int(start)))
            if owner is None:
                self._orphans.append(key)
                continue
            owner.apply_users_chunk(value)
            owner.user_chunks.append(key)
        for window_key, window in self.windows.items():
            self._index_users(window_key, window)
        self.last_offset = self.checkpoint
        if self.statistics is not None:
            self.statistics.load(statistics)
        # Partials of windows restored here may not have reached the second stage before the
        # crash (the changelog write can land while the send did not): send them again.
        self._dirty_windows.update(self.windows)

    # the hot path -------------------------------------------------------------------------

    @property
    def expected_offset(self) -> int:
        """The offset the next event must have: the state covers every offset before it."""
        return self.last_offset + 1

    def process(self, offset: int, event: EventView | None, catalog: Catalog) -> Outcome:
        """Apply the event at ``offset`` if it is the next one; see :class:`Outcome`.

        ``event`` is None for a record that is not an envelope: its offset is passed over.
        """
        last = self.last_offset
        if offset != last + 1:  # the common case inline; the rule is sequence.admit
            outcome = admit(last, offset)
            if outcome is Outcome.REPLAYED:
                self.counters.replayed += 1
            if outcome is not Outcome.APPLIED:
                return outcome
        self.last_offset = offset
        if event is None:
            return Outcome.APPLIED
        if self._is_retry(event):
            self.counters.duplicates += 1
            return Outcome.APPLIED
        self.counters.processed += 1
        self._track_exposure(offset, event, catalog)
        if self.statistics is not None:
            self.statistics.apply(offset, event, self.watermarks)
        project = event.project_id
        watermark = self.watermarks.get(project)
        start = window_start(event.timestamp)
        if watermark is not None and start + WINDOW_SECONDS + catalog.lateness(project) <= (
            watermark
        ):
            self._count_late(offset, project, watermark)
        else:
            for metric in catalog.metrics_for(project, event.event):
                self._apply(offset, project, metric, start, event)
        if watermark is None or event.timestamp > watermark:
            self.watermarks[project] = event.timestamp
        return Outcome.APPLIED

    def skip_to(self, offset: int) -> None:
        """Go on from ``offset``: the offsets before it no longer exist (log retention)."""
        self.last_offset = max(self.last_offset, offset - 1)

    def _is_retry(self, event: EventView) -> bool:
        if event.message_id in self.seen:
            return True
        self.seen[event.message_id] = event.received_at
        self._new_ids.append((event.message_id, event.received_at))
        return False

    def _apply(
        self, offset: int, project: str, metric: CompiledMetric, start: int, event: EventView
    ) -> None:
        key = (project, metric.key, start)
        window = self.windows.get(key)
        if window is None or window.fingerprint != metric.fingerprint:
            # A changed definition starts its windows afresh: the second stage then replaces
            # (or zeroes) what the old definition emitted for this window.
            previous = -1 if window is None else window.offset
            if window is not None:
                self._orphans.extend(window.user_chunks)
                self._unindex_users(key, window)
            window = self.windows[key] = WindowState.for_metric(project, metric, start)
            window.offset = previous
        if offset <= window.offset:
            return
        window.apply(metric, event)
        window.offset = offset
        self._dirty_windows.add(key)
        if window.kind is _CONVERSION:
            self._carry_conversion(offset, key, window, metric, event)

    def _carry_conversion(
        self,
        offset: int,
        key: tuple[str, str, int],
        window: WindowState,
        metric: CompiledMetric,
        event: EventView,
    ) -> None:
        """Link a conversion across minutes (a user's events are all on one partition).

        A conversion event (B) converts the user's first A of every earlier open window
        within the conversion window; an A looks for the user's B events already seen in
        later minutes (events arrive out of order within the lateness).
        """
        project, metric_key, start = key
        user_id, at = event.distinct_id, event.timestamp
        journeys = self._journeys.get((project, metric_key))
        if journeys is None:
            journeys = self._journeys[(project, metric_key)] = {}
        starts = journeys.get(user_id)
        if starts is None:
            journeys[user_id] = {start}
            return  # the user is in no other open minute: nothing to link
        starts.add(start)
        if len(starts) == 1:
            return  # the user is in no other open minute: nothing to link
        definition = metric.definition
        if event.event == definition.conversion_event:
            earliest = start - window.conversion_window - WINDOW_SECONDS
            for other in sorted(s for s in starts if earliest <= s < start):
                earlier = self.windows.get((project, metric_key, other))
                if earlier is not None and offset > earlier.offset and earlier.convert(user_id, at):
                    earlier.offset = offset
                    self._dirty_windows.add((project, metric_key, other))
        if event.event == definition.event and metric.matches(event.properties):
            later_b = [
                t
                for other in starts
                if start < other <= at + window.conversion_window
                for t in self._conversions_of(project, metric_key, other, user_id)
            ]
            for t in sorted(later_b):
                if window.convert(user_id, t):
                    break

    def _conversions_of(self, project: str, metric: str, start: int, user_id: str) -> list[float]:
        window = self.windows.get((project, metric, start))
        user = None if window is None else window.users.get(user_id)
        return [] if user is None else user.conversions

    def _index_users(self, key: tuple[str, str, int], window: WindowState) -> None:
        if window.kind is MetricKind.CONVERSION:
            journeys = self._journeys.setdefault((key[0], key[1]), {})
            for user_id in window.users:
                journeys.setdefault(user_id, set()).add(key[2])

    def _unindex_users(self, key: tuple[str, str, int], window: WindowState) -> None:
        journeys = self._journeys.get((key[0], key[1]))
        if journeys is None:
            return
        for user_id in window.users:
            starts = journeys.get(user_id)
            if starts is not None:
                starts.discard(key[2])
                if not starts:
                    del journeys[user_id]

    def _count_late(self, offset: int, project: str, watermark: float) -> None:
        self.counters.late[project] = self.counters.late.get(project, 0) + 1
        key = (project, LATE_EVENTS_METRIC, window_start(watermark))
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = WindowState(
                project_id=project,
                metric=LATE_EVENTS_METRIC,
                kind=MetricKind.COUNT,
                window_start=key[2],
                fingerprint="",
                breakdown_limit=1,
                conversion_window=WINDOW_SECONDS,
            )
        if offset <= window.offset:
            return
        window.group(NO_BREAKDOWN).count += 1
        window.offset = offset
        self._dirty_windows.add(key)

    def _track_exposure(self, offset: int, event: EventView, catalog: Catalog) -> None:
        if event.type is not EventType.TRACK or event.event != EXPERIMENT_VIEWED:
            return
        experiment = _scalar_text(event.properties.get("experiment_id"))
        variation = _scalar_text(event.properties.get("variation_id"))
        if experiment is None or variation is None:
            return
        unit_field = catalog.exposure_unit(event.project_id, experiment)
        unit = {"userId": event.user_id, "anonymousId": event.anonymous_id}.get(
            unit_field or "", event.distinct_id
        )
        if unit is None:
            return
        key = (event.project_id, experiment, unit)
        state = self.exposures.get(key)
        if state is not None and (offset <= state.offset or variation in state.variations):
            return
        seen = Exposure(
            project_id=event.project_id,
            experiment=experiment,
            unit_id=unit,
            variation_id=variation,
            timestamp=datetime.fromtimestamp(event.timestamp, UTC),
            message_id=event.message_id,
        )
        if state is None:
            state = self.exposures[key] = ExposureState(seen, offset, [variation])
            self._new_exposures.append((key, seen))
            return
        # A second variation flags the unit: its first exposure is re-sent flagged (the
        # warehouse keeps both rows of a unit), and so is every further variation it sees.
        if not state.exposure.multi_variant:
            state.exposure = state.exposure.model_copy(update={"multi_variant": True})
            self._new_exposures.append((key, state.exposure))
        state.variations.append(variation)
        state.offset = offset
        self._new_exposures.append((key, seen.model_copy(update={"multi_variant": True})))

    # forgetting a person ----------------------------------------------------------------------

    def forget(self, project: str, names: Callable[[str], bool]) -> int:
        """Remove everything of ``project`` kept under an id ``names`` picks: first exposures,
        conversion users (their windows' partials are sent again without them) and
        experiment units. The next flush writes the tombstones. Returns the entries removed."""
        removed = 0
        for unit_key in [k for k in self.exposures if k[0] == project and names(k[2])]:
            del self.exposures[unit_key]
            self._forgotten.append(self._exposure_key(unit_key))
            removed += 1
        self._new_exposures = [e for e in self._new_exposures if e[0] in self.exposures]
        for key, window in self.windows.items():
            if key[0] != project or not window.users:
                continue
            gone = {user_id for user_id in window.users if names(user_id)}
            if not gone:
                continue
            self._unindex_users(key, window)
            window.forget_users(gone)
            self._index_users(key, window)
            # Older chunks hold the users' states: replace them all by one of the remaining.
            self._forgotten.extend(window.user_chunks)
            window.user_chunks.clear()
            window.changed_users = set(window.users)
            # The state covers every offset up to the last one applied: the window changed
            # there, so its partial replaces the one stage two has (unless the person's event
            # was the partition's last, when the window's next change carries the correction).
            window.offset = max(window.offset, self.last_offset)
            self._dirty_windows.add(key)
            removed += len(gone)
        if self.statistics is not None:
            removed += self.statistics.forget(project, names)
        return removed

    # flushing -------------------------------------------------------------------------------

    def flush(self, catalog: Catalog) -> FlushResult:
        """What to send, then what to persist (in this order) for everything since last flush."""
        result = FlushResult()
        result.writes.extend((key, None) for key in self._forgotten)
        self._forgotten.clear()
        for key in sorted(self._dirty_windows):
            window = self.windows.get(key)
            if window is not None:
                partial = window.partial(self.partition)
                result.partials.append(partial)
                if window.changed_users:
                    chunk_key = f"{self._window_key(key)}|{window.offset}".replace("|w|", "|u|")
                    window.user_chunks.append(chunk_key)
                    result.writes.append((chunk_key, window.users_chunk()))
                # The partial carries the window's own groups (but for conversion): encode once.
                shared = None if window.kind is _CONVERSION else partial.encode()
                result.writes.append((self._window_key(key), window.to_bytes(shared)))
        for unit_key, exposure in self._new_exposures:
            result.exposures.append(exposure)
            result.writes.append(
                (self._exposure_key(unit_key), self.exposures[unit_key].to_bytes())
            )
        result.writes.extend(self._closed_windows(catalog))
        result.writes.extend((key, None) for key in self._orphans)
        self._orphans.clear()
        if self.statistics is not None:
            # Before the dedup ids: a replayed event the ids call a retry must find its
            # effect on the statistics persisted already.
            records, writes = self.statistics.flush(
                self.last_offset, self.watermarks, datetime.now(UTC)
            )
            result.statistics.extend(records)
            result.writes.extend(writes)
        result.writes.extend(self._dedup_writes())
        if self.last_offset > self.checkpoint:
            self.checkpoint = self.last_offset
            payload = {"o": self.checkpoint, "wm": self.watermarks}
            result.writes.append((self.checkpoint_key, orjson.dumps(payload)))
        self._dirty_windows.clear()
        self._new_exposures.clear()
        return result

    def _closed_windows(self, catalog: Catalog) -> Iterable[tuple[str, None]]:
        closed = [
            key
            for key, window in self.windows.items()
            if key[0] in self.watermarks
            and key[2] + WINDOW_SECONDS + catalog.lateness(key[0]) + window.open_beyond_lateness
            <= self.watermarks[key[0]]
        ]
        for key in closed:
            window = self.windows.pop(key)
            self._unindex_users(key, window)
            yield self._window_key(key), None
            for chunk_key in window.user_chunks:
                yield chunk_key, None

    def _dedup_writes(self) -> Iterator[tuple[str, bytes | None]]:
        if self._new_ids:
            key = f"{self.partition}|d|{self.last_offset}"
            newest = max(t for _, t in self._new_ids)
            self.chunks[key] = newest
            self._newest_received = max(self._newest_received, newest)
            yield key, orjson.dumps(self._new_ids)
            self._new_ids = []
        horizon = self._newest_received - self.dedup_policy.window_seconds
        for key, latest in list(self.chunks.items()):
            if latest < horizon:
                del self.chunks[key]
                yield key, None
        # ``seen`` is in arrival order: forget from the oldest end only, never copying it.
        # One pass finds them all: each ``next(iter(seen))`` would walk past every slot
        # deleted since the dict last resized, quadratic in the ids forgotten.
        excess = len(self.seen) - self.dedup_policy.max_ids
        stale: list[str] = []
        for message_id, received in self.seen.items():
            if received >= horizon and len(stale) >= excess:
                break
            stale.append(message_id)
        for message_id in stale:
            del self.seen[message_id]
