//! Inbound mail authentication (SPF, DKIM, DMARC, ARC) and ARC sealing.
//!
//! At the end of DATA the server hands each message to
//! [`Authenticator::authenticate`], which checks
//!
//! * SPF (RFC 7208) for the HELO name and for the MAIL FROM domain (the HELO
//!   name again for the null sender),
//! * every DKIM signature (RFC 6376; at most ten per message),
//! * the ARC chain (RFC 8617),
//! * DMARC (RFC 7489 / RFC 9989) for the RFC 5322 From domain,
//!
//! and returns an [`AuthVerdict`]. The server then removes forged results
//! that claim our name ([`strip_forged_results`]), prepends
//! [`AuthVerdict::authentication_results`], and applies
//! [`AuthVerdict::dmarc_action`] under the owner's
//! [`UserSettings`](crate::model::UserSettings): refusing with
//! [`DMARC_REJECTED`], quarantining, or tagging the subject. In transparent
//! forward mode [`Authenticator::arc_seal`] adds our ARC set before the
//! message leaves.
//!
//! Decisions:
//!
//! * Only a DMARC `fail` acts. DNS trouble (`temperror`) never rejects a
//!   message; neither does `permerror`.
//! * A passing ARC chain does not rescue a DMARC failure: anyone can seal a
//!   chain, and we keep no list of trusted sealers.
//! * A From field naming several domains is judged by the worst of them.
//! * The work is bounded: ten DKIM signatures, 128 signed header names per
//!   signature, 50 ARC sets, SPF's ten DNS-querying terms, and — with the
//!   system resolver — 5 s per DNS query and a time limit on the whole check
//!   (15 s by default). What the limit cuts short is `temperror`.
//!
//! DNS comes from the system resolver ([`Authenticator::system`]) or, in
//! tests, from a [`StaticDns`]
//! ([`Authenticator::from_static`]):
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::auth::{AuthInput, Authenticator, DmarcAction, Verdict};
//! use smtpy_core::dns::StaticDns;
//! use smtpy_core::model::UserSettings;
//!
//! let dns = Arc::new(StaticDns::new());
//! dns.add_txt("sender.example", "v=spf1 ip4:192.0.2.0/24 -all");
//! dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
//! let auth = Authenticator::from_static(dns);
//!
//! let sender = EmailAddress::parse("bob@sender.example")?;
//! let message = b"From: bob@sender.example\r\nSubject: hi\r\n\r\nhello\r\n";
//! let mut input = AuthInput {
//!     message,
//!     peer: "192.0.2.7".parse()?,
//!     helo: "mail.sender.example",
//!     mail_from: Some(&sender),
//!     authserv_id: "mx.alias.example",
//! };
//! let verdict = auth.authenticate(&input).await;
//! assert_eq!(verdict.spf_mail_from, Verdict::Pass);
//! assert_eq!(verdict.dmarc, Verdict::Pass); // aligned SPF
//!
//! input.peer = "198.51.100.1".parse()?;
//! let verdict = auth.authenticate(&input).await;
//! assert_eq!(verdict.spf_mail_from, Verdict::Fail);
//! assert_eq!(verdict.dmarc, Verdict::Fail);
//! assert_eq!(verdict.dmarc_action(&UserSettings::default()), DmarcAction::Reject);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod check;
mod resolver;
mod seal;
mod strip;
mod verdict;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::address::EmailAddress;
use crate::dkim::SigningKey;
use crate::dns::StaticDns;
use crate::reply::Reply;

pub use strip::strip_forged_results;
pub use verdict::{AuthVerdict, DkimCheck, DmarcAction, DmarcPolicy, UnknownVerdict, Verdict};

/// `550 5.7.1`: the message failed DMARC and the sender's domain asks for
/// rejection (and the owner lets that stand).
pub const DMARC_REJECTED: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Message rejected: it fails the DMARC policy of the sender's domain",
);

/// The default time limit on one [`Authenticator::authenticate`] call with
/// the system resolver.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(15);

/// Why authentication could not be set up or a seal made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The system resolver could not be configured (no usable
    /// `/etc/resolv.conf`, …).
    #[error("DNS resolver unavailable: {0}")]
    Resolver(String),
    /// The message has no header block to seal.
    #[error("the message has no header fields")]
    Malformed,
    /// The message's ARC chain (with this verdict) cannot be extended: it
    /// failed, is inconsistent with the verdict, or is already 50 sets long.
    /// Forward the message without a new set.
    #[error("the ARC chain cannot be extended (arc={0})")]
    ChainNotSealable(Verdict),
    /// Signing failed.
    #[error("ARC sealing failed: {0}")]
    Seal(String),
}

/// What [`Authenticator::authenticate`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The message as received (header block and body, CRLF line ends).
    pub message: &'a [u8],
    /// The connecting client's address.
    pub peer: IpAddr,
    /// The name the client gave in HELO/EHLO.
    pub helo: &'a str,
    /// The envelope sender; `None` for the null sender `<>`.
    pub mail_from: Option<&'a EmailAddress>,
    /// Our host name: the authserv-id of the results we write, and SPF's
    /// receiving host (`%{r}`).
    pub authserv_id: &'a str,
}

/// Checks incoming mail against the DNS. Cheap to clone and share: the
/// resolver (with its cache) lives behind an [`Arc`].
#[derive(Clone)]
pub struct Authenticator {
    backend: Arc<resolver::Backend>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "dns",
                &if self.backend.records.is_some() {
                    "static"
                } else {
                    "system"
                },
            )
            .field("time_limit", &self.backend.time_limit)
            .finish()
    }
}

impl Authenticator {
    /// Uses the system resolver (hickory, configured from
    /// `/etc/resolv.conf`), each query limited to two attempts of 2.5 s, and
    /// the whole check to [`DEFAULT_TIME_LIMIT`]. Lookups need a Tokio
    /// runtime with timers enabled.
    ///
    /// # Errors
    /// [`AuthError::Resolver`] when the system configuration cannot be read.
    pub fn system() -> Result<Self, AuthError> {
        Ok(Self {
            backend: Arc::new(resolver::Backend {
                resolver: Some(resolver::system_resolver()?),
                records: None,
                time_limit: Some(DEFAULT_TIME_LIMIT),
            }),
        })
    }

    /// Answers every lookup from `records` and never touches the network:
    /// TXT records (SPF, DKIM keys, DMARC, ARC keys; the record type is
    /// chosen by the name: `_dmarc.<domain>`, `<selector>._domainkey.<domain>`,
    /// otherwise SPF),
    /// A/AAAA and MX records. A name without records is NXDOMAIN for TXT
    /// lookups and an empty answer (NODATA) for address and MX lookups, so
    /// an SPF `exists:` term matches any name here. There are no PTR
    /// records (`ptr` never matches). Records added to `records` later are
    /// seen by later checks. No time limit applies unless
    /// [`with_time_limit`](Self::with_time_limit) sets one.
    #[must_use]
    pub fn from_static(records: Arc<StaticDns>) -> Self {
        // The resolver behind the static answers has no name servers; it is
        // only reached if a lookup escapes them, and then fails at once.
        // Building it cannot fail in practice (it would only if TLS setup
        // did); without it every check is `temperror`.
        let resolver = resolver::offline_resolver().ok();
        Self {
            backend: Arc::new(resolver::Backend {
                resolver,
                records: Some(records),
                time_limit: None,
            }),
        }
    }

    /// The same DNS with a different limit on the duration of one
    /// [`authenticate`](Self::authenticate) call (`None`: no limit). A
    /// limit needs a Tokio runtime with timers enabled.
    #[must_use]
    pub fn with_time_limit(self, limit: Option<Duration>) -> Self {
        let backend = resolver::Backend {
            resolver: self.backend.resolver.clone(),
            records: self.backend.records.clone(),
            time_limit: limit,
        };
        Self {
            backend: Arc::new(backend),
        }
    }

    /// Authenticates one message. Never fails: DNS trouble and time limits
    /// show as `temperror` verdicts, hostile input as `fail`, `neutral`,
    /// `permerror` or `none`.
    pub async fn authenticate(&self, input: &AuthInput<'_>) -> AuthVerdict {
        check::authenticate(&self.backend, input).await
    }

    /// The ARC set (ARC-Seal, ARC-Message-Signature and
    /// ARC-Authentication-Results lines, each CRLF-terminated, in that
    /// order) to prepend to `message` when forwarding it, sealed by `key`
    /// for `key.domain()` and chaining onto the message's existing ARC sets.
    ///
    /// `verdict` must be what [`authenticate`](Self::authenticate) gave for
    /// these same bytes; its results become the ARC-Authentication-Results
    /// (under `authserv_id`), and its `arc` verdict the chain validation:
    /// `none` starts a chain (`cv=none`), `pass` extends one (`cv=pass`).
    /// The message must not change after sealing, except by prepending
    /// header fields the signature does not cover.
    ///
    /// # Errors
    /// [`AuthError::ChainNotSealable`] when the chain failed (or cannot
    /// be validated, or is full), [`AuthError::Malformed`] without a header
    /// block, [`AuthError::Seal`] when signing fails.
    pub async fn arc_seal(
        &self,
        message: &[u8],
        verdict: &AuthVerdict,
        key: &SigningKey,
        authserv_id: &str,
    ) -> Result<String, AuthError> {
        seal::arc_seal(message, verdict, key, authserv_id)
    }
}
