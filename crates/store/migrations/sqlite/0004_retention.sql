-- Retention (SPEC §4): the maximum age, in days, of call-memory entries and
-- call data records; NULL keeps them until deleted.
ALTER TABLE settings ADD COLUMN retention_call_memory_days INTEGER DEFAULT 90;
ALTER TABLE settings ADD COLUMN retention_cdr_days INTEGER DEFAULT 365;
