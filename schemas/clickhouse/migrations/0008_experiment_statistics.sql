-- experiment_statistics: the sufficient statistics of one variant of an experiment for one
-- metric, as one events.raw partition of the processor has them
-- (sextant.schemas.statistics.ExperimentMetricStatistics, flattened: n, the fourteen sums,
-- units_with_pre). metric = '' is the row that counts the variant's units. A reader adds
-- up the newest row of every source partition.
--
-- Duplicate safety: ReplacingMergeTree(version) keyed by (project_id, experiment, metric,
-- variant, source_partition); version is the offset of the last event the partition
-- applied, so FINAL returns each partition's newest sums however often any version was
-- replayed. Never sum without FINAL.
CREATE TABLE IF NOT EXISTS experiment_statistics
(
    project_id LowCardinality(String),
    experiment String,
    metric String,
    variant String,
    source_partition UInt16,
    partitions UInt16,
    lookback_days UInt16,
    fingerprint String,
    tracked_after Nullable(DateTime64(3, 'UTC')),
    multi_variant_units UInt64,
    n UInt64,
    sum_x Float64,
    sum_x_sq Float64,
    sum_y Float64,
    sum_y_sq Float64,
    sum_xy Float64,
    sum_x_pre Float64,
    sum_x_pre_sq Float64,
    sum_y_pre Float64,
    sum_y_pre_sq Float64,
    sum_x_pre_y_pre Float64,
    sum_x_x_pre Float64,
    sum_x_y_pre Float64,
    sum_y_x_pre Float64,
    sum_y_y_pre Float64,
    units_with_pre UInt64,
    version Int64,
    as_of DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, experiment, metric, variant, source_partition)
SETTINGS non_replicated_deduplication_window = 1000;
