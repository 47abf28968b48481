-- smtpy schema v2 (PostgreSQL): the durable mail queue, shared by every
-- instance on this database.
--
-- `queue` holds the small state an attempt rewrites (envelope, recipients
-- as JSON, schedule, lease); `queue_bodies` holds the message, written once
-- at enqueue and deleted with its row (ON DELETE CASCADE), never rewritten.
-- A lease is `lease_token` + `lease_until`; a lapsed one (lease_until <= now)
-- no longer protects the message. Instances lease with
-- `SELECT … FOR UPDATE SKIP LOCKED`, so they never wait on each other's rows.
--
-- fillfactor 80 leaves room in each page so that taking and ending a lease
-- (columns no index covers) can be a HOT update, without new index entries.

CREATE TABLE queue (
    id              UUID    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    reverse_path    TEXT,
    original_sender TEXT,
    recipients      TEXT    NOT NULL,
    owner_id        UUID,
    received_at     BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL,
    held            BOOLEAN NOT NULL,
    correlation_id  TEXT    NOT NULL,
    lease_token     UUID,
    lease_until     BIGINT
) WITH (fillfactor = 80);
-- lease_due: unheld messages in due order (`held = FALSE AND
-- next_attempt_at <= now ORDER BY next_attempt_at, id`).
CREATE INDEX queue_due ON queue (held, next_attempt_at, id);
-- queue_stats: the oldest message.
CREATE INDEX queue_received ON queue (received_at);

CREATE TABLE queue_bodies (
    id   UUID  NOT NULL PRIMARY KEY REFERENCES queue (id) ON DELETE CASCADE,
    body BYTEA NOT NULL
);
