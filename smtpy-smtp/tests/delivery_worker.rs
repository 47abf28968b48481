//! The delivery worker over the in-memory queue, a recording transport and a
//! manual clock: outcomes per recipient, the retry schedule, expiry, DSNs.

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::address::EmailAddress;
use smtpy_core::ids::MessageId;
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{MessageKind, QueuedMessage, QueuedRecipient, RecipientState, RemoteReply};
use smtpy_core::store::QueueStore;
use smtpy_core::time::{ManualClock, Timestamp};
use smtpy_core::transport::DeliveryOutcome;
use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker, RetrySchedule};
use smtpy_smtp::transport::testing::RecordingTransport;

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("address")
}

fn forward(sender: Option<&str>, mailboxes: &[&str]) -> QueuedMessage {
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: sender.map(|_| addr("SRS0=xxxx=aa=outside.test=bob@mx.test")),
        original_sender: sender.map(addr),
        body: Arc::from(
            b"Received: by mx.test\r\nSubject: hi\r\nTo: shop@alias.test\r\n\r\nbody\r\n".to_vec(),
        ),
        recipients: mailboxes
            .iter()
            .map(|m| {
                let mut r = QueuedRecipient::new(addr(m));
                r.original = Some(addr("shop@alias.test"));
                r
            })
            .collect(),
        owner: None,
        received_at: T0,
        next_attempt_at: T0,
        expires_at: T0.saturating_add(Duration::from_secs(3600)),
        attempts: 0,
        held: false,
        correlation_id: "c1".into(),
    }
}

struct Rig {
    queue: Arc<MemoryStore>,
    transport: Arc<RecordingTransport>,
    clock: ManualClock,
    worker: DeliveryWorker,
}

fn rig(retry: &[u64]) -> Rig {
    let queue = Arc::new(MemoryStore::new());
    let transport = Arc::new(RecordingTransport::new());
    let clock = ManualClock::new(T0);
    let mut config = DeliveryConfig::new("mx.test").expect("config");
    config.retry = RetrySchedule::new(retry.iter().map(|s| Duration::from_secs(*s)).collect());
    let worker = DeliveryWorker::new(
        Arc::clone(&queue) as Arc<dyn QueueStore>,
        Arc::clone(&transport) as _,
        Arc::new(clock.clone()),
        config,
    );
    Rig {
        queue,
        transport,
        clock,
        worker,
    }
}

fn reply(code: u16, enhanced: &str, text: &str) -> RemoteReply {
    RemoteReply {
        code,
        enhanced: Some(enhanced.into()),
        text: text.into(),
    }
}

#[tokio::test]
async fn delivered_message_leaves_the_queue() {
    let r = rig(&[60]);
    let m = forward(Some("bob@outside.test"), &["a@mail.test", "b@mail.test"]);
    r.queue.enqueue(&m).await.expect("enqueue");
    r.transport
        .set_fallback(DeliveryOutcome::Delivered(Some(reply(250, "2.0.0", "ok"))));
    assert_eq!(r.worker.run_once().await.expect("run"), 1);
    let sent = r.transport.take_deliveries();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].envelope.recipients,
        vec![addr("a@mail.test"), addr("b@mail.test")]
    );
    assert_eq!(sent[0].envelope.reverse_path, m.reverse_path);
    assert_eq!(sent[0].message, m.body.to_vec(), "body sent byte for byte");
    assert_eq!(r.queue.queue_stats().await.expect("stats").depth, 0);
}

#[tokio::test]
async fn temporary_failures_follow_the_retry_schedule_and_deliver_once() {
    let r = rig(&[2, 5]);
    let m = forward(Some("bob@outside.test"), &["a@mail.test"]);
    r.queue.enqueue(&m).await.expect("enqueue");
    r.transport.push_outcome(
        &addr("a@mail.test"),
        DeliveryOutcome::Temporary(reply(451, "4.7.1", "greylisted")),
    );
    r.transport.push_outcome(
        &addr("a@mail.test"),
        DeliveryOutcome::Temporary(reply(451, "4.7.1", "greylisted")),
    );
    r.transport.set_fallback(DeliveryOutcome::Delivered(None));
    r.worker.run_once().await.expect("attempt 1");
    let q = r.queue.get_queued(m.id).await.expect("still queued");
    assert_eq!(
        q.next_attempt_at,
        T0.saturating_add(Duration::from_secs(2)),
        "first retry after 2s"
    );
    assert_eq!(
        q.recipients[0].last_reply.as_ref().map(|x| x.code),
        Some(451)
    );
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(
        r.worker.run_once().await.expect("not due"),
        0,
        "not due before the schedule"
    );
    r.clock.advance(Duration::from_secs(1));
    r.worker.run_once().await.expect("attempt 2");
    let q = r.queue.get_queued(m.id).await.expect("still queued");
    assert_eq!(q.attempts, 2);
    assert_eq!(
        q.next_attempt_at,
        r.clock_now().saturating_add(Duration::from_secs(5)),
        "then 5s"
    );
    r.clock.advance(Duration::from_secs(5));
    r.worker.run_once().await.expect("attempt 3");
    assert!(
        r.queue.get_queued(m.id).await.is_err(),
        "delivered: left the queue"
    );
    assert_eq!(r.transport.attempts_for(&addr("a@mail.test")), 3);
    r.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        r.worker.run_once().await.expect("nothing left"),
        0,
        "delivered once"
    );
}

impl Rig {
    fn clock_now(&self) -> Timestamp {
        use smtpy_core::time::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn permanent_failure_sends_a_dsn_naming_the_alias_not_the_mailbox() {
    let r = rig(&[60]);
    let m = forward(
        Some("bob@outside.test"),
        &["Real.Person@mail.test", "ok@mail.test"],
    );
    r.queue.enqueue(&m).await.expect("enqueue");
    r.transport.push_outcome(
        &addr("Real.Person@mail.test"),
        DeliveryOutcome::Permanent(reply(550, "5.1.1", "<real.person@mail.test>: user unknown")),
    );
    r.transport.set_fallback(DeliveryOutcome::Delivered(None));
    r.worker.run_once().await.expect("attempt");
    let page = r.queue.list_queue(Default::default()).await.expect("list");
    assert_eq!(
        page.items.len(),
        1,
        "the forward left the queue; one DSN is queued"
    );
    let dsn = &page.items[0];
    assert_eq!(dsn.kind, MessageKind::Dsn);
    assert_eq!(dsn.reverse_path, None, "null sender");
    assert_eq!(
        dsn.recipients
            .iter()
            .map(|x| x.address.clone())
            .collect::<Vec<_>>(),
        vec![addr("bob@outside.test")]
    );
    let text = String::from_utf8_lossy(&dsn.body).to_lowercase();
    assert!(!text.contains("real.person"), "the mailbox leaked:\n{text}");
    assert!(text.contains("shop@alias.test"), "names the alias:\n{text}");
    assert!(text.contains("5.1.1"));
    // Delivering the DSN produces nothing further, even if it fails for good.
    r.transport.set_fallback(DeliveryOutcome::Permanent(reply(
        550,
        "5.1.1",
        "no such user",
    )));
    r.worker.run_once().await.expect("deliver the DSN");
    assert_eq!(
        r.queue.queue_stats().await.expect("stats").depth,
        0,
        "no DSN about a DSN"
    );
}

#[tokio::test]
async fn null_sender_never_gets_a_dsn() {
    let r = rig(&[60]);
    let m = forward(None, &["a@mail.test"]);
    r.queue.enqueue(&m).await.expect("enqueue");
    r.transport
        .set_fallback(DeliveryOutcome::Permanent(reply(550, "5.1.1", "unknown")));
    r.worker.run_once().await.expect("attempt");
    assert_eq!(r.queue.queue_stats().await.expect("stats").depth, 0);
}

#[tokio::test]
async fn expiry_fails_pending_recipients_with_a_dsn() {
    let r = rig(&[600]);
    let m = forward(Some("bob@outside.test"), &["slow@mail.test"]);
    r.queue.enqueue(&m).await.expect("enqueue");
    r.transport
        .set_fallback(DeliveryOutcome::Temporary(reply(451, "4.4.1", "try later")));
    r.worker.run_once().await.expect("attempt 1");
    // The schedule says 600s; the lifetime ends at 3600s: attempts continue until then.
    for _ in 0..5 {
        r.clock.advance(Duration::from_secs(600));
        r.worker.run_once().await.expect("attempt");
    }
    let q = r
        .queue
        .get_queued(m.id)
        .await
        .expect("still within its lifetime");
    assert_eq!(
        q.next_attempt_at, m.expires_at,
        "the last attempt is at expiry"
    );
    r.clock.set(m.expires_at);
    r.worker.run_once().await.expect("final attempt");
    assert!(
        r.queue.get_queued(m.id).await.is_err(),
        "expired: left the queue"
    );
    let page = r.queue.list_queue(Default::default()).await.expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].kind, MessageKind::Dsn);
    assert!(
        String::from_utf8_lossy(&page.items[0].body).contains("4.4.7"),
        "expired status"
    );
}

#[tokio::test]
async fn an_attempt_never_outlives_its_lease() {
    let queue = Arc::new(MemoryStore::new());
    let transport = Arc::new(RecordingTransport::with_fallback(
        DeliveryOutcome::Delivered(None),
    ));
    // The next hop takes longer than the lease: past it, another worker
    // could lease the message and deliver it a second time.
    transport.set_delay(Duration::from_secs(2));
    let clock = ManualClock::new(T0);
    let mut config = DeliveryConfig::new("mx.test").expect("config");
    config.lease = Duration::from_millis(400);
    config.retry = RetrySchedule::new(vec![Duration::from_secs(60)]);
    let worker = DeliveryWorker::new(
        Arc::clone(&queue) as Arc<dyn QueueStore>,
        Arc::clone(&transport) as _,
        Arc::new(clock.clone()),
        config,
    );
    let m = forward(Some("bob@outside.test"), &["a@mail.test"]);
    queue.enqueue(&m).await.expect("enqueue");
    let started = std::time::Instant::now();
    assert_eq!(worker.run_once().await.expect("run"), 1);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "stopped within the lease, took {took:?}"
    );
    // Recorded as a temporary failure under the lease (not lost, not
    // delivered), and retried on the schedule.
    let q = queue.get_queued(m.id).await.expect("still queued");
    assert_eq!(q.attempts, 1);
    assert!(matches!(q.recipients[0].state, RecipientState::Pending));
    let why = q.recipients[0]
        .last_reply
        .as_ref()
        .map(|r| r.text.clone())
        .unwrap_or_default();
    assert!(why.contains("lease"), "{why}");
    assert_eq!(
        q.next_attempt_at,
        T0.saturating_add(Duration::from_secs(60))
    );
}
