-- alert_events: alert rules moving between states (sextant.schemas.records.AlertTransition),
-- the alert history the gateway shows.
--
-- Duplicate safety: ReplacingMergeTree keyed by (project_id, rule_id, transition_id) and not
-- partitioned (transitions are few), so a transition replayed in any batch, even re-emitted
-- with another timestamp, has one key: FINAL (alert_events_unique) returns it once.
CREATE TABLE IF NOT EXISTS alert_events
(
    project_id LowCardinality(String),
    rule_id String,
    transition_id String,
    episode_id String,
    from_state LowCardinality(String),
    to_state LowCardinality(String),
    at DateTime64(3, 'UTC'),
    value Nullable(Float64),
    threshold Nullable(Float64),
    severity LowCardinality(String),
    message String
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, rule_id, transition_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS alert_events_unique AS
SELECT * FROM alert_events FINAL;
