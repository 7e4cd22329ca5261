-- Turret sessions (issue 14, point 10), so that a restart of the server
-- costs a trader a reconnect, not a login. Only the SHA-256 of the resume
-- token is kept; a profile's erasure takes its sessions with it. Nothing
-- secret is here: call-memory keys live only in the process's memory, so a
-- session restored after a restart asks for the call-memory password again.
CREATE TABLE client_sessions (
    token_hash  BLOB    PRIMARY KEY,
    profile_id  INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    -- A connection was attached when last written (a crash leaves 1).
    connected   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX client_sessions_profile ON client_sessions(profile_id);
