-- Reverts 0003_events_settings: drops the delivery event log — with its
-- events — and the users' settings.
DROP TABLE IF EXISTS delivery_events;
ALTER TABLE users DROP COLUMN settings;
