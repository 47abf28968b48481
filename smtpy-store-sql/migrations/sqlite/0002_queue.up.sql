-- smtpy schema v2 (SQLite): the durable mail queue.
--
-- `queue` holds the small state an attempt rewrites (envelope, recipients
-- as JSON, schedule, lease); `queue_bodies` holds the message, written once
-- at enqueue and deleted with its row (ON DELETE CASCADE), never rewritten.
-- A lease is `lease_token` + `lease_until`; a lapsed one (lease_until <= now)
-- no longer protects the message.

CREATE TABLE queue (
    id              BLOB    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL,
    reverse_path    TEXT,
    original_sender TEXT,
    recipients      TEXT    NOT NULL,
    owner_id        BLOB,
    received_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    held            BOOLEAN NOT NULL,
    correlation_id  TEXT    NOT NULL,
    lease_token     BLOB,
    lease_until     INTEGER
);
-- lease_due: unheld messages in due order (`held = FALSE AND
-- next_attempt_at <= now ORDER BY next_attempt_at, id`).
CREATE INDEX queue_due ON queue (held, next_attempt_at, id);
-- queue_stats: the oldest message.
CREATE INDEX queue_received ON queue (received_at);

CREATE TABLE queue_bodies (
    id   BLOB NOT NULL PRIMARY KEY REFERENCES queue (id) ON DELETE CASCADE,
    body BLOB NOT NULL
);
