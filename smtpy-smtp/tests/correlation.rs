//! One correlation id per message, from the SMTP session to the events
//! API: every delivery event recorded for a message carries
//! `details["correlation"]` = the queued message's `correlation_id`
//! (accepted at DATA, blocked at RCPT, delivered and bounced by the worker).

use std::sync::Arc;

use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::bounce::BounceAddresses;
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{
    Alias, DeliveryEvent, Domain, EventFilter, EventKind, ForwardingRule, Mailbox, QueuedMessage,
    Role, User,
};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::rules::blocklist_rule;
use smtpy_core::srs::SrsKey;
use smtpy_core::store::{
    Access, AliasStore, DomainStore, EventStore, MailboxStore, PageRequest, QueueStore, RuleStore,
    UserStore,
};
use smtpy_core::time::{Clock, SystemClock};
use smtpy_core::transport::DeliveryOutcome;
use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker};
use smtpy_smtp::policy::MailPolicy;
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use smtpy_smtp::transport::testing::RecordingTransport;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MAILBOX: &str = "me@mail.test";

struct World {
    store: Arc<MemoryStore>,
    user: User,
    policy: Arc<MailPolicy>,
    port: u16,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn world(rules: Vec<ForwardingRule>) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let user = User::new(
        EmailAddress::parse("owner@users.test").expect("a"),
        Role::User,
        now,
    );
    store.create_user(&user).await.expect("user");
    let mut domain = Domain::new(
        DomainName::parse("alias.test").expect("d"),
        user.id,
        "t".into(),
        now,
    );
    domain.verified_at = Some(now);
    store.create_domain(&domain).await.expect("domain");
    let mut mailbox = Mailbox::new(user.id, EmailAddress::parse(MAILBOX).expect("m"), now);
    mailbox.verified_at = Some(now);
    store.create_mailbox(&mailbox).await.expect("mailbox");
    let alias = Alias::new(
        EmailAddress::parse("shop@alias.test").expect("a"),
        user.id,
        domain.id,
        vec![mailbox.id],
        now,
    );
    store.create_alias(&alias).await.expect("alias");
    for mut r in rules {
        r.owner = user.id;
        store.create_rule(&r).await.expect("rule");
    }
    // Forwards leave with a signed bounce address, so DSNs come back to us.
    let srs = SrsKey::generate('a').expect("srs key");
    let mut policy = MailPolicy::default();
    policy.reverse = Some(ReverseAliases::new(srs.clone()));
    policy.bounces =
        Some(BounceAddresses::new(DomainName::parse("mx.test").expect("d"), srs).expect("bounces"));
    let policy = Arc::new(policy);
    let acceptor = Acceptor::new(store.clone(), store.clone(), Arc::clone(&clock), "mx.test")
        .with_policy(Arc::clone(&policy));
    let server = SmtpServer::new(SessionConfig::new("mx.test"), acceptor, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { server.serve(listener, rx).await });
    World {
        store,
        user,
        policy,
        port,
        stop,
    }
}

/// One SMTP transaction: EHLO, MAIL, RCPT, then DATA when RCPT was
/// accepted. Returns the reply to each command.
async fn transaction(port: u16, from: &str, to: &str) -> Vec<String> {
    let message = format!(
        "From: <{from}>\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <c1@outside.test>\r\n\r\nHello.\r\n"
    );
    transaction_with(port, from, to, &message).await
}

/// [`transaction`] with `message` (CRLF lines, ending in CRLF) as the content.
async fn transaction_with(port: u16, from: &str, to: &str, message: &str) -> Vec<String> {
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
    for cmd in [
        "EHLO client.test".to_owned(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .expect("write");
        out.push(reply().await);
    }
    if out[2].starts_with("250") {
        w.write_all(b"DATA\r\n").await.expect("write");
        out.push(reply().await);
        w.write_all(message.as_bytes()).await.expect("write");
        w.write_all(b".\r\n").await.expect("write");
        out.push(reply().await);
    }
    w.write_all(b"QUIT\r\n").await.expect("write");
    out
}

async fn queued(store: &MemoryStore) -> Vec<QueuedMessage> {
    store
        .list_queue(PageRequest::first(100))
        .await
        .expect("queue")
        .items
}

async fn events(w: &World, filter: EventFilter) -> Vec<DeliveryEvent> {
    w.store
        .list_events(Access::Owner(w.user.id), &filter, PageRequest::first(100))
        .await
        .expect("events")
        .items
}

fn correlation(e: &DeliveryEvent) -> &str {
    e.details
        .get("correlation")
        .map_or("<none>", String::as_str)
}

fn worker(w: &World, transport: &Arc<RecordingTransport>) -> DeliveryWorker {
    DeliveryWorker::new(
        w.store.clone(),
        Arc::clone(transport) as _,
        Arc::new(SystemClock),
        DeliveryConfig::new("mx.test").expect("config"),
    )
    .with_policy(w.store.clone(), Arc::clone(&w.policy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_and_delivered_events_carry_the_queued_messages_correlation_id() {
    let w = world(Vec::new()).await;
    let replies = transaction(w.port, "bob@outside.test", "shop@alias.test").await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let q = queued(&w.store).await;
    assert_eq!(q.len(), 1, "{q:?}");
    let m = &q[0];
    // `<session id>.<n>`: 32 hex digits, then the message's number.
    let (session, n) = m.correlation_id.split_once('.').expect("session.n");
    assert_eq!((session.len(), n), (32, "1"), "{}", m.correlation_id);

    let of_message = EventFilter {
        message: Some(m.id),
        ..EventFilter::default()
    };
    let accepted = events(&w, of_message.clone()).await;
    let accepted = accepted
        .iter()
        .find(|e| e.kind == EventKind::Accepted)
        .expect("accepted event");
    assert_eq!(correlation(accepted), m.correlation_id);

    let transport = Arc::new(RecordingTransport::new());
    assert_eq!(worker(&w, &transport).run_once().await.expect("round"), 1);
    assert_eq!(transport.deliveries().len(), 1);
    let all = events(&w, of_message).await;
    let delivered = all
        .iter()
        .find(|e| e.kind == EventKind::Delivered)
        .expect("delivered event");
    assert_eq!(correlation(delivered), m.correlation_id);
    assert!(
        all.iter().all(|e| correlation(e) == m.correlation_id),
        "{all:#?}"
    );
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_at_delivery_is_recorded_under_the_messages_correlation_id() {
    let w = world(Vec::new()).await;
    let replies = transaction(w.port, "bob@outside.test", "shop@alias.test").await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let m = queued(&w.store).await.remove(0);
    let transport = Arc::new(RecordingTransport::new());
    transport.push_outcome(
        &EmailAddress::parse(MAILBOX).expect("m"),
        DeliveryOutcome::permanent("5.1.1", "no such user"),
    );
    assert_eq!(worker(&w, &transport).run_once().await.expect("round"), 1);
    let all = events(
        &w,
        EventFilter {
            message: Some(m.id),
            ..EventFilter::default()
        },
    )
    .await;
    let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&EventKind::Failed) && kinds.contains(&EventKind::Bounced),
        "{kinds:?}"
    );
    for e in &all {
        assert_eq!(correlation(e), m.correlation_id, "{e:#?}");
    }
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_at_rcpt_carries_the_id_the_message_would_have_had() {
    let owner = smtpy_core::ids::UserId::new();
    let rule = blocklist_rule(owner, &["@spam.test".to_owned()], SystemClock.now()).expect("rule");
    let w = world(vec![rule]).await;
    let replies = transaction(w.port, "x@spam.test", "shop@alias.test").await;
    assert!(replies[2].starts_with("550"), "{replies:?}");
    let blocked = events(
        &w,
        EventFilter {
            kinds: vec![EventKind::Blocked],
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(blocked.len(), 1, "{blocked:#?}");
    let id = correlation(&blocked[0]);
    let (session, n) = id.split_once('.').expect("session.n");
    assert_eq!((session.len(), n), (32, "1"), "{id}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsn_coming_back_is_recorded_under_the_bounced_messages_correlation_id() {
    let w = world(Vec::new()).await;
    let replies = transaction(w.port, "bob@outside.test", "shop@alias.test").await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let m = queued(&w.store).await.remove(0);
    let bounce_address = m.reverse_path.as_ref().expect("bounce address").to_string();
    assert!(bounce_address.starts_with("bounce="), "{bounce_address}");
    // The mailbox's server bounces it later, in a session of its own.
    let dsn = format!(
        "From: MAILER-DAEMON@mail.test\r\nTo: {bounce_address}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.test\r\n\r\n\
         Final-Recipient: rfc822; {MAILBOX}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--b1--\r\n"
    );
    let replies = transaction_with(w.port, "", &bounce_address, &dsn).await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let bounced = events(
        &w,
        EventFilter {
            kinds: vec![EventKind::Bounced],
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(bounced.len(), 1, "{bounced:#?}");
    assert_eq!(bounced[0].message, Some(m.id));
    assert_eq!(correlation(&bounced[0]), m.correlation_id);
    let _ = w.stop.send(true);
}
