//! # smtpy-store-sql
//!
//! The SQL storage backend of smtpy: SQLite (one embedded file) and
//! PostgreSQL (one database shared by several smtpy instances) from one
//! crate, built on sqlx with runtime queries. [`SqlStore`] implements every
//! trait of [`smtpy_core::store`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use smtpy_core::Store;
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::model::{Role, User};
//! use smtpy_core::store::UserStore;
//! use smtpy_core::time::{Clock, SystemClock};
//! use smtpy_store_sql::SqlStore;
//!
//! // A database file, created on first use and migrated on connect.
//! let store: Arc<dyn Store> = Arc::new(SqlStore::connect("sqlite://smtpy.db?mode=rwc").await?);
//! // Or: SqlStore::connect("postgres://smtpy@db.internal/mail").await?
//!
//! let user = User::new(EmailAddress::parse("owner@example.org")?, Role::Admin, SystemClock.now());
//! store.create_user(&user).await?;
//! assert_eq!(store.count_users().await?, 1);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! * **Durable when a call returns `Ok`.** SQLite runs in WAL mode with
//!   `synchronous=FULL`: every commit is fsynced, so a committed write
//!   survives a process crash and a power loss. PostgreSQL commits with the
//!   server's settings (keep `synchronous_commit = on`, the default).
//! * **Atomic.** Every method that touches more than one row runs in one
//!   transaction. SQLite write transactions start with `BEGIN IMMEDIATE` and
//!   are serialised in-process; PostgreSQL ones run at READ COMMITTED with
//!   row locks (`SELECT … FOR UPDATE`) where a decision depends on what was
//!   read, and foreign keys back every reference the contracts check.
//! * **Errors** follow the contracts of [`smtpy_core::store`]: unique
//!   constraints become `AlreadyExists`, a stale revision `Conflict`, a
//!   purged alias address `Gone`; a pool timeout, a refused connection or a
//!   database locked past the busy timeout is `Unavailable`.
//!
//! ## Performance
//!
//! * **Bulk creation is set-based.** `create_aliases` reads what its checks
//!   need for the whole batch with a few chunked `IN (…)` queries and writes
//!   with multi-row `INSERT`s, in one transaction.
//! * **Reads use a kept connection.** Single-statement reads (the mail
//!   path's alias lookup among them) run on a connection kept out of the
//!   pool when it is free, which spares the ping sqlx runs on every pooled
//!   connection it takes back; nothing is cached, every read sees the
//!   latest commit. See [`SqlStoreOptions::read_connection`].
//! * **SQLite reads are memory-mapped** and each connection has a 16 MiB
//!   page cache ([`SqlStoreOptions::sqlite_mmap_size`],
//!   [`SqlStoreOptions::sqlite_cache_size_kib`]).
//! * The fixed cost of a statement is sqlx's: on SQLite, each connection
//!   runs on its own thread, so a statement is two thread hand-offs; on
//!   PostgreSQL, a round trip to the server.
//!
//! ## The mail queue
//!
//! [`SqlStore`] also implements [`QueueStore`](smtpy_core::store::QueueStore):
//! bodies are written once, leases use `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL (so several smtpy instances share one queue), and concurrent
//! enqueues on SQLite share one commit (group commit); PostgreSQL shares WAL
//! flushes between concurrent commits itself (`commit_delay` tunes it).
//!
//! ## Schema and migrations
//!
//! Normalised tables with the columns that are queried (ids as UUIDs —
//! 16-byte BLOBs on SQLite —, timestamps as 64-bit unix milliseconds,
//! canonical address columns under UNIQUE indexes); values never queried
//! (rule conditions, DKIM keys, DNS checks, audit details) are JSON text.
//! The versioned, reversible migrations under `migrations/<dialect>/` are
//! embedded in the binary: see [`SqlStore::migrate_up`],
//! [`SqlStore::migrate_down`] and [`SqlStore::migration_status`].
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod backup;
mod codec;
mod db;
mod error;
mod migrate;
mod options;
mod row;
mod store;

use std::fmt;

use smtpy_core::StoreError;
use sqlx::{PgPool, SqlitePool};

pub use backup::{SqlBackupReport, SqlIntegrityReport, verify_sqlite_file};
pub use db::Dialect;
pub use migrate::{LATEST_VERSION, MIGRATIONS_TABLE, MigrationStatus};
pub use options::SqlStoreOptions;

use db::{Db, Pool};

/// A [`Store`](smtpy_core::Store) on SQLite or PostgreSQL.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct SqlStore {
    db: Db,
    schema: Option<String>,
    /// SQLite: the group commit of `enqueue` (see `store::queue`).
    enqueues: store::queue::GroupCommit,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens the store at `url` with the default [`SqlStoreOptions`]
    /// (which applies pending migrations). See
    /// [`SqlStoreOptions::connect`] for the accepted URLs and errors.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        SqlStoreOptions::new().connect(url).await
    }

    fn from_db(db: Db, schema: Option<String>) -> Self {
        Self {
            db,
            schema,
            enqueues: store::queue::GroupCommit::default(),
        }
    }

    /// Which dialect this store speaks.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The PostgreSQL schema the store keeps its tables in, if one was set
    /// with [`SqlStoreOptions::schema`].
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The underlying SQLite pool, to share it or inspect the database
    /// (`None` on PostgreSQL). Writing to smtpy's tables behind the store's
    /// back voids its guarantees.
    #[must_use]
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.db.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// The underlying PostgreSQL pool (`None` on SQLite); same caveat as
    /// [`sqlite_pool`](Self::sqlite_pool).
    #[must_use]
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.db.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// Applies every pending migration, each in its own transaction; a
    /// no-op when the schema is current. Safe to run from several
    /// instances at once (PostgreSQL serialises them with an advisory lock).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if a migration fails (it is rolled back) or
    /// the database records a migration this build does not know or whose
    /// file changed; [`StoreError::Unavailable`] if the database cannot be reached.
    pub async fn migrate_up(&self) -> Result<(), StoreError> {
        migrate::up(&self.db).await
    }

    /// Reverts applied migrations newer than `target_version`, newest
    /// first, each with its `.down.sql`. `0` reverts everything and drops
    /// every smtpy table — **with its data**. The bookkeeping table
    /// ([`MIGRATIONS_TABLE`]) stays.
    ///
    /// # Errors
    ///
    /// As [`migrate_up`](Self::migrate_up).
    pub async fn migrate_down(&self, target_version: i64) -> Result<(), StoreError> {
        migrate::down(&self.db, target_version).await
    }

    /// Every migration this build embeds, in version order, and whether it
    /// is applied to the database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] if the
    /// database cannot be read.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        migrate::status(&self.db).await
    }

    /// Closes every connection of the pool and waits for them to finish;
    /// later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.db.close().await;
    }
}
