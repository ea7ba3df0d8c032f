"""An experiment through every part: exposures and conversions sent to the collector, first
exposures found by the processor, rows written by the sink, results from the gateway.

Units are assigned with the shared GrowthBook-compatible assignment, exactly as the SDK does.
Conversions are planted with a known effect (exactly 10 % of control units convert, exactly
14 % of treatment units), so the true lift is known and the reported interval must cover it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bench.soak import Part
from sextant.core.config_plane import ConfigPublisher
from sextant.core.settings import KafkaSection
from sextant.schemas.assignment import assign
from sextant.schemas.config import (
    ApiKey,
    Experiment,
    KeyKind,
    MetricDefinition,
    Project,
    Variant,
    hash_key,
)
from tests.infra import free_port, wait_for

WRITE, READ = "sx_write_exp_e2e_00000000000000", "sx_read_exp_e2e_000000000000000"
UNITS = 2_000
SEXTANT = str(Path(sys.executable).with_name("sextant"))
PERCENT_CONVERTING = {"control": 10, "treatment": 14}
EXPERIMENT = Experiment(
    id="checkout",
    project_id="shop",
    variants=[Variant(id="control", weight=0.5), Variant(id="treatment", weight=0.5)],
    seed="checkout-seed",
    primary_metric="orders",
)


def _publish(kafka: KafkaSection) -> None:
    publisher = ConfigPublisher(kafka)
    publisher.put(
        [
            Project(id="shop", project_id="shop", name="Shop"),
            ApiKey(id="w", project_id="shop", key_kind=KeyKind.WRITE, key_hash=hash_key(WRITE)),
            ApiKey(id="r", project_id="shop", key_kind=KeyKind.READ, key_hash=hash_key(READ)),
            MetricDefinition(id="orders", project_id="shop", metric_kind="count", event="Order"),
            EXPERIMENT,
        ]
    )
    publisher.close()


@pytest.fixture
def pipeline(kafka_settings: KafkaSection, tmp_path: Path) -> Iterator[dict[str, str]]:
    _publish(kafka_settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEXTANT_")} | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "SEXTANT_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
    }
    parts = {
        name: Part(
            name,
            [SEXTANT, name],
            env | {f"SEXTANT_{name.upper()}_PORT": str(port)},
            tmp_path / f"{name}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        for name, port in (
            ("collector", free_port()),
            ("processor", free_port()),
            ("gateway", free_port()),
        )
    }
    for part in parts.values():
        part.start()
    try:
        for part in parts.values():
            wait_for(part.ready, 120, 0.25, f"{part.name} ready")
        yield {name: part.ready_url.removesuffix("/readyz") for name, part in parts.items()}
    finally:
        for part in parts.values():
            part.stop()


def _converts(variant: str, nth_unit: int) -> bool:
    return nth_unit % 100 < PERCENT_CONVERTING[variant]


def _planted_events() -> tuple[list[dict[str, object]], dict[str, int]]:
    start = datetime.now(UTC) - timedelta(minutes=2)
    seen: dict[str, int] = {"control": 0, "treatment": 0}
    events: list[dict[str, object]] = []
    for i in range(UNITS):
        user = f"user-{i}"
        index = assign(EXPERIMENT.id, user, [0.5, 0.5], seed=EXPERIMENT.seed)
        assert index is not None
        variant = EXPERIMENT.variants[index].id
        seen[variant] += 1
        at = start + timedelta(milliseconds=i)
        events.append(
            {
                "type": "track",
                "event": "Experiment Viewed",
                "userId": user,
                "timestamp": at.isoformat(),
                "properties": {"experiment_id": EXPERIMENT.id, "variation_id": variant},
            }
        )
        # Every 100 units of a variant, exactly rate * 100 convert, a second after exposure.
        if _converts(variant, seen[variant] - 1):
            later = (at + timedelta(seconds=1)).isoformat()
            events.append({"type": "track", "event": "Order", "userId": user, "timestamp": later})
    return events, seen


def test_results_recover_a_planted_lift(pipeline: dict[str, str]) -> None:
    events, units = _planted_events()
    for chunk in range(0, len(events), 200):
        response = httpx.post(
            f"{pipeline['collector']}/v1/batch",
            json={"batch": events[chunk : chunk + 200]},
            auth=(WRITE, ""),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == []

    def complete() -> dict[str, object] | None:
        response = httpx.get(
            f"{pipeline['gateway']}/v1/experiments/{EXPERIMENT.id}/results",
            headers={"Authorization": f"Bearer {READ}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        counted = {v["id"]: v["units"] for v in body["variants"]}  # type: ignore[attr-defined]
        return body if counted == units else None

    results = wait_for(complete, 180, 1.0, "every exposure in the results")
    [primary] = [m for m in results["metrics"] if m["role"] == "primary"]  # type: ignore[attr-defined]
    means = {v["variant"]: v["mean"] for v in primary["variants"]}
    expected = {v: sum(_converts(v, u) for u in range(units[v])) / units[v] for v in units}
    assert means == pytest.approx(expected, rel=1e-9)
    [comparison] = primary["comparisons"]
    true_lift = expected["treatment"] - expected["control"]
    assert comparison["absolute"]["estimate"] == pytest.approx(true_lift, rel=1e-9)
    assert comparison["absolute"]["ci"]["low"] < true_lift < comparison["absolute"]["ci"]["high"]
    assert comparison["always_valid"]["low"] < true_lift < comparison["always_valid"]["high"]
    assert results["srm"]["flagged"] is False  # type: ignore[index]
    assert results["multi_variant_units"] == 0
