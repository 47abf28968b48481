//! Unit tests that need the crate's insides: durability across reopen,
//! schema versions and upgrades, index consistency, corrupt rows.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use smtpy_core::StoreError;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{
    Alias, Contact, Domain, ForwardingRule, Mailbox, Role, RuleAction, RuleScope, User,
};
use smtpy_core::store::{
    Access, AliasStore, ContactStore, DomainStore, MailboxStore, RuleStore, UserStore,
};
use smtpy_core::time::Timestamp;

use crate::error::Error;
use crate::schema::{self, META, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Tx, UpgradeStep};
use crate::{OpenError, RedbOptions, RedbStore};

const T0: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("valid address")
}

struct Fixture {
    user: User,
    domain: Domain,
    mailbox: Mailbox,
}

async fn fixture(store: &RedbStore) -> Fixture {
    let user = User::new(addr("owner@example.org"), Role::User, T0);
    store.create_user(&user).await.expect("create user");
    let domain = Domain::new(
        DomainName::parse("alias.example").expect("valid domain"),
        user.id,
        "token".into(),
        T0,
    );
    store.create_domain(&domain).await.expect("create domain");
    let mailbox = Mailbox::new(user.id, addr("me@mail.example"), T0);
    store
        .create_mailbox(&mailbox)
        .await
        .expect("create mailbox");
    Fixture {
        user,
        domain,
        mailbox,
    }
}

fn alias(f: &Fixture, local: &str) -> Alias {
    Alias::new(
        addr(&format!("{local}@alias.example")),
        f.user.id,
        f.domain.id,
        vec![f.mailbox.id],
        T0,
    )
}

/// Number of entries in a raw table.
fn table_len<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &RedbStore,
    def: TableDefinition<'static, K, V>,
) -> u64 {
    let txn = store.database().begin_read().expect("read txn");
    txn.open_table(def).expect("table").len().expect("len")
}

fn set_raw_version(path: &Path, version: u64) {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("write txn");
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA_VERSION_KEY, version)
        .expect("insert");
    txn.commit().expect("commit");
}

fn raw_version(path: &Path) -> Option<u64> {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    let meta = txn.open_table(META).expect("meta");
    meta.get(SCHEMA_VERSION_KEY)
        .expect("get")
        .map(|g| g.value())
}

#[tokio::test]
async fn reopen_after_drop_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let (user, created) = {
        let store = RedbStore::open(&path).expect("open");
        let f = fixture(&store).await;
        let a = alias(&f, "shop");
        store.create_alias(&a).await.expect("create alias");
        store
            .delete_alias(Access::System, alias(&f, "x").id, T0)
            .await
            .expect_err("missing alias");
        (f.user, a)
    };
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.get_user(user.id).await.expect("user"), user);
    let found = store
        .find_alias_by_address(&addr("Shop@ALIAS.example"))
        .await
        .expect("lookup");
    assert_eq!(found, Some(created));
}

#[tokio::test]
async fn second_open_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let _store = RedbStore::open(&path).expect("open");
    let err = RedbStore::open(&path).expect_err("file is locked");
    assert!(matches!(err, OpenError::AlreadyOpen), "{err:?}");
    assert!(matches!(
        StoreError::from(err),
        StoreError::Unavailable { .. }
    ));
}

#[tokio::test]
async fn new_file_gets_the_current_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    drop(RedbStore::open(&path).expect("open"));
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
}

#[tokio::test]
async fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    {
        let store = RedbStore::open(&path).expect("open");
        fixture(&store).await;
    }
    set_raw_version(&path, SCHEMA_VERSION + 1);
    let err = RedbStore::open(&path).expect_err("newer schema");
    match err {
        OpenError::SchemaTooNew { found, supported } => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION + 1));
    // Put the version back: the data is still there.
    set_raw_version(&path, SCHEMA_VERSION);
    let store = RedbStore::open(&path).expect("open");
    assert_eq!(
        store
            .find_user_by_email(&addr("owner@example.org"))
            .await
            .expect("lookup")
            .map(|u| u.email),
        Some(addr("owner@example.org"))
    );
}

#[test]
fn foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.redb");
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("write txn");
        let def: TableDefinition<u64, u64> = TableDefinition::new("something_else");
        txn.open_table(def)
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = RedbStore::open(&path).expect_err("not ours");
    assert!(matches!(err, OpenError::Unrecognised { .. }), "{err:?}");
}

/// Test-only step: counts its runs under `meta["upgraded"]`.
fn count_run(tx: &Tx<'_>) -> Result<(), Error> {
    let mut meta = tx.meta()?;
    let runs = meta.get("upgraded")?.map_or(0, |g| g.value());
    meta.insert("upgraded", runs + 1)?;
    Ok(())
}

fn failing_step(tx: &Tx<'_>) -> Result<(), Error> {
    tx.meta()?.insert("half_done", 1)?;
    Err(Error::Internal("this step fails"))
}

fn meta_value(path: &Path, key: &str) -> Option<u64> {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    let meta = txn.open_table(META).expect("meta");
    meta.get(key).expect("get").map(|g| g.value())
}

#[test]
fn older_schema_runs_each_upgrade_step_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    drop(RedbStore::open(&path).expect("open"));
    set_raw_version(&path, SCHEMA_VERSION - 1);
    let steps = [
        UpgradeStep {
            from: SCHEMA_VERSION - 1,
            description: "test step one",
            apply: count_run,
        },
        UpgradeStep {
            from: SCHEMA_VERSION,
            description: "test step two",
            apply: count_run,
        },
    ];
    let target = SCHEMA_VERSION + 1;
    drop(
        RedbOptions::new()
            .open_with(&path, &steps, target)
            .expect("upgrade"),
    );
    assert_eq!(raw_version(&path), Some(target));
    assert_eq!(meta_value(&path, "upgraded"), Some(2), "both steps ran");
    // Opening again at the same version runs nothing.
    drop(
        RedbOptions::new()
            .open_with(&path, &steps, target)
            .expect("reopen"),
    );
    assert_eq!(meta_value(&path, "upgraded"), Some(2));
}

#[test]
fn missing_or_failing_upgrade_step_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    drop(RedbStore::open(&path).expect("open"));
    let target = SCHEMA_VERSION + 2;
    let only_first = [UpgradeStep {
        from: SCHEMA_VERSION,
        description: "test step",
        apply: count_run,
    }];
    let err = RedbOptions::new()
        .open_with(&path, &only_first, target)
        .expect_err("no step from the second version");
    assert!(
        matches!(err, OpenError::NoUpgradePath { from } if from == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    let failing = [UpgradeStep {
        from: SCHEMA_VERSION,
        description: "fails",
        apply: failing_step,
    }];
    let err = RedbOptions::new()
        .open_with(&path, &failing, SCHEMA_VERSION + 1)
        .expect_err("failing step");
    assert!(matches!(err, OpenError::Unrecognised { .. }), "{err:?}");
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
    assert_eq!(meta_value(&path, "upgraded"), None);
    assert_eq!(meta_value(&path, "half_done"), None, "rolled back");
}

/// The event tables version 3 added.
const EVENT_TABLES: [&str; 6] = [
    "events",
    "events_by_owner",
    "events_by_alias",
    "events_by_mailbox",
    "events_by_message",
    "events_by_time",
];

fn table_names(path: &Path) -> Vec<String> {
    use redb::TableHandle;
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    txn.list_tables()
        .expect("list")
        .map(|t| t.name().to_owned())
        .collect()
}

/// Turns a closed file written by this build into the version 2 file the
/// previous release would have written with the same data: user rows in
/// the version 2 layout (no settings, which that release did not have), no
/// event tables, schema version 2.
pub(crate) fn downgrade_to_v2(path: &Path) {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("write txn");
    {
        let mut users = txn.open_table(schema::USERS).expect("users");
        let mut old_rows = Vec::new();
        for entry in users.iter().expect("iter") {
            let (k, v) = entry.expect("entry");
            let user: User = crate::codec::decode(v.value()).expect("a current user row");
            let old = schema::UserV2 {
                id: user.id,
                email: user.email,
                password: user.password,
                role: user.role,
                status: user.status,
                totp: user.totp,
                created_at: user.created_at,
                updated_at: user.updated_at,
                last_login_at: user.last_login_at,
                revision: user.revision,
            };
            old_rows.push((*k.value(), crate::codec::encode(&old).expect("encode")));
        }
        for (k, row) in &old_rows {
            users.insert(k, row.as_slice()).expect("insert");
        }
    }
    for name in EVENT_TABLES {
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
        assert!(
            txn.delete_table(def).expect("delete table"),
            "{name} existed"
        );
    }
    txn.commit().expect("commit");
    drop(db);
    downgrade_to_v3(path);
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("write txn");
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA_VERSION_KEY, 2)
        .expect("version");
    txn.commit().expect("commit");
}

/// The tables version 4 added.
const CONTROL_TABLES: [&str; 2] = ["settings", "jobs"];

/// Turns a closed file written by this build into a version 3 file: no
/// control plane tables, schema version 3.
pub(crate) fn downgrade_to_v3(path: &Path) {
    downgrade_to_v4(path);
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("write txn");
    for name in CONTROL_TABLES {
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
        assert!(
            txn.delete_table(def).expect("delete table"),
            "{name} existed"
        );
    }
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA_VERSION_KEY, 3)
        .expect("version");
    txn.commit().expect("commit");
}

/// A version 3 file opens as version 4: the control tables appear, the
/// data stays, and settings and leases work on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_3_file_is_upgraded_with_control_tables() {
    use smtpy_core::store::ControlStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let user_id = {
        let store = RedbStore::open(&path).expect("open");
        let f = fixture(&store).await;
        f.user.id
    };
    downgrade_to_v3(&path);
    assert_eq!(raw_version(&path), Some(3));
    assert!(
        table_names(&path)
            .iter()
            .all(|n| n != "settings" && n != "jobs"),
        "a real version 3 file"
    );
    let store = RedbStore::open(&path).expect("upgrade");
    drop(store);
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
    let names = table_names(&path);
    for name in CONTROL_TABLES {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    let store = RedbStore::open(&path).expect("open upgraded");
    assert_eq!(
        store.get_user(user_id).await.expect("user kept").id,
        user_id
    );
    let s = store
        .put_setting("features", "{}", T0)
        .await
        .expect("put_setting");
    assert_eq!(s.version, 1);
    assert!(
        store
            .acquire_job_lease("job", "me", T0, T0)
            .await
            .expect("lease")
    );
}

/// Turns a closed file written by this build into a version 4 file: domain
/// rows in the version 4 layout (no `disabled`, which that release did not
/// have), schema version 4. Refuses a disabled domain: version 4 could not
/// store one.
pub(crate) fn downgrade_to_v4(path: &Path) {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_write().expect("write txn");
    {
        let mut domains = txn.open_table(schema::DOMAINS).expect("domains");
        let mut old_rows = Vec::new();
        for entry in domains.iter().expect("iter") {
            let (k, v) = entry.expect("entry");
            let d: Domain = crate::codec::decode(v.value()).expect("a current domain row");
            assert!(!d.disabled, "a version 4 file has no disabled domain");
            let old = schema::DomainV4 {
                id: d.id,
                name: d.name,
                owner: d.owner,
                shared: d.shared,
                verification_token: d.verification_token,
                verified_at: d.verified_at,
                checks: d.checks,
                catch_all: d.catch_all,
                dkim_keys: d.dkim_keys,
                default_mailboxes: d.default_mailboxes,
                created_at: d.created_at,
                updated_at: d.updated_at,
                revision: d.revision,
            };
            old_rows.push((*k.value(), crate::codec::encode(&old).expect("encode")));
        }
        for (k, row) in &old_rows {
            domains.insert(k, row.as_slice()).expect("insert");
        }
    }
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA_VERSION_KEY, 4)
        .expect("version");
    txn.commit().expect("commit");
}

/// A version 4 file (domains without `disabled`) opens: every domain reads
/// back not disabled with every other field kept, the name index still
/// finds it, and the flag can then be set and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_4_file_is_upgraded_with_domain_disabled() {
    use smtpy_core::model::{CatchAll, CheckStatus};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let (f, verified) = {
        let store = RedbStore::open(&path).expect("open");
        let f = fixture(&store).await;
        let mut verified = Domain::new(
            DomainName::parse("verified.example").expect("valid domain"),
            f.user.id,
            "token-2".into(),
            T0,
        );
        verified.verified_at = Some(T0);
        verified.checks.mx.status = CheckStatus::Ok;
        verified.catch_all = CatchAll {
            enabled: true,
            auto_create_pattern: Some("^a".into()),
        };
        store.create_domain(&verified).await.expect("create");
        let verified = store
            .update_domain(Access::System, &verified)
            .await
            .expect("update");
        (f, verified)
    };
    downgrade_to_v4(&path);
    assert_eq!(raw_version(&path), Some(4));
    // The file no longer reads as current rows: it really is a v4 file.
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_read().expect("read txn");
        let domains = txn.open_table(schema::DOMAINS).expect("domains");
        let row = domains
            .get(&verified.id.to_bytes())
            .expect("get")
            .expect("row");
        assert!(crate::codec::decode::<Domain>(row.value()).is_err());
    }

    drop(RedbStore::open(&path).expect("upgrade"));
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
    let store = RedbStore::open(&path).expect("open upgraded");
    assert_eq!(
        store
            .get_domain(Access::System, verified.id)
            .await
            .expect("kept"),
        verified,
        "every field kept, not disabled"
    );
    assert_eq!(
        store
            .get_domain(Access::System, f.domain.id)
            .await
            .expect("kept"),
        f.domain
    );
    assert_eq!(
        store
            .find_domain_by_name(&verified.name)
            .await
            .expect("find")
            .map(|d| d.id),
        Some(verified.id),
        "the name index still points at the row"
    );
    let mut edit = verified.clone();
    edit.disabled = true;
    let saved = store
        .update_domain(Access::System, &edit)
        .await
        .expect("disable");
    assert!(saved.disabled);
    assert_eq!(saved.revision, verified.revision + 1);
    assert_eq!(
        store
            .get_domain(Access::System, verified.id)
            .await
            .expect("get"),
        saved
    );
}

/// The step from 4 keeps domain rows that already have the current layout
/// (a disabled one stays disabled) and refuses a domain row it cannot read,
/// leaving the file untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_4_upgrade_keeps_current_rows_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let disabled = {
        let store = RedbStore::open(&path).expect("open");
        let f = fixture(&store).await;
        let mut d = f.domain.clone();
        d.disabled = true;
        store
            .update_domain(Access::System, &d)
            .await
            .expect("disable")
    };
    set_raw_version(&path, 4);
    {
        let store = RedbStore::open(&path).expect("upgrade");
        assert_eq!(
            store
                .get_domain(Access::System, disabled.id)
                .await
                .expect("get"),
            disabled,
            "a current row stays disabled"
        );
    }
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));

    let ghost = [9u8; 16];
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("write txn");
        txn.open_table(schema::DOMAINS)
            .expect("domains")
            .insert(&ghost, b"\x01garbage".as_slice())
            .expect("insert");
        txn.open_table(META)
            .expect("meta")
            .insert(SCHEMA_VERSION_KEY, 4)
            .expect("version");
        txn.commit().expect("commit");
    }
    let err = RedbStore::open(&path).expect_err("unreadable domain row");
    assert!(matches!(err, OpenError::Unrecognised { .. }), "{err:?}");
    assert_eq!(raw_version(&path), Some(4), "left as it was");
    let db = Database::create(&path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    let domains = txn.open_table(schema::DOMAINS).expect("domains");
    assert_eq!(
        domains
            .get(&ghost)
            .expect("get")
            .map(|g| g.value().to_vec()),
        Some(b"\x01garbage".to_vec())
    );
}

fn custom_settings() -> smtpy_core::model::UserSettings {
    use smtpy_core::model::{DmarcQuarantineAction, DmarcRejectAction, UserSettings};
    UserSettings {
        dmarc_reject: DmarcRejectAction::Quarantine,
        dmarc_quarantine: DmarcQuarantineAction::TagSubject,
        subject_tag: "[x]".into(),
        sender_format: Some("{name}".into()),
        forwards_per_day: Some(3),
        replies_per_day: None,
        aliases_per_hour: Some(1),
        notify_bounces: false,
        notify_quarantine: false,
    }
}

/// A version 2 file (users without settings, no event log) opens: every
/// user gets the default settings and keeps everything else, the event
/// tables appear, and the store works on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_file_is_upgraded_with_user_settings_and_event_tables() {
    use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind, UserSettings};
    use smtpy_core::password::{PasswordHash, PasswordParams};
    use smtpy_core::store::{EventStore, PageRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let (f, admin, alias_row) = {
        let store = RedbStore::open(&path).expect("open");
        let f = fixture(&store).await;
        let mut admin = User::new(addr("Admin@Example.org"), Role::Admin, T0);
        admin.password = Some(
            PasswordHash::hash("pw", &PasswordParams::insecure_fast_for_tests()).expect("hash"),
        );
        admin.last_login_at = Some(T0);
        admin.settings = custom_settings();
        store.create_user(&admin).await.expect("create");
        let admin = store.update_user(&admin).await.expect("update");
        let a = alias(&f, "shop");
        store.create_alias(&a).await.expect("alias");
        (f, admin, a)
    };
    downgrade_to_v2(&path);
    assert_eq!(raw_version(&path), Some(2));
    let names = table_names(&path);
    assert!(names.iter().all(|n| !n.starts_with("events")), "{names:?}");
    // The file no longer reads as current rows: it really is a v2 file.
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_read().expect("read txn");
        let users = txn.open_table(schema::USERS).expect("users");
        let row = users.get(&admin.id.to_bytes()).expect("get").expect("row");
        assert!(crate::codec::decode::<User>(row.value()).is_err());
    }

    let store = RedbStore::open(&path).expect("upgrade");
    drop(store);
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
    let names = table_names(&path);
    for name in EVENT_TABLES {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    let store = RedbStore::open(&path).expect("open upgraded");
    let mut expected_admin = admin.clone();
    expected_admin.settings = UserSettings::default();
    assert_eq!(
        store.get_user(admin.id).await.expect("admin kept"),
        expected_admin,
        "every field kept, settings defaulted"
    );
    assert_eq!(
        store.get_user(f.user.id).await.expect("user kept"),
        f.user,
        "a user with default settings reads back equal"
    );
    assert_eq!(
        store
            .find_user_by_email(&addr("admin@example.org"))
            .await
            .expect("find")
            .map(|u| u.id),
        Some(admin.id),
        "the email index still points at the row"
    );
    assert_eq!(
        store
            .get_alias(Access::System, alias_row.id)
            .await
            .expect("alias kept"),
        alias_row
    );
    let mut edit = expected_admin.clone();
    edit.settings = custom_settings();
    let saved = store.update_user(&edit).await.expect("update settings");
    assert_eq!(saved.revision, admin.revision + 1);
    assert_eq!(store.get_user(admin.id).await.expect("get"), saved);

    let mut event = DeliveryEvent::new(EventKind::Delivered, T0);
    event.owner = Some(f.user.id);
    event.alias = Some(alias_row.id);
    store
        .append_events(std::slice::from_ref(&event))
        .await
        .expect("append");
    let page = store
        .list_events(
            Access::Owner(f.user.id),
            &EventFilter::default(),
            PageRequest::default(),
        )
        .await
        .expect("list");
    assert_eq!(page.items, vec![event]);
}

/// The step from 2 keeps user rows that already have the current layout
/// (written by a build between the versions) and refuses a user row it
/// cannot read, leaving the file untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_upgrade_keeps_current_rows_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let mut user = User::new(addr("owner@example.org"), Role::User, T0);
    user.settings = custom_settings();
    {
        let store = RedbStore::open(&path).expect("open");
        store.create_user(&user).await.expect("create");
    }
    set_raw_version(&path, 2);
    {
        let store = RedbStore::open(&path).expect("upgrade");
        assert_eq!(
            store.get_user(user.id).await.expect("get"),
            user,
            "a current row keeps its settings"
        );
    }
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));

    // A user row that is neither layout.
    let ghost = [7u8; 16];
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("write txn");
        txn.open_table(schema::USERS)
            .expect("users")
            .insert(&ghost, b"\x01garbage".as_slice())
            .expect("insert");
        txn.open_table(META)
            .expect("meta")
            .insert(SCHEMA_VERSION_KEY, 2)
            .expect("version");
        txn.commit().expect("commit");
    }
    let err = RedbStore::open(&path).expect_err("unreadable user row");
    assert!(matches!(err, OpenError::Unrecognised { .. }), "{err:?}");
    assert_eq!(raw_version(&path), Some(2), "left as it was");
    let db = Database::create(&path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    let users = txn.open_table(schema::USERS).expect("users");
    assert_eq!(
        users.get(&ghost).expect("get").map(|g| g.value().to_vec()),
        Some(b"\x01garbage".to_vec())
    );
}

/// Appends, purges and user deletion keep every event index in step with
/// the rows; a refused batch writes nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_indexes_follow_the_rows() {
    use smtpy_core::ids::{MailboxId, MessageId};
    use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind};
    use smtpy_core::store::EventStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let a = alias(&f, "shop");
    store.create_alias(&a).await.expect("alias");
    let counts = |s: &RedbStore| {
        [
            table_len(s, schema::EVENTS),
            table_len(s, schema::EVENTS_BY_TIME),
            table_len(s, schema::EVENTS_BY_OWNER),
            table_len(s, schema::EVENTS_BY_ALIAS),
            table_len(s, schema::EVENTS_BY_MAILBOX),
            table_len(s, schema::EVENTS_BY_MESSAGE),
        ]
    };
    let event = |kind, at, owner: bool, mailbox: bool| {
        let mut e = DeliveryEvent::new(kind, at);
        e.owner = owner.then_some(f.user.id);
        e.alias = Some(a.id);
        e.mailbox = mailbox.then(MailboxId::new);
        e.message = Some(MessageId::new());
        e
    };
    let old = event(
        EventKind::Bounced,
        Timestamp::from_unix_secs(10),
        true,
        true,
    );
    let anonymous = event(EventKind::Refused, T0, false, false);
    let mine = event(EventKind::Delivered, T0, true, true);
    store
        .append_events(&[old.clone(), anonymous.clone(), mine.clone()])
        .await
        .expect("append");
    assert_eq!(counts(&store), [3, 3, 2, 3, 2, 3]);

    let mut dup = event(EventKind::Failed, T0, true, true);
    let fresh = event(EventKind::Failed, T0, true, true);
    dup.id = mine.id;
    store
        .append_events(&[fresh, dup])
        .await
        .expect_err("duplicate id");
    assert_eq!(counts(&store), [3, 3, 2, 3, 2, 3], "nothing written");

    assert_eq!(
        store
            .purge_events(Timestamp::from_unix_secs(10))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(counts(&store), [2, 2, 1, 2, 1, 2]);
    store.delete_user(f.user.id).await.expect("delete user");
    assert_eq!(
        counts(&store),
        [1, 1, 0, 1, 0, 1],
        "only the ownerless event is left"
    );
    assert_eq!(
        store
            .count_events(&EventFilter::default())
            .await
            .expect("count"),
        1
    );
}

#[test]
fn the_registry_covers_every_version() {
    let missing: Vec<u64> = (1..=SCHEMA_VERSION)
        .filter(|v| *v < SCHEMA_VERSION && !schema::UPGRADES.iter().any(|s| s.from == *v))
        .collect();
    assert!(missing.is_empty(), "no upgrade step from {missing:?}");
}

#[tokio::test]
async fn changing_a_users_email_frees_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let mut user = User::new(addr("Old@Example.org"), Role::User, T0);
    store.create_user(&user).await.expect("create");
    user.email = addr("new@example.org");
    let updated = store.update_user(&user).await.expect("update");
    assert_eq!(updated.revision, 1);
    assert_eq!(
        store
            .find_user_by_email(&addr("old@example.org"))
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_user_by_email(&addr("NEW@example.org"))
            .await
            .expect("find")
            .map(|u| u.id),
        Some(user.id)
    );
    assert_eq!(table_len(&store, schema::USERS_BY_EMAIL), 1);
    let other = User::new(addr("old@example.org"), Role::User, T0);
    store
        .create_user(&other)
        .await
        .expect("old address is free again");
    assert_eq!(table_len(&store, schema::USERS_BY_EMAIL), 2);
}

#[tokio::test]
async fn changing_a_mailbox_address_and_token_moves_its_index_entries() {
    use smtpy_core::model::SecretHash;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let mut m = f.mailbox.clone();
    m.address = addr("other@mail.example");
    m.verification_token = Some(SecretHash::of(b"token"));
    let m = store
        .update_mailbox(Access::System, &m)
        .await
        .expect("update");
    assert_eq!(
        store
            .find_mailbox_by_token(&SecretHash::of(b"token"))
            .await
            .expect("find")
            .map(|x| x.id),
        Some(m.id)
    );
    let again = Mailbox::new(f.user.id, addr("ME@mail.example"), T0);
    store
        .create_mailbox(&again)
        .await
        .expect("old address is free again");
    let mut m2 = m.clone();
    m2.verification_token = None;
    store
        .update_mailbox(Access::System, &m2)
        .await
        .expect("clear token");
    assert_eq!(
        store
            .find_mailbox_by_token(&SecretHash::of(b"token"))
            .await
            .expect("find"),
        None
    );
    assert_eq!(table_len(&store, schema::MAILBOXES_BY_ADDRESS), 2);
    assert_eq!(table_len(&store, schema::MAILBOXES_BY_TOKEN), 0);
}

#[tokio::test]
async fn purge_and_user_deletion_leave_no_index_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let a = alias(&f, "shop");
    let b = alias(&f, "news");
    store
        .create_aliases(&[a.clone(), b.clone()])
        .await
        .expect("create");
    let contact = Contact {
        id: smtpy_core::ids::ContactId::new(),
        alias: a.id,
        owner: f.user.id,
        address: addr("bob@outside.example"),
        display_name: None,
        blocked: false,
        reverse_key: "rk1".into(),
        created_at: T0,
        updated_at: T0,
        last_seen_at: None,
        revision: 0,
    };
    store.create_contact(&contact).await.expect("contact");
    let rule = ForwardingRule::new(
        f.user.id,
        RuleScope::Alias(a.id),
        "r".into(),
        0,
        vec![RuleAction::Stop],
        T0,
    );
    store.create_rule(&rule).await.expect("rule");

    store
        .delete_alias(Access::System, a.id, T0)
        .await
        .expect("delete");
    assert_eq!(table_len(&store, schema::ALIASES_DELETED), 1);
    assert_eq!(store.purge_deleted_aliases(T0).await.expect("purge"), 1);
    assert!(
        store
            .is_tombstoned(&addr("SHOP@alias.example"))
            .await
            .expect("tombstone")
    );
    assert_eq!(table_len(&store, schema::ALIASES_DELETED), 0);
    assert_eq!(table_len(&store, schema::ALIASES_BY_ADDRESS), 1);
    assert_eq!(table_len(&store, schema::ALIASES_BY_OWNER), 1);
    assert_eq!(table_len(&store, schema::ALIASES_BY_DOMAIN), 1);
    assert_eq!(table_len(&store, schema::CONTACTS_BY_REVERSE_KEY), 0);
    assert_eq!(table_len(&store, schema::CONTACTS_BY_ALIAS_ADDRESS), 0);
    assert_eq!(table_len(&store, schema::CONTACTS_BY_ALIAS), 0);
    assert_eq!(table_len(&store, schema::CONTACTS_BY_OWNER), 0);
    assert_eq!(table_len(&store, schema::RULES_BY_OWNER), 0);
    let err = store
        .create_alias(&alias(&f, "shop"))
        .await
        .expect_err("tombstoned");
    assert!(
        matches!(err, StoreError::Gone { entity: "alias" }),
        "{err:?}"
    );

    store.delete_user(f.user.id).await.expect("delete user");
    for n in [
        table_len(&store, schema::USERS),
        table_len(&store, schema::USERS_BY_EMAIL),
        table_len(&store, schema::ALIASES),
        table_len(&store, schema::ALIASES_BY_ADDRESS),
        table_len(&store, schema::ALIASES_BY_OWNER),
        table_len(&store, schema::ALIASES_BY_DOMAIN),
        table_len(&store, schema::DOMAINS),
        table_len(&store, schema::DOMAINS_BY_NAME),
        table_len(&store, schema::MAILBOXES),
        table_len(&store, schema::MAILBOXES_BY_OWNER),
        table_len(&store, schema::MAILBOXES_BY_ADDRESS),
    ] {
        assert_eq!(n, 0);
    }
    assert_eq!(table_len(&store, schema::TOMBSTONES), 2);
    assert!(store.get_domain(Access::System, f.domain.id).await.is_err());
}

#[tokio::test]
async fn a_failed_batch_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let a = alias(&f, "one");
    let dup = alias(&f, "ONE");
    let err = store
        .create_aliases(&[a.clone(), dup])
        .await
        .expect_err("duplicate in batch");
    assert!(
        matches!(err, StoreError::AlreadyExists { entity: "alias" }),
        "{err:?}"
    );
    assert_eq!(table_len(&store, schema::ALIASES), 0);
    assert_eq!(table_len(&store, schema::ALIASES_BY_ADDRESS), 0);
}

#[tokio::test]
async fn corrupt_rows_are_backend_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let a = alias(&f, "shop");
    store.create_alias(&a).await.expect("create");
    let rows: [&[u8]; 4] = [b"", &[1, 0xff, 0xff, 0xff], &[7, 1, 2, 3], b"\x01garbage"];
    for garbage in rows {
        {
            let txn = store.database().begin_write().expect("write txn");
            txn.open_table(schema::ALIASES)
                .expect("table")
                .insert(&a.id.to_bytes(), garbage)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = store
            .get_alias(Access::System, a.id)
            .await
            .expect_err("corrupt");
        assert!(
            matches!(
                err,
                StoreError::Backend {
                    backend: "redb",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store
            .find_alias_by_address(&addr("shop@alias.example"))
            .await
            .expect_err("corrupt");
        assert!(err.is_temporary(), "{err:?}");
        let err = store
            .update_alias(Access::System, &a)
            .await
            .expect_err("corrupt");
        assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    }
    // A dangling index entry is corruption too.
    {
        let txn = store.database().begin_write().expect("write txn");
        txn.open_table(schema::ALIASES_BY_ADDRESS)
            .expect("table")
            .insert("ghost@alias.example", &[9u8; 16])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = store
        .find_alias_by_address(&addr("ghost@alias.example"))
        .await
        .expect_err("dangling");
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
}

#[tokio::test]
async fn domain_shared_alias_blocks_user_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(dir.path().join("smtpy.redb")).expect("open");
    let f = fixture(&store).await;
    let mut shared = f.domain.clone();
    shared.shared = true;
    store
        .update_domain(Access::System, &shared)
        .await
        .expect("share");
    let other = User::new(addr("other@example.org"), Role::User, T0);
    store.create_user(&other).await.expect("user");
    let mb = Mailbox::new(other.id, addr("o@mail.example"), T0);
    store.create_mailbox(&mb).await.expect("mailbox");
    let a = Alias::new(
        addr("o@alias.example"),
        other.id,
        f.domain.id,
        vec![mb.id],
        T0,
    );
    store
        .create_alias(&a)
        .await
        .expect("alias on shared domain");
    let err = store.delete_user(f.user.id).await.expect_err("conflict");
    assert!(
        matches!(err, StoreError::Conflict { entity: "user", .. }),
        "{err:?}"
    );
    assert!(store.get_user(f.user.id).await.is_ok(), "nothing deleted");
}

/// The disk budget: at most 1 KB per alias, indexes included (the bench
/// `store_lookup` measures the same with 1,000,000 aliases).
#[tokio::test(flavor = "multi_thread")]
async fn alias_disk_budget() {
    let n: usize = 5_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let store = RedbStore::open(&path).expect("open");
    let f = fixture(&store).await;
    let before = std::fs::metadata(&path).expect("metadata").len();
    let mut made = 0;
    while made < n {
        let batch: Vec<Alias> = (made..n.min(made + 1000))
            .map(|i| {
                alias(
                    &f,
                    &format!("alias-{i:08}-{}", i.wrapping_mul(2_654_435_761) % 100_000),
                )
            })
            .collect();
        made += batch.len();
        store.create_aliases(&batch).await.expect("create");
    }
    let sample = alias(&f, "sample");
    let row = crate::codec::encode(&sample).expect("encode").len();
    assert!(row < 256, "an encoded alias row is {row} bytes");
    drop(store);
    let size = std::fs::metadata(&path).expect("metadata").len();
    let per_alias = (size - before) / n as u64;
    assert!(per_alias <= 1024, "{per_alias} bytes on disk per alias");
}
