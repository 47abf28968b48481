//! Nothing accepted is lost: every enqueue that returned `Ok` survives the
//! process dying without any cleanup, and a lease its holder never
//! completed lapses and the message is delivered again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use smtpy_core::ids::MessageId;
use smtpy_core::store::QueueStore;
use smtpy_core::testing::fixtures::{T0, t};
use smtpy_core::testing::new_message;
use smtpy_store_redb::RedbStore;

const LEASE: Duration = Duration::from_secs(60);
const MESSAGES: usize = 200;
/// Set (to the database path) in the child process only.
const CHILD_ENV: &str = "SMTPY_QUEUE_CRASH_CHILD";

/// Enqueues [`MESSAGES`] messages from 50 concurrent tasks and leases one;
/// returns the ids as each enqueue returned and the leased id.
async fn fill(store: &Arc<RedbStore>) -> (Vec<MessageId>, MessageId) {
    let tasks: Vec<_> = (0..50)
        .map(|task| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (task..MESSAGES).step_by(50) {
                    let m = new_message(2);
                    store.enqueue(&m).await.expect("enqueue");
                    ids.push(m.id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("enqueue task"));
    }
    let leased = store.lease_due(T0, LEASE, 1).await.expect("lease");
    (ids, leased[0].message.id)
}

/// After a restart: every id is queued, all but `leased` are due now, and
/// `leased` is due again once its lease lapsed.
async fn check_after_restart(path: &Path, ids: &[MessageId], leased: MessageId) {
    let store = RedbStore::open(path).expect("reopen");
    assert_eq!(ids.len(), MESSAGES);
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
    // Leased for an hour, so that only the child's lease lapses below.
    let due = store
        .lease_due(T0, Duration::from_secs(3600), 1000)
        .await
        .expect("lease");
    assert_eq!(
        due.len(),
        MESSAGES - 1,
        "everything not under a lease is due"
    );
    assert!(
        due.iter().all(|l| l.message.id != leased),
        "the lease still holds"
    );
    let again = store.lease_due(t(60), LEASE, 1000).await.expect("lease");
    assert_eq!(
        again.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![leased],
        "the lapsed lease is taken again"
    );
}

/// The process is killed (SIGKILL) right after its enqueues returned: no
/// destructor runs, the file is not closed, redb repairs it on open.
#[test]
fn killed_process_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
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
        .block_on(check_after_restart(&path, &ids, leased));
}

/// The child half of [`killed_process_loses_nothing`]; passes at once when
/// run as an ordinary test.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(RedbStore::open(&path).expect("open"));
        let (ids, leased) = fill(&store).await;
        for id in ids {
            println!("ENQUEUED {id}");
        }
        println!("LEASED {leased}");
        println!("READY");
        // Wait to be killed, holding the store open.
        std::thread::sleep(Duration::from_secs(600));
        drop(store);
    });
}

/// The same in one process: the store is dropped (its committer stops) and
/// the file reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_store_has_every_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let store = Arc::new(RedbStore::open(&path).expect("open"));
    let (ids, leased) = fill(&store).await;
    drop(store);
    check_after_restart(&path, &ids, leased).await;
}

/// An enqueue whose caller stopped waiting after handing the message over
/// is still written, and dropping the store drains the committer first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_enqueue_is_written_before_drop_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let store = RedbStore::open(&path).expect("open");
    let m = new_message(1);
    // The first poll hands the message to the committer; the zero timeout
    // then drops the future without waiting for the commit.
    let abandoned = tokio::time::timeout(Duration::ZERO, store.enqueue(&m)).await;
    drop(store);
    let store = RedbStore::open(&path).expect("reopen");
    if abandoned.is_err() {
        assert_eq!(store.get_queued(m.id).await.expect("queued"), m);
    } else {
        // The commit won the race; it must be there all the same.
        assert!(store.get_queued(m.id).await.is_ok());
    }
}
