-- smtpy schema v1 (PostgreSQL).
--
-- Ids are UUIDv7 stored as native uuid (they sort by creation time);
-- timestamps are BIGINT unix milliseconds; addresses keep the written form
-- next to the canonical lookup key (`*_canonical`, from
-- EmailAddress::canonical / DomainName::as_ascii), which carries the UNIQUE
-- indexes. Values never queried are JSON text.

CREATE TABLE users (
    id              UUID    NOT NULL PRIMARY KEY,
    email           TEXT    NOT NULL,
    email_canonical TEXT    NOT NULL,
    password        TEXT,
    role            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    totp            TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_login_at   BIGINT,
    revision        BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_canonical ON users (email_canonical);

CREATE TABLE api_keys (
    id           UUID    NOT NULL PRIMARY KEY,
    owner_id     UUID    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    secret_hash  BYTEA    NOT NULL,
    scopes       TEXT    NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX api_keys_secret_hash ON api_keys (secret_hash);
CREATE INDEX api_keys_owner ON api_keys (owner_id, id);

CREATE TABLE sessions (
    id_hash      BYTEA    NOT NULL PRIMARY KEY,
    user_id      UUID    NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    csrf_token   TEXT    NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE invitations (
    id         UUID    NOT NULL PRIMARY KEY,
    token_hash BYTEA    NOT NULL,
    email      TEXT,
    role       TEXT    NOT NULL,
    invited_by UUID    NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    UUID
);
CREATE UNIQUE INDEX invitations_token_hash ON invitations (token_hash);
CREATE INDEX invitations_invited_by ON invitations (invited_by);

CREATE TABLE mailboxes (
    id                 UUID    NOT NULL PRIMARY KEY,
    owner_id           UUID    NOT NULL REFERENCES users (id),
    address            TEXT    NOT NULL,
    address_canonical  TEXT    NOT NULL,
    verified_at        BIGINT,
    verification_token BYTEA,
    disabled           BOOLEAN NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    revision           BIGINT NOT NULL
);
CREATE UNIQUE INDEX mailboxes_owner_address ON mailboxes (owner_id, address_canonical);
CREATE UNIQUE INDEX mailboxes_verification_token ON mailboxes (verification_token);
CREATE INDEX mailboxes_owner ON mailboxes (owner_id, id);

CREATE TABLE domains (
    id                 UUID    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL,
    name_ascii         TEXT    NOT NULL,
    owner_id           UUID    NOT NULL REFERENCES users (id),
    shared             BOOLEAN NOT NULL,
    verification_token TEXT    NOT NULL,
    verified_at        BIGINT,
    checks             TEXT    NOT NULL,
    catch_all          TEXT    NOT NULL,
    dkim_keys          TEXT    NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    revision           BIGINT NOT NULL
);
CREATE UNIQUE INDEX domains_name_ascii ON domains (name_ascii);
CREATE INDEX domains_owner ON domains (owner_id, id);
CREATE INDEX domains_shared ON domains (id) WHERE shared;

-- Domain.default_mailboxes, in order.
CREATE TABLE domain_default_mailboxes (
    domain_id  UUID    NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    mailbox_id UUID    NOT NULL REFERENCES mailboxes (id),
    PRIMARY KEY (domain_id, position)
);
CREATE INDEX domain_default_mailboxes_mailbox ON domain_default_mailboxes (mailbox_id);

CREATE TABLE aliases (
    id                     UUID    NOT NULL PRIMARY KEY,
    address                TEXT    NOT NULL,
    address_canonical      TEXT    NOT NULL,
    -- lower-cased display form and note, for the substring filter
    address_lower          TEXT    NOT NULL,
    owner_id               UUID    NOT NULL REFERENCES users (id),
    domain_id              UUID    NOT NULL REFERENCES domains (id),
    enabled                BOOLEAN NOT NULL,
    mode                   TEXT    NOT NULL,
    disabled_reply         TEXT    NOT NULL,
    note                   TEXT,
    note_lower             TEXT,
    category               TEXT,
    labels                 TEXT    NOT NULL,
    expires_at             BIGINT,
    limit_messages_per_hour BIGINT,
    limit_max_message_size BIGINT,
    forwarded              BIGINT NOT NULL,
    blocked                BIGINT NOT NULL,
    replied                BIGINT NOT NULL,
    bounced                BIGINT NOT NULL,
    last_used_at           BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    deleted_at             BIGINT,
    revision               BIGINT NOT NULL
);
-- The mail path: one lookup per recipient.
CREATE UNIQUE INDEX aliases_address_canonical ON aliases (address_canonical);
CREATE INDEX aliases_owner ON aliases (owner_id, id);
CREATE INDEX aliases_domain ON aliases (domain_id);
CREATE INDEX aliases_deleted_at ON aliases (deleted_at) WHERE deleted_at IS NOT NULL;

-- Alias.mailboxes, in order.
CREATE TABLE alias_mailboxes (
    alias_id   UUID    NOT NULL REFERENCES aliases (id) ON DELETE CASCADE,
    position   BIGINT NOT NULL,
    mailbox_id UUID    NOT NULL REFERENCES mailboxes (id),
    PRIMARY KEY (alias_id, position)
);
CREATE INDEX alias_mailboxes_mailbox ON alias_mailboxes (mailbox_id);

-- Addresses of purged aliases: never created again.
CREATE TABLE alias_tombstones (
    address_canonical TEXT    NOT NULL PRIMARY KEY,
    alias_id          UUID    NOT NULL,
    owner_id          UUID    NOT NULL,
    -- when the alias was deleted (or last changed, if never soft-deleted)
    retired_at        BIGINT NOT NULL
);

CREATE TABLE contacts (
    id                UUID    NOT NULL PRIMARY KEY,
    alias_id          UUID    NOT NULL REFERENCES aliases (id) ON DELETE CASCADE,
    owner_id          UUID    NOT NULL,
    address           TEXT    NOT NULL,
    address_canonical TEXT    NOT NULL,
    display_name      TEXT,
    blocked           BOOLEAN NOT NULL,
    reverse_key       TEXT    NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    last_seen_at      BIGINT,
    revision          BIGINT NOT NULL
);
CREATE UNIQUE INDEX contacts_alias_address ON contacts (alias_id, address_canonical);
CREATE UNIQUE INDEX contacts_reverse_key ON contacts (reverse_key);
CREATE INDEX contacts_alias ON contacts (alias_id, id);
CREATE INDEX contacts_owner ON contacts (owner_id, id);

CREATE TABLE rules (
    id              UUID    NOT NULL PRIMARY KEY,
    owner_id        UUID    NOT NULL,
    scope_kind      TEXT    NOT NULL CHECK (scope_kind IN ('user', 'domain', 'alias')),
    scope_domain_id UUID    REFERENCES domains (id) ON DELETE CASCADE,
    scope_alias_id  UUID    REFERENCES aliases (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    priority        BIGINT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    match_mode      TEXT    NOT NULL,
    conditions      TEXT    NOT NULL,
    actions         TEXT    NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    revision        BIGINT NOT NULL
);
CREATE INDEX rules_owner ON rules (owner_id, priority, id);
CREATE INDEX rules_scope_domain ON rules (scope_domain_id) WHERE scope_domain_id IS NOT NULL;
CREATE INDEX rules_scope_alias ON rules (scope_alias_id) WHERE scope_alias_id IS NOT NULL;

CREATE TABLE audit_events (
    id       UUID    NOT NULL PRIMARY KEY,
    actor    TEXT    NOT NULL,
    owner_id UUID,
    action   TEXT    NOT NULL,
    target   TEXT,
    ip       TEXT,
    at       BIGINT NOT NULL,
    details  TEXT    NOT NULL
);
CREATE INDEX audit_events_owner ON audit_events (owner_id, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

-- One row per subject and UTC day.
CREATE TABLE usage_daily (
    subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('user', 'alias')),
    subject_id   UUID    NOT NULL,
    day          BIGINT NOT NULL,
    user_id      UUID    NOT NULL,
    messages     BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id, day)
);
CREATE INDEX usage_daily_user ON usage_daily (user_id);

-- GCRA state: one theoretical arrival time per key.
CREATE TABLE rate_limits (
    key    TEXT    NOT NULL PRIMARY KEY,
    -- NULL: a placeholder row inserted only to be locked (see check_rate)
    tat_ms BIGINT
);
CREATE INDEX rate_limits_tat ON rate_limits (tat_ms);
