"""The SDK's calls: Segment's wire format, and mistakes raised where they are made."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from sextant.sdk import MAX_EVENT_BYTES, Client, EventValidationError
from tests.sdk_fakes import FakeClock, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with Client(
        "wk_test", host="http://collector.test/", transport=server.transport, clock=FakeClock()
    ) as client:
        yield client


def sent(client: Client, server: FakeServer) -> list[dict[str, Any]]:
    assert client.flush(5)
    return server.delivered()


def test_track_is_sent_in_segment_wire_format(client: Client, server: FakeServer) -> None:
    message_id = client.track(
        "user-1", "Order Completed", {"revenue": 39.5}, context={"ip": "203.0.113.9"}
    )

    assert client.flush(5)
    (request,) = server.requests
    assert request.path == "/v1/batch"
    user, _, password = base64.b64decode(request.headers["authorization"][6:]).partition(b":")
    assert (user, password) == (b"wk_test", b"")
    assert request.headers["content-encoding"] == "gzip"
    assert request.body["sentAt"] == "2026-03-01T12:00:00Z"
    assert request.batch == [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "user-1",
            "properties": {"revenue": 39.5},
            "context": {
                "library": {"name": "sextant-python", "version": "0.1.0"},
                "ip": "203.0.113.9",
            },
            "timestamp": "2026-03-01T12:00:00Z",
            "messageId": message_id,
        }
    ]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda c: c.identify("u", {"plan": "pro"}),
            {"type": "identify", "traits": {"plan": "pro"}},
        ),
        (lambda c: c.page("u", "Pricing", {"path": "/p"}), {"type": "page", "name": "Pricing"}),
        (lambda c: c.screen("u", "Home"), {"type": "screen", "name": "Home"}),
        (lambda c: c.group("u", "acme", {"seats": 3}), {"type": "group", "groupId": "acme"}),
        (lambda c: c.alias("anon-7", "u"), {"type": "alias", "previousId": "anon-7"}),
    ],
)
def test_every_call_type_carries_its_own_fields(
    client: Client, server: FakeServer, call: Any, expected: dict[str, Any]
) -> None:
    call(client)

    (event,) = sent(client, server)
    assert event["userId"] == "u"
    assert expected.items() <= event.items()


def test_numeric_ids_travel_as_strings_like_the_collector_stores_them(
    client: Client, server: FakeServer
) -> None:
    client.track(42, "Clicked", anonymous_id=7)
    client.group(42, 1001)

    track, group = sent(client, server)
    assert (track["userId"], track["anonymousId"]) == ("42", "7")
    assert group["groupId"] == "1001"


def test_anonymous_events_need_no_user_id(client: Client, server: FakeServer) -> None:
    client.page(None, "Landing", anonymous_id="anon-1")

    (event,) = sent(client, server)
    assert event["anonymousId"] == "anon-1"
    assert "userId" not in event


def test_given_timestamps_and_message_ids_are_kept(client: Client, server: FakeServer) -> None:
    when = datetime(2026, 2, 1, 8, 30, tzinfo=UTC)
    returned = client.track("u", "Backfilled", timestamp=when, message_id="m-1")

    (event,) = sent(client, server)
    assert returned == "m-1"
    assert (event["timestamp"], event["messageId"]) == ("2026-02-01T08:30:00Z", "m-1")


def test_property_values_json_lacks_are_converted(client: Client, server: FakeServer) -> None:
    client.track(
        "u",
        "Paid",
        {"amount": Decimal("12.50"), "at": datetime(2026, 1, 2, tzinfo=UTC), "tags": {"a"}},
    )

    (event,) = sent(client, server)
    assert event["properties"] == {"amount": 12.5, "at": "2026-01-02T00:00:00Z", "tags": ["a"]}


@pytest.mark.parametrize(
    ("call", "field", "says"),
    [
        (lambda c: c.track(None, "Clicked"), "", "userId or anonymousId is required"),
        (lambda c: c.track("u", ""), "event", "at least 1 character"),
        (lambda c: c.track("u", "x" * 201), "event", "at most 200 characters"),
        (lambda c: c.track(True, "Clicked"), "userId", "string or an integer"),
        (lambda c: c.track("u" * 300, "Clicked"), "userId", "longer than 256"),
        (lambda c: c.group("u", ""), "", "groupId is required"),
        (lambda c: c.alias("", "u"), "", "previousId and userId are required"),
        (lambda c: c.track("u", "Clicked", {"obj": object()}), "", "not JSON serialisable"),
        (lambda c: c.track("u", "Clicked", {1: "x"}), "properties.1.[key]", "valid string"),
        (lambda c: c.track("u", "Big", {"blob": "x" * MAX_EVENT_BYTES}), "", "over the collector"),
    ],
)
def test_a_mistake_raises_at_the_call_site_and_nothing_is_sent(
    client: Client, server: FakeServer, call: Any, field: str, says: str
) -> None:
    with pytest.raises(EventValidationError) as raised:
        call(client)

    assert raised.value.problems[0].field == field
    assert says in str(raised.value)
    assert sent(client, server) == []
    assert client.stats().queued == 0


def test_without_gzip_the_body_is_plain_json(server: FakeServer) -> None:
    with Client("wk", host="http://c.test", gzip=False, transport=server.transport) as client:
        client.track("u", "Clicked")
        assert client.flush(5)

    assert "content-encoding" not in server.requests[0].headers


def test_sync_mode_sends_before_the_call_returns_on_the_calling_thread(
    server: FakeServer,
) -> None:
    with Client("wk", host="http://c.test", sync_mode=True, transport=server.transport) as client:
        client.track("u", "Invoked")

        assert [e["event"] for e in server.delivered()] == ["Invoked"]
        assert server.requests[0].thread == threading.current_thread().name
        assert client.stats().delivered == 1


@pytest.mark.parametrize(
    "options",
    [
        {"write_key": ""},
        {"host": "collector.test"},
        {"flush_at": 0},
        {"flush_interval": 0},
        {"max_queue_size": 0},
        {"max_batch_bytes": 600 * 1024},
        {"max_batch_bytes": 1000},
    ],
)
def test_impossible_options_are_refused(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"write_key": "wk", "host": "http://c.test"} | options
    with pytest.raises(ValueError, match=r"\S"):
        Client(**arguments)


def test_a_survey_answer_is_one_call_following_the_convention(
    client: Client, server: FakeServer
) -> None:
    from sextant.schemas.config import SURVEY_EVENT
    from sextant.sdk._client import SURVEY_EVENT as SDK_SURVEY_EVENT

    assert SDK_SURVEY_EVENT == SURVEY_EVENT
    client.survey_response("user-7", "nps", 9, "Fast delivery", {"plan": "pro"})
    client.survey_response("user-8", "csat", 2)
    first, second = sent(client, server)
    assert first["event"] == "Survey Responded"
    assert first["properties"] == {
        "plan": "pro",
        "survey": "nps",
        "score": 9,
        "comment": "Fast delivery",
    }
    assert second["properties"] == {"survey": "csat", "score": 2}
