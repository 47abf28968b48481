//! The in-memory store: the reference semantics of every [`Store`] trait.
//!
//! Everything lives in one lock-protected state, so each method is trivially
//! atomic. Nothing survives the process: use it for tests, examples and
//! embedding where persistence lives elsewhere. Backends are checked against
//! the same contracts by the conformance suite.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use uuid::Uuid;

use crate::address::{DomainName, EmailAddress};
use crate::error::{StoreError, StoreResult};
use crate::gcra::{self, Decision, Quota};
use crate::ids::{
    AliasId, ApiKeyId, AuditEventId, ContactId, DomainId, EventId, InvitationId, MailboxId,
    MessageId, RuleId, UserId,
};
use crate::model::{
    Alias, ApiKey, AuditEvent, Contact, CounterDelta, DailyUsage, DeliveryEvent, Domain,
    EventFilter, ForwardingRule, Invitation, LeaseToken, Mailbox, QueuedMessage, RuleScope,
    SecretHash, Session, UsageRecord, UsageSubject, User,
};
use crate::store::{
    Access, AliasFilter, AliasStore, AuditFilter, AuditStore, BulkAliasAction, ContactStore,
    ControlStore, CredentialStore, DomainStore, EventStore, JobRun, JobState, MAX_PAGE_SIZE,
    MailboxStore, Page, PageRequest, RateLimitStore, RuleStore, Setting, SortOrder, Store,
    UsageStore, UserStore, check_control_key, plan_usage_rollup,
};
use crate::time::{Day, Timestamp};

mod queue;

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<UserId, User>,
    user_by_email: HashMap<String, UserId>,
    api_keys: BTreeMap<ApiKeyId, ApiKey>,
    api_key_by_hash: HashMap<SecretHash, ApiKeyId>,
    sessions: HashMap<SecretHash, Session>,
    invitations: BTreeMap<InvitationId, Invitation>,
    invitation_by_hash: HashMap<SecretHash, InvitationId>,
    domains: BTreeMap<DomainId, Domain>,
    domain_by_name: HashMap<String, DomainId>,
    mailboxes: BTreeMap<MailboxId, Mailbox>,
    aliases: BTreeMap<AliasId, Alias>,
    /// Canonical address → alias, live and soft-deleted.
    alias_by_address: HashMap<String, AliasId>,
    /// Canonical addresses of purged aliases.
    tombstones: HashMap<String, Timestamp>,
    contacts: BTreeMap<ContactId, Contact>,
    contact_by_key: HashMap<String, ContactId>,
    contact_by_address: HashMap<(AliasId, String), ContactId>,
    rules: BTreeMap<RuleId, ForwardingRule>,
    audit: BTreeMap<AuditEventId, AuditEvent>,
    events: BTreeMap<EventId, DeliveryEvent>,
    usage: BTreeMap<(UsageSubject, Day), (u64, u64)>,
    rate: HashMap<String, i64>,
    settings: BTreeMap<String, Setting>,
    jobs: BTreeMap<String, JobState>,
    queue: BTreeMap<MessageId, QueueEntry>,
}

/// A queued message and its lease (token, lapses at).
#[derive(Debug, Clone)]
struct QueueEntry {
    message: QueuedMessage,
    lease: Option<(LeaseToken, Timestamp)>,
}

/// In-memory [`Store`]; see the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> StoreResult<T>) -> StoreResult<T> {
        let guard = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> StoreResult<T>) -> StoreResult<T> {
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

const fn not_found(entity: &'static str) -> StoreError {
    StoreError::NotFound { entity }
}
const fn exists(entity: &'static str) -> StoreError {
    StoreError::AlreadyExists { entity }
}
const fn stale(entity: &'static str) -> StoreError {
    StoreError::Conflict {
        entity,
        reason: "the row was changed by someone else (stale revision)",
    }
}
fn invalid(entity: &'static str, reason: &str) -> StoreError {
    StoreError::Invalid {
        entity,
        reason: reason.to_owned(),
    }
}

/// One page of `map`, in key order, after the cursor.
fn page_of<K: Ord + Copy, T: Clone>(
    map: &BTreeMap<K, T>,
    page: PageRequest,
    key_of: impl Fn(Uuid) -> K,
    uuid_of: impl Fn(&T) -> Uuid,
    mut keep: impl FnMut(&T) -> bool,
) -> Page<T> {
    let limit = page.effective_limit();
    let start = page
        .after
        .map_or(Bound::Unbounded, |c| Bound::Excluded(key_of(*c.last_id())));
    let rows: Vec<T> = map
        .range((start, Bound::Unbounded))
        .map(|(_, v)| v)
        .filter(|v| keep(v))
        .take(limit + 1)
        .cloned()
        .collect();
    Page::from_overfetch(rows, limit, uuid_of)
}

/// One page of `map` newest first (descending key), before the cursor.
fn page_newest_first<K: Ord + Copy, T: Clone>(
    map: &BTreeMap<K, T>,
    page: PageRequest,
    key_of: impl Fn(Uuid) -> K,
    uuid_of: impl Fn(&T) -> Uuid,
    mut keep: impl FnMut(&T) -> bool,
) -> Page<T> {
    let limit = page.effective_limit();
    let end = page
        .after
        .map_or(Bound::Unbounded, |c| Bound::Excluded(key_of(*c.last_id())));
    let rows: Vec<T> = map
        .range((Bound::Unbounded, end))
        .rev()
        .map(|(_, v)| v)
        .filter(|v| keep(v))
        .take(limit + 1)
        .cloned()
        .collect();
    debug_assert!(
        rows.iter()
            .all(|r| SortOrder::NewestFirst.continues_after(uuid_of(r), page.after))
    );
    Page::from_overfetch(rows, limit, uuid_of)
}

impl State {
    fn user_exists(&self, id: UserId) -> StoreResult<()> {
        self.users.get(&id).map(|_| ()).ok_or(not_found("user"))
    }

    fn visible_domain(&self, access: Access, id: DomainId) -> StoreResult<&Domain> {
        self.domains
            .get(&id)
            .filter(|d| d.shared || access.permits(d.owner))
            .ok_or(not_found("domain"))
    }

    fn visible_alias(&self, access: Access, id: AliasId) -> StoreResult<&Alias> {
        self.aliases
            .get(&id)
            .filter(|a| access.permits(a.owner))
            .ok_or(not_found("alias"))
    }

    fn visible_alias_mut(&mut self, access: Access, id: AliasId) -> StoreResult<&mut Alias> {
        self.aliases
            .get_mut(&id)
            .filter(|a| access.permits(a.owner))
            .ok_or(not_found("alias"))
    }

    /// Mailbox list rules shared by create/update/bulk: non-empty, all the owner's.
    fn check_alias_mailboxes(&self, owner: UserId, mailboxes: &[MailboxId]) -> StoreResult<()> {
        if mailboxes.is_empty() {
            return Err(invalid("alias", "an alias needs at least one mailbox"));
        }
        self.check_owned_mailboxes(owner, mailboxes)
    }

    /// `NotFound { entity: "mailbox" }` unless every id is a mailbox of `owner`.
    fn check_owned_mailboxes(&self, owner: UserId, mailboxes: &[MailboxId]) -> StoreResult<()> {
        for id in mailboxes {
            match self.mailboxes.get(id) {
                Some(m) if m.owner == owner => {}
                _ => return Err(not_found("mailbox")),
            }
        }
        Ok(())
    }

    /// Every check `create_alias` makes, in its documented order.
    fn check_new_alias(&self, alias: &Alias) -> StoreResult<()> {
        self.user_exists(alias.owner)?;
        let key = alias.address.canonical();
        if self.tombstones.contains_key(&key) {
            return Err(StoreError::Gone { entity: "alias" });
        }
        if self.alias_by_address.contains_key(&key) || self.aliases.contains_key(&alias.id) {
            return Err(exists("alias"));
        }
        let domain = self
            .domains
            .get(&alias.domain)
            .filter(|d| d.shared || d.owner == alias.owner)
            .ok_or(not_found("domain"))?;
        if domain.name != *alias.address.domain() {
            return Err(invalid("alias", "the address is not on the alias's domain"));
        }
        self.check_alias_mailboxes(alias.owner, &alias.mailboxes)
    }

    fn check_rule_scope(&self, rule: &ForwardingRule) -> StoreResult<()> {
        self.user_exists(rule.owner)?;
        match rule.scope {
            RuleScope::User => Ok(()),
            RuleScope::Domain(d) => self
                .visible_domain(Access::Owner(rule.owner), d)
                .map(|_| ()),
            RuleScope::Alias(a) => self.visible_alias(Access::Owner(rule.owner), a).map(|_| ()),
        }
    }

    fn remove_contact(&mut self, id: ContactId) {
        if let Some(c) = self.contacts.remove(&id) {
            self.contact_by_key.remove(&c.reverse_key);
            self.contact_by_address
                .remove(&(c.alias, c.address.canonical()));
        }
    }

    /// Removes an alias for good, with its contacts, rules and usage, and
    /// leaves a tombstone dated when it was deleted (or last changed).
    fn purge_alias(&mut self, id: AliasId) {
        let Some(alias) = self.aliases.remove(&id) else {
            return;
        };
        let key = alias.address.canonical();
        self.alias_by_address.remove(&key);
        self.tombstones
            .insert(key, alias.deleted_at.unwrap_or(alias.updated_at));
        let contacts: Vec<ContactId> = self
            .contacts
            .values()
            .filter(|c| c.alias == id)
            .map(|c| c.id)
            .collect();
        for c in contacts {
            self.remove_contact(c);
        }
        self.rules.retain(|_, r| r.scope != RuleScope::Alias(id));
        self.usage.retain(|(s, _), _| *s != UsageSubject::Alias(id));
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.write(|s| {
            let key = user.email.canonical();
            if s.user_by_email.contains_key(&key) || s.users.contains_key(&user.id) {
                return Err(exists("user"));
            }
            s.user_by_email.insert(key, user.id);
            s.users.insert(user.id, user.clone());
            Ok(())
        })
    }

    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        self.read(|s| s.users.get(&id).cloned().ok_or(not_found("user")))
    }

    async fn find_user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        self.read(|s| {
            Ok(s.user_by_email
                .get(&email.canonical())
                .and_then(|id| s.users.get(id))
                .cloned())
        })
    }

    async fn update_user(&self, user: &User) -> StoreResult<User> {
        self.write(|s| {
            let stored = s.users.get(&user.id).ok_or(not_found("user"))?;
            if stored.revision != user.revision {
                return Err(stale("user"));
            }
            let old_key = stored.email.canonical();
            let new_key = user.email.canonical();
            if new_key != old_key && s.user_by_email.contains_key(&new_key) {
                return Err(exists("user"));
            }
            let mut next = user.clone();
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            s.user_by_email.remove(&old_key);
            s.user_by_email.insert(new_key, user.id);
            s.users.insert(user.id, next.clone());
            Ok(next)
        })
    }

    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        self.read(|s| {
            Ok(page_of(
                &s.users,
                page,
                UserId::from_uuid,
                |u| *u.id.as_uuid(),
                |_| true,
            ))
        })
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|s| Ok(s.users.len() as u64))
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        self.write(|s| {
            let user = s.users.get(&id).ok_or(not_found("user"))?;
            let owned_domains: BTreeSet<DomainId> = s
                .domains
                .values()
                .filter(|d| d.owner == id)
                .map(|d| d.id)
                .collect();
            if s.aliases
                .values()
                .any(|a| a.owner != id && owned_domains.contains(&a.domain))
            {
                return Err(StoreError::Conflict {
                    entity: "user",
                    reason: "owns a domain that carries other users' aliases",
                });
            }
            let email_key = user.email.canonical();
            s.user_by_email.remove(&email_key);
            s.users.remove(&id);
            let aliases: Vec<AliasId> = s
                .aliases
                .values()
                .filter(|a| a.owner == id)
                .map(|a| a.id)
                .collect();
            for a in aliases {
                s.purge_alias(a);
            }
            let contacts: Vec<ContactId> = s
                .contacts
                .values()
                .filter(|c| c.owner == id)
                .map(|c| c.id)
                .collect();
            for c in contacts {
                s.remove_contact(c);
            }
            s.rules.retain(|_, r| r.owner != id);
            s.mailboxes.retain(|_, m| m.owner != id);
            s.domains.retain(|_, d| d.owner != id);
            s.domain_by_name.retain(|_, d| !owned_domains.contains(d));
            s.api_keys.retain(|_, k| k.owner != id);
            s.api_key_by_hash.retain(|_, k| s.api_keys.contains_key(k));
            s.sessions.retain(|_, v| v.user != id);
            s.invitations.retain(|_, i| i.invited_by != id);
            s.invitation_by_hash
                .retain(|_, i| s.invitations.contains_key(i));
            s.usage
                .retain(|(subject, _), _| *subject != UsageSubject::User(id));
            s.events.retain(|_, e| e.owner != Some(id));
            Ok(())
        })
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.write(|s| {
            s.user_exists(key.owner)?;
            if s.api_key_by_hash.contains_key(&key.secret_hash) || s.api_keys.contains_key(&key.id)
            {
                return Err(exists("api key"));
            }
            s.api_key_by_hash.insert(key.secret_hash, key.id);
            s.api_keys.insert(key.id, key.clone());
            Ok(())
        })
    }

    async fn find_api_key(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>> {
        self.read(|s| {
            Ok(s.api_key_by_hash
                .get(hash)
                .and_then(|id| s.api_keys.get(id))
                .cloned())
        })
    }

    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>> {
        self.read(|s| {
            Ok(s.api_keys
                .values()
                .filter(|k| k.owner == owner)
                .cloned()
                .collect())
        })
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        self.write(|s| {
            let key = s.api_keys.get_mut(&id).ok_or(not_found("api key"))?;
            key.last_used_at = Some(key.last_used_at.map_or(at, |t| t.max(at)));
            Ok(())
        })
    }

    async fn delete_api_key(&self, access: Access, id: ApiKeyId) -> StoreResult<()> {
        self.write(|s| {
            let key = s
                .api_keys
                .get(&id)
                .filter(|k| access.permits(k.owner))
                .ok_or(not_found("api key"))?;
            let hash = key.secret_hash;
            s.api_key_by_hash.remove(&hash);
            s.api_keys.remove(&id);
            Ok(())
        })
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        self.write(|s| {
            if s.sessions.contains_key(&session.id_hash) {
                return Err(exists("session"));
            }
            s.sessions.insert(session.id_hash, session.clone());
            Ok(())
        })
    }

    async fn find_session(&self, hash: &SecretHash) -> StoreResult<Option<Session>> {
        self.read(|s| Ok(s.sessions.get(hash).cloned()))
    }

    async fn touch_session(&self, hash: &SecretHash, at: Timestamp) -> StoreResult<()> {
        self.write(|s| {
            let session = s.sessions.get_mut(hash).ok_or(not_found("session"))?;
            session.last_seen_at = session.last_seen_at.max(at);
            Ok(())
        })
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()> {
        self.write(|s| {
            s.sessions.remove(hash);
            Ok(())
        })
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.read(|s| {
            let mut v: Vec<Session> = s
                .sessions
                .values()
                .filter(|x| x.user == user)
                .cloned()
                .collect();
            v.sort_by_key(|x| (x.created_at, x.id_hash));
            Ok(v)
        })
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        self.write(|s| {
            let before = s.sessions.len();
            s.sessions.retain(|_, x| x.user != user);
            Ok((before - s.sessions.len()) as u64)
        })
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(|s| {
            let before = s.sessions.len();
            s.sessions.retain(|_, x| x.expires_at > now);
            Ok((before - s.sessions.len()) as u64)
        })
    }

    async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        self.write(|s| {
            if s.invitation_by_hash.contains_key(&invitation.token_hash)
                || s.invitations.contains_key(&invitation.id)
            {
                return Err(exists("invitation"));
            }
            s.invitation_by_hash
                .insert(invitation.token_hash, invitation.id);
            s.invitations.insert(invitation.id, invitation.clone());
            Ok(())
        })
    }

    async fn find_invitation(&self, hash: &SecretHash) -> StoreResult<Option<Invitation>> {
        self.read(|s| {
            Ok(s.invitation_by_hash
                .get(hash)
                .and_then(|id| s.invitations.get(id))
                .cloned())
        })
    }

    async fn redeem_invitation(
        &self,
        hash: &SecretHash,
        user: UserId,
        now: Timestamp,
    ) -> StoreResult<Invitation> {
        self.write(|s| {
            let id = *s
                .invitation_by_hash
                .get(hash)
                .ok_or(not_found("invitation"))?;
            let inv = s.invitations.get_mut(&id).ok_or(not_found("invitation"))?;
            if inv.used_at.is_some() {
                return Err(StoreError::Conflict {
                    entity: "invitation",
                    reason: "already used",
                });
            }
            if inv.expires_at <= now {
                return Err(StoreError::Gone {
                    entity: "invitation",
                });
            }
            inv.used_at = Some(now);
            inv.used_by = Some(user);
            Ok(inv.clone())
        })
    }

    async fn list_invitations(&self, page: PageRequest) -> StoreResult<Page<Invitation>> {
        self.read(|s| {
            Ok(page_of(
                &s.invitations,
                page,
                InvitationId::from_uuid,
                |i| *i.id.as_uuid(),
                |_| true,
            ))
        })
    }

    async fn delete_invitation(&self, id: InvitationId) -> StoreResult<()> {
        self.write(|s| {
            let inv = s.invitations.remove(&id).ok_or(not_found("invitation"))?;
            s.invitation_by_hash.remove(&inv.token_hash);
            Ok(())
        })
    }
}

#[async_trait]
impl DomainStore for MemoryStore {
    async fn create_domain(&self, domain: &Domain) -> StoreResult<()> {
        self.write(|s| {
            s.user_exists(domain.owner)?;
            let key = domain.name.as_ascii().to_owned();
            if s.domain_by_name.contains_key(&key) || s.domains.contains_key(&domain.id) {
                return Err(exists("domain"));
            }
            s.check_owned_mailboxes(domain.owner, &domain.default_mailboxes)?;
            s.domain_by_name.insert(key, domain.id);
            s.domains.insert(domain.id, domain.clone());
            Ok(())
        })
    }

    async fn get_domain(&self, access: Access, id: DomainId) -> StoreResult<Domain> {
        self.read(|s| s.visible_domain(access, id).cloned())
    }

    async fn find_domain_by_name(&self, name: &DomainName) -> StoreResult<Option<Domain>> {
        self.read(|s| {
            Ok(s.domain_by_name
                .get(name.as_ascii())
                .and_then(|id| s.domains.get(id))
                .cloned())
        })
    }

    async fn list_domains(&self, access: Access, page: PageRequest) -> StoreResult<Page<Domain>> {
        self.read(|s| {
            Ok(page_of(
                &s.domains,
                page,
                DomainId::from_uuid,
                |d| *d.id.as_uuid(),
                |d| d.shared || access.permits(d.owner),
            ))
        })
    }

    async fn update_domain(&self, access: Access, domain: &Domain) -> StoreResult<Domain> {
        self.write(|s| {
            let stored = s
                .domains
                .get(&domain.id)
                .filter(|d| access.permits(d.owner))
                .ok_or(not_found("domain"))?;
            if stored.revision != domain.revision {
                return Err(stale("domain"));
            }
            if domain.owner != stored.owner {
                s.user_exists(domain.owner)?;
            }
            s.check_owned_mailboxes(domain.owner, &domain.default_mailboxes)?;
            let mut next = domain.clone();
            next.name = stored.name.clone();
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            s.domains.insert(domain.id, next.clone());
            Ok(next)
        })
    }

    async fn delete_domain(&self, access: Access, id: DomainId) -> StoreResult<()> {
        self.write(|s| {
            let d = s
                .domains
                .get(&id)
                .filter(|d| access.permits(d.owner))
                .ok_or(not_found("domain"))?;
            if s.aliases.values().any(|a| a.domain == id) {
                return Err(StoreError::Conflict {
                    entity: "domain",
                    reason: "aliases still exist on this domain",
                });
            }
            let key = d.name.as_ascii().to_owned();
            s.domain_by_name.remove(&key);
            s.domains.remove(&id);
            s.rules.retain(|_, r| r.scope != RuleScope::Domain(id));
            Ok(())
        })
    }
}

/// Two mailboxes may not share a pending verification token.
fn token_clash(a: &Mailbox, b: &Mailbox) -> bool {
    a.verification_token.is_some() && a.verification_token == b.verification_token
}

#[async_trait]
impl MailboxStore for MemoryStore {
    async fn create_mailbox(&self, mailbox: &Mailbox) -> StoreResult<()> {
        self.write(|s| {
            s.user_exists(mailbox.owner)?;
            let key = mailbox.address.canonical();
            if s.mailboxes.contains_key(&mailbox.id)
                || s.mailboxes.values().any(|m| {
                    (m.owner == mailbox.owner && m.address.canonical() == key)
                        || token_clash(m, mailbox)
                })
            {
                return Err(exists("mailbox"));
            }
            s.mailboxes.insert(mailbox.id, mailbox.clone());
            Ok(())
        })
    }

    async fn get_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<Mailbox> {
        self.read(|s| {
            s.mailboxes
                .get(&id)
                .filter(|m| access.permits(m.owner))
                .cloned()
                .ok_or(not_found("mailbox"))
        })
    }

    async fn list_mailboxes(&self, owner: UserId) -> StoreResult<Vec<Mailbox>> {
        self.read(|s| {
            Ok(s.mailboxes
                .values()
                .filter(|m| m.owner == owner)
                .cloned()
                .collect())
        })
    }

    async fn find_mailbox_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Mailbox>> {
        self.read(|s| {
            Ok(s.mailboxes
                .values()
                .find(|m| m.verification_token.as_ref() == Some(hash))
                .cloned())
        })
    }

    async fn update_mailbox(&self, access: Access, mailbox: &Mailbox) -> StoreResult<Mailbox> {
        self.write(|s| {
            let stored = s
                .mailboxes
                .get(&mailbox.id)
                .filter(|m| access.permits(m.owner))
                .ok_or(not_found("mailbox"))?;
            if stored.revision != mailbox.revision {
                return Err(stale("mailbox"));
            }
            let key = mailbox.address.canonical();
            let owner = stored.owner;
            if s.mailboxes.values().any(|m| {
                m.id != mailbox.id
                    && ((m.owner == owner && m.address.canonical() == key)
                        || token_clash(m, mailbox))
            }) {
                return Err(exists("mailbox"));
            }
            let mut next = mailbox.clone();
            next.owner = owner;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            s.mailboxes.insert(mailbox.id, next.clone());
            Ok(next)
        })
    }

    async fn delete_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<()> {
        self.write(|s| {
            s.mailboxes
                .get(&id)
                .filter(|m| access.permits(m.owner))
                .ok_or(not_found("mailbox"))?;
            if s.aliases.values().any(|a| a.mailboxes.contains(&id))
                || s.domains
                    .values()
                    .any(|d| d.default_mailboxes.contains(&id))
            {
                return Err(StoreError::Conflict {
                    entity: "mailbox",
                    reason: "still used by an alias or as a domain default",
                });
            }
            s.mailboxes.remove(&id);
            Ok(())
        })
    }
}

#[async_trait]
impl AliasStore for MemoryStore {
    async fn create_alias(&self, alias: &Alias) -> StoreResult<()> {
        self.write(|s| {
            s.check_new_alias(alias)?;
            s.alias_by_address
                .insert(alias.address.canonical(), alias.id);
            s.aliases.insert(alias.id, alias.clone());
            Ok(())
        })
    }

    async fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()> {
        self.write(|s| {
            // Check everything against the state plus the batch, then insert.
            let mut batch = BTreeSet::new();
            for alias in aliases {
                s.check_new_alias(alias)?;
                if !batch.insert(alias.address.canonical()) {
                    return Err(exists("alias"));
                }
            }
            for alias in aliases {
                s.alias_by_address
                    .insert(alias.address.canonical(), alias.id);
                s.aliases.insert(alias.id, alias.clone());
            }
            Ok(())
        })
    }

    async fn get_alias(&self, access: Access, id: AliasId) -> StoreResult<Alias> {
        self.read(|s| s.visible_alias(access, id).cloned())
    }

    async fn find_alias_by_address(&self, address: &EmailAddress) -> StoreResult<Option<Alias>> {
        self.read(|s| {
            Ok(s.alias_by_address
                .get(&address.canonical())
                .and_then(|id| s.aliases.get(id))
                .filter(|a| a.deleted_at.is_none())
                .cloned())
        })
    }

    async fn list_aliases(
        &self,
        access: Access,
        filter: &AliasFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Alias>> {
        self.read(|s| {
            Ok(page_of(
                &s.aliases,
                page,
                AliasId::from_uuid,
                |a| *a.id.as_uuid(),
                |a| access.permits(a.owner) && filter.matches(a),
            ))
        })
    }

    async fn update_alias(&self, access: Access, alias: &Alias) -> StoreResult<Alias> {
        self.write(|s| {
            let stored = s.visible_alias(access, alias.id)?;
            if stored.revision != alias.revision {
                return Err(stale("alias"));
            }
            let owner = stored.owner;
            s.check_alias_mailboxes(owner, &alias.mailboxes)?;
            let stored = s.visible_alias_mut(access, alias.id)?;
            stored.mailboxes = alias.mailboxes.clone();
            stored.enabled = alias.enabled;
            stored.mode = alias.mode;
            stored.disabled_reply = alias.disabled_reply;
            stored.note = alias.note.clone();
            stored.category = alias.category.clone();
            stored.labels = alias.labels.clone();
            stored.expires_at = alias.expires_at;
            stored.limits = alias.limits;
            stored.updated_at = alias.updated_at;
            stored.revision += 1;
            Ok(stored.clone())
        })
    }

    async fn delete_alias(&self, access: Access, id: AliasId, at: Timestamp) -> StoreResult<()> {
        self.write(|s| {
            let alias = s.visible_alias_mut(access, id)?;
            if alias.deleted_at.is_none() {
                alias.deleted_at = Some(at);
                alias.revision += 1;
            }
            Ok(())
        })
    }

    async fn restore_alias(&self, access: Access, id: AliasId) -> StoreResult<()> {
        self.write(|s| {
            let alias = s.visible_alias_mut(access, id)?;
            if alias.deleted_at.is_some() {
                alias.deleted_at = None;
                alias.revision += 1;
            }
            Ok(())
        })
    }

    async fn bulk_update_aliases(
        &self,
        access: Access,
        ids: &[AliasId],
        action: &BulkAliasAction,
        at: Timestamp,
    ) -> StoreResult<u64> {
        self.write(|s| {
            let ids: BTreeSet<AliasId> = ids.iter().copied().collect();
            for id in &ids {
                let alias = s.visible_alias(access, *id)?;
                if let BulkAliasAction::MoveToMailboxes(m) = action {
                    s.check_alias_mailboxes(alias.owner, m)?;
                }
            }
            let mut changed = 0;
            for id in &ids {
                let alias = s.visible_alias_mut(access, *id)?;
                let did = match action {
                    BulkAliasAction::Enable => !std::mem::replace(&mut alias.enabled, true),
                    BulkAliasAction::Disable => std::mem::replace(&mut alias.enabled, false),
                    BulkAliasAction::Delete => {
                        alias.deleted_at.is_none() && alias.deleted_at.replace(at).is_none()
                    }
                    BulkAliasAction::Restore => alias.deleted_at.take().is_some(),
                    BulkAliasAction::MoveToMailboxes(m) => {
                        let differs = alias.mailboxes != *m;
                        alias.mailboxes.clone_from(m);
                        differs
                    }
                };
                if did {
                    alias.revision += 1;
                    alias.updated_at = at;
                    changed += 1;
                }
            }
            Ok(changed)
        })
    }

    async fn record_alias_activity(
        &self,
        id: AliasId,
        delta: CounterDelta,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.write(|s| {
            let alias = s.aliases.get_mut(&id).ok_or(not_found("alias"))?;
            let c = &mut alias.counters;
            c.forwarded = c.forwarded.saturating_add(delta.forwarded);
            c.blocked = c.blocked.saturating_add(delta.blocked);
            c.replied = c.replied.saturating_add(delta.replied);
            c.bounced = c.bounced.saturating_add(delta.bounced);
            c.last_used_at = Some(c.last_used_at.map_or(at, |t| t.max(at)));
            Ok(())
        })
    }

    async fn purge_deleted_aliases(&self, older_than: Timestamp) -> StoreResult<u64> {
        self.write(|s| {
            let due: Vec<AliasId> = s
                .aliases
                .values()
                .filter(|a| a.deleted_at.is_some_and(|d| d <= older_than))
                .map(|a| a.id)
                .collect();
            for id in &due {
                s.purge_alias(*id);
            }
            Ok(due.len() as u64)
        })
    }

    async fn is_tombstoned(&self, address: &EmailAddress) -> StoreResult<bool> {
        self.read(|s| Ok(s.tombstones.contains_key(&address.canonical())))
    }
}

#[async_trait]
impl ContactStore for MemoryStore {
    async fn create_contact(&self, contact: &Contact) -> StoreResult<()> {
        self.write(|s| {
            s.aliases
                .get(&contact.alias)
                .filter(|a| a.owner == contact.owner)
                .ok_or(not_found("alias"))?;
            let addr_key = (contact.alias, contact.address.canonical());
            if s.contact_by_address.contains_key(&addr_key)
                || s.contact_by_key.contains_key(&contact.reverse_key)
                || s.contacts.contains_key(&contact.id)
            {
                return Err(exists("contact"));
            }
            s.contact_by_address.insert(addr_key, contact.id);
            s.contact_by_key
                .insert(contact.reverse_key.clone(), contact.id);
            s.contacts.insert(contact.id, contact.clone());
            Ok(())
        })
    }

    async fn get_contact(&self, access: Access, id: ContactId) -> StoreResult<Contact> {
        self.read(|s| {
            s.contacts
                .get(&id)
                .filter(|c| access.permits(c.owner))
                .cloned()
                .ok_or(not_found("contact"))
        })
    }

    async fn find_contact(
        &self,
        alias: AliasId,
        address: &EmailAddress,
    ) -> StoreResult<Option<Contact>> {
        self.read(|s| {
            Ok(s.contact_by_address
                .get(&(alias, address.canonical()))
                .and_then(|id| s.contacts.get(id))
                .cloned())
        })
    }

    async fn find_contact_by_reverse_key(&self, key: &str) -> StoreResult<Option<Contact>> {
        self.read(|s| {
            Ok(s.contact_by_key
                .get(key)
                .and_then(|id| s.contacts.get(id))
                .cloned())
        })
    }

    async fn list_contacts(
        &self,
        access: Access,
        alias: Option<AliasId>,
        page: PageRequest,
    ) -> StoreResult<Page<Contact>> {
        self.read(|s| {
            Ok(page_of(
                &s.contacts,
                page,
                ContactId::from_uuid,
                |c| *c.id.as_uuid(),
                |c| access.permits(c.owner) && alias.is_none_or(|a| a == c.alias),
            ))
        })
    }

    async fn update_contact(&self, access: Access, contact: &Contact) -> StoreResult<Contact> {
        self.write(|s| {
            let stored = s
                .contacts
                .get_mut(&contact.id)
                .filter(|c| access.permits(c.owner))
                .ok_or(not_found("contact"))?;
            if stored.revision != contact.revision {
                return Err(stale("contact"));
            }
            stored.display_name = contact.display_name.clone();
            stored.blocked = contact.blocked;
            stored.updated_at = contact.updated_at;
            stored.last_seen_at = contact.last_seen_at;
            stored.revision += 1;
            Ok(stored.clone())
        })
    }

    async fn delete_contact(&self, access: Access, id: ContactId) -> StoreResult<()> {
        self.write(|s| {
            s.contacts
                .get(&id)
                .filter(|c| access.permits(c.owner))
                .ok_or(not_found("contact"))?;
            s.remove_contact(id);
            Ok(())
        })
    }
}

fn by_priority(rules: &mut [ForwardingRule]) {
    rules.sort_by_key(|r| (r.priority, r.id));
}

#[async_trait]
impl RuleStore for MemoryStore {
    async fn create_rule(&self, rule: &ForwardingRule) -> StoreResult<()> {
        self.write(|s| {
            s.check_rule_scope(rule)?;
            if s.rules.contains_key(&rule.id) {
                return Err(exists("rule"));
            }
            s.rules.insert(rule.id, rule.clone());
            Ok(())
        })
    }

    async fn get_rule(&self, access: Access, id: RuleId) -> StoreResult<ForwardingRule> {
        self.read(|s| {
            s.rules
                .get(&id)
                .filter(|r| access.permits(r.owner))
                .cloned()
                .ok_or(not_found("rule"))
        })
    }

    async fn list_rules(&self, owner: UserId) -> StoreResult<Vec<ForwardingRule>> {
        self.read(|s| {
            let mut v: Vec<ForwardingRule> = s
                .rules
                .values()
                .filter(|r| r.owner == owner)
                .cloned()
                .collect();
            by_priority(&mut v);
            Ok(v)
        })
    }

    async fn rules_for_alias(&self, alias: &Alias) -> StoreResult<Vec<ForwardingRule>> {
        self.read(|s| {
            let mut v: Vec<ForwardingRule> = s
                .rules
                .values()
                .filter(|r| {
                    r.owner == alias.owner
                        && r.enabled
                        && match r.scope {
                            RuleScope::User => true,
                            RuleScope::Domain(d) => d == alias.domain,
                            RuleScope::Alias(a) => a == alias.id,
                        }
                })
                .cloned()
                .collect();
            by_priority(&mut v);
            Ok(v)
        })
    }

    async fn update_rule(
        &self,
        access: Access,
        rule: &ForwardingRule,
    ) -> StoreResult<ForwardingRule> {
        self.write(|s| {
            let stored = s
                .rules
                .get(&rule.id)
                .filter(|r| access.permits(r.owner))
                .ok_or(not_found("rule"))?;
            if stored.revision != rule.revision {
                return Err(stale("rule"));
            }
            let mut next = rule.clone();
            next.owner = stored.owner;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            s.check_rule_scope(&next)?;
            s.rules.insert(rule.id, next.clone());
            Ok(next)
        })
    }

    async fn delete_rule(&self, access: Access, id: RuleId) -> StoreResult<()> {
        self.write(|s| {
            s.rules
                .get(&id)
                .filter(|r| access.permits(r.owner))
                .ok_or(not_found("rule"))?;
            s.rules.remove(&id);
            Ok(())
        })
    }

    async fn reorder_rules(&self, owner: UserId, ids: &[RuleId]) -> StoreResult<()> {
        self.write(|s| {
            let mine: BTreeSet<RuleId> = s
                .rules
                .values()
                .filter(|r| r.owner == owner)
                .map(|r| r.id)
                .collect();
            let given: BTreeSet<RuleId> = ids.iter().copied().collect();
            if given.len() != ids.len() || given != mine {
                return Err(invalid(
                    "rule",
                    "the new order must list every rule of the owner exactly once",
                ));
            }
            for (i, id) in ids.iter().enumerate() {
                let prio = i32::try_from(i).unwrap_or(i32::MAX);
                if let Some(r) = s.rules.get_mut(id)
                    && r.priority != prio
                {
                    r.priority = prio;
                    r.revision += 1;
                }
            }
            Ok(())
        })
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        self.write(|s| {
            if s.audit.contains_key(&event.id) {
                return Err(exists("audit event"));
            }
            s.audit.insert(event.id, event.clone());
            Ok(())
        })
    }

    async fn list_audit(
        &self,
        access: Access,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        self.read(|s| {
            Ok(page_of(
                &s.audit,
                page,
                AuditEventId::from_uuid,
                |e| *e.id.as_uuid(),
                |e| {
                    (match access {
                        Access::Owner(u) => e.owner == Some(u),
                        Access::System => true,
                    }) && filter.action.as_ref().is_none_or(|a| *a == e.action)
                        && filter.since.is_none_or(|t| e.at >= t)
                },
            ))
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_events(&self, events: &[DeliveryEvent]) -> StoreResult<()> {
        self.write(|s| {
            let mut ids = BTreeSet::new();
            for e in events {
                if !ids.insert(e.id) || s.events.contains_key(&e.id) {
                    return Err(exists("delivery event"));
                }
            }
            for e in events {
                s.events.insert(e.id, e.clone());
            }
            Ok(())
        })
    }

    async fn list_events(
        &self,
        access: Access,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliveryEvent>> {
        self.read(|s| {
            Ok(page_newest_first(
                &s.events,
                page,
                EventId::from_uuid,
                |e| *e.id.as_uuid(),
                |e| access.permits_optional(e.owner) && filter.matches(e),
            ))
        })
    }

    async fn count_events(&self, filter: &EventFilter) -> StoreResult<u64> {
        self.read(|s| Ok(s.events.values().filter(|e| filter.matches(e)).count() as u64))
    }

    async fn purge_events(&self, older_than: Timestamp) -> StoreResult<u64> {
        self.write(|s| {
            let before = s.events.len();
            s.events.retain(|_, e| e.at > older_than);
            Ok((before - s.events.len()) as u64)
        })
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()> {
        self.write(|s| {
            let day = record.at.day();
            let mut add = |subject| {
                let e = s.usage.entry((subject, day)).or_insert((0, 0));
                e.0 = e.0.saturating_add(record.messages);
                e.1 = e.1.saturating_add(record.bytes);
            };
            add(UsageSubject::User(record.user));
            if let Some(a) = record.alias {
                add(UsageSubject::Alias(a));
            }
            Ok(())
        })
    }

    async fn usage(
        &self,
        access: Access,
        subject: UsageSubject,
        from: Day,
        to: Day,
    ) -> StoreResult<Vec<DailyUsage>> {
        self.read(|s| {
            if let Access::Owner(me) = access {
                let owner = match subject {
                    UsageSubject::User(u) => Some(u),
                    UsageSubject::Alias(a) => s.aliases.get(&a).map(|a| a.owner),
                };
                if owner != Some(me) {
                    return Err(not_found(match subject {
                        UsageSubject::User(_) => "user",
                        UsageSubject::Alias(_) => "alias",
                    }));
                }
            }
            if from > to {
                return Ok(Vec::new());
            }
            Ok(s.usage
                .range((subject, from)..=(subject, to))
                .map(|((_, day), (messages, bytes))| DailyUsage {
                    day: *day,
                    messages: *messages,
                    bytes: *bytes,
                })
                .collect())
        })
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn check_rate(
        &self,
        key: &str,
        quota: &Quota,
        now: Timestamp,
        cost: u32,
    ) -> StoreResult<Decision> {
        self.write(|s| {
            let tat = s.rate.get(key).copied();
            let decision = gcra::decide(quota, tat, now.as_unix_millis(), cost);
            if decision.allowed && cost > 0 {
                s.rate.insert(key.to_owned(), decision.new_tat_ms);
            }
            Ok(decision)
        })
    }

    async fn purge_rate_limits(&self, older_than: Timestamp) -> StoreResult<u64> {
        self.write(|s| {
            let before = s.rate.len();
            s.rate.retain(|_, tat| *tat > older_than.as_unix_millis());
            Ok((before - s.rate.len()) as u64)
        })
    }
}

#[async_trait]
impl ControlStore for MemoryStore {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<Setting>> {
        self.read(|s| Ok(s.settings.get(key).cloned()))
    }

    async fn put_setting(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<Setting> {
        check_control_key("setting", key)?;
        self.write(|s| {
            let version = s.settings.get(key).map_or(1, |old| old.version + 1);
            let setting = Setting {
                key: key.to_owned(),
                value: value.to_owned(),
                version,
                updated_at: now,
            };
            s.settings.insert(key.to_owned(), setting.clone());
            Ok(setting)
        })
    }

    async fn list_settings(&self) -> StoreResult<Vec<Setting>> {
        self.read(|s| Ok(s.settings.values().cloned().collect()))
    }

    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        check_control_key("job", job)?;
        check_control_key("job holder", holder)?;
        self.write(|s| {
            let state = s
                .jobs
                .entry(job.to_owned())
                .or_insert_with(|| JobState::new(job));
            if !state.lease_available(holder, now) {
                return Ok(false);
            }
            state.holder = Some(holder.to_owned());
            state.lease_until = Some(until);
            Ok(true)
        })
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> StoreResult<bool> {
        self.write(|s| match s.jobs.get_mut(job) {
            Some(state) if state.holder.as_deref() == Some(holder) => {
                state.holder = None;
                state.lease_until = None;
                Ok(true)
            }
            _ => Ok(false),
        })
    }

    async fn record_job_run(&self, job: &str, run: &JobRun) -> StoreResult<()> {
        check_control_key("job", job)?;
        self.write(|s| {
            s.jobs
                .entry(job.to_owned())
                .or_insert_with(|| JobState::new(job))
                .apply_run(run);
            Ok(())
        })
    }

    async fn list_jobs(&self) -> StoreResult<Vec<JobState>> {
        self.read(|s| Ok(s.jobs.values().cloned().collect()))
    }

    async fn expired_aliases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Alias>> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
        self.read(|s| {
            Ok(s.aliases
                .values()
                .filter(|a| a.deleted_at.is_none() && a.expires_at.is_some_and(|e| e <= now))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn purge_expired_invitations(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(|s| {
            let before = s.invitations.len();
            s.invitations.retain(|_, i| i.expires_at > now);
            s.invitation_by_hash
                .retain(|_, id| s.invitations.contains_key(id));
            Ok((before - s.invitations.len()) as u64)
        })
    }

    async fn rollup_usage(&self, before: Day) -> StoreResult<u64> {
        self.write(|s| {
            let rows = s
                .usage
                .iter()
                .filter(|((_, day), _)| *day < before)
                .map(|((subject, day), (m, b))| (*subject, *day, *m, *b))
                .collect();
            let plan = plan_usage_rollup(rows);
            for key in &plan.delete {
                s.usage.remove(key);
            }
            for (subject, month, m, b) in &plan.write {
                s.usage.insert((*subject, *month), (*m, *b));
            }
            Ok(plan.removed())
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
