"""The Kubernetes manifests render with kustomize (built by ``make setup`` from the Go module
proxy, ``deploy/local/kustomize.sh``) and hold what scaling out needs: resource requests on
every workload, CPU autoscaling for the HTTP parts, lag autoscaling for the consumers (the
optional KEDA component), and a disruption budget for every part."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from sextant.processor.settings import ProcessorSettings
from sextant.schemas.topics import Topic, topic_name
from sextant.sink.settings import SinkSettings

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "local" / "kustomize.sh"
OVERLAYS = ("base", "overlays/production", "overlays/production-keda")
PARTS = ("collector", "processor", "sink", "gateway", "notifier")


@cache
def render(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["bash", str(KUSTOMIZE), "build", str(ROOT / "deploy" / "k8s" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_requests_cpu_and_memory(overlay: str) -> None:
    deployments = of_kind(render(overlay), "Deployment")
    assert set(deployments) == {f"sextant-{p}" for p in PARTS}
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), name
            assert "memory" in container["resources"]["limits"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_parts_scale_on_cpu_and_every_part_has_a_disruption_budget(overlay: str) -> None:
    documents = render(overlay)
    scalers = of_kind(documents, "HorizontalPodAutoscaler")
    assert set(scalers) == {"sextant-collector", "sextant-gateway"}
    for scaler in scalers.values():
        (metric,) = scaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert scaler["spec"]["minReplicas"] >= 2
    budgets = of_kind(documents, "PodDisruptionBudget")
    assert set(budgets) == {f"sextant-{p}" for p in PARTS}
    for name, budget in budgets.items():
        assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_consumers_scale_on_lag_only_with_the_keda_component() -> None:
    assert of_kind(render("overlays/production"), "ScaledObject") == {}
    scaled = of_kind(render("overlays/production-keda"), "ScaledObject")
    assert set(scaled) == {"sextant-processor", "sextant-sink"}
    processor = scaled["sextant-processor"]["spec"]["triggers"][0]
    sink = scaled["sextant-sink"]["spec"]["triggers"][0]
    assert processor["type"] == sink["type"] == "kafka"
    # The groups and topic the parts use by default (prefix `sextant`).
    assert processor["metadata"]["consumerGroup"] == ProcessorSettings().app_id
    assert processor["metadata"]["topic"] == topic_name(Topic.EVENTS_RAW)
    assert sink["metadata"]["consumerGroup"] == SinkSettings().group_id
    for scaler in scaled.values():
        # More consumers than partitions would idle.
        assert scaler["spec"]["maxReplicaCount"] <= 12


def test_no_secret_is_rendered() -> None:
    for overlay in OVERLAYS:
        assert of_kind(render(overlay), "Secret") == {}
