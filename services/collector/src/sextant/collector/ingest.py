"""From a parsed submission to records in Kafka: rate limit, check, enrich, produce, answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from sextant.collector.auth import Writer
from sextant.collector.dialects import Submission
from sextant.collector.errors import ApiError, bad_request
from sextant.collector.identities import EdgeKey, EdgeRecords
from sextant.collector.metrics import CollectorMetrics
from sextant.collector.models import BatchResult, Rejection
from sextant.collector.privacy import Privacy
from sextant.collector.ratelimit import RateLimiter, retry_after_header
from sextant.collector.validation import Checked, TrackingPlans, check_event
from sextant.core.aio_kafka import OutgoingRecord, ProducerUnavailable
from sextant.schemas.config import Project
from sextant.schemas.events import InvalidEvent, enriched_record

MAX_WRITE_DEPTH = 254
"""The nesting orjson can write (it reads up to 1024 levels)."""


class RecordSink(Protocol):
    """Where records go; ``send`` returns once they are durable or raises ProducerUnavailable."""

    async def send(self, records: Sequence[OutgoingRecord], timeout_s: float) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def _message_id(event: Any) -> str | None:
    value = event.get("messageId") if isinstance(event, dict) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


class Ingestor:
    """Takes submissions of authenticated writers into ``events.raw`` and ``events.invalid``.

    Contract: :meth:`ingest` returns only after Kafka acknowledged every record of the
    submission (accepted events and dead letters alike); otherwise it raises :class:`ApiError`
    (429 before anything is written, 503 when Kafka did not acknowledge in time).
    """

    def __init__(
        self,
        *,
        sink: RecordSink,
        plans: TrackingPlans,
        limiter: RateLimiter,
        metrics: CollectorMetrics,
        raw_topic: str,
        invalid_topic: str,
        max_event_bytes: int,
        privacy: Privacy | None = None,
        produce_timeout_s: float,
        retry_after_s: int,
        identities_topic: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sink = sink
        self._plans = plans
        self._limiter = limiter
        self._metrics = metrics
        self._raw_topic = raw_topic
        self._invalid_topic = invalid_topic
        self._max_event_bytes = max_event_bytes
        self._privacy = privacy or Privacy(None)
        self._produce_timeout_s = produce_timeout_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._edges = EdgeRecords(identities_topic) if identities_topic else None

    def rate_limit(self, writer: Writer, events: int, client_ip: str | None = None) -> None:
        """Raise 429 when ``events`` more would exceed the project's rate for this key, or
        for this client address."""
        project = writer.project
        rate = project.rate_limit_per_second
        wait = self._limiter.acquire(writer.key.key_hash, events, rate)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"project {project.id!r} allows {rate} events per second per key; "
                f"this request of {events} events exceeds it",
                f"write key {writer.key.id!r}",
                headers={"Retry-After": retry_after_header(wait)},
            )
        per_ip = project.rate_limit_per_ip_per_second
        if per_ip is None or client_ip is None:
            return
        wait = self._limiter.acquire(f"ip:{project.id}:{client_ip}", events, per_ip)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"project {project.id!r} allows {per_ip} events per second from one address; "
                f"this request of {events} events exceeds it",
                "client address",
                headers={"Retry-After": retry_after_header(wait)},
            )

    async def ingest(
        self, submission: Submission, writer: Writer, *, client_ip: str | None, body_bytes: int
    ) -> BatchResult:
        count = len(submission.events)
        self._metrics.batch_events.observe(count)
        self.rate_limit(writer, count, client_ip)
        received_at = self._clock()
        project = writer.project
        plan = self._plans.for_project(project.id)
        # No event can be larger than the whole body: measure events only when it might be.
        measure = body_bytes > self._max_event_bytes
        records: list[OutgoingRecord] = []
        edges: set[EdgeKey] = set()
        rejected: list[Rejection] = []
        reasons: dict[str, int] = {}
        flagged = 0
        suppressed = 0
        index = 0
        extras = submission.extras
        privacy = self._privacy
        # Most projects forget no one and redact nothing: then neither is asked per event.
        suppressing = privacy.suppresses(project.id)
        redacting = bool(project.pii)
        # What every event of the request shares, read once rather than for each event.
        project_id, ip_policy, sent_at = project.id, project.ip_policy, submission.sent_at
        raw_topic, edge_records, append = self._raw_topic, self._edges, records.append
        try:
            for index, event in enumerate(submission.events):
                if suppressing and privacy.suppressed(project_id, event, received_at):
                    suppressed += 1
                    continue
                raw = privacy.redact(project, event) if redacting else event
                checked = check_event(
                    raw,
                    max_bytes=self._max_event_bytes,
                    measure=measure,
                    names=submission.field_names,
                    plan=plan,
                )
                incoming = checked.event
                if incoming is None:
                    original = submission.originals[index]
                    rejection, dead = self._dead_letter(
                        project, index, raw, original, checked, received_at
                    )
                    rejected.append(rejection)
                    reasons[checked.reason] = reasons.get(checked.reason, 0) + 1
                    append(dead)
                    continue
                violations = checked.violations
                flagged += bool(violations)
                key, value = enriched_record(
                    incoming,
                    project_id=project_id,
                    received_at=received_at,
                    batch_sent_at=sent_at,
                    client_ip=client_ip,
                    ip_policy=ip_policy,
                    plan_violations=list(violations) if violations else None,
                    extra=extras[index] if extras else None,
                )
                append(OutgoingRecord(raw_topic, key, value))
                if edge_records is not None:
                    edge = edge_records.record(incoming, project_id, received_at, edges)
                    if edge is not None:
                        edges.add(edge[0])
                        append(edge[1])
        except orjson.JSONEncodeError as error:
            # orjson reads 1024 levels of nesting but writes only 254: an event in between
            # can be neither produced nor dead-lettered as it came, so the request is refused
            # whole, before anything of it is acknowledged.
            raise bad_request(
                f"event {index} of the request cannot be written as JSON ({error}): an "
                f"event may nest objects and arrays at most {MAX_WRITE_DEPTH} levels deep",
                f"body, event {index}",
            ) from error
        await self._produce(records)
        if suppressed:
            self._metrics.suppressed.labels(project.id).inc(suppressed)
        if edges and self._edges is not None:
            self._edges.remember(edges)
        accepted = count - len(rejected)
        self._count(accepted, reasons, flagged)
        return BatchResult(accepted=accepted, rejected=rejected)

    def _dead_letter(
        self,
        project: Project,
        index: int,
        raw: Any,
        original: Any,
        checked: Checked,
        received_at: datetime,
    ) -> tuple[Rejection, OutgoingRecord]:
        """The answer's rejection of a refused event and its ``events.invalid`` record."""
        message_id = _message_id(raw)
        errors = list(checked.errors)
        dead = InvalidEvent(
            project_id=project.id,
            received_at=received_at,
            payload=orjson.dumps(self._privacy.redact(project, original)).decode(),
            errors=errors,
            message_id=message_id,
        )
        record = OutgoingRecord(
            self._invalid_topic, project.id.encode(), dead.model_dump_json().encode()
        )
        return Rejection(index=index, messageId=message_id, errors=errors), record

    async def _produce(self, records: list[OutgoingRecord]) -> None:
        started = time.perf_counter()
        try:
            await self._sink.send(records, self._produce_timeout_s)
        except ProducerUnavailable as error:
            raise ApiError(
                503,
                "unavailable",
                f"Kafka did not take the events: {error}; nothing of this request was "
                "acknowledged, send it again",
                "kafka",
                headers={"Retry-After": str(self._retry_after_s)},
            ) from error
        self._metrics.produce_seconds.observe(time.perf_counter() - started)

    def _count(self, accepted: int, reasons: dict[str, int], flagged: int) -> None:
        if accepted:
            self._metrics.counted("accepted", "", accepted)
        for reason, n in reasons.items():
            self._metrics.counted("rejected", reason, n)
        if flagged:
            self._metrics.counted("flagged", "tracking_plan", flagged)
