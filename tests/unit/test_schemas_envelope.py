from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sextant.schemas.events import (
    Envelope,
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


def _enriched(raw: dict[str, object], **options: object) -> Envelope:
    incoming = IncomingEvent.model_validate(raw)
    return enrich(incoming, project_id="p", received_at=RECEIVED, **options)  # type: ignore[arg-type]


def test_original_timestamp_is_the_client_time_when_there_is_no_timestamp() -> None:
    # RudderStack's clients: the call three hours ago, held in an offline queue, sent now.
    envelope = _enriched(
        {
            "type": "track",
            "event": "Queued",
            "anonymousId": "a",
            "originalTimestamp": "2026-11-25T09:00:00Z",
            "sentAt": "2026-11-25T12:00:02Z",  # the device clock is 2 s ahead
        }
    )
    assert envelope.original_timestamp == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert envelope.timestamp == datetime(2026, 11, 25, 8, 59, 58, tzinfo=UTC)
    assert "originalTimestamp" not in envelope.extra


def test_timestamp_wins_over_original_timestamp_and_the_other_is_kept() -> None:
    envelope = _enriched(
        {
            "type": "track",
            "event": "Both",
            "userId": "u",
            "timestamp": "2026-11-25T11:00:00Z",
            "originalTimestamp": "2026-11-25T11:00:01.5Z",
        }
    )
    assert envelope.original_timestamp == datetime(2026, 11, 25, 11, tzinfo=UTC)
    assert envelope.timestamp == datetime(2026, 11, 25, 11, tzinfo=UTC)
    assert envelope.extra == {"originalTimestamp": "2026-11-25T11:00:01.500000Z"}


def test_offset_dates_an_event_that_has_no_client_time() -> None:
    envelope = _enriched({"type": "track", "event": "E", "userId": "u", "offset": 2500})
    assert envelope.timestamp == RECEIVED - timedelta(milliseconds=2500)
    assert envelope.original_timestamp is None
    future = _enriched({"type": "track", "event": "E", "userId": "u", "offset": -60_000})
    assert future.timestamp == RECEIVED


def test_fields_the_envelope_does_not_name_are_kept_and_the_write_key_is_not() -> None:
    envelope = _enriched(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "writeKey": {"not": "a string"},  # read and dropped, never a reason to refuse
            "integrations": {"All": False, "Segment.io": True},
            "channel": "server",
            "_metadata": {"bundled": ["Segment.io"]},
            "receivedAt": "2020-01-01T00:00:00Z",  # Sextant's own clock decides
        }
    )
    assert envelope.extra == {
        "integrations": {"All": False, "Segment.io": True},
        "channel": "server",
        "_metadata": {"bundled": ["Segment.io"]},
        "receivedAt": "2020-01-01T00:00:00Z",
    }
    assert envelope.received_at == RECEIVED


def test_identify_traits_come_from_context_traits_too() -> None:
    envelope = _enriched(
        {
            "type": "identify",
            "userId": "u",
            "context": {"traits": {"email": "old@example.com", "plan": "pro"}},
            "traits": {"email": "new@example.com"},
        }
    )
    assert envelope.traits == {"email": "new@example.com", "plan": "pro"}
    assert envelope.context["traits"] == {"email": "old@example.com", "plan": "pro"}
    track = _enriched(
        {"type": "track", "event": "E", "userId": "u", "context": {"traits": {"plan": "pro"}}}
    )
    assert track.traits == {}  # a track call's context.traits describe the user, set nothing


def test_page_category_and_a_screen_named_in_event() -> None:
    page = _enriched({"type": "page", "userId": "u", "name": "Pricing", "category": "Docs"})
    assert page.properties == {"name": "Pricing", "category": "Docs"}
    screen = _enriched({"type": "screen", "userId": "u", "event": "Checkout"})
    assert (screen.event, screen.properties, screen.extra) == ("$screen", {"name": "Checkout"}, {})
    both = _enriched({"type": "screen", "userId": "u", "event": "Cart", "name": "Basket"})
    assert (both.properties["name"], both.extra) == ("Basket", {"event": "Cart"})


def test_fields_of_other_calls_are_kept_in_extra() -> None:
    track = _enriched({"type": "track", "event": "E", "userId": "u", "name": "n", "category": "c"})
    assert (track.properties, track.extra) == ({}, {"name": "n", "category": "c"})
    identify = _enriched({"type": "identify", "userId": "u", "event": "identify"})
    assert identify.extra == {"event": "identify"}


@pytest.mark.parametrize(
    ("policy", "kept"), [(IpPolicy.KEEP, "203.0.113.77"), (IpPolicy.TRUNCATE, "203.0.113.0")]
)
def test_the_context_ip_follows_the_ip_policy(policy: IpPolicy, kept: str) -> None:
    raw = {"type": "track", "event": "E", "userId": "u", "context": {"ip": "203.0.113.77"}}
    envelope = _enriched(raw, client_ip="198.51.100.1", ip_policy=policy)
    assert (envelope.ip, envelope.context["ip"]) == (kept, kept)
    dropped = _enriched(raw, client_ip="198.51.100.1", ip_policy=IpPolicy.DROP)
    assert dropped.ip is None
    assert "ip" not in dropped.context
