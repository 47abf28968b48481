//! [`SqlStoreOptions`]: how to open a [`SqlStore`].

use std::str::FromStr;
use std::time::Duration;

use smtpy_core::StoreError;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::SqlStore;
use crate::db::{Db, Dialect, PING_IF_IDLE_FOR, Pool, classify};

/// Connection-pool and dialect settings for [`SqlStore`], as a consuming
/// builder (like sqlx's `PoolOptions`).
///
/// ```no_run
/// # async fn run() -> Result<(), smtpy_core::StoreError> {
/// use std::time::Duration;
/// use smtpy_store_sql::SqlStoreOptions;
///
/// let store = SqlStoreOptions::new()
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(2))
///     .schema("smtpy")
///     .connect("postgres://smtpy@db.internal/mail")
///     .await?;
/// # drop(store); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlStoreOptions {
    max_connections: Option<u32>,
    min_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    busy_timeout: Duration,
    mmap_size: u64,
    cache_size_kib: u32,
    read_connection: bool,
    schema: Option<String>,
    migrate: bool,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Pool size on SQLite when none is set.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Pool size on PostgreSQL when none is set.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

impl SqlStoreOptions {
    /// The defaults described on each setter.
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_connections: None,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            busy_timeout: Duration::from_secs(5),
            mmap_size: 256 << 20,
            cache_size_kib: 16 << 10,
            read_connection: true,
            schema: None,
            migrate: true,
        }
    }

    /// Most connections the pool opens.
    ///
    /// Default: 4 on SQLite — SQLite has one writer at a time (writers of
    /// this process queue on an in-process lock), and in WAL mode a few
    /// connections are enough to let readers run beside it; 10 on
    /// PostgreSQL (sqlx's default) — size it so that `instances ×
    /// (max_connections + 1)` stays under the server's `max_connections`
    /// (the one more is the connection kept for reads, see
    /// [`read_connection`](Self::read_connection)).
    /// An in-memory SQLite database always uses exactly one connection, since
    /// each connection would otherwise see its own private database.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = Some(max.max(1));
        self
    }

    /// Connections kept open even when idle.
    ///
    /// Default: 0 — an idle service holds no pooled connections (only the
    /// one kept for reads, see [`read_connection`](Self::read_connection));
    /// a write after a quiet period pays for one connect.
    #[must_use]
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// How long a call waits for a free connection (or for a new one to be
    /// opened) before failing with [`StoreError::Unavailable`]. On SQLite it
    /// also bounds the wait for the in-process writer lock.
    ///
    /// Default: 5 seconds (sqlx's is 30) — the mail path answers a store
    /// that does not respond with a temporary `451`, and an SMTP client
    /// should get that answer well before its own timeouts; a saturated
    /// pool is better reported than queued behind.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long a connection may sit idle in the pool before it is closed;
    /// `None` keeps idle connections for ever.
    ///
    /// Default: 10 minutes (sqlx's default) — frees server connections of
    /// an idle instance without reconnecting under steady traffic. Ignored
    /// for an in-memory SQLite database, which lives only as long as its
    /// connection.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// Longest life of one connection; `None` for no limit.
    ///
    /// Default: 30 minutes (sqlx's default) — recycling connections lets the
    /// server release per-session memory and lets a fail-over behind a DNS
    /// name take effect. Ignored for an in-memory SQLite database.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = lifetime.into();
        self
    }

    /// SQLite only: how long a statement waits for another process's lock
    /// on the database file before failing with `SQLITE_BUSY`, reported as
    /// [`StoreError::Unavailable`].
    ///
    /// Default: 5 seconds — long enough to ride out another process's
    /// checkpoint or long transaction, short enough for the mail path to
    /// answer `451` instead of stalling. Writers of one process do not
    /// contend here: they queue on an in-process lock first (bounded by
    /// [`acquire_timeout`](Self::acquire_timeout)).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// SQLite only: how many bytes of the database file each connection
    /// maps into memory (`PRAGMA mmap_size`); `0` turns memory-mapped reads
    /// off.
    ///
    /// Default: 256 MiB — reads of mapped pages skip a system call and a
    /// copy each, which is most of a lookup's time in SQLite on a large
    /// table. The mapping is shared with the operating system's page cache
    /// (it costs address space, not memory) and is used for reads only:
    /// writes and their durability are unchanged. The caveat (see SQLite's
    /// documentation of memory-mapped I/O): an I/O error while reading a
    /// mapped page ends the process with `SIGBUS` instead of failing the
    /// call; set `0` on storage where read errors are expected.
    #[must_use]
    pub fn sqlite_mmap_size(mut self, bytes: u64) -> Self {
        self.mmap_size = bytes;
        self
    }

    /// SQLite only: the page cache of each connection, in KiB
    /// (`PRAGMA cache_size = -kib`).
    ///
    /// Default: 16 MiB (SQLite's is 2 MiB) — enough for the inner pages of
    /// the alias indexes of a few million aliases, so a lookup reads only
    /// leaf pages. Each connection of the pool has its own cache, so the
    /// worst case is this times [`max_connections`](Self::max_connections)
    /// plus one (see [`read_connection`](Self::read_connection)).
    #[must_use]
    pub fn sqlite_cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = kib;
        self
    }

    /// Whether to keep one connection out of the pool for reads.
    ///
    /// Default: `true` — a read through the pool costs more than its
    /// statement: sqlx checks each connection it takes back with a ping (a
    /// round trip to the SQLite worker thread or to the server, on a
    /// spawned task), CPU spent beside every lookup of the mail path. Reads
    /// use the kept connection when it is free and the pool when it is
    /// busy (concurrent reads). It runs in autocommit mode like a pooled
    /// one, so every statement sees the latest committed data: nothing is
    /// cached. It is replaced after an error of the connection and after
    /// [`max_lifetime`](Self::max_lifetime); after more than a second
    /// unused (or an interrupted statement) it is pinged before use, and
    /// replaced if that fails. It is one connection more than
    /// [`max_connections`](Self::max_connections), opened at the first read
    /// and kept — also through idle periods: [`idle_timeout`](Self::idle_timeout)
    /// applies to the pool — until [`SqlStore::close`]. An in-memory SQLite
    /// database, whose only connection is the database, never keeps one.
    /// `false` sends every read through the pool.
    #[must_use]
    pub fn read_connection(mut self, keep: bool) -> Self {
        self.read_connection = keep;
        self
    }

    /// PostgreSQL only: keep smtpy's tables in this schema (created if
    /// missing) by setting every connection's `search_path` to it.
    ///
    /// Default: none — the server's `search_path` (usually `public`)
    /// applies. Set it to share one database with other applications, or to
    /// isolate test runs. The name must be a plain identifier (letters,
    /// digits and `_`, not starting with a digit, at most 63 bytes);
    /// anything else is refused with [`StoreError::Invalid`]. Ignored on
    /// SQLite.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Whether [`connect`](Self::connect) applies pending migrations.
    ///
    /// Default: `true` — an embedded store should just work on first start,
    /// and concurrent starts are safe (migrations run under a lock and each
    /// in a transaction). Set `false` where schema changes are a separate
    /// deployment step; then call [`SqlStore::migrate_up`] from that step.
    #[must_use]
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Opens the store at `url`:
    ///
    /// * `sqlite://path/to/file.db?mode=rwc` — a database file, created if
    ///   missing (`mode=rw` requires it to exist). Opened in WAL mode with
    ///   `synchronous=FULL` (a committed write survives a power loss, not
    ///   just a process crash), foreign keys enforced and the busy timeout
    ///   set.
    /// * `sqlite::memory:` — a private in-memory database (for tests; gone
    ///   when the store is dropped).
    /// * `postgres://user:password@host:port/database` (or `postgresql://`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a URL of another scheme or an invalid
    /// option, [`StoreError::Unavailable`] when the database cannot be
    /// reached (refused, timed out, locked), [`StoreError::Backend`] when a
    /// migration fails.
    pub async fn connect(self, url: &str) -> Result<SqlStore, StoreError> {
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Invalid {
                entity: "database url",
                reason: "expected sqlite:…, postgres://… or postgresql://…".into(),
            });
        };
        let invalid = |e: sqlx::Error| StoreError::Invalid {
            entity: "database url",
            reason: e.to_string(),
        };
        let in_memory = dialect == Dialect::Sqlite && is_sqlite_memory(url);
        let pool = match dialect {
            Dialect::Sqlite => {
                let mut connect = SqliteConnectOptions::from_str(url)
                    .map_err(invalid)?
                    .foreign_keys(true)
                    .busy_timeout(self.busy_timeout)
                    .synchronous(SqliteSynchronous::Full)
                    .pragma("mmap_size", self.mmap_size.to_string())
                    .pragma("cache_size", format!("-{}", self.cache_size_kib));
                if !in_memory {
                    connect = connect.journal_mode(SqliteJournalMode::Wal);
                }
                let mut pool = SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                    .acquire_timeout(self.acquire_timeout)
                    .min_connections(self.min_connections);
                pool = if in_memory {
                    pool.max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    pool.max_connections(self.max_connections.unwrap_or(SQLITE_MAX_CONNECTIONS))
                        .idle_timeout(self.idle_timeout)
                        .max_lifetime(self.max_lifetime)
                };
                Pool::Sqlite(
                    pool.connect_with(connect)
                        .await
                        .map_err(|e| classify(dialect, e))?,
                )
            }
            Dialect::Postgres => {
                let mut connect = PgConnectOptions::from_str(url).map_err(invalid)?;
                if let Some(schema) = &self.schema {
                    check_identifier(schema)?;
                    connect = connect.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                    .max_connections(self.max_connections.unwrap_or(POSTGRES_MAX_CONNECTIONS))
                    .min_connections(self.min_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .idle_timeout(self.idle_timeout)
                    .max_lifetime(self.max_lifetime)
                    .connect_with(connect)
                    .await
                    .map_err(|e| classify(dialect, e))?;
                if let Some(schema) = &self.schema {
                    create_schema(&pool, schema).await?;
                }
                Pool::Postgres(pool)
            }
        };
        let store = SqlStore::from_db(
            Db::new(
                pool,
                self.acquire_timeout,
                self.max_lifetime.filter(|_| !in_memory),
                self.read_connection && !in_memory,
            ),
            self.schema.filter(|_| dialect == Dialect::Postgres),
        );
        if self.migrate {
            store.migrate_up().await?;
        }
        Ok(store)
    }
}

/// The pool's check of a connection before handing it out: sqlx's default
/// (`test_before_acquire`) pings every time, a round trip per statement on
/// the mail path; the pool already pings each connection when it takes it
/// back, so only one that has sat idle since is pinged again.
async fn ping_if_idle<C: Connection>(
    conn: &mut C,
    meta: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    if meta.idle_for > PING_IF_IDLE_FOR {
        conn.ping().await?;
    }
    Ok(true)
}

/// `CREATE SCHEMA IF NOT EXISTS`, tolerating a concurrent creation: two
/// instances starting at once can both pass the `IF NOT EXISTS` check, and
/// the loser fails on the catalog's unique index (or with
/// `duplicate_schema`); either way the schema exists afterwards.
async fn create_schema(pool: &sqlx::PgPool, schema: &str) -> Result<(), StoreError> {
    // Checked by the caller: a plain identifier, safe to quote.
    let result = sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(pool)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db))
            if db.is_unique_violation() || db.code().as_deref() == Some("42P06") =>
        {
            Ok(())
        }
        Err(e) => Err(classify(Dialect::Postgres, e)),
    }
}

/// Whether a `sqlite:` URL names an in-memory database.
fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory")
}

/// Accepts plain SQL identifiers only, so they can be quoted into DDL.
fn check_identifier(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            entity: "schema",
            reason: format!(
                "{name:?} is not a plain identifier (letters, digits, _; at most 63 bytes)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://:memory:"));
        assert!(is_sqlite_memory("sqlite://?mode=memory"));
        assert!(!is_sqlite_memory("sqlite://data/smtpy.db?mode=rwc"));
        assert!(!is_sqlite_memory("sqlite:smtpy.db"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_identifier("smtpy").is_ok());
        assert!(check_identifier("smtpy_t_1700000000_ab12").is_ok());
        assert!(check_identifier("").is_err());
        assert!(check_identifier("1abc").is_err());
        assert!(check_identifier("a\"; DROP SCHEMA public; --").is_err());
        assert!(check_identifier(&"a".repeat(64)).is_err());
    }
}
