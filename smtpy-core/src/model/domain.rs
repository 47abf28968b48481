//! Hosted domains and their DKIM keys.

use serde::{Deserialize, Serialize};

use crate::address::DomainName;
use crate::ids::{DomainId, MailboxId, UserId};
use crate::secret::EncryptedSecret;
use crate::time::Timestamp;

/// A domain smtpy receives mail for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Identifier.
    pub id: DomainId,
    /// The domain; unique (IDNA-normalised, case-folded).
    pub name: DomainName,
    /// Who manages it. For a shared domain, the admin who added it.
    pub owner: UserId,
    /// A shared domain is open to every user for aliases; only its owner
    /// (an admin) can change it.
    pub shared: bool,
    /// Value the owner publishes in a TXT record to prove control.
    pub verification_token: String,
    /// When ownership was proven; unverified domains receive no mail.
    pub verified_at: Option<Timestamp>,
    /// Results of the last DNS check.
    pub checks: DnsChecks,
    /// Catch-all: accept mail for addresses with no alias.
    pub catch_all: CatchAll,
    /// DKIM signing keys (several during a rotation).
    pub dkim_keys: Vec<DkimKey>,
    /// Mailboxes that aliases created on this domain (catch-all or
    /// auto-created) forward to.
    pub default_mailboxes: Vec<MailboxId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Optimistic-concurrency revision.
    pub revision: u64,
    /// Set by an administrator; a disabled domain receives no mail and its
    /// owner cannot re-enable or re-verify it. (Last, so that binary
    /// encodings written before it existed are an exact prefix.)
    #[serde(default)]
    pub disabled: bool,
}

impl Domain {
    /// A new, unverified domain owned by `owner`.
    #[must_use]
    pub fn new(
        name: DomainName,
        owner: UserId,
        verification_token: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id: DomainId::new(),
            name,
            owner,
            shared: false,
            verification_token,
            verified_at: None,
            disabled: false,
            checks: DnsChecks::default(),
            catch_all: CatchAll::default(),
            dkim_keys: Vec::new(),
            default_mailboxes: Vec::new(),
            created_at: now,
            updated_at: now,
            revision: 0,
        }
    }

    /// Whether mail to this domain is accepted: ownership is proven and no
    /// administrator disabled it. Anything else is treated exactly like a
    /// domain smtpy does not host.
    #[must_use]
    pub fn receives_mail(&self) -> bool {
        self.verified_at.is_some() && !self.disabled
    }
}

/// Outcome of checking one DNS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckStatus {
    /// Not checked yet.
    #[default]
    Unknown,
    /// Record present and correct.
    Ok,
    /// Record absent.
    Missing,
    /// Record present but wrong.
    Wrong,
}

/// One DNS record's check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsCheck {
    /// Verdict.
    pub status: CheckStatus,
    /// What was found or what is wrong, for humans.
    pub detail: String,
}

/// DNS checks of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsChecks {
    /// MX points at this service.
    pub mx: DnsCheck,
    /// SPF authorises this service.
    pub spf: DnsCheck,
    /// DKIM selectors are published.
    pub dkim: DnsCheck,
    /// A DMARC policy is published.
    pub dmarc: DnsCheck,
    /// When the checks ran.
    pub last_checked_at: Option<Timestamp>,
}

/// Catch-all settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CatchAll {
    /// Accept mail to any address on the domain, forwarding to the domain's
    /// default mailboxes.
    pub enabled: bool,
    /// If set, an alias is created on first mail when the local part matches
    /// this regular expression (anchored), instead of accepting everything.
    pub auto_create_pattern: Option<String>,
}

/// DKIM key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DkimAlgorithm {
    /// RSA, 2048-bit, SHA-256.
    Rsa2048,
    /// Ed25519 (RFC 8463).
    Ed25519,
}

/// Where a DKIM key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DkimKeyState {
    /// Published in DNS, not yet used to sign.
    Pending,
    /// Used to sign.
    Active,
    /// No longer signs; stays published until the grace period ends so
    /// mail in flight still verifies.
    Retiring,
}

/// A DKIM signing key of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKey {
    /// DNS selector (`<selector>._domainkey.<domain>`).
    pub selector: String,
    /// Algorithm.
    pub algorithm: DkimAlgorithm,
    /// Private key (PKCS#8 DER), encrypted under the operator's key.
    pub private_key: EncryptedSecret,
    /// Exact TXT record value to publish.
    pub dns_record: String,
    /// Life-cycle state.
    pub state: DkimKeyState,
    /// Creation time.
    pub created_at: Timestamp,
    /// When the state last changed (start of the grace period when retiring).
    pub state_since: Timestamp,
}
