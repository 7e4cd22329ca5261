-- How many handsets and speaker channels a profile's turret has (issue 17).
ALTER TABLE profiles ADD COLUMN handsets INTEGER NOT NULL DEFAULT 2 CHECK (handsets BETWEEN 1 AND 4);
ALTER TABLE profiles ADD COLUMN speakers INTEGER NOT NULL DEFAULT 4 CHECK (speakers BETWEEN 0 AND 8);
