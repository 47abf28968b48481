//! [`QueueStore`] for the in-memory store (reference semantics).

use std::time::Duration;

use async_trait::async_trait;

use super::{MemoryStore, QueueEntry, exists, not_found, page_of};
use crate::error::{StoreError, StoreResult};
use crate::ids::MessageId;
use crate::model::{LeaseToken, Leased, QueuedMessage};
use crate::store::{Page, PageRequest, QueueStats, QueueStore};
use crate::time::Timestamp;

const fn lease_lost() -> StoreError {
    StoreError::Conflict {
        entity: "queued message",
        reason: "the lease lapsed and another worker took the message",
    }
}

#[async_trait]
impl QueueStore for MemoryStore {
    async fn enqueue(&self, message: &QueuedMessage) -> StoreResult<()> {
        self.write(|s| {
            if s.queue.contains_key(&message.id) {
                return Err(exists("queued message"));
            }
            s.queue.insert(
                message.id,
                QueueEntry {
                    message: message.clone(),
                    lease: None,
                },
            );
            Ok(())
        })
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        self.write(|s| {
            let mut due: Vec<(Timestamp, MessageId)> = s
                .queue
                .values()
                .filter(|e| {
                    !e.message.held
                        && e.message.next_attempt_at <= now
                        && e.lease.is_none_or(|(_, until)| until <= now)
                })
                .map(|e| (e.message.next_attempt_at, e.message.id))
                .collect();
            due.sort_unstable();
            due.truncate(limit);
            let until = now.saturating_add(lease_for);
            let mut out = Vec::with_capacity(due.len());
            for (_, id) in due {
                if let Some(e) = s.queue.get_mut(&id) {
                    let token = LeaseToken::new();
                    e.lease = Some((token, until));
                    out.push(Leased {
                        message: e.message.clone(),
                        token,
                        until,
                    });
                }
            }
            Ok(out)
        })
    }

    async fn complete_attempt(
        &self,
        token: LeaseToken,
        message: &QueuedMessage,
        follow_ups: &[QueuedMessage],
    ) -> StoreResult<()> {
        self.write(|s| {
            let e = s
                .queue
                .get(&message.id)
                .ok_or(not_found("queued message"))?;
            if e.lease.map(|(t, _)| t) != Some(token) {
                return Err(lease_lost());
            }
            for f in follow_ups {
                if f.id == message.id || s.queue.contains_key(&f.id) {
                    return Err(exists("queued message"));
                }
            }
            let done = message.is_done();
            if done {
                s.queue.remove(&message.id);
            } else if let Some(e) = s.queue.get_mut(&message.id) {
                e.message.recipients.clone_from(&message.recipients);
                e.message.attempts = message.attempts;
                e.message.next_attempt_at = message.next_attempt_at;
                e.lease = None;
            }
            for f in follow_ups {
                s.queue.insert(
                    f.id,
                    QueueEntry {
                        message: f.clone(),
                        lease: None,
                    },
                );
            }
            Ok(())
        })
    }

    async fn release_lease(&self, token: LeaseToken, id: MessageId) -> StoreResult<()> {
        self.write(|s| {
            if let Some(e) = s.queue.get_mut(&id)
                && e.lease.map(|(t, _)| t) == Some(token)
            {
                e.lease = None;
            }
            Ok(())
        })
    }

    async fn get_queued(&self, id: MessageId) -> StoreResult<QueuedMessage> {
        self.read(|s| {
            s.queue
                .get(&id)
                .map(|e| e.message.clone())
                .ok_or(not_found("queued message"))
        })
    }

    async fn list_queue(&self, page: PageRequest) -> StoreResult<Page<QueuedMessage>> {
        self.read(|s| {
            let p = page_of(
                &s.queue,
                page,
                MessageId::from_uuid,
                |e| *e.message.id.as_uuid(),
                |_| true,
            );
            Ok(Page {
                items: p.items.into_iter().map(|e| e.message).collect(),
                next: p.next,
            })
        })
    }

    async fn delete_queued(&self, id: MessageId) -> StoreResult<()> {
        self.write(|s| {
            s.queue
                .remove(&id)
                .map(|_| ())
                .ok_or(not_found("queued message"))
        })
    }

    async fn set_held(&self, id: MessageId, held: bool) -> StoreResult<()> {
        self.write(|s| {
            let e = s.queue.get_mut(&id).ok_or(not_found("queued message"))?;
            e.message.held = held;
            Ok(())
        })
    }

    async fn retry_now(&self, id: MessageId, now: Timestamp) -> StoreResult<()> {
        self.write(|s| {
            let e = s.queue.get_mut(&id).ok_or(not_found("queued message"))?;
            e.message.next_attempt_at = now;
            Ok(())
        })
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        self.read(|s| {
            Ok(QueueStats {
                depth: s.queue.len() as u64,
                held: s.queue.values().filter(|e| e.message.held).count() as u64,
                oldest_received_at: s.queue.values().map(|e| e.message.received_at).min(),
            })
        })
    }
}
