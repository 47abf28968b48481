-- smtpy schema v4 (SQLite): the control plane (ControlStore).
--
-- settings: runtime settings shared by every instance (the feature flags
-- live under the key 'features'); value is JSON text kept as written,
-- version starts at 1 and grows on every write so instances poll cheaply.
CREATE TABLE settings (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- job_state: one row per background job — its lease (holder, lease_until;
-- both NULL when released) and its last run. A lease is taken with one
-- INSERT … ON CONFLICT DO UPDATE … WHERE (atomic on both dialects).
CREATE TABLE job_state (
    job             TEXT    NOT NULL PRIMARY KEY,
    holder          TEXT,
    lease_until     INTEGER,
    last_run_at     INTEGER,
    last_ok         BOOLEAN,
    last_detail     TEXT,
    last_success_at INTEGER
);

-- The expire-aliases job: live aliases with an expiry.
CREATE INDEX aliases_expires ON aliases (expires_at) WHERE expires_at IS NOT NULL AND deleted_at IS NULL;
-- The session-cleanup job: expired invitations.
CREATE INDEX invitations_expires ON invitations (expires_at);
