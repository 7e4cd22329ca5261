-- Audit-log retention (issue 5): a maximum age for audit entries (days;
-- NULL keeps them), and the anchor from which the hash chain is verified
-- once older entries were purged. The anchor is pinned by the purge's own
-- audit entry (event retention.purged, object audit_log, id = first_seq),
-- which is inside the chain and cannot be forged without the audit key.
ALTER TABLE settings ADD COLUMN retention_audit_days INTEGER DEFAULT 2557;
CREATE TABLE audit_anchor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    first_seq INTEGER NOT NULL,
    prev_mac  BLOB    NOT NULL
);
