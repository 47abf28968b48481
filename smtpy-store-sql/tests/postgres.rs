//! PostgreSQL specifics: unreachable servers, schema names, schema isolation.

mod common;

use std::time::{Duration, Instant};

use smtpy_core::address::EmailAddress;
use smtpy_core::model::{Role, User};
use smtpy_core::store::UserStore;
use smtpy_core::time::Timestamp;
use smtpy_core::{Store, StoreError};
use smtpy_store_sql::SqlStoreOptions;

#[tokio::test]
async fn closed_port_is_unavailable() {
    // Needs no server: nothing listens on port 1.
    let started = Instant::now();
    let err = SqlStoreOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_temporary());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up in time"
    );
}

#[tokio::test]
async fn schema_names_must_be_plain_identifiers() {
    let err = SqlStoreOptions::new()
        .schema("x\"; DROP SCHEMA public CASCADE; --")
        .connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("refused before connecting");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

fn user() -> User {
    User::new(
        EmailAddress::parse(&format!("p-{}@example.org", uuid::Uuid::now_v7().simple()))
            .expect("address"),
        Role::User,
        Timestamp::from_unix_secs(1_700_000_000),
    )
}

#[tokio::test]
async fn stores_in_different_schemas_do_not_see_each_other() {
    let (Some(a), Some(b)) = (
        common::new_postgres_store().await,
        common::new_postgres_store().await,
    ) else {
        return;
    };
    assert_eq!(a.backend_name(), "postgres");
    assert_ne!(a.schema(), b.schema());
    let u = user();
    a.create_user(&u).await.expect("create in a");
    assert_eq!(a.count_users().await.expect("count a"), 1);
    assert_eq!(b.count_users().await.expect("count b"), 0);
    // The tables really live in the configured schema.
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(a.postgres_pool().expect("pool"))
        .await
        .expect("current schema");
    assert_eq!(Some(schema.as_str()), a.schema());
}

/// The connection kept for reads sees another instance's commit at once,
/// and closing the store closes it too.
#[tokio::test]
async fn the_kept_reader_reads_the_latest_commit_and_closes() {
    let Some(reader) = common::new_postgres_store().await else {
        return;
    };
    let url = common::postgres_url().expect("set, since the store exists");
    let writer = SqlStoreOptions::new()
        .schema(reader.schema().expect("schema"))
        .read_connection(false)
        .connect(&url)
        .await
        .expect("second instance");
    for n in 0..20 {
        assert_eq!(reader.count_users().await.expect("count"), n);
        writer.create_user(&user()).await.expect("create");
    }
    writer.close().await;
    tokio::time::timeout(Duration::from_secs(10), reader.close())
        .await
        .expect("close returns");
    let err = reader.count_users().await.expect_err("closed store");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
}
