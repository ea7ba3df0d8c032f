"""The sink's one settings class: ``SEXTANT_<FIELD>`` environment variables."""

from __future__ import annotations

from pydantic import Field

from sextant.core.settings import ClickHouseSection, KafkaSection, ServiceSection


class SinkSettings(KafkaSection, ClickHouseSection, ServiceSection):
    """Where the sink listens, how it batches, and how it waits for the warehouse."""

    sink_port: int = 8082
    sink_group_id: str | None = None
    """Consumer group; by default ``<topic_prefix>.sink``. Sinks in one group share partitions."""
    sink_instance_id: str | None = None
    """Static group membership (e.g. the pod name): a restarted sink gets its partitions back
    at once instead of after the session timeout. Unique per running sink."""
    sink_session_timeout_ms: int = Field(default=10_000, ge=6_000)
    sink_batch_rows: int = Field(default=50_000, gt=0)
    """A batch is written when it holds this many records ..."""
    sink_batch_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    """... or this many bytes of record values ..."""
    sink_batch_seconds: float = Field(default=1.0, gt=0)
    """... or its first record has waited this long ..."""
    sink_live_batch_seconds: float = Field(default=0.1, gt=0)
    """Metric points, alerts and the other tables dashboards read live are written once the
    first of them has waited this long, on their own: the events keep waiting for the limits
    above, so a trickle of events is inserted about once a second, not at every live write."""
    sink_fetch_min_bytes: int = Field(default=64 * 1024, ge=1)
    """The broker answers a fetch once it has this many bytes for the sink ..."""
    sink_fetch_max_wait_ms: int = Field(default=50, ge=0)
    """... or has waited this long. Fewer, fuller fetches: at 5,000 events/s the sink's
    consumer then polls about 10 times a second instead of about 150 (`bench.consumer_fetch`:
    the process following it, producer included, 43 % of a core instead of 62 %);
    a record waits at most this much longer."""
    sink_retry_initial_seconds: float = Field(default=0.2, gt=0)
    """First wait after the warehouse or Kafka failed; doubles up to the maximum."""
    sink_retry_max_seconds: float = Field(default=10.0, gt=0)
    sink_health_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the consumer lag is measured and an idle warehouse is pinged."""
    sink_retention_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often raw events past their project's ``raw_event_retention_days`` are deleted."""
    sink_deletion_interval_seconds: float = Field(default=10.0, gt=0)
    """How often requested deletions of persons are looked for and carried out."""
    sink_person_squash_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often person overrides are written onto the events (``sextant.sink.squash``), so
    person-aware queries join only the overrides newer than the last squash."""
    sink_person_recount_interval_seconds: float = Field(default=60.0, gt=0)
    """How often, between squash rounds, the closed unique-users and conversion windows of
    ids linked lately are counted again by person (``sextant.sink.corrections.recount``)."""
    sink_migrate: bool = True
    """Apply pending warehouse migrations at start."""

    @property
    def group_id(self) -> str:
        return self.sink_group_id or f"{self.topic_prefix}.sink"
