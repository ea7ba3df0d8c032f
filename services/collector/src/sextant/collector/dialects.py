"""The two wire dialects, Segment's Tracking API and PostHog's capture API, read into one shape.

A :class:`Submission` is what every endpoint hands on: the write key found in the body (if
any), the batch's ``sentAt``, and the events as Segment-shaped dicts beside the original
payloads (which the dead-letter topic keeps as they were sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from sextant.collector.errors import bad_request
from sextant.schemas.events import EventType


@dataclass
class Submission:
    events: list[dict[str, Any]]
    """Segment-shaped events, ready for ``IncomingEvent`` validation (non-objects stay as-is)."""
    originals: list[Any]
    """The events exactly as they arrived, for the dead-letter topic."""
    write_key: str | None = None
    sent_at: datetime | None = None
    field_names: dict[str, str] = field(default_factory=dict)
    """How to name Segment fields in errors for this dialect (``userId`` → ``distinct_id``)."""


def parse_json(body: bytes) -> Any:
    """The decoded body, or 400 saying where the JSON breaks."""
    if not body.strip():
        raise bad_request("the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"the body is not JSON: {error}") from error


def _sent_at(value: Any, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request("must be an ISO-8601 date-time string", where)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise bad_request(f"not an ISO-8601 date-time: {value!r}", where) from error
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"the body must be a JSON object ({what}), not {type(body).__name__}")
    return body


def segment_batch(body: Any) -> Submission:
    """``POST /v1/batch``: ``{"batch": [...], "writeKey"?, "sentAt"?, "context"?}``."""
    document = _object(body, "a batch")
    batch = document.get("batch")
    if not isinstance(batch, list):
        raise bad_request("a batch needs a 'batch' array of events", "body.batch")
    shared_context = document.get("context")
    events: list[dict[str, Any]] = []
    for item in batch:
        if isinstance(item, dict) and isinstance(shared_context, dict):
            item = {**item, "context": {**shared_context, **(item.get("context") or {})}}
        events.append(item)
    return Submission(
        events=events,
        originals=batch,
        write_key=_text(document.get("writeKey")),
        sent_at=_sent_at(document.get("sentAt"), "body.sentAt"),
    )


def segment_single(body: Any, call: EventType) -> Submission:
    """``POST /v1/<call>``: one event; the path names its type."""
    document = _object(body, f"one {call.value} call")
    event = {**document, "type": call.value}
    return Submission(
        events=[event],
        originals=[document],
        write_key=_text(document.get("writeKey")),
        sent_at=_sent_at(document.get("sentAt"), "body.sentAt"),
    )


POSTHOG_FIELDS = {"userId": "distinct_id", "messageId": "uuid", "event": "event"}


def _posthog_key(document: dict[str, Any]) -> str | None:
    properties = document.get("properties")
    token = properties.get("token") if isinstance(properties, dict) else None
    return _text(document.get("api_key")) or _text(document.get("token")) or _text(token)


def posthog_event(item: Any) -> Any:
    """One PostHog event as the Segment call it stands for; non-objects pass unchanged."""
    if not isinstance(item, dict):
        return item
    name = item.get("event")
    properties = item.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else {}
    distinct_id = item.get("distinct_id", properties.get("distinct_id"))
    event: dict[str, Any] = {
        "type": EventType.TRACK.value,
        "event": name,
        "userId": distinct_id,
        "timestamp": item.get("timestamp"),
        "messageId": item.get("uuid"),
        "context": _posthog_context(properties),
    }
    if "$set" in item and isinstance(item["$set"], dict):
        properties.setdefault("$set", item["$set"])
    if name in ("$identify", "$set"):
        event |= {"type": EventType.IDENTIFY.value, "traits": properties.pop("$set", {})}
    elif name == "$pageview":
        event |= {"type": EventType.PAGE.value, "name": properties.get("$current_url")}
    elif name == "$screen":
        event |= {"type": EventType.SCREEN.value, "name": properties.get("$screen_name")}
    elif name == "$create_alias":
        event |= {
            "type": EventType.ALIAS.value,
            "userId": properties.get("alias"),
            "previousId": distinct_id,
        }
    elif name == "$groupidentify":
        event |= {
            "type": EventType.GROUP.value,
            "groupId": properties.get("$group_key"),
            "traits": properties.get("$group_set") or {},
        }
    event["properties"] = properties
    return event


def _posthog_context(properties: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if isinstance(properties.get("$lib"), str):
        context["library"] = {"name": properties["$lib"], "version": properties.get("$lib_version")}
    if isinstance(properties.get("$ip"), str):
        context["ip"] = properties["$ip"]
    return context


def posthog_batch(body: Any) -> Submission:
    """``POST /batch/``: ``{"api_key", "batch": [...], "sent_at"?}``, or a bare array."""
    if isinstance(body, list):
        document: dict[str, Any] = {"batch": body}
    else:
        document = _object(body, "a batch")
    batch = document.get("batch")
    if not isinstance(batch, list):
        raise bad_request("a batch needs a 'batch' array of events", "body.batch")
    key = _posthog_key(document)
    if key is None and batch and isinstance(batch[0], dict):
        key = _posthog_key(batch[0])
    return Submission(
        events=[posthog_event(item) for item in batch],
        originals=batch,
        write_key=key,
        sent_at=_sent_at(document.get("sent_at", document.get("sentAt")), "body.sent_at"),
        field_names=POSTHOG_FIELDS,
    )


def posthog_single(body: Any) -> Submission:
    """``POST /capture/`` and ``/e/``: one event with ``api_key``, or a batch in disguise."""
    document = _object(body, "one event")
    if isinstance(document.get("batch"), list):
        return posthog_batch(document)
    return Submission(
        events=[posthog_event(document)],
        originals=[document],
        write_key=_posthog_key(document),
        sent_at=_sent_at(document.get("sent_at", document.get("sentAt")), "body.sent_at"),
        field_names=POSTHOG_FIELDS,
    )
