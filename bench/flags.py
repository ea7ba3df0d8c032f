"""What evaluating a feature flag costs in each SDK, and how many requests/s the features
endpoint answers.

Three figures, each beside a baseline measured in the same run:

- Python: µs per flag evaluated by ``Client.get_feature_value`` (the SDK's public call, local
  evaluation of the payload it keeps, exposures off) beside GrowthBook's own Python SDK
  (``GrowthBook.get_feature_value``, attributes set once per unit) evaluating the same
  payload; the target is under 5 µs a flag. The payload has six features: force rules with
  conditions (``$in``/``$ini``, version and number comparisons, ``$regex``, ``$or``/``$not``),
  two rollouts, and three experiment rules, two of them in one namespace.
- Node: µs per flag by ``@sextant/browser``'s evaluator beside GrowthBook's JavaScript SDK
  (``GrowthBookClient.evalFeature``) on the same payload and units.
- The collector's ``GET /api/features/{clientKey}`` answered per second (200 with the payload,
  and 304 to a matching ``If-None-Match``), 16 keep-alive connections in closed loops, beside
  the collector's own ``/healthz`` under the same load.

Run: ``python -m bench.flags [--bootstrap HOST:PORT]``. Without ``--bootstrap`` it starts a
private broker. Needs ``make setup`` (Node, sdk/js/dist and tests/browser's npm packages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from growthbook import GrowthBook

from bench.collector_throughput import Connection, collector
from bench.common import Figure, bootstrap_server, write_results
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import ensure_topics
from sextant.core.settings import KafkaSection
from sextant.schemas.config import (
    ApiKey,
    ConfigDocument,
    Experiment,
    Feature,
    KeyKind,
    NamespaceRange,
    Project,
    Variant,
    hash_key,
)
from sextant.schemas.features import features_payload
from sextant.sdk import Client

BENCH = Path(__file__).parent
CLIENT_KEY = "sdk-bench-flags-000000000000000"
COMMAND = "python -m bench.flags"
UNITS = 2_000
ROUNDS = 7
NOW = datetime.now(UTC)


def documents() -> list[ConfigDocument]:
    start = NOW - timedelta(days=1)
    two = [Variant(id="a", weight=0.5), Variant(id="b", weight=0.5)]
    experiments: list[ConfigDocument] = [
        Experiment(id="checkout-test", project_id="bench", start=start, variants=two),
        Experiment(
            id="price-a",
            project_id="bench",
            start=start,
            variants=two,
            namespace=NamespaceRange(id="pricing", start=0, end=0.5),
        ),
        Experiment(
            id="price-b",
            project_id="bench",
            start=start,
            variants=two,
            namespace=NamespaceRange(id="pricing", start=0.5, end=1),
        ),
    ]

    def feature(key: str, kind: str, default: Any, rules: list[dict[str, Any]]) -> Feature:
        return Feature.model_validate(
            {
                "id": key,
                "project_id": "bench",
                "value_type": kind,
                "default_value": default,
                "updated_at": NOW,
                "created_at": NOW,
                "environments": {"production": {"rules": rules}},
            }
        )

    def exp_rule(experiment: str) -> dict[str, Any]:
        return {
            "type": "experiment",
            "id": "x",
            "experiment": experiment,
            "values": {"a": "a", "b": "b"},
        }

    features: list[ConfigDocument] = [
        feature(
            "gate",
            "boolean",
            False,
            [
                {
                    "type": "force",
                    "id": "eu-pro",
                    "value": True,
                    "condition": {
                        "plan": {"$in": ["pro", "enterprise"]},
                        "country": {"$ini": ["fr", "de"]},
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
                    "id": "rest",
                    "value": False,
                    "condition": {
                        "$or": [{"plan": {"$exists": False}}, {"$not": {"age": {"$lt": 30}}}]
                    },
                },
            ],
        ),
        feature(
            "beta",
            "boolean",
            False,
            [
                {
                    "type": "rollout",
                    "id": "us",
                    "value": True,
                    "coverage": 0.3,
                    "condition": {"country": "US"},
                },
                {"type": "rollout", "id": "all", "value": True, "coverage": 0.1},
            ],
        ),
        feature(
            "limits",
            "json",
            {"max": 3},
            [
                {"type": "rollout", "id": "more", "value": {"max": 10}, "coverage": 0.5},
            ],
        ),
        feature("checkout", "string", "a", [exp_rule("checkout-test")]),
        feature("price-a", "string", "a", [exp_rule("price-a")]),
        feature("price-b", "string", "a", [exp_rule("price-b")]),
    ]
    return experiments + features


def units(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(UNITS):
        attributes: dict[str, Any] = {"id": f"user-{i}-{rng.random():.6f}"}
        attributes["country"] = rng.choice(["FR", "DE", "US", "JP"])
        attributes["plan"] = rng.choice(["free", "pro", "enterprise"])
        attributes["app_version"] = rng.choice(["1.9.2", "2.0.0", "2.1.0"])
        attributes["age"] = rng.randint(12, 80)
        out.append(attributes)
    return out


def per_flag_us(evaluate_unit: Any, rounds: list[list[dict[str, Any]]], keys: list[str]) -> float:
    """Median over rounds of µs per flag (all keys for every unit of the round)."""
    samples = []
    for rows in rounds:
        started = time.perf_counter()
        for attributes in rows:
            evaluate_unit(attributes)
        samples.append((time.perf_counter() - started) / (len(rows) * len(keys)) * 1e6)
    return statistics.median(samples)


def python_costs(
    payload: dict[str, Any], rounds: list[list[dict[str, Any]]]
) -> tuple[float, float]:
    """(Sextant, GrowthBook) µs per flag over ``rounds`` of units."""
    keys = list(payload["features"])
    rows = [a for units_ in rounds for a in units_]
    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=orjson.dumps(payload)))
    client = Client(
        "wk",
        host="http://bench.test",
        client_key=CLIENT_KEY,
        streaming=False,
        track_exposures=False,
        transport=transport,
    )
    split = [(a["id"], {k: v for k, v in a.items() if k != "id"}) for a in rows]
    by_id = {a["id"]: rest for a, (_, rest) in zip(rows, split, strict=True)}

    def sextant(attributes: dict[str, Any]) -> None:
        unit = attributes["id"]
        rest = by_id[unit]
        for key in keys:
            client.get_feature_value(key, None, unit, rest)

    growthbook = GrowthBook(features=payload["features"])

    def theirs(attributes: dict[str, Any]) -> None:
        growthbook.set_attributes(attributes)
        for key in keys:
            growthbook.get_feature_value(key, None)

    sextant(rows[0])
    theirs(rows[0])
    ours_us = per_flag_us(sextant, rounds, keys)
    theirs_us = per_flag_us(theirs, rounds, keys)
    client.shutdown()
    return ours_us, theirs_us


def node_costs(payload: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[float, float]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("Node.js is needed: make setup")
    request = {
        "features": payload["features"],
        "keys": list(payload["features"]),
        "units": rows,
        "rounds": ROUNDS,
    }
    done = subprocess.run(
        [node, str(BENCH / "flags_eval.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    answer = json.loads(done.stdout)
    return float(answer["sextant_us"]), float(answer["growthbook_us"])


async def requests_per_second(port: int, request: bytes, connections: int, seconds: float) -> float:
    answered = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal answered
        connection = await Connection.open(port)
        try:
            while time.monotonic() < deadline:
                if await connection.post(request) in (200, 304):
                    answered += 1
        finally:
            connection.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(connections)))
    return answered / (time.monotonic() - started)


def endpoint_rates(bootstrap: str) -> tuple[float, float, float]:
    settings = KafkaSection(kafka_bootstrap=bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
    ensure_topics(settings, partitions=3)
    publisher = ConfigPublisher(settings)
    publisher.put(
        [
            Project(id="bench", project_id="bench", name="Bench"),
            ApiKey(
                id="flags",
                project_id="bench",
                key_kind=KeyKind.CLIENT,
                key_hash=hash_key(CLIENT_KEY),
                environment="production",
            ),
            *documents(),
        ]
    )
    publisher.close()
    with collector(settings, workers=1) as (port, _):
        url = f"http://127.0.0.1:{port}/api/features/{CLIENT_KEY}"
        etag = httpx.get(url, timeout=10).headers["etag"]
        get = f"GET /api/features/{CLIENT_KEY} HTTP/1.1\r\nHost: c\r\n\r\n".encode()
        cached = (
            f"GET /api/features/{CLIENT_KEY} HTTP/1.1\r\nHost: c\r\nIf-None-Match: {etag}\r\n\r\n"
        ).encode()
        health = b"GET /healthz HTTP/1.1\r\nHost: c\r\n\r\n"
        asyncio.run(requests_per_second(port, get, 16, 2))  # warm-up
        full = asyncio.run(requests_per_second(port, get, 16, 5))
        not_modified = asyncio.run(requests_per_second(port, cached, 16, 5))
        baseline = asyncio.run(requests_per_second(port, health, 16, 5))
    return full, not_modified, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="an existing broker (default: a private one)")
    args = parser.parse_args()
    docs = documents()
    payload = features_payload(
        [d for d in docs if isinstance(d, Feature)],
        [d for d in docs if isinstance(d, Experiment)],
        "production",
        NOW,
    )
    rows = units()
    # New units every round (no hash seen before), and the same units again (a returning
    # user's next request: the SDK keeps the last 32,768 hashes).
    new = [units(seed) for seed in range(100, 100 + ROUNDS)]
    py_ours, py_theirs = python_costs(payload, new)
    py_warm, py_warm_theirs = python_costs(payload, [rows] * ROUNDS)
    print(f"python, new units: sextant {py_ours:.2f} µs/flag, growthbook {py_theirs:.2f}")
    print(f"python, known units: sextant {py_warm:.2f} µs/flag, growthbook {py_warm_theirs:.2f}")
    js_ours, js_theirs = node_costs(payload, rows)
    print(f"node: sextant {js_ours:.3f} µs/flag, growthbook {js_theirs:.3f} µs/flag")
    with bootstrap_server(args.bootstrap) as bootstrap:
        full, not_modified, health = endpoint_rates(bootstrap)
    print(f"endpoint: {full:.0f} req/s (200), {not_modified:.0f} req/s (304), healthz {health:.0f}")
    write_results(
        "flags",
        [
            Figure(
                "flags",
                "Python SDK: µs per flag, new units (6 features, 2,000 units a round)",
                py_ours,
                "µs",
                "GrowthBook's Python SDK, same payload and units",
                py_theirs,
                "< 5 µs",
                COMMAND,
            ),
            Figure(
                "flags",
                "Python SDK: µs per flag, units seen before (recent hashes kept)",
                py_warm,
                "µs",
                "GrowthBook's Python SDK, same payload and units",
                py_warm_theirs,
                "< 5 µs",
                COMMAND,
            ),
            Figure(
                "flags",
                "@sextant/browser in Node: µs per flag evaluated",
                js_ours,
                "µs",
                "GrowthBook's JS SDK (GrowthBookClient.evalFeature)",
                js_theirs,
                "",
                COMMAND,
            ),
            Figure(
                "flags",
                "collector: GET /api/features requests/s (200, 16 connections)",
                full,
                "req/s",
                "collector /healthz, same load",
                health,
                "",
                COMMAND,
            ),
            Figure(
                "flags",
                "collector: GET /api/features requests/s (304, If-None-Match)",
                not_modified,
                "req/s",
                "collector /healthz, same load",
                health,
                "",
                COMMAND,
            ),
        ],
    )


if __name__ == "__main__":
    main()
