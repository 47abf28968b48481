//! The queue conformance suite on SQLite (a fresh database file per test)
//! and on PostgreSQL (a fresh schema per test), and the queue's migration
//! (`0002_queue`) down and up again on both.
//!
//! The PostgreSQL half needs `SMTPY_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); without it every test prints
//! `skipped: …` and passes, unless `CI` is set, where the tests fail instead.

mod common;

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::address::EmailAddress;
use smtpy_core::model::{Role, User};
use smtpy_core::store::{QueueStore, UserStore};
use smtpy_core::testing::fixtures::T0;
use smtpy_core::testing::new_message;
use smtpy_store_sql::{Dialect, SqlStore};

async fn sqlite_queue() -> Option<Arc<dyn QueueStore>> {
    Some(common::new_sqlite_store().await as Arc<dyn QueueStore>)
}

async fn postgres_queue() -> Option<Arc<dyn QueueStore>> {
    common::new_postgres_store()
        .await
        .map(|s| s as Arc<dyn QueueStore>)
}

smtpy_core::queue_conformance_suite!(queue_sqlite, sqlite_queue);
smtpy_core::queue_conformance_suite!(queue_postgres, postgres_queue);

// ---------------------------------------------------------------------------
// Migration 0002_queue

/// Whether the store's database (SQLite) or schema (PostgreSQL) has `table`.
async fn has_table(store: &SqlStore, table: &str) -> bool {
    let count: i64 = match store.dialect() {
        Dialect::Sqlite => sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(table)
        .fetch_one(store.sqlite_pool().expect("sqlite pool"))
        .await
        .expect("list tables"),
        _ => sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_one(store.postgres_pool().expect("postgres pool"))
        .await
        .expect("list tables"),
    };
    count > 0
}

/// How many rows of `users` have this canonical email (read with plain SQL:
/// the store's own queries need the latest schema).
async fn users_with_email(store: &SqlStore, canonical: &str) -> i64 {
    match store.dialect() {
        Dialect::Sqlite => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email_canonical = $1")
                .bind(canonical)
                .fetch_one(store.sqlite_pool().expect("sqlite pool"))
                .await
                .expect("count users")
        }
        _ => sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email_canonical = $1")
            .bind(canonical)
            .fetch_one(store.postgres_pool().expect("postgres pool"))
            .await
            .expect("count users"),
    }
}

/// Down to version 1 drops the queue (and only the queue: the other tables
/// keep their rows); up again brings back an empty, working queue.
async fn queue_down_and_up(store: &SqlStore) {
    let user = User::new(
        EmailAddress::parse(&format!("q-{}@example.org", uuid::Uuid::now_v7().simple()))
            .expect("address"),
        Role::User,
        T0,
    );
    store.create_user(&user).await.expect("create user");
    let m = new_message(1);
    store.enqueue(&m).await.expect("enqueue");
    assert!(has_table(store, "queue").await && has_table(store, "queue_bodies").await);

    store.migrate_down(1).await.expect("migrate down to 1");
    assert!(!has_table(store, "queue").await, "queue dropped");
    assert!(
        !has_table(store, "queue_bodies").await,
        "queue_bodies dropped"
    );
    let status = store.migration_status().await.expect("status");
    assert_eq!(
        status
            .iter()
            .map(|s| (s.version, s.description.as_str(), s.applied))
            .collect::<Vec<_>>(),
        vec![
            (1, "init", true),
            (2, "queue", false),
            (3, "events_settings", false),
            (4, "control", false),
            (5, "domain_disabled", false),
        ]
    );
    assert_eq!(
        users_with_email(store, &user.email.canonical()).await,
        1,
        "reverting the queue leaves version 1's data alone"
    );
    assert!(store.get_queued(m.id).await.is_err(), "no queue table");

    store.migrate_up().await.expect("migrate up again");
    assert!(
        store
            .migration_status()
            .await
            .expect("status")
            .iter()
            .all(|s| s.applied && !s.checksum_mismatch)
    );
    assert_eq!(
        store.get_user(user.id).await.expect("user kept"),
        user,
        "the user is back, with the default settings it had"
    );
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(stats.depth, 0, "the queue comes back empty");
    let again = new_message(2);
    store.enqueue(&again).await.expect("enqueue after up");
    let leased = store
        .lease_due(T0, Duration::from_secs(60), 10)
        .await
        .expect("lease");
    assert_eq!(
        leased.into_iter().map(|l| l.message).collect::<Vec<_>>(),
        vec![again]
    );
    // Idempotent.
    store.migrate_up().await.expect("migrate up when current");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queue_migration_down_and_up() {
    let store = common::new_sqlite_store().await;
    queue_down_and_up(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_migration_down_and_up() {
    let Some(store) = common::new_postgres_store().await else {
        return;
    };
    queue_down_and_up(&store).await;
}
