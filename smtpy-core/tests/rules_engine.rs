//! The rules engine: every field × operator pair, order, match modes,
//! actions, the RCPT-time stage, skipped rules, bounds, and the blocklist
//! and allowlist rules.

use std::time::{Duration, Instant};

use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, MailboxId, RuleId, UserId};
use smtpy_core::model::{
    BlockReply, Condition, ConditionField as F, ForwardingRule, MatchMode, Operator as O,
    RuleAction as A, RuleError, RuleScope,
};
use smtpy_core::rules::{
    Blocked, EnvelopeFacts, MAX_REGEXES, MAX_RULES, MessageFacts, ParsedMessage, REJECTED_BY_RULE,
    RuleSet, allowlist_rule, blocklist_rule,
};
use smtpy_core::time::Timestamp;

const NOW: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("test address")
}

fn cond(field: F, operator: O, value: &str) -> Condition {
    Condition {
        field,
        operator,
        value: value.into(),
    }
}

fn rule(
    priority: i32,
    mode: MatchMode,
    conditions: Vec<Condition>,
    actions: Vec<A>,
) -> ForwardingRule {
    let mut r = ForwardingRule::new(
        UserId::new(),
        RuleScope::User,
        format!("rule {priority}"),
        priority,
        actions,
        NOW,
    );
    r.match_mode = mode;
    r.conditions = conditions;
    r
}

fn tag(value: &str) -> A {
    A::AddHeader {
        name: "X-Rule".into(),
        value: value.into(),
    }
}

/// A message, owned, from which facts are borrowed.
#[derive(Clone)]
struct Msg {
    sender: Option<EmailAddress>,
    alias: EmailAddress,
    header_from: Option<String>,
    subject: Option<String>,
    headers: Vec<(String, String)>,
    size: u64,
    attachment: bool,
    spf: Option<String>,
    dkim: Option<String>,
    dmarc: Option<String>,
}

impl Msg {
    fn envelope(&self) -> EnvelopeFacts<'_> {
        EnvelopeFacts {
            sender: self.sender.as_ref(),
            alias: &self.alias,
        }
    }

    fn facts(&self) -> MessageFacts<'_> {
        MessageFacts {
            envelope: self.envelope(),
            header_from: self.header_from.as_deref(),
            subject: self.subject.as_deref(),
            headers: &self.headers,
            size: self.size,
            has_attachment: self.attachment,
            spf: self.spf.as_deref(),
            dkim: self.dkim.as_deref(),
            dmarc: self.dmarc.as_deref(),
        }
    }
}

fn base() -> Msg {
    Msg {
        sender: Some(addr("bob@sender.example")),
        alias: addr("shop@alias.example"),
        header_from: Some("alice@example.com".into()),
        subject: Some("Weekly SALE inside".into()),
        headers: vec![
            ("List-Id".into(), "News <news.example.com>".into()),
            ("X-Tag".into(), "first".into()),
            ("x-tag".into(), "Second".into()),
        ],
        size: 2048,
        attachment: true,
        spf: Some("pass".into()),
        dkim: Some("fail".into()),
        dmarc: Some("none".into()),
    }
}

/// Whether a one-condition rule matches `msg` at the end of DATA.
fn holds(c: &Condition, msg: &Msg) -> bool {
    let set = RuleSet::compile(vec![rule(
        0,
        MatchMode::All,
        vec![c.clone()],
        vec![tag("x")],
    )]);
    assert!(
        set.skipped().is_empty(),
        "{c:?} was skipped: {:?}",
        set.skipped()
    );
    !set.evaluate(&msg.facts()).matched.is_empty()
}

#[test]
fn every_field_and_operator() {
    let m = base();
    let h = |n: &str| F::Header(n.into());
    #[rustfmt::skip]
    let table: Vec<(Condition, bool)> = vec![
        // From: the envelope sender or the header From.
        (cond(F::From, O::Is, "bob@sender.example"), true),
        (cond(F::From, O::Is, "ALICE@Example.COM"), true),
        (cond(F::From, O::Is, "carol@example.com"), false),
        (cond(F::From, O::Is, "@example.com"), true),
        (cond(F::From, O::Is, "@sender.example"), true),
        (cond(F::From, O::Is, "@other.example"), false),
        (cond(F::From, O::IsNot, "bob@sender.example"), false),
        (cond(F::From, O::IsNot, "alice@example.com"), false),
        (cond(F::From, O::IsNot, "carol@example.com"), true),
        (cond(F::From, O::IsNot, "@example.com"), false),
        (cond(F::From, O::IsNot, "@other.example"), true),
        (cond(F::From, O::Contains, "SENDER"), true),
        (cond(F::From, O::Contains, "zzz"), false),
        (cond(F::From, O::NotContains, "alice"), false),
        (cond(F::From, O::NotContains, "bob"), false),
        (cond(F::From, O::NotContains, "zzz"), true),
        (cond(F::From, O::StartsWith, "ALICE@"), true),
        (cond(F::From, O::StartsWith, "carol"), false),
        (cond(F::From, O::EndsWith, "@sender.EXAMPLE"), true),
        (cond(F::From, O::EndsWith, ".org"), false),
        (cond(F::From, O::MatchesRegex, "^bob@"), true),
        (cond(F::From, O::MatchesRegex, "^ALICE@example\\.com$"), true),
        (cond(F::From, O::MatchesRegex, "^carol"), false),
        // To: the alias.
        (cond(F::To, O::Is, "SHOP@alias.example"), true),
        (cond(F::To, O::Is, "@alias.example"), true),
        (cond(F::To, O::Is, "x@alias.example"), false),
        (cond(F::To, O::IsNot, "x@alias.example"), true),
        (cond(F::To, O::IsNot, "shop@alias.example"), false),
        (cond(F::To, O::Contains, "hop@"), true),
        (cond(F::To, O::NotContains, "hop@"), false),
        (cond(F::To, O::NotContains, "zzz"), true),
        (cond(F::To, O::StartsWith, "shop@"), true),
        (cond(F::To, O::StartsWith, "alias"), false),
        (cond(F::To, O::EndsWith, "@ALIAS.example"), true),
        (cond(F::To, O::EndsWith, "shop"), false),
        (cond(F::To, O::MatchesRegex, "^s.op@"), true),
        (cond(F::To, O::MatchesRegex, "^x"), false),
        // Subject.
        (cond(F::Subject, O::Is, "weekly sale inside"), true),
        (cond(F::Subject, O::Is, "weekly sale"), false),
        (cond(F::Subject, O::IsNot, "weekly sale inside"), false),
        (cond(F::Subject, O::IsNot, "weekly"), true),
        (cond(F::Subject, O::Contains, "sale"), true),
        (cond(F::Subject, O::Contains, "offer"), false),
        (cond(F::Subject, O::NotContains, "sale"), false),
        (cond(F::Subject, O::NotContains, "offer"), true),
        (cond(F::Subject, O::StartsWith, "WEEKLY"), true),
        (cond(F::Subject, O::StartsWith, "sale"), false),
        (cond(F::Subject, O::EndsWith, "inside"), true),
        (cond(F::Subject, O::EndsWith, "weekly"), false),
        (cond(F::Subject, O::MatchesRegex, "s[a-z]le"), true),
        (cond(F::Subject, O::MatchesRegex, "(?-i)s[a-z]le"), false),
        // Header: every field of the name, name case-insensitive.
        (cond(h("list-id"), O::Is, "news <news.example.com>"), true),
        (cond(h("X-Tag"), O::Is, "second"), true),
        (cond(h("X-Tag"), O::Is, "third"), false),
        (cond(h("X-TAG"), O::IsNot, "first"), false),
        (cond(h("X-Tag"), O::IsNot, "third"), true),
        (cond(h("List-Id"), O::Contains, "news.example.com"), true),
        (cond(h("List-Id"), O::Contains, "other"), false),
        (cond(h("X-Tag"), O::NotContains, "sec"), false),
        (cond(h("X-Tag"), O::NotContains, "zzz"), true),
        (cond(h("X-Tag"), O::StartsWith, "fir"), true),
        (cond(h("X-Tag"), O::StartsWith, "irst"), false),
        (cond(h("X-Tag"), O::EndsWith, "OND"), true),
        (cond(h("X-Tag"), O::EndsWith, "sec"), false),
        (cond(h("X-Tag"), O::MatchesRegex, "^sec"), true),
        (cond(h("X-Tag"), O::MatchesRegex, "^third$"), false),
        (cond(h("X-Missing"), O::Contains, ""), false),
        (cond(h("X-Missing"), O::IsNot, "a"), true),
        (cond(h("X-Missing"), O::NotContains, "a"), true),
        // Size, numerically.
        (cond(F::Size, O::Is, "2048"), true),
        (cond(F::Size, O::Is, " 2048 "), true),
        (cond(F::Size, O::Is, "2047"), false),
        (cond(F::Size, O::IsNot, "2048"), false),
        (cond(F::Size, O::IsNot, "100"), true),
        (cond(F::Size, O::GreaterThan, "2047"), true),
        (cond(F::Size, O::GreaterThan, "2048"), false),
        (cond(F::Size, O::LessThan, "2049"), true),
        (cond(F::Size, O::LessThan, "2048"), false),
        (cond(F::Size, O::GreaterThan, "999"), true),
        // Attachments.
        (cond(F::HasAttachment, O::Is, "true"), true),
        (cond(F::HasAttachment, O::Is, "false"), false),
        (cond(F::HasAttachment, O::IsNot, "true"), false),
        (cond(F::HasAttachment, O::IsNot, "false"), true),
        // Authentication verdicts.
        (cond(F::Spf, O::Is, "PASS"), true),
        (cond(F::Spf, O::Is, "fail"), false),
        (cond(F::Spf, O::IsNot, "pass"), false),
        (cond(F::Spf, O::IsNot, "fail"), true),
        (cond(F::Dkim, O::Contains, "ai"), true),
        (cond(F::Dkim, O::Contains, "pass"), false),
        (cond(F::Dkim, O::NotContains, "pass"), true),
        (cond(F::Dkim, O::NotContains, "fail"), false),
        (cond(F::Dkim, O::StartsWith, "f"), true),
        (cond(F::Dkim, O::EndsWith, "il"), true),
        (cond(F::Dkim, O::EndsWith, "ss"), false),
        (cond(F::Dmarc, O::Is, "none"), true),
        (cond(F::Dmarc, O::StartsWith, "pa"), false),
        (cond(F::Dmarc, O::MatchesRegex, "^(none|fail)$"), true),
        (cond(F::Dmarc, O::MatchesRegex, "^pass$"), false),
        (cond(F::Spf, O::MatchesRegex, "^p"), true),
    ];
    for (c, expected) in &table {
        assert_eq!(holds(c, &m), *expected, "{c:?}");
    }
}

#[test]
fn missing_values() {
    let mut m = base();
    m.sender = None; // MAIL FROM:<>
    m.header_from = None;
    m.subject = None;
    m.spf = None;
    m.dkim = None;
    m.dmarc = None;
    m.attachment = false;
    let table = [
        // The null sender is the empty string.
        (cond(F::From, O::Is, ""), true),
        (cond(F::From, O::IsNot, ""), false),
        (cond(F::From, O::Contains, "@"), false),
        (cond(F::From, O::NotContains, "@"), true),
        (cond(F::From, O::Is, "@example.com"), false),
        (cond(F::From, O::IsNot, "@example.com"), true),
        // No Subject: positive operators fail, negative ones hold.
        (cond(F::Subject, O::Contains, ""), false),
        (cond(F::Subject, O::MatchesRegex, ".*"), false),
        (cond(F::Subject, O::NotContains, "x"), true),
        (cond(F::Subject, O::IsNot, "x"), true),
        // Unknown verdicts fail every operator.
        (cond(F::Spf, O::Is, "none"), false),
        (cond(F::Spf, O::IsNot, "pass"), false),
        (cond(F::Dkim, O::NotContains, "pass"), false),
        (cond(F::Dmarc, O::IsNot, "pass"), false),
        (cond(F::HasAttachment, O::Is, "false"), true),
    ];
    for (c, expected) in &table {
        assert_eq!(holds(c, &m), *expected, "{c:?}");
    }
}

#[test]
fn internationalised_addresses_match_in_both_forms() {
    let mut m = base();
    m.sender = Some(addr("a@bücher.example"));
    m.header_from = Some("x@xn--caf-dma.example".into());
    for (c, expected) in [
        (cond(F::From, O::Is, "a@xn--bcher-kva.example"), true),
        (cond(F::From, O::Is, "a@bücher.example"), true),
        (cond(F::From, O::Is, "@bücher.example"), true),
        (cond(F::From, O::Is, "@café.example"), true),
        (cond(F::From, O::EndsWith, "@bücher.example"), true),
        (cond(F::From, O::IsNot, "@xn--bcher-kva.example"), false),
    ] {
        assert_eq!(holds(&c, &m), expected, "{c:?}");
    }
}

#[test]
fn priority_then_creation_then_id() {
    let id = |n: u8| RuleId::from_bytes([n; 16]);
    let mk = |priority: i32, created: i64, n: u8| {
        let mut r = rule(priority, MatchMode::All, vec![], vec![tag(&n.to_string())]);
        r.id = id(n);
        r.created_at = Timestamp::from_unix_secs(created);
        r
    };
    // Given in scrambled order.
    let set = RuleSet::compile(vec![
        mk(5, 10, 6),
        mk(1, 20, 3),
        mk(1, 10, 2),
        mk(-3, 99, 1),
        mk(1, 20, 4),
        mk(5, 10, 5),
    ]);
    let order: Vec<RuleId> = set.rule_ids().collect();
    assert_eq!(order, (1..=6).map(id).collect::<Vec<_>>());
    let out = set.evaluate(&base().facts());
    assert_eq!(out.matched, order);
    let values: Vec<&str> = out.add_headers.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["1", "2", "3", "4", "5", "6"]);
}

#[test]
fn all_versus_any() {
    let m = base();
    let yes = cond(F::Subject, O::Contains, "sale");
    let no = cond(F::Subject, O::Contains, "offer");
    let cases = [
        (MatchMode::All, vec![yes.clone(), no.clone()], false),
        (MatchMode::All, vec![yes.clone(), yes.clone()], true),
        (MatchMode::Any, vec![yes.clone(), no.clone()], true),
        (MatchMode::Any, vec![no.clone(), no.clone()], false),
        (MatchMode::All, vec![], true),
        (MatchMode::Any, vec![], false),
    ];
    for (mode, conditions, expected) in cases {
        let set = RuleSet::compile(vec![rule(0, mode, conditions.clone(), vec![tag("x")])]);
        assert_eq!(
            !set.evaluate(&m.facts()).matched.is_empty(),
            expected,
            "{mode:?} {conditions:?}"
        );
    }
}

#[test]
fn stop_ends_evaluation_after_the_rule() {
    let first = rule(0, MatchMode::All, vec![], vec![tag("a"), A::Stop, tag("b")]);
    let second = rule(1, MatchMode::All, vec![], vec![tag("c")]);
    let set = RuleSet::compile(vec![second.clone(), first.clone()]);
    let out = set.evaluate(&base().facts());
    assert_eq!(out.matched, vec![first.id]);
    let values: Vec<&str> = out.add_headers.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        values,
        ["a", "b"],
        "the stopping rule's own actions all apply"
    );

    // A Stop in a rule that does not match stops nothing.
    let mut quiet = first.clone();
    quiet.conditions = vec![cond(F::Subject, O::Is, "other")];
    let set = RuleSet::compile(vec![quiet, second.clone()]);
    assert_eq!(set.evaluate(&base().facts()).matched, vec![second.id]);
}

#[test]
fn block_silent_and_reject() {
    for (reply, smtp) in [
        (BlockReply::Reject, Some(REJECTED_BY_RULE)),
        (BlockReply::Silent, None),
    ] {
        let before = rule(0, MatchMode::All, vec![], vec![tag("before")]);
        let block = rule(
            1,
            MatchMode::All,
            vec![],
            vec![A::Block(reply), tag("after")],
        );
        let later = rule(2, MatchMode::All, vec![], vec![tag("later")]);
        let set = RuleSet::compile(vec![before.clone(), block.clone(), later]);
        let out = set.evaluate(&base().facts());
        assert_eq!(
            out.blocked,
            Some(Blocked {
                rule: block.id,
                reply
            })
        );
        assert_eq!(out.matched, vec![before.id, block.id]);
        assert_eq!(out.reply(), smtp);
        let values: Vec<&str> = out.add_headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["before"]);
    }
    assert_eq!(REJECTED_BY_RULE.code, 550);
    assert_eq!(REJECTED_BY_RULE.enhanced, (5, 7, 1));
}

#[test]
fn quarantine_forward_prefix_and_headers_accumulate() {
    let m1 = MailboxId::new();
    let m2 = MailboxId::new();
    let q1 = rule(
        0,
        MatchMode::All,
        vec![],
        vec![A::Quarantine, A::PrefixSubject("[a]".into())],
    );
    let fwd1 = rule(
        1,
        MatchMode::All,
        vec![],
        vec![A::ForwardTo(vec![m1]), tag("1")],
    );
    let q2 = rule(
        2,
        MatchMode::All,
        vec![],
        vec![A::Quarantine, A::PrefixSubject("[b]".into())],
    );
    let fwd2 = rule(
        3,
        MatchMode::All,
        vec![],
        vec![A::ForwardTo(vec![m2, m1]), tag("2")],
    );
    let miss = rule(
        4,
        MatchMode::All,
        vec![cond(F::Subject, O::Contains, "offer")],
        vec![A::ForwardTo(vec![MailboxId::new()])],
    );
    let set = RuleSet::compile(vec![
        q1.clone(),
        fwd1.clone(),
        q2.clone(),
        fwd2.clone(),
        miss,
    ]);
    let out = set.evaluate(&base().facts());
    assert_eq!(out.matched, vec![q1.id, fwd1.id, q2.id, fwd2.id]);
    assert_eq!(out.quarantine, Some(q1.id), "the first quarantining rule");
    assert_eq!(
        out.forward_to,
        Some(vec![m2, m1]),
        "the last ForwardTo wins"
    );
    assert_eq!(
        out.subject_prefixes,
        vec!["[a]".to_owned(), "[b]".to_owned()]
    );
    assert_eq!(
        out.add_headers,
        vec![
            ("X-Rule".to_owned(), "1".to_owned()),
            ("X-Rule".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(out.blocked, None);
    assert_eq!(out.reply(), None);
    assert_eq!(
        out.subject(Some("Weekly SALE inside")).as_deref(),
        Some("[a] [b] Weekly SALE inside")
    );

    // A later block overrides a quarantine.
    let block = rule(
        9,
        MatchMode::All,
        vec![],
        vec![A::Block(BlockReply::Reject)],
    );
    let set = RuleSet::compile(vec![q1.clone(), block.clone()]);
    let out = set.evaluate(&base().facts());
    assert_eq!(out.quarantine, Some(q1.id));
    assert_eq!(out.blocked.map(|b| b.rule), Some(block.id));
    assert_eq!(out.reply(), Some(REJECTED_BY_RULE));
}

fn block_rule(priority: i32, conditions: Vec<Condition>, reply: BlockReply) -> ForwardingRule {
    rule(priority, MatchMode::All, conditions, vec![A::Block(reply)])
}

#[test]
fn envelope_stage_decides_only_what_data_would() {
    let m = base();
    let env = m.envelope();
    let from_bob = || cond(F::From, O::Is, "bob@sender.example");
    let subject = || cond(F::Subject, O::Contains, "sale");

    // A Subject condition is never evaluated at RCPT...
    let by_subject = block_rule(0, vec![subject()], BlockReply::Reject);
    let set = RuleSet::compile(vec![by_subject.clone()]);
    assert_eq!(set.evaluate_envelope(&env), None);
    // ...but blocks at the end of DATA.
    assert_eq!(
        set.evaluate(&m.facts()).blocked.map(|b| b.rule),
        Some(by_subject.id)
    );

    // Envelope sender, alias, or no condition at all: decided at RCPT.
    for conditions in [
        vec![from_bob()],
        vec![cond(F::From, O::EndsWith, "@SENDER.example")],
        vec![cond(F::To, O::Is, "shop@alias.example")],
        vec![from_bob(), cond(F::To, O::StartsWith, "shop")],
        vec![],
    ] {
        let r = block_rule(0, conditions.clone(), BlockReply::Reject);
        let set = RuleSet::compile(vec![r.clone()]);
        assert_eq!(
            set.evaluate_envelope(&env),
            Some(Blocked {
                rule: r.id,
                reply: BlockReply::Reject
            }),
            "{conditions:?}"
        );
    }
    // Mixed with a Subject condition: not at RCPT.
    let set = RuleSet::compile(vec![block_rule(
        0,
        vec![from_bob(), subject()],
        BlockReply::Reject,
    )]);
    assert_eq!(set.evaluate_envelope(&env), None);

    // The header From is unknown at RCPT: a rule matching only it waits.
    let by_header = block_rule(
        0,
        vec![cond(F::From, O::Is, "alice@example.com")],
        BlockReply::Reject,
    );
    let set = RuleSet::compile(vec![by_header.clone()]);
    assert_eq!(set.evaluate_envelope(&env), None);
    assert_eq!(
        set.evaluate(&m.facts()).blocked.map(|b| b.rule),
        Some(by_header.id)
    );

    // A negative From condition cannot hold before the header From is known.
    let not_carol = block_rule(
        0,
        vec![cond(F::From, O::IsNot, "carol@example.com")],
        BlockReply::Reject,
    );
    let set = RuleSet::compile(vec![not_carol]);
    assert_eq!(set.evaluate_envelope(&env), None);

    // Silent blocks are returned too (the server accepts and discards).
    let silent = block_rule(0, vec![from_bob()], BlockReply::Silent);
    let set = RuleSet::compile(vec![silent.clone()]);
    assert_eq!(
        set.evaluate_envelope(&env)
            .map(|b| (b.rule, b.smtp_reply())),
        Some((silent.id, None))
    );
}

#[test]
fn envelope_stage_defers_when_an_earlier_rule_might_change_the_outcome() {
    let m = base();
    let env = m.envelope();
    let from_bob = || cond(F::From, O::Is, "bob@sender.example");
    let subject = || cond(F::Subject, O::Contains, "sale");
    let later = block_rule(5, vec![from_bob()], BlockReply::Reject);

    // An undecided earlier Stop: at DATA it stops before the block.
    let stop = rule(0, MatchMode::All, vec![subject()], vec![A::Stop]);
    let set = RuleSet::compile(vec![stop, later.clone()]);
    assert_eq!(set.evaluate_envelope(&env), None);
    assert_eq!(set.evaluate(&m.facts()).blocked, None);

    // An undecided earlier block with another reply: deferred.
    let silent = block_rule(0, vec![subject()], BlockReply::Silent);
    let set = RuleSet::compile(vec![silent.clone(), later.clone()]);
    assert_eq!(set.evaluate_envelope(&env), None);
    assert_eq!(
        set.evaluate(&m.facts()).blocked.map(|b| b.rule),
        Some(silent.id)
    );

    // With the same reply: blocked either way, so decided at RCPT.
    let reject = block_rule(0, vec![subject()], BlockReply::Reject);
    let set = RuleSet::compile(vec![reject, later.clone()]);
    assert_eq!(set.evaluate_envelope(&env).map(|b| b.rule), Some(later.id));

    // An undecided rule that neither stops nor blocks changes nothing.
    let tagger = rule(
        0,
        MatchMode::All,
        vec![subject()],
        vec![tag("t"), A::Quarantine],
    );
    let set = RuleSet::compile(vec![tagger, later.clone()]);
    assert_eq!(set.evaluate_envelope(&env).map(|b| b.rule), Some(later.id));

    // A decided earlier Stop: nothing after it runs.
    let stop_bob = rule(0, MatchMode::All, vec![from_bob()], vec![A::Stop]);
    let set = RuleSet::compile(vec![stop_bob, later.clone()]);
    assert_eq!(set.evaluate_envelope(&env), None);
    assert_eq!(set.evaluate(&m.facts()).blocked, None);

    // An earlier rule that certainly does not match is passed over.
    let other = rule(
        0,
        MatchMode::All,
        vec![cond(F::To, O::Is, "other@alias.example")],
        vec![A::Stop],
    );
    let set = RuleSet::compile(vec![other, later.clone()]);
    assert_eq!(set.evaluate_envelope(&env).map(|b| b.rule), Some(later.id));
}

#[test]
fn disabled_and_invalid_rules_are_skipped() {
    let mut disabled = rule(
        0,
        MatchMode::All,
        vec![],
        vec![A::Block(BlockReply::Reject)],
    );
    disabled.enabled = false;
    let mut bad_operator = rule(
        1,
        MatchMode::All,
        vec![cond(F::Size, O::Contains, "1")],
        vec![tag("x")],
    );
    bad_operator.name = "size contains".into();
    let no_action = rule(2, MatchMode::All, vec![], vec![]);
    let oversized = rule(
        3,
        MatchMode::All,
        vec![cond(
            F::Subject,
            O::MatchesRegex,
            r"\w{1000}\w{1000}\w{1000}",
        )],
        vec![A::Block(BlockReply::Reject)],
    );
    let good = rule(4, MatchMode::All, vec![], vec![tag("ok")]);
    let set = RuleSet::compile(vec![
        disabled,
        bad_operator.clone(),
        no_action.clone(),
        oversized.clone(),
        good.clone(),
    ]);
    assert_eq!(set.len(), 1);
    let skipped: Vec<(RuleId, bool)> = set
        .skipped()
        .iter()
        .map(|s| (s.rule, matches!(s.error, RuleError::Regex(_))))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (bad_operator.id, false),
            (no_action.id, false),
            (oversized.id, true)
        ],
        "disabled rules are not reported"
    );
    let out = set.evaluate(&base().facts());
    assert_eq!(out.matched, vec![good.id]);
    assert_eq!(out.blocked, None);
}

#[test]
fn rule_and_regex_budgets() {
    let regex_rules: Vec<ForwardingRule> = (0..=MAX_REGEXES as i32)
        .map(|i| {
            rule(
                i,
                MatchMode::All,
                vec![cond(F::Subject, O::MatchesRegex, &format!("x{i}"))],
                vec![tag("r")],
            )
        })
        .collect();
    let last = regex_rules[MAX_REGEXES].id;
    let set = RuleSet::compile(regex_rules);
    assert_eq!(set.len(), MAX_REGEXES);
    assert_eq!(set.skipped().len(), 1);
    assert_eq!(set.skipped()[0].rule, last);
    assert!(matches!(set.skipped()[0].error, RuleError::TooMany { .. }));

    let many: Vec<ForwardingRule> = (0..MAX_RULES as i32 + 5)
        .map(|i| rule(i, MatchMode::All, vec![], vec![tag("r")]))
        .collect();
    let set = RuleSet::compile(many);
    assert_eq!(set.len(), MAX_RULES);
    assert_eq!(set.skipped().len(), 5);
}

#[test]
fn pathological_regexes_on_huge_headers_finish_quickly() {
    let mut m = base();
    let big = "a".repeat(1 << 20);
    m.subject = Some(big.clone());
    m.header_from = Some(big.clone());
    let field = "a".repeat(16 * 1024);
    m.headers = (0..300)
        .map(|_| ("X-Big".to_owned(), field.clone()))
        .collect();
    let patterns = [
        "(a+)+b",
        "(a|aa)*(a|aa)*c",
        "(.*a){20}z",
        r"\w{8}z",
        "[^z]{100}z",
        "(a|b|ab)*bc",
        "^(a?){30}a{30}$",
    ];
    let mut rules = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        for field in [F::Subject, F::From, F::Header("X-Big".into())] {
            rules.push(rule(
                i as i32,
                MatchMode::Any,
                vec![cond(field, O::MatchesRegex, p)],
                vec![tag("slow?")],
            ));
        }
        rules.push(rule(
            i as i32,
            MatchMode::All,
            vec![cond(F::Header("X-Big".into()), O::NotContains, "b")],
            vec![tag("contains")],
        ));
    }
    let set = RuleSet::compile(rules);
    assert!(set.skipped().is_empty(), "{:?}", set.skipped());
    let started = Instant::now();
    let out = set.evaluate(&m.facts());
    let elapsed = started.elapsed();
    eprintln!("evaluation of {} rules took {elapsed:?}", set.len());
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // The NotContains rules matched; the regexes could not.
    assert_eq!(out.matched.len(), patterns.len());

    // Parsing a huge message is bounded too.
    let mut raw = Vec::new();
    for _ in 0..60 {
        raw.extend_from_slice(b"X-Big: ");
        raw.extend_from_slice(&big.as_bytes()[..50_000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(big.as_bytes());
    let started = Instant::now();
    let parsed = ParsedMessage::parse(&raw);
    let elapsed = started.elapsed();
    eprintln!("parsing {} bytes took {elapsed:?}", raw.len());
    assert!(elapsed < Duration::from_secs(1), "parse took {elapsed:?}");
    assert!(!parsed.headers.is_empty());
}

// ---------------------------------------------------------------------------
// Blocklist and allowlist

const ENTRIES: [&str; 3] = ["someone@example.com", "@blocked.example", "other.example"];

/// (sender, on the list)
const SENDERS: [(&str, bool); 14] = [
    ("someone@example.com", true),
    ("SomeOne@EXAMPLE.com", true),
    ("someone+tag@example.com", false),
    ("someoneelse@example.com", false),
    ("x@someone.example.com", false),
    ("someone@example.com.evil.org", false),
    ("x@blocked.example", true),
    ("x@mail.blocked.example", true),
    ("x@a.b.blocked.example", true),
    ("x@evil-blocked.example", false),
    ("x@blocked.example.evil.org", false),
    ("x@notblocked.example", false),
    ("x@other.example", true),
    ("x@other.example.org", false),
];

#[test]
fn blocklist_entries() {
    let entries: Vec<String> = ENTRIES.iter().map(|s| (*s).to_owned()).collect();
    let list = blocklist_rule(UserId::new(), &entries, NOW).expect("valid list");
    assert_eq!(list.scope, RuleScope::User);
    assert_eq!(list.priority, i32::MIN);
    assert_eq!(list.match_mode, MatchMode::Any);
    assert_eq!(list.actions, vec![A::Block(BlockReply::Reject), A::Stop]);
    // A tagging rule before it changes nothing.
    let mut first = rule(i32::MIN, MatchMode::All, vec![], vec![tag("x")]);
    first.created_at = Timestamp::from_unix_secs(0);
    let set = RuleSet::compile(vec![first, list.clone()]);

    for (sender, listed) in SENDERS {
        // As the envelope sender: decided at RCPT.
        let mut m = base();
        m.sender = Some(addr(sender));
        m.header_from = None;
        let expected = listed.then_some(Blocked {
            rule: list.id,
            reply: BlockReply::Reject,
        });
        assert_eq!(set.evaluate_envelope(&m.envelope()), expected, "{sender}");
        assert_eq!(set.evaluate(&m.facts()).blocked, expected, "{sender}");
        // As the header From only: decided at the end of DATA.
        m.sender = Some(addr("bounce@lists.example"));
        m.header_from = Some(sender.to_owned());
        assert_eq!(set.evaluate_envelope(&m.envelope()), None, "{sender}");
        assert_eq!(
            set.evaluate(&m.facts()).blocked,
            expected,
            "{sender} in From"
        );
    }
    // The null sender is not blocked by a list.
    let mut m = base();
    m.sender = None;
    m.header_from = None;
    assert_eq!(set.evaluate(&m.facts()).blocked, None);

    for bad in ["", "not an address", "a@", "@", "x@-bad.example"] {
        assert!(
            blocklist_rule(UserId::new(), &[bad.to_owned()], NOW).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn allowlist_entries() {
    let entries: Vec<String> = ENTRIES.iter().map(|s| (*s).to_owned()).collect();
    let alias = AliasId::new();
    let list = allowlist_rule(UserId::new(), alias, &entries, BlockReply::Reject, NOW)
        .expect("valid list");
    assert_eq!(list.scope, RuleScope::Alias(alias));
    assert_eq!(list.priority, i32::MIN + 1);
    let set = RuleSet::compile(vec![list.clone()]);

    for (sender, listed) in SENDERS {
        let blocked = (!listed).then_some(Blocked {
            rule: list.id,
            reply: BlockReply::Reject,
        });
        // Neither the envelope sender nor the header From allowed.
        let mut m = base();
        m.sender = Some(addr(sender));
        m.header_from = Some(sender.to_owned());
        assert_eq!(set.evaluate(&m.facts()).blocked, blocked, "{sender}");
        // Never refused at RCPT: the header From may still be allowed.
        assert_eq!(set.evaluate_envelope(&m.envelope()), None, "{sender}");
        // Either one allowed is enough.
        m.header_from = Some("friend@other.example".into());
        assert_eq!(set.evaluate(&m.facts()).blocked, None, "{sender}");
        m.sender = Some(addr("bounce@lists.example"));
        m.header_from = Some(sender.to_owned());
        assert_eq!(
            set.evaluate(&m.facts()).blocked,
            blocked,
            "{sender} in From"
        );
    }

    // An allowed envelope sender settles it at RCPT: later rules still run there.
    let later = block_rule(
        0,
        vec![cond(F::To, O::Contains, "shop")],
        BlockReply::Reject,
    );
    let set = RuleSet::compile(vec![list.clone(), later.clone()]);
    let mut m = base();
    m.sender = Some(addr("x@mail.blocked.example"));
    assert_eq!(
        set.evaluate_envelope(&m.envelope()).map(|b| b.rule),
        Some(later.id)
    );

    let silent = allowlist_rule(UserId::new(), alias, &entries, BlockReply::Silent, NOW)
        .expect("valid list");
    let set = RuleSet::compile(vec![silent]);
    let mut m = base();
    m.header_from = None;
    let out = set.evaluate(&m.facts());
    assert_eq!(out.blocked.map(|b| b.reply), Some(BlockReply::Silent));
    assert_eq!(out.reply(), None);
}
