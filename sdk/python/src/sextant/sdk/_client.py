"""The client applications hold: validate on the caller's thread, deliver in the background."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import httpx
import orjson
from pydantic import ValidationError

from sextant.schemas.events import EXPERIMENT_VIEWED, FieldError, IncomingEvent, new_message_id
from sextant.schemas.experiments import ExperimentDefinition, variant_of
from sextant.schemas.flags import ExperimentResult, FeatureResult, truthy
from sextant.schemas.flags import Outcome as FlagOutcome
from sextant.sdk._clock import Clock, SystemClock
from sextant.sdk._errors import DeliveryError, EventValidationError
from sextant.sdk._experiments import (
    DEFINITIONS_PATH,
    BearerAuth,
    DefinitionCache,
    SeenUnits,
)
from sextant.sdk._features import FeatureCache
from sextant.sdk._sender import (
    BATCH_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Outcome,
    RetryPolicy,
    Sender,
    decode_events,
)
from sextant.sdk._version import __version__
from sextant.sdk._worker import Worker

log = logging.getLogger("sextant.sdk")

LIBRARY = {"name": "sextant-python", "version": __version__}
_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
Properties = Mapping[str, Any]
UserId = str | int


SURVEY_EVENT = "Survey Responded"
"""The event a survey answer is (the convention of ``sextant.schemas.config.SURVEY_EVENT``)."""


@dataclass(frozen=True)
class ClientStats:
    """Counters since the client started (in a forked child: since the fork).

    Every event accepted by a call ends up in exactly one of ``delivered``, ``rejected``
    (refused by the collector, one by one or with the whole batch for a status that is not
    retried) or ``failed`` (retries ran out, or shut down first); until then it is ``pending``.
    ``dropped`` events never entered the queue because it was full.
    """

    queued: int
    delivered: int
    rejected: int
    failed: int
    dropped: int
    retries: int
    batches: int

    @property
    def pending(self) -> int:
        return self.queued - self.delivered - self.rejected - self.failed


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued = self.delivered = self.rejected = self.failed = 0
        self.dropped = self.retries = self.batches = 0

    def snapshot(self, buffered: int) -> ClientStats:
        """The counters, plus ``buffered`` events accepted by the running sender (hold lock)."""
        return ClientStats(
            self.queued + buffered,
            self.delivered,
            self.rejected,
            self.failed,
            self.dropped,
            self.retries,
            self.batches,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Client:
    """Sends events to a Sextant collector and assigns experiment variants.

    Calls validate the event against the collector's own rules and raise
    :class:`EventValidationError` at once for a mistake; accepted events go on a bounded
    queue that a daemon thread delivers in gzipped batches, so a call costs microseconds and
    never blocks on the network. Delivery problems are reported through ``on_error`` and
    :meth:`stats`, never raised into the application. The client is thread-safe, flushes at
    interpreter exit (within ``shutdown_timeout``) and may be used across ``os.fork``: the
    child starts with an empty queue and its own thread.

    ``write_key`` and ``host`` (the collector's base URL) are required. Batching: a batch
    goes as soon as ``flush_at`` events wait, and whatever waits goes every ``flush_interval``
    seconds; a batch body stays under ``max_batch_bytes`` (the collector takes 500 KiB).
    ``max_queue_size`` events may wait; beyond that new events are dropped and counted
    (``when_full="drop"``, the default) or the caller waits for room (``"block"``).
    ``retry`` bounds the retries. ``sync_mode`` sends each event on the calling thread before
    returning (short-lived processes, serverless functions).

    Experiment definitions come from the collector, with the write key: they are fetched on the
    first :meth:`get_variant`, which waits at most ``first_load_timeout`` for them, and
    refreshed every ``refresh_interval`` seconds. Given ``gateway`` (the gateway's base URL)
    and a ``read_key``, they come from the gateway instead, fetched from creation on.

    Feature flags need the environment's ``client_key`` (and its ``decryption_key`` when the
    payload is encrypted): the features are fetched from creation on, kept current by the
    collector's stream (``streaming``; polling every ``refresh_interval`` while it is down)
    and evaluated locally by :meth:`is_on`, :meth:`get_feature_value` and
    :meth:`evaluate_feature`.

    ``transport`` (an httpx transport) and ``clock`` replace the network and time in tests.
    """

    def __init__(
        self,
        write_key: str,
        host: str = "http://localhost:8080",
        *,
        flush_at: int = 100,
        flush_interval: float = 0.5,
        max_batch_bytes: int = 475_000,
        max_queue_size: int = 10_000,
        when_full: Literal["drop", "block"] = "drop",
        gzip: bool = True,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        on_error: Callable[[DeliveryError], None] | None = None,
        sync_mode: bool = False,
        shutdown_timeout: float = 5.0,
        gateway: str | None = None,
        read_key: str | None = None,
        refresh_interval: float = 30.0,
        first_load_timeout: float = 2.0,
        track_exposures: bool = True,
        client_key: str | None = None,
        decryption_key: str | None = None,
        streaming: bool = True,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_options(write_key, host, flush_at, flush_interval, max_batch_bytes, max_queue_size)
        if (gateway, read_key) != (None, None) and not (gateway and read_key):
            raise ValueError(
                "gateway and read_key go together; without both, experiment definitions come "
                "from the collector (host) with the write key"
            )
        self._write_key = write_key
        self._batch_url = host.rstrip("/") + "/v1/batch"
        self._flush_at = min(flush_at, max_queue_size)
        self._flush_interval = flush_interval
        self._max_batch_bytes = max_batch_bytes
        self._max_queue_size = max_queue_size
        self._block = when_full == "block"
        self._gzip = gzip
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_error = on_error
        self._sync = sync_mode
        self._shutdown_timeout = shutdown_timeout
        self._track_exposures = track_exposures
        self._transport = transport
        self._clock: Clock = clock or SystemClock()
        self._closed = False
        # From the gateway when asked to; from the collector by default, and then only once the
        # application asks for a variant, so a client used only for events polls nothing.
        source: tuple[str, httpx.Auth] = (host, httpx.BasicAuth(write_key, ""))
        if gateway and read_key:
            source = (gateway, BearerAuth(read_key))
        self._experiments = DefinitionCache(
            self._make_http,
            source[0].rstrip("/") + DEFINITIONS_PATH,
            source[1],
            refresh_interval=refresh_interval,
            first_load_timeout=first_load_timeout,
        )
        self._features: FeatureCache | None = None
        if client_key:
            self._features = FeatureCache(
                self._make_http,
                host,
                client_key,
                decryption_key=decryption_key,
                streaming=streaming,
                refresh_interval=refresh_interval,
                first_load_timeout=first_load_timeout,
            )
        self._seen = SeenUnits()
        self._reset_runtime()
        _LIVE.add(self)
        if gateway:
            self._experiments.start()
        if self._features is not None:
            self._features.start()

    def _reset_runtime(self) -> None:
        """Per-process state: the queue, the thread, connections, counters, locks."""
        self._counters = _Counters()
        self._worker: Worker | None = None
        self._lifecycle = threading.Lock()
        self._sender_lock = threading.Lock()
        self._sender: Sender | None = None
        self._http: httpx.Client | None = None
        self._last_drop_log = 0

    # -- the Segment calls -------------------------------------------------------------------

    def track(
        self,
        user_id: UserId | None,
        event: str,
        properties: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record that a user did something; returns the event's ``messageId``."""
        return self._enqueue(
            {"type": "track", "event": event, "properties": dict(properties or {})},
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
        )

    def identify(
        self,
        user_id: UserId | None,
        traits: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Tie a user to their traits (and an ``anonymous_id`` to the ``user_id``)."""
        return self._enqueue(
            {"type": "identify", "traits": dict(traits or {})},
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
        )

    def page(
        self,
        user_id: UserId | None,
        name: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record a page view (stored as ``$page``, with ``name`` among the properties)."""
        return self._enqueue(
            {"type": "page", "name": name, "properties": dict(properties or {})},
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
        )

    def screen(
        self,
        user_id: UserId | None,
        name: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record a mobile screen view (stored as ``$screen``)."""
        return self._enqueue(
            {"type": "screen", "name": name, "properties": dict(properties or {})},
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
        )

    def group(
        self,
        user_id: UserId | None,
        group_id: UserId,
        traits: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Tie a user to a group (a company, a team) and the group's traits."""
        return self._enqueue(
            {"type": "group", "groupId": group_id, "traits": dict(traits or {})},
            user_id,
            anonymous_id,
            context,
            timestamp,
            message_id,
        )

    def alias(
        self,
        previous_id: UserId,
        user_id: UserId,
        *,
        context: Properties | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        """Declare that ``previous_id`` and ``user_id`` are the same user."""
        return self._enqueue(
            {"type": "alias", "previousId": previous_id},
            user_id,
            None,
            context,
            timestamp,
            message_id,
        )

    def survey_response(
        self,
        user_id: UserId | None,
        survey: str,
        score: float,
        comment: str | None = None,
        properties: Properties | None = None,
        *,
        anonymous_id: UserId | None = None,
        context: Properties | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Record a customer's answer to a survey (NPS 0-10, CSAT 1-5 …) as Sextant's
        ``Survey Responded`` event: ``survey``, ``score`` and ``comment`` join ``properties``
        (plan, page …, by which the workspace breaks scores down)."""
        fields: dict[str, Any] = {**(properties or {}), "survey": survey, "score": score}
        if comment:
            fields["comment"] = comment
        return self.track(
            user_id,
            SURVEY_EVENT,
            fields,
            anonymous_id=anonymous_id,
            context=context,
            timestamp=timestamp,
        )

    # -- experiments ---------------------------------------------------------------------------

    def get_variant(
        self,
        experiment_key: str,
        user_id: UserId,
        attributes: Properties | None = None,
    ) -> str | None:
        """The id of the variant ``user_id`` is assigned in ``experiment_key``, or None.

        None means: show the default experience (the experiment is unknown, not running,
        or leaves this unit out through its coverage). ``user_id`` is the experiment's unit:
        a user id, or an anonymous id for experiments whose unit is ``anonymousId``. The
        first assignment of a unit in this process tracks ``Experiment Viewed`` (properties
        ``experiment_id``, ``variation_id``; ``attributes`` travel as ``context.traits``).
        """
        unit = _unit_id(user_id)
        experiment = self._experiments.get(experiment_key)
        if experiment is None:
            return None
        variant = variant_of(experiment, unit, self._clock.now())
        if variant is None:
            return None
        if self._track_exposures and self._seen.first((experiment.id, unit)):
            self._track_exposure(experiment, unit, variant.id, attributes)
        return variant.id

    def refresh_experiments(self) -> bool:
        """Fetch the experiment definitions now (True on success); normally automatic."""
        return self._experiments.refresh()

    # -- features ------------------------------------------------------------------------------

    def evaluate_feature(
        self, key: str, user_id: UserId | None, attributes: Properties | None = None
    ) -> FeatureResult:
        """Feature ``key`` for a unit: its value and why (``source``: ``defaultValue``,
        ``force``, ``experiment``, ``unknownFeature`` …), evaluated here from the definitions
        the client keeps current (no network call). ``attributes`` are what rules' conditions
        test; ``user_id`` is the ``id`` attribute, which rollouts and experiments hash.

        When an experiment rule assigns the value, the first assignment of the unit in this
        process tracks ``Experiment Viewed`` (``experiment_id``, ``variation_id``).
        """
        return FeatureResult(*self._evaluate(key, user_id, attributes))

    def _evaluate(
        self, key: str, user_id: UserId | None, attributes: Properties | None
    ) -> FlagOutcome:
        features = self._features
        if features is None:
            raise RuntimeError("features need a client_key: Client(..., client_key='sdk-...')")
        attrs: dict[str, Any] = dict(attributes) if attributes else {}
        if user_id is not None:
            attrs["id"] = user_id if type(user_id) is str and user_id else _unit_id(user_id)
        out = features.flags().outcome(key, attrs)
        if self._track_exposures and out[4]:
            for exposure in out[4]:
                if self._seen.first((exposure.experiment_key, exposure.hash_value)):
                    self._track_feature_exposure(key, exposure, attributes)
        return out

    def _track_feature_exposure(
        self, key: str, exposure: ExperimentResult, attributes: Properties | None
    ) -> None:
        unit = str(exposure.hash_value)
        anonymous = exposure.hash_attribute == "anonymousId"
        self._enqueue(
            {
                "type": "track",
                "event": EXPERIMENT_VIEWED,
                "properties": {
                    "experiment_id": exposure.experiment_key,
                    "variation_id": exposure.key,
                    "feature": key,
                },
            },
            None if anonymous else unit,
            unit if anonymous else None,
            {"traits": dict(attributes)} if attributes else None,
            None,
            None,
        )

    def get_feature_value(
        self,
        key: str,
        default: Any,
        user_id: UserId | None,
        attributes: Properties | None = None,
    ) -> Any:
        """The value of feature ``key`` for a unit, or ``default`` when the feature is unknown
        (or its value is null); see :meth:`evaluate_feature`."""
        value = self._evaluate(key, user_id, attributes)[0]
        return default if value is None else value

    def is_on(self, key: str, user_id: UserId | None, attributes: Properties | None = None) -> bool:
        """Whether feature ``key`` is on for a unit (its value is truthy: not ``False``,
        ``0``, ``""`` or null); see :meth:`evaluate_feature`."""
        return truthy(self._evaluate(key, user_id, attributes)[0])

    def refresh_features(self) -> bool:
        """Fetch the features now (True on success); normally the stream keeps them current."""
        if self._features is None:
            raise RuntimeError("features need a client_key: Client(..., client_key='sdk-...')")
        return self._features.refresh()

    def _track_exposure(
        self,
        experiment: ExperimentDefinition,
        unit: str,
        variant_id: str,
        attributes: Properties | None,
    ) -> None:
        by_anonymous_id = experiment.unit == "anonymousId"
        self._enqueue(
            {
                "type": "track",
                "event": EXPERIMENT_VIEWED,
                "properties": {"experiment_id": experiment.id, "variation_id": variant_id},
            },
            None if by_anonymous_id else unit,
            unit if by_anonymous_id else None,
            {"traits": dict(attributes)} if attributes else None,
            None,
            None,
        )

    # -- delivery ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event queued before the call is resolved; False if ``timeout``
        ran out first.

        Resolved means delivered, refused by the collector, or given up after retries (see
        :meth:`stats`). The partial batch is sent at once rather than at ``flush_interval``.
        """
        worker = self._worker
        return True if worker is None else worker.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush (for at most ``timeout``, default ``shutdown_timeout``), then stop for good.

        Events still undelivered when the time is up are reported through ``on_error`` as
        ``shutdown``; later calls are dropped and counted. Returns True if everything queued
        was resolved in time. Called automatically at interpreter exit.
        """
        with self._lifecycle:
            if self._closed:
                return True
            self._closed = True
        flushed = self.flush(self._shutdown_timeout if timeout is None else timeout)
        self._experiments.stop()
        if self._features is not None:
            self._features.stop()
        worker = self._worker
        if worker is not None and worker.stop(join_timeout=self._timeout + 1.0):
            left = worker.abandon()
            if left:
                error = DeliveryError("shutdown", "shut down before delivery", decode_events(left))
                self._report(Outcome(0, 0, error))
        if worker is not None:
            with self._counters.lock:
                self._counters.queued += worker.accepted()
                self._worker = None  # later calls find the client closed
        if self._http is not None:
            self._http.close()
        _LIVE.discard(self)
        return flushed

    def stats(self) -> ClientStats:
        """A snapshot of the delivery counters."""
        with self._counters.lock:
            worker = self._worker
            return self._counters.snapshot(0 if worker is None else worker.accepted())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    # -- internals -----------------------------------------------------------------------------

    def _enqueue(
        self,
        message: dict[str, Any],
        user_id: UserId | None,
        anonymous_id: UserId | None,
        context: Properties | None,
        timestamp: datetime | None,
        message_id: str | None,
    ) -> str:
        """Validate with the collector's model, serialise, and hand over; returns messageId."""
        message["userId"] = user_id
        message["anonymousId"] = anonymous_id
        message["context"] = {"library": LIBRARY, **context} if context else {"library": LIBRARY}
        message["timestamp"] = timestamp or self._clock.now()
        message["messageId"] = message_id = message_id or new_message_id()
        try:
            valid = IncomingEvent.model_validate(message)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(exc) from None
        # The wire carries ids as the collector normalises them (numbers as strings).
        message["userId"] = valid.user_id
        message["anonymousId"] = valid.anonymous_id
        if "groupId" in message:
            message["groupId"] = valid.group_id
        if "previousId" in message:
            message["previousId"] = valid.previous_id
        data = _serialise(message)
        self._submit(data)
        return message_id

    def _submit(self, data: bytes) -> None:
        if self._sync:
            self._send_now(data)
            return
        worker = self._worker or self._start_worker()
        if worker is None or not worker.put(data):
            self._dropped()

    def _start_worker(self) -> Worker | None:
        """The sending thread, started on first use (in a forked child: its own); None once
        the client is shut down."""
        with self._lifecycle:
            if self._closed:
                return None
            if self._worker is None:
                self._worker = Worker(
                    self._get_sender(),
                    self._report,
                    flush_at=self._flush_at,
                    flush_interval=self._flush_interval,
                    max_batch_bytes=self._max_batch_bytes,
                    max_queue_size=self._max_queue_size,
                    block_when_full=self._block,
                )
            return self._worker

    def _send_now(self, data: bytes) -> None:
        if self._closed:
            self._dropped()
            return
        with self._counters.lock:
            self._counters.queued += 1
        self._report(self._get_sender().send([data], threading.Event()))

    def _get_sender(self) -> Sender:
        with self._sender_lock:
            return self._sender or self._new_sender()

    def _new_sender(self) -> Sender:
        self._http = self._make_http(auth=(self._write_key, ""))
        self._sender = Sender(
            self._http,
            self._batch_url,
            gzip=self._gzip,
            policy=self._retry,
            clock=self._clock,
            on_retry=self._count_retry,
        )
        return self._sender

    def _make_http(self, auth: tuple[str, str] | None = None) -> httpx.Client:
        return httpx.Client(
            transport=self._transport,
            timeout=self._timeout,
            auth=auth,
            headers={"User-Agent": f"sextant-python/{__version__}"},
        )

    def _report(self, outcome: Outcome) -> None:
        """Count what became of a batch and tell ``on_error`` about what was not delivered."""
        failure = outcome.failure
        with self._counters.lock:
            counters = self._counters
            counters.delivered += outcome.delivered
            counters.batches += 1 if outcome.attempts else 0
            if failure is not None:
                if failure.reason in ("rejected", "http_status"):
                    counters.rejected += len(failure.events)
                else:
                    counters.failed += len(failure.events)
        if failure is None:
            return
        log.warning("%s", failure)
        if self._on_error is not None:
            try:
                self._on_error(failure)
            except Exception:
                log.exception("the on_error callback raised")

    def _count_retry(self) -> None:
        with self._counters.lock:
            self._counters.retries += 1

    def _dropped(self) -> None:
        with self._counters.lock:
            self._counters.dropped += 1
            dropped = self._counters.dropped
        if dropped >= 2 * self._last_drop_log:  # log at 1, 2, 4, 8 ... drops, not every one
            self._last_drop_log = dropped
            log.warning("event queue full or client shut down: %d event(s) dropped", dropped)

    def _at_exit(self) -> None:
        self.shutdown(self._shutdown_timeout)

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here and its locks and sockets may be in any
        # state; its queued events stay the parent's to deliver.
        self._reset_runtime()
        self._seen.after_fork_in_child()
        self._experiments.after_fork_in_child()
        if self._features is not None:
            self._features.after_fork_in_child()


def _serialise(message: dict[str, Any]) -> bytes:
    try:
        data = orjson.dumps(
            {key: value for key, value in message.items() if value is not None},
            default=_json_default,
            option=_JSON_OPTIONS,
        )
    except TypeError as exc:
        problem = FieldError(field="", message=f"not JSON serialisable: {exc}")
        raise EventValidationError([problem]) from None
    if len(data) > MAX_EVENT_BYTES:
        too_big = f"{len(data)} bytes serialised, over the collector's {MAX_EVENT_BYTES}"
        raise EventValidationError([FieldError(field="", message=too_big)])
    return data


def _unit_id(user_id: UserId) -> str:
    if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
        raise ValueError("user_id must be a non-empty string or an integer")
    return str(user_id)


def _check_options(
    write_key: str,
    host: str,
    flush_at: int,
    flush_interval: float,
    max_batch_bytes: int,
    max_queue_size: int,
) -> None:
    if not write_key:
        raise ValueError("write_key is required")
    if not host.startswith(("http://", "https://")):
        raise ValueError("host must be an http(s) URL, e.g. https://collector.example.com")
    if flush_at < 1 or max_queue_size < 1 or flush_interval <= 0:
        raise ValueError("flush_at and max_queue_size must be >= 1, flush_interval > 0")
    if not MAX_EVENT_BYTES + BATCH_OVERHEAD <= max_batch_bytes <= MAX_BATCH_BYTES:
        raise ValueError(
            f"max_batch_bytes must be between {MAX_EVENT_BYTES + BATCH_OVERHEAD} and the "
            f"collector's limit, {MAX_BATCH_BYTES}"
        )


_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


def _shutdown_all() -> None:
    for client in list(_LIVE):
        client._at_exit()


def _reinit_all_in_child() -> None:
    for client in list(_LIVE):
        client._after_fork_in_child()


atexit.register(_shutdown_all)
os.register_at_fork(after_in_child=_reinit_all_in_child)
