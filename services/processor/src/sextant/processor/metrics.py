"""The processor's Prometheus figures, on a registry of their own per processor instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class ProcessorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "sextant_processor_events", "Events applied to metrics and exposures", registry=r
        )
        self.duplicates = Counter(
            "sextant_processor_duplicate_events",
            "Client retries dropped by messageId within the dedup window",
            registry=r,
        )
        self.invalid = Counter(
            "sextant_processor_unreadable_events", "Records that are not envelopes", registry=r
        )
        self.late = Counter(
            "sextant_processor_late_events",
            "Events later than the project's allowed lateness (not in any window)",
            ["project"],
            registry=r,
        )
        self.partials = Counter(
            "sextant_processor_partials", "Window partials sent to the merge stage", registry=r
        )
        self.windows = Counter(
            "sextant_processor_windows_emitted",
            "Metric points emitted (window versions, corrections included)",
            registry=r,
        )
        self.exposures = Counter(
            "sextant_processor_exposures",
            "Exposure records emitted (first exposures and multi-variant flags)",
            ["multi_variant"],
            registry=r,
        )
        self.identity_decisions = Counter(
            "sextant_processor_identity_decisions",
            "Identity edges that merged, were refused or split persons",
            ["decision"],
            registry=r,
        )
        self.refetched = Counter(
            "sextant_processor_refetched_events",
            "Events not applied on delivery (out of order, or during a rebalance), fetched again",
            ["reason"],
            registry=r,
        )
        self.errors = Counter(
            "sextant_processor_errors",
            "Batches or timer ticks that failed; their partitions were rebuilt and fetched again",
            ["stage"],
            registry=r,
        )
        self.lag = Gauge(
            "sextant_processor_lag_records",
            "Records on events.raw not yet processed, per partition",
            ["partition"],
            registry=r,
        )
        self.event_age = Gauge(
            "sextant_processor_event_age_seconds",
            "Now minus received_at of the newest event processed",
            registry=r,
        )
