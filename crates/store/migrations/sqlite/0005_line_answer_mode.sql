-- Answer mode per line (issue 6): manual (a turret answers) or automatic
-- (answered at once on a speaker, as intercom lines are).
ALTER TABLE lines ADD COLUMN answer_mode TEXT NOT NULL DEFAULT 'manual'
    CHECK (answer_mode IN ('manual', 'automatic'));
