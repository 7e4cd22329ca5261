-- Call data record output (issue 7). A CDR now names its line (which API
-- keys may see it) and the profile it names (so erasing the profile can
-- clear its name). The admin switches CDRs on (off until then, SPEC rule
-- 11), chooses whether they are kept in the database, which fields they
-- hold, and which rolling files are written for offline pick-up.
--
-- `recorded_at` (when the record was made, never sent out) drives the
-- API's time filters and retention, which must work even when the admin
-- switched the start and end times off.
ALTER TABLE cdrs ADD COLUMN line_id INTEGER;
ALTER TABLE cdrs ADD COLUMN profile_id INTEGER;
ALTER TABLE cdrs ADD COLUMN recorded_at INTEGER NOT NULL DEFAULT 0;
UPDATE cdrs SET recorded_at = COALESCE(ended_at, started_at, 0);
CREATE INDEX cdrs_profile ON cdrs(profile_id);
CREATE INDEX cdrs_recorded ON cdrs(recorded_at);
ALTER TABLE settings ADD COLUMN cdr_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settings ADD COLUMN cdr_store INTEGER NOT NULL DEFAULT 1;
ALTER TABLE settings ADD COLUMN cdr_fields TEXT NOT NULL DEFAULT
    'profile_name,attendant_group,called_number,calling_number,duration_ms,call_type,direction,started_at,ended_at';
ALTER TABLE settings ADD COLUMN cdr_files TEXT NOT NULL DEFAULT 'off'
    CHECK (cdr_files IN ('off', 'csv', 'jsonl', 'both'));
