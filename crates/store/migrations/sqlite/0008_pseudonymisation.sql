-- Pseudonymisation of numbers in what external applications receive
-- (issue 7): off, keyed_hash (HMAC under a key kept outside the database,
-- rotatable) or truncate (the last three digits hidden).
ALTER TABLE settings ADD COLUMN pseudonymisation TEXT NOT NULL DEFAULT 'off'
    CHECK (pseudonymisation IN ('off', 'keyed_hash', 'truncate'));
