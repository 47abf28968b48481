//! Embedded migrations: up, down to 0 (no smtpy table left), up again, on
//! both dialects.

mod common;

use smtpy_core::address::EmailAddress;
use smtpy_core::model::{
    DeliveryEvent, DmarcQuarantineAction, DmarcRejectAction, EventFilter, EventKind, Role, User,
    UserSettings,
};
use smtpy_core::store::{Access, EventStore, PageRequest, UserStore};
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
    "delivery_events",
    "domain_default_mailboxes",
    "domains",
    "invitations",
    "job_state",
    "mailboxes",
    "queue",
    "queue_bodies",
    "rate_limits",
    "rules",
    "sessions",
    "settings",
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

/// Settings unlike the default in every field.
fn custom_settings() -> UserSettings {
    UserSettings {
        dmarc_reject: DmarcRejectAction::Quarantine,
        dmarc_quarantine: DmarcQuarantineAction::TagSubject,
        subject_tag: "[x]".into(),
        sender_format: Some("{name} ({address})".into()),
        forwards_per_day: Some(10),
        replies_per_day: Some(0),
        aliases_per_hour: None,
        notify_bounces: false,
        notify_quarantine: true,
    }
}

/// Down to 2 drops the event log and the settings column and keeps the
/// users; up again gives them the default settings (what a database
/// migrated from 2 gets) and an empty, working event log.
async fn migration_3_down_and_up(store: &SqlStore) {
    let mut user = User::new(
        EmailAddress::parse(&format!("s-{}@example.org", uuid::Uuid::now_v7().simple()))
            .expect("address"),
        Role::User,
        Timestamp::from_unix_secs(1_700_000_000),
    );
    user.settings = custom_settings();
    store.create_user(&user).await.expect("create user");
    let mut event = DeliveryEvent::new(EventKind::Delivered, user.created_at);
    event.owner = Some(user.id);
    store
        .append_events(std::slice::from_ref(&event))
        .await
        .expect("append");
    assert_eq!(store.get_user(user.id).await.expect("get"), user);

    store.migrate_down(2).await.expect("migrate down to 2");
    let at_2 = tables(store).await;
    assert!(!at_2.iter().any(|t| t == "delivery_events"), "{at_2:?}");
    assert!(at_2.iter().any(|t| t == "users"), "{at_2:?}");
    let status = store.migration_status().await.expect("status");
    assert_eq!(
        status.iter().map(|m| m.applied).collect::<Vec<_>>(),
        vec![true, true, false, false, false]
    );

    store.migrate_up().await.expect("migrate up");
    assert_eq!(tables(store).await, SMTPY_TABLES);
    let mut expected = user.clone();
    expected.settings = UserSettings::default();
    assert_eq!(
        store.get_user(user.id).await.expect("get"),
        expected,
        "a user from before 0003 has the default settings"
    );
    let all = EventFilter::default();
    let page = store
        .list_events(Access::Owner(user.id), &all, PageRequest::default())
        .await
        .expect("list");
    assert!(page.items.is_empty(), "the log starts empty: {page:?}");
    store
        .append_events(std::slice::from_ref(&event))
        .await
        .expect("append after the upgrade");
    let mut edit = expected.clone();
    edit.settings = custom_settings();
    let saved = store.update_user(&edit).await.expect("update");
    assert_eq!(saved.settings, custom_settings());
    assert_eq!(saved.revision, user.revision + 1);
}

#[tokio::test]
async fn sqlite_migration_3_down_and_up() {
    let store = common::new_sqlite_store().await;
    migration_3_down_and_up(&store).await;
}

#[tokio::test]
async fn postgres_migration_3_down_and_up() {
    let Some(store) = common::new_postgres_store().await else {
        return;
    };
    migration_3_down_and_up(&store).await;
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

/// Down to 3 drops the settings and the job leases and keeps everything
/// else; up again gives empty, working tables.
async fn migration_4_down_and_up(store: &SqlStore) {
    use smtpy_core::store::ControlStore;
    let t0 = Timestamp::from_unix_secs(1_700_000_000);
    store
        .put_setting("features", r#"{"replies":false}"#, t0)
        .await
        .expect("put_setting");
    assert!(
        store
            .acquire_job_lease("job", "a", t0, t0)
            .await
            .expect("lease")
    );
    user_round_trip(store).await;

    store.migrate_down(3).await.expect("migrate down to 3");
    let at_3 = tables(store).await;
    assert!(
        !at_3.iter().any(|t| t == "settings" || t == "job_state"),
        "{at_3:?}"
    );
    assert!(at_3.iter().any(|t| t == "delivery_events"), "{at_3:?}");
    let status = store.migration_status().await.expect("status");
    assert_eq!(
        status.iter().map(|m| m.applied).collect::<Vec<_>>(),
        vec![true, true, true, false, false]
    );

    store.migrate_up().await.expect("migrate up");
    assert_eq!(tables(store).await, SMTPY_TABLES);
    assert_eq!(
        store.get_setting("features").await.expect("get"),
        None,
        "the settings went with the table"
    );
    let again = store
        .put_setting("features", "{}", t0)
        .await
        .expect("put after the upgrade");
    assert_eq!(again.version, 1);
    assert!(store.list_jobs().await.expect("jobs").is_empty());
    user_round_trip(store).await;
}

#[tokio::test]
async fn sqlite_migration_4_down_and_up() {
    let store = common::new_sqlite_store().await;
    migration_4_down_and_up(&store).await;
}

#[tokio::test]
async fn postgres_migration_4_down_and_up() {
    let Some(store) = common::new_postgres_store().await else {
        return;
    };
    migration_4_down_and_up(&store).await;
}

/// Down to 4 drops `domains.disabled` and keeps the domains; up again gives
/// every existing domain `disabled = false` (what a database migrated from
/// 4 gets), keeping `verified_at`, and the flag then round-trips.
async fn migration_5_down_and_up(store: &SqlStore) {
    use smtpy_core::address::DomainName;
    use smtpy_core::model::Domain;
    use smtpy_core::store::DomainStore;
    let t0 = Timestamp::from_unix_secs(1_700_000_000);
    let owner = User::new(
        EmailAddress::parse(&format!("d-{}@example.org", uuid::Uuid::now_v7().simple()))
            .expect("address"),
        Role::User,
        t0,
    );
    store.create_user(&owner).await.expect("create user");
    let mut domain = Domain::new(
        DomainName::parse(&format!("d-{}.example", uuid::Uuid::now_v7().simple())).expect("domain"),
        owner.id,
        "token".into(),
        t0,
    );
    domain.verified_at = Some(t0);
    domain.disabled = true;
    store.create_domain(&domain).await.expect("create domain");
    assert!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get")
            .disabled
    );

    store.migrate_down(4).await.expect("migrate down to 4");
    let status = store.migration_status().await.expect("status");
    assert_eq!(
        status.iter().map(|m| m.applied).collect::<Vec<_>>(),
        vec![true, true, true, true, false]
    );
    assert_eq!(tables(store).await, SMTPY_TABLES, "no table dropped");

    store.migrate_up().await.expect("migrate up");
    let mut expected = domain.clone();
    expected.disabled = false;
    let got = store
        .get_domain(Access::System, domain.id)
        .await
        .expect("domain kept");
    assert_eq!(got, expected, "a domain from before 0005 is not disabled");
    let mut edit = got.clone();
    edit.disabled = true;
    let saved = store
        .update_domain(Access::System, &edit)
        .await
        .expect("disable after the upgrade");
    assert!(saved.disabled);
    assert_eq!(saved.verified_at, Some(t0));
    assert_eq!(
        store
            .find_domain_by_name(&domain.name)
            .await
            .expect("find")
            .map(|d| d.disabled),
        Some(true)
    );
}

#[tokio::test]
async fn sqlite_migration_5_down_and_up() {
    let store = common::new_sqlite_store().await;
    migration_5_down_and_up(&store).await;
}

#[tokio::test]
async fn postgres_migration_5_down_and_up() {
    let Some(store) = common::new_postgres_store().await else {
        return;
    };
    migration_5_down_and_up(&store).await;
}
