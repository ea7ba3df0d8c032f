"""What the alerting integration tests share: a webhook receiver on loopback and a notifier.

The receiver is a plain ``http.server`` in a thread: it can fail its first requests, keeps
every request it got, and processes a delivery once per ``Idempotency-Key``, as a receiver
following the notifier's contract does. This module holds no tests.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from sextant.core.secrets import SecretBox, generate_secret_key
from sextant.core.settings import KafkaSection
from sextant.notifier.app import create_app
from sextant.notifier.settings import NotifierSettings
from tests.infra import wait_for

SECRET = "whsec_test_0123456789"
MASTER_KEY = generate_secret_key()
BOX = SecretBox([MASTER_KEY])
"""The master key of these tests' notifiers: rules carry ``BOX.seal(SECRET)``, as the
admin API and ``sextant config apply`` store them."""


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint: ``fail_first`` requests are answered 503, then 200."""

    fail_first: int = 0
    requests: list[Request] = field(default_factory=list)
    processed: dict[str, Request] = field(default_factory=dict)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) <= self.fail_first:
                return 503
            key = request.headers.get("idempotency-key", "")
            self.processed.setdefault(key, request)  # a repeat of a key is acknowledged only
            return 200

    def transitions(self) -> list[dict[str, Any]]:
        """The transitions processed (once per idempotency key), in arrival order."""
        with self._lock:
            return [r.json()["transition"] for r in self.processed.values()]


@contextlib.contextmanager
def receiver(fail_first: int = 0) -> Iterator[Receiver]:
    target = Receiver(fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = target.take(Request(headers, body))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    target.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/sextant"
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def notifier_settings(kafka: KafkaSection, **overrides: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka.kafka_bootstrap,
        "topic_prefix": kafka.topic_prefix,
        "notifier_group": f"{kafka.topic_prefix}-notifier",
        "webhook_allow_loopback": True,
        "webhook_backoff_base_seconds": 0.05,
        "webhook_backoff_max_seconds": 0.2,
        "webhook_timeout_seconds": 5,
        "secret_key": MASTER_KEY,
    }
    return NotifierSettings(**(values | overrides))


@contextlib.contextmanager
def serve(app: FastAPI, name: str) -> Iterator[httpx.Client]:
    """Serve ``app`` (lifespan included) with uvicorn on a free loopback port."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, message=f"{name} started")
        if not server.started:
            raise RuntimeError(f"{name} did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def notifier(kafka: KafkaSection, **overrides: Any) -> Iterator[httpx.Client]:
    """The notifier serving on loopback: config follower and consumer running."""
    with serve(create_app(notifier_settings(kafka, **overrides)), "notifier") as client:
        yield client
