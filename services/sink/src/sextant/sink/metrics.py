"""The sink's Prometheus metrics (default registry, so they show wherever the sink runs)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_INSERTED = Counter(
    "sextant_sink_rows_inserted_total", "Rows the warehouse accepted", ["table"]
)
BYTES_INSERTED = Counter(
    "sextant_sink_bytes_inserted_total", "Bytes of rows (JSON) the warehouse accepted", ["table"]
)
DUPLICATES_DROPPED = Counter(
    "sextant_sink_duplicates_dropped_total",
    "Rows not sent because the same fact was already in the batch",
    ["table"],
)
INSERT_SECONDS = Histogram(
    "sextant_sink_insert_seconds",
    "Time to insert one table's rows of a batch",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SECONDS = Histogram(
    "sextant_sink_batch_seconds",
    "Time from a batch being due to its offsets being committed (includes retries)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BATCH_RECORDS = Histogram(
    "sextant_sink_batch_records",
    "Records per committed batch",
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
CONSUMER_LAG = Gauge(
    "sextant_sink_consumer_lag",
    "Records in Kafka after the sink's last committed offset",
    ["topic", "partition"],
)
DEAD_LETTERS = Counter(
    "sextant_sink_dead_letters_total", "Records sent to the dead-letter topic", ["topic"]
)
FAILURES = Counter(
    "sextant_sink_failures_total",
    "Failed attempts that will be retried, by what failed",
    ["stage"],
)
WAREHOUSE_UP = Gauge("sextant_sink_warehouse_up", "1 when the last warehouse operation succeeded")
