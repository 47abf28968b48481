//! Embedded migrations: up, down to 0 (no smtpy table left), up again, on
//! both dialects.

mod common;

use smtpy_core::address::EmailAddress;
use smtpy_core::model::{Role, User};
use smtpy_core::store::UserStore;
use smtpy_core::time::Timestamp;
use smtpy_store_sql::{Dialect, LATEST_VERSION, MIGRATIONS_TABLE, SqlStore, SqlStoreOptions};

/// Every table smtpy's migrations create.
const SMTPY_TABLES: &[&str] = &[
    "alias_mailboxes",
    "alias_tombstones",
    "aliases",
    "api_keys",
    "audit_events",
    "contacts",
    "domain_default_mailboxes",
    "domains",
    "invitations",
    "mailboxes",
    "queue",
    "queue_bodies",
    "rate_limits",
    "rules",
    "sessions",
    "usage_daily",
    "users",
];

/// Tables in the store's database (SQLite) or schema (PostgreSQL), except
/// the migrations' bookkeeping table.
async fn tables(store: &SqlStore) -> Vec<String> {
    let mut names: Vec<String> = match store.dialect() {
        Dialect::Sqlite => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(store.sqlite_pool().expect("sqlite pool"))
        .await
        .expect("list tables"),
        _ => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema()",
        )
        .fetch_all(store.postgres_pool().expect("postgres pool"))
        .await
        .expect("list tables"),
    };
    names.retain(|n| n != MIGRATIONS_TABLE);
    names.sort();
    names
}

async fn user_round_trip(store: &SqlStore) {
    let user = User::new(
        EmailAddress::parse(&format!("m-{}@example.org", uuid::Uuid::now_v7().simple()))
            .expect("address"),
        Role::User,
        Timestamp::from_unix_secs(1_700_000_000),
    );
    store.create_user(&user).await.expect("create user");
    assert_eq!(store.get_user(user.id).await.expect("get user"), user);
}

async fn down_to_zero_and_up_again(store: &SqlStore) {
    assert_eq!(
        tables(store).await,
        SMTPY_TABLES,
        "connect migrated to the latest schema"
    );
    let status = store.migration_status().await.expect("status");
    assert_eq!(
        status.len(),
        usize::try_from(LATEST_VERSION).expect("small")
    );
    assert!(
        status.iter().all(|m| m.applied && !m.checksum_mismatch),
        "{status:?}"
    );
    assert_eq!(status[0].version, 1);
    assert_eq!(status[0].description, "init");
    user_round_trip(store).await;

    store.migrate_down(0).await.expect("migrate down to 0");
    assert_eq!(
        tables(store).await,
        Vec::<String>::new(),
        "no smtpy table left"
    );
    let status = store.migration_status().await.expect("status");
    assert!(status.iter().all(|m| !m.applied), "{status:?}");

    store.migrate_up().await.expect("migrate up again");
    assert_eq!(tables(store).await, SMTPY_TABLES);
    assert!(
        store
            .migration_status()
            .await
            .expect("status")
            .iter()
            .all(|m| m.applied)
    );
    user_round_trip(store).await;
    // Idempotent.
    store.migrate_up().await.expect("migrate up when current");
}

#[tokio::test]
async fn sqlite_down_to_zero_and_up_again() {
    let store = common::new_sqlite_store().await;
    down_to_zero_and_up_again(&store).await;
}

#[tokio::test]
async fn postgres_down_to_zero_and_up_again() {
    let Some(store) = common::new_postgres_store().await else {
        return;
    };
    down_to_zero_and_up_again(&store).await;
}

#[tokio::test]
async fn sqlite_without_migrate_on_connect_starts_empty() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let store = SqlStoreOptions::new()
        .migrate_on_connect(false)
        .connect(&url)
        .await
        .expect("connect");
    assert!(tables(&store).await.is_empty());
    assert!(
        store
            .migration_status()
            .await
            .expect("status of a fresh database")
            .iter()
            .all(|m| !m.applied)
    );
    store.migrate_up().await.expect("migrate up");
    assert_eq!(tables(&store).await, SMTPY_TABLES);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_concurrent_migrations_apply_once() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    // Several instances starting at once on one (new) schema.
    let schema = common::new_schema_name();
    let starts = (0..4).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            SqlStoreOptions::new()
                .schema(schema)
                .max_connections(2)
                .connect(&url)
                .await
        }
    });
    let stores: Vec<SqlStore> = futures_join_all(starts).await;
    for store in &stores {
        assert_eq!(tables(store).await, SMTPY_TABLES);
    }
    stores[0].migrate_down(0).await.expect("down");
    let pool = stores[0].postgres_pool().expect("postgres pool").clone();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .expect("drop the test schema");
}

/// Runs the connects concurrently on the test runtime.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<SqlStore>
where
    F: std::future::Future<Output = Result<SqlStore, smtpy_core::StoreError>> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join").expect("connect and migrate"));
    }
    out
}
