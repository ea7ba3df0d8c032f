"""A broker killed and restarted under load: every acknowledged event is in the topic, requests
fail fast with 503 while it is down, and the collector recovers by itself."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from sextant.core.kafka import ensure_topics
from sextant.schemas.topics import Topic
from tests.infra import private_kafka, wait_for
from tests.integration.test_collector_kafka import (
    WRITE_KEY,
    publish_demo_project,
    running_collector,
    topic_records,
)

BATCH = 20
SENDERS = 4


@dataclass
class Load:
    """Senders posting batches of unique events until told to stop; what was acknowledged."""

    url: str
    acknowledged: set[str] = field(default_factory=set)
    statuses: list[tuple[float, int, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def run(self) -> None:
        auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        with httpx.Client(timeout=30, headers={"Authorization": f"Basic {auth}"}) as client:
            while not self.stop.is_set():
                ids = [f"e{next(self.counter)}" for _ in range(BATCH)]
                batch = [
                    {"type": "track", "event": "Tick", "userId": f"u{i[-2:]}", "messageId": i}
                    for i in ids
                ]
                started = time.monotonic()
                try:
                    status = client.post(f"{self.url}/v1/batch", json={"batch": batch}).status_code
                except httpx.TransportError:
                    status = 0
                with self.lock:
                    self.statuses.append((started, status, time.monotonic() - started))
                    if status == 200:
                        self.acknowledged.update(ids)
                if status != 200:
                    self.stop.wait(0.05)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def statuses_since(self, moment: float) -> list[tuple[int, float]]:
        with self.lock:
            return [(s, d) for t, s, d in self.statuses if t >= moment]


def _readiness(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_no_acknowledged_event_is_lost_across_a_broker_restart(tmp_path: Path) -> None:
    with private_kafka(tmp_path) as (broker, settings):
        ensure_topics(settings, partitions=3)
        publish_demo_project(settings)
        with running_collector(settings, produce_timeout_seconds=1.0) as collector:
            load = Load(collector.url)
            senders = [threading.Thread(target=load.run) for _ in range(SENDERS)]
            for sender in senders:
                sender.start()
            try:
                wait_for(lambda: load.acked_count() >= 2_000, 60, message="load running")
                broker.stop(kill=True)
                down_since = time.monotonic()
                wait_for(
                    lambda: sum(s == 503 for s, _ in load.statuses_since(down_since)) >= 10,
                    30,
                    message="503s while the broker is down",
                )
                failures = [d for s, d in load.statuses_since(down_since) if s == 503]
                wait_for(lambda: _readiness(collector.url) == 503, 30, message="/readyz fails")
                broker.start()
                wait_for(lambda: _readiness(collector.url) == 200, 60, message="/readyz passes")
                up_since = time.monotonic()
                acked_before = load.acked_count()
                wait_for(
                    lambda: load.acked_count() >= acked_before + 2_000,
                    90,
                    message="acknowledgements again after the restart",
                )
            finally:
                load.stop.set()
                for sender in senders:
                    sender.join(timeout=60)
            during_outage = load.statuses_since(down_since)
        assert max(failures) < 3.0, "503 must come within the produce timeout, not hang"
        assert all(s in (200, 503) for s, _ in during_outage), {s for s, _ in during_outage}
        assert any(s == 200 for s, _ in load.statuses_since(up_since))
        present = {
            orjson.loads(r.value or b"")["messageId"]
            for r in topic_records(settings, Topic.EVENTS_RAW)
        }
        lost = load.acknowledged - present
        assert not lost, f"{len(lost)} of {len(load.acknowledged)} acknowledged events lost"
