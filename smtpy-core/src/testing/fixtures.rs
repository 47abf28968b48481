//! Rows for tests: unique addresses, realistic secrets, fixed timestamps.
//!
//! `new_*` functions build a value without storing it; the `async` functions
//! of the same name without `new_` build it and create it in the store
//! (panicking if the store refuses). Every address, domain name and key is
//! made unique with a UUID, so tests never collide even on a shared store.

use std::future::Future;

use uuid::Uuid;

use crate::address::{DomainName, EmailAddress};
use crate::ids::{ApiKeyId, AuditEventId, InvitationId, UserId};
use crate::model::{
    Actor, Alias, ApiKey, ApiScope, AuditEvent, Contact, DeliveryEvent, Domain, EventKind,
    ForwardingRule, Invitation, Mailbox, Role, RuleAction, RuleScope, SecretHash, Session, User,
};
use crate::password::{PasswordHash, PasswordParams};
use crate::secret::{EncryptedSecret, Keyring, SecretKey};
use crate::store::Store;
use crate::time::Timestamp;

/// The instant most tests happen at (2023-11-14T22:13:20Z).
pub const T0: Timestamp = Timestamp::from_unix_secs(T0_SECS);
const T0_SECS: i64 = 1_700_000_000;

/// `T0` plus `secs` seconds (negative for earlier).
#[must_use]
pub const fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(T0_SECS + secs)
}

/// Far enough in the future that nothing a test creates has expired by then.
pub const FAR_FUTURE: Timestamp = Timestamp::from_unix_secs(T0_SECS + 10 * 365 * 86_400);

/// `prefix-<uuid>`: a name no other test uses.
#[must_use]
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

/// A domain name no other test uses, e.g. `d-0190….example`.
#[must_use]
pub fn unique_domain_name() -> DomainName {
    DomainName::parse(&format!("{}.example", unique("d"))).expect("generated domain name parses")
}

/// An address with a unique local part (starting with `prefix`) at `domain`.
#[must_use]
pub fn unique_address(prefix: &str, domain: &str) -> EmailAddress {
    address(&format!("{}@{domain}", unique(prefix)))
}

/// Parses an address the suite wrote itself.
#[must_use]
pub fn address(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap_or_else(|e| panic!("test address {text:?} must parse: {e}"))
}

/// The same address with its local part upper-cased: equal by
/// [`EmailAddress::canonical`], spelled differently.
#[must_use]
pub fn upper_cased(addr: &EmailAddress) -> EmailAddress {
    address(&format!(
        "{}@{}",
        addr.local_part().as_str().to_uppercase(),
        addr.domain().as_ascii().to_uppercase()
    ))
}

/// An address on `domain` with a unique local part.
#[must_use]
pub fn address_on(domain: &Domain) -> EmailAddress {
    unique_address("a", domain.name.as_ascii())
}

/// The SHA-256 of a fresh random-looking secret.
#[must_use]
pub fn secret_hash() -> SecretHash {
    SecretHash::of(unique("secret").as_bytes())
}

/// An argon2id hash made with the cheap test parameters.
#[must_use]
pub fn password_hash() -> PasswordHash {
    PasswordHash::hash(
        "correct horse battery staple",
        &PasswordParams::insecure_fast_for_tests(),
    )
    .expect("hashing with test parameters works")
}

/// A real sealed secret (a fresh key seals `plaintext` under `context`).
#[must_use]
pub fn encrypted_secret(plaintext: &[u8], context: &[u8]) -> EncryptedSecret {
    let key = SecretKey::generate("test-key-1").expect("system RNG works");
    Keyring::new(key)
        .seal(plaintext, context)
        .expect("sealing a short secret works")
}

/// A user (role `User`) with a unique email; not stored.
#[must_use]
pub fn new_user() -> User {
    User::new(unique_address("user", "users.example"), Role::User, T0)
}

/// A created user (role `User`).
pub async fn user(store: &dyn Store) -> User {
    let user = new_user();
    store
        .create_user(&user)
        .await
        .expect("create_user of a fresh user");
    user
}

/// A created admin.
pub async fn admin(store: &dyn Store) -> User {
    let mut user = new_user();
    user.role = Role::Admin;
    store
        .create_user(&user)
        .await
        .expect("create_user of a fresh admin");
    user
}

/// An unshared, unverified domain of `owner` with a unique name; not stored.
#[must_use]
pub fn new_domain(owner: &User) -> Domain {
    Domain::new(unique_domain_name(), owner.id, unique("verify"), T0)
}

/// A created domain of `owner`.
pub async fn domain(store: &dyn Store, owner: &User) -> Domain {
    let domain = new_domain(owner);
    store
        .create_domain(&domain)
        .await
        .expect("create_domain of a fresh domain");
    domain
}

/// A created admin and a shared domain they own.
pub async fn shared_domain(store: &dyn Store) -> (User, Domain) {
    let owner = admin(store).await;
    let mut domain = new_domain(&owner);
    domain.shared = true;
    store
        .create_domain(&domain)
        .await
        .expect("create_domain of a shared domain");
    (owner, domain)
}

/// An unverified mailbox of `owner` with a unique address; not stored.
#[must_use]
pub fn new_mailbox(owner: &User) -> Mailbox {
    Mailbox::new(owner.id, unique_address("inbox", "mail.example"), T0)
}

/// A created mailbox of `owner`.
pub async fn mailbox(store: &dyn Store, owner: &User) -> Mailbox {
    let mailbox = new_mailbox(owner);
    store
        .create_mailbox(&mailbox)
        .await
        .expect("create_mailbox of a fresh mailbox");
    mailbox
}

/// An alias of `owner` at a unique address on `domain`, forwarding to `mailboxes`; not stored.
#[must_use]
pub fn new_alias(owner: &User, domain: &Domain, mailboxes: &[&Mailbox]) -> Alias {
    Alias::new(
        address_on(domain),
        owner.id,
        domain.id,
        mailboxes.iter().map(|m| m.id).collect(),
        T0,
    )
}

/// A created alias of `owner` on `domain` forwarding to `mailbox`.
pub async fn alias(store: &dyn Store, owner: &User, domain: &Domain, mailbox: &Mailbox) -> Alias {
    let alias = new_alias(owner, domain, &[mailbox]);
    store
        .create_alias(&alias)
        .await
        .expect("create_alias of a fresh alias");
    alias
}

/// A created user with a domain, a mailbox and an alias on them.
pub async fn owner_with_alias(store: &dyn Store) -> (User, Domain, Mailbox, Alias) {
    let owner = user(store).await;
    let domain = domain(store, &owner).await;
    let mailbox = mailbox(store, &owner).await;
    let alias = alias(store, &owner, &domain, &mailbox).await;
    (owner, domain, mailbox, alias)
}

/// A contact of `alias` with a unique address and reverse key; not stored.
#[must_use]
pub fn new_contact(alias: &Alias) -> Contact {
    Contact {
        id: crate::ids::ContactId::new(),
        alias: alias.id,
        owner: alias.owner,
        address: unique_address("Sender", "outside.example"),
        display_name: None,
        blocked: false,
        reverse_key: unique("rk"),
        created_at: T0,
        updated_at: T0,
        last_seen_at: None,
        revision: 0,
    }
}

/// A created contact of `alias`.
pub async fn contact(store: &dyn Store, alias: &Alias) -> Contact {
    let contact = new_contact(alias);
    store
        .create_contact(&contact)
        .await
        .expect("create_contact of a fresh contact");
    contact
}

/// An enabled, match-everything rule of `owner` that adds a header; not stored.
#[must_use]
pub fn new_rule(owner: &User, scope: RuleScope, priority: i32) -> ForwardingRule {
    ForwardingRule::new(
        owner.id,
        scope,
        unique("rule"),
        priority,
        vec![RuleAction::AddHeader {
            name: "X-Test".into(),
            value: "1".into(),
        }],
        T0,
    )
}

/// A created rule of `owner`.
pub async fn rule(
    store: &dyn Store,
    owner: &User,
    scope: RuleScope,
    priority: i32,
) -> ForwardingRule {
    let rule = new_rule(owner, scope, priority);
    store
        .create_rule(&rule)
        .await
        .expect("create_rule of a fresh rule");
    rule
}

/// A session of `user` created at `created_at`, expiring [`FAR_FUTURE`]; not stored.
#[must_use]
pub fn new_session(user: &User, created_at: Timestamp) -> Session {
    Session {
        id_hash: secret_hash(),
        user: user.id,
        created_at,
        last_seen_at: created_at,
        expires_at: FAR_FUTURE,
        csrf_token: unique("csrf"),
        ip: None,
        user_agent: None,
    }
}

/// A created session of `user`.
pub async fn session(store: &dyn Store, user: &User, created_at: Timestamp) -> Session {
    let session = new_session(user, created_at);
    store
        .create_session(&session)
        .await
        .expect("create_session of a fresh session");
    session
}

/// A never-expiring, unused API key of `owner`; not stored.
#[must_use]
pub fn new_api_key(owner: &User) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        owner: owner.id,
        name: unique("key"),
        prefix: "smtpy_3fa9c1".into(),
        secret_hash: secret_hash(),
        scopes: vec![ApiScope::AliasesRead],
        expires_at: None,
        last_used_at: None,
        created_at: T0,
    }
}

/// A created API key of `owner`.
pub async fn api_key(store: &dyn Store, owner: &User) -> ApiKey {
    let key = new_api_key(owner);
    store
        .create_api_key(&key)
        .await
        .expect("create_api_key of a fresh key");
    key
}

/// An unused invitation sent by `invited_by`, expiring at `expires_at`; not stored.
#[must_use]
pub fn new_invitation(invited_by: &User, expires_at: Timestamp) -> Invitation {
    Invitation {
        id: InvitationId::new(),
        token_hash: secret_hash(),
        email: None,
        role: Role::User,
        invited_by: invited_by.id,
        created_at: T0,
        expires_at,
        used_at: None,
        used_by: None,
    }
}

/// An audit event with this owner and action at `at`; not stored.
#[must_use]
pub fn new_audit_event(owner: Option<&User>, action: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::new(),
        actor: owner.map_or(Actor::System, |u| Actor::User(u.id)),
        owner: owner.map(|u| u.id),
        action: action.to_owned(),
        target: None,
        ip: None,
        at,
        details: Default::default(),
    }
}

/// A delivery event of `kind` at `at` owned by `owner`, with a unique
/// sender and one detail; not stored. Events do not need the rows they name
/// to exist, so tests may use fresh ids for owners, aliases and mailboxes.
#[must_use]
pub fn new_event(kind: EventKind, owner: Option<UserId>, at: Timestamp) -> DeliveryEvent {
    let mut event = DeliveryEvent::new(kind, at).with("reply", "250 2.0.0 OK");
    event.owner = owner;
    event.sender = Some(unique_address("sender", "outside.example").to_string());
    event
}

/// Runs `task(0)`, …, `task(n - 1)` at the same time and returns their
/// outputs in that order.
///
/// On a multi-threaded Tokio runtime each task runs on its own OS thread
/// (released together by a barrier), so a backend whose methods do blocking
/// work is still exercised in parallel; on a current-thread runtime the
/// futures are polled concurrently on the calling task.
pub async fn concurrently<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = T>,
    T: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return crate::join::join_all((0..n).map(&task).collect()).await;
    }
    tokio::task::block_in_place(|| {
        let barrier = std::sync::Barrier::new(n);
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (handle, task, barrier) = (handle.clone(), &task, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        handle.block_on(task(i))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a concurrent task panicked"))
                .collect()
        })
    })
}
