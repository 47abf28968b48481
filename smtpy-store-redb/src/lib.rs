//! # smtpy-store-redb
//!
//! The embedded [redb](https://docs.rs/redb) backend of smtpy: every
//! [`Store`](smtpy_core::Store) trait in one file, for a single process. It
//! is the default store of the `smtpy` facade.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("smtpy.redb");
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use smtpy_core::address::{DomainName, EmailAddress};
//! use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
//! use smtpy_core::store::{AliasStore, DomainStore, MailboxStore, UserStore};
//! use smtpy_core::time::{Clock, SystemClock};
//! use smtpy_store_redb::RedbStore;
//!
//! // Creates the file if it does not exist.
//! let store = RedbStore::open(&path)?;
//!
//! let now = SystemClock.now();
//! let user = User::new(EmailAddress::parse("owner@example.org")?, Role::User, now);
//! store.create_user(&user).await?;
//! let domain = Domain::new(DomainName::parse("alias.example")?, user.id, "token".into(), now);
//! store.create_domain(&domain).await?;
//! let mailbox = Mailbox::new(user.id, EmailAddress::parse("me@mail.example")?, now);
//! store.create_mailbox(&mailbox).await?;
//! let alias = Alias::new(EmailAddress::parse("shop@alias.example")?, user.id, domain.id, vec![mailbox.id], now);
//! store.create_alias(&alias).await?;
//!
//! // The mail path's lookup: case-insensitive, live aliases only.
//! let found = store.find_alias_by_address(&EmailAddress::parse("SHOP@Alias.Example")?).await?;
//! assert_eq!(found.map(|a| a.id), Some(alias.id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! * **Atomic and durable.** Each method is one redb transaction; writes
//!   commit with redb's default [`Durability::Immediate`](redb::Durability),
//!   so the data is on disk (fsync) when the method returns `Ok`. The one
//!   exception is [`enqueue`](smtpy_core::store::QueueStore::enqueue),
//!   whose concurrent calls share a transaction (see [The queue](#the-queue)):
//!   still durable on `Ok`, still all-or-nothing per message.
//! * **Indexes never drift.** Every secondary index (alias by address, by
//!   owner, by domain; user by email; …) is written in the same write
//!   transaction as its row. The table layout is documented in the
//!   `schema` module source.
//! * **Off the async runtime.** Write transactions (which fsync) run on
//!   tokio's blocking pool (`spawn_blocking`). Reads run under
//!   `block_in_place` on the multi-thread runtime — tokio moves the worker's
//!   other tasks away while the read runs, and a cached point lookup costs a
//!   few microseconds instead of a thread hand-off — and on the blocking pool
//!   elsewhere. Reads run concurrently on MVCC snapshots, and
//!   redb runs write transactions one at a time (which is also what makes
//!   [`check_rate`](smtpy_core::store::RateLimitStore::check_rate) exact).
//! * **Versioned.** Rows carry a one-byte format version and the file a
//!   schema version: opening a file written by an older smtpy upgrades it
//!   in one transaction, and a file from a newer smtpy is refused with
//!   [`OpenError::SchemaTooNew`] without being touched. A row that does not
//!   decode is reported as a `Backend` error, never a panic.
//! * **One process.** redb locks the file: a second open fails with
//!   [`OpenError::AlreadyOpen`] ([`StoreError::Unavailable`](smtpy_core::StoreError::Unavailable)
//!   once converted). Use the SQL backend's PostgreSQL mode for several
//!   instances.
//!
//! ## The delivery event log
//!
//! [`EventStore`](smtpy_core::store::EventStore) keeps each event once,
//! plus one small index entry per field it names (owner, alias, mailbox,
//! message) and one by time, all written in the append's one transaction.
//! The index entries carry the event's time and kind, so a bounce-threshold
//! count (`Bounced` events of a mailbox since an instant) reads only the
//! mailbox's index entries, never a row; a list walks the most selective
//! index newest first and reads only the rows it returns. Retention purges
//! walk the time index up to the cut-off.
//!
//! ## The queue
//!
//! [`QueueStore`](smtpy_core::store::QueueStore) keeps each message in
//! two places: a small row (envelope, per-recipient state, schedule) that
//! every attempt rewrites, and the body, written once at enqueue and never
//! again — recording an attempt on a 25 MB message writes a few hundred
//! bytes. A due index holds each unheld message once, keyed by the instant
//! it can next be leased (`max(next_attempt_at, lease end)`): leasing reads
//! only the entries it takes, a lapsed lease is found like any due
//! message, and held messages are never read. `lease_due` with nothing due
//! answers from a snapshot without taking the write lock or committing, so
//! idle delivery workers polling cost no fsyncs. Queue depth and the held
//! count come from redb's B-tree lengths (no scan), the oldest message from
//! a `received_at` index.
//!
//! ### Group commit
//!
//! The SMTP layer answers 250 only once `enqueue` returns, so `enqueue` is
//! the hot path, and one fsync per message is what caps a classic MTA.
//! Here a dedicated thread owns the queue's inserts: `enqueue` encodes the
//! message's row on the caller's task, hands it (with the body, shared, not
//! copied) to the thread over a channel and awaits the answer. The thread
//! takes every message waiting — up to 256 messages or 64 MiB of bodies —
//! writes them in **one** write transaction, commits once with
//! `Durability::Immediate` (one fsync), then answers each caller with its
//! own result: a duplicate id fails only that message with
//! `AlreadyExists` (ids are checked before each insert, against the table
//! and the batch's earlier messages); an I/O failure fails the whole batch,
//! none of it stored. There is no timer and no artificial delay: a lone
//! enqueue commits at once, and batches form by themselves from the
//! enqueues that arrive while the previous commit's fsync runs, so the
//! batch grows with the load and the fsyncs per message fall with it.
//!
//! Other queue writes (leases, outcomes, operator actions) are ordinary
//! write transactions; redb runs them one at a time with the batches.
//! If an `enqueue` future is dropped after handing its message over, the
//! message is still written (at-least-once, like everything in the queue).
//! Dropping the store closes the channel: the thread commits whatever is
//! still waiting, then stops, and the drop waits for it (at most one
//! commit), so the file is closed when the drop returns.

mod accounts;
mod activity;
mod aliases;
mod backup;
mod codec;
mod contacts;
mod control;
mod domains;
mod error;
mod events;
mod queue;
mod rules;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub use backup::{
    BackupError, BackupReport, CURRENT_SCHEMA_VERSION, IntegrityReport, schema_version, verify,
};
pub use error::OpenError;
pub use store::{DEFAULT_CACHE_SIZE, RedbOptions, RedbStore};
