-- The portal's view state of each admin session (issue 19): one-time
-- messages and list filters, which may hold names, so sealed under the
-- deployment's key (bound to the session and the slot). Kept here only
-- with several nodes, where a session's next request may reach another
-- node; gone with the session, never in a backup.
CREATE TABLE portal_memory (
    token_hash BYTEA NOT NULL REFERENCES admin_sessions(token_hash) ON DELETE CASCADE,
    slot       TEXT  NOT NULL,
    value      BYTEA NOT NULL,
    PRIMARY KEY (token_hash, slot)
);
