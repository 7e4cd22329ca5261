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
