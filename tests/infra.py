"""Real infrastructure for tests: one Kafka broker per test session, polling helpers.

The broker is, in order of preference: the cluster ``SEXTANT_KAFKA_BOOTSTRAP`` names; an
``apache/kafka`` container when a Docker engine answers (testcontainers); or the project's own
local broker (``deploy/local/kafka.sh``) on a free port in a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from sextant.core.kafka import cluster_reachable
from sextant.core.settings import KafkaSection

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka.sh"
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"{message} not reached within {timeout_s}s (last value: {last!r})")


async def wait_for_async(
    probe: Callable[[], T | None],
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    message: str = "condition",
) -> T:
    """:func:`wait_for` inside an event loop: the loop keeps running between the polls."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise TimeoutError(f"{message} not reached within {timeout_s}s (last value: {last!r})")


async def wait_for_awaitable(
    probe: Callable[[], Awaitable[T | None]],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    message: str = "condition",
) -> T:
    """:func:`wait_for_async` with a probe that is itself a coroutine (an HTTP call)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise TimeoutError(f"{message} not reached within {timeout_s}s (last value: {last!r})")


def free_port() -> int:
    """A TCP port with the next one free too (the local broker's controller uses port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no free port pair")


class LocalBroker:
    """The project's own Kafka broker, as a child process that can be stopped and restarted."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        node_args: tuple[str, ...] = (),
        heap: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.node_args = node_args
        """``kafka.sh start`` options of a cluster node (``--node``, ``--voters`` …)."""
        self.heap = heap
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = data_dir / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting (a cluster's nodes wait for each other)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                "bash",
                str(KAFKA_SCRIPT),
                "start",
                "--port",
                str(self.port),
                "--data",
                str(self.data_dir),
                *self.node_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | ({"KAFKA_HEAP": self.heap} if self.heap else {}),
        )

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (for CPU accounting)."""
        return self._process.pid if self._process is not None else None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        wait_for(
            lambda: self._alive_or_raise() and cluster_reachable(self.bootstrap),
            timeout_s,
            0.25,
            f"Kafka broker on {self.bootstrap}",
        )

    def _alive_or_raise(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"broker exited: {self.log_path.read_text()[-3000:]}")
        return True

    def stop(self, kill: bool = False) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@contextlib.contextmanager
def private_kafka(data_dir: Path) -> Iterator[tuple[LocalBroker, KafkaSection]]:
    """A broker of the test's own, to stop and restart, and settings with a fresh prefix."""
    broker = LocalBroker(data_dir / "kafka")
    broker.start()
    try:
        yield (
            broker,
            KafkaSection(kafka_bootstrap=broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}"),
        )
    finally:
        broker.stop()


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def session_broker(tmp: Path) -> Iterator[tuple[str, LocalBroker | None]]:
    """Yield (bootstrap, local broker or None) for the whole test session."""
    configured = KafkaSection()
    if "kafka_bootstrap" in configured.model_fields_set:
        yield configured.kafka_bootstrap, None
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer  # only where Docker runs

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server(), None
        return
    broker = LocalBroker(tmp / "kafka")
    broker.start()
    try:
        yield broker.bootstrap, broker
    finally:
        broker.stop()
