"""Fakes for the SDK's unit tests: a scriptable collector and gateway, and a clock."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

Step = int | tuple[int, dict[str, str]] | Exception
"""A scripted answer: a status, a status with headers, or an exception to raise."""


@dataclass(frozen=True)
class Seen:
    """One request the fake collector received, decoded."""

    path: str
    headers: httpx.Headers
    body: dict[str, Any]
    raw_size: int
    thread: str

    @property
    def batch(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.body["batch"]
        return events


class FakeServer:
    """Answers ``/v1/batch`` (scripted, then 200) and ``/v1/experiments/definitions`` (the
    collector's or the gateway's: ``definitions``, after ``definition_script``)."""

    def __init__(self, script: Iterable[Step] = ()) -> None:
        self.script = list(script)
        self.requests: list[Seen] = []
        self.answers: list[int] = []
        self.definitions: list[dict[str, Any]] = []
        self.definition_script: list[Step] = []
        self.definition_requests: list[httpx.Request] = []
        self.gate = threading.Event()
        self.gate.set()
        self.reject: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/experiments/definitions":
            return self._definitions(request)
        self.gate.wait(30)
        raw = request.read()
        content = gzip.decompress(raw) if request.headers.get("content-encoding") == "gzip" else raw
        seen = Seen(
            request.url.path,
            request.headers,
            orjson.loads(content),
            len(content),
            threading.current_thread().name,
        )
        with self._lock:
            step = self.script.pop(0) if self.script else 200
            status, headers = (-1, {}) if isinstance(step, Exception) else _status(step)
            self.requests.append(seen)
            self.answers.append(status)
        if isinstance(step, Exception):
            raise step
        if status != 200:
            return httpx.Response(status, headers=headers, json={"detail": "scripted failure"})
        rejected = self.reject(seen.batch) if self.reject else []
        accepted = len(seen.batch) - len(rejected)
        return httpx.Response(200, json={"accepted": accepted, "rejected": rejected})

    def _definitions(self, request: httpx.Request) -> httpx.Response:
        self.definition_requests.append(request)
        step = self.definition_script.pop(0) if self.definition_script else 200
        if isinstance(step, Exception):
            raise step
        status, headers = _status(step)
        if status != 200:
            return httpx.Response(status, headers=headers)
        return httpx.Response(200, headers=headers, content=orjson.dumps(self.definitions))

    def delivered(self) -> list[dict[str, Any]]:
        """Events of the requests answered 200, in arrival order."""
        return [
            event
            for seen, status in zip(self.requests, self.answers, strict=False)
            if status == 200
            for event in seen.batch
        ]


def _status(step: int | tuple[int, dict[str, str]]) -> tuple[int, dict[str, str]]:
    return step if isinstance(step, tuple) else (step, {})


class FakeClock:
    """Time that moves only when the client sleeps, so retry tests never wait."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float, interrupt: threading.Event) -> bool:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        return not interrupt.is_set()
