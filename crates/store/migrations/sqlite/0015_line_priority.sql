-- A line whose calls ring with a distinct, faster cadence on the turrets (issue 17).
ALTER TABLE lines ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
