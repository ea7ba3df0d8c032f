-- events: one row per accepted event.
CREATE TABLE IF NOT EXISTS events
(
    project_id LowCardinality(String),
    event String,
    timestamp DateTime64(3, 'UTC'),
    distinct_id String,
    message_id String,
    type LowCardinality(String),
    user_id Nullable(String),
    anonymous_id Nullable(String),
    properties JSON,
    received_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, event, toDate(timestamp), distinct_id, message_id)
SETTINGS non_replicated_deduplication_window = 1000;
