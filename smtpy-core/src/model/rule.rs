//! Forwarding rules: conditions over a message, actions to take.
//!
//! This module holds the model and its validation; evaluation lives with the
//! mail pipeline.

use serde::{Deserialize, Serialize};

use crate::ids::{AliasId, DomainId, MailboxId, RuleId, UserId};
use crate::time::Timestamp;

/// Longest regular expression a rule may carry, in bytes (bounds compile
/// time and memory; matching is linear-time with the `regex` crate).
pub const MAX_REGEX_LEN: usize = 512;
/// Most conditions in one rule.
pub const MAX_CONDITIONS: usize = 32;
/// Most actions in one rule.
pub const MAX_ACTIONS: usize = 16;
/// Longest condition value or action argument, in bytes.
pub const MAX_VALUE_LEN: usize = 998;

/// Which mail a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleScope {
    /// Every alias of the owner.
    User,
    /// Every alias of the owner on one domain.
    Domain(DomainId),
    /// One alias.
    Alias(AliasId),
}

/// Whether all or any condition must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Every condition holds (an empty list always holds).
    #[default]
    All,
    /// At least one condition holds.
    Any,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConditionField {
    /// The sender (envelope MAIL FROM and header From).
    From,
    /// The recipient alias.
    To,
    /// The Subject header.
    Subject,
    /// A named header.
    Header(String),
    /// Message size in bytes (with `greater_than` / `less_than` / `is`).
    Size,
    /// Whether the message has an attachment (`is` `true` / `false`).
    HasAttachment,
    /// SPF verdict (`pass`, `fail`, `softfail`, `neutral`, `none`, …).
    Spf,
    /// DKIM verdict.
    Dkim,
    /// DMARC verdict.
    Dmarc,
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operator {
    /// Equal (case-insensitive for text).
    Is,
    /// Not equal.
    IsNot,
    /// Contains (case-insensitive).
    Contains,
    /// Does not contain.
    NotContains,
    /// Starts with (case-insensitive).
    StartsWith,
    /// Ends with (case-insensitive).
    EndsWith,
    /// Matches a regular expression (unanchored, at most [`MAX_REGEX_LEN`] bytes).
    MatchesRegex,
    /// Numeric greater-than (size only).
    GreaterThan,
    /// Numeric less-than (size only).
    LessThan,
}

/// One test over a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Condition {
    /// What to look at.
    pub field: ConditionField,
    /// How to compare.
    pub operator: Operator,
    /// What to compare with.
    pub value: String,
}

/// What a block answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReply {
    /// `250` and discard.
    Silent,
    /// `550 5.7.1`.
    Reject,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleAction {
    /// Forward to these mailboxes instead of the alias's.
    ForwardTo(Vec<MailboxId>),
    /// Do not forward.
    Block(BlockReply),
    /// Hold for the owner to review.
    Quarantine,
    /// Prefix the Subject.
    PrefixSubject(String),
    /// Add a header.
    AddHeader {
        /// Header name.
        name: String,
        /// Header value.
        value: String,
    },
    /// Evaluate no further rules.
    Stop,
}

/// A filter an owner sets on their mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingRule {
    /// Identifier.
    pub id: RuleId,
    /// Owner.
    pub owner: UserId,
    /// Which mail it applies to.
    pub scope: RuleScope,
    /// Label.
    pub name: String,
    /// Lower runs first; ties run in creation order.
    pub priority: i32,
    /// Disabled rules are kept but not evaluated.
    pub enabled: bool,
    /// All or any condition.
    pub match_mode: MatchMode,
    /// Tests.
    pub conditions: Vec<Condition>,
    /// Actions, in order.
    pub actions: Vec<RuleAction>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Optimistic-concurrency revision.
    pub revision: u64,
}

/// Why a rule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// No action.
    #[error("a rule needs at least one action")]
    NoAction,
    /// Too many conditions or actions.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// `conditions` or `actions`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A value is too long.
    #[error("value too long (at most {max} bytes)")]
    ValueTooLong {
        /// The limit.
        max: usize,
    },
    /// A regular expression does not compile or is too long.
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// The operator does not apply to the field.
    #[error("operator {operator:?} does not apply to {field}")]
    OperatorMismatch {
        /// The field.
        field: &'static str,
        /// The operator.
        operator: Operator,
    },
    /// A value that must be a number, boolean or header name is not.
    #[error("invalid value for {field}: {reason}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A header name or value cannot be used.
    #[error("invalid header: {0}")]
    BadHeader(&'static str),
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 76 && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

impl Condition {
    /// Checks that the operator fits the field and the value parses.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.value.len() > MAX_VALUE_LEN {
            return Err(RuleError::ValueTooLong { max: MAX_VALUE_LEN });
        }
        let numeric = matches!(self.operator, Operator::GreaterThan | Operator::LessThan);
        let field = match &self.field {
            ConditionField::Size => {
                if !matches!(self.operator, Operator::Is | Operator::IsNot) && !numeric {
                    return Err(RuleError::OperatorMismatch {
                        field: "size",
                        operator: self.operator,
                    });
                }
                if self.value.trim().parse::<u64>().is_err() {
                    return Err(RuleError::BadValue {
                        field: "size",
                        reason: "not a whole number of bytes",
                    });
                }
                return Ok(());
            }
            ConditionField::HasAttachment => {
                if !matches!(self.operator, Operator::Is | Operator::IsNot) {
                    return Err(RuleError::OperatorMismatch {
                        field: "has_attachment",
                        operator: self.operator,
                    });
                }
                if !matches!(self.value.as_str(), "true" | "false") {
                    return Err(RuleError::BadValue {
                        field: "has_attachment",
                        reason: "must be true or false",
                    });
                }
                return Ok(());
            }
            ConditionField::Header(name) => {
                if !is_header_name(name) {
                    return Err(RuleError::BadHeader(
                        "header name must be 1-76 printable characters without ':'",
                    ));
                }
                "header"
            }
            ConditionField::From => "from",
            ConditionField::To => "to",
            ConditionField::Subject => "subject",
            ConditionField::Spf => "spf",
            ConditionField::Dkim => "dkim",
            ConditionField::Dmarc => "dmarc",
        };
        if numeric {
            return Err(RuleError::OperatorMismatch {
                field,
                operator: self.operator,
            });
        }
        if self.operator == Operator::MatchesRegex {
            if self.value.len() > MAX_REGEX_LEN {
                return Err(RuleError::Regex(format!(
                    "longer than {MAX_REGEX_LEN} bytes"
                )));
            }
            regex::RegexBuilder::new(&self.value)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .build()
                .map_err(|e| RuleError::Regex(e.to_string()))?;
        }
        Ok(())
    }
}

impl RuleAction {
    /// Checks arguments: header names and values without line breaks, bounded lengths.
    pub fn validate(&self) -> Result<(), RuleError> {
        match self {
            RuleAction::ForwardTo(m) if m.is_empty() => Err(RuleError::BadValue {
                field: "forward_to",
                reason: "needs at least one mailbox",
            }),
            RuleAction::PrefixSubject(p) => {
                if p.len() > MAX_VALUE_LEN {
                    Err(RuleError::ValueTooLong { max: MAX_VALUE_LEN })
                } else if has_line_break(p) {
                    Err(RuleError::BadHeader("subject prefix contains a line break"))
                } else {
                    Ok(())
                }
            }
            RuleAction::AddHeader { name, value } => {
                if !is_header_name(name) {
                    Err(RuleError::BadHeader(
                        "header name must be 1-76 printable characters without ':'",
                    ))
                } else if value.len() > MAX_VALUE_LEN {
                    Err(RuleError::ValueTooLong { max: MAX_VALUE_LEN })
                } else if has_line_break(value) {
                    Err(RuleError::BadHeader("header value contains a line break"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

impl ForwardingRule {
    /// A new enabled rule with no conditions (matches everything) and the given actions.
    #[must_use]
    pub fn new(
        owner: UserId,
        scope: RuleScope,
        name: String,
        priority: i32,
        actions: Vec<RuleAction>,
        now: Timestamp,
    ) -> Self {
        Self {
            id: RuleId::new(),
            owner,
            scope,
            name,
            priority,
            enabled: true,
            match_mode: MatchMode::All,
            conditions: Vec::new(),
            actions,
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }

    /// Checks every condition and action and the list limits.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.actions.is_empty() {
            return Err(RuleError::NoAction);
        }
        if self.conditions.len() > MAX_CONDITIONS {
            return Err(RuleError::TooMany {
                what: "conditions",
                max: MAX_CONDITIONS,
            });
        }
        if self.actions.len() > MAX_ACTIONS {
            return Err(RuleError::TooMany {
                what: "actions",
                max: MAX_ACTIONS,
            });
        }
        if self.name.len() > 200 {
            return Err(RuleError::ValueTooLong { max: 200 });
        }
        self.conditions.iter().try_for_each(Condition::validate)?;
        self.actions.iter().try_for_each(RuleAction::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: ConditionField, operator: Operator, value: &str) -> Condition {
        Condition {
            field,
            operator,
            value: value.into(),
        }
    }

    #[test]
    fn condition_validation_table() {
        use ConditionField as F;
        use Operator as O;
        let ok = [
            cond(F::From, O::EndsWith, "@shop.example"),
            cond(F::Subject, O::MatchesRegex, "^(sale|offer)"),
            cond(F::Size, O::GreaterThan, "1000000"),
            cond(F::HasAttachment, O::Is, "true"),
            cond(F::Header("List-Id".into()), O::Contains, "news"),
            cond(F::Dmarc, O::Is, "fail"),
        ];
        for c in ok {
            assert_eq!(c.validate(), Ok(()), "{c:?}");
        }
        let bad = [
            cond(F::Size, O::Contains, "1"),
            cond(F::Size, O::GreaterThan, "big"),
            cond(F::HasAttachment, O::Is, "yes"),
            cond(F::Subject, O::GreaterThan, "1"),
            cond(F::Subject, O::MatchesRegex, "(unclosed"),
            cond(F::Subject, O::MatchesRegex, &"a".repeat(MAX_REGEX_LEN + 1)),
            cond(F::Header("Bad:Name".into()), O::Is, "x"),
            cond(F::Header(String::new()), O::Is, "x"),
            cond(F::From, O::Is, &"x".repeat(MAX_VALUE_LEN + 1)),
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be refused");
        }
    }

    #[test]
    fn action_validation_refuses_header_injection() {
        let inject = RuleAction::AddHeader {
            name: "X-Tag".into(),
            value: "a\r\nBcc: evil@example.com".into(),
        };
        assert_eq!(
            inject.validate(),
            Err(RuleError::BadHeader("header value contains a line break"))
        );
        assert!(
            RuleAction::PrefixSubject("[x]\n".into())
                .validate()
                .is_err()
        );
        assert!(RuleAction::ForwardTo(vec![]).validate().is_err());
        assert_eq!(
            RuleAction::AddHeader {
                name: "X-Tag".into(),
                value: "ok".into()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn rule_needs_an_action_and_bounded_lists() {
        let now = Timestamp::from_unix_secs(0);
        let mut r = ForwardingRule::new(UserId::new(), RuleScope::User, "r".into(), 0, vec![], now);
        assert_eq!(r.validate(), Err(RuleError::NoAction));
        r.actions.push(RuleAction::Stop);
        assert_eq!(r.validate(), Ok(()));
        r.conditions = vec![cond(ConditionField::Subject, Operator::Is, "x"); MAX_CONDITIONS + 1];
        assert!(matches!(r.validate(), Err(RuleError::TooMany { .. })));
    }
}
