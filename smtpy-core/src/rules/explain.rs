//! "What would happen to this message?", answered without sending or
//! changing anything.

use super::{EnvelopeFacts, MESSAGE_ACCEPTED, MessageFacts, ParsedMessage, RuleSet};
use crate::StoreError;
use crate::address::EmailAddress;
use crate::ids::{AliasId, MailboxId, RuleId, UserId};
use crate::model::{Alias, DisabledReply, Domain, UserStatus};
use crate::reply::Reply;
use crate::routing::pattern_matches;
use crate::store::{Access, Store};
use crate::time::Timestamp;

/// `550 5.2.1`: the alias exists but none of its mailboxes can take mail
/// (the reply routing gives).
const NO_DELIVERABLE_MAILBOX: Reply =
    Reply::new(550, (5, 2, 1), "This address cannot receive mail right now");

/// A message to explain: its envelope and its header block.
#[derive(Debug, Clone, Copy)]
pub struct ExplainInput<'a> {
    /// The envelope sender; `None` is the null sender `<>`.
    pub sender: Option<&'a EmailAddress>,
    /// The recipient (`RCPT TO`).
    pub recipient: &'a EmailAddress,
    /// The header block, or a whole message (then attachments are seen too).
    pub headers: &'a [u8],
    /// The message size for `Size` conditions; `None`: the length of `headers`.
    pub size: Option<u64>,
}

/// What smtpy would do with a message, as [`explain`] works it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The existing alias the recipient names.
    pub alias: Option<AliasId>,
    /// The alias address (also when the alias would be created).
    pub alias_address: Option<EmailAddress>,
    /// The recipient has no alias, but its catch-all domain would create one
    /// on first mail (it is not created by [`explain`]).
    pub would_create_alias: bool,
    /// The rules that matched, in evaluation order.
    pub matched_rules: Vec<RuleId>,
    /// The rule that blocked or quarantined the message.
    pub decided_by: Option<RuleId>,
    /// The SMTP reply the client would end with for this recipient: the
    /// `RCPT TO` refusal (`550 5.1.1` unknown, `550 5.7.1` relay denied or
    /// blocked before DATA, `550 5.2.1` no deliverable mailbox), the
    /// end-of-DATA refusal (`550 5.7.1` blocked by a rule), or
    /// [`MESSAGE_ACCEPTED`] (forwarded, quarantined, or silently discarded).
    pub reply: Reply,
    /// The outcome is settled at `RCPT TO`, before the message is sent.
    pub rcpt_stage: bool,
    /// The message would be held for review.
    pub quarantine: bool,
    /// Where it would be forwarded (or, when quarantined, where it would go
    /// once released): the owner's deliverable mailboxes among the alias's
    /// or a rule's `ForwardTo`. Empty when it is not forwarded.
    pub mailboxes: Vec<MailboxId>,
    /// Header fields the rules would change: `Subject` with its prefixes,
    /// then the added fields, in order.
    pub rewritten_headers: Vec<(String, String)>,
}

impl Explanation {
    /// Refused (or discarded) at `RCPT TO` by routing, before any rule.
    fn at_rcpt(reply: Reply) -> Self {
        Self {
            alias: None,
            alias_address: None,
            would_create_alias: false,
            matched_rules: Vec::new(),
            decided_by: None,
            reply,
            rcpt_stage: true,
            quarantine: false,
            mailboxes: Vec::new(),
            rewritten_headers: Vec::new(),
        }
    }
}

/// What would happen to a message: the routing decision and the rules,
/// exactly as the mail path makes them at `RCPT TO` and at the end of DATA,
/// but read-only: nothing is sent, no counter moves, and on a catch-all
/// domain the alias that first mail would create is reported
/// ([`Explanation::would_create_alias`]) and never created.
///
/// Authentication verdicts are not known here, so `Spf`, `Dkim` and `Dmarc`
/// conditions do not hold; SRS bounce addresses are not recognised (they
/// read as unknown local parts).
///
/// # Errors
///
/// Any store error (the mail path would answer `451 4.4.3` instead).
pub async fn explain(
    store: &dyn Store,
    input: &ExplainInput<'_>,
    now: Timestamp,
) -> Result<Explanation, StoreError> {
    let rcpt = input.recipient;
    let domain = match store.find_domain_by_name(rcpt.domain()).await? {
        Some(d) if d.receives_mail() => d,
        _ => return Ok(Explanation::at_rcpt(Reply::RELAY_DENIED)),
    };
    if rcpt
        .local_part()
        .as_str()
        .eq_ignore_ascii_case("postmaster")
    {
        return Ok(Explanation::at_rcpt(MESSAGE_ACCEPTED));
    }
    let (alias, would_create) = match store.find_alias_by_address(rcpt).await? {
        Some(alias) => (alias, false),
        None => match catch_all_alias(store, &domain, rcpt, now).await? {
            Some(alias) => (alias, true),
            None => return Ok(Explanation::at_rcpt(Reply::UNKNOWN_RECIPIENT)),
        },
    };
    let mut ex = Explanation::at_rcpt(MESSAGE_ACCEPTED);
    ex.alias = (!would_create).then_some(alias.id);
    ex.alias_address = Some(alias.address.clone());
    ex.would_create_alias = would_create;

    let owner = store.get_user(alias.owner).await?;
    if !alias.is_active(now) || owner.status != UserStatus::Active {
        if alias.disabled_reply != DisabledReply::Discard || owner.status != UserStatus::Active {
            ex.reply = Reply::UNKNOWN_RECIPIENT;
        }
        return Ok(ex);
    }
    let mailboxes = deliverable(store, alias.owner, &alias.mailboxes).await?;
    if mailboxes.is_empty() {
        ex.reply = NO_DELIVERABLE_MAILBOX;
        return Ok(ex);
    }

    let rules = RuleSet::compile(store.rules_for_alias(&alias).await?);
    let envelope = EnvelopeFacts {
        sender: input.sender,
        alias: &alias.address,
    };
    let stage = rules.envelope_stage(&envelope);
    if let Some(blocked) = stage.blocked {
        ex.matched_rules = stage.matched;
        ex.decided_by = Some(blocked.rule);
        ex.reply = blocked.smtp_reply().unwrap_or(MESSAGE_ACCEPTED);
        return Ok(ex);
    }

    ex.rcpt_stage = false;
    let parsed = ParsedMessage::parse(input.headers);
    let size = input
        .size
        .unwrap_or_else(|| u64::try_from(input.headers.len()).unwrap_or(u64::MAX));
    let outcome = rules.evaluate(&MessageFacts::new(envelope, &parsed, size));
    ex.matched_rules.clone_from(&outcome.matched);
    if let Some(blocked) = outcome.blocked {
        ex.decided_by = Some(blocked.rule);
        ex.reply = blocked.smtp_reply().unwrap_or(MESSAGE_ACCEPTED);
        return Ok(ex);
    }
    ex.quarantine = outcome.quarantine.is_some();
    ex.decided_by = outcome.quarantine;
    ex.mailboxes = match &outcome.forward_to {
        Some(ids) => deliverable(store, alias.owner, ids).await?,
        None => mailboxes,
    };
    if let Some(subject) = outcome.subject(parsed.subject.as_deref()) {
        ex.rewritten_headers.push(("Subject".to_owned(), subject));
    }
    ex.rewritten_headers.extend(outcome.add_headers);
    Ok(ex)
}

/// The alias a catch-all domain would create for `rcpt` (not stored), as
/// routing decides it.
async fn catch_all_alias(
    store: &dyn Store,
    domain: &Domain,
    rcpt: &EmailAddress,
    now: Timestamp,
) -> Result<Option<Alias>, StoreError> {
    if !domain.catch_all.enabled || domain.default_mailboxes.is_empty() {
        return Ok(None);
    }
    if let Some(pattern) = &domain.catch_all.auto_create_pattern
        && !pattern_matches(pattern, rcpt.local_part().as_str())
    {
        return Ok(None);
    }
    if store.is_tombstoned(rcpt).await? {
        return Ok(None);
    }
    Ok(Some(Alias::new(
        rcpt.clone(),
        domain.owner,
        domain.id,
        domain.default_mailboxes.clone(),
        now,
    )))
}

/// The mailboxes among `ids` that are `owner`'s and can receive, in order,
/// without two of the same address.
async fn deliverable(
    store: &dyn Store,
    owner: UserId,
    ids: &[MailboxId],
) -> Result<Vec<MailboxId>, StoreError> {
    let mut found: Vec<(MailboxId, String)> = Vec::with_capacity(ids.len());
    for id in ids {
        let mailbox = match store.get_mailbox(Access::Owner(owner), *id).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let key = mailbox.address.canonical();
        if mailbox.can_receive() && !found.iter().any(|(_, k)| *k == key) {
            found.push((mailbox.id, key));
        }
    }
    Ok(found.into_iter().map(|(id, _)| id).collect())
}
