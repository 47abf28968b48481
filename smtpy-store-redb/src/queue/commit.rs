//! Group commit for [`enqueue`](smtpy_core::store::QueueStore::enqueue):
//! concurrent enqueues share one durable redb commit (one fsync).
//!
//! A dedicated thread owns the receiving end of a channel. `enqueue`
//! encodes its row on the caller's task, sends it with a one-shot reply
//! channel and waits. The thread blocks for the first message, then takes
//! whatever else is already waiting (up to [`MAX_BATCH`] messages or
//! [`MAX_BATCH_BYTES`] of bodies), writes them all in one write transaction
//! with [`Durability::Immediate`](redb::Durability::Immediate), commits
//! once and answers every waiter with its own result. Nothing waits on
//! purpose: batches form by themselves because enqueues arriving during
//! one commit's fsync are all there when the next batch is taken. A lone
//! enqueue on an idle store commits at once, as an unbatched write would.
//!
//! Each message is checked before it is written — its id must be free in
//! the table, which already holds the batch's earlier messages — so a
//! duplicate fails only itself (`AlreadyExists`). A failure of the
//! transaction itself (I/O) fails every message of the batch; none of them
//! was stored.
//!
//! Dropping the [`Committer`] closes the channel; the thread commits what is
//! still queued (the channel delivers buffered messages before reporting
//! the disconnect) and ends, and the drop waits for it, so the database is
//! closed when the store's drop returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use redb::Database;
use tokio::sync::oneshot;

use super::row::{NewMessage, insert_message, is_queued};
use crate::error::{Error, exists};
use crate::schema::Tx;

/// Most messages in one commit: bounds how long the write lock is held
/// and how much the transaction buffers.
pub(crate) const MAX_BATCH: usize = 256;

/// Most body bytes in one commit (a batch stops growing once it holds
/// this much; one large message can exceed it alone).
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// One waiting enqueue.
struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// Commits and messages since the store opened (tests and benchmarks).
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    messages: AtomicU64,
}

/// The group-commit thread and the sending end of its channel.
pub(crate) struct Committer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Committer {
    /// Starts the thread, which shares `db`.
    pub(crate) fn start(db: Arc<Database>) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread = std::thread::Builder::new()
            .name("smtpy-redb-commit".into())
            .spawn({
                let counters = Arc::clone(&counters);
                move || run(&db, &receiver, &counters)
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            counters,
        })
    }

    /// Hands `message` to the thread and waits until it is durable (or
    /// refused). If the caller stops waiting, the message is still written.
    pub(crate) async fn submit(&self, message: NewMessage) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(Error::CommitterStopped)?
            .send(Job { message, reply })
            .map_err(|_| Error::CommitterStopped)?;
        answer.await.map_err(|_| Error::CommitterStopped)?
    }

    /// Durable commits made, and messages they stored.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counters.commits.load(Ordering::Relaxed),
            self.counters.messages.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the queue committer thread panicked");
        }
    }
}

/// The thread: batch, commit, answer, until the channel closes.
fn run(db: &Database, receiver: &mpsc::Receiver<Job>, counters: &Counters) {
    while let Ok(first) = receiver.recv() {
        let mut bytes = first.message.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match receiver.try_recv() {
                Ok(job) => {
                    bytes += job.message.body.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        match commit(db, &batch) {
            Ok(outcomes) => {
                let stored = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                if stored > 0 {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters.messages.fetch_add(stored, Ordering::Relaxed);
                }
                tracing::trace!(batch = batch.len(), stored, "queue group commit");
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    // A waiter that gave up is not an error: its message is stored.
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = batch.len(), "queue group commit failed");
                let shared = Arc::new(e);
                for job in batch {
                    let _ = job.reply.send(Err(Error::Batch(Arc::clone(&shared))));
                }
            }
        }
    }
}

/// Writes `batch` in one transaction: each message's own outcome, or the
/// transaction's failure (nothing stored).
fn commit(db: &Database, batch: &[Job]) -> Result<Vec<Result<(), Error>>, Error> {
    let txn = db.begin_write()?;
    let written = {
        let tx = Tx::new(&txn);
        batch
            .iter()
            .map(|job| -> Result<Result<(), Error>, Error> {
                if is_queued(&tx, &job.message.id)? {
                    return Ok(Err(exists(super::row::ENTITY)));
                }
                insert_message(&tx, &job.message)?;
                Ok(Ok(()))
            })
            .collect::<Result<Vec<_>, Error>>()
    };
    match written {
        Ok(outcomes) if outcomes.iter().any(Result::is_ok) => {
            txn.commit()?;
            Ok(outcomes)
        }
        other => {
            if let Err(e) = txn.abort() {
                tracing::warn!(error = %e, "aborting a queue commit failed");
            }
            other
        }
    }
}
