-- events.extra: the top-level fields of an event the envelope has no field for, as the client
-- sent them (Segment's and RudderStack's integrations, channel and _metadata, PostHog's
-- unmapped fields …): sextant.schemas.events.Envelope.extra. Nothing a client sends is
-- dropped. Why a column of its own, and why text rather than the JSON type of properties and
-- context: docs/decisions/envelope-extra-fields.md.
--
-- The sink inserts the envelope's extra object as it is; the engine stores an object read
-- into a String column as its JSON text (input_format_json_read_objects_as_strings, set by
-- the warehouse adapter). Read it with JSONExtract*(extra, 'channel') or CAST(extra, 'JSON').
-- Rows written before this migration read '{}': their clients' extra fields were not kept.
--
-- Duplicate safety: unchanged (0001_events.sql); extra is not part of the sorting key. The
-- view is created again because a view keeps the columns it was created with, and would not
-- show extra.
ALTER TABLE events ADD COLUMN IF NOT EXISTS extra String DEFAULT '{}' CODEC(ZSTD(1)) AFTER context;

DROP VIEW IF EXISTS events_unique;

CREATE VIEW events_unique AS
SELECT * FROM events FINAL;
