"""``sextant gateway`` as a process refuses to start while the public demo keys are active,
unless ``SEXTANT_DEMO=true``; once they are revoked it starts without it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

from sextant.cli.main import app as cli
from sextant.core.config_file import documents_from_file, load_config_file
from sextant.core.config_plane import ConfigPublisher
from sextant.core.settings import KafkaSection
from tests.infra import free_port, wait_for

SEXTANT = Path(sys.executable).with_name("sextant")
DEMO = Path(__file__).resolve().parents[2] / "deploy" / "config" / "demo.yaml"
DEMO_ADMIN = "sx_admin_demo_0000000000000000"


def gateway_env(kafka: KafkaSection, tmp_path: Path, port: int, demo: bool) -> dict[str, str]:
    return os.environ | {
        "SEXTANT_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "SEXTANT_TOPIC_PREFIX": kafka.topic_prefix,
        "SEXTANT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}?database=demo_guard",
        "SEXTANT_GATEWAY_PORT": str(port),
        "SEXTANT_DEMO": "true" if demo else "false",
    }


@contextmanager
def gateway(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [str(SEXTANT), "gateway"], env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serves(process: subprocess.Popen[bytes], port: int, log_path: Path) -> bool:
    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    return wait_for(ready, 90, 0.25, "gateway ready")


def test_the_gateway_refuses_the_demo_keys_unless_told_it_is_a_demo(
    kafka_settings: KafkaSection, tmp_path: Path
) -> None:
    publisher = ConfigPublisher(kafka_settings)
    try:
        publisher.put(documents_from_file(load_config_file(DEMO)))
    finally:
        publisher.close()
    port = free_port()

    refused_log = tmp_path / "refused.log"
    with gateway(gateway_env(kafka_settings, tmp_path, port, demo=False), refused_log) as process:
        code = process.wait(timeout=90)
    output = refused_log.read_text()
    assert code != 0, output
    assert "the gateway refuses to start" in output
    assert "api_key:*:demo-admin" in output
    assert "SEXTANT_DEMO=true" in output
    assert "sextant config revoke-demo" in output
    assert DEMO_ADMIN not in output

    demo_log = tmp_path / "demo.log"
    with gateway(gateway_env(kafka_settings, tmp_path, port, demo=True), demo_log) as process:
        assert serves(process, port, demo_log)
        projects = httpx.get(
            f"http://127.0.0.1:{port}/v1/admin/projects",
            headers={"Authorization": f"Bearer {DEMO_ADMIN}"},
        )
        assert projects.status_code == 200, projects.text
        assert [p["id"] for p in projects.json()["items"]] == ["demo"]

    revoked = CliRunner().invoke(
        cli,
        ["config", "revoke-demo"],
        env={
            "SEXTANT_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
            "SEXTANT_TOPIC_PREFIX": kafka_settings.topic_prefix,
        },
    )
    assert revoked.exit_code == 0, revoked.output
    assert "demo-admin" in revoked.output

    after_log = tmp_path / "after.log"
    with gateway(gateway_env(kafka_settings, tmp_path, port, demo=False), after_log) as process:
        assert serves(process, port, after_log)
        denied = httpx.get(
            f"http://127.0.0.1:{port}/v1/admin/projects",
            headers={"Authorization": f"Bearer {DEMO_ADMIN}"},
        )
        assert denied.status_code == 401
