"""The notifier's one settings class (environment variables ``SEXTANT_<FIELD>``)."""

from __future__ import annotations

from pydantic import Field

from sextant.core.settings import KafkaSection, SecretsSection, ServiceSection


class NotifierSettings(KafkaSection, ServiceSection, SecretsSection):
    notifier_port: int = 8084
    notifier_group: str = "sextant-notifier"
    """Consumer group on the alerts topic; replicas share the partitions."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    """Per attempt: connect, send and read the answer."""
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_backoff_base_seconds: float = Field(default=1.0, gt=0)
    """Retry ``n`` waits a random time in ``[0, min(max, base * 2^(n-1))]`` (full jitter)."""
    webhook_backoff_max_seconds: float = Field(default=60.0, gt=0)
    webhook_refuse_private: bool = True
    """Refuse targets whose host resolves to a private, link-local, loopback or reserved
    address (so a rule cannot make the notifier probe the internal network)."""
    webhook_allow_loopback: bool = False
    """Allow loopback targets even when private ones are refused (local runs, tests)."""
    delivery_log_size: int = Field(default=1000, ge=1)
    """Deliveries kept in memory for ``GET /deliveries``."""
    dedupe_size: int = Field(default=100_000, ge=1)
    """Transition ids remembered, so a repeated transition is delivered once."""
