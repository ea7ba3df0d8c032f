"""Request-body documentation for ``/docs``: the endpoints read their bodies themselves
(size limits come before parsing), so their schemas and examples are declared here."""

from __future__ import annotations

from typing import Any

from sextant.schemas.events import IncomingEvent

REF = "#/components/schemas/{model}"
EVENT = {"$ref": REF.format(model="IncomingEvent")}

TRACK_EXAMPLE = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-42",
    "properties": {"revenue": 42.5, "currency": "EUR"},
    "timestamp": "2025-01-01T12:00:00Z",
    "messageId": "m-1",
}
CALL_EXAMPLES: dict[str, dict[str, Any]] = {
    "track": {k: v for k, v in TRACK_EXAMPLE.items() if k != "type"},
    "identify": {"userId": "user-42", "traits": {"plan": "pro"}},
    "page": {"anonymousId": "a-7", "name": "Pricing", "properties": {"path": "/pricing"}},
    "screen": {"userId": "user-42", "name": "Settings"},
    "group": {"userId": "user-42", "groupId": "acme", "traits": {"seats": 12}},
    "alias": {"userId": "user-42", "previousId": "a-7"},
}
POSTHOG_EVENT = {
    "event": "Order Completed",
    "distinct_id": "user-42",
    "properties": {"revenue": 42.5},
    "timestamp": "2025-01-01T12:00:00Z",
    "uuid": "0190e0a6-7d3c-7a4e-9f3b-2d1c5e6f7a8b",
}


def components() -> dict[str, Any]:
    """Schemas to merge into the OpenAPI components (the event and what it refers to)."""
    schema = IncomingEvent.model_json_schema(by_alias=True, ref_template=REF)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "IncomingEvent": schema}


def _body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
            "description": "JSON, optionally with Content-Encoding: gzip. The write key goes "
            "in the Basic username (empty password) or in the body.",
        }
    }


def request_body(kind: str) -> dict[str, Any]:
    if kind == "segment_batch":
        return _body(
            {
                "type": "object",
                "required": ["batch"],
                "properties": {
                    "batch": {"type": "array", "items": EVENT},
                    "writeKey": {"type": "string"},
                    "sentAt": {"type": "string", "format": "date-time"},
                    "context": {"type": "object"},
                },
            },
            {"batch": [TRACK_EXAMPLE], "sentAt": "2025-01-01T12:00:01Z"},
        )
    if kind.startswith("segment_"):
        return _body(EVENT, CALL_EXAMPLES[kind.removeprefix("segment_")])
    posthog_event = {
        "type": "object",
        "required": ["event", "distinct_id"],
        "properties": {
            "event": {"type": "string"},
            "distinct_id": {"type": "string"},
            "properties": {"type": "object"},
            "timestamp": {"type": "string", "format": "date-time"},
            "uuid": {"type": "string"},
            "api_key": {"type": "string"},
        },
    }
    if kind == "posthog_batch":
        return _body(
            {
                "type": "object",
                "required": ["batch"],
                "properties": {
                    "api_key": {"type": "string"},
                    "batch": {"type": "array", "items": posthog_event},
                    "sent_at": {"type": "string", "format": "date-time"},
                },
            },
            {"api_key": "phc_…", "batch": [POSTHOG_EVENT], "sent_at": "2025-01-01T12:00:01Z"},
        )
    return _body(posthog_event, {"api_key": "phc_…", **POSTHOG_EVENT})
