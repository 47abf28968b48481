//! Several instances on one queue (several smtpy processes on one
//! PostgreSQL schema, or on one SQLite file): each due message is leased by
//! exactly one of them while leases hold; an instance that dies holding
//! leases loses nothing — once the leases lapse another instance takes the
//! messages, and the dead one's late outcome is refused. And nothing
//! acknowledged is lost when a process goes away without closing its store.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use smtpy_core::StoreError;
use smtpy_core::ids::MessageId;
use smtpy_core::model::{Leased, QueuedMessage, RecipientState};
use smtpy_core::store::QueueStore;
use smtpy_core::testing::fixtures::{T0, t};
use smtpy_core::testing::new_message;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

const MESSAGES: usize = 100;
const LEASE: Duration = Duration::from_secs(60);

/// Leases in a loop (a few at a time, as a delivery worker does) until
/// nothing is due; everything it got.
async fn lease_until_empty(store: Arc<SqlStore>, now: smtpy_core::time::Timestamp) -> Vec<Leased> {
    let mut got = Vec::new();
    loop {
        let batch = store.lease_due(now, LEASE, 7).await.expect("lease");
        if batch.is_empty() {
            return got;
        }
        got.extend(batch);
        tokio::task::yield_now().await;
    }
}

/// Every recipient delivered: the message leaves the queue when recorded.
fn delivered(m: &QueuedMessage) -> QueuedMessage {
    let mut m = m.clone();
    m.attempts += 1;
    for r in &mut m.recipients {
        r.state = RecipientState::Delivered {
            at: t(1),
            reply: None,
        };
    }
    m
}

/// The whole story on two instances `a` and `b` of one queue (empty).
async fn leases_are_exclusive_and_survive_a_dead_instance(a: Arc<SqlStore>, b: Arc<SqlStore>) {
    // 100 messages, enqueued through both instances at once.
    let enqueues: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let m = new_message(1);
                store.enqueue(&m).await.expect("enqueue");
                m.id
            })
        })
        .collect();
    let mut all = HashSet::new();
    for e in enqueues {
        all.insert(e.await.expect("join"));
    }
    assert_eq!(all.len(), MESSAGES);

    // Both instances lease concurrently, two workers each, until nothing is due.
    let workers: Vec<_> = [&a, &a, &b, &b]
        .into_iter()
        .map(|s| tokio::spawn(lease_until_empty(Arc::clone(s), T0)))
        .collect();
    let mut by_instance: Vec<Vec<Leased>> = Vec::new();
    for w in workers {
        by_instance.push(w.await.expect("join"));
    }
    let leased_a: Vec<Leased> = by_instance[..2].concat();
    let mut leased_b: Vec<Leased> = by_instance[2..].concat();
    let ids = |ls: &[Leased]| ls.iter().map(|l| l.message.id).collect::<Vec<_>>();
    let seen: Vec<MessageId> = [ids(&leased_a), ids(&leased_b)].concat();
    let unique: HashSet<MessageId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), MESSAGES, "no message leased twice: {seen:?}");
    assert_eq!(unique, all, "every message leased exactly once");
    assert!(
        a.lease_due(T0, LEASE, 1000)
            .await
            .expect("lease")
            .is_empty()
            && b.lease_due(t(59), LEASE, 1000)
                .await
                .expect("lease")
                .is_empty(),
        "nothing is due while the leases hold"
    );
    // Which instance wins the race above is up to the scheduler (on SQLite
    // one writer at a time: `a` may take everything). So that `b` surely
    // holds leases when it "dies", it leases a few fresh messages itself.
    for _ in 0..3 {
        b.enqueue(&new_message(1)).await.expect("enqueue");
    }
    let fresh = b.lease_due(T0, LEASE, 1000).await.expect("lease");
    assert_eq!(fresh.len(), 3, "only the fresh messages are due");
    leased_b.extend(fresh);

    // `a` delivers what it leased; `b` dies holding its leases (it is
    // simply never used again, like a process that was killed).
    for l in &leased_a {
        a.complete_attempt(l.token, &delivered(&l.message), &[])
            .await
            .expect("complete");
    }
    assert_eq!(
        a.queue_stats().await.expect("stats").depth,
        leased_b.len() as u64
    );
    assert!(
        a.lease_due(t(59), LEASE, 1000)
            .await
            .expect("lease")
            .is_empty(),
        "the dead instance's leases still hold"
    );
    let taken_over = a.lease_due(t(60), LEASE, 1000).await.expect("lease");
    assert_eq!(
        taken_over
            .iter()
            .map(|l| l.message.id)
            .collect::<HashSet<_>>(),
        ids(&leased_b).into_iter().collect::<HashSet<_>>(),
        "once lapsed, the dead instance's messages go to the live one"
    );

    // The "dead" instance wakes up (a long pause, a partition) and reports
    // its outcome late: refused, the new holder's outcome wins.
    let stale = &leased_b[0];
    match b
        .complete_attempt(stale.token, &delivered(&stale.message), &[])
        .await
    {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("a stale completion must be Conflict, got {other:?}"),
    }
    b.release_lease(stale.token, stale.message.id)
        .await
        .expect("a stale release is a no-op");
    assert!(
        b.lease_due(t(61), LEASE, 1000)
            .await
            .expect("lease")
            .is_empty(),
        "the stale release did not end the new lease"
    );
    for l in &taken_over {
        a.complete_attempt(l.token, &delivered(&l.message), &[])
            .await
            .expect("the new holder completes");
    }
    assert_eq!(b.queue_stats().await.expect("stats").depth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_instances_share_the_queue() {
    let Some(first) = common::new_postgres_store().await else {
        return;
    };
    let url = common::postgres_url().expect("set, since the first store exists");
    let second = Arc::new(
        SqlStoreOptions::new()
            .schema(first.schema().expect("schema"))
            .max_connections(4)
            .connect(&url)
            .await
            .expect("second instance"),
    );
    leases_are_exclusive_and_survive_a_dead_instance(first, second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_instances_share_the_queue() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let first = Arc::new(SqlStore::connect(&url).await.expect("first"));
    let second = Arc::new(SqlStore::connect(&url).await.expect("second"));
    leases_are_exclusive_and_survive_a_dead_instance(first, second).await;
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// Durability (SQLite)

/// Set (to the database URL) in the child process of
/// [`sqlite_killed_process_loses_nothing`] only.
const CHILD_ENV: &str = "SMTPY_SQL_QUEUE_CRASH_CHILD";

/// Enqueues [`MESSAGES`] messages from 25 concurrent tasks (so they share
/// group commits) and leases one; calls `acked` with each id as its enqueue
/// returns. Returns the ids and the leased id.
async fn fill(store: &Arc<SqlStore>, acked: impl Fn(MessageId)) -> (Vec<MessageId>, MessageId) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for task in 0..25 {
        let store = Arc::clone(store);
        let tx = tx.clone();
        tokio::spawn(async move {
            for _ in (task..MESSAGES).step_by(25) {
                let m = new_message(2);
                store.enqueue(&m).await.expect("enqueue");
                let _ = tx.send(m.id);
            }
        });
    }
    drop(tx);
    let mut ids = Vec::new();
    while let Some(id) = rx.recv().await {
        acked(id);
        ids.push(id);
    }
    assert_eq!(ids.len(), MESSAGES, "every enqueue returned");
    let leased = store.lease_due(T0, LEASE, 1).await.expect("lease");
    (ids, leased[0].message.id)
}

/// After a restart: every acknowledged message is queued, all but `leased`
/// are due now, and `leased` is due again once its lease lapsed.
async fn check_after_restart(url: &str, ids: &[MessageId], leased: MessageId) {
    let store = SqlStore::connect(url).await.expect("reopen");
    for id in ids {
        let m = store
            .get_queued(*id)
            .await
            .expect("an acknowledged message is queued");
        assert_eq!(m.recipients.len(), 2);
    }
    assert_eq!(
        store.queue_stats().await.expect("stats").depth,
        MESSAGES as u64
    );
    let due = store
        .lease_due(T0, Duration::from_secs(3600), 1000)
        .await
        .expect("lease");
    assert_eq!(due.len(), MESSAGES - 1, "everything not leased is due");
    assert!(
        due.iter().all(|l| l.message.id != leased),
        "the lease holds"
    );
    let again = store.lease_due(t(60), LEASE, 1000).await.expect("lease");
    assert_eq!(
        again.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![leased],
        "the lapsed lease is taken again"
    );
    store.close().await;
}

/// The store is dropped without [`SqlStore::close`] and the file reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dropped_store_loses_nothing() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
    let (ids, leased) = fill(&store, |_| {}).await;
    let m = store.get_queued(ids[0]).await.expect("get");
    drop(store);
    check_after_restart(&url, &ids, leased).await;
    let store = SqlStore::connect(&url).await.expect("reopen");
    assert_eq!(
        store.get_queued(m.id).await.expect("get"),
        m,
        "byte for byte"
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The process is killed (SIGKILL) right after its enqueues returned: no
/// destructor runs, no connection is closed, the WAL is not checkpointed.
#[test]
fn sqlite_killed_process_loses_nothing() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut ids = Vec::new();
    let mut leased = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        // libtest may print `test crash_child ... ` before the first line.
        if let Some((_, id)) = line.split_once("ENQUEUED ") {
            ids.push(id.parse::<MessageId>().expect("id"));
        } else if let Some((_, id)) = line.split_once("LEASED ") {
            leased = Some(id.parse::<MessageId>().expect("id"));
        } else if line.ends_with("READY") {
            break;
        }
    }
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    let leased = leased.expect("the child leased a message");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(check_after_restart(&url, &ids, leased));
    remove_dir(&dir);
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The child half of [`sqlite_killed_process_loses_nothing`]; passes at
/// once when run as an ordinary test.
#[test]
fn crash_child() {
    let Some(url) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let url = url.into_string().expect("utf-8 url");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(SqlStore::connect(&url).await.expect("open"));
        // Each id is printed as soon as its enqueue is acknowledged.
        let (_, leased) = fill(&store, |id| println!("ENQUEUED {id}")).await;
        println!("LEASED {leased}");
        println!("READY");
        // Wait to be killed, holding the store open.
        std::thread::sleep(Duration::from_secs(600));
        drop(store);
    });
}
