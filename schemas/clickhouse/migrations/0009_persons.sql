-- Persons: which person an id belongs to, and what the resolver decided for every identity
-- edge (sextant.schemas.identity; docs/decisions/identity.md).
--
-- person_overrides: one row per id whose person is not the id itself, from the resolver's
-- PersonOverride records. version is the offset of the edge that decided it (one project's
-- edges are one ordered partition), so the newest row per (project_id, distinct_id) is the
-- truth: ReplacingMergeTree(version), read through person_map (argMax), exact with or without
-- merges. A replayed record has the same key and version: harmless. An id split back to
-- itself keeps a row whose person_id is the id.
CREATE TABLE IF NOT EXISTS person_overrides
(
    project_id LowCardinality(String),
    distinct_id String,
    person_id String,
    version UInt64,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, distinct_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- What queries join: each overridden id's current person.
CREATE VIEW IF NOT EXISTS person_map AS
SELECT project_id, distinct_id, argMax(person_id, version) AS person_id
FROM person_overrides
GROUP BY project_id, distinct_id;

-- identity_decisions: every merge, refusal and split, one row per edge (its partition and
-- offset on the identities topic), so a replay after a crash is the same row.
CREATE TABLE IF NOT EXISTS identity_decisions
(
    project_id LowCardinality(String),
    edge_partition UInt32,
    edge_offset UInt64,
    kind LowCardinality(String),
    source String,
    target String,
    decision LowCardinality(String),
    reason String,
    person_id String,
    moved Array(String),
    message_id String,
    timestamp DateTime64(3, 'UTC'),
    decided_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, edge_partition, edge_offset)
SETTINGS non_replicated_deduplication_window = 1000;
