"""The collector's HTTP behaviour with an in-memory record sink (the Kafka side is covered by
tests/integration/test_collector_*.py against a real broker)."""

from __future__ import annotations

import base64
import contextlib
import gzip
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sextant.collector.app import create_app
from sextant.collector.models import BatchResult, Rejection, result_json
from sextant.collector.settings import CollectorSettings
from sextant.core.aio_kafka import OutgoingRecord, ProducerUnavailable
from sextant.core.config_plane import ConfigState
from sextant.schemas.config import ApiKey, KeyKind, Project, TrackingPlan, hash_key
from sextant.schemas.events import Envelope, FieldError, InvalidEvent
from sextant.schemas.identity import EdgeKind, IdentityEdge

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
WRITE_KEY = "wk_demo_secret"


class MemorySink:
    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []
        self.down = False

    async def send(self, records: Sequence[OutgoingRecord], timeout_s: float) -> None:
        if self.down:
            raise ProducerUnavailable("broker down (test)")
        self.records.extend(records)

    def raw(self) -> list[Envelope]:
        return [
            Envelope.model_validate_json(r.value) for r in self.records if r.topic.endswith(".raw")
        ]

    def invalid(self) -> list[InvalidEvent]:
        return [
            InvalidEvent.model_validate_json(r.value)
            for r in self.records
            if r.topic.endswith(".invalid")
        ]


def key_document(secret: str, key_id: str, **changes: Any) -> ApiKey:
    fields: dict[str, Any] = {
        "id": key_id,
        "project_id": "demo",
        "key_kind": KeyKind.WRITE,
        "key_hash": hash_key(secret),
    }
    return ApiKey(**(fields | changes))


def put(state: ConfigState, *documents: Any) -> None:
    for document in documents:
        state.apply(document.config_key(), document)


@pytest.fixture
def state() -> ConfigState:
    config = ConfigState()
    put(
        config,
        Project(id="demo", project_id="demo", name="Demo", rate_limit_per_second=1000),
        key_document(WRITE_KEY, "wk1"),
        key_document("wk_revoked", "wk2", revoked=True),
        key_document("rk_read", "rk1", key_kind=KeyKind.READ),
    )
    return config


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@contextlib.asynccontextmanager
async def collector_client(
    state: ConfigState, sink: MemorySink, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a collector app on ``state`` and ``sink``, from 203.0.113.77."""
    defaults: dict[str, Any] = {"topic_prefix": "t", "max_batch_bytes": 20_000}
    options = CollectorSettings(**(defaults | {"max_event_bytes": 2_000} | settings))
    app = create_app(options, state=state, sink=sink, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.77", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


@pytest.fixture
async def client(state: ConfigState, sink: MemorySink) -> AsyncIterator[httpx.AsyncClient]:
    async with collector_client(state, sink) as http:
        yield http


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()}


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "u1"} | fields


async def test_batch_with_basic_auth_is_accepted_and_enriched(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    body = {"batch": [track(messageId="m1", properties={"plan": "pro"})]}
    response = await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "rejected": []}
    [envelope] = sink.raw()
    assert (envelope.project_id, envelope.event, envelope.distinct_id) == (
        "demo",
        "Signed Up",
        "u1",
    )
    assert envelope.message_id == "m1"
    assert envelope.received_at == NOW
    assert envelope.ip == "203.0.113.77"
    assert sink.records[0].key == b"demo:u1"


async def test_write_key_in_the_body_authenticates(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/batch", json={"writeKey": WRITE_KEY, "batch": [track()]})
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("call", "body", "event"),
    [
        ("track", {"event": "Clicked", "userId": "u"}, "Clicked"),
        ("identify", {"userId": "u", "traits": {"plan": "pro"}}, "$identify"),
        ("page", {"anonymousId": "a", "name": "Home"}, "$page"),
        ("screen", {"userId": "u", "name": "Settings"}, "$screen"),
        ("group", {"userId": "u", "groupId": "acme"}, "$group"),
        ("alias", {"userId": "u", "previousId": "a"}, "$alias"),
    ],
)
async def test_each_single_call_endpoint(
    client: httpx.AsyncClient, sink: MemorySink, call: str, body: dict[str, Any], event: str
) -> None:
    response = await client.post(f"/v1/{call}", json=body, headers=basic(WRITE_KEY))
    assert response.json() == {"accepted": 1, "rejected": []}
    assert sink.raw()[0].event == event
    assert sink.raw()[0].type.value == call


async def test_partial_acceptance_names_index_field_and_dead_letters_the_rest(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    batch = [
        track(messageId="ok-1"),
        {"type": "track", "event": "No User", "messageId": "bad-1"},
        track(messageId="bad-2", event=None),
        "not an object",
        track(messageId="ok-2", timestamp="yesterday"),
    ]
    response = await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    result = response.json()
    assert response.status_code == 200
    assert result["accepted"] == 1
    rejected = {r["index"]: r for r in result["rejected"]}
    assert set(rejected) == {1, 2, 3, 4}
    assert rejected[1]["messageId"] == "bad-1"
    assert rejected[1]["errors"] == [
        {"field": "userId", "message": "userId or anonymousId is required"}
    ]
    assert rejected[2]["errors"][0]["field"] == "event"
    assert rejected[4]["errors"][0]["field"] == "timestamp"
    dead = sink.invalid()
    assert [d.message_id for d in dead] == ["bad-1", "bad-2", None, "ok-2"]
    assert orjson.loads(dead[0].payload) == batch[1]
    assert all(d.received_at == NOW and d.project_id == "demo" for d in dead)
    assert [e.message_id for e in sink.raw()] == ["ok-1"]


async def test_clock_skew_is_corrected_from_sent_at(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    # The device clock runs 1 hour fast; the event happened 30 s before it was sent.
    device_sent = NOW + timedelta(hours=1)
    device_event = device_sent - timedelta(seconds=30)
    body = {
        "sentAt": device_sent.isoformat(),
        "batch": [track(timestamp=device_event.isoformat())],
    }
    await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    [envelope] = sink.raw()
    assert envelope.timestamp == NOW - timedelta(seconds=30)
    assert envelope.original_timestamp == device_event
    assert envelope.sent_at == device_sent


async def test_an_event_dated_in_the_future_is_clamped_to_receipt(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    future = (NOW + timedelta(days=2)).isoformat()
    await client.post("/v1/track", json=track(timestamp=future), headers=basic(WRITE_KEY))
    assert sink.raw()[0].timestamp == NOW


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"batch": {"type": "track"}}', "body.batch"),
        (b'{"batch": [], "sentAt": "last tuesday"}', "body.sentAt"),
    ],
)
async def test_a_body_that_is_not_a_json_batch_is_400(
    client: httpx.AsyncClient, body: bytes, where: str
) -> None:
    response = await client.post(
        "/v1/batch", content=body, headers=basic(WRITE_KEY) | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["where"] == where
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"batch": [track()]}, 401, "unauthorized"),
        (basic("nobody-knows-me"), {"batch": [track()]}, 401, "unauthorized"),
        ({}, {"writeKey": "nobody", "batch": [track()]}, 401, "unauthorized"),
        (basic("wk_revoked"), {"batch": [track()]}, 403, "forbidden"),
        (basic("rk_read"), {"batch": [track()]}, 403, "forbidden"),
        ({"Authorization": "Digest abc"}, {"batch": [track()]}, 401, "unauthorized"),
    ],
)
async def test_missing_unknown_and_revoked_keys_are_refused(
    client: httpx.AsyncClient,
    sink: MemorySink,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    response = await client.post("/v1/batch", json=body, headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert sink.records == []


async def test_batch_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    body = {"batch": [track(properties={"pad": "x" * 1500}) for _ in range(15)]}
    response = await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_single_event_over_the_event_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/track", json=track(properties={"pad": "x" * 3000}), headers=basic(WRITE_KEY)
    )
    assert response.status_code == 413


async def test_one_oversized_event_in_a_batch_is_rejected_alone(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    batch = [track(), track(properties={"pad": "x" * 3000}), track()]
    response = await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    result = response.json()
    assert result["accepted"] == 2
    assert result["rejected"][0]["index"] == 1
    assert "limit is 2000 bytes" in result["rejected"][0]["errors"][0]["message"]
    assert len(sink.invalid()) == 1


async def test_gzip_body_is_accepted(client: httpx.AsyncClient, sink: MemorySink) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track(), track()]}))
    response = await client.post(
        "/v1/batch",
        content=body,
        headers=basic(WRITE_KEY) | {"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.json()["accepted"] == 2


async def test_rate_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    put(state, Project(id="demo", project_id="demo", name="Demo", rate_limit_per_second=10))
    first = await client.post("/v1/batch", json={"batch": [track()] * 10}, headers=basic(WRITE_KEY))
    assert first.status_code == 200
    second = await client.post("/v1/batch", json={"batch": [track()] * 5}, headers=basic(WRITE_KEY))
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.json()["where"] == "write key 'wk1'"


async def test_kafka_unavailable_is_503_with_retry_after(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    sink.down = True
    response = await client.post("/v1/batch", json={"batch": [track()]}, headers=basic(WRITE_KEY))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["where"] == "kafka"


async def test_a_key_revoked_in_the_config_stops_working(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    ok = await client.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
    assert ok.status_code == 200
    put(state, key_document(WRITE_KEY, "wk1", revoked=True))
    refused = await client.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
    assert refused.status_code == 403


async def test_posthog_batch_maps_onto_the_envelope(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    body = {
        "api_key": WRITE_KEY,
        "sent_at": NOW.isoformat(),
        "batch": [
            {
                "event": "Order Completed",
                "distinct_id": "u9",
                "properties": {"revenue": 5, "$lib": "posthog-python", "$lib_version": "7"},
                "timestamp": (NOW - timedelta(seconds=3)).isoformat(),
                "uuid": "0190e0a6-7d3c-7a4e-9f3b-2d1c5e6f7a8b",
            },
            {"event": "$identify", "distinct_id": "u9", "properties": {"$set": {"plan": "pro"}}},
            {"event": "$pageview", "distinct_id": "u9", "properties": {"$current_url": "/x"}},
            {"event": "$create_alias", "distinct_id": "a1", "properties": {"alias": "u9"}},
            {"event": "Bad", "properties": {}},
        ],
    }
    response = await client.post("/batch/", json=body)
    result = response.json()
    assert result["accepted"] == 4
    assert result["rejected"][0]["index"] == 4
    assert result["rejected"][0]["errors"][0]["field"] == "distinct_id"
    track_event, identify, page, alias = sink.raw()
    assert (track_event.event, track_event.distinct_id) == ("Order Completed", "u9")
    assert track_event.message_id == "0190e0a6-7d3c-7a4e-9f3b-2d1c5e6f7a8b"
    assert track_event.timestamp == NOW - timedelta(seconds=3)
    assert track_event.context["library"] == {"name": "posthog-python", "version": "7"}
    assert (identify.event, identify.traits) == ("$identify", {"plan": "pro"})
    assert page.event == "$page"
    assert (alias.user_id, alias.previous_id) == ("u9", "a1")


@pytest.mark.parametrize("path", ["/capture/", "/e/", "/capture"])
async def test_posthog_single_event_endpoints(
    client: httpx.AsyncClient, sink: MemorySink, path: str
) -> None:
    body = {
        "api_key": WRITE_KEY,
        "event": "Clicked",
        "distinct_id": "u1",
        "sentAt": NOW.isoformat(),
    }
    response = await client.post(path, json=body)
    assert response.json() == {"accepted": 1, "rejected": []}
    assert sink.raw()[0].event == "Clicked"


async def test_tracking_plan_enforce_rejects_and_flag_marks(
    client: httpx.AsyncClient, state: ConfigState, sink: MemorySink
) -> None:
    schema = {
        "type": "object",
        "required": ["revenue"],
        "properties": {"revenue": {"type": "number"}},
    }
    plan = TrackingPlan(id="main", project_id="demo", mode="enforce", events={"Order": schema})
    put(state, plan)
    batch = [
        track(event="Order", properties={"revenue": 3}),
        track(event="Order", properties={"revenue": "three"}),
        track(event="Unplanned"),
    ]
    result = (
        await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    ).json()
    assert result["accepted"] == 2
    assert result["rejected"][0]["errors"] == [
        {"field": "properties.revenue", "message": "'three' is not of type 'number'"}
    ]
    put(state, plan.model_copy(update={"mode": "flag"}))
    result = (
        await client.post("/v1/batch", json={"batch": batch[1:2]}, headers=basic(WRITE_KEY))
    ).json()
    assert result == {"accepted": 1, "rejected": []}
    assert sink.raw()[-1].plan_violations == ["properties.revenue: 'three' is not of type 'number'"]


async def test_tracking_plan_checks_the_traits_an_identify_sends_in_its_context(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    schema = {"type": "object", "required": ["email"]}
    put(
        state,
        TrackingPlan(id="main", project_id="demo", mode="enforce", events={"$identify": schema}),
    )
    batch = [
        {"type": "identify", "userId": "u", "context": {"traits": {"email": "a@b.c"}}},
        {"type": "identify", "userId": "u", "context": {"traits": {"plan": "pro"}}},
    ]
    result = (
        await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    ).json()
    assert result["accepted"] == 1
    assert [r["index"] for r in result["rejected"]] == [1]


async def test_ip_policy_truncates(
    client: httpx.AsyncClient, state: ConfigState, sink: MemorySink
) -> None:
    put(state, Project(id="demo", project_id="demo", name="Demo", ip_policy="truncate"))
    await client.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
    assert sink.raw()[0].ip == "203.0.113.0"


async def test_metrics_count_accepted_and_rejected_by_reason(client: httpx.AsyncClient) -> None:
    batch = [track(), {"type": "track"}]
    await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    text = (await client.get("/metrics")).text
    assert 'sextant_collector_events_total{outcome="accepted",reason=""} 1.0' in text
    assert 'sextant_collector_events_total{outcome="rejected",reason="invalid"} 1.0' in text
    assert 'sextant_collector_requests_total{endpoint="/v1/batch",status="200"} 1.0' in text
    assert "sextant_collector_produce_seconds_bucket" in text
    assert "sextant_collector_batch_events_bucket" in text
    assert "sextant_collector_in_flight_requests 0.0" in text


async def test_openapi_documents_every_endpoint_with_examples(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path in ["/v1/batch", "/v1/track", "/v1/alias", "/batch/", "/capture/", "/e/"]:
        operation = paths[path]["post"]
        assert "example" in operation["requestBody"]["content"]["application/json"]
        assert {"200", "400", "401", "403", "413", "429", "503"} <= set(operation["responses"])
    assert "IncomingEvent" in document["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


async def test_bearer_token_is_a_write_key_too(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/track", json=track(), headers={"Authorization": f"Bearer {WRITE_KEY}"}
    )
    assert response.json()["accepted"] == 1


async def test_empty_batch_is_taken_without_writing(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    response = await client.post("/v1/batch", json={"batch": []}, headers=basic(WRITE_KEY))
    assert response.json() == {"accepted": 0, "rejected": []}
    assert sink.records == []


async def test_shared_batch_context_reaches_every_event(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    body = {"context": {"app": {"name": "shop"}}, "batch": [track(), track(context={"x": 1})]}
    await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert [e.context for e in sink.raw()] == [
        {"app": {"name": "shop"}},
        {"app": {"name": "shop"}, "x": 1},
    ]


async def test_one_process_reports_its_own_metrics_even_with_a_shared_dir(
    state: ConfigState, sink: MemorySink, tmp_path: Path
) -> None:
    settings = CollectorSettings(topic_prefix="t", collector_shared_dir=tmp_path)
    app = create_app(settings, state=state, sink=sink, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        await http.post("/v1/track", json=track(), headers=basic(WRITE_KEY))
        text = (await http.get("/metrics")).text
    assert 'sextant_collector_events_total{outcome="accepted",reason=""} 1.0' in text


async def test_an_event_linking_two_ids_adds_an_identity_edge_once(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    linked = track(anonymousId="a1")
    calls = [
        linked,
        linked,  # the same edge again: not sent twice
        {"type": "alias", "previousId": "a1", "userId": "u9"},
        track(),  # one id: no edge
    ]
    response = await client.post("/v1/batch", json={"batch": calls}, headers=basic(WRITE_KEY))
    assert response.status_code == 200
    assert len(sink.raw()) == 4
    edges = [
        IdentityEdge.model_validate_json(r.value)
        for r in sink.records
        if r.topic.endswith(".identities")
    ]
    assert [(e.kind, e.source, e.target) for e in edges] == [
        (EdgeKind.IDENTIFY, "a1", "u1"),
        (EdgeKind.ALIAS, "a1", "u9"),
    ]
    assert {r.key for r in sink.records if r.topic.endswith(".identities")} == {b"demo"}


async def test_an_edge_kafka_did_not_take_is_sent_with_the_retry(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    sink.down = True
    body = {"batch": [track(anonymousId="a1")]}
    response = await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert response.status_code == 503
    sink.down = False
    response = await client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))
    assert response.status_code == 200
    assert [r.topic for r in sink.records] == ["t.events.raw", "t.identities"]


@pytest.mark.parametrize(
    "result",
    [
        BatchResult(accepted=0),
        BatchResult(accepted=100),
        BatchResult(
            accepted=1,
            rejected=[Rejection(index=1, errors=[FieldError(field="userId", message="x")])],
        ),
    ],
)
def test_result_json_is_the_models_dump(result: BatchResult) -> None:
    assert result_json(result) == orjson.dumps(result.model_dump())
