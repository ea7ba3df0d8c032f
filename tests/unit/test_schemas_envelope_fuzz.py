"""The envelope parser under arbitrary input: a valid Envelope or a ValidationError, nothing else.

The values are what a JSON parser can hand the collector (orjson refuses NaN and infinities, so
floats are finite), mixed with the shapes a real event has so that many examples get past
validation and exercise ``enrich()`` too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sextant.schemas.events import (
    Envelope,
    EventType,
    IncomingEvent,
    IpPolicy,
    enrich,
    enriched_record,
    envelope_json,
)

RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# Offsets up to a day either way, on dates up to the ends of the calendar: where clock-skew
# arithmetic can leave the range of datetime.
offsets = st.integers(min_value=-1439, max_value=1439).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
extremes = st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2025-03-01T12:00:00Z"])
dates = st.one_of(
    extremes,
    extremes,
    st.datetimes(timezones=st.none() | offsets).map(_iso),
    st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    ).map(_iso),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=25),
)
ids = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.just(""),
    st.sampled_from(["u1", "anon-7"]),
)
fields: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(st.sampled_from([t.value for t in EventType]), json_values),
    "event": st.one_of(st.sampled_from(["Signed Up", "", "x" * 201]), json_values),
    "userId": ids,
    "anonymousId": ids,
    "properties": st.one_of(st.dictionaries(st.text(max_size=10), json_values), json_values),
    "traits": st.one_of(st.dictionaries(st.text(max_size=10), json_values), json_values),
    "context": st.one_of(
        st.fixed_dictionaries({}, optional={"ip": st.one_of(st.ip_addresses().map(str), ids)}),
        json_values,
    ),
    "timestamp": dates,
    "originalTimestamp": dates,
    "sentAt": dates,
    "offset": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), json_values),
    "messageId": ids,
    "name": st.one_of(st.text(max_size=210), json_values),
    "category": st.one_of(st.text(max_size=210), json_values),
    "groupId": ids,
    "previousId": ids,
    "writeKey": json_values,
    "integrations": json_values,
    "channel": json_values,
}
events = st.one_of(
    st.fixed_dictionaries(
        {"type": fields["type"]}, optional={k: v for k, v in fields.items() if k != "type"}
    ),
    json_values,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=events,
    batch_sent_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    client_ip=st.none() | st.ip_addresses().map(str) | st.text(max_size=20),
    ip_policy=st.sampled_from(list(IpPolicy)),
)
def test_any_input_is_an_envelope_or_a_validation_error(
    raw: Any, batch_sent_at: datetime | None, client_ip: str | None, ip_policy: IpPolicy
) -> None:
    try:
        incoming = IncomingEvent.model_validate(raw)
    except pydantic.ValidationError:
        return
    envelope = enrich(
        incoming,
        project_id="demo",
        received_at=RECEIVED,
        batch_sent_at=batch_sent_at,
        client_ip=client_ip,
        ip_policy=ip_policy,
    )
    assert envelope.distinct_id in (incoming.user_id, incoming.anonymous_id)
    assert envelope.timestamp <= RECEIVED
    assert "writeKey" not in envelope.extra
    if isinstance(raw, dict):
        for kept in ("integrations", "channel"):
            if kept in raw:
                assert envelope.extra[kept] == raw[kept]
    again = Envelope.model_validate_json(envelope.model_dump_json(by_alias=True))
    assert again == envelope
    options = {"batch_sent_at": batch_sent_at, "client_ip": client_ip, "ip_policy": ip_policy}
    assert_record_is_the_envelopes(incoming, envelope, options)


def assert_record_is_the_envelopes(
    incoming: IncomingEvent, envelope: Envelope, options: dict[str, Any]
) -> None:
    """The collector's record (``enriched_record``) is the envelope's key and bytes."""
    try:
        expected = envelope_json(envelope)
    except orjson.JSONEncodeError:  # beyond 64-bit integers, 254 levels: refused by both
        try:
            enriched_record(incoming, project_id="demo", received_at=RECEIVED, **options)
        except orjson.JSONEncodeError:
            return
        raise AssertionError("the record was written where the envelope could not be") from None
    key, value = enriched_record(incoming, project_id="demo", received_at=RECEIVED, **options)
    assert key == envelope.kafka_key().encode()
    if not incoming.message_id:  # each call draws a new UUIDv7
        drawn = Envelope.model_validate_json(value).message_id
        expected = envelope_json(envelope.model_copy(update={"message_id": drawn}))
    assert value == expected


@settings(max_examples=200, deadline=None)
@given(
    timestamp=st.none() | dates,
    original=st.none() | dates,
    sent_at=dates,
    offset=st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    batch_sent_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    call=st.sampled_from(list(EventType)),
)
def test_any_clock_skew_gives_an_envelope_or_a_validation_error(
    timestamp: Any,
    original: Any,
    sent_at: Any,
    offset: Any,
    batch_sent_at: datetime | None,
    call: EventType,
) -> None:
    raw = {
        "type": call.value,
        "event": "Signed Up",
        "userId": "u1",
        "previousId": "anon-7",
        "groupId": "acme",
        "timestamp": timestamp,
        "originalTimestamp": original,
        "sentAt": sent_at,
        "offset": offset,
    }
    try:
        incoming = IncomingEvent.model_validate(raw)
    except pydantic.ValidationError:
        return
    envelope = enrich(
        incoming, project_id="demo", received_at=RECEIVED, batch_sent_at=batch_sent_at
    )
    assert envelope.timestamp <= RECEIVED
    assert Envelope.model_validate_json(envelope.model_dump_json(by_alias=True)) == envelope
