//! Group commit on SQLite: concurrent enqueues share durable commits, and
//! each enqueue still gets its own outcome. (PostgreSQL commits each
//! enqueue on its own; the server shares WAL flushes between them.)

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use smtpy_core::StoreError;
use smtpy_core::ids::MessageId;
use smtpy_core::store::{PageRequest, QueueStore};
use smtpy_core::testing::new_message;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};
use sqlx::{Connection, SqliteConnection};

/// 64 concurrent enqueues: all stored, in fewer than 64 commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let store = common::new_sqlite_store().await;
    let messages: Vec<_> = (0..64).map(|_| new_message(1)).collect();
    let tasks: Vec<_> = messages
        .iter()
        .cloned()
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(&m).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("enqueue");
    }
    let (commits, stored) = store.enqueue_commit_counts();
    assert_eq!(stored, 64);
    assert!(commits < 64, "{commits} commits for 64 concurrent enqueues");
    assert!(commits >= 1);
    let page = store
        .list_queue(PageRequest::first(100))
        .await
        .expect("list");
    let listed: HashSet<MessageId> = page.items.iter().map(|m| m.id).collect();
    let sent: HashSet<MessageId> = messages.iter().map(|m| m.id).collect();
    assert_eq!(listed, sent, "every message is stored");
    for m in &messages {
        assert_eq!(&store.get_queued(m.id).await.expect("get"), m);
    }
}

/// Sequential enqueues each commit on their own (no waiting for company).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_enqueue_commits_at_once() {
    let store = common::new_sqlite_store().await;
    for i in 1..=3 {
        store.enqueue(&new_message(1)).await.expect("enqueue");
        assert_eq!(store.enqueue_commit_counts(), (i, i));
    }
}

/// A duplicate id fails only that enqueue, whether it shares a batch with
/// the first copy or not; the others in flight are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_fails_only_itself() {
    let store = common::new_sqlite_store().await;
    let taken = new_message(1);
    store.enqueue(&taken).await.expect("enqueue");
    let twin = new_message(1);
    let mut batch = vec![taken.clone(), twin.clone(), twin.clone()];
    batch.extend((0..20).map(|_| new_message(1)));
    let tasks: Vec<_> = batch
        .iter()
        .cloned()
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (m.id, store.enqueue(&m).await) })
        })
        .collect();
    let mut refused = Vec::new();
    for task in tasks {
        let (id, outcome) = task.await.expect("task");
        match outcome {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { entity }) => {
                assert_eq!(entity, "queued message");
                refused.push(id);
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    refused.sort();
    let mut expected = vec![taken.id, twin.id];
    expected.sort();
    assert_eq!(
        refused, expected,
        "the old id and one of the twins are refused"
    );
    assert_eq!(store.queue_stats().await.expect("stats").depth, 1 + 1 + 20);
    for m in &batch[3..] {
        assert_eq!(&store.get_queued(m.id).await.expect("stored"), m);
    }
}

/// An enqueue whose caller stopped waiting after handing the message over
/// is still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_enqueue_is_still_written() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let store = SqlStore::connect(&url).await.expect("open");
    let m = new_message(1);
    // Poll the enqueue once — that hands the message to the commit task —
    // then drop it without waiting for the commit.
    {
        let mut enqueue = store.enqueue(&m);
        let first = std::future::poll_fn(|cx| Poll::Ready(enqueue.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the commit cannot be done yet");
    }
    let mut stored = None;
    for _ in 0..500 {
        if let Ok(got) = store.get_queued(m.id).await {
            stored = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored, Some(m), "the message was written all the same");
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A failed transaction fails every message of its batch with a retryable
/// error, stores none of them, and the next enqueue works again: here
/// another process holds SQLite's write lock past the busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_its_batch_and_the_next_one_works() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let store = Arc::new(
        SqlStoreOptions::new()
            .busy_timeout(Duration::from_millis(100))
            .connect(&url)
            .await
            .expect("open"),
    );
    // "Another process": a connection of its own, holding the write lock.
    let mut other = SqliteConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");
    let messages: Vec<_> = (0..8).map(|_| new_message(1)).collect();
    let tasks: Vec<_> = messages
        .iter()
        .cloned()
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(&m).await })
        })
        .collect();
    for t in tasks {
        match t.await.expect("task") {
            Err(e @ StoreError::Unavailable { .. }) => {
                assert!(e.is_temporary());
            }
            other => panic!("expected Unavailable while locked, got {other:?}"),
        }
    }
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the write lock");
    other.close().await.expect("close");
    assert_eq!(
        store.queue_stats().await.expect("stats").depth,
        0,
        "none stored"
    );
    assert_eq!(store.enqueue_commit_counts(), (0, 0));
    let m = new_message(1);
    store.enqueue(&m).await.expect("enqueue after the failure");
    assert_eq!(store.get_queued(m.id).await.expect("get"), m);
    assert_eq!(store.enqueue_commit_counts(), (1, 1));
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
