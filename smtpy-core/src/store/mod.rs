//! Storage traits, split by concern, and the types they share.
//!
//! A backend implements every trait here and [`Store`] ties them together,
//! so `Arc<dyn Store>` is what the rest of smtpy holds. The in-memory
//! [`MemoryStore`](crate::memory::MemoryStore) is the reference semantics;
//! the conformance suite (`smtpy_core::testing`, feature `testing`) checks a
//! backend against it.
//!
//! # Contracts common to every method
//!
//! * **Atomic.** Each method either applies completely or not at all; bulk
//!   methods included.
//! * **Durable when it returns `Ok`.** A committed write survives a crash of
//!   the process (backends commit with fsync or equivalent).
//! * **Owner scoping.** Methods taking an [`Access`] only see rows of that
//!   owner when given [`Access::Owner`]; rows of other owners behave exactly
//!   like missing rows ([`StoreError::NotFound`](crate::StoreError::NotFound)), so ids leak nothing.
//!   [`Access::System`] sees everything and is for the mail path, jobs and
//!   administrators.
//! * **Addresses** are compared by [`EmailAddress::canonical`]: case-insensitive
//!   local part, IDNA A-label domain. A store returns addresses as they were
//!   written.
//! * **Revisions.** `update_*` methods write only when the given row's
//!   `revision` equals the stored one, and return the stored row with the
//!   revision incremented; a stale revision is [`StoreError::Conflict`](crate::StoreError::Conflict).
//! * **Errors.** Duplicates are [`StoreError::AlreadyExists`](crate::StoreError::AlreadyExists); an unreachable
//!   backend is [`StoreError::Unavailable`](crate::StoreError::Unavailable).
//!
//! # Pagination
//!
//! Lists return a [`Page`] and continue from its [`Cursor`]: the id of the
//! last row returned. Most lists run oldest first (ascending id), so the next
//! page holds the rows whose id is greater than the cursor's. The delivery
//! event log ([`EventStore::list_events`]) runs **newest first** (descending
//! id), so its next page holds the rows whose id is smaller. Either way the
//! cursor is just the last id, and paging is stable under inserts: ids are
//! UUIDv7 and time-ordered, so a row appended while a client pages through a
//! newest-first list has a larger id than every row already shown and never
//! appears on a later page, and no row that existed when paging started is
//! skipped or returned twice.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::address::{DomainName, EmailAddress};
use crate::error::StoreResult;
use crate::gcra::{Decision, Quota};
use crate::ids::{AliasId, ApiKeyId, ContactId, DomainId, InvitationId, MailboxId, RuleId, UserId};
use crate::model::{
    Alias, ApiKey, AuditEvent, Contact, CounterDelta, DailyUsage, DeliveryEvent, Domain,
    EventFilter, ForwardingRule, Invitation, Mailbox, SecretHash, Session, UsageRecord,
    UsageSubject, User,
};
use crate::time::{Day, Timestamp};

mod control;
mod queue;
pub use control::{
    ControlStore, JobRun, JobState, MAX_CONTROL_KEY_LEN, Setting, UsageRollupPlan,
    check_control_key, month_start, plan_usage_rollup,
};
pub use queue::{Completion, QueueStats, QueueStore};

/// Whose rows a call may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only this user's rows (and shared domains, read-only).
    Owner(UserId),
    /// Every row: the mail path, background jobs, administrators.
    System,
}

impl Access {
    /// True if a row owned by `owner` is visible.
    #[must_use]
    pub fn permits(&self, owner: UserId) -> bool {
        match self {
            Access::Owner(me) => *me == owner,
            Access::System => true,
        }
    }

    /// True if a row whose owner may be unknown (`None`, as in logs) is
    /// visible: an owner sees only rows that name them as owner, `System`
    /// sees every row.
    ///
    /// ```
    /// use smtpy_core::ids::UserId;
    /// use smtpy_core::store::Access;
    ///
    /// let me = UserId::new();
    /// assert!(Access::Owner(me).permits_optional(Some(me)));
    /// assert!(!Access::Owner(me).permits_optional(None));
    /// assert!(Access::System.permits_optional(None));
    /// ```
    #[must_use]
    pub fn permits_optional(&self, owner: Option<UserId>) -> bool {
        match self {
            Access::Owner(me) => owner == Some(*me),
            Access::System => true,
        }
    }
}

/// Largest page a list method returns.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Opaque position in a list: pass the `next` cursor of one page to get the next.
///
/// Lists are ordered by id (ids are time-ordered), and a cursor is the last
/// id returned, so paging is stable under inserts: no row that existed when
/// paging started is skipped or returned twice; rows inserted meanwhile
/// appear on a later page or not at all.
///
/// The cursor does not carry a direction: an ascending (oldest first) list
/// continues with ids greater than [`last_id`](Self::last_id), a newest-first
/// list ([`EventStore::list_events`]) with ids smaller than it (see
/// [`SortOrder::continues_after`]). A cursor is only meaningful for the list
/// that returned it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor(Uuid);

impl Cursor {
    /// The cursor after the row with this id.
    #[must_use]
    pub const fn after(id: Uuid) -> Self {
        Self(id)
    }
    /// The id of the last row of the previous page.
    #[must_use]
    pub const fn last_id(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({})", self.0.simple())
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl FromStr for Cursor {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The direction of a list: which rows come after a [`Cursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortOrder {
    /// Ascending id: oldest first. Every list but the event log.
    #[default]
    OldestFirst,
    /// Descending id: newest first ([`EventStore::list_events`]).
    NewestFirst,
}

impl SortOrder {
    /// True if the row with `id` belongs after `cursor` in a list in this
    /// order (always true without a cursor): the reference of what a backend's
    /// `id > $cursor` or `id < $cursor` condition selects.
    ///
    /// ```
    /// use smtpy_core::store::{Cursor, SortOrder};
    /// use uuid::Uuid;
    ///
    /// let (older, newer) = (Uuid::now_v7(), Uuid::now_v7());
    /// let cursor = Some(Cursor::after(older));
    /// assert!(SortOrder::OldestFirst.continues_after(newer, cursor));
    /// assert!(!SortOrder::NewestFirst.continues_after(newer, cursor));
    /// assert!(SortOrder::NewestFirst.continues_after(older, Some(Cursor::after(newer))));
    /// assert!(SortOrder::NewestFirst.continues_after(newer, None));
    /// ```
    #[must_use]
    pub fn continues_after(self, id: Uuid, cursor: Option<Cursor>) -> bool {
        match (self, cursor) {
            (_, None) => true,
            (SortOrder::OldestFirst, Some(c)) => id > c.0,
            (SortOrder::NewestFirst, Some(c)) => id < c.0,
        }
    }
}

/// Which page of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Start after this cursor; `None` for the first page.
    pub after: Option<Cursor>,
    /// Rows per page, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            after: None,
            limit: DEFAULT_PAGE_SIZE,
        }
    }
}

impl PageRequest {
    /// The first page of `limit` rows.
    #[must_use]
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
    /// The page after `cursor`.
    #[must_use]
    pub fn after(cursor: Cursor, limit: u32) -> Self {
        Self {
            after: Some(cursor),
            limit,
        }
    }
    /// `limit` clamped to `1..=MAX_PAGE_SIZE`.
    #[must_use]
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_SIZE) as usize
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Rows, in the list's order (ascending id, or descending for a
    /// newest-first list).
    pub items: Vec<T>,
    /// Cursor for the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in the list's order
    /// (either [`SortOrder`]): if there is an extra row, it is dropped and
    /// `next` points after the last kept one.
    pub fn from_overfetch(mut rows: Vec<T>, limit: usize, id_of: impl Fn(&T) -> Uuid) -> Self {
        if rows.len() > limit {
            rows.truncate(limit);
            let next = rows.last().map(|r| Cursor::after(id_of(r)));
            Self { items: rows, next }
        } else {
            Self {
                items: rows,
                next: None,
            }
        }
    }
}

/// Which soft-deleted aliases a list includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedFilter {
    /// Only aliases not deleted (default).
    #[default]
    Live,
    /// Only soft-deleted aliases (the trash).
    Deleted,
    /// Both.
    Any,
}

/// Narrows [`AliasStore::list_aliases`]. Every set field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AliasFilter {
    /// On this domain.
    pub domain: Option<DomainId>,
    /// Enabled or disabled.
    pub enabled: Option<bool>,
    /// With exactly this category.
    pub category: Option<String>,
    /// Case-insensitive substring of the address or the note.
    pub text: Option<String>,
    /// Deleted or not.
    pub deleted: DeletedFilter,
}

impl AliasFilter {
    /// True if `alias` passes this filter (the reference semantics backends must match).
    #[must_use]
    pub fn matches(&self, alias: &Alias) -> bool {
        let deleted_ok = match self.deleted {
            DeletedFilter::Live => alias.deleted_at.is_none(),
            DeletedFilter::Deleted => alias.deleted_at.is_some(),
            DeletedFilter::Any => true,
        };
        deleted_ok
            && self.domain.is_none_or(|d| d == alias.domain)
            && self.enabled.is_none_or(|e| e == alias.enabled)
            && self
                .category
                .as_ref()
                .is_none_or(|c| alias.category.as_ref() == Some(c))
            && self.text.as_ref().is_none_or(|t| {
                let needle = t.to_lowercase();
                alias.address.canonical().contains(&needle)
                    || alias.address.to_string().to_lowercase().contains(&needle)
                    || alias
                        .note
                        .as_ref()
                        .is_some_and(|n| n.to_lowercase().contains(&needle))
            })
    }
}

/// One change applied to many aliases at once by [`AliasStore::bulk_update_aliases`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkAliasAction {
    /// Set `enabled = true`.
    Enable,
    /// Set `enabled = false`.
    Disable,
    /// Soft-delete (already deleted ones stay as they are).
    Delete,
    /// Undo a soft delete (live ones stay as they are).
    Restore,
    /// Replace the mailboxes with these (all must be the owner's).
    MoveToMailboxes(Vec<MailboxId>),
}

/// Narrows [`AuditStore::list_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only this action (exact).
    pub action: Option<String>,
    /// Only events at or after this instant.
    pub since: Option<Timestamp>,
}

/// Users, for sign-in and administration.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user. `AlreadyExists` if the email is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// A user by id. `NotFound` if missing.
    async fn get_user(&self, id: UserId) -> StoreResult<User>;
    /// A user by sign-in address, case-insensitively.
    async fn find_user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>>;
    /// Replaces every field but `id` and `created_at` (revision-checked).
    /// `AlreadyExists` if the new email is taken.
    async fn update_user(&self, user: &User) -> StoreResult<User>;
    /// All users, by id.
    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>>;
    /// Number of users (to know whether the first admin exists).
    async fn count_users(&self) -> StoreResult<u64>;
    /// Deletes a user and everything they own: sessions, API keys,
    /// invitations they sent, domains, mailboxes, rules, contacts, usage,
    /// and the delivery events whose `owner` is them (the log of their mail).
    /// Their aliases are purged and leave tombstones, so nobody can take the
    /// addresses over. Audit events stay. `NotFound` if missing; `Conflict`
    /// (and nothing deleted) if a domain they own carries other users'
    /// aliases (a shared domain must be handed over first).
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;
}

/// API keys, sessions and invitations.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Inserts an API key. `AlreadyExists` if its hash is taken; `NotFound`
    /// if the owner does not exist.
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// The key whose secret hashes to `hash`, whatever its expiry (the
    /// caller checks `expires_at`).
    async fn find_api_key(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>>;
    /// The keys of `owner`, by id.
    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>>;
    /// Sets `last_used_at` (never moves it backwards). `NotFound` if missing.
    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()>;
    /// Revokes a key. `NotFound` if missing or not the owner's.
    async fn delete_api_key(&self, access: Access, id: ApiKeyId) -> StoreResult<()>;

    /// Inserts a session. `AlreadyExists` if its hash is taken.
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// The session with this id hash, expired or not.
    async fn find_session(&self, hash: &SecretHash) -> StoreResult<Option<Session>>;
    /// Sets `last_seen_at` (never backwards). `NotFound` if missing.
    async fn touch_session(&self, hash: &SecretHash, at: Timestamp) -> StoreResult<()>;
    /// Ends a session. Idempotent: ending a missing session is `Ok`.
    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()>;
    /// The sessions of a user, oldest first.
    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<Session>>;
    /// Ends every session of a user (password change); returns how many.
    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64>;
    /// Removes sessions whose `expires_at` is at or before `now`; returns how many.
    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    /// Inserts an invitation. `AlreadyExists` if its token hash is taken.
    async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()>;
    /// The invitation with this token hash, used or not.
    async fn find_invitation(&self, hash: &SecretHash) -> StoreResult<Option<Invitation>>;
    /// Marks the invitation used by `user` at `now`, exactly once.
    /// `NotFound` if missing; `Conflict` if already used; `Gone` if expired
    /// (`expires_at <= now`).
    async fn redeem_invitation(
        &self,
        hash: &SecretHash,
        user: UserId,
        now: Timestamp,
    ) -> StoreResult<Invitation>;
    /// All invitations, by id.
    async fn list_invitations(&self, page: PageRequest) -> StoreResult<Page<Invitation>>;
    /// Deletes an invitation. `NotFound` if missing.
    async fn delete_invitation(&self, id: InvitationId) -> StoreResult<()>;
}

/// Hosted domains.
#[async_trait]
pub trait DomainStore: Send + Sync {
    /// Inserts a domain. `AlreadyExists` if the name is hosted already;
    /// `NotFound` if the owner does not exist; `NotFound { entity: "mailbox" }`
    /// if a default mailbox is missing or not the owner's (catch-all mail
    /// must never reach someone else's mailbox).
    async fn create_domain(&self, domain: &Domain) -> StoreResult<()>;
    /// A domain by id: the owner's own, a shared one, or any with `System`.
    async fn get_domain(&self, access: Access, id: DomainId) -> StoreResult<Domain>;
    /// The hosted domain with this name (mail path; no owner check).
    async fn find_domain_by_name(&self, name: &DomainName) -> StoreResult<Option<Domain>>;
    /// Domains visible to `access` (own and shared for an owner), by id.
    async fn list_domains(&self, access: Access, page: PageRequest) -> StoreResult<Page<Domain>>;
    /// Replaces every field but `id`, `name`, `created_at` (revision-checked).
    /// Only the owner (or `System`) may update; shared domains are not
    /// writable by other users (`NotFound`). Default mailboxes as in
    /// `create_domain` (checked against the new owner).
    async fn update_domain(&self, access: Access, domain: &Domain) -> StoreResult<Domain>;
    /// Deletes a domain and the rules scoped to it. `Conflict` while aliases
    /// (live or soft-deleted) exist on it. `NotFound` if missing or not writable.
    async fn delete_domain(&self, access: Access, id: DomainId) -> StoreResult<()>;
}

/// Verified destination mailboxes.
#[async_trait]
pub trait MailboxStore: Send + Sync {
    /// Inserts a mailbox. `AlreadyExists` if the owner already has this
    /// address or the verification token hash is another mailbox's;
    /// `NotFound` if the owner does not exist.
    async fn create_mailbox(&self, mailbox: &Mailbox) -> StoreResult<()>;
    /// A mailbox by id.
    async fn get_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<Mailbox>;
    /// The mailboxes of `owner`, by id.
    async fn list_mailboxes(&self, owner: UserId) -> StoreResult<Vec<Mailbox>>;
    /// The mailbox whose pending verification token hashes to `hash`.
    async fn find_mailbox_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Mailbox>>;
    /// Replaces every field but `id`, `owner`, `created_at` (revision-checked).
    /// `AlreadyExists` if the new address is another mailbox's of the owner,
    /// or the verification token hash is another mailbox's.
    async fn update_mailbox(&self, access: Access, mailbox: &Mailbox) -> StoreResult<Mailbox>;
    /// Deletes a mailbox. `Conflict` while any alias (live or soft-deleted)
    /// or domain default still points at it.
    async fn delete_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<()>;
}

/// Aliases: the hot path of the mail flow.
#[async_trait]
pub trait AliasStore: Send + Sync {
    /// Inserts an alias.
    ///
    /// Checked in this order: `NotFound { entity: "user" }` if the owner is
    /// missing; `Gone` if the address was purged (tombstone);
    /// `AlreadyExists` if the address is live or soft-deleted;
    /// `NotFound { entity: "domain" }` if the domain is missing, or is
    /// neither the owner's nor shared; `Invalid` if the address's domain is
    /// not the alias's domain or there is no mailbox;
    /// `NotFound { entity: "mailbox" }` if a mailbox is missing or not the
    /// owner's.
    async fn create_alias(&self, alias: &Alias) -> StoreResult<()>;
    /// Inserts many aliases with the checks of [`create_alias`](Self::create_alias),
    /// all or nothing in one commit (imports and provisioning). Two aliases
    /// of the batch with the same address are `AlreadyExists`.
    async fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()>;
    /// An alias by id (soft-deleted ones included).
    async fn get_alias(&self, access: Access, id: AliasId) -> StoreResult<Alias>;
    /// The live (not soft-deleted) alias with this address, case-insensitively.
    /// The mail path calls this for every recipient: it must be fast.
    async fn find_alias_by_address(&self, address: &EmailAddress) -> StoreResult<Option<Alias>>;
    /// Aliases visible to `access` passing `filter` (see
    /// [`AliasFilter::matches`]), by id.
    async fn list_aliases(
        &self,
        access: Access,
        filter: &AliasFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Alias>>;
    /// Writes the owner-editable fields (`mailboxes`, `enabled`, `mode`,
    /// `disabled_reply`, `note`, `category`, `labels`, `expires_at`,
    /// `limits`, `updated_at`), revision-checked. Other fields are ignored.
    /// Mailbox rules as in `create_alias`.
    async fn update_alias(&self, access: Access, alias: &Alias) -> StoreResult<Alias>;
    /// Soft-deletes at `at`; idempotent (an already deleted alias keeps its
    /// first `deleted_at`). Bumps the revision when it changes something;
    /// `updated_at` is left as it was (it records the owner's last edit).
    /// The alias's delivery events stay (they are history).
    async fn delete_alias(&self, access: Access, id: AliasId, at: Timestamp) -> StoreResult<()>;
    /// Undoes a soft delete; idempotent on a live alias. `NotFound` once purged.
    async fn restore_alias(&self, access: Access, id: AliasId) -> StoreResult<()>;
    /// Applies one action to all `ids`, all or nothing: `NotFound` (and no
    /// change) if any id is missing or not visible. Each alias the action
    /// actually changes gets its revision bumped and `updated_at = at`;
    /// returns how many changed (duplicate ids count once).
    async fn bulk_update_aliases(
        &self,
        access: Access,
        ids: &[AliasId],
        action: &BulkAliasAction,
        at: Timestamp,
    ) -> StoreResult<u64>;
    /// Adds `delta` to the counters and sets `last_used_at = at` (never
    /// backwards); does not bump the revision. `NotFound` if missing. Like
    /// [`EventStore::append_events`], may reach the disk only with the next
    /// durable commit.
    async fn record_alias_activity(
        &self,
        id: AliasId,
        delta: CounterDelta,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Permanently removes aliases soft-deleted at or before `older_than`,
    /// with their contacts, alias-scoped rules and per-alias usage, leaving
    /// tombstones. Their delivery events stay: they are history, kept until
    /// [`EventStore::purge_events`] or the owner's deletion.
    /// Returns how many aliases were purged.
    async fn purge_deleted_aliases(&self, older_than: Timestamp) -> StoreResult<u64>;
    /// True if `address` was purged and can never be created again.
    async fn is_tombstoned(&self, address: &EmailAddress) -> StoreResult<bool>;
}

/// Contacts and their reverse aliases.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Inserts a contact. `AlreadyExists` if the alias already has this
    /// address or the reverse key is taken; `NotFound` if the alias is
    /// missing or not `contact.owner`'s.
    async fn create_contact(&self, contact: &Contact) -> StoreResult<()>;
    /// A contact by id.
    async fn get_contact(&self, access: Access, id: ContactId) -> StoreResult<Contact>;
    /// The contact of `alias` with this outside address, case-insensitively.
    async fn find_contact(
        &self,
        alias: AliasId,
        address: &EmailAddress,
    ) -> StoreResult<Option<Contact>>;
    /// The contact with this reverse key (reply path; must be fast).
    async fn find_contact_by_reverse_key(&self, key: &str) -> StoreResult<Option<Contact>>;
    /// Contacts visible to `access`, optionally of one alias, by id (an
    /// alias that is not visible simply yields no rows).
    async fn list_contacts(
        &self,
        access: Access,
        alias: Option<AliasId>,
        page: PageRequest,
    ) -> StoreResult<Page<Contact>>;
    /// Writes `display_name`, `blocked`, `updated_at`, `last_seen_at`
    /// (revision-checked). Other fields are ignored.
    async fn update_contact(&self, access: Access, contact: &Contact) -> StoreResult<Contact>;
    /// Deletes a contact (its reverse alias stops working).
    async fn delete_contact(&self, access: Access, id: ContactId) -> StoreResult<()>;
}

/// Forwarding rules.
#[async_trait]
pub trait RuleStore: Send + Sync {
    /// Inserts a rule. `NotFound` if its scope's domain or alias is missing
    /// or not visible to the owner.
    async fn create_rule(&self, rule: &ForwardingRule) -> StoreResult<()>;
    /// A rule by id.
    async fn get_rule(&self, access: Access, id: RuleId) -> StoreResult<ForwardingRule>;
    /// The rules of `owner`, by priority then id.
    async fn list_rules(&self, owner: UserId) -> StoreResult<Vec<ForwardingRule>>;
    /// The enabled rules that apply to `alias` (its owner's user-wide rules,
    /// rules on its domain and on the alias itself), by priority then id.
    async fn rules_for_alias(&self, alias: &Alias) -> StoreResult<Vec<ForwardingRule>>;
    /// Replaces every field but `id`, `owner`, `created_at` (revision-checked).
    async fn update_rule(
        &self,
        access: Access,
        rule: &ForwardingRule,
    ) -> StoreResult<ForwardingRule>;
    /// Deletes a rule.
    async fn delete_rule(&self, access: Access, id: RuleId) -> StoreResult<()>;
    /// Sets the priorities of `owner`'s rules to 0, 1, 2… in the order
    /// given, all or nothing. `Invalid` unless `ids` lists every rule of the
    /// owner exactly once. Bumps each changed rule's revision.
    async fn reorder_rules(&self, owner: UserId, ids: &[RuleId]) -> StoreResult<()>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event. `AlreadyExists` if its id is taken.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// Events visible to `access` (an owner sees those whose `owner` is
    /// them), passing `filter`, by id.
    async fn list_audit(
        &self,
        access: Access,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>>;
}

/// The per-message delivery event log.
///
/// Events are history: appending one does not check that the owner, alias,
/// mailbox or message it names exists (an event may outlive all of them),
/// and deleting or purging an alias keeps its events. They go with
/// [`purge_events`](Self::purge_events) (retention) or when their owner is
/// deleted ([`UserStore::delete_user`]).
///
/// Lists are **newest first**: by descending id (ids are UUIDv7, so this is
/// the order the events were created in), and the next page continues with
/// smaller ids (see [`Cursor`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use smtpy_core::ids::UserId;
/// use smtpy_core::memory::MemoryStore;
/// use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind};
/// use smtpy_core::store::{Access, EventStore, PageRequest};
/// use smtpy_core::time::Timestamp;
///
/// let store = MemoryStore::new();
/// let owner = UserId::new();
/// let at = Timestamp::from_unix_secs(1_700_000_000);
/// let mut accepted = DeliveryEvent::new(EventKind::Accepted, at).with("reply", "250 2.0.0 OK");
/// accepted.owner = Some(owner);
/// let mut delivered = DeliveryEvent::new(EventKind::Delivered, at);
/// delivered.owner = Some(owner);
/// store.append_events(&[accepted.clone(), delivered.clone()]).await?;
///
/// let page = store
///     .list_events(Access::Owner(owner), &EventFilter::default(), PageRequest::first(10))
///     .await?;
/// assert_eq!(page.items, vec![delivered, accepted], "newest first");
/// let delivered_only = EventFilter { kinds: vec![EventKind::Delivered], ..Default::default() };
/// assert_eq!(store.count_events(&delivered_only).await?, 1);
/// # Ok::<(), smtpy_core::StoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events atomically (all or none). Ids are unique
    /// (`AlreadyExists` on a duplicate id, whether it is already stored or
    /// twice in the batch; nothing of the batch is then stored). An empty
    /// batch is `Ok` and writes nothing. The append is visible at once but
    /// may reach the disk only with the backend's next durable commit
    /// (bookkeeping; a crash may lose the last few events, never mail).
    async fn append_events(&self, events: &[DeliveryEvent]) -> StoreResult<()>;
    /// Events matching `filter` (see [`EventFilter::matches`]), newest first
    /// (descending id), paginated by cursor (stable under concurrent
    /// appends). An owner sees only events whose `owner` is them;
    /// `Access::System` sees all. Another owner's events are simply absent
    /// (an empty page, never an error).
    async fn list_events(
        &self,
        access: Access,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliveryEvent>>;
    /// How many events match (for bounce thresholds: e.g. `Bounced` events
    /// of a mailbox since a time). System access.
    async fn count_events(&self, filter: &EventFilter) -> StoreResult<u64>;
    /// Deletes events at or before `older_than` (by `at`); returns how many
    /// (retention).
    async fn purge_events(&self, older_than: Timestamp) -> StoreResult<u64>;
}

/// Daily usage counters.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds the record to the user's counter and (if set) the alias's
    /// counter of the record's UTC day, atomically. May reach the disk only
    /// with the next durable commit (bookkeeping).
    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()>;
    /// Days with usage for `subject` in `from..=to`, ascending. Days without
    /// usage are absent. An owner only sees their own subjects (`NotFound` otherwise).
    async fn usage(
        &self,
        access: Access,
        subject: UsageSubject,
        from: Day,
        to: Day,
    ) -> StoreResult<Vec<DailyUsage>>;
}

/// GCRA rate-limit state shared by every instance using the store.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Atomically reads the state for `key`, applies
    /// [`gcra::decide`](crate::gcra::decide) and stores the new state when
    /// allowed. Concurrent calls on one key never both spend the same
    /// capacity.
    async fn check_rate(
        &self,
        key: &str,
        quota: &Quota,
        now: Timestamp,
        cost: u32,
    ) -> StoreResult<Decision>;
    /// Drops state whose theoretical arrival time is at or before
    /// `older_than` (such keys behave as fresh anyway). Returns how many.
    async fn purge_rate_limits(&self, older_than: Timestamp) -> StoreResult<u64>;
}

/// Everything persistent. `Arc<dyn Store>` is what smtpy components hold.
#[async_trait]
pub trait Store:
    UserStore
    + CredentialStore
    + DomainStore
    + MailboxStore
    + AliasStore
    + ContactStore
    + RuleStore
    + AuditStore
    + EventStore
    + UsageStore
    + RateLimitStore
    + ControlStore
    + fmt::Debug
{
    /// Short backend name for logs and errors (`"memory"`, `"redb"`, …).
    fn backend_name(&self) -> &'static str;
    /// Checks that the backend answers (for readiness probes).
    async fn ping(&self) -> StoreResult<()>;
}
