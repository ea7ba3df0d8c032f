"""The collector's Prometheus metrics, on a registry of each app's own.

With several worker processes the values live in files shared by the workers
(prometheus_client's multiprocess mode), and a scrape of any worker adds them all up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "sextant_collector_events",
            "Events taken, by outcome (accepted, rejected, flagged) and reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "sextant_collector_requests",
            "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "sextant_collector_request_seconds",
            "Time from a request's arrival to its answer",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.produce_seconds = Histogram(
            "sextant_collector_produce_seconds",
            "Time Kafka took to acknowledge one request's records",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "sextant_collector_batch_events",
            "Events per request",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.origin_refusals = Counter(
            "sextant_collector_origin_refusals",
            "Browser requests refused because no project (or not the key's) allows the page's "
            "origin, by origin (the first 100 distinct origins; later ones as 'other')",
            ["origin"],
            registry=registry,
        )
        self.suppressed = Counter(
            "sextant_collector_suppressed_events",
            "Events dropped because their person asked to be forgotten (not stored anywhere)",
            ["project"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "sextant_collector_in_flight_requests",
            "Requests being handled now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.buffered_bytes = Gauge(
            "sextant_collector_producer_buffered_bytes",
            "Bytes handed to the producer and not yet acknowledged by Kafka",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        """One request answered (its labelled series are looked up once, then kept: the
        client library's ``labels()`` costs as much as the rest of the bookkeeping)."""
        self._child(self.requests, endpoint, str(status)).inc()
        self._child(self.request_seconds, endpoint).observe(seconds)

    def counted(self, outcome: str, reason: str, events: int) -> None:
        self._child(self.events, outcome, reason).inc(events)

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def scrape_registry(own: CollectorRegistry, shared_metrics: Path | None) -> CollectorRegistry:
    """What ``/metrics`` reports: this process's registry, or every worker's shared values."""
    if shared_metrics is None:
        return own
    every_worker = CollectorRegistry()
    MultiProcessCollector(every_worker, path=str(shared_metrics))  # type: ignore[no-untyped-call]
    return every_worker
