//! Metrics of the mail path, through real SMTP sessions on a loopback
//! listener: sessions opened and active, messages accepted, refusals by
//! reason, rate-limit denials by scope, deliveries by outcome and the
//! delivery latency. Also the public way to queue a notification.

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::limits::{LimitPolicy, Limits, LocalLimiter};
use smtpy_core::memory::MemoryStore;
use smtpy_core::metrics::{
    DELIVERIES, DELIVERY_LATENCY, MESSAGES_ACCEPTED, MESSAGES_REJECTED, Metrics,
    RATE_LIMIT_DENIALS, SMTP_SESSIONS, SMTP_SESSIONS_ACTIVE,
};
use smtpy_core::model::{Alias, Domain, Mailbox, MessageKind, RemoteReply, Role, User};
use smtpy_core::notify::{Notification, Templates};
use smtpy_core::store::{
    AliasStore, DomainStore, MailboxStore, PageRequest, QueueStore, UserStore,
};
use smtpy_core::time::{Clock, ManualClock, Timestamp};
use smtpy_core::transport::DeliveryOutcome;
use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker};
use smtpy_smtp::policy::MailPolicy;
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use smtpy_smtp::transport::testing::RecordingTransport;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const T0: Timestamp = Timestamp::from_unix_secs(1_700_000_000);
const MAX_SIZE: usize = 10_000;

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("address")
}

struct World {
    store: Arc<MemoryStore>,
    clock: ManualClock,
    metrics: Arc<Metrics>,
    port: u16,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// alias.test hosted; `shop@` forwards to three mailboxes and takes one
/// message an hour; `old@` is disabled.
async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0);
    let user = User::new(addr("owner@users.test"), Role::User, T0);
    store.create_user(&user).await.expect("user");
    let mut domain = Domain::new(
        DomainName::parse("alias.test").expect("d"),
        user.id,
        "t".into(),
        T0,
    );
    domain.verified_at = Some(T0);
    store.create_domain(&domain).await.expect("domain");
    let mut ids = Vec::new();
    for m in ["ok@mail.test", "later@mail.test", "gone@mail.test"] {
        let mut mailbox = Mailbox::new(user.id, addr(m), T0);
        mailbox.verified_at = Some(T0);
        store.create_mailbox(&mailbox).await.expect("mailbox");
        ids.push(mailbox.id);
    }
    let mut shop = Alias::new(addr("shop@alias.test"), user.id, domain.id, ids.clone(), T0);
    shop.limits.messages_per_hour = Some(1);
    store.create_alias(&shop).await.expect("alias");
    let mut old = Alias::new(addr("old@alias.test"), user.id, domain.id, ids, T0);
    old.enabled = false;
    store.create_alias(&old).await.expect("alias");

    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let mut policy = MailPolicy::default();
    policy.limits = Some(Limits::new(
        Arc::new(LocalLimiter::new(Arc::clone(&clock_dyn))),
        LimitPolicy::default(),
    ));
    let metrics = Arc::new(Metrics::new());
    let acceptor = Acceptor::new(
        store.clone(),
        store.clone(),
        Arc::clone(&clock_dyn),
        "mx.test",
    )
    .with_policy(Arc::new(policy));
    let server = SmtpServer::new(
        SessionConfig::new("mx.test").with_max_message_size(MAX_SIZE),
        acceptor,
        clock_dyn,
    )
    .with_metrics(Arc::clone(&metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { server.serve(listener, rx).await });
    World {
        store,
        clock,
        metrics,
        port,
        _stop: stop,
    }
}

/// One session: sends each command (a `DATA` line is followed by
/// `message` and the final dot) and returns each reply; ends with QUIT.
async fn session(port: u16, commands: &[&str], message: &str) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut reply = async || -> String {
        loop {
            let line = lines.next_line().await.expect("read").expect("a line");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    assert!(reply().await.starts_with("220"));
    let mut out = Vec::new();
    for cmd in commands {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .expect("write");
        let got = reply().await;
        let go_on = got.starts_with("354");
        out.push(got);
        if *cmd == "DATA" && go_on {
            w.write_all(format!("{message}\r\n.\r\n").as_bytes())
                .await
                .expect("write");
            out.push(reply().await);
        }
    }
    w.write_all(b"QUIT\r\n").await.expect("write");
    assert!(reply().await.starts_with("221"));
    out
}

const MESSAGE: &str = "From: bob@outside.test\r\nTo: shop@alias.test\r\nSubject: hi\r\n\r\nhello";

fn rejected(m: &Metrics, reason: &str) -> f64 {
    m.get(MESSAGES_REJECTED, &[("reason", reason)])
}

/// Waits until no session is open any more (the server counts a session
/// down after the client's QUIT).
async fn sessions_closed(m: &Metrics) {
    for _ in 0..200 {
        if m.get(SMTP_SESSIONS_ACTIVE, &[]) == 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sessions still active: {}", m.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_acceptances_and_refusals_are_counted_by_reason() {
    let w = world().await;
    let m = &w.metrics;

    // Accepted: one message.
    let replies = session(
        w.port,
        &[
            "EHLO client.test",
            "MAIL FROM:<bob@outside.test>",
            "RCPT TO:<shop@alias.test>",
            "DATA",
        ],
        MESSAGE,
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    assert_eq!(m.get(MESSAGES_ACCEPTED, &[]), 1.0);
    assert_eq!(m.get(SMTP_SESSIONS, &[]), 1.0);
    sessions_closed(m).await;

    // Refused recipients, one reason each.
    let replies = session(
        w.port,
        &[
            "EHLO client.test",
            "MAIL FROM:<bob@outside.test>",
            "RCPT TO:<nobody@alias.test>",
            "RCPT TO:<someone@elsewhere.test>",
            "RCPT TO:<old@alias.test>",
        ],
        "",
    )
    .await;
    assert!(replies[2].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[3].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[4].starts_with("550 5.1.1"), "{replies:?}");
    assert_eq!(rejected(m, "unknown_alias"), 1.0);
    assert_eq!(rejected(m, "relay_denied"), 1.0);
    assert_eq!(
        rejected(m, "disabled_alias"),
        1.0,
        "a disabled alias answers like an unknown one but is counted apart"
    );

    // The alias takes one message an hour: the second is rate limited.
    let replies = session(
        w.port,
        &[
            "EHLO client.test",
            "MAIL FROM:<bob@outside.test>",
            "RCPT TO:<shop@alias.test>",
        ],
        "",
    )
    .await;
    assert!(replies[2].starts_with("450 4.7.1"), "{replies:?}");
    assert_eq!(rejected(m, "rate_limited"), 1.0);
    assert_eq!(m.get(RATE_LIMIT_DENIALS, &[("scope", "alias")]), 1.0);

    // Too big, declared up front.
    let replies = session(
        w.port,
        &[
            "EHLO client.test",
            &format!("MAIL FROM:<bob@outside.test> SIZE={}", MAX_SIZE * 10),
        ],
        "",
    )
    .await;
    assert!(replies[1].starts_with("552"), "{replies:?}");
    sessions_closed(m).await;
    assert_eq!(rejected(m, "too_big"), 1.0);

    assert_eq!(m.get(SMTP_SESSIONS, &[]), 4.0);
    assert_eq!(m.get(SMTP_SESSIONS_ACTIVE, &[]), 0.0);
    assert_eq!(m.get(MESSAGES_ACCEPTED, &[]), 1.0, "nothing else accepted");
    let text = m.render();
    assert!(text.contains("smtpy_smtp_sessions_total 4\n"), "{text}");
    assert!(
        text.contains("smtpy_messages_rejected_total{reason=\"relay_denied\"} 1\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_counted_by_outcome_with_latency() {
    let w = world().await;
    let replies = session(
        w.port,
        &[
            "EHLO client.test",
            "MAIL FROM:<bob@outside.test>",
            "RCPT TO:<shop@alias.test>",
            "DATA",
        ],
        MESSAGE,
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");

    let transport = Arc::new(RecordingTransport::new());
    let reply = |code: u16, enhanced: &str| RemoteReply {
        code,
        enhanced: Some(enhanced.into()),
        text: "scripted".into(),
    };
    transport.push_outcome(
        &addr("ok@mail.test"),
        DeliveryOutcome::Delivered(Some(reply(250, "2.0.0"))),
    );
    transport.push_outcome(
        &addr("later@mail.test"),
        DeliveryOutcome::Temporary(reply(451, "4.7.1")),
    );
    transport.push_outcome(
        &addr("gone@mail.test"),
        DeliveryOutcome::Permanent(reply(550, "5.1.1")),
    );
    let worker = DeliveryWorker::new(
        w.store.clone() as Arc<dyn QueueStore>,
        transport,
        Arc::new(w.clock.clone()),
        DeliveryConfig::new("mx.test").expect("config"),
    )
    .with_metrics(Arc::clone(&w.metrics));
    w.clock.advance(Duration::from_secs(3));
    assert_eq!(worker.run_once().await.expect("run"), 1);

    let m = &w.metrics;
    assert_eq!(m.get(DELIVERIES, &[("outcome", "delivered")]), 1.0);
    assert_eq!(m.get(DELIVERIES, &[("outcome", "deferred")]), 1.0);
    assert_eq!(m.get(DELIVERIES, &[("outcome", "bounced")]), 1.0);
    assert_eq!(m.get(DELIVERY_LATENCY, &[]), 1.0, "one delivered recipient");
    let text = m.render();
    assert!(
        text.contains("smtpy_delivery_latency_seconds_bucket{le=\"2.5\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("smtpy_delivery_latency_seconds_bucket{le=\"5\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("smtpy_delivery_latency_seconds_sum 3\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_notification_is_rendered_and_queued_for_its_recipient() {
    let queue = MemoryStore::new();
    let owner = User::new(addr("owner@users.test"), Role::User, T0);
    let n = Notification::mailbox_verification(
        addr("new@mail.test"),
        "ABCD-1234",
        None,
        T0.saturating_add(Duration::from_secs(86_400)),
    );

    let off = MailPolicy::default();
    let err = off
        .queue_notification(&queue, &n, "mx.test", owner.id, T0, Duration::from_secs(60))
        .await
        .expect_err("no templates: notifications are off");
    assert!(err.contains("switched off"), "{err}");

    let mut policy = MailPolicy::default();
    policy.templates = Some(Templates::builtin());
    policy.notify_from = Some(addr("notifications@mx.test"));
    let id = policy
        .queue_notification(
            &queue,
            &n,
            "mx.test",
            owner.id,
            T0,
            Duration::from_secs(3600),
        )
        .await
        .expect("queued");
    let queued = queue
        .list_queue(PageRequest::first(10))
        .await
        .expect("queue")
        .items;
    assert_eq!(queued.len(), 1);
    let m = &queued[0];
    assert_eq!(m.id, id);
    assert_eq!(m.kind, MessageKind::Notification);
    assert_eq!(m.owner, Some(owner.id));
    assert_eq!(m.recipients[0].address, addr("new@mail.test"));
    assert_eq!(m.reverse_path, None, "nothing comes back to a notification");
    assert_eq!(m.expires_at, T0.saturating_add(Duration::from_secs(3600)));
    let body = String::from_utf8_lossy(&m.body);
    assert!(body.contains("ABCD-1234"), "{body}");
    assert!(body.contains("notifications@mx.test"), "{body}");
}
