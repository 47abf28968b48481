//! Stores for the integration tests: a fresh SQLite file or a fresh
//! PostgreSQL schema per test, cleaned up once the store is dropped.
//!
//! PostgreSQL tests read `SMTPY_TEST_POSTGRES_URL`. When it is unset they
//! are skipped (`None`, with a printed notice) — unless `CI` is set, where
//! they must run and an unset variable or an unreachable server panics.
//! Each store gets its own schema `smtpy_t_<unix secs>_<random>` (SQLite: its
//! own directory `smtpy-sql-test-*` under the temporary directory); those of
//! dropped stores are removed at the next factory call, and any left over
//! from earlier runs (older than an hour) are swept on first use.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smtpy_core::Store;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};
use tempfile::TempDir;

/// Environment variable with the PostgreSQL URL for tests.
pub const POSTGRES_URL_VAR: &str = "SMTPY_TEST_POSTGRES_URL";

/// Prefix of every schema a test creates.
const SCHEMA_PREFIX: &str = "smtpy_t_";
/// Schemas and directories older than this are leftovers of dead runs.
const STALE_AFTER: Duration = Duration::from_secs(3600);

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_suffix() -> String {
    // The tail of a UUIDv7 is random.
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 12..].to_owned()
}

// ---------------------------------------------------------------------------
// SQLite

/// Temporary directories of live SQLite test stores.
static SQLITE_DIRS: Mutex<Vec<(Weak<SqlStore>, TempDir)>> = Mutex::new(Vec::new());

/// Whether this process already swept directories of earlier runs.
static SQLITE_SWEPT: Mutex<bool> = Mutex::new(false);

/// Removes `smtpy-sql-test-*` directories older than [`STALE_AFTER`].
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(SQLITE_DIR_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Prefix of every temporary directory a test creates.
const SQLITE_DIR_PREFIX: &str = "smtpy-sql-test-";

/// A fresh temporary directory; removes the directories of dropped stores
/// (and, once per process, leftovers of earlier runs).
fn sqlite_dir() -> TempDir {
    let first = !std::mem::replace(
        &mut *SQLITE_SWEPT.lock().unwrap_or_else(|e| e.into_inner()),
        true,
    );
    if first {
        sweep_stale_dirs();
    }
    let mut dirs = SQLITE_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    dirs.retain(|(store, _)| store.strong_count() > 0);
    tempfile::Builder::new()
        .prefix(SQLITE_DIR_PREFIX)
        .tempdir()
        .expect("create a temporary directory")
}

/// The database URL of a file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("smtpy.db").display())
}

/// A new SQLite store on a fresh file (WAL mode), with its directory kept
/// until the store is dropped.
pub async fn new_sqlite_store() -> Arc<SqlStore> {
    let dir = sqlite_dir();
    let store = Arc::new(
        SqlStore::connect(&sqlite_url(dir.path()))
            .await
            .expect("open a SQLite store in a temporary directory"),
    );
    SQLITE_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Arc::downgrade(&store), dir));
    store
}

/// Conformance factory for SQLite.
pub async fn sqlite_store() -> Option<Arc<dyn Store>> {
    Some(new_sqlite_store().await as Arc<dyn Store>)
}

/// A temporary directory that outlives any store (for reopen tests).
pub fn temp_dir() -> PathBuf {
    sqlite_dir().keep()
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// The PostgreSQL URL to test against, or `None` to skip (see the module docs).
///
/// # Panics
///
/// When `CI` is set and the variable is not.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{POSTGRES_URL_VAR} is not set, but CI is: the PostgreSQL tests must run in CI \
             (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {
            eprintln!("skipped: {POSTGRES_URL_VAR} not set");
            None
        }
    }
}

/// Schemas of live PostgreSQL test stores.
static PG_SCHEMAS: Mutex<Vec<(Weak<SqlStore>, String)>> = Mutex::new(Vec::new());
/// Whether this process already swept leftovers of earlier runs.
static SWEPT: Mutex<bool> = Mutex::new(false);

/// Drops the schemas of stores that are gone, and leftovers of dead runs.
async fn drop_unused_schemas(url: &str) {
    let dead: Vec<String> = {
        let mut schemas = PG_SCHEMAS.lock().unwrap_or_else(|e| e.into_inner());
        let (live, dead): (Vec<_>, Vec<_>) = schemas
            .drain(..)
            .partition(|(store, _)| store.strong_count() > 0);
        *schemas = live;
        dead.into_iter().map(|(_, name)| name).collect()
    };
    let sweep = {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        !std::mem::replace(&mut *swept, true)
    };
    if dead.is_empty() && !sweep {
        return;
    }
    let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
    else {
        return;
    };
    let mut victims = dead;
    if sweep {
        let cutoff = unix_secs().saturating_sub(STALE_AFTER.as_secs());
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'smtpy\\_t\\_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        victims.extend(names.into_iter().filter(|name| {
            name.strip_prefix(SCHEMA_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .is_some_and(|secs| secs < cutoff)
        }));
    }
    for name in victims {
        // Names are generated here: a prefix, digits and hex.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
        )))
        .execute(&pool)
        .await;
    }
    pool.close().await;
}

/// A fresh schema name for one test store.
pub fn new_schema_name() -> String {
    format!("{SCHEMA_PREFIX}{}_{}", unix_secs(), random_suffix())
}

/// A new PostgreSQL store in a fresh schema, or `None` to skip.
///
/// # Panics
///
/// When the server cannot be reached (`SMTPY_TEST_POSTGRES_URL` is set, so
/// the tests are expected to run) or, in CI, when the variable is unset.
pub async fn new_postgres_store() -> Option<Arc<SqlStore>> {
    let url = postgres_url()?;
    drop_unused_schemas(&url).await;
    let schema = new_schema_name();
    let store = SqlStoreOptions::new()
        .schema(schema.clone())
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_URL_VAR}={url} is not usable: {e}"));
    let store = Arc::new(store);
    PG_SCHEMAS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Arc::downgrade(&store), schema));
    Some(store)
}

/// Conformance factory for PostgreSQL.
pub async fn postgres_store() -> Option<Arc<dyn Store>> {
    new_postgres_store().await.map(|s| s as Arc<dyn Store>)
}
