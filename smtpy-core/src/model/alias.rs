//! Aliases, the mailboxes they forward to, and the contacts that write to them.

use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::ids::{AliasId, ContactId, DomainId, MailboxId, UserId};
use crate::model::SecretHash;
use crate::time::Timestamp;

/// A real destination address owned by a user, where aliases deliver.
///
/// Unique per owner (case-insensitive). Mail is forwarded only to verified,
/// enabled mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// Identifier.
    pub id: MailboxId,
    /// Owner.
    pub owner: UserId,
    /// The real address. Never shown to anyone but its owner.
    pub address: EmailAddress,
    /// When the owner proved they receive mail there.
    pub verified_at: Option<Timestamp>,
    /// Hash of the pending verification token; unique while set.
    pub verification_token: Option<SecretHash>,
    /// A disabled mailbox receives nothing (e.g. after hard bounces).
    pub disabled: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Optimistic-concurrency revision.
    pub revision: u64,
}

impl Mailbox {
    /// A new, unverified mailbox.
    #[must_use]
    pub fn new(owner: UserId, address: EmailAddress, now: Timestamp) -> Self {
        Self {
            id: MailboxId::new(),
            owner,
            address,
            verified_at: None,
            verification_token: None,
            disabled: false,
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }
    /// Verified and not disabled.
    #[must_use]
    pub fn can_receive(&self) -> bool {
        self.verified_at.is_some() && !self.disabled
    }
}

/// How an alias forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AliasMode {
    /// From is rewritten to a reverse alias and the message is signed by us:
    /// DMARC passes and replies go back through the alias (the default).
    #[default]
    Alias,
    /// From is kept; the envelope sender is SRS-rewritten and the message ARC-sealed.
    Forward,
}

/// What a disabled alias answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DisabledReply {
    /// `550 5.1.1` — the sender learns the address does not take mail (default).
    #[default]
    Reject,
    /// `250` and discard — the sender learns nothing.
    Discard,
}

/// Per-alias limits; `None` means the account's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AliasLimits {
    /// Messages accepted per hour.
    pub messages_per_hour: Option<u32>,
    /// Largest message accepted, in bytes.
    pub max_message_size: Option<u64>,
}

/// Activity counters, maintained by the mail path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AliasCounters {
    /// Messages forwarded.
    pub forwarded: u64,
    /// Messages blocked (disabled, rule, contact blocked).
    pub blocked: u64,
    /// Replies sent through the alias.
    pub replied: u64,
    /// Forwards that bounced.
    pub bounced: u64,
    /// Last time mail went through the alias.
    pub last_used_at: Option<Timestamp>,
}

/// Increments applied atomically to [`AliasCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterDelta {
    /// Add to `forwarded`.
    pub forwarded: u64,
    /// Add to `blocked`.
    pub blocked: u64,
    /// Add to `replied`.
    pub replied: u64,
    /// Add to `bounced`.
    pub bounced: u64,
}

/// An address handed out instead of a real one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// Identifier.
    pub id: AliasId,
    /// The alias address; unique across the service, for ever (a purged
    /// alias leaves a tombstone). Matched case-insensitively.
    pub address: EmailAddress,
    /// Owner.
    pub owner: UserId,
    /// The hosted domain of `address`.
    pub domain: DomainId,
    /// Where mail goes: one or more of the owner's mailboxes.
    pub mailboxes: Vec<MailboxId>,
    /// A disabled alias does not forward (see `disabled_reply`).
    pub enabled: bool,
    /// How it forwards.
    pub mode: AliasMode,
    /// What a disabled alias answers.
    pub disabled_reply: DisabledReply,
    /// Free text of the owner ("used for the shoe shop").
    pub note: Option<String>,
    /// One category, for filtering.
    pub category: Option<String>,
    /// Free labels.
    pub labels: Vec<String>,
    /// After this instant the alias behaves as disabled.
    pub expires_at: Option<Timestamp>,
    /// Limits.
    pub limits: AliasLimits,
    /// Activity counters (maintained by the store; ignored by updates).
    pub counters: AliasCounters,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change by its owner.
    pub updated_at: Timestamp,
    /// Set when soft-deleted; such an alias rejects mail and can be restored
    /// until it is purged.
    pub deleted_at: Option<Timestamp>,
    /// Optimistic-concurrency revision.
    pub revision: u64,
}

impl Alias {
    /// A new, enabled alias in alias mode.
    #[must_use]
    pub fn new(
        address: EmailAddress,
        owner: UserId,
        domain: DomainId,
        mailboxes: Vec<MailboxId>,
        now: Timestamp,
    ) -> Self {
        Self {
            id: AliasId::new(),
            address,
            owner,
            domain,
            mailboxes,
            enabled: true,
            mode: AliasMode::default(),
            disabled_reply: DisabledReply::default(),
            note: None,
            category: None,
            labels: Vec::new(),
            expires_at: None,
            limits: AliasLimits::default(),
            counters: AliasCounters::default(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            revision: 0,
        }
    }

    /// Forwards at `now`: enabled, not expired, not deleted.
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.enabled && self.deleted_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// An outside address that wrote to (or is written to from) an alias.
///
/// Each contact has a reverse alias: mail the owner sends to it goes out
/// from the alias to the contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Identifier.
    pub id: ContactId,
    /// The alias it belongs to.
    pub alias: AliasId,
    /// The alias's owner (denormalised for owner-scoped queries).
    pub owner: UserId,
    /// The outside address; unique per alias (case-insensitive).
    pub address: EmailAddress,
    /// Display name seen in its mail.
    pub display_name: Option<String>,
    /// Mail from a blocked contact is not forwarded.
    pub blocked: bool,
    /// Key of its reverse alias (the signed local-part token); unique.
    pub reverse_key: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Last mail from or to it.
    pub last_seen_at: Option<Timestamp>,
    /// Optimistic-concurrency revision.
    pub revision: u64,
}

impl Contact {
    /// A new, unblocked contact of `alias` with reverse-alias token `reverse_key`.
    #[must_use]
    pub fn new(
        alias: &Alias,
        address: EmailAddress,
        display_name: Option<String>,
        reverse_key: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id: ContactId::new(),
            alias: alias.id,
            owner: alias.owner,
            address,
            display_name,
            blocked: false,
            reverse_key,
            created_at: now,
            updated_at: now,
            last_seen_at: Some(now),
            revision: 0,
        }
    }
}
