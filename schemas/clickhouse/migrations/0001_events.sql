-- events: one row per accepted event (sextant.schemas.events.Envelope, field for field).
--
-- Sorted for the queries teams run: one project, one event, a time range, then per user
-- (funnels and retention group by distinct_id). Partitioned by month of the event time.
--
-- Duplicate safety: ReplacingMergeTree keyed by the sorting key, which ends in message_id.
--   * A batch the sink inserts again after a restart, cut the same way, carries the same
--     insert_deduplication_token (topic, partition and offset ranges) and is dropped at insert.
--   * A batch re-cut differently holds rows identical to rows already stored: same key, so
--     reading through FINAL (the events_unique view) returns each message once.
--   * A client re-sending an event with the same messageId gives the same key as long as both
--     copies' corrected timestamps fall on the same UTC day (they differ by network jitter
--     only): FINAL returns it once. The sink also drops repeats of a message within a batch.
-- Background merges only save space: no query result depends on them.
--
-- properties, traits and context use the JSON type (typed subcolumns such as
-- properties.plan::String, properties.amount::Float64): measured against Map(String, String),
-- see docs/decisions/sink-properties.md.
CREATE TABLE IF NOT EXISTS events
(
    project_id LowCardinality(String),
    event LowCardinality(String),
    timestamp DateTime64(3, 'UTC'),
    distinct_id String,
    message_id String,
    type LowCardinality(String),
    user_id Nullable(String),
    anonymous_id Nullable(String),
    group_id Nullable(String),
    previous_id Nullable(String),
    properties JSON,
    traits JSON,
    context JSON,
    original_timestamp Nullable(DateTime64(3, 'UTC')),
    sent_at Nullable(DateTime64(3, 'UTC')),
    received_at DateTime64(3, 'UTC'),
    ip Nullable(String),
    plan_violations Array(LowCardinality(String))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, event, toDate(timestamp), distinct_id, message_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- What the gateway reads: every event once, whatever the merges have done so far.
-- Filters on project_id, event and timestamp still use the primary key through the view.
CREATE VIEW IF NOT EXISTS events_unique AS
SELECT * FROM events FINAL;
