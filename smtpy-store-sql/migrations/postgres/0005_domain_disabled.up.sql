-- smtpy schema v5 (PostgreSQL): an administrator's "disabled" flag on domains.
--
-- A disabled domain receives no mail and its owner cannot re-enable or
-- re-verify it; verified_at is kept. Existing domains are not disabled.
ALTER TABLE domains ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
