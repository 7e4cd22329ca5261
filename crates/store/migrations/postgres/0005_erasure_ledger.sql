-- The erasure ledger of the deployment (issue 19): every node keeps its
-- own file (outside the database and every backup), and every erasure is
-- also written here, in the transaction that erases, so each node's file
-- takes the erasures made through the others (at every start and before
-- a restore). Not a table of the backups: a restore never replaces it.
-- Identifiers and a time only, no personal data.
CREATE TABLE erasure_ledger (
    kind  TEXT   NOT NULL,
    id    BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, id, at_ms)
);
