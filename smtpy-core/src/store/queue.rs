//! The durable queue, part of the store so one database holds everything
//! and several instances can share it.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::StoreResult;
use crate::ids::MessageId;
use crate::model::{LeaseToken, Leased, QueuedMessage};

/// One attempt's outcome, for [`QueueStore::complete_attempts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The lease the attempt ran under.
    pub token: LeaseToken,
    /// The message with its recipients' new state.
    pub message: QueuedMessage,
    /// DSNs the attempt produced.
    pub follow_ups: Vec<QueuedMessage>,
}
use crate::store::{Page, PageRequest};
use crate::time::Timestamp;

/// How full the queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages in the queue (held ones included).
    pub depth: u64,
    /// Messages held by an operator.
    pub held: u64,
    /// When the oldest queued message was received.
    pub oldest_received_at: Option<Timestamp>,
}

/// Messages accepted and not yet delivered to every recipient.
///
/// The life of a message: [`enqueue`](Self::enqueue) (durable before the
/// SMTP 250), then repeatedly [`lease_due`](Self::lease_due) → deliver →
/// [`complete_attempt`](Self::complete_attempt) until every recipient is
/// final, when the message leaves the queue. A lease that lapses (its
/// holder died) makes the message due again for anyone: delivery is
/// at-least-once.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug {
    /// Stores a message with its per-recipient state. Durable when it
    /// returns `Ok` — the SMTP layer answers 250 only then. Backends may
    /// group concurrent enqueues into one commit. `AlreadyExists` if the id
    /// is taken.
    async fn enqueue(&self, message: &QueuedMessage) -> StoreResult<()>;

    /// Leases up to `limit` messages that are due (`next_attempt_at <= now`),
    /// not held, and not under an unexpired lease, earliest due first. Each
    /// is leased until `now + lease_for`. Atomic across instances sharing
    /// the store: two callers never lease the same message at once.
    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Leased>>;

    /// Records a delivery attempt and ends the lease, atomically with
    /// enqueueing `follow_ups` (DSNs the attempt produced).
    ///
    /// Writes `message`'s recipients, `attempts` and `next_attempt_at` (the
    /// body and envelope are never rewritten). If every recipient is final
    /// the message leaves the queue. `Conflict` if `token` is not the
    /// message's current lease (it lapsed and someone else took it: their
    /// outcome wins); `NotFound` if the message is gone.
    async fn complete_attempt(
        &self,
        token: LeaseToken,
        message: &QueuedMessage,
        follow_ups: &[QueuedMessage],
    ) -> StoreResult<()>;

    /// Records several attempts, each exactly as
    /// [`complete_attempt`](Self::complete_attempt) would, with one result per
    /// entry in order (a `Conflict` for one does not stop the others).
    ///
    /// Backends override this to record the whole batch in one commit — a
    /// delivery worker finishing 32 messages then pays one fsync, not 32. The
    /// outer error means nothing was recorded (the store failed). The
    /// provided version calls `complete_attempt` for each entry.
    async fn complete_attempts(&self, batch: &[Completion]) -> StoreResult<Vec<StoreResult<()>>> {
        let mut results = Vec::with_capacity(batch.len());
        for c in batch {
            results.push(
                self.complete_attempt(c.token, &c.message, &c.follow_ups)
                    .await,
            );
        }
        Ok(results)
    }

    /// Gives a lease back unrecorded (shutdown): the message is due again at
    /// its `next_attempt_at`. Idempotent; `Ok` if the lease already lapsed.
    async fn release_lease(&self, token: LeaseToken, id: MessageId) -> StoreResult<()>;

    /// A queued message. `NotFound` once it left the queue.
    async fn get_queued(&self, id: MessageId) -> StoreResult<QueuedMessage>;
    /// Queued messages by id (operators' view).
    async fn list_queue(&self, page: PageRequest) -> StoreResult<Page<QueuedMessage>>;
    /// Removes a message from the queue for good (operator). `NotFound` if missing.
    async fn delete_queued(&self, id: MessageId) -> StoreResult<()>;
    /// Holds (or releases) a message: a held message is never leased.
    async fn set_held(&self, id: MessageId, held: bool) -> StoreResult<()>;
    /// Makes a message due at `now` (operator's "retry now").
    async fn retry_now(&self, id: MessageId, now: Timestamp) -> StoreResult<()>;
    /// Depth, held count and oldest message.
    async fn queue_stats(&self) -> StoreResult<QueueStats>;
}
