//! One small query interface over the two dialects.
//!
//! The store's operations are written once against [`Session`]: SQL text with
//! `$1`, `$2`… placeholders (both SQLite and PostgreSQL accept them), an
//! argument list of [`Arg`]s and rows read through [`Row`]. Where the two
//! dialects need different SQL, a [`Sql::Split`] carries both texts.
//!
//! Read sessions run in autocommit mode, on the connection the store keeps
//! out of the pool for reads when it is free (see [`Held`]), else on a
//! pooled one.
//!
//! Write sessions are transactions. On SQLite they start with
//! `BEGIN IMMEDIATE` (the write lock is taken up front, so a transaction that
//! reads and then writes never fails half-way with `SQLITE_BUSY`) and are
//! serialised in-process by an async mutex, so writers of one process queue
//! without polling the busy handler. On PostgreSQL they run at READ COMMITTED
//! and take row locks (`FOR UPDATE`) where a decision depends on a row read
//! earlier in the transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use smtpy_core::StoreError;
use smtpy_core::ids::{
    AliasId, ApiKeyId, AuditEventId, ContactId, DomainId, EventId, InvitationId, MailboxId,
    MessageId, RuleId, UserId,
};
use smtpy_core::model::SecretHash;
use smtpy_core::time::Timestamp;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Database, Encode, PgPool, Postgres, Sqlite, SqlitePool, Type};
use sqlx::{Connection, PgConnection, SqlSafeStr, SqlStr, SqliteConnection, Transaction};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};
use uuid::Uuid;

pub(crate) use crate::error::{DbError, DbResultExt, classify, is_temporary};
pub(crate) use crate::row::Row;

/// Which SQL dialect a [`SqlStore`](crate::SqlStore) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite (embedded, one file).
    Sqlite,
    /// PostgreSQL (shared by several instances).
    Postgres,
}

impl Dialect {
    /// The backend name used in logs and errors: `"sqlite"` or `"postgres"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// SQL text, shared by both dialects or one per dialect.
#[derive(Debug, Clone)]
pub(crate) enum Sql {
    /// The same text for both.
    Same(&'static str),
    /// Different texts.
    Split {
        sqlite: &'static str,
        postgres: &'static str,
    },
    /// Text built at run time from fixed fragments (never from input).
    Built(String),
}

impl Sql {
    fn into_sql_str(self, dialect: Dialect) -> SqlStr {
        match (self, dialect) {
            (Sql::Same(s), _) => s.into_sql_str(),
            (Sql::Split { sqlite, .. }, Dialect::Sqlite) => sqlite.into_sql_str(),
            (Sql::Split { postgres, .. }, Dialect::Postgres) => postgres.into_sql_str(),
            (Sql::Built(s), _) => AssertSqlSafe(s).into_sql_str(),
        }
    }
}

impl From<&'static str> for Sql {
    fn from(s: &'static str) -> Self {
        Sql::Same(s)
    }
}

impl From<String> for Sql {
    fn from(s: String) -> Self {
        Sql::Built(s)
    }
}

/// `SELECT …` that locks the rows it reads on PostgreSQL (`FOR UPDATE`);
/// SQLite needs no row lock inside its `BEGIN IMMEDIATE` transactions.
macro_rules! for_update {
    ($sql:literal) => {
        $crate::db::Sql::Split {
            sqlite: $sql,
            postgres: concat!($sql, " FOR UPDATE"),
        }
    };
}
pub(crate) use for_update;

/// Builds a `Vec<Arg>` from values convertible into [`Arg`].
macro_rules! args {
    () => { Vec::<$crate::db::Arg>::new() };
    ($($value:expr),+ $(,)?) => { vec![$($crate::db::Arg::from($value)),+] };
}
pub(crate) use args;

/// One bound parameter. Every variant is nullable and typed, so PostgreSQL
/// always knows a parameter's type, even for `NULL`.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Uuid(Option<Uuid>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

macro_rules! arg_from {
    ($($ty:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$ty> for Arg {
            fn from($v: $ty) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v)),
    Option<i64> => |v| Arg::Int(v),
    String => |v| Arg::Text(Some(v)),
    &String => |v| Arg::Text(Some(v.clone())),
    &str => |v| Arg::Text(Some(v.to_owned())),
    Option<String> => |v| Arg::Text(v),
    Option<&str> => |v| Arg::Text(v.map(str::to_owned)),
    Uuid => |v| Arg::Uuid(Some(v)),
    Option<Uuid> => |v| Arg::Uuid(v),
    Vec<u8> => |v| Arg::Bytes(Some(v)),
    Option<Vec<u8>> => |v| Arg::Bytes(v),
    bool => |v| Arg::Bool(Some(v)),
    Timestamp => |v| Arg::Int(Some(v.as_unix_millis())),
    Option<Timestamp> => |v| Arg::Int(v.map(Timestamp::as_unix_millis)),
    SecretHash => |v| Arg::Bytes(Some(v.as_bytes().to_vec())),
    &SecretHash => |v| Arg::Bytes(Some(v.as_bytes().to_vec())),
    Option<SecretHash> => |v| Arg::Bytes(v.map(|h| h.as_bytes().to_vec())),
}

macro_rules! arg_from_id {
    ($($id:ty),*) => {
        $(impl From<$id> for Arg {
            fn from(v: $id) -> Self {
                Arg::Uuid(Some(*v.as_uuid()))
            }
        }
        impl From<Option<$id>> for Arg {
            fn from(v: Option<$id>) -> Self {
                Arg::Uuid(v.map(|id| *id.as_uuid()))
            }
        })*
    };
}

arg_from_id!(
    UserId,
    ApiKeyId,
    InvitationId,
    DomainId,
    MailboxId,
    AliasId,
    ContactId,
    RuleId,
    AuditEventId,
    EventId,
    MessageId
);

/// Binds `args` in order to a query of either dialect.
fn bind_all<DB: Database>(
    mut query: sqlx::query::Query<'static, DB, <DB as Database>::Arguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'static, DB, <DB as Database>::Arguments>
where
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Uuid>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Vec<u8>>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<bool>: Encode<'t, DB> + Type<DB>,
{
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Uuid(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
        };
    }
    query
}

/// The connection pool of one dialect.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection idle for longer than this is pinged before it is used
/// again (pooled ones by the pool's `before_acquire`, the reader's by
/// [`Db::read`]): a connection that was fine a moment ago is trusted without
/// a round trip, one that sat idle is checked.
pub(crate) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The connection kept out of the pool for single-statement reads.
///
/// A read through the pool pays for more than its statement: sqlx pings
/// every connection it takes back (a round trip to the SQLite worker thread
/// or to the server, on a spawned task), which costs CPU beside each
/// lookup. Reads take this connection instead when it is free, and the pool
/// when it is busy. It runs in autocommit mode, so every statement sees the
/// latest committed data, as on a pooled connection.
#[derive(Debug)]
struct Held<C> {
    conn: C,
    opened: Instant,
    last_used: Instant,
    /// A statement was started and not seen to finish (its future was
    /// dropped): ping before the next one, which also drains what the
    /// interrupted statement left on the connection.
    in_flight: bool,
    /// A statement failed with a connection-level error: replace it.
    broken: bool,
}

impl<C> Held<C> {
    fn new(conn: C) -> Self {
        let now = Instant::now();
        Self {
            conn,
            opened: now,
            last_used: now,
            in_flight: false,
            broken: false,
        }
    }
}

type Slot<C> = Arc<Mutex<Option<Held<C>>>>;
type Lease<C> = OwnedMappedMutexGuard<Option<Held<C>>, Held<C>>;

/// The kept reader of a pool, if it has one.
#[derive(Debug, Clone)]
enum Reader {
    /// None: turned off, or an in-memory SQLite database (whose single
    /// pooled connection is the database).
    None,
    Sqlite(Slot<SqliteConnection>),
    Postgres(Slot<PgConnection>),
}

/// The pool plus what a session needs to start.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub(crate) pool: Pool,
    /// SQLite only: one writer at a time inside this process.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Longest wait for the writer lock (the pool's acquire timeout), after
    /// which a write fails with `Unavailable` like a pool timeout.
    lock_timeout: Duration,
    /// The connection kept for reads (see [`Held`]).
    reader: Reader,
    /// The pool's `max_lifetime`, which the kept reader honours too.
    max_lifetime: Option<Duration>,
    /// Set by [`Db::close`]: the kept reader is not reopened.
    closed: Arc<AtomicBool>,
}

impl Db {
    /// `keep_reader`: whether to keep a connection aside for reads (not for
    /// an in-memory SQLite database, whose only connection is the data).
    pub(crate) fn new(
        pool: Pool,
        lock_timeout: Duration,
        max_lifetime: Option<Duration>,
        keep_reader: bool,
    ) -> Self {
        let write_lock = match pool {
            Pool::Sqlite(_) => Some(Arc::new(Mutex::new(()))),
            Pool::Postgres(_) => None,
        };
        let reader = match (&pool, keep_reader) {
            (_, false) => Reader::None,
            (Pool::Sqlite(_), true) => Reader::Sqlite(Arc::new(Mutex::new(None))),
            (Pool::Postgres(_), true) => Reader::Postgres(Arc::new(Mutex::new(None))),
        };
        Self {
            pool,
            write_lock,
            lock_timeout,
            reader,
            max_lifetime,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Closes the kept reader and then the pool, waiting for every
    /// connection to finish.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        match &self.reader {
            Reader::None => {}
            Reader::Sqlite(slot) => {
                if let Some(held) = slot.lock().await.take() {
                    let _ = held.conn.close().await;
                }
            }
            Reader::Postgres(slot) => {
                if let Some(held) = slot.lock().await.take() {
                    let _ = held.conn.close().await;
                }
            }
        }
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// The kept reader, ready for a statement, or `None` when it is busy
    /// (or the store is closed): the caller then uses the pool.
    async fn lease<C>(
        &self,
        slot: &Slot<C>,
        acquire: impl AsyncFnOnce() -> Result<C, sqlx::Error>,
    ) -> Result<Option<Lease<C>>, StoreError>
    where
        C: Connection + 'static,
    {
        let Ok(mut guard) = Arc::clone(slot).try_lock_owned() else {
            return Ok(None);
        };
        if self.closed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let now = Instant::now();
        let keep = match guard.as_mut() {
            None => false,
            Some(held) if held.broken => false,
            Some(held)
                if self
                    .max_lifetime
                    .is_some_and(|max| now.duration_since(held.opened) > max) =>
            {
                false
            }
            Some(held)
                if held.in_flight || now.duration_since(held.last_used) > PING_IF_IDLE_FOR =>
            {
                // Bounded like an acquire from the pool.
                matches!(
                    tokio::time::timeout(self.lock_timeout, held.conn.ping()).await,
                    Ok(Ok(()))
                )
            }
            Some(_) => true,
        };
        if !keep {
            if let Some(old) = guard.take() {
                // A broken connection is dropped; a merely old one says
                // goodbye in the background.
                if !old.broken {
                    tokio::spawn(async move {
                        let _ = old.conn.close().await;
                    });
                }
            }
            let conn = acquire().await.map_err(|e| self.err(e))?;
            *guard = Some(Held::new(conn));
        }
        if let Some(held) = guard.as_mut() {
            held.last_used = now;
        }
        Ok(OwnedMutexGuard::try_map(guard, Option::as_mut).ok())
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        classify(self.dialect(), e)
    }

    /// A connection in autocommit mode for reads: the kept reader when it
    /// is free, else a pooled one.
    pub(crate) async fn read(&self) -> Result<Session, StoreError> {
        let held = match (&self.reader, &self.pool) {
            (Reader::Sqlite(slot), Pool::Sqlite(p)) => self
                .lease(slot, async || Ok(p.acquire().await?.detach()))
                .await?
                .map(Inner::SqliteHeld),
            (Reader::Postgres(slot), Pool::Postgres(p)) => self
                .lease(slot, async || Ok(p.acquire().await?.detach()))
                .await?
                .map(Inner::PgHeld),
            _ => None,
        };
        if let Some(inner) = held {
            return Ok(Session {
                inner,
                _guard: None,
            });
        }
        let inner = match &self.pool {
            Pool::Sqlite(p) => Inner::SqliteConn(p.acquire().await.map_err(|e| self.err(e))?),
            Pool::Postgres(p) => Inner::PgConn(p.acquire().await.map_err(|e| self.err(e))?),
        };
        Ok(Session {
            inner,
            _guard: None,
        })
    }

    /// A pooled connection in autocommit mode for one writing statement
    /// (already atomic on its own). On SQLite it holds the writer lock.
    pub(crate) async fn write_one(&self) -> Result<Session, StoreError> {
        let guard = self.writer_guard().await?;
        let inner = match &self.pool {
            Pool::Sqlite(p) => Inner::SqliteConn(p.acquire().await.map_err(|e| self.err(e))?),
            Pool::Postgres(p) => Inner::PgConn(p.acquire().await.map_err(|e| self.err(e))?),
        };
        Ok(Session {
            inner,
            _guard: guard,
        })
    }

    /// A write transaction; nothing is visible to others until
    /// [`Session::commit`], and dropping the session rolls back.
    pub(crate) async fn write(&self) -> Result<Session, StoreError> {
        let guard = self.writer_guard().await?;
        let inner = match &self.pool {
            Pool::Sqlite(p) => Inner::SqliteTx(
                p.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| self.err(e))?,
            ),
            Pool::Postgres(p) => Inner::PgTx(p.begin().await.map_err(|e| self.err(e))?),
        };
        Ok(Session {
            inner,
            _guard: guard,
        })
    }

    async fn writer_guard(&self) -> Result<Option<OwnedMutexGuard<()>>, StoreError> {
        let Some(lock) = &self.write_lock else {
            return Ok(None);
        };
        tokio::time::timeout(self.lock_timeout, Arc::clone(lock).lock_owned())
            .await
            .map(Some)
            .map_err(|_| {
                StoreError::unavailable(format!(
                    "timed out after {:?} waiting for the SQLite writer lock",
                    self.lock_timeout
                ))
            })
    }
}

enum Inner {
    SqliteTx(Transaction<'static, Sqlite>),
    PgTx(Transaction<'static, Postgres>),
    SqliteConn(PoolConnection<Sqlite>),
    PgConn(PoolConnection<Postgres>),
    SqliteHeld(Lease<SqliteConnection>),
    PgHeld(Lease<PgConnection>),
}

/// A connection or a transaction on which statements run.
pub(crate) struct Session {
    inner: Inner,
    _guard: Option<OwnedMutexGuard<()>>,
}

/// Runs one sqlx query method on whichever connection the session holds.
macro_rules! run {
    ($self:ident, $sql:ident, $args:ident, $method:ident) => {{
        let dialect = $self.dialect();
        let text = $sql.into().into_sql_str(dialect);
        match &mut $self.inner {
            Inner::SqliteTx(tx) => bind_all(sqlx::query(text), $args)
                .$method(&mut **tx)
                .await
                .map(Rows::sqlite)
                .map_err(|e| DbError::new(dialect, e)),
            Inner::SqliteConn(c) => bind_all(sqlx::query(text), $args)
                .$method(&mut **c)
                .await
                .map(Rows::sqlite)
                .map_err(|e| DbError::new(dialect, e)),
            Inner::PgTx(tx) => bind_all(sqlx::query(text), $args)
                .$method(&mut **tx)
                .await
                .map(Rows::postgres)
                .map_err(|e| DbError::new(dialect, e)),
            Inner::PgConn(c) => bind_all(sqlx::query(text), $args)
                .$method(&mut **c)
                .await
                .map(Rows::postgres)
                .map_err(|e| DbError::new(dialect, e)),
            Inner::SqliteHeld(held) => {
                held.in_flight = true;
                let result = bind_all(sqlx::query(text), $args)
                    .$method(&mut held.conn)
                    .await;
                held.finished(dialect, result.as_ref().err());
                result
                    .map(Rows::sqlite)
                    .map_err(|e| DbError::new(dialect, e))
            }
            Inner::PgHeld(held) => {
                held.in_flight = true;
                let result = bind_all(sqlx::query(text), $args)
                    .$method(&mut held.conn)
                    .await;
                held.finished(dialect, result.as_ref().err());
                result
                    .map(Rows::postgres)
                    .map_err(|e| DbError::new(dialect, e))
            }
        }
    }};
}

impl<C> Held<C> {
    /// Records that a statement ran to its end, with `error` if it failed.
    fn finished(&mut self, dialect: Dialect, error: Option<&sqlx::Error>) {
        self.in_flight = false;
        if error.is_some_and(|e| is_temporary(dialect, e)) {
            self.broken = true;
        }
    }
}

/// Converts what a sqlx query method returns into this module's types.
trait Rows<S, P> {
    fn sqlite(from: S) -> Self;
    fn postgres(from: P) -> Self;
}

impl Rows<sqlx::sqlite::SqliteQueryResult, sqlx::postgres::PgQueryResult> for u64 {
    fn sqlite(from: sqlx::sqlite::SqliteQueryResult) -> Self {
        from.rows_affected()
    }
    fn postgres(from: sqlx::postgres::PgQueryResult) -> Self {
        from.rows_affected()
    }
}

impl Rows<Option<SqliteRow>, Option<PgRow>> for Option<Row> {
    fn sqlite(from: Option<SqliteRow>) -> Self {
        from.map(Row::Sqlite)
    }
    fn postgres(from: Option<PgRow>) -> Self {
        from.map(Row::Postgres)
    }
}

impl Rows<Vec<SqliteRow>, Vec<PgRow>> for Vec<Row> {
    fn sqlite(from: Vec<SqliteRow>) -> Self {
        from.into_iter().map(Row::Sqlite).collect()
    }
    fn postgres(from: Vec<PgRow>) -> Self {
        from.into_iter().map(Row::Postgres).collect()
    }
}

impl Session {
    pub(crate) fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::SqliteTx(_) | Inner::SqliteConn(_) | Inner::SqliteHeld(_) => Dialect::Sqlite,
            Inner::PgTx(_) | Inner::PgConn(_) | Inner::PgHeld(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Arg>,
    ) -> Result<u64, DbError> {
        run!(self, sql, args, execute)
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Arg>,
    ) -> Result<Option<Row>, DbError> {
        run!(self, sql, args, fetch_optional)
    }

    /// Every row.
    pub(crate) async fn fetch_all(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Arg>,
    ) -> Result<Vec<Row>, DbError> {
        run!(self, sql, args, fetch_all)
    }

    /// Whether the query returns at least one row.
    pub(crate) async fn exists(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Arg>,
    ) -> Result<bool, DbError> {
        Ok(self.fetch_optional(sql, args).await?.is_some())
    }

    /// The first column of the single row a query returns (e.g. `COUNT(*)`).
    pub(crate) async fn fetch_i64(
        &mut self,
        sql: impl Into<Sql>,
        args: Vec<Arg>,
    ) -> Result<i64, StoreError> {
        let dialect = self.dialect();
        let row = self
            .fetch_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::backend(dialect.name(), "query returned no row"))?;
        row.get_at(0)
    }

    /// Commits a transaction (durable when this returns `Ok`); a no-op for
    /// autocommit sessions, whose statements are committed one by one.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        let dialect = self.dialect();
        let result = match self.inner {
            Inner::SqliteTx(tx) => tx.commit().await,
            Inner::PgTx(tx) => tx.commit().await,
            Inner::SqliteConn(_) | Inner::PgConn(_) | Inner::SqliteHeld(_) | Inner::PgHeld(_) => {
                Ok(())
            }
        };
        result.map_err(|e| classify(dialect, e))
    }
}
