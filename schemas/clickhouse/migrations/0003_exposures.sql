-- exposures: the first time a unit saw an experiment (sextant.schemas.records.Exposure).
--
-- Duplicate safety: ReplacingMergeTree keyed by (project_id, experiment, unit_id,
-- variation_id, timestamp), not partitioned, so identical rows from a replayed or re-cut
-- batch share one key. Merges can only fold identical keys, so they never lose the earliest
-- exposure. Queries read exposures_first, which groups by unit and variation and takes the
-- earliest timestamp: exact with or without merges, even if the processor re-derived an
-- exposure with another timestamp. A unit seen in two variations has a row for each, so it
-- can be flagged; multi_variant is true when any copy carried it.
CREATE TABLE IF NOT EXISTS exposures
(
    project_id LowCardinality(String),
    experiment String,
    unit_id String,
    variation_id String,
    timestamp DateTime64(3, 'UTC'),
    message_id String,
    multi_variant Bool
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, experiment, unit_id, variation_id, timestamp)
SETTINGS non_replicated_deduplication_window = 1000;

-- Filters on project_id, experiment, unit_id or variation_id are pushed below the GROUP BY.
CREATE VIEW IF NOT EXISTS exposures_first AS
SELECT
    project_id,
    experiment,
    unit_id,
    variation_id,
    min(timestamp) AS timestamp,
    argMin(message_id, exposures.timestamp) AS message_id,
    max(multi_variant) AS multi_variant
FROM exposures
GROUP BY project_id, experiment, unit_id, variation_id;
