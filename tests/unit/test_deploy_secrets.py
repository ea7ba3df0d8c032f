"""No well-known secret reaches a deployment: ``docker-compose.yml`` and the Kubernetes
manifests hold no literal secret and publish no port on every interface without an opt-in.

Read as YAML (no engine needed). A value counts as a secret when its variable's name says so
(password, secret, token, key) or it is the password of a URL; such a value must come from
outside, as a compose variable without a default (``${VAR:?message}``: compose refuses to
start without it) or, in Kubernetes, from a Secret the operator creates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sextant.core.config_file import load_config_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
DEMO = ROOT / "deploy" / "config" / "demo.yaml"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$|CREDENTIAL", re.IGNORECASE)
REQUIRED = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*:\?[^}]+\}$")
"""A compose variable without a default, with the message compose shows when it is unset."""
LOOPBACK_OR_OPT_IN = re.compile(r"^(127\.0\.0\.1|\$\{SEXTANT_BIND:-127\.0\.0\.1\}):\d+:\d+$")
WELL_KNOWN = ("change-me", "changeme", "sextant:sextant@")


def demo_secrets() -> list[str]:
    config = load_config_file(DEMO)
    return [k.secret for k in config.admin_keys] + [
        k.secret for p in config.projects for k in p.keys
    ]


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def secret_problems(name: str, value: str, allowed: re.Pattern[str]) -> list[str]:
    """What is wrong with ``name=value`` as far as secrets go."""
    problems = []
    if SECRET_NAME.search(name) and not allowed.match(value):
        problems.append(f"{name} is a literal, not a required reference")
    if "://" in value:
        password = urlsplit(value).password
        if password is not None and not allowed.match(password):
            problems.append(f"{name} carries a literal password in its URL")
    return problems


def is_demo(service: dict[str, Any]) -> bool:
    return "demo" in (service.get("profiles") or [])


def test_the_compose_file_holds_no_literal_secret() -> None:
    text = COMPOSE.read_text()
    for known in WELL_KNOWN:
        assert known not in text.lower(), known
    problems = []
    for name, service in compose_services().items():
        for variable, value in environment(service).items():
            problems += [f"{name}: {p}" for p in secret_problems(variable, value, REQUIRED)]
    assert problems == []


def test_the_demo_keys_and_demo_mode_live_in_the_demo_profile_only() -> None:
    secrets = demo_secrets()
    services = compose_services()
    demo = [name for name, service in services.items() if is_demo(service)]
    assert demo, "the demo profile is gone"
    for name, service in services.items():
        dumped = yaml.safe_dump(service)
        if is_demo(service):
            assert environment(service).get("SEXTANT_DEMO") == "true", name
            continue
        assert "demo.yaml" not in dumped, name
        assert not any(secret in dumped for secret in secrets), name
        assert environment(service).get("SEXTANT_DEMO", "false") == "false", name


def test_compose_publishes_ports_on_loopback_unless_the_user_opts_in() -> None:
    published = 0
    for name, service in compose_services().items():
        for port in service.get("ports") or []:
            published += 1
            assert isinstance(port, str), f"{name}: write ports as HOST_IP:HOST:CONTAINER"
            assert LOOPBACK_OR_OPT_IN.match(port), f"{name} publishes {port}"
            if is_demo(service):
                assert port.startswith("127.0.0.1:"), f"{name}: the demo stays on loopback"
    assert published >= 4


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        documents += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_the_kubernetes_manifests_hold_no_literal_secret() -> None:
    never = re.compile(r"^$")  # Kubernetes has no required reference: a secret comes from a Secret
    secrets = demo_secrets()
    problems = []
    for path, document in k8s_documents():
        where = path.relative_to(ROOT)
        text = yaml.safe_dump(document).lower()
        problems += [f"{where}: {known}" for known in WELL_KNOWN if known in text]
        problems += [f"{where}: a demo key" for s in secrets if s.lower() in text]
        if document.get("kind") == "Kustomization":
            for generator in document.get("secretGenerator", []):
                problems += [f"{where}: secret literals" for _ in generator.get("literals", [])]
            for generator in document.get("configMapGenerator", []):
                for literal in generator.get("literals", []):
                    name, _, value = literal.partition("=")
                    problems += [f"{where}: {p}" for p in secret_problems(name, value, never)]
        if document.get("kind") == "Secret":
            problems.append(f"{where}: a Secret with its values")
        for container in _containers(document):
            for variable in container.get("env", []):
                if "value" in variable:
                    found = secret_problems(variable["name"], str(variable["value"]), never)
                    problems += [f"{where}: {p}" for p in found]
                if variable["name"] == "SEXTANT_DEMO":
                    problems.append(f"{where}: SEXTANT_DEMO outside a local demo")
    assert problems == []


def test_the_kubernetes_manifests_expose_nothing_on_the_nodes() -> None:
    for path, document in k8s_documents():
        where = path.relative_to(ROOT)
        if document.get("kind") == "Service":
            assert document["spec"].get("type", "ClusterIP") == "ClusterIP", where
        pod = _pod_spec(document)
        assert not pod.get("hostNetwork", False), where
        for container in _containers(document):
            for port in container.get("ports", []):
                assert "hostPort" not in port, where


def test_the_workloads_read_their_secrets_from_the_secret_the_operator_creates() -> None:
    workloads = [(p, d) for p, d in k8s_documents() if _containers(d)]
    assert workloads
    for path, document in workloads:
        for container in _containers(document):
            refs = [
                s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
            ]
            assert refs == ["sextant"], path


@pytest.mark.parametrize("ignore_file", [".gitignore", ".dockerignore"])
def test_the_env_file_is_neither_committed_nor_copied_into_images(ignore_file: str) -> None:
    assert ".env" in (ROOT / ignore_file).read_text().splitlines()


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec = document.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return dict((template or {}).get("spec") or {})


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    pod = _pod_spec(document)
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))
