-- Trusted peers per line (issue 14): besides the line's registrar, the
-- addresses or networks its PBX may send requests from; normalised by the
-- domain, comma-separated.
ALTER TABLE lines ADD COLUMN peers TEXT NOT NULL DEFAULT '';
