-- Jobs that run once for the whole deployment (retention, scheduled
-- backups): the node that claims a job for its period runs it.
CREATE TABLE cluster_jobs (
    name        TEXT   PRIMARY KEY,
    last_run_at BIGINT NOT NULL,
    node        TEXT   NOT NULL
);
