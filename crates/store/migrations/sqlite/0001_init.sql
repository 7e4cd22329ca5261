-- OpenTurret schema, SQLite dialect. Every item of SPEC §2.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); booleans 0/1.
-- Never edit this file once landed: add a new migration instead.

CREATE TABLE admins (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- Sessions are keyed by the SHA-256 of the bearer token; the token itself
-- is never stored.
CREATE TABLE admin_sessions (
    token_hash BLOB    PRIMARY KEY,
    admin_id   INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions(admin_id);

CREATE TABLE profiles (
    id                             INTEGER PRIMARY KEY,
    name                           TEXT    NOT NULL UNIQUE,
    password_hash                  TEXT    NOT NULL,
    contacts_password_hash         TEXT,
    call_memory_password_hash      TEXT,
    collect_call_memory            INTEGER NOT NULL DEFAULT 0,
    allow_call_memory_deletion     INTEGER NOT NULL DEFAULT 0,
    call_memory_password_protected INTEGER NOT NULL DEFAULT 0,
    created_at                     INTEGER NOT NULL,
    updated_at                     INTEGER NOT NULL
);

CREATE TABLE local_contacts (
    id         INTEGER PRIMARY KEY,
    profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    number     TEXT    NOT NULL,
    number_key TEXT    NOT NULL,
    field3     TEXT    NOT NULL DEFAULT '',
    field4     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX local_contacts_profile ON local_contacts(profile_id, name);

CREATE TABLE speed_dials (
    id         INTEGER PRIMARY KEY,
    profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('DKA', 'DKM')),
    position   INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    number     TEXT    NOT NULL,
    UNIQUE (profile_id, kind, position)
);

CREATE TABLE global_contacts (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    -- lower-cased name: case-insensitive prefix search by index range
    name_key   TEXT    NOT NULL,
    number     TEXT    NOT NULL,
    number_key TEXT    NOT NULL,
    field3     TEXT    NOT NULL DEFAULT '',
    field4     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX global_contacts_name ON global_contacts(name_key, id);
CREATE INDEX global_contacts_number ON global_contacts(number_key, id);

CREATE TABLE lines (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    uri                TEXT    NOT NULL,
    username           TEXT    NOT NULL DEFAULT '',
    -- XChaCha20-Poly1305 under a key outside the database, bound to the id
    password_sealed    BLOB,
    display_name       TEXT    NOT NULL DEFAULT '',
    alternate_text     TEXT    NOT NULL DEFAULT '',
    preferred_identity TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE line_assignments (
    profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    line_id    INTEGER NOT NULL REFERENCES lines(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (profile_id, line_id),
    UNIQUE (profile_id, position)
);
CREATE INDEX line_assignments_line ON line_assignments(line_id);

CREATE TABLE settings (
    id                          INTEGER PRIMARY KEY CHECK (id = 1),
    global_contacts_changeable  INTEGER NOT NULL DEFAULT 0,
    master_password_enabled     INTEGER NOT NULL DEFAULT 0,
    master_password_hash        TEXT,
    cti_enabled                 INTEGER NOT NULL DEFAULT 0,
    api_enabled                 INTEGER NOT NULL DEFAULT 0,
    recorder_forwarding_enabled INTEGER NOT NULL DEFAULT 0,
    updated_at                  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO settings (id) VALUES (1);

CREATE TABLE consents (
    id          INTEGER PRIMARY KEY,
    profile_id  INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    purpose     TEXT    NOT NULL,
    channel     TEXT    NOT NULL CHECK (channel IN ('paper', 'email', 'electronic')),
    given_at    INTEGER NOT NULL,
    recorded_by TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX consents_profile ON consents(profile_id);

-- Sealed per profile: the store never sees the content.
CREATE TABLE call_memory (
    id         INTEGER PRIMARY KEY,
    profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    sealed     BLOB    NOT NULL
);
CREATE INDEX call_memory_profile ON call_memory(profile_id, id);

CREATE TABLE cdrs (
    id              INTEGER PRIMARY KEY,
    profile_name    TEXT,
    attendant_group TEXT,
    called_number   TEXT,
    calling_number  TEXT,
    duration_ms     INTEGER,
    call_type       TEXT CHECK (call_type IN ('local', 'remote')),
    direction       TEXT CHECK (direction IN ('in', 'out')),
    started_at      INTEGER,
    ended_at        INTEGER
);
CREATE INDEX cdrs_started ON cdrs(started_at);

-- Hash-chained (HMAC-SHA-256, key outside the database). The personal
-- columns (actor, client_ip, client_host) are covered through pii_commit,
-- a salted commitment, so they can be erased without breaking the chain.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    level       TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    object_type TEXT    NOT NULL,
    object_id   TEXT,
    changes     TEXT    NOT NULL,
    success     INTEGER NOT NULL,
    server_host TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    client_ip   TEXT    NOT NULL,
    client_host TEXT    NOT NULL,
    pii_salt    BLOB,
    pii_commit  BLOB    NOT NULL,
    prev_mac    BLOB    NOT NULL,
    mac         BLOB    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_event ON audit_log(event_type, seq);
CREATE INDEX audit_log_object ON audit_log(object_type, object_id, seq);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
