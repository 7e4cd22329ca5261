-- When a speed dial key was made (issue 15): the erasure ledger deletes a
-- key again after a restore only if it was made before its deletion, as
-- SQLite may give a deleted key's id to a newer one. Keys from before this
-- migration count as made at the epoch.
ALTER TABLE speed_dials ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
