"""What the real clients send lands where the envelope says: the recorded requests of
``tests/fixtures/payloads/`` replayed through the collector (in-memory record sink, its clock
at each request's recorded arrival).

Two kinds of check: one per client family that every field of every event it sent is in the
envelope, where ``sextant.schemas.events`` documents it (``assert_segment_fields_land``,
``assert_posthog_fields_land``), and one per client for what its scenario did (the offline
event's time, identify traits, page names, numeric ids, the beacon, the preflights).
"""

from __future__ import annotations

import base64
import gzip
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sextant.collector.app import create_app
from sextant.collector.dialects import header_anonymous_id
from sextant.collector.settings import CollectorSettings
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ApiKey, KeyKind, Project, hash_key
from sextant.schemas.events import Envelope, EventType, IpPolicy
from tests.unit.test_collector_app import MemorySink

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
CLIENT_ADDRESS = "203.0.113.77"
SEGMENT_FAMILY = (
    "rudderstack-js",
    "rudderstack-js-beacon",
    "rudderstack-mobile",
    "segment-analytics-next",
    "segment-analytics-python",
)
POSTHOG_FAMILY = ("posthog-js", "posthog-python")


def when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Exchange:
    """One recorded request, what the collector answered, and the events it produced."""

    request: dict[str, Any]
    status: int
    headers: httpx.Headers
    answer: Any
    sent: list[Any]
    """The events as the client sent them, and the batch around them (if any)."""
    batch: dict[str, Any]
    envelopes: list[Envelope]

    @property
    def received_at(self) -> datetime:
        return when(self.request["received_at"])


def request_body(request: dict[str, Any]) -> bytes:
    if "body_json" in request:
        return orjson.dumps(request["body_json"])
    if "body_text" in request:
        return str(request["body_text"]).encode()
    if "body_base64" in request:
        return base64.b64decode(request["body_base64"])
    return b""


def sent_document(request: dict[str, Any]) -> Any:
    """The request's JSON as the client meant it (gzip, base64 forms undone here, by hand)."""
    body = request_body(request)
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    if body.startswith(b"data="):
        body = base64.b64decode(urllib.parse.parse_qs(body.decode())["data"][0])
    return orjson.loads(body) if body else None


def sent_events(request: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    document = sent_document(request)
    if isinstance(document, list):
        return document, {}
    if isinstance(document, dict) and isinstance(document.get("batch"), list):
        return document["batch"], document
    return [document], {}


async def replay(
    name: str, ip_policy: IpPolicy = IpPolicy.KEEP
) -> tuple[dict[str, Any], list[Exchange]]:
    fixture = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    state = ConfigState()
    key = fixture["write_key"]
    for document in (
        Project(
            id="recorded",
            project_id="recorded",
            name="Recorded shop",
            allowed_origins=["http://127.0.0.1:*"],
            ip_policy=ip_policy,
        ),
        ApiKey(id="w", project_id="recorded", key_kind=KeyKind.WRITE, key_hash=hash_key(key)),
    ):
        state.apply(document.config_key(), document)
    sink = MemorySink()
    now = [datetime.now(UTC)]
    app = create_app(
        CollectorSettings(topic_prefix="t"), state=state, sink=sink, clock=lambda: now[0]
    )
    transport = httpx.ASGITransport(app=app, client=(CLIENT_ADDRESS, 5555))
    exchanges = []
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        for request in fixture["requests"]:
            now[0] = when(request["received_at"])
            before = len(sink.raw())
            query = f"?{request['query']}" if request["query"] else ""
            response = await http.request(
                request["method"],
                request["path"] + query,
                headers=request["headers"],
                content=request_body(request),
            )
            is_json = response.headers.get("content-type", "").startswith("application/json")
            events, batch = sent_events(request) if request["method"] == "POST" else ([], {})
            exchanges.append(
                Exchange(
                    request=request,
                    status=response.status_code,
                    headers=response.headers,
                    answer=response.json() if is_json and response.content else None,
                    sent=events,
                    batch=batch,
                    envelopes=sink.raw()[before:],
                )
            )
    assert sink.invalid() == []
    return fixture, exchanges


def ingested(exchanges: list[Exchange]) -> list[Exchange]:
    """The requests that carried events (not preflights, settings, flags)."""
    return [
        e
        for e in exchanges
        if e.request["method"] == "POST" and e.request["path"] not in ("/flags/", "/decide/")
    ]


def pairs(exchanges: list[Exchange]) -> list[tuple[Exchange, Any, Envelope]]:
    """Each sent event beside its envelope (the collector keeps their order)."""
    found = []
    for exchange in ingested(exchanges):
        assert exchange.status == 200, exchange.answer
        assert exchange.answer == {"accepted": len(exchange.sent), "rejected": []}
        assert len(exchange.envelopes) == len(exchange.sent)
        found += [(exchange, s, e) for s, e in zip(exchange.sent, exchange.envelopes, strict=True)]
    return found


def text_id(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def skew_corrected(
    client_time: datetime | None, sent_at: datetime | None, received: datetime
) -> datetime:
    if client_time is None:
        return received
    corrected = client_time if sent_at is None else received - (sent_at - client_time)
    return min(corrected, received)


VIEWS = (EventType.PAGE, EventType.SCREEN)


def assert_segment_fields_land(exchange: Exchange, sent: dict[str, Any], env: Envelope) -> None:
    """Every field of a Segment-shaped event is where the envelope's documentation says."""
    call = EventType(sent.get("type") or exchange.request["path"].rsplit("/", 1)[-1])
    assert env.type is call
    header_id = header_anonymous_id(exchange.request["headers"].get("anonymousid"))
    for key, value in sent.items():
        if key == "type":
            continue
        if key == "event":
            if call is EventType.TRACK:
                assert env.event == value
            elif call in VIEWS and not sent.get("name"):
                assert env.properties["name"] == sent.get("properties", {}).get("name", value)
            else:
                assert env.extra["event"] == value, key
        elif key == "userId":
            assert env.user_id == text_id(value)
        elif key == "anonymousId":
            assert env.anonymous_id == (
                text_id(value) or (None if sent.get("userId") else header_id)
            )
        elif key == "properties":
            assert value.items() <= env.properties.items()
        elif key == "traits":
            assert value.items() <= env.traits.items()
        elif key == "context":
            shared = exchange.batch.get("context") or {}
            assert {**shared, **value}.items() <= env.context.items()
        elif key == "timestamp":
            assert env.original_timestamp == when(value)
        elif key == "originalTimestamp":
            if sent.get("timestamp"):
                assert env.extra["originalTimestamp"] is not None
            else:
                assert env.original_timestamp == when(value)
        elif key == "sentAt":
            assert env.sent_at == when(value)
        elif key == "messageId":
            assert env.message_id == str(value)
        elif key in ("name", "category"):
            if call in VIEWS:
                assert env.properties[key] == sent.get("properties", {}).get(key, value)
            else:
                assert env.extra[key] == value
        elif key == "groupId":
            assert env.group_id == text_id(value)
        elif key == "previousId":
            assert env.previous_id == text_id(value)
        elif key == "writeKey":
            assert "writeKey" not in env.extra  # a credential: read, not kept
        else:
            assert env.extra[key] == value, key
    if call is EventType.IDENTIFY:
        in_context = (sent.get("context") or {}).get("traits") or {}
        assert env.traits == {**in_context, **(sent.get("traits") or {})}
    for key, value in exchange.batch.items():
        if key not in ("batch", "writeKey", "sentAt", "context"):
            assert env.extra[key] == sent.get(key, value)
    # The clock: the client's time at the call, corrected by how long the event was on its way.
    client = sent.get("timestamp") or sent.get("originalTimestamp")
    sent_at = (
        sent.get("sentAt")
        or exchange.batch.get("sentAt")
        or exchange.request["headers"].get("sentat")
    )
    assert env.received_at == exchange.received_at
    assert env.timestamp == skew_corrected(
        when(client) if client else None, when(sent_at) if sent_at else None, env.received_at
    )


POSTHOG_READ = {"event", "properties", "distinct_id", "timestamp", "uuid", "$set", "$set_once"}


def assert_posthog_fields_land(
    exchange: Exchange, sent: dict[str, Any], env: Envelope, key: str
) -> None:
    """Every field of a PostHog event is where the collector's README says."""
    properties = dict(sent.get("properties") or {})
    distinct_id = sent.get("distinct_id", properties.get("distinct_id"))
    if env.type is EventType.ALIAS:
        assert (env.previous_id, env.user_id) == (distinct_id, properties["alias"])
    else:
        assert env.user_id == text_id(distinct_id)
    assert env.message_id == sent["uuid"]
    if env.type is EventType.TRACK:
        assert env.event == sent["event"]
    else:  # PostHog's name of the call ($identify, $pageview …) is kept beside it
        assert env.extra["event"] == sent["event"]
    if sent.get("timestamp"):
        assert env.original_timestamp == when(sent["timestamp"])
    for person in ("$set", "$set_once"):
        if person in sent:
            properties.setdefault(person, sent[person])
    ip = properties.pop("$ip", None)
    if ip is not None:
        assert env.context["ip"] == ip
    if properties.get("token") == key:
        del properties["token"]
    view_name = {EventType.PAGE: "$current_url", EventType.SCREEN: "$screen_name"}
    if env.type in view_name and properties.get(view_name[env.type]):
        properties.setdefault("name", properties[view_name[env.type]])
    assert env.properties == properties
    traits = {**(properties.get("$set_once") or {}), **(properties.get("$set") or {})}
    if env.type is EventType.GROUP:
        traits = properties["$group_set"]
    assert env.traits == traits
    if "$anon_distinct_id" in properties:
        assert env.anonymous_id == properties["$anon_distinct_id"]
    if "$lib" in properties:
        assert env.context["library"] == {
            "name": properties["$lib"],
            "version": properties.get("$lib_version"),
        }
    for field, value in sent.items():
        if field in ("api_key", "token"):
            assert field not in env.extra
        elif field not in POSTHOG_READ and field != "offset":
            assert env.extra[field] == value
    for field, value in exchange.batch.items():
        if field not in ("batch", "api_key", "token", "sent_at", "sentAt"):
            assert env.extra[field] == value
    sent_at = exchange.batch.get("sent_at")
    client = when(sent["timestamp"]) if sent.get("timestamp") else None
    if client is None and sent.get("offset") is not None:
        expected = exchange.received_at - timedelta(milliseconds=sent["offset"])
    else:
        expected = skew_corrected(client, when(sent_at) if sent_at else None, env.received_at)
    assert env.timestamp == expected


@pytest.fixture(params=SEGMENT_FAMILY)
async def segment_family(request: pytest.FixtureRequest) -> list[Exchange]:
    _, exchanges = await replay(request.param)
    return exchanges


async def test_every_field_of_a_segment_family_client_lands_in_the_envelope(
    segment_family: list[Exchange],
) -> None:
    found = pairs(segment_family)
    assert found
    for exchange, sent, env in found:
        assert_segment_fields_land(exchange, sent, env)


@pytest.mark.parametrize("name", POSTHOG_FAMILY)
async def test_every_field_of_a_posthog_client_lands_in_the_envelope(name: str) -> None:
    fixture, exchanges = await replay(name)
    found = pairs(exchanges)
    assert found
    for exchange, sent, env in found:
        assert_posthog_fields_land(exchange, sent, env, fixture["write_key"])


def assert_kept_its_call_time(offline: Envelope) -> None:
    """An event that waited in an offline queue is dated when it was made, not on arrival."""
    made = offline.original_timestamp
    assert made is not None
    assert offline.received_at - made > timedelta(seconds=2)
    assert abs(offline.timestamp - made) < timedelta(milliseconds=50)


def by_type(found: list[tuple[Exchange, Any, Envelope]], call: EventType) -> list[Envelope]:
    return [env for _, _, env in found if env.type is call]


def named(found: list[tuple[Exchange, Any, Envelope]], event: str) -> tuple[Exchange, Envelope]:
    [(exchange, env)] = [(x, env) for x, _, env in found if env.event == event]
    return exchange, env


# --- RudderStack's browser SDK ---------------------------------------------------------------


async def test_rudderstack_js_fetches_its_source_config_and_its_preflights_pass() -> None:
    _, exchanges = await replay("rudderstack-js")
    [config] = [
        e
        for e in exchanges
        if e.request["path"] == "/sourceConfig/" and e.request["method"] == "GET"
    ]
    assert config.status == 200
    assert config.answer["source"]["id"] == "recorded"
    assert config.answer["source"]["destinations"] == []
    preflights = [e for e in exchanges if e.request["method"] == "OPTIONS"]
    assert preflights
    for preflight in preflights:
        assert preflight.status == 204
        allowed = preflight.headers["access-control-allow-headers"].lower().split(", ")
        asked = preflight.request["headers"]["access-control-request-headers"].split(",")
        assert set(asked) <= set(allowed)
    asked = {p.request["headers"]["access-control-request-headers"] for p in preflights}
    assert any("anonymousid" in a and "sentat" in a for a in asked)


async def test_rudderstack_js_events_keep_their_call_time_traits_and_extra_fields() -> None:
    _, exchanges = await replay("rudderstack-js")
    found = pairs(exchanges)
    assert {env.type for _, _, env in found} == {
        EventType.PAGE,
        EventType.IDENTIFY,
        EventType.GROUP,
        EventType.ALIAS,
        EventType.TRACK,
    }
    [page] = by_type(found, EventType.PAGE)
    assert (page.event, page.properties["name"], page.properties["category"]) == (
        "$page",
        "Pricing",
        "Docs",
    )
    assert page.properties["path"] == "/pricing"
    identify = by_type(found, EventType.IDENTIFY)
    assert identify[0].traits == {"email": "ada@example.com", "plan": "pro"}
    assert identify[1].user_id == "4242"
    [group] = by_type(found, EventType.GROUP)
    assert (group.group_id, group.traits) == ("acme", {"seats": 3})
    for _, _, env in found:
        assert env.extra["channel"] == "web"
        assert env.extra["integrations"] == {"All": True}
        assert env.context["library"]["name"] == "RudderLabs JavaScript SDK"
        assert env.anonymous_id is not None
        assert env.ip == CLIENT_ADDRESS
    # Made while the browser was offline, sent by the SDK's retry queue seconds later.
    exchange, offline = named(found, "Ordered Offline")
    assert exchange.request["headers"].get("rsa-retry-attempt")
    assert_kept_its_call_time(offline)


async def test_rudderstack_js_beacon_posts_one_batch_with_the_key_in_the_query() -> None:
    _, exchanges = await replay("rudderstack-js-beacon")
    [beacon] = ingested(exchanges)
    assert beacon.request["path"] == "/beacon/v1/batch"
    assert beacon.request["query"].startswith("writeKey=")
    assert beacon.request["headers"]["content-type"] == "text/plain"
    assert beacon.answer == {"accepted": 7, "rejected": []}
    found = pairs(exchanges)
    _, offline = named(found, "Ordered Offline")
    _, before = named(found, "Order Completed")
    # All sent together as the page unloaded; each keeps the time it was made.
    assert offline.received_at - offline.timestamp > timedelta(seconds=10)
    assert offline.timestamp - before.timestamp > timedelta(seconds=5)
    assert beacon.headers["access-control-allow-origin"] == beacon.request["headers"]["origin"]


# --- RudderStack's mobile SDKs -------------------------------------------------------------


async def test_rudderstack_mobile_batches_keep_the_time_events_were_made_offline() -> None:
    _, exchanges = await replay("rudderstack-mobile")
    found = pairs(exchanges)
    _, installed = named(found, "Application Installed")
    assert installed.timestamp == datetime(2026, 1, 1, 10, 0, 0, 470_000, tzinfo=UTC)
    assert installed.received_at - installed.timestamp > timedelta(minutes=39)
    assert installed.extra == {"integrations": {"All": True}, "channel": "mobile"}


async def test_rudderstack_mobile_identify_screen_group_and_alias() -> None:
    _, exchanges = await replay("rudderstack-mobile")
    found = pairs(exchanges)
    identify = by_type(found, EventType.IDENTIFY)
    assert identify[0].traits["email"] == "ada@example.com"
    assert identify[0].traits["address"] == {"city": "Berlin"}
    assert identify[0].extra["event"] == "identify"
    assert identify[0].extra["integrations"]["INTERCOM"] == {"lookup": "phone"}
    assert identify[1].traits == {"email": "grace@example.com", "plan": "team"}
    screens = by_type(found, EventType.SCREEN)
    assert [s.properties["name"] for s in screens] == ["Checkout", "Cart"]
    assert all(s.event == "$screen" and "event" not in s.extra for s in screens)
    [group] = by_type(found, EventType.GROUP)
    assert (group.group_id, group.traits["plan"]) == ("acme", "enterprise")
    [alias] = by_type(found, EventType.ALIAS)
    assert (alias.previous_id, alias.user_id) == ("user-42", "user-42-renamed")


# --- Segment ---------------------------------------------------------------------------------


async def test_analytics_next_events_with_their_metadata_and_no_write_key() -> None:
    _, exchanges = await replay("segment-analytics-next")
    found = pairs(exchanges)
    [page] = by_type(found, EventType.PAGE)
    assert (page.properties["name"], page.properties["category"]) == ("Pricing", "Docs")
    for _, sent, env in found:
        assert "writeKey" in sent
        assert "writeKey" not in env.extra
        assert env.extra["_metadata"]["bundled"] == ["Segment.io"]
        assert env.extra["integrations"] == {}
        assert env.context["library"]["name"] == "analytics.js"
    _, offline = named(found, "Ordered Offline")
    assert_kept_its_call_time(offline)


async def test_analytics_python_numeric_ids_backfill_and_screens() -> None:
    _, exchanges = await replay("segment-analytics-python")
    found = pairs(exchanges)
    exchange, numeric = named(found, "Numeric Id")
    [sent] = exchange.sent
    assert (sent["userId"], sent["anonymousId"]) == ("4242", "777")  # it sends their strings
    assert (numeric.user_id, numeric.anonymous_id, numeric.distinct_id) == ("4242", "777", "4242")
    _, backfilled = named(found, "Backfilled")
    assert backfilled.original_timestamp == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert backfilled.timestamp - datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC) < timedelta(seconds=1)
    assert backfilled.extra["integrations"] == {"All": False, "Mixpanel": True}
    [screen] = by_type(found, EventType.SCREEN)
    assert (screen.properties["name"], screen.properties["category"]) == ("Settings", "App")


# --- PostHog ---------------------------------------------------------------------------------


async def test_posthog_js_identify_sets_traits_and_links_the_anonymous_id() -> None:
    _, exchanges = await replay("posthog-js")
    found = pairs(exchanges)
    [identify] = by_type(found, EventType.IDENTIFY)
    anonymous = identify.properties["$anon_distinct_id"]
    assert (identify.user_id, identify.anonymous_id) == ("user-42", anonymous)
    assert identify.traits["email"] == "ada@example.com"  # $set
    assert identify.traits["first_plan"] == "pro"  # $set_once
    assert identify.traits["$initial_current_url"].endswith("/record-posthog-js.html")
    [group] = by_type(found, EventType.GROUP)
    assert (group.group_id, group.traits) == ("acme", {"seats": 3})
    for _, _, env in found:
        assert "token" not in env.properties
        assert env.context["library"]["name"] == "web"
    _, offline = named(found, "Ordered Offline")
    assert offline.received_at - offline.timestamp > timedelta(seconds=2)


async def test_posthog_python_person_properties_ip_and_batch_fields() -> None:
    _, exchanges = await replay("posthog-python")
    found = pairs(exchanges)
    _, signed_up = named(found, "Signed Up")
    assert signed_up.type is EventType.TRACK
    assert signed_up.traits == {"plan": "pro", "first_plan": "free"}
    identify = by_type(found, EventType.IDENTIFY)
    assert [i.traits for i in identify] == [
        {"email": "ada@example.com"},
        {"first_seen": "2025-01-02"},
    ]
    _, backfilled = named(found, "Backfilled")
    assert (backfilled.ip, backfilled.context["ip"]) == ("198.51.100.23", "198.51.100.23")
    assert "$ip" not in backfilled.properties
    assert backfilled.original_timestamp == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    for _, sent, env in found:
        own = {} if env.type is EventType.TRACK else {"event": sent["event"]}
        assert env.extra == {"historical_migration": False, **own}


@pytest.mark.parametrize(
    ("policy", "kept"), [(IpPolicy.TRUNCATE, "198.51.100.0"), (IpPolicy.DROP, None)]
)
async def test_the_ip_policy_holds_for_the_ip_a_client_puts_in_the_event(
    policy: IpPolicy, kept: str | None
) -> None:
    _, exchanges = await replay("posthog-python", ip_policy=policy)
    _, backfilled = named(pairs(exchanges), "Backfilled")
    assert backfilled.ip == kept
    assert backfilled.context.get("ip") == kept
    assert "$ip" not in backfilled.properties


# --- What the recorded clients did not send, from the specifications -------------------------


@pytest.fixture
async def collector() -> AsyncIterator[tuple[httpx.AsyncClient, MemorySink]]:
    state = ConfigState()
    for document in (
        Project(id="demo", project_id="demo", name="Demo", ip_policy=IpPolicy.TRUNCATE),
        ApiKey(id="w", project_id="demo", key_kind=KeyKind.WRITE, key_hash=hash_key(KEY)),
    ):
        state.apply(document.config_key(), document)
    sink = MemorySink()
    app = create_app(CollectorSettings(topic_prefix="t"), state=state, sink=sink, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app, client=(CLIENT_ADDRESS, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http, sink


KEY = "sx_write_spec_0000000000000000000"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


async def test_segments_http_api_takes_numeric_ids_and_message_ids(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    event = {"type": "track", "event": "Paid", "userId": 42, "anonymousId": 7, "messageId": 99}
    response = await http.post("/v1/batch", json={"batch": [event]}, headers=AUTH)
    assert response.json() == {"accepted": 1, "rejected": []}
    [env] = sink.raw()
    assert (env.user_id, env.anonymous_id, env.message_id) == ("42", "7", "99")
    assert sink.records[0].key == b"demo:42"


async def test_the_anonymous_id_header_names_an_event_that_has_no_id(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    encoded = base64.b64encode(b"anon-from-header").decode()
    calls = [
        {"type": "track", "event": "A"},  # no id: the header's
        {"type": "track", "event": "B", "anonymousId": "own"},  # its own wins
        {"type": "track", "event": "C", "userId": "u1"},  # a user id is enough
    ]
    headers = AUTH | {"AnonymousId": encoded}
    response = await http.post("/v1/batch", json={"batch": calls}, headers=headers)
    assert response.json() == {"accepted": 3, "rejected": []}
    assert [(e.user_id, e.anonymous_id) for e in sink.raw()] == [
        (None, "anon-from-header"),
        (None, "own"),
        ("u1", None),
    ]
    await http.post("/v1/track", json={"event": "D"}, headers=AUTH | {"AnonymousId": "raw-id"})
    assert sink.raw()[-1].anonymous_id == "raw-id"  # not base64: taken as it is


async def test_the_sent_at_header_is_the_requests_sent_at_when_the_body_has_none(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    device = NOW + timedelta(hours=2)  # a device clock two hours ahead
    call = {"type": "track", "event": "A", "userId": "u", "originalTimestamp": device.isoformat()}
    headers = AUTH | {"SentAt": (device + timedelta(seconds=5)).isoformat()}
    await http.post("/v1/batch", json={"batch": [call]}, headers=headers)
    [env] = sink.raw()
    assert env.sent_at == device + timedelta(seconds=5)
    assert env.timestamp == NOW - timedelta(seconds=5)
    bad = await http.post("/v1/batch", json={"batch": [call]}, headers=AUTH | {"SentAt": "soon"})
    assert bad.status_code == 400
    assert bad.json()["where"] == "header SentAt"


async def test_posthogs_offset_dates_an_event_without_a_timestamp(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    batch = [
        {"event": "A", "distinct_id": "u", "offset": 90_000},
        {"event": "B", "distinct_id": "u", "offset": 5, "timestamp": "2026-03-01T11:00:00Z"},
    ]
    await http.post("/batch/", json={"api_key": KEY, "batch": batch})
    first, second = sink.raw()
    assert (first.timestamp, first.original_timestamp) == (NOW - timedelta(seconds=90), None)
    assert "offset" not in first.extra
    assert second.timestamp == datetime(2026, 3, 1, 11, tzinfo=UTC)  # the timestamp wins
    assert second.extra["offset"] == 5


async def test_the_ip_in_the_context_follows_the_projects_policy(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    call = {"type": "track", "event": "A", "userId": "u", "context": {"ip": "198.51.100.77"}}
    await http.post("/v1/batch", json={"batch": [call]}, headers=AUTH)
    [env] = sink.raw()
    assert (env.ip, env.context["ip"]) == ("198.51.100.0", "198.51.100.0")


@pytest.mark.parametrize("name", [{"a": 1}, ["$identify"], 7, None])
async def test_a_posthog_event_name_that_is_not_text_is_refused_not_a_server_error(
    collector: tuple[httpx.AsyncClient, MemorySink], name: Any
) -> None:
    http, sink = collector
    response = await http.post("/batch/", json={"api_key": KEY, "batch": [{"event": name}]})
    assert response.status_code == 200
    assert response.json()["accepted"] == 0
    assert len(sink.invalid()) == 1


async def test_a_lone_posthog_events_sent_at_is_read_not_kept_as_extra(
    collector: tuple[httpx.AsyncClient, MemorySink],
) -> None:
    http, sink = collector
    event = {
        "api_key": KEY,
        "event": "A",
        "distinct_id": "u",
        "timestamp": "2026-03-01T13:59:00Z",  # the device clock is two hours ahead
        "sent_at": "2026-03-01T14:00:00Z",
        "library": "posthog-node",
    }
    await http.post("/capture/", json=event)
    [env] = sink.raw()
    assert env.timestamp == NOW - timedelta(minutes=1)
    assert env.extra == {"library": "posthog-node"}
