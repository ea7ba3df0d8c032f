"""Delivering one batch to the collector: the wire format, gzip, and classified retries.

The collector speaks Segment's Tracking API: ``POST {host}/v1/batch`` with the write key as the
HTTP Basic user name, a JSON body ``{"batch": [event, ...], "sentAt": ...}`` and, here, always
``Content-Encoding: gzip`` when enabled. Network errors, 429 and 5xx are retried with
exponential backoff and full jitter, honouring ``Retry-After``, until a time budget is spent;
other statuses are final.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from sextant.schemas.events import FieldError
from sextant.sdk._clock import Clock
from sextant.sdk._errors import DeliveryError, FailureReason

log = logging.getLogger("sextant.sdk")

MAX_EVENT_BYTES = 32 * 1024
"""The collector's limit for one serialised event (Segment's 32 KB)."""

MAX_BATCH_BYTES = 500 * 1024
"""The collector's limit for one (uncompressed) batch body (Segment's 500 KB)."""

BATCH_OVERHEAD = len(b'{"batch":[],"sentAt":"2000-01-01T00:00:00.000000+00:00"}') + 8
"""Bytes a batch body adds around its events."""

GZIP_LEVEL = 6


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in total time.

    Before retry ``n`` (1, 2, ...) the client waits a uniformly random time in
    ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``, or exactly the collector's
    ``Retry-After`` when it sent one. It gives up (and reports the batch through
    ``on_error``) instead of starting a wait that would end more than ``max_retry_time``
    seconds after the first attempt.
    """

    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_time: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.base_delay <= self.max_delay) or self.max_retry_time < 0:
            raise ValueError("need 0 < base_delay <= max_delay and max_retry_time >= 0")

    def backoff(self, retry: int, rng: Callable[[], float]) -> float:
        """The wait before retry number ``retry`` (full jitter)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 62))
        return rng() * ceiling


@dataclass(frozen=True)
class Outcome:
    """What became of one batch. ``failure`` covers every event not delivered."""

    delivered: int
    attempts: int
    failure: DeliveryError | None = None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retryable(status: int) -> bool:
    """429 and every 5xx are worth another attempt; any other refusal is final."""
    return status == 429 or status >= 500


def decode_events(events: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(event) for event in events]


class Sender:
    """Posts batches to the collector with retries. Used by one thread at a time."""

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        *,
        gzip: bool,
        policy: RetryPolicy,
        clock: Clock,
        on_retry: Callable[[], None] = lambda: None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self._url = url
        self._gzip = gzip
        self._policy = policy
        self._clock = clock
        self._on_retry = on_retry
        self._rng = rng

    def send(self, events: list[bytes], interrupt: threading.Event) -> Outcome:
        """Deliver ``events`` (serialised, each under the event limit) as one batch.

        Returns once the collector acknowledged the batch, refused it for good, the retry
        budget ran out, or ``interrupt`` was set during a wait between attempts.
        """
        head = b'{"batch":[' + b",".join(events) + b'],"sentAt":'
        started = self._clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._post(head)
            except httpx.TransportError as exc:
                status, retry_after, message = None, None, f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return _accepted(events, response, attempt)
                status, message = response.status_code, _error_text(response)
                if not retryable(status):
                    return _failed("http_status", message, events, attempt, status)
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), self._clock.now()
                )
            delay = self._policy.backoff(attempt, self._rng) if retry_after is None else retry_after
            elapsed = self._clock.monotonic() - started
            if elapsed + delay > self._policy.max_retry_time:
                gave_up = f"still failing after {attempt} attempt(s) in {elapsed:.1f}s: {message}"
                return _failed("gave_up", gave_up, events, attempt, status)
            log.debug("batch attempt %d failed (%s); retrying in %.2fs", attempt, message, delay)
            self._on_retry()
            if not self._clock.sleep(delay, interrupt):
                stopped = f"shut down while retrying: {message}"
                return _failed("shutdown", stopped, events, attempt, status)

    def _post(self, head: bytes) -> httpx.Response:
        body = head + orjson.dumps(self._clock.now(), option=orjson.OPT_UTC_Z) + b"}"
        headers = {"Content-Type": "application/json"}
        if self._gzip:
            body = zlib.compress(body, GZIP_LEVEL, wbits=31)
            headers["Content-Encoding"] = "gzip"
        return self._http.post(self._url, content=body, headers=headers)


def _failed(
    reason: FailureReason, message: str, events: list[bytes], attempts: int, status: int | None
) -> Outcome:
    error = DeliveryError(reason, message, decode_events(events), status, attempts)
    return Outcome(0, attempts, error)


def _accepted(events: list[bytes], response: httpx.Response, attempts: int) -> Outcome:
    """A 2xx: the batch was taken, except the events the collector lists as ``rejected``."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    rejected = body.get("rejected") if isinstance(body, dict) else None
    if not isinstance(rejected, list) or not rejected:
        return Outcome(len(events), attempts)
    refused: list[dict[str, Any]] = []
    problems: dict[str, list[FieldError]] = {}
    for entry in rejected:
        if not isinstance(entry, dict):
            continue
        index = entry.get("index")
        event: dict[str, Any] = {}
        if isinstance(index, int) and 0 <= index < len(events):
            event = orjson.loads(events[index])
        refused.append(event)
        message_id = str(entry.get("messageId") or event.get("messageId") or f"#{index}")
        problems[message_id] = [
            FieldError(field=str(e.get("field", "")), message=str(e.get("message", "")))
            for e in entry.get("errors", [])
            if isinstance(e, dict)
        ]
    error = DeliveryError(
        "rejected",
        f"the collector refused {len(refused)} of {len(events)} event(s)",
        refused,
        response.status_code,
        attempts,
        problems,
    )
    return Outcome(len(events) - len(refused), attempts, error)


def _error_text(response: httpx.Response) -> str:
    """The collector's own explanation when it gave one, else the status line."""
    text = response.text.strip()
    return f"HTTP {response.status_code}: {text[:300]}" if text else f"HTTP {response.status_code}"
