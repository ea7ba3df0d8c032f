-- Person squash: each event's person written onto the event, so person-aware queries read
-- one column instead of joining every event with the overrides
-- (sextant.sink.squash; docs/decisions/person-squash.md).
--
-- events.person_id: the person of the event's distinct_id as of the last squash that saw the
-- row (the id itself when no edge joined it); '' for a row no squash has seen yet (written
-- since, or before this migration). Queries read it only where no override newer than the
-- squash applies.
--
-- person_overrides.squashed: 1 on a copy of an override (same key, same version, written
-- after it, so FINAL keeps it) once the squash has written its person onto the events. An
-- override the resolver sends again afterwards reads 0 until the next squash: queries then
-- apply it at query time again, which gives the same answer.
ALTER TABLE events ADD COLUMN IF NOT EXISTS person_id String DEFAULT '' CODEC(ZSTD(1)) AFTER distinct_id;

ALTER TABLE person_overrides ADD COLUMN IF NOT EXISTS squashed UInt8 DEFAULT 0;

DROP VIEW IF EXISTS events_unique;

CREATE VIEW events_unique AS
SELECT * FROM events FINAL;
