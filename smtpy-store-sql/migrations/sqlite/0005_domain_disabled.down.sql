-- Reverts 0005_domain_disabled: drops the flag (disabled domains whose
-- verified_at is set receive mail again).
ALTER TABLE domains DROP COLUMN disabled;
