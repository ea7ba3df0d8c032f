"""The collector as browsers meet it: CORS per project, Segment's short paths and settings,
PostHog's wire formats, flags and remote config, and assignments for a public write key.
(The same with the real clients in Chromium: tests/browser/test_browser_clients.py.)"""

from __future__ import annotations

import base64
import gzip
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from starlette.datastructures import MutableHeaders

from sextant.collector.cors import add_cors_headers, add_cors_raw_headers
from sextant.core.config_plane import ConfigState
from sextant.schemas.assignment import assign
from sextant.schemas.config import Experiment, KeyKind, Project, Variant
from tests.unit.test_collector_app import (
    NOW,
    WRITE_KEY,
    MemorySink,
    basic,
    collector_client,
    key_document,
    put,
)

SHOP = "https://shop.example.com"
EXPERIMENT = Experiment(
    id="checkout",
    project_id="demo",
    variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
    primary_metric="orders",
)


@pytest.fixture
def state() -> ConfigState:
    config = ConfigState()
    put(
        config,
        Project(
            id="demo",
            project_id="demo",
            name="Demo",
            allowed_origins=[SHOP, "https://*.example.org", "http://localhost:*"],
        ),
        key_document(WRITE_KEY, "wk1"),
        key_document("rk_read_secret", "rk1", key_kind=KeyKind.READ),
        Project(id="other", project_id="other", name="Other", allowed_origins=["https://b.io"]),
        key_document("wk_other_secret", "wk9", project_id="other"),
        EXPERIMENT,
    )
    return config


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def client(state: ConfigState, sink: MemorySink) -> AsyncIterator[httpx.AsyncClient]:
    async with collector_client(state, sink) as http:
        yield http


def track(event: str = "Clicked", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u1"} | fields


# --- CORS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/t", "/e/", "/batch/", "/flags/"])
async def test_preflight_of_an_allowed_origin(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(
        path,
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-custom-client",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "content-encoding", "x-retry-count"} <= allowed
    assert "x-custom-client" in allowed
    assert int(response.headers["access-control-max-age"]) > 0


async def test_preflight_of_an_origin_no_project_allows_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/v1/batch", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    metrics = (await client.get("/metrics")).text
    assert 'sextant_collector_origin_refusals_total{origin="https://evil.example"} 1.0' in metrics


@pytest.mark.parametrize(
    "origin", [SHOP, "https://a.b.example.org", "http://localhost:5173", "http://localhost"]
)
async def test_accepted_events_carry_cors_headers(
    client: httpx.AsyncClient, sink: MemorySink, origin: str
) -> None:
    response = await client.post(
        "/v1/batch",
        content=orjson.dumps({"writeKey": WRITE_KEY, "batch": [track()]}),
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["vary"] == "Origin"
    assert len(sink.raw()) == 1


@pytest.mark.parametrize(
    "origin", ["https://example.org", "https://b.io", "http://127.0.0.1:3000", "null"]
)
async def test_an_origin_the_project_does_not_allow_is_refused_and_nothing_stored(
    client: httpx.AsyncClient, sink: MemorySink, origin: str
) -> None:
    response = await client.post(
        "/v1/batch",
        json={"writeKey": WRITE_KEY, "batch": [track()]},
        headers={"Origin": origin},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert origin in response.json()["message"]
    assert "access-control-allow-origin" not in response.headers
    assert sink.records == []


async def test_errors_before_the_key_is_known_are_readable_by_allowed_pages(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/batch", content=b"{not json", headers={"Origin": SHOP})
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == SHOP
    unknown = await client.post(
        "/v1/batch", json={"writeKey": "nope", "batch": []}, headers={"Origin": SHOP}
    )
    assert unknown.status_code == 401
    assert unknown.headers["access-control-allow-origin"] == SHOP
    missing = await client.post("/nowhere", headers={"Origin": SHOP})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == SHOP


async def test_server_side_requests_need_no_origin(
    client: httpx.AsyncClient, sink: MemorySink
) -> None:
    response = await client.post("/v1/batch", json={"batch": [track()]}, headers=basic(WRITE_KEY))
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_a_new_origin_takes_effect_with_the_config_change(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    body = {"writeKey": WRITE_KEY, "batch": [track()]}
    new = "https://new.example.net"
    assert (await client.post("/v1/batch", json=body, headers={"Origin": new})).status_code == 403
    project = state.project("demo")
    assert project is not None
    put(state, project.model_copy(update={"allowed_origins": [new]}))
    assert (await client.post("/v1/batch", json=body, headers={"Origin": new})).status_code == 200


# --- Segment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "event"),
    [
        ("/v1/t", {"event": "Clicked", "userId": "u"}, "Clicked"),
        ("/v1/p", {"anonymousId": "a", "name": "Home"}, "$page"),
        ("/v1/i", {"userId": "u", "traits": {"plan": "pro"}}, "$identify"),
        ("/v1/g", {"userId": "u", "groupId": "acme"}, "$group"),
        ("/v1/a", {"userId": "u", "previousId": "a"}, "$alias"),
        ("/v1/s", {"userId": "u", "name": "Settings"}, "$screen"),
    ],
)
async def test_segment_short_paths(
    client: httpx.AsyncClient, sink: MemorySink, path: str, body: dict[str, Any], event: str
) -> None:
    body = body | {"writeKey": WRITE_KEY}
    response = await client.post(path, content=orjson.dumps(body), headers={"Origin": SHOP})
    assert response.json() == {"accepted": 1, "rejected": []}
    assert [e.event for e in sink.raw()] == [event]


@pytest.mark.parametrize("path", ["/v1/b", "/beacon/v1/batch"])
async def test_batch_aliases_and_the_key_in_the_query(
    client: httpx.AsyncClient, sink: MemorySink, path: str
) -> None:
    response = await client.post(
        f"{path}?writeKey={WRITE_KEY}",
        content=orjson.dumps({"batch": [track(), track("Bought")]}),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP},
    )
    assert response.json()["accepted"] == 2
    assert [e.event for e in sink.raw()] == ["Clicked", "Bought"]


async def test_segment_settings_point_analytics_next_at_the_collector(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"/v1/projects/{WRITE_KEY}/settings", headers={"Origin": SHOP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    segment = response.json()["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (
        WRITE_KEY,
        "collector/v1",
        "http",
    )
    unknown = await client.get("/v1/projects/not-a-key/settings")
    assert unknown.status_code == 401


async def test_segment_settings_name_the_public_address(
    state: ConfigState, sink: MemorySink
) -> None:
    public = "https://collect.example.com"
    async with collector_client(state, sink, collector_public_url=public) as http:
        response = await http.get(f"/v1/projects/{WRITE_KEY}/settings")
    segment = response.json()["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"]) == ("collect.example.com/v1", "https")


# --- RudderStack -----------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["header", "query"])
async def test_rudderstack_source_config_is_a_source_without_destinations(
    client: httpx.AsyncClient, auth: str
) -> None:
    query = "?p=npm&v=3.34.1&build=modern"
    headers = {"Origin": SHOP}
    if auth == "header":
        headers |= basic(WRITE_KEY)
    else:
        query += f"&writeKey={WRITE_KEY}"
    response = await client.get(f"/sourceConfig/{query}", headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    source = response.json()["source"]
    assert (source["id"], source["enabled"], source["destinations"]) == ("demo", True, [])
    assert source["config"]["statsCollection"]["errors"]["enabled"] is False
    assert (await client.get("/sourceConfig/", headers=basic("nope"))).status_code == 401


async def test_rudderstack_preflight_may_send_its_own_headers(client: httpx.AsyncClient) -> None:
    asked = "anonymousid,authorization,content-type,rsa-retry-attempt,sentat"
    response = await client.options(
        "/v1/track",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert response.status_code == 204
    allowed = response.headers["access-control-allow-headers"].lower().split(", ")
    assert set(asked.split(",")) <= set(allowed)


# --- PostHog ---------------------------------------------------------------------------------


def posthog_batch(*names: str) -> dict[str, Any]:
    return {
        "api_key": WRITE_KEY,
        "batch": [
            {"event": name, "distinct_id": "d1", "properties": {"$lib": "web"}} for name in names
        ],
    }


def form(data: bytes) -> bytes:
    return b"data=" + urllib.parse.quote(data.decode(), safe="").encode()


@pytest.mark.parametrize(
    ("url", "content", "content_type"),
    [
        # posthog-js: gzip as text/plain, no header and no parameter saying so
        ("/e/", gzip.compress(orjson.dumps(posthog_batch("a", "b"))), "text/plain"),
        ("/e/?compression=gzip-js&ver=1.449.2&_=1765000000000", None, "text/plain"),
        # sendBeacon on unload: a form holding base64 JSON
        ("/e/?compression=base64", None, "application/x-www-form-urlencoded"),
        # a form holding plain JSON, and the newer capture path
        ("/i/v0/e/", None, "application/x-www-form-urlencoded; charset=UTF-8"),
        ("/batch/", orjson.dumps(posthog_batch("a", "b")), "application/json"),
    ],
)
async def test_posthog_wire_formats(
    client: httpx.AsyncClient,
    sink: MemorySink,
    url: str,
    content: bytes | None,
    content_type: str,
) -> None:
    raw = orjson.dumps(posthog_batch("a", "b"))
    if content is None and "gzip-js" in url:
        content = gzip.compress(raw)
    elif content is None and "base64" in url:
        content = form(base64.b64encode(raw))
    elif content is None:
        content = form(raw)
    response = await client.post(
        url, content=content, headers={"Content-Type": content_type, "Origin": SHOP}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert [e.event for e in sink.raw()] == ["a", "b"]
    assert response.headers["access-control-allow-origin"] == SHOP


@pytest.mark.parametrize(
    ("url", "content", "where"),
    [
        ("/e/?compression=gzip-js", b'{"batch": []}', "body"),
        ("/e/?compression=lz64", b"xx", "query compression"),
        ("/e/", b"data=", "body"),
        ("/e/", gzip.compress(b"not json")[:-4], "body (gzip)"),
    ],
)
async def test_posthog_bodies_that_cannot_be_read_are_clear_400s(
    client: httpx.AsyncClient, url: str, content: bytes, where: str
) -> None:
    response = await client.post(url, content=content)
    assert response.status_code == 400
    problem = response.json()  # PostHog's error shape beside Sextant's
    assert (problem["where"], problem["attr"], problem["type"]) == (
        where,
        where,
        "validation_error",
    )
    assert problem["detail"] == problem["message"]


def _expected_variant(distinct_id: str) -> str | None:
    index = assign(EXPERIMENT.id, distinct_id, [0.5, 0.5])
    return None if index is None else EXPERIMENT.variants[index].id


@pytest.mark.parametrize("distinct_id", ["user-1", "user-2", "ünïcode-😀", "42"])
async def test_posthog_flags_answer_sextants_variant(
    client: httpx.AsyncClient, distinct_id: str
) -> None:
    request = {"token": WRITE_KEY, "distinct_id": distinct_id, "groups": {}}
    body = form(base64.b64encode(orjson.dumps(request)))
    response = await client.post(
        "/flags/?v=2&compression=base64",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": SHOP},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = _expected_variant(distinct_id)
    assert answer["flags"]["checkout"]["variant"] == expected
    assert answer["flags"]["checkout"]["enabled"] is True
    assert answer["featureFlags"] == {"checkout": expected}
    assert answer["errorsWhileComputingFlags"] is False
    decide = await client.post("/decide/?v=3", json=request)
    assert decide.json()["featureFlags"] == {"checkout": expected}
    assert decide.json()["sessionRecording"] is False


async def test_posthog_flags_leave_out_experiments_not_running(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    put(state, EXPERIMENT.model_copy(update={"stop": NOW - timedelta(days=1)}))
    response = await client.post("/flags/?v=2", json={"token": WRITE_KEY, "distinct_id": "u"})
    assert response.json()["flags"] == {}


async def test_posthog_flags_need_a_distinct_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/flags/?v=2", json={"token": WRITE_KEY})
    assert response.status_code == 400
    assert response.json()["where"] == "body.distinct_id"


async def test_posthog_remote_config_turns_recording_off(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/array/{WRITE_KEY}/config", headers={"Origin": SHOP})
    config = response.json()
    assert config["sessionRecording"] is False
    assert "gzip-js" in config["supportedCompression"]
    assert config["hasFeatureFlags"] is True
    script = await client.get(f"/array/{WRITE_KEY}/config.js")
    assert script.headers["content-type"].startswith("application/javascript")
    assert f'window._POSTHOG_REMOTE_CONFIG["{WRITE_KEY}"]' in script.text
    surveys = await client.get(f"/api/surveys/?token={WRITE_KEY}", headers={"Origin": SHOP})
    assert surveys.json() == {"surveys": []}


# --- Assignments for the write key ------------------------------------------------------------


async def test_a_write_key_reads_its_projects_assignments_and_nothing_private(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        f"/v1/experiments/definitions?writeKey={WRITE_KEY}", headers={"Origin": SHOP}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    [definition] = response.json()
    assert definition["id"] == "checkout"
    assert [v["id"] for v in definition["variants"]] == ["control", "one-page"]
    assert "primary_metric" not in definition
    again = await client.get(
        "/v1/experiments/definitions",
        headers=basic(WRITE_KEY) | {"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304


async def test_a_read_key_is_not_a_public_key(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/experiments/definitions", headers={"Authorization": "Bearer rk_read_secret"}
    )
    assert response.status_code == 403


# --- Per-address rate limit ------------------------------------------------------------------


async def test_a_project_may_limit_events_per_client_address(
    client: httpx.AsyncClient, state: ConfigState
) -> None:
    project = state.project("demo")
    assert project is not None
    put(state, project.model_copy(update={"rate_limit_per_ip_per_second": 3}))
    body = {"writeKey": WRITE_KEY, "batch": [track(), track(), track()]}
    assert (await client.post("/v1/batch", json=body)).status_code == 200
    refused = await client.post("/v1/batch", json=body)
    assert refused.status_code == 429
    assert refused.json()["where"] == "client address"
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "existing",
    [[], [(b"retry-after", b"5")], [(b"vary", b"Accept-Encoding"), (b"allow", b"POST")]],
)
def test_cors_raw_headers_are_those_of_add_cors_headers(
    existing: list[tuple[bytes, bytes]],
) -> None:
    raw = list(existing)
    add_cors_raw_headers(raw, SHOP)
    expected = list(existing)
    add_cors_headers(MutableHeaders(raw=expected), SHOP)
    assert raw == expected
