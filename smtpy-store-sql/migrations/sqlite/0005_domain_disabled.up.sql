-- smtpy schema v5 (SQLite): an administrator's "disabled" flag on domains.
--
-- A disabled domain receives no mail and its owner cannot re-enable or
-- re-verify it; verified_at is kept. Existing domains are not disabled.
-- Stored like every other boolean here (BOOLEAN affinity, 0 or 1).
ALTER TABLE domains ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT 0;
