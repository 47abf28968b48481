//! Group commit: concurrent enqueues share durable commits, and each
//! enqueue still gets its own outcome.

use std::collections::HashSet;
use std::sync::Arc;

use smtpy_core::StoreError;
use smtpy_core::ids::MessageId;
use smtpy_core::store::{PageRequest, QueueStore};
use smtpy_core::testing::new_message;
use smtpy_store_redb::RedbStore;

fn store() -> Arc<RedbStore> {
    Arc::new(RedbStore::builder().open_temporary().expect("open"))
}

/// 64 concurrent enqueues: all stored, in fewer than 64 commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let store = store();
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
    let store = store();
    for i in 1..=3 {
        store.enqueue(&new_message(1)).await.expect("enqueue");
        assert_eq!(store.enqueue_commit_counts(), (i, i));
    }
}

/// A duplicate id fails only that enqueue, whether it shares a batch with
/// the first copy or not; the others in flight are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_fails_only_itself() {
    let store = store();
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
    let depth = store.queue_stats().await.expect("stats").depth;
    assert_eq!(depth, 1 + 1 + 20);
    for m in &batch[3..] {
        assert!(store.get_queued(m.id).await.is_ok());
    }
}
