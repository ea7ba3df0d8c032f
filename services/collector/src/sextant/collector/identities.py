"""Identity edges from accepted events, produced with the events in one call.

An event that says two ids are one person (``sextant.schemas.identity.edge_of``) adds an
:class:`~sextant.schemas.identity.IdentityEdge` record to ``identities``, keyed by project, in
the same produce call as the event: a request is acknowledged only once both are in Kafka.

A browser SDK sends ``anonymousId`` and ``userId`` on every event once a user is known; the
edge is the same each time. The edges sent recently are remembered (after Kafka has them) and
not sent again: a repeat would change nothing in the resolver, which ignores it anyway.
"""

from __future__ import annotations

from datetime import datetime

from sextant.core.aio_kafka import OutgoingRecord
from sextant.schemas.events import IncomingEvent
from sextant.schemas.identity import MERGE_DANGEROUSLY, IdentityEdge, edge_of

EdgeKey = tuple[str, str, str, str]


class EdgeRecords:
    """Builds edge records, skipping those sent recently (``remember`` at most ``capacity``)."""

    def __init__(self, topic: str, capacity: int = 100_000) -> None:
        self.topic = topic
        self.capacity = capacity
        self._sent: dict[EdgeKey, None] = {}

    def record(
        self, event: IncomingEvent, project_id: str, received_at: datetime, pending: set[EdgeKey]
    ) -> tuple[EdgeKey, OutgoingRecord] | None:
        """The edge record of ``event``, or None (no edge, or the same edge sent recently or
        ``pending`` in this request)."""
        if (
            event.anonymous_id is None
            and event.previous_id is None
            and event.event != MERGE_DANGEROUSLY
        ):
            return None  # the common event names one id: no edge (``edge_of``'s cases)
        found = edge_of(
            call=event.type,
            event=event.event,
            user_id=event.user_id,
            anonymous_id=event.anonymous_id,
            previous_id=event.previous_id,
            properties=event.properties,
        )
        if found is None:
            return None
        kind, source, target = found
        key = (project_id, kind.value, source, target)
        if key in self._sent or key in pending:
            return None
        edge = IdentityEdge(
            project_id=project_id,
            kind=kind,
            source=source,
            target=target,
            message_id=event.message_id or "",
            timestamp=event.timestamp or received_at,
        )
        return key, OutgoingRecord(self.topic, project_id.encode(), edge.model_dump_json().encode())

    def remember(self, keys: set[EdgeKey]) -> None:
        """These edges are in Kafka."""
        if len(self._sent) + len(keys) > self.capacity:
            self._sent.clear()
        self._sent.update(dict.fromkeys(keys))
