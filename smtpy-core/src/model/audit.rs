//! The audit log and usage counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{AliasId, ApiKeyId, AuditEventId, UserId};
use crate::time::{Day, Timestamp};

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Actor {
    /// A signed-in user.
    User(UserId),
    /// A program with an API key (of its owner).
    ApiKey(ApiKeyId),
    /// smtpy itself (jobs, the mail path).
    System,
}

/// One security- or administration-relevant action. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Identifier (time-ordered).
    pub id: AuditEventId,
    /// Who acted.
    pub actor: Actor,
    /// Whose data it concerns: the owner sees the event in their own log.
    pub owner: Option<UserId>,
    /// What happened, dotted: `alias.create`, `user.login_failed`, …
    pub action: String,
    /// What it happened to (an id or an address).
    pub target: Option<String>,
    /// Client address, when there was one.
    pub ip: Option<String>,
    /// When.
    pub at: Timestamp,
    /// Extra facts (never secrets).
    pub details: BTreeMap<String, String>,
}

/// What a usage counter counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSubject {
    /// One alias.
    Alias(AliasId),
    /// All of a user's aliases.
    User(UserId),
}

/// Messages and bytes counted on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    /// The day (UTC).
    pub day: Day,
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One increment of usage, applied to the user's and (if any) the alias's
/// counter of the same day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRecord {
    /// Whose usage.
    pub user: UserId,
    /// Which alias, if the traffic is an alias's.
    pub alias: Option<AliasId>,
    /// When (its UTC day is the bucket).
    pub at: Timestamp,
    /// Messages to add.
    pub messages: u64,
    /// Bytes to add.
    pub bytes: u64,
}
