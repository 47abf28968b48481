//! `rules::explain` against the in-memory store: the reply smtpy would give,
//! the rules that decide, and nothing written.
#![cfg(feature = "testing")]

use smtpy_core::address::EmailAddress;
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{
    Alias, BlockReply, CatchAll, Condition, ConditionField, DisabledReply, Domain, ForwardingRule,
    Mailbox, MatchMode, Operator, RuleAction, RuleScope, User,
};
use smtpy_core::reply::Reply;
use smtpy_core::rules::{
    ExplainInput, Explanation, MESSAGE_ACCEPTED, REJECTED_BY_RULE, allowlist_rule, blocklist_rule,
    explain,
};
use smtpy_core::store::{
    Access, AliasFilter, AliasStore, DomainStore, MailboxStore, PageRequest, RuleStore,
};
use smtpy_core::testing::fixtures::{self, T0};

struct World {
    store: MemoryStore,
    owner: User,
    domain: Domain,
    mailbox: Mailbox,
    alias: Alias,
}

async fn verified_mailbox(store: &MemoryStore, owner: &User) -> Mailbox {
    let mut mailbox = fixtures::new_mailbox(owner);
    mailbox.verified_at = Some(T0);
    store.create_mailbox(&mailbox).await.expect("mailbox");
    mailbox
}

async fn verified_domain(store: &MemoryStore, owner: &User, catch_all: Option<&Mailbox>) -> Domain {
    let mut domain = fixtures::new_domain(owner);
    domain.verified_at = Some(T0);
    if let Some(m) = catch_all {
        domain.catch_all = CatchAll {
            enabled: true,
            auto_create_pattern: None,
        };
        domain.default_mailboxes = vec![m.id];
    }
    store.create_domain(&domain).await.expect("domain");
    domain
}

async fn world() -> World {
    let store = MemoryStore::new();
    let owner = fixtures::user(&store).await;
    let domain = verified_domain(&store, &owner, None).await;
    let mailbox = verified_mailbox(&store, &owner).await;
    let alias = fixtures::alias(&store, &owner, &domain, &mailbox).await;
    World {
        store,
        owner,
        domain,
        mailbox,
        alias,
    }
}

fn addr(s: &str) -> EmailAddress {
    fixtures::address(s)
}

async fn run(
    w: &World,
    sender: Option<&EmailAddress>,
    rcpt: &EmailAddress,
    headers: &[u8],
) -> Explanation {
    explain(
        &w.store,
        &ExplainInput {
            sender,
            recipient: rcpt,
            headers,
            size: None,
        },
        T0,
    )
    .await
    .expect("explain")
}

fn rule(
    w: &World,
    priority: i32,
    conditions: Vec<Condition>,
    actions: Vec<RuleAction>,
) -> ForwardingRule {
    let mut r = ForwardingRule::new(
        w.owner.id,
        RuleScope::User,
        fixtures::unique("rule"),
        priority,
        actions,
        T0,
    );
    r.match_mode = MatchMode::All;
    r.conditions = conditions;
    r
}

fn cond(field: ConditionField, operator: Operator, value: &str) -> Condition {
    Condition {
        field,
        operator,
        value: value.into(),
    }
}

const HEADERS: &[u8] = b"From: Ann <ann@friends.example>\r\nSubject: Your invoice 42\r\n\r\n";

#[tokio::test]
async fn forwarded_without_rules() {
    let w = world().await;
    let ex = run(
        &w,
        Some(&addr("ann@friends.example")),
        &w.alias.address,
        HEADERS,
    )
    .await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert_eq!(ex.alias, Some(w.alias.id));
    assert_eq!(ex.alias_address.as_ref(), Some(&w.alias.address));
    assert!(!ex.would_create_alias);
    assert!(!ex.rcpt_stage);
    assert!(!ex.quarantine);
    assert!(ex.matched_rules.is_empty());
    assert_eq!(ex.decided_by, None);
    assert_eq!(ex.mailboxes, vec![w.mailbox.id]);
    assert!(ex.rewritten_headers.is_empty());
}

#[tokio::test]
async fn unknown_alias_and_foreign_domains() {
    let w = world().await;
    let unknown = fixtures::address_on(&w.domain);
    let ex = run(&w, None, &unknown, HEADERS).await;
    assert_eq!(ex.reply, Reply::UNKNOWN_RECIPIENT);
    assert_eq!((ex.reply.code, ex.reply.enhanced), (550, (5, 1, 1)));
    assert!(ex.rcpt_stage);
    assert_eq!(ex.alias, None);
    assert!(!ex.would_create_alias);
    assert!(ex.mailboxes.is_empty());

    let foreign = addr("someone@not-hosted.example");
    assert_eq!(
        run(&w, None, &foreign, HEADERS).await.reply,
        Reply::RELAY_DENIED
    );

    let pending = fixtures::domain(&w.store, &w.owner).await; // not verified
    let on_pending = fixtures::address_on(&pending);
    assert_eq!(
        run(&w, None, &on_pending, HEADERS).await.reply,
        Reply::RELAY_DENIED
    );

    let postmaster = addr(&format!("PostMaster@{}", w.domain.name.as_ascii()));
    let ex = run(&w, None, &postmaster, HEADERS).await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert_eq!(ex.alias, None);
}

#[tokio::test]
async fn a_disabled_domain_explains_as_relay_denied() {
    let w = world().await;
    let mut domain = w.domain.clone();
    domain.disabled = true;
    w.store
        .update_domain(Access::System, &domain)
        .await
        .expect("disable");
    let ex = run(&w, None, &w.alias.address, HEADERS).await;
    assert_eq!(ex.reply, Reply::RELAY_DENIED);
    assert_eq!(ex.alias, None, "the alias is not revealed");
    let postmaster = addr(&format!("postmaster@{}", w.domain.name.as_ascii()));
    assert_eq!(
        run(&w, None, &postmaster, HEADERS).await.reply,
        Reply::RELAY_DENIED
    );
}

#[tokio::test]
async fn disabled_alias_rejects_or_discards() {
    let w = world().await;
    let mut alias = w.alias.clone();
    alias.enabled = false;
    let alias = w
        .store
        .update_alias(Access::System, &alias)
        .await
        .expect("disable");
    let ex = run(&w, None, &alias.address, HEADERS).await;
    assert_eq!(ex.reply, Reply::UNKNOWN_RECIPIENT);
    assert_eq!(ex.alias, Some(alias.id));

    let mut alias = alias;
    alias.disabled_reply = DisabledReply::Discard;
    w.store
        .update_alias(Access::System, &alias)
        .await
        .expect("discard");
    let ex = run(&w, None, &alias.address, HEADERS).await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert!(ex.rcpt_stage);
    assert!(ex.mailboxes.is_empty(), "discarded, forwarded nowhere");
}

#[tokio::test]
async fn no_deliverable_mailbox() {
    let w = world().await;
    let unverified = fixtures::mailbox(&w.store, &w.owner).await;
    let alias = fixtures::alias(&w.store, &w.owner, &w.domain, &unverified).await;
    let ex = run(&w, None, &alias.address, HEADERS).await;
    assert_eq!((ex.reply.code, ex.reply.enhanced), (550, (5, 2, 1)));
    assert!(ex.rcpt_stage);
}

#[tokio::test]
async fn blocked_sender_is_refused_at_rcpt() {
    let w = world().await;
    let list = blocklist_rule(
        w.owner.id,
        &["spam@bad.example".into(), "@junk.example".into()],
        T0,
    )
    .expect("list");
    w.store.create_rule(&list).await.expect("rule");
    // A later rule that would also match must not matter.
    let tagger = rule(&w, 0, vec![], vec![RuleAction::Quarantine]);
    w.store.create_rule(&tagger).await.expect("rule");

    for sender in ["spam@bad.example", "x@mx.junk.example"] {
        let ex = run(&w, Some(&addr(sender)), &w.alias.address, HEADERS).await;
        assert_eq!(ex.reply, REJECTED_BY_RULE, "{sender}");
        assert_eq!((ex.reply.code, ex.reply.enhanced), (550, (5, 7, 1)));
        assert!(ex.rcpt_stage, "{sender}");
        assert_eq!(ex.decided_by, Some(list.id));
        assert_eq!(ex.matched_rules, vec![list.id]);
        assert!(ex.mailboxes.is_empty());
        assert!(!ex.quarantine);
    }

    // Listed only in the header From: refused at the end of DATA.
    let ex = run(
        &w,
        Some(&addr("bounce@lists.example")),
        &w.alias.address,
        b"From: Spam <spam@bad.example>\r\nSubject: hi\r\n\r\n",
    )
    .await;
    assert_eq!(ex.reply, REJECTED_BY_RULE);
    assert!(!ex.rcpt_stage);
    assert_eq!(ex.decided_by, Some(list.id));

    // A look-alike domain goes through (to the quarantine of the next rule).
    let ex = run(
        &w,
        Some(&addr("x@notjunk.example")),
        &w.alias.address,
        HEADERS,
    )
    .await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert_eq!(ex.matched_rules, vec![tagger.id]);
    assert!(ex.quarantine);
}

#[tokio::test]
async fn allowlist_and_silent_blocks() {
    let w = world().await;
    let list = allowlist_rule(
        w.owner.id,
        w.alias.id,
        &["friends.example".into()],
        BlockReply::Silent,
        T0,
    )
    .expect("list");
    w.store.create_rule(&list).await.expect("rule");

    let ex = run(
        &w,
        Some(&addr("x@stranger.example")),
        &w.alias.address,
        b"From: x@stranger.example\r\n\r\n",
    )
    .await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED, "silently discarded");
    assert_eq!(ex.decided_by, Some(list.id));
    assert!(ex.mailboxes.is_empty());
    assert!(!ex.rcpt_stage);

    // A friend writing through a list: the header From is allowed.
    let ex = run(
        &w,
        Some(&addr("bounce@lists.example")),
        &w.alias.address,
        HEADERS,
    )
    .await;
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert_eq!(ex.decided_by, None);
    assert_eq!(ex.mailboxes, vec![w.mailbox.id]);
}

#[tokio::test]
async fn subject_rule_quarantines_and_rewrites() {
    let w = world().await;
    let q = rule(
        &w,
        0,
        vec![cond(ConditionField::Subject, Operator::Contains, "INVOICE")],
        vec![
            RuleAction::Quarantine,
            RuleAction::PrefixSubject("[bills]".into()),
            RuleAction::AddHeader {
                name: "X-Filed".into(),
                value: "bills".into(),
            },
        ],
    );
    w.store.create_rule(&q).await.expect("rule");

    let ex = run(
        &w,
        Some(&addr("ann@friends.example")),
        &w.alias.address,
        HEADERS,
    )
    .await;
    assert!(ex.quarantine);
    assert_eq!(ex.decided_by, Some(q.id));
    assert_eq!(ex.matched_rules, vec![q.id]);
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert!(!ex.rcpt_stage, "a Subject rule is decided after DATA");
    assert_eq!(ex.mailboxes, vec![w.mailbox.id]);
    assert_eq!(
        ex.rewritten_headers,
        vec![
            ("Subject".to_owned(), "[bills] Your invoice 42".to_owned()),
            ("X-Filed".to_owned(), "bills".to_owned()),
        ]
    );

    let ex = run(
        &w,
        Some(&addr("ann@friends.example")),
        &w.alias.address,
        b"Subject: lunch?\r\n\r\n",
    )
    .await;
    assert!(!ex.quarantine);
    assert!(ex.matched_rules.is_empty());
    assert!(ex.rewritten_headers.is_empty());
}

#[tokio::test]
async fn forward_to_keeps_only_the_owners_deliverable_mailboxes() {
    let w = world().await;
    let second = verified_mailbox(&w.store, &w.owner).await;
    let unverified = fixtures::mailbox(&w.store, &w.owner).await;
    let stranger = fixtures::user(&w.store).await;
    let theirs = verified_mailbox(&w.store, &stranger).await;
    let fwd = rule(
        &w,
        0,
        vec![cond(ConditionField::Size, Operator::GreaterThan, "1000")],
        vec![RuleAction::ForwardTo(vec![
            theirs.id,
            unverified.id,
            second.id,
        ])],
    );
    w.store.create_rule(&fwd).await.expect("rule");

    let explain_size = |size: u64| {
        let w = &w;
        async move {
            explain(
                &w.store,
                &ExplainInput {
                    sender: None,
                    recipient: &w.alias.address,
                    headers: HEADERS,
                    size: Some(size),
                },
                T0,
            )
            .await
            .expect("explain")
        }
    };
    let big = explain_size(5000).await;
    assert_eq!(big.matched_rules, vec![fwd.id]);
    assert_eq!(big.mailboxes, vec![second.id]);
    let small = explain_size(10).await;
    assert!(small.matched_rules.is_empty());
    assert_eq!(small.mailboxes, vec![w.mailbox.id]);
}

#[tokio::test]
async fn catch_all_reports_the_alias_it_would_create_and_creates_nothing() {
    let w = world().await;
    let catch_all = verified_domain(&w.store, &w.owner, Some(&w.mailbox)).await;
    let tag = rule(
        &w,
        0,
        vec![cond(
            ConditionField::To,
            Operator::Is,
            &format!("@{}", catch_all.name.as_ascii()),
        )],
        vec![RuleAction::AddHeader {
            name: "X-Catch-All".into(),
            value: "yes".into(),
        }],
    );
    w.store.create_rule(&tag).await.expect("rule");
    let rcpt = fixtures::address_on(&catch_all);

    let ex = run(&w, Some(&addr("ann@friends.example")), &rcpt, HEADERS).await;
    assert!(ex.would_create_alias);
    assert_eq!(ex.alias, None);
    assert_eq!(ex.alias_address.as_ref(), Some(&rcpt));
    assert_eq!(ex.reply, MESSAGE_ACCEPTED);
    assert_eq!(ex.mailboxes, vec![w.mailbox.id]);
    assert_eq!(ex.matched_rules, vec![tag.id]);

    // Nothing was created.
    assert_eq!(
        w.store.find_alias_by_address(&rcpt).await.expect("lookup"),
        None
    );
    let on_domain = AliasFilter {
        domain: Some(catch_all.id),
        ..AliasFilter::default()
    };
    let page = w
        .store
        .list_aliases(Access::System, &on_domain, PageRequest::first(10))
        .await
        .expect("list");
    assert!(page.items.is_empty());
    assert!(!w.store.is_tombstoned(&rcpt).await.expect("tombstone"));

    // Explaining twice gives the same answer.
    let again = run(&w, Some(&addr("ann@friends.example")), &rcpt, HEADERS).await;
    assert_eq!(again, ex);

    // A pattern that does not match: unknown.
    let mut patterned = w
        .store
        .get_domain(Access::System, catch_all.id)
        .await
        .expect("domain");
    patterned.catch_all.auto_create_pattern = Some("shop-[0-9]+".into());
    w.store
        .update_domain(Access::System, &patterned)
        .await
        .expect("update");
    let ex = run(&w, None, &rcpt, HEADERS).await;
    assert_eq!(ex.reply, Reply::UNKNOWN_RECIPIENT);
    assert!(!ex.would_create_alias);
    let matching = addr(&format!("shop-12@{}", catch_all.name.as_ascii()));
    assert!(run(&w, None, &matching, HEADERS).await.would_create_alias);
}
