-- Jobs that run once for the whole deployment (issue 19): retention and
-- scheduled backups. The node that claims a job for its period runs it;
-- with one node, it is always that one.
CREATE TABLE cluster_jobs (
    name TEXT PRIMARY KEY,
    last_run_at INTEGER NOT NULL,
    node TEXT NOT NULL
);
