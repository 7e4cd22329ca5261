-- API keys of external applications (issue 7). Only the SHA-256 of a key
-- is kept; the scope is JSON: {"lines": [ids] or null, "events": [...],
-- "cdrs": bool}.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    token_hash   BLOB    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
