-- Reverts 0001_init: drops every smtpy table (children first).
DROP TABLE IF EXISTS rate_limits;
DROP TABLE IF EXISTS usage_daily;
DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS rules;
DROP TABLE IF EXISTS contacts;
DROP TABLE IF EXISTS alias_tombstones;
DROP TABLE IF EXISTS alias_mailboxes;
DROP TABLE IF EXISTS aliases;
DROP TABLE IF EXISTS domain_default_mailboxes;
DROP TABLE IF EXISTS domains;
DROP TABLE IF EXISTS mailboxes;
DROP TABLE IF EXISTS invitations;
DROP TABLE IF EXISTS sessions;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS users;
