-- The erasure ledger of the deployment (issue 19): every node keeps its
-- own file (outside the database and every backup), and every erasure is
-- also written here, in the transaction that erases, so each node's file
-- takes the erasures made through the others (at every start and before
-- a restore). Not a table of the backups: a restore never replaces it.
-- Identifiers and a time only; for an erased profile also `name_mark`, an
-- HMAC of its name under a key derived from the master key (never the
-- name), so that a node down at the erasure finds the name in its own CDR
-- files when it starts.
CREATE TABLE erasure_ledger (
    kind      TEXT   NOT NULL,
    id        BIGINT NOT NULL,
    at_ms     BIGINT NOT NULL,
    name_mark BYTEA,
    PRIMARY KEY (kind, id, at_ms)
);
CREATE INDEX erasure_ledger_name_mark ON erasure_ledger(name_mark)
    WHERE name_mark IS NOT NULL;
