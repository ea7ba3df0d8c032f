"""The SDK's feature calls: GrowthBook's conformance cases through ``Client``, and the
compiled payload following the payload the client fetched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from sextant.sdk import Client
from tests.flag_cases import feature_cases

CLIENT_CASES = [
    case
    for case in feature_cases()
    if not case[1].get("savedGroups") and not case[1].get("forcedVariations")
]
"""The cases a client can run (saved groups and forced variations are not client options)."""


class Served:
    """The payload the features endpoint answers; tests swap it."""

    def __init__(self) -> None:
        self.features: dict[str, Any] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/features/"):
            return httpx.Response(200, content=orjson.dumps({"features": self.features}))
        return httpx.Response(200, json={"accepted": 0, "rejected": []})


@pytest.fixture(scope="module")
def served() -> Served:
    return Served()


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[Client]:
    with Client(
        "wk",
        host="http://c.test",
        client_key="sdk-x",
        streaming=False,
        track_exposures=False,
        transport=httpx.MockTransport(served.handle),
    ) as client:
        yield client


def test_most_cases_run_through_the_client() -> None:
    assert len(CLIENT_CASES) >= 40


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
def test_feature_through_the_client(client: Client, served: Served, case: list[Any]) -> None:
    _, context, key, expected = case
    served.features = context.get("features", {})
    assert client.refresh_features()
    attributes = context.get("attributes", {})
    before = orjson.dumps(attributes)
    result = client.evaluate_feature(key, None, attributes)
    got = {"value": result.value, "on": result.on, "source": result.source}
    assert got == {"value": expected["value"], "on": expected["on"], "source": expected["source"]}
    assert result.rule_id == expected["ruleId"]
    assert (result.experiment is not None) == ("experimentResult" in expected)
    if result.experiment is not None:
        want = expected["experimentResult"]
        assert result.experiment.variation_id == want["variationId"]
        assert result.experiment.hash_value == want["hashValue"]
        assert result.experiment.key == want["key"]
    sentinel = object()
    value = client.get_feature_value(key, sentinel, None, attributes)
    if expected["value"] is None:
        assert value is sentinel
    else:
        assert value == expected["value"]
    assert client.is_on(key, None, attributes) is expected["on"]
    assert orjson.dumps(attributes) == before, "the caller's attributes are not changed"


def test_a_new_payload_is_evaluated_as_soon_as_it_is_fetched(
    client: Client, served: Served
) -> None:
    served.features = {"f": {"defaultValue": "one", "rules": [{"force": "two", "condition": {}}]}}
    assert client.refresh_features()
    assert client.get_feature_value("f", None, "u1") == "two"
    served.features = {"f": {"defaultValue": "one", "rules": [{"force": "three"}]}}
    assert client.refresh_features()
    assert client.get_feature_value("f", None, "u1") == "three"
    served.features = {}
    assert client.refresh_features()
    assert client.evaluate_feature("f", "u1").source == "unknownFeature"


def test_user_id_is_the_id_attribute(client: Client, served: Served) -> None:
    rule = {"force": True, "condition": {"id": "42"}}
    served.features = {"f": {"defaultValue": False, "rules": [rule]}}
    assert client.refresh_features()
    assert client.is_on("f", 42, {"id": "other"})
    assert client.is_on("f", "42")
    assert not client.is_on("f", None, {"id": "other"})
    with pytest.raises(ValueError, match="user_id"):
        client.is_on("f", "")
