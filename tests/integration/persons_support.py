"""Rows written straight into the warehouse for the person squash and correction tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from sextant.core.warehouse import Warehouse


def insert_event(warehouse: Warehouse, distinct_id: str, event: str, at: datetime) -> None:
    """A ``track`` event of project ``acme``, received when it happened."""
    row = {
        "project_id": "acme",
        "type": "track",
        "event": event,
        "distinct_id": distinct_id,
        "message_id": str(uuid.uuid4()),
        "properties": {},
        "timestamp": at.isoformat(),
        "received_at": at.isoformat(),
    }
    warehouse.insert_json("events", orjson.dumps(row), tuple(row))


def insert_override(
    warehouse: Warehouse,
    distinct_id: str,
    person_id: str,
    version: int,
    updated_at: datetime | None = None,
) -> None:
    """``distinct_id`` of project ``acme`` belongs to ``person_id`` from ``version`` on
    (linked at ``updated_at``, by default now)."""
    warehouse.insert(
        "person_overrides",
        [["acme", distinct_id, person_id, version, updated_at or datetime.now(UTC)]],
        ["project_id", "distinct_id", "person_id", "version", "updated_at"],
    )
