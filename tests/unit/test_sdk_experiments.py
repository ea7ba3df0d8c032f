"""get_variant: definitions from the collector or the gateway, GrowthBook's assignment, one
exposure per unit."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from growthbook import Experiment as GrowthBookExperiment
from growthbook import GrowthBook

from sextant.schemas.assignment import assign
from sextant.schemas.config import Experiment, Variant
from sextant.schemas.events import EXPERIMENT_VIEWED
from sextant.schemas.experiments import ASSIGNMENT_FIELDS
from sextant.sdk import Client
from sextant.sdk._experiments import SeenUnits
from tests.infra import wait_for
from tests.sdk_fakes import FakeClock, FakeServer

CHECKOUT = Experiment(
    id="checkout",
    project_id="shop",
    variants=[Variant(id="control", weight=0.5), Variant(id="one-page", weight=0.5)],
)


def definition(experiment: Experiment) -> dict[str, Any]:
    return experiment.model_dump(mode="json")


@pytest.fixture
def server() -> FakeServer:
    server = FakeServer()
    server.definitions = [definition(CHECKOUT)]
    return server


def make(server: FakeServer, **options: Any) -> Client:
    arguments: dict[str, Any] = {
        "host": "http://collector.test",
        "gateway": "http://gateway.test/",
        "read_key": "rk_test",
        "transport": server.transport,
        "flush_interval": 30,
    } | options
    return Client("wk", **arguments)


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with make(server) as client:
        yield client


def exposures(client: Client, server: FakeServer) -> list[dict[str, Any]]:
    assert client.flush(5)
    return [e for e in server.delivered() if e["event"] == EXPERIMENT_VIEWED]


def test_definitions_come_from_the_gateway_with_the_read_key(
    client: Client, server: FakeServer
) -> None:
    client.get_variant("checkout", "u1")

    request = server.definition_requests[0]
    assert str(request.url) == "http://gateway.test/v1/experiments/definitions"
    assert request.headers["authorization"] == "Bearer rk_test"


def test_the_variant_is_the_shared_assignment_of_the_unit(client: Client) -> None:
    for i in range(200):
        index = assign("checkout", f"user-{i}", [0.5, 0.5])
        assert index is not None
        assert client.get_variant("checkout", f"user-{i}") == CHECKOUT.variants[index].id


def test_the_first_assignment_of_a_unit_is_tracked_once(client: Client, server: FakeServer) -> None:
    first = client.get_variant("checkout", "u1")
    assert client.get_variant("checkout", "u1") == first
    client.get_variant("checkout", "u1", {"country": "FR"})
    second = client.get_variant("checkout", "u2", {"country": "DE"})

    seen = exposures(client, server)
    assert [(e["userId"], e["properties"]) for e in seen] == [
        ("u1", {"experiment_id": "checkout", "variation_id": first}),
        ("u2", {"experiment_id": "checkout", "variation_id": second}),
    ]
    assert "traits" not in seen[0]["context"]
    assert seen[1]["context"]["traits"] == {"country": "DE"}


def test_an_anonymous_unit_is_exposed_as_an_anonymous_id(server: FakeServer) -> None:
    server.definitions = [definition(CHECKOUT.model_copy(update={"unit": "anonymousId"}))]
    with make(server) as client:
        client.get_variant("checkout", "anon-9")

        (exposure,) = exposures(client, server)
        assert exposure["anonymousId"] == "anon-9"
        assert "userId" not in exposure


def test_units_outside_the_coverage_get_none_and_no_exposure(server: FakeServer) -> None:
    server.definitions = [definition(CHECKOUT.model_copy(update={"coverage": 0.3}))]
    with make(server) as client:
        results = [client.get_variant("checkout", f"user-{i}") for i in range(300)]

        excluded = results.count(None)
        assert 150 < excluded < 270
        assert len(exposures(client, server)) == 300 - excluded


def test_unknown_and_not_running_experiments_give_none(server: FakeServer) -> None:
    clock = FakeClock()
    later = CHECKOUT.model_copy(update={"id": "later", "start": clock.now() + timedelta(days=1)})
    ended = CHECKOUT.model_copy(update={"id": "ended", "stop": clock.now()})
    server.definitions = [definition(later), definition(ended)]
    with make(server, clock=clock) as client:
        assert client.get_variant("missing", "u1") is None
        assert client.get_variant("later", "u1") is None
        assert client.get_variant("ended", "u1") is None
        assert exposures(client, server) == []


def test_the_last_definitions_are_served_while_the_gateway_is_down(
    client: Client, server: FakeServer
) -> None:
    before = client.get_variant("checkout", "u1")
    server.definition_script = [503, httpx.ConnectError("gateway down")]

    assert client.refresh_experiments() is False
    assert client.refresh_experiments() is False
    assert client.get_variant("checkout", "u1") == before is not None


def test_new_definitions_are_picked_up_in_the_background(server: FakeServer) -> None:
    with make(server, refresh_interval=0.05) as client:
        assert client.get_variant("pricing", "u1") is None
        server.definitions.append(definition(CHECKOUT.model_copy(update={"id": "pricing"})))

        wait_for(lambda: client.get_variant("pricing", "u1"), timeout_s=5, message="refresh")


def test_an_unchanged_list_is_not_sent_again(client: Client, server: FakeServer) -> None:
    server.definition_script = [(200, {"ETag": '"v1"'}), (304, {})]
    client.refresh_experiments()
    client.refresh_experiments()

    assert server.definition_requests[-1].headers["if-none-match"] == '"v1"'
    assert client.get_variant("checkout", "u1") is not None


def test_an_unreadable_definition_is_skipped_and_the_others_kept(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    broken = definition(CHECKOUT) | {"id": "broken", "variants": []}
    server.definitions = [broken, definition(CHECKOUT)]
    with caplog.at_level(logging.WARNING, "sextant.sdk"), make(server) as client:
        assert client.get_variant("checkout", "u1") is not None
        assert client.get_variant("broken", "u1") is None
    assert "skipping an experiment definition" in caplog.text


def test_an_unreachable_gateway_at_start_means_no_experiment_not_an_error(
    server: FakeServer,
) -> None:
    server.definition_script = [httpx.ConnectError("down")] * 1000
    with make(server, first_load_timeout=0.5) as client:
        assert client.get_variant("checkout", "u1") is None


# --- From the collector, with the write key (the default) -----------------------------------


def collector_definition(experiment: Experiment) -> dict[str, Any]:
    """What the collector serves to a write key: the assignment fields only."""
    return experiment.model_dump(mode="json", include=set(ASSIGNMENT_FIELDS))


def make_default(server: FakeServer, **options: Any) -> Client:
    arguments: dict[str, Any] = {
        "host": "http://collector.test/",
        "transport": server.transport,
        "flush_interval": 30,
    } | options
    return Client("wk_test", **arguments)


def test_without_a_gateway_definitions_come_from_the_collector_with_the_write_key(
    server: FakeServer,
) -> None:
    server.definitions = [collector_definition(CHECKOUT)]
    with make_default(server) as client:
        variant = client.get_variant("checkout", "u1")

        index = assign("checkout", "u1", [0.5, 0.5])
        assert index is not None
        assert variant == CHECKOUT.variants[index].id
        assert [e["properties"] for e in exposures(client, server)] == [
            {"experiment_id": "checkout", "variation_id": variant}
        ]
    request = server.definition_requests[0]
    assert str(request.url) == "http://collector.test/v1/experiments/definitions"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"wk_test:").decode()


def test_the_collector_is_asked_only_once_a_variant_is_wanted(server: FakeServer) -> None:
    with make_default(server, refresh_interval=0.05) as client:
        client.track("u1", "Signed Up")
        assert client.flush(5)
        assert server.definition_requests == []

        assert client.get_variant("checkout", "u1") is not None
        wait_for(lambda: len(server.definition_requests) >= 2, timeout_s=5, message="refresh")


def test_the_collector_list_is_refreshed_with_its_etag(server: FakeServer) -> None:
    server.definitions = [collector_definition(CHECKOUT)]
    server.definition_script = [(200, {"ETag": '"c1"'}), (304, {"ETag": '"c1"'})]
    with make_default(server) as client:
        assert client.refresh_experiments() is True
        assert client.refresh_experiments() is True
        assert client.get_variant("checkout", "u1") is not None

    assert "if-none-match" not in server.definition_requests[0].headers
    assert server.definition_requests[1].headers["if-none-match"] == '"c1"'


def test_without_the_collector_endpoint_there_is_no_experiment_not_an_error(
    server: FakeServer,
) -> None:
    server.definition_script = [404] * 1000
    with make_default(server, first_load_timeout=0.5) as client:
        assert client.get_variant("checkout", "u1") is None
        assert client.refresh_experiments() is False


@pytest.mark.parametrize(
    "options",
    [
        {"gateway": "http://gateway.test"},
        {"read_key": "rk_test"},
        {"gateway": "http://gateway.test", "read_key": ""},
    ],
    ids=["gateway-alone", "read-key-alone", "empty-read-key"],
)
def test_gateway_and_read_key_go_together(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="gateway and read_key"):
        Client("wk", host="http://collector.test", **options)


@pytest.mark.parametrize("unit", ["", None, True, 1.5])
def test_a_unit_id_must_be_a_string_or_an_integer(client: Client, unit: Any) -> None:
    with pytest.raises(ValueError, match="user_id"):
        client.get_variant("checkout", unit)


@pytest.mark.parametrize(
    ("weights", "coverage", "seed", "hash_version"),
    [
        ([0.5, 0.5], 1.0, None, 2),
        ([0.2, 0.3, 0.5], 0.7, "spring-sale", 2),
        ([0.1, 0.9], 0.5, None, 1),
        ([0.25, 0.25, 0.25, 0.25], 1.0, "s", 1),
    ],
)
def test_users_get_the_same_variant_as_from_growthbooks_sdk(
    server: FakeServer, weights: list[float], coverage: float, seed: str | None, hash_version: int
) -> None:
    experiment = Experiment(
        id="exp-1",
        project_id="shop",
        variants=[Variant(id=f"v{i}", weight=w) for i, w in enumerate(weights)],
        coverage=coverage,
        seed=seed,
        hash_version=hash_version,
    )
    server.definitions = [definition(experiment)]
    growthbook_experiment = GrowthBookExperiment(
        key="exp-1",
        variations=list(range(len(weights))),
        weights=weights,
        coverage=coverage,
        seed=seed,
        hashVersion=hash_version,
    )
    users = [f"user-{i}" for i in range(500)] + ["ünïcode", "😀-user", "12345"]
    with make(server, track_exposures=False) as client:
        for user in users:
            result = GrowthBook(attributes={"id": user}).run(growthbook_experiment)
            expected = f"v{result.variationId}" if result.inExperiment else None
            assert client.get_variant("exp-1", user) == expected, user


def test_the_memory_of_exposed_units_is_bounded() -> None:
    seen = SeenUnits(capacity=2)

    assert [seen.first(key) for key in ("a", "b", "a", "c", "a", "b")] == [
        True,
        True,
        False,  # a again: remembered, and now the most recent
        True,  # c: b, the least recent, is forgotten
        False,  # a: still remembered
        True,  # b: forgotten, so new again
    ]
