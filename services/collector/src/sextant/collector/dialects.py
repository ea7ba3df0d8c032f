"""The two wire dialects, Segment's Tracking API and PostHog's capture API, read into one shape.

A :class:`Submission` is what every endpoint hands on: the write key found in the body (if
any), the batch's ``sentAt``, and the events as Segment-shaped dicts beside the original
payloads (which the dead-letter topic keeps as they were sent).

Where each client's fields land in the envelope: the collector's README (``Fields``).
"""

from __future__ import annotations

import base64
import binascii
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
    extras: list[dict[str, Any] | None] | None = None
    """Per event, fields the dialect read that the Segment shape has no place for (a batch's
    own fields beside its events, PostHog's unmapped event fields): kept in the envelope's
    ``extra`` (an event's own field of the same name wins)."""

    def apply_headers(self, anonymous_id: str | None, sent_at: str | None) -> None:
        """RudderStack's request headers: ``SentAt`` is the request's ``sentAt`` when the body
        has none; ``AnonymousId`` (base64 of the id, from its browser SDK) is the anonymous id
        of the events that carry neither ``userId`` nor ``anonymousId``."""
        if sent_at and self.sent_at is None:
            self.sent_at = _sent_at(sent_at, "header SentAt")
        anonymous = header_anonymous_id(anonymous_id)
        if anonymous is None:
            return
        events = self.events
        for index, event in enumerate(events):
            if (
                isinstance(event, dict)
                and event.get("userId") in _NO_ID
                and event.get("anonymousId") in _NO_ID
            ):
                events[index] = {**event, "anonymousId": anonymous}


_NO_ID = (None, "")


def header_anonymous_id(value: str | None) -> str | None:
    """The id in an ``AnonymousId`` header: RudderStack's browser SDK sends it base64-encoded;
    a value that is not base64 of printable text is taken as it is."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value
    return decoded if decoded and decoded.isprintable() else value


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
    shared = _batch_extra(document, SEGMENT_BATCH_READ)
    return Submission(
        events=events,
        originals=batch,
        write_key=_text(document.get("writeKey")),
        sent_at=_sent_at(document.get("sentAt"), "body.sentAt"),
        extras=[shared] * len(events) if shared else None,
    )


SEGMENT_BATCH_READ = frozenset(("batch", "writeKey", "sentAt", "context"))
"""A Segment batch's own fields the dialect reads; any other is kept in each event's extra."""
POSTHOG_BATCH_READ = frozenset(("batch", "api_key", "token", "sent_at", "sentAt"))


def _batch_extra(document: dict[str, Any], read: frozenset[str]) -> dict[str, Any] | None:
    """A batch's fields beside its events that the dialect does not read (PostHog's
    ``historical_migration`` …): every event of the batch keeps them."""
    if len(document) == 1:
        return None
    return {key: value for key, value in document.items() if key not in read} or None


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
POSTHOG_READ = frozenset(
    ("event", "properties", "distinct_id", "timestamp", "uuid", "offset", "$set", "$set_once")
)
"""PostHog's top-level event fields the dialect maps; the others are kept in ``extra``."""
POSTHOG_CREDENTIALS = frozenset(("api_key", "token"))
"""Top-level fields that carry the key: read, not kept."""
POSTHOG_CALLS = frozenset(
    ("$identify", "$set", "$set_once", "$pageview", "$screen", "$create_alias", "$groupidentify")
)
"""PostHog events that are other calls than track in Segment's shape."""


def _posthog_key(document: dict[str, Any]) -> str | None:
    properties = document.get("properties")
    token = properties.get("token") if isinstance(properties, dict) else None
    return _text(document.get("api_key")) or _text(document.get("token")) or _text(token)


def posthog_event(item: Any, key: str | None = None) -> Any:
    """One PostHog event as the Segment call it stands for; non-objects pass unchanged.

    ``distinct_id`` is the ``userId`` (``$anon_distinct_id`` the ``anonymousId``), ``uuid``
    the ``messageId``, ``timestamp`` the client's clock (else ``offset``: its age in ms);
    ``$set_once`` overridden by ``$set`` are the traits (both also stay in ``properties``, as
    PostHog keeps them); ``$lib``/``$lib_version`` are ``context.library`` and ``$ip`` moves to
    ``context.ip``; the ``$identify``, ``$set``, ``$pageview``, ``$screen``, ``$create_alias``
    and ``$groupidentify`` events become identify, page, screen, alias and group calls
    (``$set_once`` an identify call too; their PostHog name is kept in ``extra``, see
    :func:`posthog_extra`). The project token posthog-js repeats in every event's properties
    (``token``, when it is the request's ``key``) is not kept.
    """
    if not isinstance(item, dict):
        return item
    name = item.get("event")
    properties = item.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else {}
    if key is not None and properties.get("token") == key:
        del properties["token"]
    distinct_id = item.get("distinct_id", properties.get("distinct_id"))
    for person in ("$set", "$set_once"):
        if isinstance(item.get(person), dict):
            properties.setdefault(person, item[person])
    event: dict[str, Any] = {
        "type": EventType.TRACK.value,
        "event": name,
        "userId": distinct_id,
        "anonymousId": _id(properties.get("$anon_distinct_id")),
        "timestamp": item.get("timestamp"),
        "offset": _number(item.get("offset")),
        "messageId": item.get("uuid"),
        "context": _posthog_context(properties),
    }
    traits = _person_traits(properties)
    if traits:
        event["traits"] = traits
    if _posthog_call(name):
        del event["event"]
    if name in ("$identify", "$set", "$set_once"):
        event["type"] = EventType.IDENTIFY.value
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


def posthog_extra(item: Any) -> dict[str, Any] | None:
    """The top-level fields of a PostHog event the dialect does not map (posthog-node's
    ``type``, ``library`` …), without its key; and the PostHog name of an event that became
    another call than track (``$pageview`` …): its envelope's ``event`` is ``$page``."""
    if not isinstance(item, dict):
        return None
    extra = {
        key: value
        for key, value in item.items()
        if key not in POSTHOG_READ and key not in POSTHOG_CREDENTIALS
    }
    if _posthog_call(item.get("event")):
        extra["event"] = item["event"]
    return extra or None


def _posthog_call(name: Any) -> bool:
    return isinstance(name, str) and name in POSTHOG_CALLS


def _id(value: Any) -> str | int | None:
    """An id PostHog sent where Segment has one; any other value stays only where it was."""
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _person_traits(properties: dict[str, Any]) -> dict[str, Any]:
    """What a PostHog event sets on its person: ``$set_once``, overridden by ``$set``."""
    once, always = properties.get("$set_once"), properties.get("$set")
    once = once if isinstance(once, dict) else {}
    always = always if isinstance(always, dict) else {}
    return {**once, **always} if once else always


def _posthog_context(properties: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if isinstance(properties.get("$lib"), str):
        context["library"] = {"name": properties["$lib"], "version": properties.get("$lib_version")}
    if isinstance(properties.get("$ip"), str):
        context["ip"] = properties.pop("$ip")
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
    shared = _batch_extra(document, POSTHOG_BATCH_READ)
    return Submission(
        events=[posthog_event(item, key) for item in batch],
        originals=batch,
        write_key=key,
        sent_at=_sent_at(document.get("sent_at", document.get("sentAt")), "body.sent_at"),
        field_names=POSTHOG_FIELDS,
        extras=[_joined(shared, posthog_extra(item)) for item in batch],
    )


def _joined(shared: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any] | None:
    if shared and own:
        return {**shared, **own}
    return own or shared


def posthog_single(body: Any) -> Submission:
    """``POST /capture/`` and ``/e/``: one event with ``api_key``, or a batch in disguise."""
    document = _object(body, "one event")
    if isinstance(document.get("batch"), list):
        return posthog_batch(document)
    key = _posthog_key(document)
    extra = posthog_extra(document)
    if extra is not None:  # a lone event's sent_at is the request's, read below
        extra = {k: v for k, v in extra.items() if k not in ("sent_at", "sentAt")} or None
    return Submission(
        events=[posthog_event(document, key)],
        originals=[document],
        write_key=key,
        sent_at=_sent_at(document.get("sent_at", document.get("sentAt")), "body.sent_at"),
        field_names=POSTHOG_FIELDS,
        extras=[extra],
    )
