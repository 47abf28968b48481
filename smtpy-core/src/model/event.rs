//! The per-message delivery event log: the answer to "why didn't I get
//! this mail?".
//!
//! The mail path appends one event per decision (accepted, refused,
//! blocked, quarantined, rate-limited) and per delivery attempt outcome
//! (delivered, deferred, failed), plus bounces and replies. Owners query
//! their own events; the bounce handler finds a forward's alias and
//! mailboxes through the events of its message.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AliasId, EventId, MailboxId, MessageId, UserId};
use crate::time::Timestamp;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Accepted and queued for forwarding.
    Accepted,
    /// Refused with a permanent reply (unknown alias, DMARC reject, …).
    Refused,
    /// Blocked by a rule, a blocklist or a blocked contact.
    Blocked,
    /// Held for the owner's review.
    Quarantined,
    /// Deferred by a rate limit or quota (a temporary reply).
    RateLimited,
    /// The next hop accepted it for one recipient.
    Delivered,
    /// A delivery attempt failed temporarily; it will be retried.
    Deferred,
    /// Delivery failed permanently or expired for one recipient.
    Failed,
    /// A bounce (DSN) came back for a forward.
    Bounced,
    /// A reply or new message was sent from the alias.
    Replied,
    /// A notification was sent to the owner.
    Notified,
    /// An alias or mailbox was disabled automatically (bounce thresholds).
    AutoDisabled,
}

/// One entry of the event log.
///
/// `details` carries the facts of the decision as short key/value pairs:
/// `reply` (the SMTP reply given or received), `spf`, `dkim`, `dmarc`,
/// `arc` (verdicts), `rule` (rule id), `bounce_class`, `recipient`, …
/// It never carries a message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// Identifier (time-ordered).
    pub id: EventId,
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: EventKind,
    /// The owner the mail belongs to, when known.
    pub owner: Option<UserId>,
    /// The alias involved, when known.
    pub alias: Option<AliasId>,
    /// The mailbox involved, when known.
    pub mailbox: Option<MailboxId>,
    /// The queued message, when there is one.
    pub message: Option<MessageId>,
    /// The envelope sender as given (`None` for `<>` or unknown).
    pub sender: Option<String>,
    /// Facts of the decision.
    pub details: BTreeMap<String, String>,
}

impl DeliveryEvent {
    /// A new event of `kind` at `at`, with everything else empty.
    #[must_use]
    pub fn new(kind: EventKind, at: Timestamp) -> Self {
        Self {
            id: EventId::new(),
            at,
            kind,
            owner: None,
            alias: None,
            mailbox: None,
            message: None,
            sender: None,
            details: BTreeMap::new(),
        }
    }
    /// Adds a detail.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// Which events to list or count. Unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this alias's.
    pub alias: Option<AliasId>,
    /// Only this mailbox's.
    pub mailbox: Option<MailboxId>,
    /// Only this message's.
    pub message: Option<MessageId>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// Only at or after this instant.
    pub since: Option<Timestamp>,
}

impl EventFilter {
    /// True if `event` passes the filter.
    #[must_use]
    pub fn matches(&self, event: &DeliveryEvent) -> bool {
        self.alias.is_none_or(|a| event.alias == Some(a))
            && self.mailbox.is_none_or(|m| event.mailbox == Some(m))
            && self.message.is_none_or(|m| event.message == Some(m))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.since.is_none_or(|s| event.at >= s)
    }
}
