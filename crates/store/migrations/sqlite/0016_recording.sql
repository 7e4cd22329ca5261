-- Recorder forwarding (issue 18): the Session Recording Servers, which
-- lines are recorded, and whether all of them are.
CREATE TABLE recorders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uri TEXT NOT NULL,
    transport TEXT NOT NULL,
    username TEXT NOT NULL DEFAULT '',
    password_sealed BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
ALTER TABLE lines ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settings ADD COLUMN recording_all_lines INTEGER NOT NULL DEFAULT 0;
-- Which calls went (or failed to go) to which recorder: the system's own
-- record of forwarding, kept as long as call data records and stripped of
-- the profile when its person is erased.
CREATE TABLE recording_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    call_id INTEGER NOT NULL,
    line_id INTEGER,
    profile_id INTEGER,
    recorder_id INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX recording_log_at ON recording_log (at);
CREATE INDEX recording_log_profile ON recording_log (profile_id) WHERE profile_id IS NOT NULL;
-- The recording notice played to the far end of a recorded call: 8 kHz
-- 16-bit samples (little-endian), at most 30 s.
CREATE TABLE recording_notice (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    samples BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL
);
