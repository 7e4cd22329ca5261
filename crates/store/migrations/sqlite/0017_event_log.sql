-- The error log (issue 20): what the components report, at a level.
-- Apart from the audit chain: an entry is folded (its count and last time
-- grow) while a storm of identical events lasts, which a hash chain of
-- immutable entries cannot hold. `seq` grows at every write of any entry,
-- so a follower reads what changed since it last looked.
CREATE TABLE event_log (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    component TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('error', 'warning', 'info')),
    event_type TEXT NOT NULL,
    object TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL CHECK (count > 0),
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL
);
CREATE INDEX event_log_last_at ON event_log (last_at);
CREATE INDEX event_log_level_last_at ON event_log (level, last_at);
