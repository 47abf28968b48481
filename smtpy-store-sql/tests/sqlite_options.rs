//! SQLite connection settings actually applied, and durability across reopen.

mod common;

use std::time::Duration;

use smtpy_core::address::EmailAddress;
use smtpy_core::model::{Role, User};
use smtpy_core::store::UserStore;
use smtpy_core::time::Timestamp;
use smtpy_core::{Store, StoreError};
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

/// A pragma whose value is text (`journal_mode`).
async fn pragma_text(store: &SqlStore, name: &str) -> String {
    let pool = store.sqlite_pool().expect("a SQLite store");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(pool)
        .await
        .expect("read pragma")
}

/// A pragma whose value is a number.
async fn pragma_int(store: &SqlStore, name: &str) -> i64 {
    let pool = store.sqlite_pool().expect("a SQLite store");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
        .fetch_one(pool)
        .await
        .expect("read pragma")
}

fn user(n: u32) -> User {
    User::new(
        EmailAddress::parse(&format!("u{n}@example.org")).expect("address"),
        Role::User,
        Timestamp::from_unix_secs(1_700_000_000),
    )
}

#[tokio::test]
async fn file_database_runs_in_wal_with_full_sync_and_foreign_keys() {
    let store = common::new_sqlite_store().await;
    assert_eq!(pragma_text(&store, "journal_mode").await, "wal");
    // 2 = FULL: the WAL is fsynced at every commit.
    assert_eq!(pragma_int(&store, "synchronous").await, 2);
    assert_eq!(pragma_int(&store, "foreign_keys").await, 1);
    assert_eq!(pragma_int(&store, "busy_timeout").await, 5000);
    assert_eq!(store.backend_name(), "sqlite");
}

#[tokio::test]
async fn busy_timeout_option_is_applied() {
    let dir = common::temp_dir();
    let store = SqlStoreOptions::new()
        .busy_timeout(Duration::from_millis(1234))
        .connect(&common::sqlite_url(&dir))
        .await
        .expect("connect");
    assert_eq!(pragma_int(&store, "busy_timeout").await, 1234);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reopening_the_file_keeps_committed_data() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let alice = user(1);
    {
        let store = SqlStore::connect(&url).await.expect("first open");
        store.create_user(&alice).await.expect("create");
        store.close().await;
    }
    let store = SqlStore::connect(&url).await.expect("reopen");
    assert_eq!(store.get_user(alice.id).await.expect("still there"), alice);
    assert_eq!(store.count_users().await.expect("count"), 1);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn in_memory_database_works_and_is_private() {
    let a = SqlStore::connect("sqlite::memory:")
        .await
        .expect("memory a");
    let b = SqlStore::connect("sqlite::memory:")
        .await
        .expect("memory b");
    a.create_user(&user(1)).await.expect("create in a");
    // Several calls in a row reuse the single connection, so the data stays.
    assert_eq!(a.count_users().await.expect("count a"), 1);
    assert_eq!(a.count_users().await.expect("count a again"), 1);
    assert_eq!(b.count_users().await.expect("count b"), 0);
}

#[tokio::test]
async fn closed_store_is_unavailable() {
    let store = common::new_sqlite_store().await;
    store.close().await;
    let err = store.count_users().await.expect_err("closed pool");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_lock_held_by_another_process_past_the_busy_timeout_is_unavailable() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let store = SqlStoreOptions::new()
        .busy_timeout(Duration::from_millis(100))
        .connect(&url)
        .await
        .expect("connect");
    // Another "process": its own pool on the same file, holding the write lock.
    let other = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("second pool");
    let mut tx = other
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("take the lock");
    let err = store.create_user(&user(7)).await.expect_err("locked");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_temporary());
    sqlx::query("SELECT 1")
        .execute(&mut *tx)
        .await
        .expect("still in tx");
    tx.rollback().await.expect("release");
    store
        .create_user(&user(7))
        .await
        .expect("works once released");
    store.close().await;
    other.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn urls_of_other_schemes_are_invalid() {
    let err = SqlStore::connect("mysql://localhost/db")
        .await
        .expect_err("not supported");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn read_pragmas_are_applied() {
    let store = common::new_sqlite_store().await;
    // 256 MiB memory-mapped, 16 MiB page cache (negative: KiB).
    assert_eq!(pragma_int(&store, "mmap_size").await, 256 << 20);
    assert_eq!(pragma_int(&store, "cache_size").await, -(16 << 10));
    let dir = common::temp_dir();
    let tuned = SqlStoreOptions::new()
        .sqlite_mmap_size(0)
        .sqlite_cache_size_kib(2000)
        .connect(&common::sqlite_url(&dir))
        .await
        .expect("connect");
    assert_eq!(pragma_int(&tuned, "mmap_size").await, 0);
    assert_eq!(pragma_int(&tuned, "cache_size").await, -2000);
    tuned.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The connection kept for reads reads the latest commit, also one made
/// by another process, at once: nothing is cached.
#[tokio::test]
async fn the_kept_reader_sees_other_writers_at_once() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let reader = SqlStore::connect(&url).await.expect("reader");
    let writer = SqlStoreOptions::new()
        .read_connection(false)
        .connect(&url)
        .await
        .expect("writer");
    for n in 0..20 {
        assert_eq!(reader.count_users().await.expect("count"), n);
        writer
            .create_user(&user(200 + n as u32))
            .await
            .expect("create");
        assert_eq!(writer.count_users().await.expect("count"), n + 1);
    }
    reader.close().await;
    writer.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn closing_releases_the_kept_reader() {
    let store = common::new_sqlite_store().await;
    // A read opens the kept connection; closing must not wait for it.
    assert_eq!(store.count_users().await.expect("count"), 0);
    tokio::time::timeout(Duration::from_secs(10), store.close())
        .await
        .expect("close returns");
    let err = store.count_users().await.expect_err("closed store");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
}
