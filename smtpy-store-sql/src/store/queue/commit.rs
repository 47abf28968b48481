//! Group commit for [`enqueue`](smtpy_core::store::QueueStore::enqueue) on
//! SQLite: concurrent enqueues share one durable commit (one fsync of the
//! WAL).
//!
//! `enqueue` encodes its message on the caller's task, appends it with a
//! one-shot reply channel to the store's pending list and waits. If no
//! commit is running, it spawns one: a task that takes everything pending
//! (up to [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`] of bodies), writes
//! it in one `BEGIN IMMEDIATE` transaction, commits once and answers every
//! waiter with its own result, then takes what arrived meanwhile, until
//! nothing is pending and the task ends. Nothing waits on purpose: batches
//! form by themselves because enqueues arriving during one commit's fsync
//! are all pending when the next batch is taken. A lone enqueue on an idle
//! store commits at once, as an unbatched write would. (The same design as
//! the redb backend's committer, with a task per burst instead of a thread
//! per store: nothing outlives the store, and commits run on the callers'
//! runtime.)
//!
//! Rows are inserted with `ON CONFLICT (id) DO NOTHING RETURNING id`, so a
//! duplicate id — already stored, or earlier in the same batch — fails only
//! itself (`AlreadyExists`). A failure of the transaction itself (I/O, a lock held
//! past the timeouts) fails every message of the batch; none of them was
//! stored. The commit runs on its own task: a caller that stops waiting (its
//! SMTP session dropped) neither cancels the batch nor loses its message.
//!
//! PostgreSQL needs none of this: each enqueue is one autocommit statement,
//! and the server already lets concurrent commits share a WAL flush (its
//! own group commit, tunable with `commit_delay` / `commit_siblings`).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use smtpy_core::{StoreError, StoreResult};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::row::{ENTITY, INSERT_COLUMNS, NewMessage, insert_columns};
use crate::db::{Arg, Db};

/// Most messages in one commit: bounds how long the write lock is held
/// (every other writer of the database waits for it).
pub(crate) const MAX_BATCH: usize = 256;

/// Most body bytes in one commit (a batch stops growing once it holds this
/// much; one large message can exceed it alone).
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// One waiting enqueue.
struct Job {
    message: NewMessage,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Enqueues waiting for a commit, and whether a commit task is running.
#[derive(Default)]
struct Pending {
    jobs: VecDeque<Job>,
    draining: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Durable commits that stored at least one message.
    commits: AtomicU64,
    /// Messages those commits stored.
    messages: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it; a poisoned list is still consistent.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, stored: u64) {
        if stored > 0 {
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.messages.fetch_add(stored, Ordering::Relaxed);
        }
    }
}

/// The group commit of one store (shared by its clones).
#[derive(Clone, Default)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (commits, messages) = self.counts();
        f.debug_struct("GroupCommit")
            .field("commits", &commits)
            .field("messages", &messages)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Stores `message` in the next commit on `db` and waits until it is
    /// durable (or refused). If the caller stops waiting, the message is
    /// still written.
    pub(crate) async fn submit(&self, db: &Db, message: NewMessage) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut pending = self.shared.pending();
            pending.jobs.push_back(Job { message, reply });
            !std::mem::replace(&mut pending.draining, true)
        };
        if start {
            tokio::spawn(drain(db.clone(), Arc::clone(&self.shared)));
        }
        answer.await.map_err(|_| {
            StoreError::unavailable(
                "the queue's group commit stopped before this message was stored",
            )
        })?
    }

    /// Records one commit of one message made without batching (PostgreSQL).
    pub(crate) fn count_single(&self) {
        self.shared.count(1);
    }

    /// Durable commits made, and messages they stored.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.commits.load(Ordering::Relaxed),
            self.shared.messages.load(Ordering::Relaxed),
        )
    }
}

/// Resets the running flag if the commit task ends abnormally (a panic, or
/// its runtime shutting down mid-commit), failing what is still pending:
/// with no task left to take them, those waiters would wait for ever.
struct Draining {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for Draining {
    fn drop(&mut self) {
        if !self.finished {
            let abandoned = {
                let mut pending = self.shared.pending();
                pending.draining = false;
                std::mem::take(&mut pending.jobs)
            };
            // Dropping the reply senders answers "stopped" (Unavailable).
            drop(abandoned);
        }
    }
}

/// The commit task: batch, commit, answer, until nothing is pending.
async fn drain(db: Db, shared: Arc<Shared>) {
    let mut guard = Draining {
        shared,
        finished: false,
    };
    loop {
        let batch = {
            let mut pending = guard.shared.pending();
            if pending.jobs.is_empty() {
                // Under the lock: an enqueue after this starts a new task.
                pending.draining = false;
                guard.finished = true;
                return;
            }
            take_batch(&mut pending.jobs)
        };
        let (messages, replies): (Vec<NewMessage>, Vec<_>) =
            batch.into_iter().map(|j| (j.message, j.reply)).unzip();
        match commit(&db, messages).await {
            Ok(outcomes) => {
                let stored = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                guard.shared.count(stored);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A waiter that gave up is not an error: its message is stored.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let shared_error = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(batch_failed(&shared_error)));
                }
            }
        }
    }
}

/// The oldest pending jobs, up to the batch limits (at least one).
fn take_batch(jobs: &mut VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::with_capacity(jobs.len().min(MAX_BATCH));
    let mut bytes = 0;
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        let Some(job) = jobs.pop_front() else {
            break;
        };
        bytes += job.message.body_len();
        batch.push(job);
    }
    batch
}

/// Writes `batch` in one transaction: each message's own outcome, or the
/// transaction's failure (nothing stored).
///
/// The rows go in with multi-row `INSERT … ON CONFLICT (id) DO NOTHING
/// RETURNING id`, then the bodies of those inserted, so a batch costs a few
/// statements rather than two per message (each statement is two thread
/// hand-offs to sqlx's SQLite worker). SQLite inserts `VALUES` rows in
/// order, so of two messages with one id in a batch the first is stored.
async fn commit(db: &Db, batch: Vec<NewMessage>) -> StoreResult<Vec<StoreResult<()>>> {
    let n = batch.len();
    let mut s = db.write().await?;
    let mut inserted: HashSet<Uuid> = HashSet::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut messages = batch.into_iter();
    for size in chunk_sizes(n) {
        let mut args = Vec::with_capacity(size * INSERT_COLUMNS);
        for m in messages.by_ref().take(size) {
            args.extend(m.row);
            bodies.push((m.id, m.body));
        }
        let sql = format!(
            concat!(
                "INSERT INTO queue (",
                insert_columns!(),
                ") VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            tuples(INSERT_COLUMNS, size)
        );
        for row in s.fetch_all(sql, args).await? {
            inserted.insert(row.uuid("id")?);
        }
    }
    let mut outcomes = Vec::with_capacity(n);
    let mut stored = Vec::with_capacity(inserted.len());
    for (id, body) in bodies {
        // `remove`: only the first message with an inserted id was stored.
        if inserted.remove(&id) {
            outcomes.push(Ok(()));
            stored.push((id, body));
        } else {
            outcomes.push(Err(StoreError::AlreadyExists { entity: ENTITY }));
        }
    }
    if stored.is_empty() {
        // Dropping the session rolls back; nothing was written.
        return Ok(outcomes);
    }
    let mut stored = stored.into_iter();
    for size in chunk_sizes(stored.len()) {
        let mut args = Vec::with_capacity(size * 2);
        for (id, body) in stored.by_ref().take(size) {
            args.push(Arg::from(id));
            args.push(Arg::from(body));
        }
        let sql = format!(
            "INSERT INTO queue_bodies (id, body) VALUES {}",
            tuples(2, size)
        );
        s.execute(sql, args).await?;
    }
    s.commit().await?;
    Ok(outcomes)
}

/// `n` as a sum of distinct powers of two, largest first (25 → 16, 8, 1):
/// the sizes of the multi-row statements for `n` rows. Each size is its own
/// prepared statement, cached per connection, so batches of any size share
/// a handful of statements. `n` is at most [`MAX_BATCH`] (256 rows of 12
/// columns are 3,072 parameters, far below SQLite's limit of 32,766).
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| n & size != 0)
}

/// `(?, ?), (?, ?)`: `rows` tuples of `cols` anonymous parameters (SQLite
/// binds them in order, and finds anonymous ones without a name lookup).
fn tuples(cols: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(", "));
    vec![one; rows].join(", ")
}

/// One waiter's copy of a failure shared by its whole batch, keeping its
/// class: `Unavailable` stays retryable as such.
fn batch_failed(e: &Arc<StoreError>) -> StoreError {
    let source = BatchFailed(Arc::clone(e));
    match **e {
        StoreError::Unavailable { .. } => StoreError::unavailable(source),
        _ => StoreError::backend("sqlite", source),
    }
}

/// The failure of a group commit, shared by every message of its batch.
#[derive(Debug)]
struct BatchFailed(Arc<StoreError>);

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the group commit of this message failed: {}", self.0)
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_distinct_powers_of_two() {
        let sizes = |n| chunk_sizes(n).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(25), vec![16, 8, 1]);
        assert_eq!(sizes(MAX_BATCH), vec![MAX_BATCH]);
        for n in 0..=MAX_BATCH {
            assert_eq!(chunk_sizes(n).sum::<usize>(), n);
        }
    }

    #[test]
    fn tuples_are_anonymous_parameters() {
        assert_eq!(tuples(2, 1), "(?, ?)");
        assert_eq!(tuples(3, 2), "(?, ?, ?), (?, ?, ?)");
    }
}
