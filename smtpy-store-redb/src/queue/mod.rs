//! The durable queue: [`QueueStore`].
//!
//! Tables (see the `schema` module): `queue` (the small, rewritten state),
//! `queue_bodies` (written once), `queue_leases`, and three indexes —
//! `queue_due` (when each unheld message can next be leased),
//! `queue_held`, `queue_by_received`. Enqueues go through the group
//! committer ([`commit`]); every other method is one ordinary write or read
//! transaction.

mod commit;
mod row;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata};
use smtpy_core::StoreResult;
use smtpy_core::ids::MessageId;
use smtpy_core::model::{LeaseToken, Leased, QueuedMessage};
use smtpy_core::store::{Page, PageRequest, QueueStats, QueueStore};
use smtpy_core::time::Timestamp;

pub(crate) use commit::Committer;
pub(crate) use row::QueueRow as BackupQueueRow;
use row::{
    ENTITY, Lease, NewMessage, QueueRow, insert_message, is_queued, load_body, load_lease,
    load_row, move_due, remove_message, save_row,
};

use crate::codec::{Id, TimeId, time_id, time_id_at, time_id_id};
use crate::error::{Error, conflict, exists, not_found};
use crate::schema::{QUEUE, QUEUE_BODIES, QUEUE_BY_RECEIVED, QUEUE_DUE, QUEUE_HELD, Tx};
use crate::store::RedbStore;

/// The last possible `queue_due` key at `now`: everything due by then sorts
/// at or before it.
fn due_by(now: Timestamp) -> TimeId {
    time_id(now, [0xff; 16])
}

/// The row of `id`, or `NotFound`.
fn queued_row(tx: &Tx<'_>, id: &Id) -> Result<QueueRow<'static>, Error> {
    load_row(&*tx.queue()?, id)?.ok_or(not_found(ENTITY))
}

/// Changes one thing about a queued message (operator actions): loads the
/// row, lets `change` edit its hold or schedule, and writes it back with the
/// indexes in step. Nothing is committed if `change` changed nothing.
fn edit_row(
    tx: &Tx<'_>,
    id: MessageId,
    change: impl FnOnce(&mut QueueRow<'static>),
) -> Result<(), Error> {
    let id = id.to_bytes();
    let mut row = queued_row(tx, &id)?;
    let lease = load_lease(&*tx.queue_leases()?, &id)?;
    let (held, next, before) = (row.held, row.next_attempt_at, row.due_at(lease));
    change(&mut row);
    if (row.held, row.next_attempt_at) == (held, next) {
        tx.unchanged();
        return Ok(());
    }
    save_row(tx, id, &row)?;
    if row.held != held {
        let mut index = tx.queue_held()?;
        if row.held {
            index.insert(&id, ())?;
        } else {
            index.remove(&id)?;
        }
    }
    move_due(tx, id, before, row.due_at(lease))
}

#[async_trait]
impl QueueStore for RedbStore {
    async fn enqueue(&self, message: &QueuedMessage) -> StoreResult<()> {
        // Encoded here, on the caller's task, so the committer thread only
        // copies bytes into pages.
        let message = NewMessage::new(message)?;
        Ok(self.committer().submit(message).await?)
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
        let end = due_by(now);
        // Idle workers poll: a snapshot read answers "nothing due" without
        // queueing behind the writer, and without a commit (an fsync).
        let any_due = self
            .read(move |txn| {
                let due = txn.open_table(QUEUE_DUE)?;
                let first = due.range::<&TimeId>(..=&end)?.next().transpose()?;
                Ok(first.is_some())
            })
            .await?;
        if !any_due {
            return Ok(Vec::new());
        }
        let until = now.saturating_add(lease_for);
        self.write(move |tx| {
            let keys = {
                let due = tx.queue_due()?;
                due.range::<&TimeId>(..=&end)?
                    .take(limit)
                    .map(|entry| entry.map(|(k, _)| *k.value()))
                    .collect::<Result<Vec<TimeId>, _>>()?
            };
            if keys.is_empty() {
                tx.unchanged();
                return Ok(Vec::new());
            }
            let rows = tx.queue()?;
            let bodies = tx.queue_bodies()?;
            let mut due = tx.queue_due()?;
            let mut leases = tx.queue_leases()?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let id = time_id_id(&key);
                let row = load_row(&*rows, &id)?
                    .ok_or_else(|| Error::corrupt(ENTITY, "a due entry points at a missing row"))?;
                let lease = Lease {
                    token: LeaseToken::new(),
                    until,
                };
                due.remove(&key)?;
                if let Some(at) = row.due_at(Some(lease)) {
                    due.insert(&time_id(at, id), ())?;
                }
                leases.insert(&id, &lease.to_bytes())?;
                let body = load_body(&*bodies, &id)?;
                out.push(Leased {
                    message: row.into_message(id, body),
                    token: lease.token,
                    until,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn complete_attempt(
        &self,
        token: LeaseToken,
        message: &QueuedMessage,
        follow_ups: &[QueuedMessage],
    ) -> StoreResult<()> {
        let prepared = PreparedCompletion::new(token, message, follow_ups)?;
        self.write(move |tx| complete_in(tx, &prepared)).await
    }

    async fn complete_attempts(
        &self,
        batch: &[smtpy_core::store::Completion],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let prepared = batch
            .iter()
            .map(|c| PreparedCompletion::new(c.token, &c.message, &c.follow_ups))
            .collect::<Result<Vec<_>, _>>()?;
        // One transaction, one commit: each entry's checks run before its
        // writes, so a refused entry (Conflict, NotFound, AlreadyExists)
        // writes nothing and the others proceed; a storage failure aborts all.
        self.write(move |tx| {
            let mut results = Vec::with_capacity(prepared.len());
            for p in &prepared {
                match complete_in(tx, p) {
                    Ok(()) => results.push(Ok(())),
                    Err(Error::Store(e)) => results.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            Ok(results)
        })
        .await
    }

    async fn release_lease(&self, token: LeaseToken, id: MessageId) -> StoreResult<()> {
        let id = id.to_bytes();
        self.write(move |tx| {
            let lease = load_lease(&*tx.queue_leases()?, &id)?;
            let Some(lease) = lease.filter(|l| l.token == token) else {
                tx.unchanged();
                return Ok(());
            };
            let row = load_row(&*tx.queue()?, &id)?
                .ok_or_else(|| Error::corrupt(ENTITY, "a lease without its message"))?;
            tx.queue_leases()?.remove(&id)?;
            move_due(tx, id, row.due_at(Some(lease)), row.due_at(None))
        })
        .await
    }

    async fn get_queued(&self, id: MessageId) -> StoreResult<QueuedMessage> {
        let id = id.to_bytes();
        self.read(move |txn| {
            let row = load_row(&txn.open_table(QUEUE)?, &id)?.ok_or(not_found(ENTITY))?;
            let body = load_body(&txn.open_table(QUEUE_BODIES)?, &id)?;
            Ok(row.into_message(id, body))
        })
        .await
    }

    async fn list_queue(&self, page: PageRequest) -> StoreResult<Page<QueuedMessage>> {
        let limit = page.effective_limit();
        let after = page.after.map(|c| *c.last_id().as_bytes());
        self.read(move |txn| {
            let rows = txn.open_table(QUEUE)?;
            let bodies = txn.open_table(QUEUE_BODIES)?;
            let start = match &after {
                Some(a) => Bound::Excluded(a),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for entry in rows
                .range::<&Id>((start, Bound::Unbounded))?
                .take(limit + 1)
            {
                let (k, v) = entry?;
                let id = *k.value();
                let row: QueueRow<'static> = crate::codec::decode(v.value())?;
                out.push(row.into_message(id, load_body(&bodies, &id)?));
            }
            Ok(Page::from_overfetch(out, limit, |m| *m.id.as_uuid()))
        })
        .await
    }

    async fn delete_queued(&self, id: MessageId) -> StoreResult<()> {
        let id = id.to_bytes();
        self.write(move |tx| {
            let row = queued_row(tx, &id)?;
            let lease = load_lease(&*tx.queue_leases()?, &id)?;
            remove_message(tx, id, &row, lease)
        })
        .await
    }

    async fn set_held(&self, id: MessageId, held: bool) -> StoreResult<()> {
        self.write(move |tx| edit_row(tx, id, |row| row.held = held))
            .await
    }

    async fn retry_now(&self, id: MessageId, now: Timestamp) -> StoreResult<()> {
        self.write(move |tx| edit_row(tx, id, |row| row.next_attempt_at = now))
            .await
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        self.read(|txn| {
            // Table lengths are kept in redb's B-tree headers: O(1), no scan.
            let depth = txn.open_table(QUEUE)?.len()?;
            let held = txn.open_table(QUEUE_HELD)?.len()?;
            let oldest_received_at = txn
                .open_table(QUEUE_BY_RECEIVED)?
                .first()?
                .map(|(k, _)| time_id_at(k.value()));
            Ok(QueueStats {
                depth,
                held,
                oldest_received_at,
            })
        })
        .await
    }
}

/// A completion encoded outside the transaction.
struct PreparedCompletion {
    id: [u8; 16],
    token: LeaseToken,
    done: bool,
    recipients: Vec<smtpy_core::model::QueuedRecipient>,
    attempts: u32,
    next_attempt_at: Timestamp,
    follow_ups: Vec<NewMessage>,
}

impl PreparedCompletion {
    fn new(
        token: LeaseToken,
        message: &QueuedMessage,
        follow_ups: &[QueuedMessage],
    ) -> StoreResult<Self> {
        Ok(Self {
            id: message.id.to_bytes(),
            token,
            done: message.is_done(),
            recipients: message.recipients.clone(),
            attempts: message.attempts,
            next_attempt_at: message.next_attempt_at,
            follow_ups: follow_ups
                .iter()
                .map(NewMessage::new)
                .collect::<Result<Vec<_>, _>>()?,
        })
    }
}

/// `complete_attempt` inside a write transaction: every check before any write.
fn complete_in(tx: &Tx<'_>, p: &PreparedCompletion) -> Result<(), Error> {
    let id = p.id;
    let mut row = queued_row(tx, &id)?;
    let lease = load_lease(&*tx.queue_leases()?, &id)?;
    if lease.map(|l| l.token) != Some(p.token) {
        return Err(conflict(
            ENTITY,
            "the lease lapsed and another worker took the message",
        ));
    }
    for (i, f) in p.follow_ups.iter().enumerate() {
        if f.id == id || is_queued(tx, &f.id)? || p.follow_ups[..i].iter().any(|g| g.id == f.id) {
            return Err(exists(ENTITY));
        }
    }
    if p.done {
        remove_message(tx, id, &row, lease)?;
    } else {
        let before = row.due_at(lease);
        row.recipients = Cow::Owned(p.recipients.clone());
        row.attempts = p.attempts;
        row.next_attempt_at = p.next_attempt_at;
        save_row(tx, id, &row)?;
        tx.queue_leases()?.remove(&id)?;
        move_due(tx, id, before, row.due_at(None))?;
    }
    for f in &p.follow_ups {
        insert_message(tx, f)?;
    }
    Ok(())
}
