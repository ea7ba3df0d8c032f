"""The process supervisor behind ``make run``: Kafka, topics, migrations, demo config, every part.

Each part runs as its own process (``sextant <part>``), its output prefixed with its name. A
part that exits unexpectedly is restarted with a backoff. Once every part is ready, the demo
shop's traffic starts (``deploy/local/demo_traffic.py``: history, live visitors, an outage,
survey answers, and the webhook receiver the demo's alert rule delivers to) unless
``--no-traffic`` is given (``make run DEMO_TRAFFIC=off``). Ctrl-C stops the parts, then
Kafka, gracefully; data stays in ``.local/`` for the next run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape

from sextant.cli.settings import CliSettings
from sextant.core.config_file import ConfigFile, documents_from_file, load_config_file
from sextant.core.config_plane import ConfigPublisher
from sextant.core.kafka import cluster_reachable, ensure_topics
from sextant.core.secrets import SecretBox, generate_secret_key, seal_documents

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "config" / "demo.yaml"
SECRET_KEY_FILE = ROOT / ".local" / "secret-key"
READY_TIMEOUT_S = 90.0
console = Console(highlight=False)


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.started_at = time.monotonic()
        threading.Thread(target=self._relay, daemon=True).start()

    def _relay(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            console.print(f"[dim]{self.name:>9} |[/dim] {escape(line)}", soft_wrap=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _sextant(*args: str) -> list[str]:
    return [sys.executable, "-m", "sextant.cli.main", *args]


def _wait(predicate: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise SystemExit(f"{what} was not ready within {timeout_s:.0f}s")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _parts(settings: CliSettings) -> list[Child]:
    embedded = settings.clickhouse_url.startswith("chdb:")
    parts = [
        Child("collector", _sextant("collector"), "http://127.0.0.1:8080/readyz"),
        Child("processor", _sextant("processor"), "http://127.0.0.1:8083/readyz"),
        Child("gateway", _sextant("gateway"), "http://127.0.0.1:8081/readyz"),
        Child("notifier", _sextant("notifier"), "http://127.0.0.1:8084/readyz"),
    ]
    if not embedded:  # with a server the sink is its own deployment
        parts.append(Child("sink", _sextant("sink"), "http://127.0.0.1:8082/readyz"))
    return parts


RECEIVER_PORT = 8099


def _traffic(config: ConfigFile) -> Child:
    """The demo shop's traffic and the local webhook receiver, as a child process."""
    project = config.projects[0]
    secrets = {key.kind.value: key.secret for key in project.keys}
    webhook_secret = ""
    for rule in project.alert_rules:
        for target in rule.get("targets", []):
            webhook_secret = webhook_secret or str(target.get("secret", ""))
    return Child(
        "demo",
        [
            sys.executable,
            str(ROOT / "deploy" / "local" / "demo_traffic.py"),
            "--write-key",
            secrets.get("write", ""),
            "--read-key",
            secrets.get("read", ""),
            "--receiver-port",
            str(RECEIVER_PORT),
            "--webhook-secret",
            webhook_secret,
        ],
    )


def _banner(config: ConfigFile, settings: CliSettings, embedded: bool, traffic: bool) -> None:
    project = config.projects[0]
    secrets = {key.kind.value: key.secret for key in project.keys}
    admin = config.admin_keys[0].secret if config.admin_keys else "(none)"
    body = '{"userId":"user-1","event":"Signed Up","properties":{"plan":"pro"}}'
    origins = ", ".join((project.model_extra or {}).get("allowed_origins", [])) or "(none)"
    sink = (
        "  sink       inside the gateway (embedded warehouse)\n"
        if embedded
        else "  sink       http://127.0.0.1:8082  health and /metrics\n"
    )
    demo = (
        f"  webhooks   http://127.0.0.1:{RECEIVER_PORT}/webhooks/sextant  the demo's receiver: "
        "alert deliveries are printed as `demo | webhook received`\n"
        "  traffic    the demo shop: 14 days of history, then live visitors, an experiment, "
        "a payment outage every 20 min (make run DEMO_TRAFFIC=off turns it off)\n"
        if traffic
        else "  traffic    off (no demo traffic)\n"
    )
    console.print(
        "\n[bold green]Sextant is running[/bold green] (Ctrl-C stops it)\n"
        "  workspace  http://127.0.0.1:8081/  sign in with the read key (and the admin key)\n"
        "  gateway    http://127.0.0.1:8081  read and admin API, docs at /docs\n"
        "  collector  http://127.0.0.1:8080  Segment and PostHog compatible ingestion\n"
        "  processor  http://127.0.0.1:8083  health and /metrics\n"
        f"{sink}"
        "  notifier   http://127.0.0.1:8084  signed webhooks; delivery log at /deliveries\n"
        f"  kafka      {settings.kafka_bootstrap}\n"
        f"  warehouse  {settings.clickhouse_url}\n"
        f"{demo}"
        f"  project    {project.id} ({project.name}); pages on {origins} may send from the "
        "browser (sdk/js/dist/sextant.min.js)\n"
        f"  write key  {secrets.get('write', '(none)')}\n"
        f"  read key   {secrets.get('read', '(none)')}\n"
        f"  admin key  {admin}\n"
        "  send an event:\n"
        f"    curl -u {secrets.get('write', '')}: -H 'Content-Type: application/json' "
        f"http://127.0.0.1:8080/v1/track -d '{body}'\n",
        markup=True,
        soft_wrap=True,  # the curl line must stay one line to be copied
    )


class Supervisor:
    def __init__(self, settings: CliSettings, traffic: bool = True) -> None:
        self.settings = settings
        self.kafka: Child | None = None
        self.parts = _parts(settings)
        self.traffic = traffic
        self.stopping = threading.Event()

    def prepare(self) -> ConfigFile:
        if "kafka_bootstrap" not in self.settings.model_fields_set:
            self.kafka = Child("kafka", ["bash", str(ROOT / "deploy/local/kafka.sh"), "start"])
            self.kafka.start()
        _wait(lambda: cluster_reachable(self.settings.kafka_bootstrap), "Kafka")
        created = ensure_topics(self.settings)
        console.print(f"topics: {len(created)} created")
        subprocess.run(_sextant("migrate"), check=True, cwd=ROOT)
        config = load_config_file(DEMO)
        box = SecretBox.from_setting(self.settings.secret_key)
        publisher = ConfigPublisher(self.settings)
        try:
            publisher.put(seal_documents(documents_from_file(config), box))
        finally:
            publisher.close()
        return config

    def run(self) -> None:
        config = self.prepare()
        for part in self.parts:
            part.start()
        for part in self.parts:
            if part.ready_url:
                _wait(partial(_ready, part.ready_url), part.name)
        embedded = self.settings.clickhouse_url.startswith("chdb:")
        _banner(config, self.settings, embedded, self.traffic)
        if self.traffic:
            demo = _traffic(config)
            demo.start()
            self.parts.append(demo)
        while not self.stopping.wait(1.0):
            self._restart_dead()

    def _restart_dead(self) -> None:
        for part in self.parts:
            if not part.alive() and not self.stopping.is_set():
                part.restarts += 1
                backoff = min(30.0, 2.0**part.restarts)
                console.print(f"[red]{part.name} exited; restarting in {backoff:.0f}s[/red]")
                if self.stopping.wait(backoff):
                    return
                part.start()

    def stop(self) -> None:
        self.stopping.set()
        for part in self.parts:  # all at once: each shuts down in parallel
            part.terminate()
        for part in reversed(self.parts):
            part.stop()
        if self.kafka is not None:
            self.kafka.stop(timeout_s=60)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _local_secret_key() -> str:
    """The master key of local runs: made once, kept in ``.local/`` (readable by its owner
    only), so what one run sealed the next one opens."""
    if not SECRET_KEY_FILE.exists():
        SECRET_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        SECRET_KEY_FILE.touch(mode=0o600)
        SECRET_KEY_FILE.write_text(generate_secret_key() + "\n")
    return SECRET_KEY_FILE.read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Sextant locally with the demo project.")
    parser.add_argument(
        "--no-traffic", action="store_true", help="do not start the demo shop's traffic"
    )
    args = parser.parse_args()
    # A local run on loopback, with the demo project and its public keys: the parts refuse
    # those keys unless told that this is a demo. The children inherit the variables.
    os.environ["SEXTANT_DEMO"] = "true"
    # The demo's alert rule delivers to a receiver on this machine: local runs only.
    os.environ["SEXTANT_WEBHOOK_ALLOW_LOOPBACK"] = "true"
    if CliSettings().secret_key is None:
        os.environ["SEXTANT_SECRET_KEY"] = _local_secret_key()
    supervisor = Supervisor(CliSettings(), traffic=not args.no_traffic)
    # Ctrl-C and SIGTERM stop everything, whatever the supervisor is waiting for; installed
    # explicitly because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        supervisor.run()
    except KeyboardInterrupt:
        pass
    finally:
        # A terminal's Ctrl-C reaches every process of the group, and `uv run` forwards it
        # again: once stopping has begun, further signals must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        console.print("stopping Sextant…")
        supervisor.stop()


if __name__ == "__main__":
    main()
