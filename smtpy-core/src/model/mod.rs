//! The domain model: what smtpy stores.
//!
//! Every type here is plain data with validated fields (addresses are
//! [`EmailAddress`](crate::address::EmailAddress), never strings). Types are
//! `serde`-serialisable for export/import and for backends that store
//! encoded rows; they use only serde features that non-self-describing
//! formats support (no `flatten`, no internally tagged enums, no skipped
//! fields), so a backend may encode them with a compact binary format.
//!
//! Mutable entities carry a `revision`: a store writes an update only when
//! the revision it is given equals the stored one, and bumps it, so two
//! concurrent editors cannot silently overwrite each other
//! ([`StoreError::Conflict`](crate::StoreError::Conflict)).

mod account;
mod alias;
mod audit;
mod domain;
mod event;
mod queue;
mod rule;

pub use account::{
    ApiKey, ApiScope, DmarcQuarantineAction, DmarcRejectAction, Invitation, Role, SecretHash,
    Session, User, UserSettings, UserStatus,
};
pub use alias::{
    Alias, AliasCounters, AliasLimits, AliasMode, Contact, CounterDelta, DisabledReply, Mailbox,
};
pub use audit::{Actor, AuditEvent, DailyUsage, UsageRecord, UsageSubject};
pub use domain::{
    CatchAll, CheckStatus, DkimAlgorithm, DkimKey, DkimKeyState, DnsCheck, DnsChecks, Domain,
};
pub use event::{DeliveryEvent, EventFilter, EventKind};
pub use queue::{
    LeaseToken, Leased, MessageKind, QueuedMessage, QueuedRecipient, RecipientState, RemoteReply,
};
pub use rule::{
    BlockReply, Condition, ConditionField, ForwardingRule, MAX_REGEX_LEN, MatchMode, Operator,
    RuleAction, RuleError, RuleScope,
};
