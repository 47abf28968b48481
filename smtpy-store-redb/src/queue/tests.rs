//! Queue tests that need the crate's insides: the upgrade that adds the
//! queue tables, and the indexes staying in step with the rows.

use std::time::Duration;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use smtpy_core::address::EmailAddress;
use smtpy_core::model::{RecipientState, Role, User};
use smtpy_core::store::{QueueStore, UserStore};
use smtpy_core::testing::fixtures::{T0, t};
use smtpy_core::testing::new_message;

use crate::RedbStore;
use crate::codec::{time_id, time_id_at};
use crate::schema::{
    self, META, QUEUE, QUEUE_BODIES, QUEUE_BY_RECEIVED, QUEUE_DUE, QUEUE_HELD, QUEUE_LEASES,
    SCHEMA_VERSION, SCHEMA_VERSION_KEY,
};

const LEASE: Duration = Duration::from_secs(60);

const QUEUE_TABLES: [&str; 6] = [
    "queue",
    "queue_bodies",
    "queue_leases",
    "queue_due",
    "queue_held",
    "queue_by_received",
];

#[test]
fn queue_table_names() {
    let defined = [
        QUEUE.name(),
        QUEUE_BODIES.name(),
        QUEUE_LEASES.name(),
        QUEUE_DUE.name(),
        QUEUE_HELD.name(),
        QUEUE_BY_RECEIVED.name(),
    ];
    assert_eq!(defined, QUEUE_TABLES);
}

fn table_names(path: &std::path::Path) -> Vec<String> {
    let db = Database::create(path).expect("raw open");
    let txn = db.begin_read().expect("read txn");
    txn.list_tables()
        .expect("list")
        .map(|t| t.name().to_owned())
        .collect()
}

/// Number of entries in a raw table.
fn len<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &RedbStore,
    def: TableDefinition<'static, K, V>,
) -> u64 {
    let txn = store.database().begin_read().expect("read txn");
    txn.open_table(def).expect("table").len().expect("len")
}

/// A file with schema version 1 — the tables before the queue — opens,
/// gets the queue tables (and every later step) in the upgrade, keeps its
/// data, and queues mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_file_is_upgraded_with_the_queue_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let user = User::new(
        EmailAddress::parse("owner@example.org").expect("address"),
        Role::User,
        T0,
    );
    {
        let store = RedbStore::open(&path).expect("open");
        store.create_user(&user).await.expect("user");
    }
    // Make it a version 1 file: a version 2 file without the queue tables.
    crate::tests::downgrade_to_v2(&path);
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("write txn");
        for name in QUEUE_TABLES {
            let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
            assert!(
                txn.delete_table(def).expect("delete table"),
                "{name} existed"
            );
        }
        txn.open_table(META)
            .expect("meta")
            .insert(SCHEMA_VERSION_KEY, 1)
            .expect("version");
        txn.commit().expect("commit");
    }
    let names = table_names(&path);
    assert!(names.iter().all(|n| !n.starts_with("queue")), "{names:?}");

    let store = RedbStore::open(&path).expect("upgrade");
    drop(store);
    let names = table_names(&path);
    for name in QUEUE_TABLES {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_read().expect("read txn");
        let meta = txn.open_table(META).expect("meta");
        let version = meta
            .get(SCHEMA_VERSION_KEY)
            .expect("get")
            .map(|g| g.value());
        assert_eq!(version, Some(SCHEMA_VERSION), "every step ran");
    }
    let store = RedbStore::open(&path).expect("open upgraded");
    assert_eq!(store.get_user(user.id).await.expect("user kept"), user);
    let m = new_message(1);
    store.enqueue(&m).await.expect("enqueue");
    assert_eq!(store.get_queued(m.id).await.expect("get"), m);
}

/// The upgrade step on its own creates exactly the queue tables.
#[test]
fn upgrade_step_from_1_creates_the_queue_tables() {
    let step = schema::UPGRADES
        .iter()
        .find(|s| s.from == 1)
        .expect("a step from version 1");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bare.redb");
    {
        let db = Database::create(&path).expect("raw open");
        let txn = db.begin_write().expect("write txn");
        (step.apply)(&schema::Tx::new(&txn)).expect("apply");
        txn.commit().expect("commit");
    }
    let mut names = table_names(&path);
    names.sort();
    let mut expected: Vec<String> = QUEUE_TABLES.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

/// Every index follows its row through the whole life of messages, and
/// nothing is left behind when they leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_follow_the_rows() {
    let store = RedbStore::builder().open_temporary().expect("open");
    let a = new_message(2);
    let mut held = new_message(1);
    held.held = true;
    held.received_at = t(-30);
    store.enqueue(&a).await.expect("enqueue");
    store.enqueue(&held).await.expect("enqueue");
    let counts = |s: &RedbStore| {
        [
            len(s, QUEUE),
            len(s, QUEUE_BODIES),
            len(s, QUEUE_LEASES),
            len(s, QUEUE_DUE),
            len(s, QUEUE_HELD),
            len(s, QUEUE_BY_RECEIVED),
        ]
    };
    assert_eq!(counts(&store), [2, 2, 0, 1, 1, 2]);
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(
        (stats.depth, stats.held, stats.oldest_received_at),
        (2, 1, Some(t(-30)))
    );

    // A lease moves the due entry to the lease's end.
    let l = store
        .lease_due(T0, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(counts(&store), [2, 2, 1, 1, 1, 2]);
    let due_key = {
        let txn = store.database().begin_read().expect("read");
        let due = txn.open_table(QUEUE_DUE).expect("due");
        let first = due.first().expect("first").expect("an entry");
        *first.0.value()
    };
    assert_eq!(due_key, time_id(l.until, a.id.to_bytes()));
    assert_eq!(time_id_at(&due_key), t(60));

    // Holding a leased message takes it out of the due index; releasing the
    // hold puts it back at the lease's end.
    store.set_held(a.id, true).await.expect("hold");
    assert_eq!(counts(&store), [2, 2, 1, 0, 2, 2]);
    store.set_held(a.id, false).await.expect("unhold");
    assert_eq!(counts(&store), [2, 2, 1, 1, 1, 2]);

    // Release: due again at next_attempt_at.
    store.release_lease(l.token, a.id).await.expect("release");
    assert_eq!(counts(&store), [2, 2, 0, 1, 1, 2]);

    // A partial outcome keeps the message, ends the lease, reschedules.
    let l = store
        .lease_due(T0, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    let mut partial = l.message.clone();
    partial.recipients[0].state = RecipientState::Delivered {
        at: t(1),
        reply: None,
    };
    partial.attempts = 1;
    partial.next_attempt_at = t(600);
    store
        .complete_attempt(l.token, &partial, &[])
        .await
        .expect("complete");
    assert_eq!(counts(&store), [2, 2, 0, 1, 1, 2]);
    store.retry_now(a.id, t(5)).await.expect("retry now");
    assert!(
        store
            .lease_due(t(4), LEASE, 10)
            .await
            .expect("lease")
            .is_empty()
    );

    // Done with a follow-up: the message leaves, the DSN arrives.
    let l = store
        .lease_due(t(5), LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    let mut done = l.message.clone();
    done.recipients[1].state = RecipientState::Failed {
        at: t(6),
        reply: None,
        reason: "550".into(),
    };
    let dsn = new_message(1);
    store
        .complete_attempt(l.token, &done, std::slice::from_ref(&dsn))
        .await
        .expect("complete");
    assert_eq!(counts(&store), [2, 2, 0, 1, 1, 2]);
    assert!(store.get_queued(a.id).await.is_err());

    // Deleting a held message and the DSN empties every table.
    store.delete_queued(held.id).await.expect("delete");
    store.delete_queued(dsn.id).await.expect("delete");
    assert_eq!(counts(&store), [0; 6]);
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(
        (stats.depth, stats.held, stats.oldest_received_at),
        (0, 0, None)
    );
}

/// Nothing due: `lease_due` answers from a snapshot, without the write
/// lock (and so without a commit): it returns while another writer holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_polling_takes_no_write_lock() {
    let store = RedbStore::builder().open_temporary().expect("open");
    let mut later = new_message(1);
    later.next_attempt_at = t(3600);
    store.enqueue(&later).await.expect("enqueue");
    let writer = store.database().begin_write().expect("hold the write lock");
    let polled = tokio::time::timeout(Duration::from_secs(5), store.lease_due(T0, LEASE, 10)).await;
    writer.abort().expect("abort");
    assert!(
        polled
            .expect("answered without the write lock")
            .expect("lease")
            .is_empty()
    );
    assert_eq!(
        store
            .lease_due(t(3600), LEASE, 10)
            .await
            .expect("lease")
            .len(),
        1
    );
}
