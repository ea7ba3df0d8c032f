-- Person hashes on the events: person-aware queries join and count 64-bit hashes of ids and
-- persons (sextant.gateway.persons); stored, a query reads two integer columns instead of
-- hashing two strings per row (docs/decisions/person-squash.md).
--
-- events.id_hash: cityHash64(distinct_id), computed as rows are inserted (and on read for
-- parts written before this migration).
--
-- events.person_hash: cityHash64(person_id), written by the person squash with person_id;
-- 0 for a row no squash has seen since this migration (person-aware queries then look its
-- id up through every override, as for a row with no person_id).
ALTER TABLE events ADD COLUMN IF NOT EXISTS id_hash UInt64 DEFAULT cityHash64(distinct_id) AFTER person_id;

ALTER TABLE events ADD COLUMN IF NOT EXISTS person_hash UInt64 DEFAULT 0 AFTER id_hash;

DROP VIEW IF EXISTS events_unique;

CREATE VIEW events_unique AS
SELECT * FROM events FINAL;
