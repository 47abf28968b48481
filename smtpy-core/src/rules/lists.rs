//! Blocklists and allowlists, expressed as ordinary rules so they run,
//! order and explain like any other.
//!
//! An entry is an address (`someone@example.com`, ASCII case-insensitive)
//! or a domain (`@example.com` or `example.com`), which covers the domain
//! and its subdomains, label by label: `example.com` covers
//! `mail.example.com` but not `evil-example.com` nor
//! `example.com.evil.org`.

use crate::address::{DomainName, EmailAddress};
use crate::ids::{AliasId, UserId};
use crate::model::{
    BlockReply, Condition, ConditionField, ForwardingRule, MAX_REGEX_LEN, MatchMode, Operator,
    RuleAction, RuleError, RuleScope,
};
use crate::time::Timestamp;

/// One parsed list entry.
enum Entry {
    Address(EmailAddress),
    Domain(DomainName),
}

fn parse_entry(entry: &str) -> Result<Entry, RuleError> {
    let entry = entry.trim();
    let bad = |_| RuleError::BadValue {
        field: "from",
        reason: "a list entry must be an address, @domain or domain",
    };
    if let Some(domain) = entry.strip_prefix('@') {
        DomainName::parse(domain).map(Entry::Domain).map_err(bad)
    } else if entry.contains('@') {
        EmailAddress::parse(entry).map(Entry::Address).map_err(bad)
    } else {
        DomainName::parse(entry).map(Entry::Domain).map_err(bad)
    }
}

/// The spellings of an address a message may carry: as displayed and, when
/// it differs, with the A-label domain.
fn address_forms(address: &EmailAddress) -> Vec<String> {
    let display = address.to_string();
    let mut forms = vec![display.clone()];
    if let Some(ascii) = address.to_ascii_string()
        && ascii != display
    {
        forms.push(ascii);
    }
    forms
}

/// The alternatives of one regular expression of a blocklist.
#[derive(Default)]
struct Chunk {
    addresses: Vec<String>,
    domains: Vec<String>,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.domains.is_empty()
    }

    /// `^(?:addresses)$|@(?:[^@]*\.)?(?:domains)$`: a whole address, or an
    /// address whose domain is one of the domains or below one (the `@` and
    /// the label boundary keep look-alike domains out).
    fn render(&self) -> String {
        let mut parts = Vec::with_capacity(2);
        if !self.addresses.is_empty() {
            parts.push(format!("^(?:{})$", self.addresses.join("|")));
        }
        if !self.domains.is_empty() {
            parts.push(format!(r"@(?:[^@]*\.)?(?:{})$", self.domains.join("|")));
        }
        parts.join("|")
    }

    fn add(&mut self, entry: &Entry) {
        match entry {
            Entry::Address(a) => self
                .addresses
                .extend(address_forms(a).iter().map(|f| regex::escape(f))),
            Entry::Domain(d) => {
                self.domains.push(regex::escape(d.as_ascii()));
                if d.as_unicode() != d.as_ascii() {
                    self.domains.push(regex::escape(d.as_unicode()));
                }
            }
        }
    }
}

fn from_condition(operator: Operator, value: String) -> Condition {
    Condition {
        field: ConditionField::From,
        operator,
        value,
    }
}

/// The account-wide blocklist as one rule: scope [`RuleScope::User`],
/// priority `i32::MIN` (before every other rule), any-match, actions
/// `Block(Reject)` then `Stop`.
///
/// Entries are packed into as few `From matches_regex` conditions as fit
/// [`MAX_REGEX_LEN`], so a list holds several hundred entries. A blocked
/// sender is refused at `RCPT TO` when the envelope sender is on the list,
/// and at the end of DATA when the header `From` is. An empty list gives a
/// rule that never matches.
///
/// # Errors
///
/// [`RuleError::BadValue`] for an entry that is neither an address nor a
/// domain; [`RuleError::TooMany`] when the list needs more conditions than a
/// rule may hold; [`RuleError::Regex`] for an address too long to fit.
///
/// ```
/// use smtpy_core::address::EmailAddress;
/// use smtpy_core::ids::UserId;
/// use smtpy_core::rules::{EnvelopeFacts, RuleSet, blocklist_rule};
/// use smtpy_core::time::Timestamp;
///
/// let rule = blocklist_rule(
///     UserId::new(),
///     &["spammer@example.net".into(), "@junk.example".into()],
///     Timestamp::from_unix_secs(0),
/// )?;
/// let set = RuleSet::compile(vec![rule]);
/// let alias = EmailAddress::parse("me@alias.example")?;
/// let blocked = |s: &str| {
///     let sender = EmailAddress::parse(s).unwrap();
///     set.evaluate_envelope(&EnvelopeFacts { sender: Some(&sender), alias: &alias }).is_some()
/// };
/// assert!(blocked("Spammer@example.net"));
/// assert!(blocked("x@mx.junk.example"));
/// assert!(!blocked("x@notjunk.example"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn blocklist_rule(
    owner: UserId,
    entries: &[String],
    now: Timestamp,
) -> Result<ForwardingRule, RuleError> {
    let mut conditions = Vec::new();
    let mut chunk = Chunk::default();
    for text in entries {
        let entry = parse_entry(text)?;
        let mut grown = Chunk {
            addresses: chunk.addresses.clone(),
            domains: chunk.domains.clone(),
        };
        grown.add(&entry);
        if grown.render().len() <= MAX_REGEX_LEN {
            chunk = grown;
            continue;
        }
        if !chunk.is_empty() {
            conditions.push(from_condition(Operator::MatchesRegex, chunk.render()));
        }
        chunk = Chunk::default();
        chunk.add(&entry);
        if chunk.render().len() > MAX_REGEX_LEN {
            return Err(RuleError::Regex(format!(
                "list entry {:?} is too long",
                text.trim()
            )));
        }
    }
    if !chunk.is_empty() {
        conditions.push(from_condition(Operator::MatchesRegex, chunk.render()));
    }
    let mut rule = ForwardingRule::new(
        owner,
        RuleScope::User,
        "Blocklist".into(),
        i32::MIN,
        vec![RuleAction::Block(BlockReply::Reject), RuleAction::Stop],
        now,
    );
    rule.match_mode = MatchMode::Any;
    rule.conditions = conditions;
    rule.validate()?;
    Ok(rule)
}

/// A per-alias allowlist ("only these senders") as one rule: scope
/// [`RuleScope::Alias`], priority `i32::MIN + 1`, all-match of
/// `From is_not <entry>` conditions (a domain entry is written `@domain`),
/// actions `Block(reply)` then `Stop`.
///
/// Mail is accepted when the envelope sender **or** the header `From` is on
/// the list (a `From` condition with a negative operator holds only when
/// neither matches), so a sender writing through a mailing list still gets
/// through; pair it with a DMARC rule to refuse forged header `From`s. Only
/// an allowed envelope sender settles it at `RCPT TO`; otherwise the
/// decision waits for the header `From`, at the end of DATA.
///
/// # Errors
///
/// [`RuleError::BadValue`] for an empty list or an entry that is neither an
/// address nor a domain; [`RuleError::TooMany`] for more entries than a
/// rule holds conditions (an address with an internationalised domain takes
/// two).
pub fn allowlist_rule(
    owner: UserId,
    alias: AliasId,
    entries: &[String],
    reply: BlockReply,
    now: Timestamp,
) -> Result<ForwardingRule, RuleError> {
    if entries.is_empty() {
        return Err(RuleError::BadValue {
            field: "allowlist",
            reason: "needs at least one entry",
        });
    }
    let mut conditions: Vec<Condition> = Vec::new();
    for text in entries {
        let values = match parse_entry(text)? {
            Entry::Address(a) => address_forms(&a),
            Entry::Domain(d) => vec![format!("@{}", d.as_ascii())],
        };
        for value in values {
            let condition = from_condition(Operator::IsNot, value);
            if !conditions.contains(&condition) {
                conditions.push(condition);
            }
        }
    }
    let mut rule = ForwardingRule::new(
        owner,
        RuleScope::Alias(alias),
        "Allowlist".into(),
        i32::MIN + 1,
        vec![RuleAction::Block(reply), RuleAction::Stop],
        now,
    );
    rule.conditions = conditions;
    rule.validate()?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert!(matches!(
            parse_entry(" a@b.example "),
            Ok(Entry::Address(_))
        ));
        assert!(matches!(parse_entry("@b.example"), Ok(Entry::Domain(_))));
        assert!(matches!(parse_entry("b.example"), Ok(Entry::Domain(_))));
        for bad in ["", "@", "a@", "@a@b", "a b", "@-x.example"] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn blocklist_packs_entries_into_bounded_regexes() {
        let entries: Vec<String> = (0..400)
            .map(|i| {
                if i % 2 == 0 {
                    format!("sender{i}@example.net")
                } else {
                    format!("domain{i}.example")
                }
            })
            .collect();
        let rule = blocklist_rule(UserId::new(), &entries, Timestamp::EPOCH).expect("fits");
        assert!(rule.conditions.len() > 1);
        assert!(
            rule.conditions
                .iter()
                .all(|c| c.value.len() <= MAX_REGEX_LEN && c.operator == Operator::MatchesRegex)
        );
        let too_many: Vec<String> = (0..5000).map(|i| format!("d{i}.example")).collect();
        assert!(matches!(
            blocklist_rule(UserId::new(), &too_many, Timestamp::EPOCH),
            Err(RuleError::TooMany { .. })
        ));
    }

    #[test]
    fn allowlist_needs_entries() {
        assert!(
            allowlist_rule(
                UserId::new(),
                AliasId::new(),
                &[],
                BlockReply::Reject,
                Timestamp::EPOCH
            )
            .is_err()
        );
        let rule = allowlist_rule(
            UserId::new(),
            AliasId::new(),
            &[
                "a@bücher.example".into(),
                "a@bücher.example".into(),
                "x.example".into(),
            ],
            BlockReply::Silent,
            Timestamp::EPOCH,
        )
        .expect("valid");
        let values: Vec<&str> = rule.conditions.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(
            values,
            ["a@bücher.example", "a@xn--bcher-kva.example", "@x.example"]
        );
    }
}
