"""Runs inside a fresh virtual environment that holds only the SDK's wheel (test_sdk_wheel.py).

Reads assignment vectors as JSON on stdin; writes as JSON on stdout what the installed SDK
computes for them, the requests a ``Client`` sends through a mock transport, and what the
environment holds. It imports only the standard library and the wheel with its dependencies,
and judges nothing: the test compares, with the repository's own models at hand.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import sys
from importlib import metadata
from typing import Any

import httpx

from sextant.schemas import assignment, conditions, flags
from sextant.sdk import Client, EventValidationError

HEAVY = ("numpy", "jsonschema", "chdb", "clickhouse_connect", "scipy")

# What the collector serves a write key: the assignment fields only.
DEFINITIONS = [
    {
        "id": "checkout",
        "variants": [{"id": "control", "weight": 0.5}, {"id": "one-page", "weight": 0.5}],
        "seed": "seed",
        "hash_version": 2,
    }
]

FEATURES = {
    "features": {
        "beta": {"defaultValue": False, "rules": [{"condition": {"country": "FR"}, "force": True}]}
    }
}


def _hashes(rows: list[list[Any]]) -> list[float | None]:
    return [assignment.hash_value(seed, value, version) for seed, value, version, _ in rows]


def vectors(cases: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        "hash": _hashes(cases["hash"]),
        "getBucketRange": [
            assignment.get_bucket_ranges(*args) for _, args, _ in cases["getBucketRange"]
        ],
        "chooseVariation": [
            assignment.choose_variation(n, [(a, b) for a, b in ranges])
            for _, n, ranges, _ in cases["chooseVariation"]
        ],
        "getEqualWeights": [assignment.get_equal_weights(n) for n, _ in cases["getEqualWeights"]],
        "inNamespace": [
            assignment.in_namespace(user, (ns[0], ns[1], ns[2]))
            for _, user, ns, _ in cases["inNamespace"]
        ],
        "nonAscii": _hashes(cases["nonAscii"]),
        "evalCondition": [
            conditions.eval_condition(row[2], row[1], row[4] if len(row) > 4 else None)
            for row in cases["evalCondition"]
        ],
        "feature": [_feature(context, key) for _, context, key, _ in cases["feature"]],
    }


def _feature(context: dict[str, Any], key: str) -> list[Any]:
    result = flags.evaluate(
        context.get("features", {}),
        key,
        context.get("attributes", {}),
        saved_groups=context.get("savedGroups"),
        forced_variations=context.get("forcedVariations"),
    )
    return [result.value, result.source]


def smoke() -> dict[str, Any]:
    """Track an event and ask for a variant, with the write key alone, through a mock."""
    requests: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        raw = request.read()
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        requests.append(
            {
                "method": request.method,
                "url": str(request.url),
                "authorization": request.headers.get("authorization"),
                "body": json.loads(raw) if raw else None,
            }
        )
        if request.url.path == "/v1/experiments/definitions":
            return httpx.Response(200, json=DEFINITIONS, headers={"ETag": '"d1"'})
        if request.url.path.startswith("/api/features/"):
            return httpx.Response(200, json=FEATURES)
        accepted = len(json.loads(raw)["batch"])
        return httpx.Response(200, json={"accepted": accepted, "rejected": []})

    transport = httpx.MockTransport(handle)
    with Client(
        "wk_smoke",
        host="http://collector.test",
        client_key="sdk-smoke",
        streaming=False,
        transport=transport,
    ) as client:
        message_id = client.track("user-42", "Order Completed", {"revenue": 39.5, "café": "☕"})
        variant = client.get_variant("checkout", "😀-user")
        feature_on = [client.is_on("beta", "u", {"country": c}) for c in ("FR", "DE")]
        try:
            client.track("user-42", "")
            problems: list[str] = []
        except EventValidationError as error:
            problems = [problem.field for problem in error.problems]
        flushed = client.flush(10)
        stats = dataclasses.asdict(client.stats())
    return {
        "message_id": message_id,
        "variant": variant,
        "feature_on": feature_on,
        "invalid_track_problems": problems,
        "flushed": flushed,
        "stats": stats,
        "requests": requests,
    }


def main() -> None:
    cases = json.load(sys.stdin)
    result = {
        "vectors": vectors(cases),
        "smoke": smoke(),
        "distributions": sorted(
            dist.metadata["Name"].lower().replace("_", "-") for dist in metadata.distributions()
        ),
        "files": {
            "sextant.sdk": sys.modules["sextant.sdk"].__file__,
            "sextant.schemas": sys.modules["sextant.schemas"].__file__,
        },
        "config_module_present": importlib.util.find_spec("sextant.schemas.config") is not None,
        "heavy_modules_loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
