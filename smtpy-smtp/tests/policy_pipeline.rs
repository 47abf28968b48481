//! The mail policy over a real listener and the in-memory store: rules at
//! RCPT and DATA, quarantine, alias-mode rewriting and signing, events,
//! counters, usage, rate limits, and replies through reverse aliases.

use std::sync::Arc;

use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::auth::Authenticator;
use smtpy_core::bounce::BounceAddresses;
use smtpy_core::dkim::SigningKey;
use smtpy_core::dns::StaticDns;
use smtpy_core::features::{FeatureFlags, Features};
use smtpy_core::limits::{LimitPolicy, Limits, LocalLimiter};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{
    Alias, Condition, ConditionField, DkimAlgorithm, Domain, EventFilter, EventKind,
    ForwardingRule, Mailbox, MatchMode, MessageKind, Operator, QueuedMessage, Role, RuleAction,
    RuleScope, UsageSubject, User,
};
use smtpy_core::notify::Templates;
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::rules::blocklist_rule;
use smtpy_core::srs::SrsKey;
use smtpy_core::store::{
    Access, AliasStore, ContactStore, DomainStore, EventStore, MailboxStore, PageRequest,
    QueueStore, RuleStore, UsageStore, UserStore,
};
use smtpy_core::time::{Clock, SystemClock};
use smtpy_smtp::policy::MailPolicy;
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MAILBOX: &str = "me@mail.test";

struct World {
    store: Arc<MemoryStore>,
    user: User,
    alias: Alias,
    port: u16,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn world(rules: Vec<ForwardingRule>, alias_limit: Option<u32>) -> World {
    world_with(rules, alias_limit, Features::default()).await
}

async fn world_with(
    rules: Vec<ForwardingRule>,
    alias_limit: Option<u32>,
    features: Features,
) -> World {
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
    let mut alias = Alias::new(
        EmailAddress::parse("shop@alias.test").expect("a"),
        user.id,
        domain.id,
        vec![mailbox.id],
        now,
    );
    alias.limits.messages_per_hour = alias_limit;
    store.create_alias(&alias).await.expect("alias");
    for mut r in rules {
        r.owner = user.id;
        store.create_rule(&r).await.expect("rule");
    }

    let dns = Arc::new(StaticDns::new());
    dns.add_txt("mail.test", "v=spf1 ip4:127.0.0.1 -all");
    let mut policy = MailPolicy::default();
    policy.authenticator = Some(Authenticator::from_static(dns));
    let (key, _) =
        SigningKey::generate(domain.name.clone(), "s1", DkimAlgorithm::Ed25519).expect("key");
    policy.signer.insert(key);
    let srs = SrsKey::generate('a').expect("srs key");
    policy.reverse = Some(ReverseAliases::new(srs.clone()));
    policy.bounces =
        Some(BounceAddresses::new(DomainName::parse("mx.test").expect("d"), srs).expect("bounces"));
    policy.limits = Some(Limits::new(
        Arc::new(LocalLimiter::new(Arc::clone(&clock))),
        LimitPolicy::default(),
    ));
    policy.templates = Some(Templates::builtin());
    policy.notify_from = Some(EmailAddress::parse("notifications@mx.test").expect("n"));

    let acceptor = Acceptor::new(store.clone(), store.clone(), Arc::clone(&clock), "mx.test")
        .with_policy(Arc::new(policy))
        .with_features(features);
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
        alias,
        port,
        stop,
    }
}

/// One SMTP transaction; returns the reply to each command.
async fn transaction(port: u16, from: &str, to: &str, message: &str) -> Vec<String> {
    transaction_to(port, from, &[to], message).await
}

/// One SMTP transaction to several recipients: EHLO, MAIL, each RCPT, then
/// DATA and the message when the first RCPT was accepted.
async fn transaction_to(port: u16, from: &str, to: &[&str], message: &str) -> Vec<String> {
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
    let mut cmds = vec!["EHLO client.test".to_owned(), format!("MAIL FROM:<{from}>")];
    cmds.extend(to.iter().map(|t| format!("RCPT TO:<{t}>")));
    for cmd in cmds {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .expect("write");
        out.push(reply().await);
    }
    if out[2].starts_with("250") {
        w.write_all(b"DATA\r\n").await.expect("write");
        out.push(reply().await);
        w.write_all(format!("{message}\r\n.\r\n").as_bytes())
            .await
            .expect("write");
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

fn text(m: &QueuedMessage) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: Bob Sender <{from}>\r\nTo: shop@alias.test\r\nSubject: {subject}\r\nMessage-ID: <m1@outside.test>\r\n\r\nHello there."
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocklisted_sender_is_refused_at_rcpt_counted_and_logged() {
    let owner = smtpy_core::ids::UserId::new();
    let rule = blocklist_rule(owner, &["@spam.test".to_owned()], SystemClock.now()).expect("rule");
    let w = world(vec![rule], None).await;
    let replies = transaction(w.port, "x@spam.test", "shop@alias.test", "").await;
    assert!(replies[2].starts_with("550 5.7.1"), "{replies:?}");
    assert!(queued(&w.store).await.is_empty(), "nothing queued");
    let alias = w
        .store
        .get_alias(Access::System, w.alias.id)
        .await
        .expect("alias");
    assert_eq!(alias.counters.blocked, 1);
    let events = w
        .store
        .list_events(
            Access::Owner(w.user.id),
            &EventFilter {
                kinds: vec![EventKind::Blocked],
                ..EventFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 1);
    // Another sender still gets through.
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "hi"),
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_rule_holds_the_forward_and_notifies_the_owner() {
    let now = SystemClock.now();
    let rule = ForwardingRule {
        id: smtpy_core::ids::RuleId::new(),
        owner: smtpy_core::ids::UserId::new(),
        scope: RuleScope::User,
        name: "invoices".into(),
        priority: 0,
        enabled: true,
        match_mode: MatchMode::All,
        conditions: vec![Condition {
            field: ConditionField::Subject,
            operator: Operator::Contains,
            value: "invoice".into(),
        }],
        actions: vec![RuleAction::Quarantine],
        created_at: now,
        updated_at: now,
        revision: 0,
    };
    let w = world(vec![rule], None).await;
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "Your INVOICE 42"),
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let q = queued(&w.store).await;
    let forward = q
        .iter()
        .find(|m| m.kind == MessageKind::Forward)
        .expect("the forward is queued");
    assert!(forward.held, "held in quarantine, not lost");
    let notice = q
        .iter()
        .find(|m| m.kind == MessageKind::Notification)
        .expect("a quarantine notice");
    assert_eq!(notice.recipients[0].address.to_string(), "owner@users.test");
    assert!(
        text(notice).contains("Auto-Submitted: auto-generated"),
        "{}",
        text(notice)
    );
    let events = w
        .store
        .list_events(
            Access::Owner(w.user.id),
            &EventFilter {
                kinds: vec![EventKind::Quarantined],
                ..EventFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 1);
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_mode_forward_is_rewritten_signed_counted_and_logged() {
    let w = world(Vec::new(), None).await;
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "hello"),
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let q = queued(&w.store).await;
    assert_eq!(q.len(), 1, "{q:?}");
    let m = &q[0];
    let body = text(m);
    assert!(body.starts_with("DKIM-Signature:"), "signed: {body}");
    assert!(body.contains("d=alias.test"), "{body}");
    assert!(body.contains("Authentication-Results: mx.test"), "{body}");
    let from_line = body.lines().find(|l| l.starts_with("From:")).expect("From");
    assert!(
        from_line.contains("via smtpy")
            && from_line.contains("r--")
            && from_line.contains("@alias.test>"),
        "{from_line}"
    );
    let rp = m.reverse_path.as_ref().expect("bounce address").to_string();
    assert!(
        rp.starts_with("bounce=") && rp.ends_with("@mx.test"),
        "{rp}"
    );
    assert_eq!(m.recipients[0].address.to_string(), MAILBOX);
    // The contact exists, with the reverse alias in the From line.
    let contact = w
        .store
        .find_contact(
            w.alias.id,
            &EmailAddress::parse("bob@outside.test").expect("a"),
        )
        .await
        .expect("lookup")
        .expect("contact created");
    assert!(from_line.contains(&contact.reverse_key), "{from_line}");
    // Counters, usage, events.
    let alias = w
        .store
        .get_alias(Access::System, w.alias.id)
        .await
        .expect("alias");
    assert_eq!(alias.counters.forwarded, 1);
    assert!(alias.counters.last_used_at.is_some());
    let today = SystemClock.now().day();
    let usage = w
        .store
        .usage(
            Access::Owner(w.user.id),
            UsageSubject::Alias(w.alias.id),
            today,
            today,
        )
        .await
        .expect("usage");
    assert_eq!(usage.iter().map(|d| d.messages).sum::<u64>(), 1);
    let events = w
        .store
        .list_events(
            Access::Owner(w.user.id),
            &EventFilter {
                message: Some(m.id),
                ..EventFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .expect("events");
    let accepted = events
        .items
        .iter()
        .find(|e| e.kind == EventKind::Accepted)
        .expect("accepted event");
    assert_eq!(
        accepted.details.get("dkim").map(String::as_str),
        Some("none")
    );
    assert!(accepted.details.contains_key("dmarc"));
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alias_rate_limit_answers_450_and_counts_the_denial() {
    let w = world(Vec::new(), Some(1)).await;
    let first = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "1"),
    )
    .await;
    assert!(first[4].starts_with("250"), "{first:?}");
    let second = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "2"),
    )
    .await;
    assert!(second[2].starts_with("450 4.7.1"), "{second:?}");
    let limited = w
        .store
        .count_events(&EventFilter {
            kinds: vec![EventKind::RateLimited],
            ..EventFilter::default()
        })
        .await
        .expect("count");
    assert_eq!(limited, 1);
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_replies_through_the_reverse_alias_without_leaking_the_mailbox() {
    let w = world(Vec::new(), None).await;
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "hello"),
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let contact = w
        .store
        .find_contact(
            w.alias.id,
            &EmailAddress::parse("bob@outside.test").expect("a"),
        )
        .await
        .expect("lookup")
        .expect("contact");
    let reverse = format!("{}@alias.test", contact.reverse_key);
    let reply = format!(
        "From: Me <{MAILBOX}>\r\nTo: <{reverse}>\r\nSubject: Re: hello\r\nMessage-ID: <r1@mail.test>\r\n\r\nThanks! -- {MAILBOX}\r\n\r\n> {reverse} wrote: hello"
    );
    // From the mailbox (SPF passes for mail.test from loopback): accepted.
    let replies = transaction(w.port, MAILBOX, &reverse, &reply).await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    let q = queued(&w.store).await;
    let sent = q
        .iter()
        .find(|m| m.kind == MessageKind::Reply)
        .expect("the reply is queued");
    assert_eq!(sent.recipients[0].address.to_string(), "bob@outside.test");
    let body = text(sent).to_lowercase();
    assert!(!body.contains(MAILBOX), "mailbox leaked: {body}");
    assert!(
        !body.contains(&reverse.to_lowercase()),
        "reverse alias leaked: {body}"
    );
    assert!(
        body.contains("from: shop@alias.test") || body.contains("<shop@alias.test>"),
        "{body}"
    );
    assert!(body.starts_with("dkim-signature:"), "{body}");
    let alias = w
        .store
        .get_alias(Access::System, w.alias.id)
        .await
        .expect("alias");
    assert_eq!(alias.counters.replied, 1);
    // Anyone else: refused at RCPT.
    let replies = transaction(w.port, "eve@evil.test", &reverse, &reply).await;
    assert!(replies[2].starts_with("550 5.7.1"), "{replies:?}");
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_to_contacts_of_two_aliases_is_refused_not_dropped() {
    let w = world(Vec::new(), None).await;
    let now = SystemClock.now();
    let mut second = Alias::new(
        EmailAddress::parse("news@alias.test").expect("a"),
        w.user.id,
        w.alias.domain,
        w.alias.mailboxes.clone(),
        now,
    );
    second.mode = w.alias.mode;
    w.store.create_alias(&second).await.expect("alias");
    for (from, to) in [
        ("bob@outside.test", "shop@alias.test"),
        ("carol@outside.test", "news@alias.test"),
    ] {
        let r = transaction(w.port, from, to, &message(from, "hi")).await;
        assert!(r[4].starts_with("250"), "{r:?}");
    }
    let reverse = |alias: &Alias, who: &str| {
        let store = w.store.clone();
        let id = alias.id;
        let who = EmailAddress::parse(who).expect("a");
        async move {
            let c = store
                .find_contact(id, &who)
                .await
                .expect("lookup")
                .expect("contact");
            format!("{}@alias.test", c.reverse_key)
        }
    };
    let bob = reverse(&w.alias, "bob@outside.test").await;
    let carol = reverse(&second, "carol@outside.test").await;
    let reply = format!("From: {MAILBOX}\r\nTo: {bob}, {carol}\r\nSubject: both\r\n\r\nhi");
    let r = transaction_to(w.port, MAILBOX, &[&bob, &carol], &reply).await;
    assert!(r[2].starts_with("250") && r[3].starts_with("250"), "{r:?}");
    assert!(
        r[5].starts_with("550 5.7.1"),
        "refused at DATA, not partly sent: {r:?}"
    );
    assert!(
        !queued(&w.store)
            .await
            .iter()
            .any(|m| m.kind == MessageKind::Reply),
        "nothing sent"
    );
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_refused_while_the_replies_flag_is_off() {
    let features = Features::new(FeatureFlags {
        replies: false,
        ..FeatureFlags::default()
    });
    let w = world_with(Vec::new(), None, features.clone()).await;
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "shop@alias.test",
        &message("bob@outside.test", "hello"),
    )
    .await;
    assert!(
        replies[4].starts_with("250"),
        "forwarding is unaffected: {replies:?}"
    );
    let contact = w
        .store
        .find_contact(
            w.alias.id,
            &EmailAddress::parse("bob@outside.test").expect("a"),
        )
        .await
        .expect("lookup")
        .expect("contact");
    let reverse = format!("{}@alias.test", contact.reverse_key);
    let reply = format!(
        "From: Me <{MAILBOX}>\r\nTo: <{reverse}>\r\nSubject: Re: hello\r\nMessage-ID: <r2@mail.test>\r\n\r\nThanks!"
    );
    let refused = transaction(w.port, MAILBOX, &reverse, &reply).await;
    assert_eq!(
        refused[2], "550 5.7.1 Replies through aliases are disabled on this server",
        "{refused:?}"
    );
    assert!(
        !queued(&w.store)
            .await
            .iter()
            .any(|m| m.kind == MessageKind::Reply),
        "nothing queued"
    );
    // Switched on at runtime: the next reply goes through.
    features.set(FeatureFlags::default());
    let accepted = transaction(w.port, MAILBOX, &reverse, &reply).await;
    assert!(accepted[4].starts_with("250"), "{accepted:?}");
    assert!(
        queued(&w.store)
            .await
            .iter()
            .any(|m| m.kind == MessageKind::Reply),
        "the reply is queued"
    );
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_creates_no_alias_while_auto_create_is_off() {
    let features = Features::new(FeatureFlags {
        auto_create: false,
        ..FeatureFlags::default()
    });
    let w = world_with(Vec::new(), None, features.clone()).await;
    let mut domain = w
        .store
        .get_domain(Access::System, w.alias.domain)
        .await
        .expect("domain");
    domain.catch_all.enabled = true;
    domain.default_mailboxes = w.alias.mailboxes.clone();
    w.store
        .update_domain(Access::System, &domain)
        .await
        .expect("catch-all on");
    let new = EmailAddress::parse("fresh@alias.test").expect("a");
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "fresh@alias.test",
        &message("bob@outside.test", "hi"),
    )
    .await;
    assert!(
        replies[2].starts_with("550 5.1.1"),
        "unknown recipient: {replies:?}"
    );
    assert_eq!(
        w.store.find_alias_by_address(&new).await.expect("find"),
        None,
        "no alias created"
    );
    features.set(FeatureFlags::default());
    let replies = transaction(
        w.port,
        "bob@outside.test",
        "fresh@alias.test",
        &message("bob@outside.test", "hi"),
    )
    .await;
    assert!(replies[4].starts_with("250"), "{replies:?}");
    assert!(
        w.store
            .find_alias_by_address(&new)
            .await
            .expect("find")
            .is_some(),
        "created once the flag is on"
    );
    let _ = w.stop.send(true);
}
