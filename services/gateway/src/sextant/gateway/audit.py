"""The gateway's side of the audit log: recording entries, remembering them, paging them.

Who acts is known from the request's key: the auth dependencies put it in :data:`ACTOR` for
the rest of the request, so every config write (whichever route makes it) is recorded with
its author; writes outside a request (ramps, guardrail stops) are the ``system``'s.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sextant.core.audit_log import AuditFollower, AuditPublisher, audit_view, change_action
from sextant.core.kafka import note_use
from sextant.core.logging import get_logger
from sextant.gateway.settings import GatewaySettings
from sextant.schemas.audit import Actor, AuditAction, AuditEntry
from sextant.schemas.config import ApiKey, ConfigDocument, parse_config_key
from sextant.schemas.topics import Topic, topic_name

log = get_logger(__name__)

SYSTEM = Actor(kind="system", id="gateway")


@dataclass(frozen=True)
class Caller:
    actor: Actor
    source: str


ACTOR: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("audit_actor", default=None)


def _project_of(config_key: str) -> str:
    return parse_config_key(config_key)[1]


class AuditLog:
    """Entries in memory (followed from the topic) and the publisher that appends them."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.follower = AuditFollower(settings, self._remember)
        self._entries: list[AuditEntry] = []
        self._ids: set[str] = set()
        self._last_used: dict[str, datetime] = {}
        self._recorded_use: dict[str, datetime] = {}
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._publisher: AuditPublisher | None = None
        # Opened on first use, as the config publisher is.
        note_use(topic_name(Topic.AUDIT, settings.topic_prefix), "writes")

    # --- recording ---

    def record(
        self,
        action: AuditAction,
        project_id: str,
        target: str = "",
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        detail: str = "",
        caller: Caller | None = None,
    ) -> AuditEntry:
        """Append one entry: kept in memory at once, sent to the topic without waiting (a
        request is not slowed by its own audit; the broker's failure is logged)."""
        caller = caller or ACTOR.get() or Caller(SYSTEM, "")
        entry = AuditEntry(
            id=uuid.uuid4().hex,
            at=datetime.now(UTC),
            project_id=project_id,
            action=action,
            actor=caller.actor,
            target=target,
            source=caller.source,
            before=before,
            after=after,
            detail=detail[:2000],
        )
        self._remember(entry)
        try:
            self._publisher_().send(entry)
        except Exception as error:  # noqa: BLE001 - the broker's fault must not fail the request
            log.error("an audit entry was not stored", action=action.value, error=str(error))
        return entry

    def config_writes(
        self, writes: Iterable[tuple[str, ConfigDocument | None, ConfigDocument | None]]
    ) -> None:
        """One entry per (config key, before, after) that changed something."""
        for key, before, after in writes:
            if before == after:
                continue
            self.record(
                change_action(before, after),
                _project_of(key),
                key,
                audit_view(before),
                audit_view(after),
            )

    def key_used(self, key: ApiKey, caller: Caller) -> None:
        """Note a use of ``key``: its first use ever, and at most one entry per key and
        ``key_usage_resolution_seconds`` after that (the last-used time survives restarts)."""
        now = datetime.now(UTC)
        config_key = key.config_key()
        resolution = timedelta(seconds=self.settings.key_usage_resolution_seconds)
        with self._lock:
            self._last_used[config_key] = now
            recorded = self._recorded_use.get(config_key)
            if recorded is not None and now - recorded < resolution:
                return
            self._recorded_use[config_key] = now
        action = AuditAction.KEY_USED if recorded is not None else AuditAction.KEY_FIRST_USED
        self.record(action, key.project_id, config_key, caller=caller)

    def failed_attempt(self, caller: Caller, reason: str) -> None:
        """Count an unknown or revoked key from ``caller.source``; at the threshold within a
        minute, one entry (then again only after the count starts over)."""
        now = time.monotonic()
        with self._lock:
            window = self._failures.setdefault(caller.source, deque())
            while window and now - window[0] > 60:
                window.popleft()
            window.append(now)
            reached = len(window) == self.settings.audit_failed_auth_threshold
        if reached:
            detail = f"{len(window)} failed attempts within a minute; last: {reason}"
            self.record(AuditAction.AUTH_FAILURES, "*", detail=detail, caller=caller)

    def last_used(self, key: ApiKey) -> datetime | None:
        with self._lock:
            return self._last_used.get(key.config_key())

    # --- reading ---

    def entries(self) -> list[AuditEntry]:
        with self._lock:
            return list(self._entries)

    def _remember(self, entry: AuditEntry) -> None:
        with self._lock:
            if entry.id in self._ids:
                return
            self._ids.add(entry.id)
            self._entries.append(entry)
            if entry.action in (AuditAction.KEY_FIRST_USED, AuditAction.KEY_USED):
                for used in (self._last_used, self._recorded_use):
                    if entry.target not in used or used[entry.target] < entry.at:
                        used[entry.target] = entry.at

    def _publisher_(self) -> AuditPublisher:
        with self._lock:
            if self._publisher is None:
                self._publisher = AuditPublisher(self.settings)
            return self._publisher

    def start(self) -> None:
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
