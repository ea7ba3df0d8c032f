"""Features end to end on real Kafka: the admin API writes versions, the collector serves them
as GrowthBook's payload and streams changes; GrowthBook's own SDKs (PyPI, and npm in Node) and
Sextant's (Python, and the browser SDK's evaluator in Node) agree on every unit."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from growthbook import GrowthBook

from sextant.collector.app import create_app as create_collector
from sextant.collector.settings import CollectorSettings
from sextant.schemas.config import Experiment, NamespaceRange, Variant
from sextant.sdk import Client
from tests.infra import wait_for
from tests.integration.test_gateway_harness import Harness, make_harness, serve_in_thread

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)


@dataclass
class Flags:
    harness: Harness
    collector: str
    production: str
    staging: str

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.harness.client.request(
            method, f"/v1/admin/projects/acme{path}", headers=self.harness.admin, **kwargs
        )
        assert response.status_code < 300, response.text
        return response

    def payload(self, key: str | None = None) -> dict[str, Any]:
        response = httpx.get(f"{self.collector}/api/features/{key or self.production}", timeout=10)
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()
        return payload

    def feature_when(
        self, feature: str, check: Callable[[dict[str, Any]], bool], key: str | None = None
    ) -> dict[str, Any]:
        """The feature in the collector's payload, once ``check`` holds for it (the collector
        follows the config topic as the gateway does, a moment later)."""
        found: dict[str, Any] = {}

        def seen() -> bool:
            entry = self.payload(key)["features"].get(feature)
            if entry is not None and check(entry):
                found.update(entry)
                return True
            return False

        wait_for(seen, 10, 0.05, f"{feature} as expected in the collector's payload")
        return found


@pytest.fixture(scope="module")
def flags(kafka_bootstrap: str, warehouse_root: Path) -> Iterator[Flags]:
    with make_harness(kafka_bootstrap, warehouse_root) as harness:
        settings = CollectorSettings(
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=harness.settings.topic_prefix,
            feature_stream_heartbeat_seconds=5,
        )
        with serve_in_thread(create_collector(settings)) as collector:
            keys = {}
            for env in ("production", "staging"):
                created = harness.client.post(
                    "/v1/admin/projects/acme/keys",
                    json={"kind": "client", "environment": env, "id": f"flags-{env}"},
                    headers=harness.admin,
                )
                assert created.status_code == 201, created.text
                keys[env] = created.json()["secret"]
            stack = Flags(harness, collector, keys["production"], keys["staging"])
            wait_for(
                lambda: httpx.get(f"{collector}/api/features/{keys['staging']}").status_code == 200,
                20,
                message="the collector knows the client keys",
            )
            yield stack


def rollout(feature_id: str, coverage: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": feature_id,
        "value_type": "boolean",
        "default_value": False,
        "environments": {
            "production": {
                "rules": [
                    {"type": "force", "id": "staff", "condition": {"staff": True}, "value": True},
                    {"type": "rollout", "id": "pct", "coverage": coverage, "value": True},
                ]
            },
            "staging": {"rules": [{"type": "force", "id": "all", "value": True}]},
        },
    } | extra


def test_every_change_is_a_version_and_a_revert_restores_it_exactly(flags: Flags) -> None:
    flags.admin("POST", "/features", json=rollout("history-flag", 0.05) | {"comment": "5 %"})
    v1_payload = flags.feature_when("history-flag", lambda f: f["rules"][1]["range"] == [0, 0.05])
    v1 = flags.admin("GET", "/features/history-flag").json()
    assert v1["version"] == 1
    assert v1["updated_by"] == "ops-admin"
    flags.admin("PUT", "/features/history-flag", json=rollout("history-flag", 0.5))
    same = flags.admin("PUT", "/features/history-flag", json=rollout("history-flag", 0.5))
    assert same.json()["version"] == 2, "a write that changes nothing is no new version"
    flags.admin(
        "PUT",
        "/features/history-flag/environments/production/enabled",
        json={"enabled": False},
    )
    history = flags.admin("GET", "/features/history-flag/history").json()["items"]
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[2]["changes"] == ["created"]
    assert history[2]["comment"] == "5 %"
    assert history[1]["changes"] == ["production: rule 'pct' coverage 0.05 → 0.5"]
    assert history[0]["changes"] == ["production: switched off"]
    assert all(h["by"] == "ops-admin" and h["at"] for h in history)

    reverted = flags.admin("POST", "/features/history-flag/revert", json={"version": 1}).json()
    assert reverted["version"] == 4
    assert reverted["comment"] == "revert to version 1"
    keep = ("id", "project_id", "description", "value_type", "default_value", "environments")
    assert {k: reverted[k] for k in keep} == {k: v1[k] for k in keep}
    assert flags.feature_when("history-flag", lambda f: f == v1_payload) == v1_payload
    latest = flags.admin("GET", "/features/history-flag/history").json()["items"][0]
    assert latest["changes"] == [
        "production: switched on",
        "production: rule 'pct' coverage 0.5 → 0.05",
    ]


def test_an_environment_switched_off_serves_defaults(flags: Flags) -> None:
    flags.admin("POST", "/features", json=rollout("env-flag", 1.0))
    staging = flags.feature_when("env-flag", lambda f: "rules" in f, flags.staging)
    assert staging["rules"][0]["force"] is True
    flags.admin("PUT", "/features/env-flag/environments/staging/enabled", json={"enabled": False})
    flags.feature_when("env-flag", lambda f: f == {"defaultValue": False}, flags.staging)
    growthbook = GrowthBook(api_host=flags.collector, client_key=flags.staging)
    growthbook.load_features()
    for unit in ("u1", "u2", "staff-1"):
        growthbook.set_attributes({"id": unit, "staff": True})
        assert growthbook.get_feature_value("env-flag", "unset") is False
    growthbook.destroy()
    assert flags.payload()["features"]["env-flag"]["rules"], "production is untouched"


def test_a_change_reaches_running_sdks_over_the_stream_within_two_seconds(flags: Flags) -> None:
    flags.admin("POST", "/features", json=rollout("live-flag", 0.0))
    sextant = Client(
        "unused-write-key", host=flags.collector, client_key=flags.production, refresh_interval=600
    )
    growthbook = GrowthBook(
        api_host=flags.collector,
        client_key=flags.production,
        streaming=True,
        attributes={"id": "user-1"},
    )
    try:
        wait_for(
            lambda: sextant._features is not None and sextant._features.streaming_now,
            10,
            0.05,
            "Sextant's SDK follows the stream",
        )
        assert sextant.is_on("live-flag", "user-1") is False
        assert growthbook.is_on("live-flag") is False
        started = time.monotonic()
        flags.admin("PUT", "/features/live-flag", json=rollout("live-flag", 1.0))
        wait_for(lambda: sextant.is_on("live-flag", "user-1"), 2, 0.01, "Sextant's SDK sees it")
        sextant_s = time.monotonic() - started
        wait_for(lambda: growthbook.is_on("live-flag"), 2, 0.01, "GrowthBook's SDK sees it")
        growthbook_s = time.monotonic() - started
        assert sextant_s < 2, sextant_s
        assert growthbook_s < 2, growthbook_s
        assert sextant._features.refreshed == 1, "pushed by the stream, not polled"
    finally:
        sextant.shutdown()
        growthbook.destroy()


# --- GrowthBook's SDKs and Sextant's agree ---------------------------------------------------

UNITS = 10_000
FEATURES = ["plan-gate", "beta-rollout", "checkout-page", "pricing-a", "pricing-b", "limits"]
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_éüñ用户😀пΩ"


def _units(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    units = []
    for i in range(UNITS):
        ident = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 16))) + f"-{i}"
        attributes: dict[str, Any] = {"id": ident}
        if rng.random() < 0.9:
            attributes["country"] = rng.choice(["FR", "DE", "US", "JP", "fr"])
        if rng.random() < 0.8:
            attributes["app_version"] = rng.choice(
                ["1.9.2", "1.10.0", "2.0.0-beta", "2.0.0", "v2.1"]
            )
        if rng.random() < 0.7:
            attributes["age"] = rng.randint(10, 80)
        if rng.random() < 0.5:
            attributes["plan"] = rng.choice(["free", "pro", "enterprise"])
        if rng.random() < 0.3:
            attributes["email"] = f"{ident}@{rng.choice(['shop.com', 'example.org'])}"
        units.append(attributes)
    return units


def _agreement_documents(flags: Flags) -> None:
    start = NOW - timedelta(days=1)
    experiments = [
        Experiment(
            id="checkout-test",
            project_id="acme",
            start=start,
            coverage=0.9,
            variants=[Variant(id="control", weight=0.4), Variant(id="one-page", weight=0.6)],
        ),
        Experiment(
            id="pricing-a-test",
            project_id="acme",
            start=start,
            namespace=NamespaceRange(id="pricing", start=0, end=0.5),
            variants=[Variant(id="low", weight=0.5), Variant(id="high", weight=0.5)],
        ),
        Experiment(
            id="pricing-b-test",
            project_id="acme",
            start=start,
            namespace=NamespaceRange(id="pricing", start=0.5, end=1),
            variants=[Variant(id="monthly", weight=0.5), Variant(id="yearly", weight=0.5)],
        ),
    ]
    flags.harness.put_config(*experiments)
    features = [
        {
            "id": "plan-gate",
            "value_type": "boolean",
            "default_value": False,
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "force",
                            "id": "pro-eu",
                            "value": True,
                            "condition": {
                                "$and": [
                                    {"plan": {"$in": ["pro", "enterprise"]}},
                                    {"country": {"$ini": ["fr", "de"]}},
                                ]
                            },
                        },
                        {
                            "type": "force",
                            "id": "new-app",
                            "value": True,
                            "condition": {"app_version": {"$vgte": "2.0.0"}, "age": {"$gte": 18}},
                        },
                        {
                            "type": "force",
                            "id": "staff",
                            "value": True,
                            "condition": {"email": {"$regex": "@shop\\.com$"}},
                        },
                        {
                            "type": "force",
                            "id": "no-plan",
                            "value": False,
                            "condition": {
                                "$or": [
                                    {"plan": {"$exists": False}},
                                    {"$not": {"age": {"$lt": 30}}},
                                ]
                            },
                        },
                    ]
                }
            },
        },
        {
            "id": "beta-rollout",
            "value_type": "boolean",
            "default_value": False,
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "rollout",
                            "id": "us",
                            "value": True,
                            "coverage": 0.3,
                            "condition": {"country": "US"},
                        },
                        {"type": "rollout", "id": "all", "value": True, "coverage": 0.1234},
                    ]
                }
            },
        },
        {
            "id": "checkout-page",
            "value_type": "string",
            "default_value": "classic",
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "experiment",
                            "id": "test",
                            "experiment": "checkout-test",
                            "values": {"control": "classic", "one-page": "one-page"},
                            "condition": {"country": {"$nin": ["JP"]}},
                        },
                    ]
                }
            },
        },
        {
            "id": "pricing-a",
            "value_type": "number",
            "default_value": 10,
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "experiment",
                            "id": "a",
                            "experiment": "pricing-a-test",
                            "values": {"low": 8, "high": 12},
                        },
                    ]
                }
            },
        },
        {
            "id": "pricing-b",
            "value_type": "string",
            "default_value": "none",
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "experiment",
                            "id": "b",
                            "experiment": "pricing-b-test",
                            "values": {"monthly": "monthly", "yearly": "yearly"},
                        },
                    ]
                }
            },
        },
        {
            "id": "limits",
            "value_type": "json",
            "default_value": {"max": 3},
            "environments": {
                "production": {
                    "rules": [
                        {
                            "type": "rollout",
                            "id": "more",
                            "value": {"max": 10},
                            "coverage": 0.5,
                            "hash_attribute": "email",
                        },
                    ]
                }
            },
        },
    ]
    for feature in features:
        flags.admin("PUT", f"/features/{feature['id']}", json=feature)


def test_growthbooks_sdks_and_sextants_agree_on_10000_units(flags: Flags) -> None:
    _agreement_documents(flags)
    units = _units(20260101)
    wait_for(lambda: set(FEATURES) <= set(flags.payload()["features"]), 10, message="features")
    payload = flags.payload()["features"]
    assert payload["checkout-page"]["rules"], "the experiment rule is served"

    sextant = Client(
        "unused-write-key",
        host=flags.collector,
        client_key=flags.production,
        streaming=False,
        track_exposures=False,
    )
    growthbook = GrowthBook(api_host=flags.collector, client_key=flags.production)
    # GrowthBook's SDK caches payloads per host and key for the process (10 minutes):
    # the earlier tests of this module loaded this key's payload before these features.
    growthbook.load_features(force_refresh=True)
    ours, theirs = [], []
    for attributes in units:
        growthbook.set_attributes(dict(attributes))  # destroy() empties the dict it holds
        rest = {k: v for k, v in attributes.items() if k != "id"}
        ours.append([sextant.get_feature_value(k, None, attributes["id"], rest) for k in FEATURES])
        theirs.append([growthbook.get_feature_value(k, None) for k in FEATURES])
    sextant.shutdown()
    growthbook.destroy()
    differ = [(u, a, b) for u, a, b in zip(units, ours, theirs, strict=True) if a != b]
    assert not differ, f"{len(differ)} units differ, e.g. {differ[:3]}"

    # Every rule decides for some units: the comparison is not between defaults.
    for i, key in enumerate(FEATURES):
        assert len({json.dumps(row[i], sort_keys=True) for row in ours}) > 1, key
    # Two experiments in one namespace never share a unit.
    in_a = [row[FEATURES.index("pricing-a")] != 10 for row in ours]
    in_b = [row[FEATURES.index("pricing-b")] != "none" for row in ours]
    assert sum(in_a) > 0.4 * UNITS
    assert sum(in_b) > 0.4 * UNITS
    assert not any(a and b for a, b in zip(in_a, in_b, strict=True))

    node = shutil.which("node")
    assert node is not None, "Node.js is needed (make setup)"
    request = {
        "apiHost": flags.collector,
        "clientKey": flags.production,
        "features": FEATURES,
        "units": units,
    }
    done = subprocess.run(
        [node, str(REPO / "tests" / "browser" / "growthbook_eval.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO / "tests" / "browser",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for name in ("growthbook", "sextant"):
        rows = answers[name]
        differ = [(u, a, b) for u, a, b in zip(units, ours, rows, strict=True) if a != b]
        assert not differ, f"{name} in Node: {len(differ)} units differ, e.g. {differ[:3]}"
