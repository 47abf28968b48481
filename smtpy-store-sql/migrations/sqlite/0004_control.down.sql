-- Reverts 0004_control: drops the settings (feature flags fall back to the
-- configuration), the job leases and run records, and the two indexes.
DROP INDEX IF EXISTS invitations_expires;
DROP INDEX IF EXISTS aliases_expires;
DROP TABLE IF EXISTS job_state;
DROP TABLE IF EXISTS settings;
