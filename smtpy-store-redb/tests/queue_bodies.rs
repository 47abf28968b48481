//! Message bodies: stored byte for byte, written once, never rewritten by
//! an attempt's outcome.

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::model::{QueuedMessage, RemoteReply};
use smtpy_core::store::{PageRequest, QueueStore};
use smtpy_core::testing::fixtures::{T0, t};
use smtpy_core::testing::new_message;
use smtpy_store_redb::RedbStore;

const LEASE: Duration = Duration::from_secs(60);
const BIG: usize = 10 * 1024 * 1024;

fn big_message() -> QueuedMessage {
    let mut m = new_message(2);
    let body: Vec<u8> = (0..BIG as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    m.body = Arc::from(body);
    m
}

/// A 10 MB body comes back intact from get, list and lease, and leaves with
/// its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_body_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let m = big_message();
    {
        let store = RedbStore::open(&path).expect("open");
        store.enqueue(&m).await.expect("enqueue");
        assert_eq!(store.get_queued(m.id).await.expect("get"), m);
    }
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.get_queued(m.id).await.expect("get"), m);
    let page = store
        .list_queue(PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(page.items, vec![m.clone()]);
    let leased = store
        .lease_due(T0, LEASE, 10)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(leased.message, m);
    store.delete_queued(m.id).await.expect("delete");
    drop(store);
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.queue_stats().await.expect("stats").depth, 0);
}

/// Recording attempts rewrites the small row only: ten attempts on a
/// message with a 10 MB body grow the file by far less than one body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_do_not_rewrite_the_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smtpy.redb");
    let store = RedbStore::open(&path).expect("open");
    let m = big_message();
    store.enqueue(&m).await.expect("enqueue");
    let size = || std::fs::metadata(&path).expect("metadata").len();
    let before = size();
    for attempt in 1..=10u32 {
        let at = t(i64::from(attempt) * 600);
        let leased = store
            .lease_due(at, LEASE, 1)
            .await
            .expect("lease")
            .remove(0);
        let mut outcome = leased.message.clone();
        outcome.attempts = attempt;
        outcome.recipients[0].attempts = attempt;
        outcome.recipients[0].last_reply = Some(RemoteReply {
            code: 451,
            enhanced: Some("4.7.1".into()),
            text: "greylisted".into(),
        });
        outcome.next_attempt_at = t(i64::from(attempt + 1) * 600);
        store
            .complete_attempt(leased.token, &outcome, &[])
            .await
            .expect("complete");
    }
    let grown = size().saturating_sub(before);
    assert!(grown < (BIG / 4) as u64, "the file grew by {grown} bytes");
    let stored = store.get_queued(m.id).await.expect("get");
    assert_eq!(stored.attempts, 10);
    assert_eq!(stored.body, m.body);
}
