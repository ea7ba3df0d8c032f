-- metric_points: a metric's aggregate for one event-time window and breakdown value
-- (sextant.schemas.records.MetricPoint), as additive components that roll minutes up to
-- hours and days: count, sum, sum_sq and denominator add up; hll holds HyperLogLog registers
-- (merge with maxForEach, then estimate); digest holds t-digest centroids (mean, weight)
-- (concatenate, then compress or read quantiles).
--
-- Duplicate safety: ReplacingMergeTree(version) keyed by (project_id, metric,
-- window_seconds, window_start, breakdown); the partition (month of window_start) is a
-- function of the key, so every version of a window lives in one partition. The processor
-- re-emits a window with a higher version when it changes (late events), so FINAL
-- (metric_points_latest) returns exactly the newest version of each window, however often
-- any version was replayed. Never sum metric_points without FINAL: older versions would add.
CREATE TABLE IF NOT EXISTS metric_points
(
    project_id LowCardinality(String),
    metric LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_seconds UInt32,
    breakdown String,
    count Int64,
    sum Float64,
    sum_sq Float64,
    denominator Int64,
    hll Array(UInt8),
    digest Array(Tuple(Float64, Float64)),
    version UInt64,
    emitted_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (project_id, metric, window_seconds, window_start, breakdown)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS metric_points_latest AS
SELECT * FROM metric_points FINAL;
