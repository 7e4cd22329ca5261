-- Which node of the deployment serves each line, until when (issue 19;
-- SQLite serves one node and keeps none):
-- a line is registered by one MLC at a time, and `epoch` grows at every
-- takeover. Bookkeeping of the deployment, no personal data; times in ms
-- on the database's clock.
CREATE TABLE line_leases (
    line_id    BIGINT  PRIMARY KEY REFERENCES lines(id) ON DELETE CASCADE,
    holder     TEXT    NOT NULL,
    epoch      BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
