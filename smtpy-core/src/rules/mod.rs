//! The rules engine: an alias's [`ForwardingRule`]s, compiled once and
//! evaluated against the envelope (at `RCPT TO`) and the message (at the end
//! of DATA); [`explain`] for "what would happen to this message"; the
//! account-wide [`blocklist_rule`] and the per-alias [`allowlist_rule`].
//!
//! # Order
//!
//! Rules run by `priority` (lower first), then creation time, then id.
//! Disabled rules are left out; invalid ones too, and they are reported by
//! [`RuleSet::skipped`] so an operator can see why a rule never fires.
//!
//! # Conditions
//!
//! A rule holds when all its conditions hold ([`MatchMode::All`], an empty
//! list always holds) or when at least one does ([`MatchMode::Any`], an
//! empty list never holds).
//!
//! | field | compared with |
//! | --- | --- |
//! | `From` | the envelope sender **and** the header `From` address (see below) |
//! | `To` | the alias address |
//! | `Subject` | the decoded `Subject` (no `Subject`: no value) |
//! | `Header(name)` | every field called `name` (case-insensitive), decoded and unfolded |
//! | `Size` | the message size in bytes, as a number (`is`, `is_not`, `greater_than`, `less_than`) |
//! | `HasAttachment` | `is` / `is_not` `"true"` or `"false"` |
//! | `Spf`, `Dkim`, `Dmarc` | the verdict string (`pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`, `permerror`) |
//!
//! * Text comparisons (`is`, `contains`, `starts_with`, `ends_with`) are
//!   ASCII case-insensitive. `matches_regex` is unanchored and
//!   case-insensitive too (write `(?-i)` in the pattern to turn that off).
//! * A field with several values (`From`, a repeated header) holds for a
//!   positive operator when **any** value matches, and for a negative one
//!   (`is_not`, `not_contains`) only when **none** does. So `From is_not x`
//!   holds only if neither the envelope sender nor the header `From` is `x`.
//!   A field with no value (no `Subject`, no such header) fails every
//!   positive operator and passes every negative one.
//! * The null sender (`MAIL FROM:<>`) is the empty string.
//! * For `From` and `To`, an `is` / `is_not` value starting with `@` names a
//!   domain: `is "@example.com"` holds for `example.com` and its subdomains,
//!   comparing whole labels (not `evil-example.com`, not
//!   `example.com.evil.org`). No address starts with `@`, so this never
//!   changes what an address compares equal to.
//! * An authentication verdict that is not known (not checked) fails every
//!   operator, negative ones included: a rule on `dmarc is_not pass` does not
//!   fire on mail whose DMARC result is unknown.
//!
//! # Actions
//!
//! Matching rules' actions apply in order and accumulate:
//! [`RuleAction::ForwardTo`] replaces the mailboxes (the last one wins),
//! [`RuleAction::Quarantine`] holds the message (the first quarantining rule
//! is recorded), [`RuleAction::PrefixSubject`] and [`RuleAction::AddHeader`]
//! collect. [`RuleAction::Block`] decides at once and ends evaluation;
//! [`RuleAction::Stop`] ends it after the current rule's actions.
//!
//! # Two stages
//!
//! [`RuleSet::evaluate_envelope`] runs at `RCPT TO`, before any header is
//! known, so the server can refuse blocked mail with `550 5.7.1` before DATA.
//! It only returns a block when the evaluation at the end of DATA is certain
//! to block with the same reply: a rule is decided at RCPT when its
//! conditions can be settled from the envelope (`To`, and `From` through the
//! envelope sender; a `Subject` condition never can), and an earlier rule
//! that cannot be settled yet but might end evaluation (a `Stop`, or a
//! `Block` with another reply) defers the decision to DATA.
//!
//! # Bounds
//!
//! * Compile memory: each regular expression is at most
//!   [`MAX_REGEX_LEN`](crate::model::MAX_REGEX_LEN) bytes and is built with
//!   [`REGEX_SIZE_LIMIT`] and [`REGEX_DFA_SIZE_LIMIT`]; a set holds at most
//!   [`MAX_RULES`] rules and [`MAX_REGEXES`] expressions, so a set's
//!   expressions use at most `MAX_REGEXES × (REGEX_SIZE_LIMIT +
//!   REGEX_DFA_SIZE_LIMIT)` (128 MiB; real expressions take a few KiB),
//!   whatever the rules say.
//! * Evaluation time: matching is linear in the input (`regex` crate, no
//!   backtracking); each value is considered up to [`MAX_VALUE_BYTES`], at
//!   most [`MAX_HEADER_FIELDS`] header fields and [`MAX_HEADER_BYTES`] of
//!   header values are looked at, and a set has at most [`MAX_RULES`] × 32
//!   conditions (32 per rule). One evaluation therefore reads at most
//!   `MAX_RULES × 32 × MAX_HEADER_BYTES` bytes, in practice far less (a
//!   condition reads only its own field).
//! * Parsing a message ([`ParsedMessage::parse`]) reads at most
//!   [`MAX_HEADER_BLOCK`] bytes of header block and [`MAX_MIME_BYTES`] bytes
//!   for the attachment test.
//!
//! Compiling is the expensive part (a case-insensitive expression takes
//! around a millisecond to build; a set of 130 rules with 47 expressions,
//! about 40 ms in a release build), while evaluating that set against a
//! message takes tens of microseconds: keep a compiled set per alias (for
//! instance keyed by the rules' ids and revisions) rather than compiling
//! one per recipient.
//!
//! ```
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::ids::UserId;
//! use smtpy_core::model::{BlockReply, Condition, ConditionField, ForwardingRule, Operator, RuleAction, RuleScope};
//! use smtpy_core::rules::{EnvelopeFacts, MessageFacts, ParsedMessage, RuleSet};
//! use smtpy_core::time::Timestamp;
//!
//! let now = Timestamp::from_unix_secs(1_700_000_000);
//! let mut block = ForwardingRule::new(UserId::new(), RuleScope::User, "no spam shop".into(), 0,
//!     vec![RuleAction::Block(BlockReply::Reject)], now);
//! block.conditions.push(Condition { field: ConditionField::From, operator: Operator::Is, value: "@spam.example".into() });
//! let mut tag = ForwardingRule::new(UserId::new(), RuleScope::User, "tag".into(), 1,
//!     vec![RuleAction::PrefixSubject("[sale]".into())], now);
//! tag.conditions.push(Condition { field: ConditionField::Subject, operator: Operator::Contains, value: "offer".into() });
//! let set = RuleSet::compile(vec![tag, block.clone()]);
//!
//! let alias = EmailAddress::parse("shop@alias.example")?;
//! let spammer = EmailAddress::parse("x@mx.spam.example")?;
//! // Refused at RCPT, before the message is sent.
//! let blocked = set.evaluate_envelope(&EnvelopeFacts { sender: Some(&spammer), alias: &alias });
//! assert_eq!(blocked.map(|b| b.rule), Some(block.id));
//!
//! // A friend's message is tagged at the end of DATA.
//! let friend = EmailAddress::parse("ann@friends.example")?;
//! let parsed = ParsedMessage::parse(b"From: Ann <ann@friends.example>\r\nSubject: An OFFER\r\n\r\nhi\r\n");
//! let facts = MessageFacts::new(EnvelopeFacts { sender: Some(&friend), alias: &alias }, &parsed, 60);
//! let outcome = set.evaluate(&facts);
//! assert_eq!(outcome.subject_prefixes, vec!["[sale]".to_owned()]);
//! assert!(outcome.reply().is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::address::EmailAddress;
use crate::ids::{MailboxId, RuleId};
use crate::model::{BlockReply, ForwardingRule, MatchMode, Operator, RuleAction, RuleError};
use crate::reply::Reply;

mod condition;
mod explain;
mod lists;
mod message;

pub use explain::{ExplainInput, Explanation, explain};
pub use lists::{allowlist_rule, blocklist_rule};
pub use message::ParsedMessage;

use condition::{CompiledCondition, DataView, EnvelopeView, Tri};

/// Most rules a [`RuleSet`] evaluates; further rules are skipped and reported.
pub const MAX_RULES: usize = 200;
/// Most regular expressions a [`RuleSet`] compiles; a rule that would go
/// over is skipped and reported.
pub const MAX_REGEXES: usize = 64;
/// Compiled program size limit of one regular expression, in bytes
/// ([`regex::RegexBuilder::size_limit`]).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Lazy DFA cache limit of one regular expression, in bytes
/// ([`regex::RegexBuilder::dfa_size_limit`]).
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;
/// Longest part of one value (a header value, the subject, an address) a
/// condition looks at, in bytes; the rest is ignored.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Most header fields conditions look at (the first ones of the message).
pub const MAX_HEADER_FIELDS: usize = 256;
/// Most bytes of header values, in total, conditions look at.
pub const MAX_HEADER_BYTES: usize = 128 * 1024;
/// Longest header block [`ParsedMessage::parse`] reads, in bytes.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Longest prefix of a message [`ParsedMessage::parse`] parses as MIME to
/// find attachments, in bytes.
pub const MAX_MIME_BYTES: usize = 32 * 1024 * 1024;

/// `550 5.7.1`: the message is refused by one of the recipient's rules.
pub const REJECTED_BY_RULE: Reply =
    Reply::new(550, (5, 7, 1), "Message refused by the recipient's rules");

/// `250 2.0.0`: the message is accepted (forwarded, quarantined, or
/// silently discarded).
pub const MESSAGE_ACCEPTED: Reply = Reply::new(250, (2, 0, 0), "OK");

/// The envelope of one recipient: what is known at `RCPT TO`.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeFacts<'a> {
    /// The envelope sender (`MAIL FROM`); `None` is the null sender `<>`.
    pub sender: Option<&'a EmailAddress>,
    /// The alias the mail is for.
    pub alias: &'a EmailAddress,
}

/// Everything rules can look at once the message is in.
#[derive(Debug, Clone, Copy)]
pub struct MessageFacts<'a> {
    /// The envelope.
    pub envelope: EnvelopeFacts<'a>,
    /// The address (bare `local@domain`, no display name) of the first
    /// mailbox of the header `From`.
    pub header_from: Option<&'a str>,
    /// The decoded `Subject`.
    pub subject: Option<&'a str>,
    /// Header fields in message order: name, unfolded decoded value.
    pub headers: &'a [(String, String)],
    /// Message size in bytes.
    pub size: u64,
    /// Whether the message has an attachment.
    pub has_attachment: bool,
    /// SPF verdict, lower case; `None` when not checked.
    pub spf: Option<&'a str>,
    /// DKIM verdict, lower case; `None` when not checked.
    pub dkim: Option<&'a str>,
    /// DMARC verdict, lower case; `None` when not checked.
    pub dmarc: Option<&'a str>,
}

impl<'a> MessageFacts<'a> {
    /// Facts from a parsed message (see [`ParsedMessage::parse`]), with no
    /// authentication verdicts (add them with [`with_auth`](Self::with_auth)).
    #[must_use]
    pub fn new(envelope: EnvelopeFacts<'a>, parsed: &'a ParsedMessage, size: u64) -> Self {
        Self {
            envelope,
            header_from: parsed.header_from.as_deref(),
            subject: parsed.subject.as_deref(),
            headers: &parsed.headers,
            size,
            has_attachment: parsed.has_attachment,
            spf: None,
            dkim: None,
            dmarc: None,
        }
    }

    /// Parses what rules read from a raw message (or its header block),
    /// bounded; the same as [`ParsedMessage::parse`]. Keep the result alive
    /// while facts borrow it.
    #[must_use]
    pub fn parse(raw: &[u8]) -> ParsedMessage {
        ParsedMessage::parse(raw)
    }

    /// The same facts with these SPF, DKIM and DMARC verdicts (lower case).
    #[must_use]
    pub fn with_auth(
        self,
        spf: Option<&'a str>,
        dkim: Option<&'a str>,
        dmarc: Option<&'a str>,
    ) -> Self {
        Self {
            spf,
            dkim,
            dmarc,
            ..self
        }
    }
}

/// A block decided by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Blocked {
    /// The rule that blocked.
    pub rule: RuleId,
    /// What to answer.
    pub reply: BlockReply,
}

impl Blocked {
    /// The refusal to send: [`REJECTED_BY_RULE`] for
    /// [`BlockReply::Reject`]; `None` for [`BlockReply::Silent`] (accept
    /// with `250`, then discard).
    #[must_use]
    pub fn smtp_reply(&self) -> Option<Reply> {
        match self.reply {
            BlockReply::Reject => Some(REJECTED_BY_RULE),
            BlockReply::Silent => None,
        }
    }
}

/// What the rules decided for one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleOutcome {
    /// The rules that matched, in evaluation order.
    pub matched: Vec<RuleId>,
    /// The block, if a rule blocked (then nothing is forwarded).
    pub blocked: Option<Blocked>,
    /// The first rule that quarantined, if any.
    pub quarantine: Option<RuleId>,
    /// The mailboxes to forward to instead of the alias's (the last
    /// `ForwardTo` that applied).
    pub forward_to: Option<Vec<MailboxId>>,
    /// Subject prefixes, in the order the rules added them.
    pub subject_prefixes: Vec<String>,
    /// Header fields to add (name, value), in order.
    pub add_headers: Vec<(String, String)>,
}

impl RuleOutcome {
    /// The reply refusing the message: `550 5.7.1` for a
    /// [`BlockReply::Reject`] block; `None` when the message is accepted
    /// (forwarded, quarantined, or silently discarded).
    #[must_use]
    pub fn reply(&self) -> Option<Reply> {
        self.blocked.as_ref().and_then(Blocked::smtp_reply)
    }

    /// The Subject after the prefixes: each prefix, in order, followed by a
    /// space, then `original`. A prefix the subject already starts with
    /// (ASCII case-insensitive) is not added again, so a message that passes
    /// twice is not tagged twice. `None` when there is no prefix.
    ///
    /// ```
    /// use smtpy_core::rules::RuleOutcome;
    ///
    /// let outcome = RuleOutcome {
    ///     subject_prefixes: vec!["[news]".into(), "[sale]".into()],
    ///     ..RuleOutcome::default()
    /// };
    /// assert_eq!(outcome.subject(Some("Hello")).as_deref(), Some("[news] [sale] Hello"));
    /// assert_eq!(outcome.subject(Some("[sale] Hi")).as_deref(), Some("[news] [sale] Hi"));
    /// ```
    #[must_use]
    pub fn subject(&self, original: Option<&str>) -> Option<String> {
        if self.subject_prefixes.is_empty() {
            return None;
        }
        let original = original.unwrap_or("");
        let mut rest = original;
        let mut out = String::new();
        for prefix in &self.subject_prefixes {
            let prefix = prefix.trim();
            if prefix.is_empty() {
                continue;
            }
            // Already tagged: the original's tag is replaced by this one.
            if let Some(after) = strip_prefix_ignore_ascii_case(rest, prefix) {
                rest = after.trim_start();
            }
            out.push_str(prefix);
            out.push(' ');
        }
        out.push_str(rest);
        Some(out.trim_end().to_owned())
    }
}

fn strip_prefix_ignore_ascii_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A rule left out of a [`RuleSet`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRule {
    /// The rule.
    pub rule: RuleId,
    /// Why it is not evaluated.
    pub error: RuleError,
}

#[derive(Debug)]
struct CompiledRule {
    id: RuleId,
    mode: MatchMode,
    conditions: Vec<CompiledCondition>,
    actions: Vec<RuleAction>,
}

impl CompiledRule {
    fn eval(&self, envelope: &EnvelopeView<'_>, data: Option<&DataView<'_>>) -> Tri {
        let mut unknown = false;
        match self.mode {
            MatchMode::All => {
                for c in &self.conditions {
                    match c.eval(envelope, data) {
                        Tri::No => return Tri::No,
                        Tri::Unknown => unknown = true,
                        Tri::Yes => {}
                    }
                }
                if unknown { Tri::Unknown } else { Tri::Yes }
            }
            MatchMode::Any => {
                for c in &self.conditions {
                    match c.eval(envelope, data) {
                        Tri::Yes => return Tri::Yes,
                        Tri::Unknown => unknown = true,
                        Tri::No => {}
                    }
                }
                if unknown { Tri::Unknown } else { Tri::No }
            }
        }
    }

    /// The reply of the first `Block` action.
    fn first_block(&self) -> Option<BlockReply> {
        self.actions.iter().find_map(|a| match a {
            RuleAction::Block(r) => Some(*r),
            _ => None,
        })
    }

    fn has_stop(&self) -> bool {
        self.actions.iter().any(|a| matches!(a, RuleAction::Stop))
    }
}

/// [`ForwardingRule::validate`], except that regular expressions are left
/// to [`CompiledCondition::compile`], which checks their length and builds
/// them (with the engine's options) anyway: each is compiled once.
fn validate_once(rule: &ForwardingRule) -> Result<(), RuleError> {
    let mut shadow = rule.clone();
    for c in &mut shadow.conditions {
        if c.operator == Operator::MatchesRegex {
            c.value.clear();
        }
    }
    shadow.validate()
}

/// An alias's rules, compiled once, evaluated many times.
///
/// Rules are sorted by priority, then creation time, then id; disabled
/// rules are left out; invalid ones (see [`ForwardingRule::validate`]), a
/// regular expression over the size limits, rules beyond [`MAX_RULES`] or
/// expressions beyond [`MAX_REGEXES`] are left out and reported by
/// [`skipped`](Self::skipped). See the [module documentation](self) for the
/// semantics and the bounds.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    skipped: Vec<SkippedRule>,
}

impl RuleSet {
    /// Compiles `rules` (typically `RuleStore::rules_for_alias`).
    #[must_use]
    pub fn compile(mut rules: Vec<ForwardingRule>) -> RuleSet {
        rules.sort_by(|a, b| {
            (a.priority, a.created_at, a.id).cmp(&(b.priority, b.created_at, b.id))
        });
        let mut set = RuleSet::default();
        let mut regexes = 0usize;
        for rule in rules {
            if !rule.enabled {
                continue;
            }
            let skip = |error| SkippedRule {
                rule: rule.id,
                error,
            };
            if set.rules.len() >= MAX_RULES {
                set.skipped.push(skip(RuleError::TooMany {
                    what: "rules",
                    max: MAX_RULES,
                }));
                continue;
            }
            if let Err(e) = validate_once(&rule) {
                set.skipped.push(skip(e));
                continue;
            }
            let wanted = rule
                .conditions
                .iter()
                .filter(|c| c.operator == Operator::MatchesRegex)
                .count();
            if regexes + wanted > MAX_REGEXES {
                set.skipped.push(skip(RuleError::TooMany {
                    what: "regular expressions",
                    max: MAX_REGEXES,
                }));
                continue;
            }
            match rule
                .conditions
                .iter()
                .map(CompiledCondition::compile)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(conditions) => {
                    regexes += wanted;
                    set.rules.push(CompiledRule {
                        id: rule.id,
                        mode: rule.match_mode,
                        conditions,
                        actions: rule.actions,
                    });
                }
                Err(e) => set.skipped.push(skip(e)),
            }
        }
        set
    }

    /// The rules left out, with the reason (disabled rules are not listed).
    #[must_use]
    pub fn skipped(&self) -> &[SkippedRule] {
        &self.skipped
    }

    /// How many rules are evaluated.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no rule is evaluated.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The evaluated rules, in evaluation order.
    pub fn rule_ids(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.rules.iter().map(|r| r.id)
    }

    /// At `RCPT TO`: the block the rules decide from the envelope alone, if
    /// any. A block is returned only when the end-of-DATA evaluation is
    /// certain to block with the same reply (see the module documentation),
    /// so the server may answer it before DATA: `550 5.7.1` for
    /// [`BlockReply::Reject`], or accept and discard for
    /// [`BlockReply::Silent`].
    #[must_use]
    pub fn evaluate_envelope(&self, envelope: &EnvelopeFacts<'_>) -> Option<Blocked> {
        self.envelope_stage(envelope).blocked
    }

    /// The envelope stage, with the rules that certainly matched.
    fn envelope_stage(&self, envelope: &EnvelopeFacts<'_>) -> EnvelopeStage {
        let view = EnvelopeView::new(envelope);
        let mut stage = EnvelopeStage::default();
        // Replies of earlier undecided rules that would block if they matched.
        let mut undecided_blocks: Vec<BlockReply> = Vec::new();
        for rule in &self.rules {
            match rule.eval(&view, None) {
                Tri::No => {}
                Tri::Unknown => match rule.first_block() {
                    Some(reply) => undecided_blocks.push(reply),
                    None if rule.has_stop() => return stage,
                    None => {}
                },
                Tri::Yes => {
                    stage.matched.push(rule.id);
                    for action in &rule.actions {
                        if let RuleAction::Block(reply) = action {
                            if undecided_blocks.iter().all(|r| r == reply) {
                                stage.blocked = Some(Blocked {
                                    rule: rule.id,
                                    reply: *reply,
                                });
                            }
                            return stage;
                        }
                    }
                    if rule.has_stop() {
                        return stage;
                    }
                }
            }
        }
        stage
    }

    /// At the end of DATA: every rule in order, accumulating actions until
    /// a `Stop` or a `Block`.
    #[must_use]
    pub fn evaluate(&self, message: &MessageFacts<'_>) -> RuleOutcome {
        let envelope = EnvelopeView::new(&message.envelope);
        let data = DataView::new(message);
        let mut out = RuleOutcome::default();
        for rule in &self.rules {
            if rule.eval(&envelope, Some(&data)) != Tri::Yes {
                continue;
            }
            out.matched.push(rule.id);
            let mut stop = false;
            for action in &rule.actions {
                match action {
                    RuleAction::ForwardTo(mailboxes) => out.forward_to = Some(mailboxes.clone()),
                    RuleAction::Block(reply) => {
                        out.blocked = Some(Blocked {
                            rule: rule.id,
                            reply: *reply,
                        });
                        return out;
                    }
                    RuleAction::Quarantine => {
                        out.quarantine.get_or_insert(rule.id);
                    }
                    RuleAction::PrefixSubject(prefix) => out.subject_prefixes.push(prefix.clone()),
                    RuleAction::AddHeader { name, value } => {
                        out.add_headers.push((name.clone(), value.clone()));
                    }
                    RuleAction::Stop => stop = true,
                }
            }
            if stop {
                break;
            }
        }
        out
    }
}

/// What the envelope stage found.
#[derive(Debug, Default)]
struct EnvelopeStage {
    matched: Vec<RuleId>,
    blocked: Option<Blocked>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefixes_apply_in_order_once() {
        let out = RuleOutcome {
            subject_prefixes: vec!["[a]".into(), " [b] ".into(), String::new()],
            ..RuleOutcome::default()
        };
        assert_eq!(out.subject(Some("x")).as_deref(), Some("[a] [b] x"));
        assert_eq!(out.subject(None).as_deref(), Some("[a] [b]"));
        assert_eq!(out.subject(Some("[A] y")).as_deref(), Some("[a] [b] y"));
        assert_eq!(RuleOutcome::default().subject(Some("x")), None);
        // A prefix longer than the subject, or cutting a character, is no match.
        let out = RuleOutcome {
            subject_prefixes: vec!["[é]".into()],
            ..RuleOutcome::default()
        };
        assert_eq!(out.subject(Some("[")).as_deref(), Some("[é] ["));
        assert_eq!(out.subject(Some("[éé")).as_deref(), Some("[é] [éé"));
    }

    #[test]
    fn blocked_reply() {
        let rule = RuleId::new();
        let reject = Blocked {
            rule,
            reply: BlockReply::Reject,
        };
        assert_eq!(reject.smtp_reply(), Some(REJECTED_BY_RULE));
        let silent = Blocked {
            rule,
            reply: BlockReply::Silent,
        };
        assert_eq!(silent.smtp_reply(), None);
        let out = RuleOutcome {
            blocked: Some(reject),
            ..RuleOutcome::default()
        };
        assert_eq!(out.reply().map(|r| r.code), Some(550));
    }
}
