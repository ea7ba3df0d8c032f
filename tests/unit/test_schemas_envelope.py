from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sextant.schemas.events import (
    EventType,
    IncomingEvent,
    IpPolicy,
    corrected_timestamp,
    enrich,
    truncate_ip,
)

RECEIVED = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def test_clock_skew_is_corrected_by_the_sent_at_difference() -> None:
    # The device clock is 2 hours fast; the event happened 30 s before it was sent.
    sent_at = RECEIVED + timedelta(hours=2)
    timestamp = sent_at - timedelta(seconds=30)
    assert corrected_timestamp(timestamp, sent_at, RECEIVED) == RECEIVED - timedelta(seconds=30)


def test_events_dated_in_the_future_are_clamped_to_receipt() -> None:
    future = RECEIVED + timedelta(days=3)
    assert corrected_timestamp(future, None, RECEIVED) == RECEIVED


def test_missing_timestamp_means_received_now() -> None:
    assert corrected_timestamp(None, None, RECEIVED) == RECEIVED


def test_enrich_keeps_the_original_clock_and_derives_distinct_id() -> None:
    incoming = IncomingEvent.model_validate(
        {
            "type": "track",
            "event": "Signed Up",
            "anonymousId": "anon-1",
            "timestamp": "2026-11-25T13:59:00Z",
            "sentAt": "2026-11-25T14:00:00Z",
            "properties": {"plan": "pro"},
        }
    )
    envelope = enrich(incoming, project_id="demo", received_at=RECEIVED)
    assert envelope.distinct_id == "anon-1"
    assert envelope.timestamp == RECEIVED - timedelta(minutes=1)
    assert envelope.original_timestamp == datetime(2026, 11, 25, 13, 59, tzinfo=UTC)
    assert envelope.sent_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert envelope.kafka_key() == "demo:anon-1"
    assert envelope.message_id  # generated when absent


def test_user_id_wins_over_anonymous_id_and_numbers_become_strings() -> None:
    incoming = IncomingEvent.model_validate(
        {"type": "identify", "userId": 42, "anonymousId": "a", "traits": {"email": "x@y.z"}}
    )
    envelope = enrich(incoming, project_id="demo", received_at=RECEIVED)
    assert envelope.distinct_id == "42"
    assert envelope.event == "$identify"


@pytest.mark.parametrize(
    ("payload", "field_fragment"),
    [
        ({"type": "track", "userId": "u"}, "event is required"),
        ({"type": "track", "event": "X"}, "userId or anonymousId"),
        ({"type": "group", "userId": "u"}, "groupId"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "launch", "userId": "u"}, "type"),
        ({"type": "track", "event": "X", "userId": ["a"]}, "userId"),
    ],
)
def test_invalid_events_say_why(payload: dict[str, object], field_fragment: str) -> None:
    with pytest.raises(ValidationError) as error:
        IncomingEvent.model_validate(payload)
    assert field_fragment in str(error.value)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("u-1", "u-1"), (7, "7"), ("", None), (None, None), ("x" * 256, "x" * 256)],
)
def test_ids_are_strings_and_empty_ids_are_absent(sent: object, kept: str | None) -> None:
    incoming = IncomingEvent.model_validate(
        {"type": "track", "event": "X", "anonymousId": "a", "userId": sent}
    )
    assert incoming.user_id == kept


@pytest.mark.parametrize("sent", [True, 1.5, ["a"], {"id": 1}, "x" * 257])
def test_ids_that_are_not_strings_or_integers_are_refused(sent: object) -> None:
    with pytest.raises(ValidationError) as error:
        IncomingEvent.model_validate({"type": "track", "event": "X", "userId": sent})
    assert error.value.errors()[0]["loc"] == ("userId",)


def test_page_name_is_kept_as_a_property() -> None:
    incoming = IncomingEvent.model_validate(
        {"type": "page", "userId": "u", "name": "Pricing", "properties": {"path": "/p"}}
    )
    envelope = enrich(incoming, project_id="p", received_at=RECEIVED)
    assert envelope.type is EventType.PAGE
    assert envelope.event == "$page"
    assert envelope.properties == {"path": "/p", "name": "Pricing"}
    assert incoming.properties == {"path": "/p"}  # the client's event is left as it came


def test_a_name_property_the_client_sent_wins_over_the_page_name() -> None:
    incoming = IncomingEvent.model_validate(
        {"type": "screen", "userId": "u", "name": "Home", "properties": {"name": "Start"}}
    )
    envelope = enrich(incoming, project_id="p", received_at=RECEIVED)
    assert envelope.properties["name"] == "Start"


@pytest.mark.parametrize(
    ("ip", "policy", "expected"),
    [
        ("203.0.113.77", IpPolicy.KEEP, "203.0.113.77"),
        ("203.0.113.77", IpPolicy.TRUNCATE, "203.0.113.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", IpPolicy.TRUNCATE, "2001:db8:85a3::"),
        ("203.0.113.77", IpPolicy.DROP, None),
    ],
)
def test_ip_policy(ip: str, policy: IpPolicy, expected: str | None) -> None:
    assert truncate_ip(ip, policy) == expected
