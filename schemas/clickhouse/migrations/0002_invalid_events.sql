-- invalid_events: events the collector rejected (sextant.schemas.events.InvalidEvent), so a
-- team can see what its clients send wrong. Nothing is dropped silently.
--
-- Duplicate safety: ReplacingMergeTree keyed by the record's place in the events.invalid
-- topic (kafka_partition, kafka_offset): each rejection is one Kafka record, so a replayed
-- or re-cut batch yields rows with keys already stored, and FINAL (invalid_events_unique)
-- returns each once. received_at is part of the key too, so a topic that was re-created (its
-- offsets restart at 0) never collides with older rows; the key never spans partitions.
CREATE TABLE IF NOT EXISTS invalid_events
(
    project_id LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    message_id Nullable(String),
    payload String CODEC(ZSTD(3)),
    errors Array(Tuple(field String, message String)),
    kafka_partition UInt32,
    kafka_offset UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (project_id, received_at, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS invalid_events_unique AS
SELECT * FROM invalid_events FINAL;
