//! [`QueueStore`](crate::store::QueueStore): the durable queue, run by
//! [`queue_conformance_suite!`](crate::queue_conformance_suite).
//!
//! Unlike the rest of the suite, these tests lease "everything due", so they
//! need the fresh, empty queue the factory gives each test (a queue shared
//! with other tests would hand them each other's messages).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::expect;
use super::fixtures::{self, T0, t, unique_address};
use crate::ids::MessageId;
use crate::model::{MessageKind, QueuedMessage, QueuedRecipient, RecipientState, RemoteReply};
use crate::store::{PageRequest, QueueStore};

const LEASE: Duration = Duration::from_secs(60);

/// A message with `n` pending recipients, due at `T0`.
#[must_use]
pub fn new_message(n: usize) -> QueuedMessage {
    let body: Vec<u8> = format!(
        "Received: from client by smtpy\r\nSubject: test {}\r\n\r\nHello\r\n",
        MessageId::new()
    )
    .into_bytes();
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: Some(unique_address("srs", "bounce.example")),
        original_sender: Some(unique_address("sender", "outside.example")),
        body: Arc::from(body),
        recipients: (0..n)
            .map(|_| {
                let mut r = QueuedRecipient::new(unique_address("box", "mail.example"));
                r.original = Some(unique_address("alias", "alias.example"));
                r
            })
            .collect(),
        owner: None,
        received_at: T0,
        next_attempt_at: T0,
        expires_at: t(5 * 86_400),
        attempts: 0,
        held: false,
        correlation_id: fixtures::unique("c"),
    }
}

fn delivered() -> RecipientState {
    RecipientState::Delivered {
        at: t(1),
        reply: Some(RemoteReply {
            code: 250,
            enhanced: Some("2.0.0".into()),
            text: "ok".into(),
        }),
    }
}

/// Enqueue then read back: every field, the body byte for byte (binary,
/// 1 MiB); a duplicate id is `AlreadyExists`; stats count it.
pub async fn queue_enqueue_round_trip(store: &dyn QueueStore) {
    let mut m = new_message(2);
    let mut body: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    body.extend_from_slice(b"\r\n");
    m.body = Arc::from(body);
    m.kind = MessageKind::Dsn;
    m.reverse_path = None;
    m.recipients[1].attempts = 3;
    m.recipients[1].last_reply = Some(RemoteReply {
        code: 451,
        enhanced: None,
        text: "greylisted".into(),
    });
    store.enqueue(&m).await.expect("enqueue");
    assert_eq!(store.get_queued(m.id).await.expect("get"), m);
    expect::already_exists(store.enqueue(&m).await, "same message id twice");
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(stats.depth, 1);
    assert_eq!(stats.oldest_received_at, Some(T0));
    let page = store
        .list_queue(PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![m.id]
    );
    expect::not_found(store.get_queued(MessageId::new()).await, "unknown message");
}

/// Only due, unheld, unleased messages are leased, earliest due first;
/// a lease hides the message until it lapses, then a new token is issued.
pub async fn queue_lease_due_rules(store: &dyn QueueStore) {
    let mut later = new_message(1);
    later.next_attempt_at = t(100);
    let mut held = new_message(1);
    held.held = true;
    let mut first = new_message(1);
    first.next_attempt_at = t(-10);
    let second = new_message(1);
    for m in [&later, &held, &second, &first] {
        store.enqueue(m).await.expect("enqueue");
    }
    let got = store.lease_due(T0, LEASE, 1).await.expect("lease");
    assert_eq!(
        got.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![first.id],
        "earliest due first"
    );
    assert_eq!(got[0].until, T0.saturating_add(LEASE));
    let got = store.lease_due(T0, LEASE, 10).await.expect("lease");
    assert_eq!(
        got.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![second.id],
        "not held, not later, not leased"
    );
    assert!(
        store
            .lease_due(t(59), LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "leases still hold"
    );
    let again = store.lease_due(t(60), LEASE, 10).await.expect("lease");
    let ids: HashSet<MessageId> = again.iter().map(|l| l.message.id).collect();
    assert_eq!(
        ids,
        HashSet::from([first.id, second.id]),
        "lapsed leases are taken again"
    );
    assert!(
        again.iter().all(|l| l.token != got[0].token),
        "a new lease has a new token"
    );
    store.set_held(held.id, false).await.expect("release hold");
    let got = store.lease_due(t(60), LEASE, 10).await.expect("lease");
    assert_eq!(
        got.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![held.id]
    );
    let got = store.lease_due(t(100), LEASE, 10).await.expect("lease");
    assert_eq!(
        got.iter().map(|l| l.message.id).collect::<Vec<_>>(),
        vec![later.id]
    );
}

/// A message whose recipients are all final leaves the queue; a partial
/// outcome is stored, the lease ends, and the message is due at the new time.
pub async fn queue_complete_attempt(store: &dyn QueueStore) {
    let all = new_message(2);
    let part = new_message(2);
    store.enqueue(&all).await.expect("enqueue");
    store.enqueue(&part).await.expect("enqueue");
    let leased = store.lease_due(T0, LEASE, 10).await.expect("lease");
    assert_eq!(leased.len(), 2);
    for l in leased {
        let mut m = l.message.clone();
        m.attempts = 1;
        m.recipients[0].state = delivered();
        m.recipients[0].attempts = 1;
        if m.id == all.id {
            m.recipients[1].state = RecipientState::Failed {
                at: t(1),
                reply: None,
                reason: "550 no".into(),
            };
        } else {
            m.recipients[1].attempts = 1;
            m.recipients[1].last_reply = Some(RemoteReply {
                code: 451,
                enhanced: Some("4.7.1".into()),
                text: "try later".into(),
            });
            m.next_attempt_at = t(120);
        }
        // The body and envelope are never rewritten by an outcome.
        m.body = Arc::from(b"tampered".to_vec());
        store
            .complete_attempt(l.token, &m, &[])
            .await
            .expect("complete");
    }
    expect::not_found(
        store.get_queued(all.id).await,
        "a finished message leaves the queue",
    );
    let stored = store.get_queued(part.id).await.expect("still queued");
    assert_eq!(stored.body, part.body, "body unchanged");
    assert_eq!(stored.attempts, 1);
    assert_eq!(stored.next_attempt_at, t(120));
    assert_eq!(stored.recipients[0].state, delivered());
    assert_eq!(stored.recipients[1].state, RecipientState::Pending);
    assert_eq!(
        stored.recipients[1].last_reply.as_ref().map(|r| r.code),
        Some(451)
    );
    assert!(
        store
            .lease_due(t(119), LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "not due yet"
    );
    let got = store.lease_due(t(120), LEASE, 10).await.expect("lease");
    assert_eq!(
        got.len(),
        1,
        "the lease ended with the attempt and the message is due again"
    );
    assert_eq!(store.queue_stats().await.expect("stats").depth, 1);
}

/// An outcome under a lease someone else took over is `Conflict`; theirs wins.
pub async fn queue_stale_lease_is_conflict(store: &dyn QueueStore) {
    let m = new_message(1);
    store.enqueue(&m).await.expect("enqueue");
    let a = store
        .lease_due(T0, LEASE, 1)
        .await
        .expect("lease")
        .remove(0);
    let b = store
        .lease_due(t(61), LEASE, 1)
        .await
        .expect("lease")
        .remove(0);
    let mut done = m.clone();
    done.recipients[0].state = delivered();
    expect::conflict(
        store.complete_attempt(a.token, &done, &[]).await,
        "stale lease",
    );
    assert!(store.get_queued(m.id).await.is_ok(), "nothing recorded");
    store
        .complete_attempt(b.token, &done, &[])
        .await
        .expect("current lease");
    expect::not_found(store.get_queued(m.id).await, "done");
    expect::not_found(store.complete_attempt(b.token, &done, &[]).await, "gone");
}

/// Follow-ups (DSNs) are enqueued atomically with the outcome.
pub async fn queue_follow_ups_are_atomic(store: &dyn QueueStore) {
    let m = new_message(1);
    let other = new_message(1);
    store.enqueue(&m).await.expect("enqueue");
    store.enqueue(&other).await.expect("enqueue");
    let l = store
        .lease_due(T0, LEASE, 10)
        .await
        .expect("lease")
        .into_iter()
        .find(|l| l.message.id == m.id)
        .expect("leased");
    let mut failed = m.clone();
    failed.recipients[0].state = RecipientState::Failed {
        at: t(1),
        reply: None,
        reason: "550".into(),
    };
    let mut dsn = new_message(1);
    dsn.kind = MessageKind::Dsn;
    dsn.reverse_path = None;
    // A follow-up whose id is taken: nothing at all happens.
    let mut clash = dsn.clone();
    clash.id = other.id;
    expect::already_exists(
        store
            .complete_attempt(l.token, &failed, &[dsn.clone(), clash])
            .await,
        "follow-up id taken",
    );
    assert!(store.get_queued(m.id).await.is_ok(), "outcome not recorded");
    expect::not_found(store.get_queued(dsn.id).await, "follow-up not enqueued");
    store
        .complete_attempt(l.token, &failed, &[dsn.clone()])
        .await
        .expect("complete");
    expect::not_found(
        store.get_queued(m.id).await,
        "failed for good: left the queue",
    );
    assert_eq!(store.get_queued(dsn.id).await.expect("dsn queued"), dsn);
}

/// Concurrent leasers (several instances) never get the same message.
pub async fn queue_concurrent_leases_are_exclusive(store: &dyn QueueStore) {
    let mut ids = HashSet::new();
    for _ in 0..24 {
        let m = new_message(1);
        ids.insert(m.id);
        store.enqueue(&m).await.expect("enqueue");
    }
    let batches =
        fixtures::concurrently(4, |_| async { store.lease_due(T0, LEASE, 10).await }).await;
    let mut seen = Vec::new();
    for b in batches {
        seen.extend(b.expect("lease").into_iter().map(|l| l.message.id));
    }
    let unique: HashSet<MessageId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a message leased twice: {seen:?}");
    assert_eq!(unique, ids, "every due message leased exactly once");
}

/// Releasing a lease makes the message due again at once; a wrong token
/// changes nothing; releasing twice is fine.
pub async fn queue_release_lease(store: &dyn QueueStore) {
    let m = new_message(1);
    store.enqueue(&m).await.expect("enqueue");
    let l = store
        .lease_due(T0, LEASE, 1)
        .await
        .expect("lease")
        .remove(0);
    store
        .release_lease(crate::model::LeaseToken::new(), m.id)
        .await
        .expect("wrong token is a no-op");
    assert!(
        store
            .lease_due(T0, LEASE, 1)
            .await
            .expect("lease")
            .is_empty(),
        "still leased"
    );
    store.release_lease(l.token, m.id).await.expect("release");
    store
        .release_lease(l.token, m.id)
        .await
        .expect("release twice");
    assert_eq!(
        store.lease_due(T0, LEASE, 1).await.expect("lease").len(),
        1,
        "due again"
    );
    store
        .release_lease(l.token, MessageId::new())
        .await
        .expect("unknown id is Ok");
}

/// Operator actions: hold, retry now, delete; stats follow.
pub async fn queue_operator_actions(store: &dyn QueueStore) {
    let mut m = new_message(1);
    m.next_attempt_at = t(3600);
    store.enqueue(&m).await.expect("enqueue");
    store.set_held(m.id, true).await.expect("hold");
    assert_eq!(store.queue_stats().await.expect("stats").held, 1);
    store.retry_now(m.id, T0).await.expect("retry now");
    assert!(
        store
            .lease_due(T0, LEASE, 10)
            .await
            .expect("lease")
            .is_empty(),
        "held"
    );
    store.set_held(m.id, false).await.expect("unhold");
    assert_eq!(
        store.get_queued(m.id).await.expect("get").next_attempt_at,
        T0
    );
    assert_eq!(
        store.lease_due(T0, LEASE, 10).await.expect("lease").len(),
        1,
        "retry now made it due"
    );
    store.delete_queued(m.id).await.expect("delete");
    expect::not_found(store.get_queued(m.id).await, "deleted");
    expect::not_found(store.delete_queued(m.id).await, "delete twice");
    expect::not_found(store.set_held(m.id, true).await, "hold missing");
    expect::not_found(store.retry_now(m.id, T0).await, "retry missing");
    let stats = store.queue_stats().await.expect("stats");
    assert_eq!(
        (stats.depth, stats.held, stats.oldest_received_at),
        (0, 0, None)
    );
}

/// `complete_attempts` records each entry like `complete_attempt`: a stale
/// lease in the batch is `Conflict` for that entry only.
pub async fn queue_complete_attempts_batch(store: &dyn QueueStore) {
    let a = new_message(1);
    let b = new_message(1);
    let c = new_message(1);
    for m in [&a, &b, &c] {
        store.enqueue(m).await.expect("enqueue");
    }
    let leased = store.lease_due(T0, LEASE, 10).await.expect("lease");
    assert_eq!(leased.len(), 3);
    let mut batch = Vec::new();
    for l in leased {
        let mut m = l.message.clone();
        m.attempts = 1;
        let token = if m.id == b.id {
            crate::model::LeaseToken::new() // not b's lease
        } else {
            l.token
        };
        if m.id == a.id {
            m.recipients[0].state = delivered();
        } else {
            m.next_attempt_at = t(30);
        }
        batch.push(crate::store::Completion {
            token,
            message: m,
            follow_ups: Vec::new(),
        });
    }
    let results = store.complete_attempts(&batch).await.expect("batch");
    assert_eq!(results.len(), 3);
    for (c_, r) in batch.iter().zip(results) {
        if c_.message.id == b.id {
            expect::conflict(r, "stale lease in a batch");
        } else {
            r.expect("recorded");
        }
    }
    expect::not_found(store.get_queued(a.id).await, "a delivered");
    assert_eq!(
        store.get_queued(c.id).await.expect("c").next_attempt_at,
        t(30)
    );
    assert_eq!(
        store.get_queued(b.id).await.expect("b").attempts,
        0,
        "b untouched"
    );
    assert!(
        store
            .complete_attempts(&[])
            .await
            .expect("empty")
            .is_empty()
    );
}
