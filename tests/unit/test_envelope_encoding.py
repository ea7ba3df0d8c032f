"""The fast envelope encoding writes exactly what pydantic's serializer writes with the wire
aliases (``events.raw``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sextant.schemas.events import Envelope, IncomingEvent, IpPolicy, enrich, envelope_json

RECEIVED = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "track", "event": "Order", "userId": 42, "properties": {"n": 1.5, "l": [1, "a"]}},
        {
            "type": "identify",
            "anonymousId": "a",
            "traits": {"nested": {"deep": [None, True]}, "ü": "ß"},
            "timestamp": "2025-03-01T13:59:58.5+02:00",
            "sentAt": "2025-03-01T14:00:00+02:00",
        },
        {"type": "page", "userId": "u", "name": "Home", "messageId": "m", "context": {"ip": "::1"}},
        {"type": "alias", "userId": "u", "previousId": "a", "timestamp": "2025-03-01T11:00:00Z"},
        {"type": "group", "userId": "u", "groupId": "g", "properties": {"big": 2**60}},
        {
            "type": "screen",
            "anonymousId": "a",
            "event": "Cart",
            "category": "Main",
            "originalTimestamp": "2025-03-01T11:59:00.25Z",
            "integrations": {"All": True},
            "channel": "mobile",
        },
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "2025-03-01T11:00:00Z",
            "originalTimestamp": "2025-03-01T11:00:00.001+01:00",
            "offset": 12,
            "writeKey": "k",
        },
    ],
)
def test_envelope_json_equals_pydantics_bytes(raw: dict[str, object]) -> None:
    envelope = enrich(
        IncomingEvent.model_validate(raw),
        project_id="demo",
        received_at=RECEIVED,
        client_ip="198.51.100.7",
        ip_policy=IpPolicy.TRUNCATE,
        plan_violations=["properties.n: wrong"],
    )
    assert envelope_json(envelope) == envelope.model_dump_json(by_alias=True).encode()
    assert Envelope.model_validate_json(envelope_json(envelope)) == envelope


def test_whole_second_and_offset_times_match_too() -> None:
    incoming = IncomingEvent.model_validate(
        {"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-01T10:00:00-05:00"}
    )
    envelope = enrich(
        incoming,
        project_id="p",
        received_at=datetime(2025, 3, 1, 16, tzinfo=UTC),
        batch_sent_at=datetime(2025, 3, 1, 10, 0, 5, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert envelope_json(envelope) == envelope.model_dump_json(by_alias=True).encode()
