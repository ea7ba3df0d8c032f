"""The collector's feature endpoints for client keys (GrowthBook's SDK payload), and the
features in PostHog's /flags. Streams are tested against the running collector
(tests/integration/test_flags_delivery.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from sextant.core.config_plane import ConfigState
from sextant.core.secrets import SecretBox, generate_secret_key, new_payload_key
from sextant.schemas.config import (
    Experiment,
    Feature,
    KeyKind,
    NamespaceRange,
    Project,
    Variant,
)
from sextant.schemas.experiments import variant_of
from sextant.schemas.flags import decrypt, evaluate
from tests.unit.test_collector_app import NOW, WRITE_KEY, MemorySink, key_document, put

CLIENT_KEY = "sdk-demo-production-0001"
STAGING_KEY = "sdk-demo-staging-0001"
SHOP = "https://shop.example.com"
MASTER = generate_secret_key()


def feature(**changes: Any) -> Feature:
    fields: dict[str, Any] = {
        "id": "new-checkout",
        "project_id": "demo",
        "value_type": "boolean",
        "default_value": False,
        "updated_at": NOW,
        "created_at": NOW,
        "environments": {
            "production": {
                "rules": [
                    {
                        "type": "force",
                        "id": "staff",
                        "condition": {"email": {"$regex": "@shop$"}},
                        "value": True,
                    },
                    {"type": "rollout", "id": "five", "coverage": 0.05, "value": True},
                ]
            },
            "staging": {"enabled": False, "rules": [{"type": "force", "id": "all", "value": True}]},
        },
    }
    return Feature.model_validate(fields | changes)


@pytest.fixture
def state() -> ConfigState:
    config = ConfigState()
    put(
        config,
        Project(id="demo", project_id="demo", name="Demo", allowed_origins=[SHOP]),
        key_document(WRITE_KEY, "wk1"),
        key_document(CLIENT_KEY, "ck1", key_kind=KeyKind.CLIENT, environment="production"),
        key_document(STAGING_KEY, "ck2", key_kind=KeyKind.CLIENT, environment="staging"),
        feature(),
    )
    return config


@pytest.fixture
async def client(state: ConfigState) -> AsyncIterator[httpx.AsyncClient]:
    from sextant.collector.app import create_app
    from sextant.collector.settings import CollectorSettings

    settings = CollectorSettings(topic_prefix="t", secret_key=MASTER)
    app = create_app(settings, state=state, sink=MemorySink(), clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


async def test_the_payload_is_growthbooks(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/features/{CLIENT_KEY}")
    assert response.status_code == 200, response.text
    assert response.headers["x-sse-support"] == "enabled"
    payload = response.json()
    assert payload["status"] == 200
    assert payload["experiments"] == []
    assert payload["dateUpdated"] == "2025-03-01T12:00:00.000Z"
    rules = payload["features"]["new-checkout"]["rules"]
    assert rules[0] == {"id": "staff", "condition": {"email": {"$regex": "@shop$"}}, "force": True}
    assert rules[1] == {
        "id": "five",
        "force": True,
        "range": [0, 0.05],
        "hashAttribute": "id",
        "hashVersion": 2,
        "seed": "new-checkout:five",
    }
    features = payload["features"]
    assert evaluate(features, "new-checkout", {"id": "u", "email": "a@shop"}).value is True
    assert evaluate(features, "new-checkout", {"id": "u", "email": "a@b.c"}).source in (
        "defaultValue",
        "force",
    )


async def test_etag_and_not_modified(client: httpx.AsyncClient) -> None:
    first = await client.get(f"/api/features/{CLIENT_KEY}")
    again = await client.get(
        f"/api/features/{CLIENT_KEY}", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_an_environment_switched_off_serves_defaults(client: httpx.AsyncClient) -> None:
    payload = (await client.get(f"/api/features/{STAGING_KEY}")).json()
    assert payload["features"]["new-checkout"] == {"defaultValue": False}
    result = evaluate(payload["features"], "new-checkout", {"id": "anyone"})
    assert (result.value, result.source) == (False, "defaultValue")


@pytest.mark.parametrize(("key", "status"), [("sdk-unknown-000", 401), (WRITE_KEY, 403)])
async def test_only_client_keys_read_payloads(
    client: httpx.AsyncClient, key: str, status: int
) -> None:
    assert (await client.get(f"/api/features/{key}")).status_code == status


async def test_a_client_key_reads_nothing_else(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/experiments/definitions", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == 403
    batch = await client.post(
        "/v1/batch",
        json={"writeKey": CLIENT_KEY, "batch": [{"type": "track", "event": "x", "userId": "u"}]},
    )
    assert batch.status_code == 403


async def test_cors_follows_the_projects_origins(client: httpx.AsyncClient) -> None:
    ok = await client.get(f"/api/features/{CLIENT_KEY}", headers={"Origin": SHOP})
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "X-Sse-Support" in ok.headers["access-control-expose-headers"]
    refused = await client.get(f"/api/features/{CLIENT_KEY}", headers={"Origin": "https://evil.io"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    preflight = await client.options(
        f"/sub/{CLIENT_KEY}",
        headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204


async def test_an_encrypted_payload_opens_with_the_keys_payload_key(
    state: ConfigState, client: httpx.AsyncClient
) -> None:
    clear = new_payload_key()
    sealed = SecretBox([MASTER]).seal(clear)
    put(
        state,
        key_document(
            "sdk-encrypted-0001",
            "ck3",
            key_kind=KeyKind.CLIENT,
            environment="production",
            payload_key=sealed,
        ),
    )
    payload = (await client.get("/api/features/sdk-encrypted-0001")).json()
    assert payload["features"] == {}
    features = orjson.loads(decrypt(payload["encryptedFeatures"], clear))
    plain = (await client.get(f"/api/features/{CLIENT_KEY}")).json()["features"]
    assert features == plain
    again = (await client.get("/api/features/sdk-encrypted-0001")).json()
    assert again["encryptedFeatures"] == payload["encryptedFeatures"]  # a stable ETag


async def test_experiment_rules_agree_with_sextants_assignment(
    state: ConfigState, client: httpx.AsyncClient
) -> None:
    experiment = Experiment(
        id="checkout-test",
        project_id="demo",
        variants=[Variant(id="control", weight=0.3), Variant(id="one-page", weight=0.7)],
        coverage=0.8,
        namespace=NamespaceRange(id="checkout", start=0.2, end=0.9),
        start=NOW - timedelta(days=1),
    )
    rules = [
        {
            "type": "experiment",
            "id": "test",
            "experiment": "checkout-test",
            "values": {"control": "classic", "one-page": "one-page"},
        }
    ]
    put(
        state,
        experiment,
        feature(
            id="checkout-page",
            value_type="string",
            default_value="classic",
            environments={"production": {"rules": rules}},
        ),
    )
    features = (await client.get(f"/api/features/{CLIENT_KEY}")).json()["features"]
    for i in range(2000):
        unit = f"user-{i}-é"
        result = evaluate(features, "checkout-page", {"id": unit})
        variant = variant_of(experiment, unit, NOW)
        if variant is None:
            assert result.source == "defaultValue"
        else:
            assert result.experiment is not None
            assert result.experiment.key == variant.id
            assert result.value == {"control": "classic", "one-page": "one-page"}[variant.id]


async def test_posthog_flags_answer_features(client: httpx.AsyncClient, state: ConfigState) -> None:
    put(
        state,
        feature(
            id="banner-text",
            value_type="string",
            default_value="Hello",
            environments={"production": {"rules": []}},
        ),
        feature(
            id="limits",
            value_type="json",
            default_value={"max": 3},
            environments={"production": {"rules": []}},
        ),
    )
    body = {"token": WRITE_KEY, "distinct_id": "u1", "person_properties": {"email": "x@shop"}}
    answer = (await client.post("/flags/?v=2", json=body)).json()
    assert answer["featureFlags"]["new-checkout"] is True
    assert answer["featureFlags"]["banner-text"] == "Hello"
    assert answer["featureFlags"]["limits"] is True
    assert orjson.loads(answer["featureFlagPayloads"]["limits"]) == {"max": 3}
    assert answer["flags"]["new-checkout"]["enabled"] is True
