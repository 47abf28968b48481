//! [`QueueStore`]: the durable mail queue, shared by every instance on one
//! database.
//!
//! Two tables (migration `0002_queue`): `queue`, the small state an attempt
//! rewrites (envelope, recipients as JSON, schedule, hold, lease), and
//! `queue_bodies`, the message itself, written once at enqueue and deleted
//! with its row (`ON DELETE CASCADE`), never rewritten by an attempt. A
//! lease is the pair `lease_token` / `lease_until` on the row; a message is
//! due when it is not held, `next_attempt_at <= now` and it has no lease or
//! its lease lapsed (`lease_until <= now`). The index
//! `queue_due (held, next_attempt_at, id)` serves that scan in due order.
//!
//! * **Enqueue** is durable when it returns. On SQLite concurrent enqueues
//!   share one commit ([`commit`]); on PostgreSQL each is one autocommit
//!   statement, and concurrent commits share WAL flushes in the server
//!   (operators can widen that window with `commit_delay`).
//! * **Leasing** is one `UPDATE … RETURNING` that picks the due rows,
//!   stamps each with its own random token and returns them with their
//!   bodies. On PostgreSQL the rows are picked with
//!   `FOR UPDATE SKIP LOCKED`, so instances leasing at once never wait on
//!   each other and never take the same row; on SQLite the statement runs
//!   in a `BEGIN IMMEDIATE` transaction, which serialises it with every
//!   other writer (of this process and of others on the file).
//! * **Recording an attempt** is one `UPDATE` (or `DELETE`, when every
//!   recipient is final) guarded by `lease_token = token`; when it matches
//!   no row, a lookup tells `Conflict` (someone else's lease) from
//!   `NotFound`. With follow-ups it runs in a transaction with their
//!   inserts.

mod commit;
mod row;

use std::time::Duration;

use async_trait::async_trait;
use smtpy_core::ids::MessageId;
use smtpy_core::model::{LeaseToken, Leased, QueuedMessage};
use smtpy_core::store::{Page, PageRequest, QueueStats, QueueStore};
use smtpy_core::time::Timestamp;
use smtpy_core::{StoreError, StoreResult};

pub(crate) use commit::GroupCommit;
use row::{ENTITY, NewMessage, body_column, insert, lease_token, message_from_row, queue_columns};

use super::{Where, not_found};
use crate::SqlStore;
use crate::codec::json_text;
use crate::db::{Arg, Dialect, Session, Sql, args};

const fn lease_lost() -> StoreError {
    StoreError::Conflict {
        entity: ENTITY,
        reason: "the lease lapsed and another worker took the message",
    }
}

/// One message with its body, by id (`$1`).
const GET: &str = concat!(
    "SELECT ",
    queue_columns!(),
    ", ",
    body_column!(),
    " FROM queue WHERE queue.id = $1"
);

/// Every message with its body (a page is added by [`Where::page_query`]).
const LIST: &str = concat!(
    "SELECT ",
    queue_columns!(),
    ", ",
    body_column!(),
    " FROM queue"
);

/// Whether anything is due at `$1` (SQLite's idle check, a plain read).
const ANY_DUE: &str = "SELECT 1 FROM queue WHERE held = FALSE AND next_attempt_at <= $1 \
     AND (lease_until IS NULL OR lease_until <= $1) LIMIT 1";

/// Leases up to `$2` messages due at `$1` until `$3`, earliest due first,
/// each with its own random token; returns them with token and body (in no
/// particular order).
const LEASE_DUE: Sql = Sql::Split {
    // Inside BEGIN IMMEDIATE: nobody else writes between the pick and the stamp.
    sqlite: concat!(
        "UPDATE queue SET lease_token = randomblob(16), lease_until = $3 \
         WHERE id IN (SELECT id FROM queue WHERE held = FALSE AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until <= $1) \
         ORDER BY next_attempt_at, id LIMIT $2) \
         RETURNING ",
        queue_columns!(),
        ", queue.lease_token, ",
        body_column!()
    ),
    // The rows are locked as they are picked; rows another instance is
    // leasing right now are skipped, not waited for, and a row whose lease
    // was taken since this statement's snapshot is re-checked and dropped.
    postgres: concat!(
        "WITH due AS (SELECT id FROM queue WHERE held = FALSE AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until <= $1) \
         ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE queue SET lease_token = gen_random_uuid(), lease_until = $3 \
         FROM due WHERE queue.id = due.id \
         RETURNING ",
        queue_columns!(),
        ", queue.lease_token, ",
        body_column!()
    ),
};

impl SqlStore {
    /// How many durable commits [`enqueue`](QueueStore::enqueue) has made,
    /// and how many messages they stored, since the store was opened (its
    /// clones share the counts). On SQLite `messages / commits` is the mean
    /// group-commit batch; on PostgreSQL every enqueue is its own commit.
    /// For tests and benchmarks; not a stable API.
    #[doc(hidden)]
    #[must_use]
    pub fn enqueue_commit_counts(&self) -> (u64, u64) {
        self.enqueues.counts()
    }

    /// A session for one atomic write that is a single statement: on SQLite
    /// a `BEGIN IMMEDIATE` transaction (the write lock is taken before the
    /// statement reads, across processes too); on PostgreSQL an autocommit
    /// statement, one round trip. Finish with [`Session::commit`].
    async fn single_write(&self) -> StoreResult<Session> {
        match self.dialect() {
            Dialect::Sqlite => self.db.write().await,
            Dialect::Postgres => self.db.write_one().await,
        }
    }
}

/// Records `message`'s outcome under `token` and ends the lease, or removes
/// the message when every recipient is final. `Ok(false)` if the lease does
/// not match (or the message is gone): nothing was written.
async fn record_attempt(
    s: &mut Session,
    token: LeaseToken,
    message: &QueuedMessage,
    recipients: String,
) -> StoreResult<bool> {
    let changed = if message.is_done() {
        s.execute(
            "DELETE FROM queue WHERE id = $1 AND lease_token = $2",
            args![*message.id.as_uuid(), token.0],
        )
        .await?
    } else {
        s.execute(
            "UPDATE queue SET recipients = $3, attempts = $4, next_attempt_at = $5, \
             lease_token = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2",
            args![
                *message.id.as_uuid(),
                token.0,
                recipients,
                i64::from(message.attempts),
                message.next_attempt_at,
            ],
        )
        .await?
    };
    Ok(changed > 0)
}

/// Why a lease-guarded write matched nothing: `Conflict` if the message is
/// still queued (under someone else's lease), else `NotFound`.
async fn lost_or_gone(s: &mut Session, id: MessageId) -> StoreError {
    match s
        .exists("SELECT 1 FROM queue WHERE id = $1", args![*id.as_uuid()])
        .await
    {
        Ok(true) => lease_lost(),
        Ok(false) => not_found(ENTITY),
        Err(e) => e.into(),
    }
}

/// Runs a single-row operator update (`$1` is the id); `NotFound` if no row.
async fn update_one(store: &SqlStore, sql: &'static str, args: Vec<Arg>) -> StoreResult<()> {
    let mut s = store.db.write_one().await?;
    if s.execute(sql, args).await? == 0 {
        return Err(not_found(ENTITY));
    }
    Ok(())
}

#[async_trait]
impl QueueStore for SqlStore {
    async fn enqueue(&self, message: &QueuedMessage) -> StoreResult<()> {
        let message = NewMessage::new(message)?;
        match self.dialect() {
            Dialect::Sqlite => self.enqueues.submit(&self.db, message).await,
            Dialect::Postgres => {
                let mut s = self.db.write_one().await?;
                if !insert(&mut s, message).await? {
                    return Err(StoreError::AlreadyExists { entity: ENTITY });
                }
                self.enqueues.count_single();
                Ok(())
            }
        }
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if self.dialect() == Dialect::Sqlite {
            // Idle workers poll: a plain read answers "nothing due" without
            // queueing behind the writer lock (enqueues hold it).
            let mut s = self.db.read().await?;
            if !s.exists(ANY_DUE, args![now]).await? {
                return Ok(Vec::new());
            }
        }
        let until = now.saturating_add(lease_for);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut s = self.single_write().await?;
        let rows = s.fetch_all(LEASE_DUE, args![now, limit, until]).await?;
        s.commit().await?;
        let mut leased = rows
            .iter()
            .map(|r| {
                Ok(Leased {
                    message: message_from_row(r)?,
                    token: lease_token(r)?,
                    until,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        leased.sort_unstable_by_key(|l| (l.message.next_attempt_at, l.message.id));
        Ok(leased)
    }

    async fn complete_attempt(
        &self,
        token: LeaseToken,
        message: &QueuedMessage,
        follow_ups: &[QueuedMessage],
    ) -> StoreResult<()> {
        let recipients = json_text(&message.recipients, ENTITY)?;
        if follow_ups.is_empty() {
            // The common case: one guarded statement, atomic on its own.
            let mut s = self.db.write_one().await?;
            if !record_attempt(&mut s, token, message, recipients).await? {
                return Err(lost_or_gone(&mut s, message.id).await);
            }
            return Ok(());
        }
        let follow_ups = follow_ups
            .iter()
            .map(|f| Ok((f.id, NewMessage::new(f)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut s = self.db.write().await?;
        if !record_attempt(&mut s, token, message, recipients).await? {
            return Err(lost_or_gone(&mut s, message.id).await);
        }
        // Returning early drops the session: the transaction rolls back and
        // the outcome is not recorded either.
        for (id, follow_up) in follow_ups {
            if id == message.id || !insert(&mut s, follow_up).await? {
                return Err(StoreError::AlreadyExists { entity: ENTITY });
            }
        }
        s.commit().await
    }

    async fn release_lease(&self, token: LeaseToken, id: MessageId) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            "UPDATE queue SET lease_token = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_token = $2",
            args![*id.as_uuid(), token.0],
        )
        .await?;
        Ok(())
    }

    async fn get_queued(&self, id: MessageId) -> StoreResult<QueuedMessage> {
        let mut s = self.db.read().await?;
        s.fetch_optional(GET, args![*id.as_uuid()])
            .await?
            .as_ref()
            .map(message_from_row)
            .transpose()?
            .ok_or_else(|| not_found(ENTITY))
    }

    async fn list_queue(&self, page: PageRequest) -> StoreResult<Page<QueuedMessage>> {
        let mut w = Where::new();
        w.after("queue.id", &page);
        let (sql, args) = w.page_query(LIST, "queue.id", &page);
        let mut s = self.db.read().await?;
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |m| {
            *m.id.as_uuid()
        }))
    }

    async fn delete_queued(&self, id: MessageId) -> StoreResult<()> {
        // The body goes with the row (ON DELETE CASCADE).
        update_one(
            self,
            "DELETE FROM queue WHERE id = $1",
            args![*id.as_uuid()],
        )
        .await
    }

    async fn set_held(&self, id: MessageId, held: bool) -> StoreResult<()> {
        update_one(
            self,
            "UPDATE queue SET held = $2 WHERE id = $1",
            args![*id.as_uuid(), held],
        )
        .await
    }

    async fn retry_now(&self, id: MessageId, now: Timestamp) -> StoreResult<()> {
        update_one(
            self,
            "UPDATE queue SET next_attempt_at = $2 WHERE id = $1",
            args![*id.as_uuid(), now],
        )
        .await
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let mut s = self.db.read().await?;
        let row = s
            .fetch_optional(
                // Three subqueries so each uses its index: the held count
                // reads `queue_due`'s held entries only, the oldest one
                // `queue_received` entry; the depth is a count of the
                // smallest index.
                "SELECT (SELECT COUNT(*) FROM queue) AS depth, \
                 (SELECT COUNT(*) FROM queue WHERE held = TRUE) AS held, \
                 (SELECT MIN(received_at) FROM queue) AS oldest",
                args![],
            )
            .await?
            .ok_or_else(|| StoreError::backend(self.dialect().name(), "query returned no row"))?;
        Ok(QueueStats {
            depth: row.u64("depth")?,
            held: row.u64("held")?,
            oldest_received_at: row.opt_ts("oldest")?,
        })
    }
}
