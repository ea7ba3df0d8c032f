"""The collector's one settings class (environment variables ``SEXTANT_<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from sextant.core.settings import KafkaSection, SecretsSection, ServiceSection

KIB = 1024


class CollectorSettings(KafkaSection, ServiceSection, SecretsSection):
    collector_port: int = 8080
    collector_workers: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes; each has its own producer, config follower and rate limiter."""
    collector_shared_dir: Path | None = None
    """Where worker processes share their Prometheus metrics (a scrape of any one reports the
    whole collector) and their rate-limit buckets (a key gets its whole rate whichever worker
    it reaches). ``sextant collector`` passes it to its workers: a private temporary directory
    unless set here, emptied at start. With one process, not used."""
    max_batch_bytes: int = Field(default=500 * KIB, gt=0)
    """Largest request body, on the wire and again after gzip inflation (Segment: 500 KB)."""
    max_event_bytes: int = Field(default=32 * KIB, gt=0)
    """Largest single event, as JSON (Segment: 32 KB)."""
    produce_timeout_seconds: float = Field(default=2.0, gt=0)
    """How long a request waits for Kafka's acknowledgement before it is answered 503."""
    retry_after_seconds: int = Field(default=5, ge=1)
    """The ``Retry-After`` of a 503 (Kafka unavailable)."""
    producer_linger_ms: float = Field(default=2.0, ge=0)
    producer_batch_bytes: int = Field(default=256 * KIB, ge=64 * KIB)
    producer_buffer_bytes: int = Field(default=32 * 1024 * KIB, gt=0)
    """Bytes waiting for Kafka beyond which requests are refused at once with 503."""
    producer_compression: Literal["lz4", "zstd", "gzip", "snappy", "none"] = "zstd"
    trust_forwarded_for: bool = False
    """Take the client IP from ``X-Forwarded-For`` (only behind a proxy that sets it), and
    the public scheme and host from ``X-Forwarded-Proto`` / ``X-Forwarded-Host``."""
    collector_public_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    """The address clients reach the collector at (``https://collect.example.com``), written
    into the settings analytics-next fetches; by default the address each request came to."""
    feature_stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    """How often an idle feature stream (``/sub/{clientKey}``) sends a comment, so proxies
    and clients keep the connection open."""
