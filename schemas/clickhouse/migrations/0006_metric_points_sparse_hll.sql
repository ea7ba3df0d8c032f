-- metric_points.hll: sparse HyperLogLog registers of precision 16 (sextant.schemas.sketches):
-- one UInt32 per non-zero register of 2^16, index << 6 | rank, sorted by index (a window of a
-- few thousand users is a few thousand ints; Delta then ZSTD stores the sorted ints in about
-- two bytes each). Merge: the largest packed int of each register (max grouped by
-- bitShiftRight(packed, 6): the rank is in the low bits), then estimate from the rank
-- histogram, whose rank 0 counts the 2^16 - length(hll) registers left out.
--
-- Rows written before this migration held 2^14 dense one-byte registers. They cannot become
-- 2^16 registers (the hashes behind them are gone), so the column is replaced: those rows
-- keep every other component and an empty hll. The gateway reads unique users of events
-- without any register as unknown (null); `sextant metrics backfill` recomputes the windows
-- from the events table with the new registers, under a higher version.
--
-- Duplicate safety: unchanged (0004_metric_points.sql): ReplacingMergeTree(version) on the
-- same key, FINAL (metric_points_latest) returns the newest version of each window. The view
-- is created again because a view keeps the column types it was created with (hll would be
-- read as Array(UInt8)).
ALTER TABLE metric_points DROP COLUMN hll;

ALTER TABLE metric_points ADD COLUMN hll Array(UInt32) CODEC(Delta, ZSTD(1)) AFTER denominator;

DROP VIEW IF EXISTS metric_points_latest;

CREATE VIEW metric_points_latest AS
SELECT * FROM metric_points FINAL;
