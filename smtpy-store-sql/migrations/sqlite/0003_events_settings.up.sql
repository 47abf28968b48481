-- smtpy schema v3 (SQLite): user settings and the delivery event log.
--
-- users.settings is the JSON of the owner's UserSettings. The store always
-- writes the whole object, so the column is NOT NULL; users created before
-- this migration get the JSON of UserSettings::default() (the default
-- below), which is what they had in effect.
ALTER TABLE users ADD COLUMN settings TEXT NOT NULL DEFAULT '{"dmarc_reject":"reject","dmarc_quarantine":"quarantine","subject_tag":"[SPAM?]","sender_format":null,"forwards_per_day":null,"replies_per_day":null,"aliases_per_hour":null,"notify_bounces":true,"notify_quarantine":true}';

-- One row per event of the mail path (DeliveryEvent). Events are history:
-- no foreign keys, so an event outlives the alias, mailbox or message it
-- names; the owner's events go with the owner (delete_user). Lists run
-- newest first (ORDER BY id DESC); details is JSON text.
CREATE TABLE delivery_events (
    id         BLOB    NOT NULL PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    owner_id   BLOB,
    alias_id   BLOB,
    mailbox_id BLOB,
    message_id BLOB,
    sender     TEXT,
    details    TEXT    NOT NULL
);
-- An owner's log, newest first; user deletion.
CREATE INDEX delivery_events_owner ON delivery_events (owner_id, id) WHERE owner_id IS NOT NULL;
-- An alias's log.
CREATE INDEX delivery_events_alias ON delivery_events (alias_id, id) WHERE alias_id IS NOT NULL;
-- Bounce thresholds: events of a mailbox since an instant.
CREATE INDEX delivery_events_mailbox ON delivery_events (mailbox_id, at) WHERE mailbox_id IS NOT NULL;
-- A message's events (the bounce handler finds its alias and mailboxes).
CREATE INDEX delivery_events_message ON delivery_events (message_id, id) WHERE message_id IS NOT NULL;
-- Retention purges (at <= cut-off).
CREATE INDEX delivery_events_at ON delivery_events (at);
