//! Users and their credentials: API keys, sessions, invitations.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::ids::{ApiKeyId, InvitationId, UserId};
use crate::password::PasswordHash;
use crate::secret::EncryptedSecret;
use crate::time::Timestamp;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Manages their own domains, mailboxes and aliases.
    User,
    /// Manages everything, including other users and shared domains.
    Admin,
}

/// Whether an account can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserStatus {
    /// Can sign in; its aliases forward.
    Active,
    /// Cannot sign in; its aliases reject mail.
    Disabled,
    /// Registered but not yet confirmed.
    Pending,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Sign-in address; unique (case-insensitive).
    pub email: EmailAddress,
    /// argon2id hash of the password; `None` for accounts that cannot sign in
    /// with a password (API-only, or invited and not yet set).
    pub password: Option<PasswordHash>,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: UserStatus,
    /// TOTP second-factor seed, encrypted at rest; `None` when not enrolled.
    pub totp: Option<EncryptedSecret>,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the account was last changed.
    pub updated_at: Timestamp,
    /// When the user last signed in.
    pub last_login_at: Option<Timestamp>,
    /// The owner's mail-handling preferences.
    pub settings: UserSettings,
    /// Optimistic-concurrency revision (see the [module docs](super)).
    pub revision: u64,
}

/// What to do with mail that fails DMARC when the sender's domain publishes
/// `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DmarcRejectAction {
    /// Refuse at the end of DATA with `550 5.7.1` (the default; the sender's
    /// server tells the sender).
    #[default]
    Reject,
    /// Accept and hold in quarantine; the owner is notified.
    Quarantine,
}

/// What to do with mail that fails DMARC when the sender's domain publishes
/// `p=quarantine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DmarcQuarantineAction {
    /// Accept and hold in quarantine; the owner is notified (the default).
    #[default]
    Quarantine,
    /// Forward with the Subject prefixed by [`UserSettings::subject_tag`].
    TagSubject,
}

/// An owner's mail-handling preferences. `None` limits mean the operator's
/// default applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSettings {
    /// Handling of DMARC failures under `p=reject`.
    pub dmarc_reject: DmarcRejectAction,
    /// Handling of DMARC failures under `p=quarantine`.
    pub dmarc_quarantine: DmarcQuarantineAction,
    /// Subject prefix for [`DmarcQuarantineAction::TagSubject`] (at most 64 bytes).
    pub subject_tag: String,
    /// Display name format of rewritten senders in alias mode; `{name}` is
    /// the sender's display name (or address when it has none), `{address}`
    /// its address. `None`: the operator's format.
    pub sender_format: Option<String>,
    /// Forwards per day (`None`: operator default).
    pub forwards_per_day: Option<u32>,
    /// Replies and new mail sent through aliases per day (`None`: operator default).
    pub replies_per_day: Option<u32>,
    /// Aliases created per hour (`None`: operator default).
    pub aliases_per_hour: Option<u32>,
    /// Send a notice when a forward to one of the mailboxes bounces.
    pub notify_bounces: bool,
    /// Send a notice when a message is quarantined.
    pub notify_quarantine: bool,
}

impl Default for UserSettings {
    fn default() -> Self {
        Self {
            dmarc_reject: DmarcRejectAction::Reject,
            dmarc_quarantine: DmarcQuarantineAction::Quarantine,
            subject_tag: "[SPAM?]".to_owned(),
            sender_format: None,
            forwards_per_day: None,
            replies_per_day: None,
            aliases_per_hour: None,
            notify_bounces: true,
            notify_quarantine: true,
        }
    }
}

impl User {
    /// A new active account with no password, created `now`.
    #[must_use]
    pub fn new(email: EmailAddress, role: Role, now: Timestamp) -> Self {
        Self {
            id: UserId::new(),
            email,
            password: None,
            role,
            status: UserStatus::Active,
            totp: None,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            settings: UserSettings::default(),
            revision: 0,
        }
    }
    /// True for admins.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// SHA-256 of a high-entropy secret (API key secret, session id, single-use
/// token). Such secrets carry ≥128 random bits, so a fast hash is enough and
/// lets stores look rows up by it; the clear secret is never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret.
    #[must_use]
    pub fn of(secret: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
    /// Wraps stored hash bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The hash bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Compares in constant time.
    #[must_use]
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell hashes apart in logs; it reveals nothing.
        write!(
            f,
            "SecretHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ApiScope {
    /// Read aliases, contacts, rules, stats and events.
    #[serde(rename = "aliases:read")]
    AliasesRead,
    /// Create, change and delete aliases, contacts and rules.
    #[serde(rename = "aliases:write")]
    AliasesWrite,
    /// Read domains and mailboxes.
    #[serde(rename = "domains:read")]
    DomainsRead,
    /// Create, change and delete domains and mailboxes.
    #[serde(rename = "domains:write")]
    DomainsWrite,
    /// Read the account, keys and audit log.
    #[serde(rename = "account:read")]
    AccountRead,
    /// Change the account and its keys.
    #[serde(rename = "account:write")]
    AccountWrite,
    /// Administer the service (only effective for admin users).
    #[serde(rename = "admin")]
    Admin,
}

/// A bearer token for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Identifier.
    pub id: ApiKeyId,
    /// Who the key acts as.
    pub owner: UserId,
    /// Label chosen by the owner.
    pub name: String,
    /// Visible start of the token (e.g. `smtpy_3fa9c1`), shown in lists so
    /// the owner can tell keys apart; not enough to authenticate.
    pub prefix: String,
    /// Hash of the whole token; unique.
    pub secret_hash: SecretHash,
    /// What the key may do.
    pub scopes: Vec<ApiScope>,
    /// After this instant the key is refused; `None` never expires.
    pub expires_at: Option<Timestamp>,
    /// Last successful use.
    pub last_used_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A signed-in browser session, found by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hash of the session id carried in the cookie; unique.
    pub id_hash: SecretHash,
    /// Who is signed in.
    pub user: UserId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last request seen (for the idle timeout).
    pub last_seen_at: Timestamp,
    /// Absolute expiry, whatever the activity.
    pub expires_at: Timestamp,
    /// Anti-CSRF token bound to this session.
    pub csrf_token: String,
    /// Client address at sign-in, for the owner's session list.
    pub ip: Option<String>,
    /// Client user agent at sign-in, for the owner's session list.
    pub user_agent: Option<String>,
}

/// A single-use, expiring invitation to create an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Identifier.
    pub id: InvitationId,
    /// Hash of the token sent to the invitee; unique.
    pub token_hash: SecretHash,
    /// If set, only this address may accept.
    pub email: Option<EmailAddress>,
    /// Role the new account gets.
    pub role: Role,
    /// Who invited.
    pub invited_by: UserId,
    /// Creation time.
    pub created_at: Timestamp,
    /// After this instant it cannot be redeemed.
    pub expires_at: Timestamp,
    /// When it was redeemed; `None` while unused.
    pub used_at: Option<Timestamp>,
    /// The account created with it.
    pub used_by: Option<UserId>,
}
