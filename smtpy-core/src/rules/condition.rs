//! Compiled conditions, and the capped views of the facts they read.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};

use super::{
    EnvelopeFacts, MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_VALUE_BYTES, MessageFacts,
    REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT,
};
use crate::address::{DomainName, EmailAddress};
use crate::model::{Condition, ConditionField, Operator, RuleError};

/// A condition's value at some stage: settled either way, or not knowable
/// yet (a header condition at `RCPT TO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tri {
    Yes,
    No,
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b { Tri::Yes } else { Tri::No }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub(super) fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One value a text condition compares with, capped to
/// [`MAX_VALUE_BYTES`], with its ASCII lower-case form.
#[derive(Debug)]
pub(super) struct Text<'a> {
    raw: Cow<'a, str>,
    lower: String,
}

impl<'a> Text<'a> {
    fn new(raw: Cow<'a, str>, max: usize) -> Self {
        let raw = match raw {
            Cow::Borrowed(s) => Cow::Borrowed(cap(s, max)),
            Cow::Owned(mut s) => {
                let len = cap(&s, max).len();
                s.truncate(len);
                Cow::Owned(s)
            }
        };
        let lower = raw.to_ascii_lowercase();
        Self { raw, lower }
    }

    fn borrowed(s: &'a str) -> Self {
        Self::new(Cow::Borrowed(s), MAX_VALUE_BYTES)
    }
}

/// An address-like value (`From`, `To`) with its domain in A-label form.
#[derive(Debug)]
pub(super) struct AddrText<'a> {
    text: Text<'a>,
    domain: Option<String>,
}

impl AddrText<'_> {
    /// Both spellings of an address: as displayed (U-label domain) and, when
    /// it differs, the ASCII (A-label) form.
    fn forms(address: &EmailAddress) -> Vec<AddrText<'static>> {
        let domain = Some(address.domain().as_ascii().to_ascii_lowercase());
        let display = address.to_string();
        let ascii = address.to_ascii_string().filter(|a| *a != display);
        std::iter::once(display)
            .chain(ascii)
            .map(|s| AddrText {
                text: Text::new(Cow::Owned(s), MAX_VALUE_BYTES),
                domain: domain.clone(),
            })
            .collect()
    }

    fn parse(s: &str) -> AddrText<'_> {
        let text = Text::borrowed(s);
        let domain = domain_of(&text.lower);
        AddrText { text, domain }
    }
}

/// The A-label domain of an address written as text, if it has one.
fn domain_of(lower: &str) -> Option<String> {
    let (_, domain) = lower.rsplit_once('@')?;
    let domain = domain.trim_end_matches(['>', ' ', '.']);
    if domain.is_empty() {
        None
    } else if domain.is_ascii() {
        Some(domain.to_owned())
    } else {
        DomainName::parse(domain)
            .ok()
            .map(|d| d.as_ascii().to_ascii_lowercase())
    }
}

/// What is known at `RCPT TO`.
#[derive(Debug)]
pub(super) struct EnvelopeView<'a> {
    from: Vec<AddrText<'a>>,
    to: Vec<AddrText<'a>>,
}

impl EnvelopeView<'_> {
    pub(super) fn new(envelope: &EnvelopeFacts<'_>) -> EnvelopeView<'static> {
        let from = match envelope.sender {
            // The null sender is the empty string.
            None => vec![AddrText {
                text: Text::new(Cow::Borrowed(""), 0),
                domain: None,
            }],
            Some(sender) => AddrText::forms(sender),
        };
        EnvelopeView {
            from,
            to: AddrText::forms(envelope.alias),
        }
    }
}

/// What is known at the end of DATA, capped.
#[derive(Debug)]
pub(super) struct DataView<'a> {
    header_from: Option<AddrText<'a>>,
    subject: Option<Text<'a>>,
    headers: Vec<(&'a str, Text<'a>)>,
    size: u64,
    has_attachment: bool,
    spf: Option<Text<'a>>,
    dkim: Option<Text<'a>>,
    dmarc: Option<Text<'a>>,
}

impl<'a> DataView<'a> {
    pub(super) fn new(message: &MessageFacts<'a>) -> Self {
        let mut budget = MAX_HEADER_BYTES;
        let mut headers = Vec::with_capacity(message.headers.len().min(MAX_HEADER_FIELDS));
        for (name, value) in message.headers.iter().take(MAX_HEADER_FIELDS) {
            if budget == 0 {
                break;
            }
            let text = Text::new(Cow::Borrowed(value), MAX_VALUE_BYTES.min(budget));
            budget -= text.raw.len().min(budget);
            headers.push((name.as_str(), text));
        }
        Self {
            header_from: message.header_from.map(AddrText::parse),
            subject: message.subject.map(Text::borrowed),
            headers,
            size: message.size,
            has_attachment: message.has_attachment,
            spf: message.spf.map(Text::borrowed),
            dkim: message.dkim.map(Text::borrowed),
            dmarc: message.dmarc.map(Text::borrowed),
        }
    }
}

/// How a text condition compares one value.
#[derive(Debug)]
pub(super) enum TextTest {
    /// Equal to this lower-case string.
    Equals(String),
    /// The address's domain is this A-label domain or below it.
    Domain(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Regex(Regex),
}

impl TextTest {
    fn matches(&self, text: &Text<'_>, domain: Option<&str>) -> bool {
        match self {
            TextTest::Equals(v) => text.lower == *v,
            TextTest::Domain(parent) => domain.is_some_and(|d| {
                d.strip_suffix(parent.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
            }),
            TextTest::Contains(v) => text.lower.contains(v.as_str()),
            TextTest::StartsWith(v) => text.lower.starts_with(v.as_str()),
            TextTest::EndsWith(v) => text.lower.ends_with(v.as_str()),
            TextTest::Regex(re) => re.is_match(&text.raw),
        }
    }

    fn matches_addr(&self, addr: &AddrText<'_>) -> bool {
        self.matches(&addr.text, addr.domain.as_deref())
    }
}

#[derive(Debug)]
pub(super) enum TextField {
    From,
    To,
    Subject,
    /// Lower-case header name.
    Header(String),
    Spf,
    Dkim,
    Dmarc,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Gt,
    Lt,
}

/// A condition ready to evaluate.
#[derive(Debug)]
pub(super) enum CompiledCondition {
    Text {
        field: TextField,
        test: TextTest,
        /// `is_not` / `not_contains`: holds when no value matches.
        negated: bool,
    },
    Size {
        cmp: Cmp,
        value: u64,
    },
    Attachment {
        expected: bool,
    },
}

/// A regular expression with the engine's limits: case-insensitive,
/// bounded compile size and lazy DFA cache.
pub(super) fn build_regex(pattern: &str) -> Result<Regex, RuleError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| RuleError::Regex(e.to_string()))
}

impl CompiledCondition {
    /// Compiles a condition (already validated by
    /// [`Condition::validate`]; checked again here).
    pub(super) fn compile(c: &Condition) -> Result<Self, RuleError> {
        let mismatch = |field: &'static str| RuleError::OperatorMismatch {
            field,
            operator: c.operator,
        };
        let (field, name) = match &c.field {
            ConditionField::Size => {
                let cmp = match c.operator {
                    Operator::Is => Cmp::Eq,
                    Operator::IsNot => Cmp::Ne,
                    Operator::GreaterThan => Cmp::Gt,
                    Operator::LessThan => Cmp::Lt,
                    _ => return Err(mismatch("size")),
                };
                let value = c.value.trim().parse().map_err(|_| RuleError::BadValue {
                    field: "size",
                    reason: "not a whole number of bytes",
                })?;
                return Ok(CompiledCondition::Size { cmp, value });
            }
            ConditionField::HasAttachment => {
                let value = match c.value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(RuleError::BadValue {
                            field: "has_attachment",
                            reason: "must be true or false",
                        });
                    }
                };
                let expected = match c.operator {
                    Operator::Is => value,
                    Operator::IsNot => !value,
                    _ => return Err(mismatch("has_attachment")),
                };
                return Ok(CompiledCondition::Attachment { expected });
            }
            ConditionField::From => (TextField::From, "from"),
            ConditionField::To => (TextField::To, "to"),
            ConditionField::Subject => (TextField::Subject, "subject"),
            ConditionField::Header(h) => (TextField::Header(h.to_ascii_lowercase()), "header"),
            ConditionField::Spf => (TextField::Spf, "spf"),
            ConditionField::Dkim => (TextField::Dkim, "dkim"),
            ConditionField::Dmarc => (TextField::Dmarc, "dmarc"),
        };
        let lower = || c.value.to_ascii_lowercase();
        let equals = || {
            // `@domain` on an address field compares the domain.
            let domain = matches!(field, TextField::From | TextField::To)
                .then(|| c.value.strip_prefix('@'))
                .flatten()
                .and_then(|d| DomainName::parse(d).ok());
            match domain {
                Some(d) => TextTest::Domain(d.as_ascii().to_ascii_lowercase()),
                None => TextTest::Equals(lower()),
            }
        };
        let (test, negated) = match c.operator {
            Operator::Is => (equals(), false),
            Operator::IsNot => (equals(), true),
            Operator::Contains => (TextTest::Contains(lower()), false),
            Operator::NotContains => (TextTest::Contains(lower()), true),
            Operator::StartsWith => (TextTest::StartsWith(lower()), false),
            Operator::EndsWith => (TextTest::EndsWith(lower()), false),
            Operator::MatchesRegex => {
                if c.value.len() > crate::model::MAX_REGEX_LEN {
                    return Err(RuleError::Regex(format!(
                        "longer than {} bytes",
                        crate::model::MAX_REGEX_LEN
                    )));
                }
                (TextTest::Regex(build_regex(&c.value)?), false)
            }
            Operator::GreaterThan | Operator::LessThan => return Err(mismatch(name)),
        };
        Ok(CompiledCondition::Text {
            field,
            test,
            negated,
        })
    }

    /// The condition's value given the envelope and, at the end of DATA,
    /// the message. Without the message, only `To` and (through the envelope
    /// sender) `From` can be settled.
    pub(super) fn eval(&self, envelope: &EnvelopeView<'_>, data: Option<&DataView<'_>>) -> Tri {
        match self {
            CompiledCondition::Text {
                field,
                test,
                negated,
            } => {
                let negated = *negated;
                let settle = |hit: bool| Tri::from(hit != negated);
                match field {
                    TextField::To => settle(envelope.to.iter().any(|a| test.matches_addr(a))),
                    TextField::From => {
                        let envelope_hit = envelope.from.iter().any(|a| test.matches_addr(a));
                        match data {
                            Some(d) => settle(
                                envelope_hit
                                    || d.header_from.as_ref().is_some_and(|a| test.matches_addr(a)),
                            ),
                            // The header From may still match: only a hit is settled.
                            None if envelope_hit => settle(true),
                            None => Tri::Unknown,
                        }
                    }
                    TextField::Subject => data.map_or(Tri::Unknown, |d| {
                        settle(d.subject.as_ref().is_some_and(|s| test.matches(s, None)))
                    }),
                    TextField::Header(name) => data.map_or(Tri::Unknown, |d| {
                        settle(
                            d.headers
                                .iter()
                                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                                .any(|(_, v)| test.matches(v, None)),
                        )
                    }),
                    TextField::Spf | TextField::Dkim | TextField::Dmarc => {
                        data.map_or(Tri::Unknown, |d| {
                            let verdict = match field {
                                TextField::Spf => &d.spf,
                                TextField::Dkim => &d.dkim,
                                _ => &d.dmarc,
                            };
                            // An unknown verdict fails every operator.
                            verdict
                                .as_ref()
                                .map_or(Tri::No, |v| settle(test.matches(v, None)))
                        })
                    }
                }
            }
            CompiledCondition::Size { cmp, value } => data.map_or(Tri::Unknown, |d| {
                Tri::from(match cmp {
                    Cmp::Eq => d.size == *value,
                    Cmp::Ne => d.size != *value,
                    Cmp::Gt => d.size > *value,
                    Cmp::Lt => d.size < *value,
                })
            }),
            CompiledCondition::Attachment { expected } => {
                data.map_or(Tri::Unknown, |d| Tri::from(d.has_attachment == *expected))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_respects_char_boundaries() {
        assert_eq!(cap("héllo", 2), "h");
        assert_eq!(cap("héllo", 3), "hé");
        assert_eq!(cap("abc", 10), "abc");
        assert_eq!(cap("abc", 0), "");
    }

    #[test]
    fn domain_of_addresses() {
        assert_eq!(domain_of("a@example.com").as_deref(), Some("example.com"));
        assert_eq!(domain_of("a@example.com.").as_deref(), Some("example.com"));
        assert_eq!(
            domain_of("a@bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(domain_of("no-at-sign"), None);
        assert_eq!(domain_of("a@"), None);
    }

    #[test]
    fn header_budget_caps_values_and_fields() {
        let alias = EmailAddress::parse("a@alias.example").expect("address");
        let headers: Vec<(String, String)> = (0..MAX_HEADER_FIELDS + 10)
            .map(|i| (format!("X-{i}"), "v".repeat(MAX_VALUE_BYTES * 2)))
            .collect();
        let facts = MessageFacts {
            envelope: EnvelopeFacts {
                sender: None,
                alias: &alias,
            },
            header_from: None,
            subject: None,
            headers: &headers,
            size: 0,
            has_attachment: false,
            spf: None,
            dkim: None,
            dmarc: None,
        };
        let view = DataView::new(&facts);
        let total: usize = view.headers.iter().map(|(_, t)| t.raw.len()).sum();
        assert_eq!(total, MAX_HEADER_BYTES);
        assert!(view.headers.len() <= MAX_HEADER_FIELDS);
        assert!(
            view.headers
                .iter()
                .all(|(_, t)| t.raw.len() <= MAX_VALUE_BYTES)
        );
    }
}
