//! The Sender Rewriting Scheme (SRS): envelope senders for forwarded mail.
//!
//! When smtpy forwards mail for `shop@alias.example` to a mailbox, the
//! original envelope sender (`bob@sender.example`) cannot be kept: the
//! mailbox provider would check `sender.example`'s SPF record against *our*
//! IP address and fail it. SRS replaces the sender with an address on our own
//! SRS domain that encodes the original one, signed so that only bounces to
//! addresses we really generated are relayed back:
//!
//! ```text
//! bob@sender.example  ──forward──▶  SRS0=a1b2c3d=xq=sender.example=bob@srs.alias.example
//!                     ◀──reverse──  (bounce arrives for the SRS0 address)
//! ```
//!
//! ```
//! use smtpy_core::address::{DomainName, EmailAddress};
//! use smtpy_core::srs::{Srs, SrsKey};
//! use smtpy_core::time::Timestamp;
//!
//! let srs = Srs::new(DomainName::parse("srs.alias.example")?, SrsKey::new('a', [7; 32])?);
//! let now = Timestamp::from_unix_secs(1_700_000_000);
//! let sender = EmailAddress::parse("bob@sender.example")?;
//! let rewritten = srs.forward(&sender, now)?;
//! assert!(rewritten.local_part().as_str().starts_with("SRS0="));
//! assert_eq!(rewritten.domain().as_ascii(), "srs.alias.example");
//! assert_eq!(srs.reverse(&rewritten, now)?, sender);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Address format
//!
//! ```text
//! SRS0=<hash>=<TT>=<original-domain>=<original-local>@<srs-domain>
//! SRS1=<hash>=<first-forwarder-domain>=<rest>@<srs-domain>
//! ```
//!
//! * `<hash>` is one key-id character followed by [`HASH_LEN`] base32
//!   characters: the first [`HASH_BITS`] bits of an HMAC-SHA256 over the
//!   other fields. The key id lets secrets rotate: addresses signed with a
//!   previous key keep reversing while that key is configured
//!   ([`Srs::with_previous`]).
//! * `<TT>` is the day of signing, days since 1970-01-01 modulo 1024, as two
//!   base32 characters. Addresses older than [`Srs::max_age_days`] are
//!   refused. The counter wraps every 1024 days (2.8 years), so an address
//!   exactly 1024·n + k days old is indistinguishable from one k days old;
//!   with a 21-day window this admits a 2.8-year-old address for 21 days of
//!   every 1024, still signed with a key that should long have been retired.
//! * `<original-domain>` is the A-label form, so an internationalised domain
//!   alone never makes the SRS address need SMTPUTF8.
//! * `<original-local>` is the *content* of the original local part (without
//!   the quotes of a quoted string), case preserved. When the resulting local
//!   part is not a valid dot-string it is written as a quoted string, e.g.
//!   `"SRS0=…=example.com=john doe"@srs.alias.example`.
//!
//! **SRS1.** When the sender is already an SRS0 or SRS1 address of another
//! forwarder, wrapping it again would grow the address at every hop. We follow
//! the usual SRS1 convention instead: the new address names only the *first*
//! forwarder and keeps the rest of its SRS0 address opaque:
//!
//! ```text
//! SRS0=HHHH=TT=orig.example=bob@fwd1.example  ─▶  SRS1=kxxxxxx=fwd1.example==HHHH=TT=orig.example=bob@ours
//! SRS1=HHHH=fwd1.example==HHHH=TT=…@fwd2.example  ─▶  SRS1=kxxxxxx=fwd1.example==HHHH=TT=…@ours
//! ```
//!
//! (the doubled `=` is our separator followed by the first forwarder's
//! separator). An SRS1 address reverses to the SRS0 address at the first
//! forwarder, which checks its own hash and age. SRS1 carries no timestamp.
//!
//! # Case
//!
//! Mail systems may change the case of an address. Everything hashed is
//! lower-cased first (Unicode-aware, like [`EmailAddress::canonical`]), base32
//! is read in either case, and key ids are case-insensitive, so an address
//! that was upper- or lower-cased on the way still reverses — to the same
//! original up to case, which [`EmailAddress`] equality ignores.
//!
//! # Length
//!
//! A local part holds at most 64 octets. The SRS0 overhead is
//! 17 octets plus the original domain, so long senders do not fit:
//! [`Srs::forward`] then returns [`SrsError::TooLong`]. The caller falls back
//! to a bounce address of its own that refers to the queued message (a
//! VERP-style signed bounce address), or as a last resort sends with the null
//! reverse-path `<>`, which means bounces for that delivery are lost.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::address::{AddressError, DomainName, EmailAddress, LocalPart};
use crate::time::Timestamp;

/// Length in bytes of an [`SrsKey`] secret.
pub const SRS_KEY_LEN: usize = 32;

/// Number of base32 hash characters after the key id in the hash field.
///
/// Six characters carry [`HASH_BITS`] = 30 bits: a forger needs about 2^29
/// attempts (each one an SMTP `RCPT TO` we answer with 550) to hit a valid
/// hash for an address of their choice, while the whole hash field (key id
/// included) stays 7 octets of the 64 a local part may hold. libsrs2's
/// default is 24 bits.
pub const HASH_LEN: usize = 6;

/// Bits of HMAC-SHA256 output kept in the hash field (5 per base32 character).
pub const HASH_BITS: u32 = 5 * HASH_LEN as u32;

/// Default maximum age of an SRS0 address, in days.
///
/// Bounces are generated within the remote MTA's queue lifetime — 5 days by
/// default in Postfix and Sendmail, up to 7 in common Exim setups — so three
/// weeks leaves room for slow and retried bounces while keeping replayed or
/// harvested addresses useful for only a short while. It is also the default
/// of libsrs2 and postsrsd, so mixed installations behave alike.
pub const DEFAULT_MAX_AGE_DAYS: u16 = 21;

/// Largest accepted [`Srs::max_age_days`]; larger values are clamped.
///
/// The day counter wraps every 1024 days, and one day at the top of the cycle
/// is reserved for clock skew ([`FUTURE_SKEW_DAYS`]), so a longer window would
/// overlap itself.
pub const MAX_AGE_DAYS_LIMIT: u16 = 1000;

/// How many days in the future an SRS0 timestamp may lie and still be
/// accepted: instances whose clocks disagree around midnight must accept
/// each other's addresses.
pub const FUTURE_SKEW_DAYS: u16 = 1;

/// The day counter's modulus: two base32 characters.
const DAY_MODULUS: u16 = 1024;

/// RFC 4648 base32 alphabet, lower case (the case we write; we read both).
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why an SRS key could not be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsKeyError {
    /// The key id is not a single ASCII letter or digit.
    #[error("an SRS key id must be one ASCII letter or digit")]
    InvalidId,
    /// The secret text was not valid base64.
    #[error("invalid base64")]
    Base64,
    /// The secret was not exactly [`SRS_KEY_LEN`] bytes.
    #[error("an SRS secret must be {SRS_KEY_LEN} bytes, got {len}")]
    KeyLength {
        /// The length supplied.
        len: usize,
    },
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// Why an address could not be SRS-rewritten or reversed.
///
/// For [`Srs::reverse`] at `RCPT TO` time, every variant means "no such
/// recipient": answer `550 5.1.1` (or `5.7.1` for [`BadHash`](Self::BadHash)
/// and [`UnknownKey`](Self::UnknownKey), which suggest forgery). The variants
/// exist for logs and metrics.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// The address is not an SRS address on our SRS domain.
    #[error("not an SRS address on this SRS domain")]
    NotSrs,
    /// It looks like an SRS address but a field is missing or invalid.
    #[error("malformed SRS address")]
    Malformed,
    /// The hash names a key id we do not hold (retired or forged).
    #[error("SRS address signed with unknown key id {id:?}")]
    UnknownKey {
        /// The key id found in the address (lower case).
        id: char,
    },
    /// The hash does not match: forged or damaged.
    #[error("SRS hash does not match")]
    BadHash,
    /// The SRS0 timestamp is older than the maximum age (or too far in the
    /// future).
    #[error("SRS address has expired")]
    Expired,
    /// The rewritten local part would exceed 64 octets (or the address 254);
    /// see the module documentation for the fallback.
    #[error("the SRS address would be too long")]
    TooLong,
}

/// An SRS signing key: a one-character id and a 256-bit secret.
///
/// The id is an ASCII letter or digit, case-insensitive (stored lower case);
/// it is written into every address so the right key is found on reversal.
/// `Debug` prints the id only, never the secret.
#[derive(Clone)]
pub struct SrsKey {
    id: char,
    key: hmac::Key,
}

impl SrsKey {
    /// A key from its id and raw secret.
    ///
    /// # Errors
    ///
    /// [`SrsKeyError::InvalidId`] when `id` is not an ASCII letter or digit.
    pub fn new(id: char, secret: [u8; SRS_KEY_LEN]) -> Result<SrsKey, SrsKeyError> {
        if !id.is_ascii_alphanumeric() {
            return Err(SrsKeyError::InvalidId);
        }
        Ok(SrsKey {
            id: id.to_ascii_lowercase(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    /// A key from standard (padded) base64 text; surrounding whitespace is
    /// trimmed, so a key file ending in a newline works.
    ///
    /// # Errors
    ///
    /// [`SrsKeyError::Base64`], [`SrsKeyError::KeyLength`] or
    /// [`SrsKeyError::InvalidId`].
    pub fn from_base64(id: char, text: &str) -> Result<SrsKey, SrsKeyError> {
        let mut decoded = BASE64
            .decode(text.trim())
            .map_err(|_| SrsKeyError::Base64)?;
        let secret: Result<[u8; SRS_KEY_LEN], _> = decoded.as_slice().try_into();
        let len = decoded.len();
        decoded.fill(0);
        std::hint::black_box(&decoded);
        let mut secret = secret.map_err(|_| SrsKeyError::KeyLength { len })?;
        let key = SrsKey::new(id, secret);
        secret.fill(0);
        std::hint::black_box(&secret);
        key
    }

    /// A fresh random key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`SrsKeyError::Random`] if the RNG fails, [`SrsKeyError::InvalidId`].
    pub fn generate(id: char) -> Result<SrsKey, SrsKeyError> {
        let mut secret = [0u8; SRS_KEY_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| SrsKeyError::Random)?;
        let key = SrsKey::new(id, secret);
        secret.fill(0);
        std::hint::black_box(&secret);
        key
    }

    /// The key id (lower case).
    #[must_use]
    pub fn id(&self) -> char {
        self.id
    }

    /// A subkey for another kind of signed address (`purpose` such as
    /// `"reverse-alias"` or `"bounce"`), so one operator secret signs every
    /// kind without a token of one kind verifying as another.
    #[must_use]
    pub(crate) fn derive(&self, purpose: &str) -> hmac::Key {
        let tag = hmac::sign(&self.key, format!("smtpy/{purpose}").as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }
}

impl fmt::Debug for SrsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrsKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The SRS rewriter for one SRS domain: signs with the current key, verifies
/// with the current and any previous keys.
///
/// Cheap to share (`&Srs` from many tasks); it holds no mutable state.
#[derive(Debug, Clone)]
pub struct Srs {
    domain: DomainName,
    current: SrsKey,
    previous: Vec<SrsKey>,
    max_age_days: u16,
}

impl Srs {
    /// An SRS rewriter producing addresses on `domain`, signing with
    /// `current`, with the default maximum age ([`DEFAULT_MAX_AGE_DAYS`]).
    #[must_use]
    pub fn new(domain: DomainName, current: SrsKey) -> Srs {
        Srs {
            domain,
            current,
            previous: Vec::new(),
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }

    /// Also accept addresses signed with `key` (a key retired by rotation).
    /// Previous keys verify, never sign. Keep a retired key configured for at
    /// least the maximum age after the rotation.
    ///
    /// If several keys share an id, each is tried when verifying.
    #[must_use]
    pub fn with_previous(mut self, key: SrsKey) -> Srs {
        self.previous.push(key);
        self
    }

    /// Refuse SRS0 addresses older than `days` days (default
    /// [`DEFAULT_MAX_AGE_DAYS`], clamped to [`MAX_AGE_DAYS_LIMIT`]). An
    /// address signed `days` days ago is still accepted; `0` accepts only
    /// addresses signed today (UTC) — or up to [`FUTURE_SKEW_DAYS`] ahead.
    #[must_use]
    pub fn max_age_days(mut self, days: u16) -> Srs {
        self.max_age_days = days.min(MAX_AGE_DAYS_LIMIT);
        self
    }

    /// The SRS domain.
    #[must_use]
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The configured maximum age in days.
    #[must_use]
    pub fn max_age(&self) -> u16 {
        self.max_age_days
    }

    /// Whether `local` (a local part as text, optionally still quoted) looks
    /// like an SRS0 or SRS1 local part: `SRS0` or `SRS1` in any case,
    /// followed by `=`, `+` or `-` and at least one more character.
    ///
    /// A cheap syntactic test; it checks no hash.
    #[must_use]
    pub fn is_srs(local: &str) -> bool {
        let local = local.strip_prefix('"').unwrap_or(local);
        srs_kind(local).is_some()
    }

    /// The envelope sender to use when forwarding mail from `sender`.
    ///
    /// * An ordinary sender becomes `SRS0=…@<srs-domain>`.
    /// * An SRS0 or SRS1 sender of another forwarder becomes
    ///   `SRS1=…@<srs-domain>` naming the first forwarder (see the module
    ///   documentation). A sender that only looks like SRS1 but cannot be
    ///   parsed as one is treated as an ordinary sender.
    /// * A sender already on our SRS domain is returned unchanged.
    ///
    /// # Errors
    ///
    /// [`SrsError::TooLong`] when the result would not fit in a local part
    /// (64 octets) or an address (254 octets).
    pub fn forward(&self, sender: &EmailAddress, now: Timestamp) -> Result<EmailAddress, SrsError> {
        if sender.domain() == &self.domain {
            return Ok(sender.clone());
        }
        let content = local_content(sender.local_part());
        if let Some((first, rest)) = foreign_chain(&content, sender.domain()) {
            return self.srs1(&first, rest);
        }
        self.srs0(sender.domain(), &content, now)
    }

    /// The address an SRS address on our domain stands for: the original
    /// sender for SRS0, the first forwarder's SRS0 address for SRS1.
    ///
    /// Checks, in order: our domain and SRS syntax ([`SrsError::NotSrs`]),
    /// structure ([`SrsError::Malformed`]), key id
    /// ([`SrsError::UnknownKey`]), hash, compared in constant time
    /// ([`SrsError::BadHash`]), and for SRS0 the age
    /// ([`SrsError::Expired`]).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn reverse(
        &self,
        address: &EmailAddress,
        now: Timestamp,
    ) -> Result<EmailAddress, SrsError> {
        if address.domain() != &self.domain {
            return Err(SrsError::NotSrs);
        }
        let content = local_content(address.local_part());
        let kind = srs_kind(&content).ok_or(SrsError::NotSrs)?;
        // `srs_kind` checked five ASCII characters.
        let body = content.get(5..).ok_or(SrsError::Malformed)?;
        let (hash_field, rest) = body.split_once('=').ok_or(SrsError::Malformed)?;
        let (id, given) = parse_hash_field(hash_field)?;
        let parsed = match kind {
            Kind::Srs0 => {
                let mut fields = rest.splitn(3, '=');
                let (Some(tt), Some(domain), Some(local)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(SrsError::Malformed);
                };
                let day = decode_day(tt).ok_or(SrsError::Malformed)?;
                let domain = DomainName::parse(domain).map_err(|_| SrsError::Malformed)?;
                let local_part = local_from_content(local).map_err(|_| SrsError::Malformed)?;
                Parsed::Srs0 {
                    day,
                    domain,
                    local,
                    local_part,
                }
            }
            Kind::Srs1 => {
                let (first, opaque) = rest.split_once('=').ok_or(SrsError::Malformed)?;
                if opaque.is_empty() {
                    return Err(SrsError::Malformed);
                }
                let first = DomainName::parse(first).map_err(|_| SrsError::Malformed)?;
                let mut inner = String::with_capacity(4 + opaque.len());
                inner.push_str("SRS0");
                inner.push_str(opaque);
                let local_part = local_from_content(&inner).map_err(|_| SrsError::Malformed)?;
                Parsed::Srs1 {
                    first,
                    opaque,
                    local_part,
                }
            }
        };

        let keys = self.keys_with_id(id);
        if keys.is_empty() {
            return Err(SrsError::UnknownKey { id });
        }
        // Every candidate key is tried (no early exit).
        let ok = keys.iter().fold(false, |ok, key| {
            let expected = match &parsed {
                Parsed::Srs0 {
                    day, domain, local, ..
                } => srs0_hash(key, &encode_day(*day), domain.as_ascii(), local),
                Parsed::Srs1 { first, opaque, .. } => srs1_hash(key, first.as_ascii(), opaque),
            };
            ok | hash_matches(&expected, &given)
        });
        if !ok {
            return Err(SrsError::BadHash);
        }
        match parsed {
            Parsed::Srs0 {
                day,
                domain,
                local_part,
                ..
            } => {
                if !self.fresh(day, now) {
                    return Err(SrsError::Expired);
                }
                EmailAddress::new(local_part, domain).map_err(|_| SrsError::Malformed)
            }
            Parsed::Srs1 {
                first, local_part, ..
            } => EmailAddress::new(local_part, first).map_err(|_| SrsError::Malformed),
        }
    }

    /// Builds `SRS0=<hash>=<TT>=<domain>=<local>@<srs-domain>`.
    fn srs0(
        &self,
        domain: &DomainName,
        local: &str,
        now: Timestamp,
    ) -> Result<EmailAddress, SrsError> {
        let tt = encode_day(day_of(now));
        let hash = srs0_hash(&self.current, &tt, domain.as_ascii(), local);
        let mut content = String::with_capacity(17 + domain.as_ascii().len() + local.len());
        content.push_str("SRS0=");
        push_hash_field(&mut content, self.current.id, &hash);
        content.push('=');
        content.push_str(&tt);
        content.push('=');
        content.push_str(domain.as_ascii());
        content.push('=');
        content.push_str(local);
        self.on_our_domain(&content)
    }

    /// Builds `SRS1=<hash>=<first>=<opaque>@<srs-domain>`.
    fn srs1(&self, first: &DomainName, opaque: &str) -> Result<EmailAddress, SrsError> {
        let hash = srs1_hash(&self.current, first.as_ascii(), opaque);
        let mut content = String::with_capacity(14 + first.as_ascii().len() + opaque.len());
        content.push_str("SRS1=");
        push_hash_field(&mut content, self.current.id, &hash);
        content.push('=');
        content.push_str(first.as_ascii());
        content.push('=');
        content.push_str(opaque);
        self.on_our_domain(&content)
    }

    /// `content` (unquoted) as a local part on the SRS domain.
    fn on_our_domain(&self, content: &str) -> Result<EmailAddress, SrsError> {
        let local = local_from_content(content).map_err(too_long_or_malformed)?;
        EmailAddress::new(local, self.domain.clone()).map_err(too_long_or_malformed)
    }

    /// All keys that may have signed with `id`, current first.
    fn keys_with_id(&self, id: char) -> Vec<&SrsKey> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .filter(|k| k.id == id)
            .collect()
    }

    /// Whether an SRS0 address stamped `day` (mod 1024) is within the
    /// maximum age at `now`, allowing [`FUTURE_SKEW_DAYS`] of clock skew.
    fn fresh(&self, day: u16, now: Timestamp) -> bool {
        let today = day_of(now);
        let age = (today + DAY_MODULUS - day) % DAY_MODULUS;
        age <= self.max_age_days || age >= DAY_MODULUS - FUTURE_SKEW_DAYS
    }
}

/// Maps an address error from building our own address to an SRS error.
fn too_long_or_malformed(e: AddressError) -> SrsError {
    match e {
        AddressError::LocalPartTooLong { .. } | AddressError::AddressTooLong { .. } => {
            SrsError::TooLong
        }
        _ => SrsError::Malformed,
    }
}

/// The fields of an SRS address on our domain, parsed but not yet verified.
enum Parsed<'a> {
    /// `SRS0=<hash>=<TT>=<domain>=<local>`.
    Srs0 {
        /// The day counter.
        day: u16,
        /// The original domain.
        domain: DomainName,
        /// The original local part's content, as hashed.
        local: &'a str,
        /// The original local part.
        local_part: LocalPart,
    },
    /// `SRS1=<hash>=<first>=<opaque>`.
    Srs1 {
        /// The first forwarder's domain.
        first: DomainName,
        /// The rest of its SRS0 address, as hashed.
        opaque: &'a str,
        /// `SRS0<opaque>`, the local part to reverse to.
        local_part: LocalPart,
    },
}

/// The two SRS flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Srs0,
    Srs1,
}

/// `SRS0` / `SRS1` (any case), a separator (`=`, `+`, `-`) and at least one
/// more character.
fn srs_kind(content: &str) -> Option<Kind> {
    let b = content.as_bytes();
    if b.len() < 6 || !b[..3].eq_ignore_ascii_case(b"SRS") || !matches!(b[4], b'=' | b'+' | b'-') {
        return None;
    }
    match b[3] {
        b'0' => Some(Kind::Srs0),
        b'1' => Some(Kind::Srs1),
        _ => None,
    }
}

/// For a sender that is another forwarder's SRS address, the first
/// forwarder's domain and the opaque rest (which starts with the first
/// forwarder's separator). `None` for ordinary senders and for SRS1 senders
/// that do not parse (they are then wrapped as ordinary senders).
fn foreign_chain<'a>(content: &'a str, domain: &DomainName) -> Option<(DomainName, &'a str)> {
    match srs_kind(content)? {
        // "SRS0=HHH=TT=d=l" → rest "=HHH=TT=d=l" at the sender's domain.
        Kind::Srs0 => Some((domain.clone(), content.get(4..)?)),
        // "SRS1=HHH=first==HHH=TT=d=l" → first, rest "=HHH=TT=d=l".
        Kind::Srs1 => {
            let body = content.get(5..)?;
            let (hash, rest) = body.split_once('=')?;
            let (first, opaque) = rest.split_once('=')?;
            if hash.is_empty() || opaque.is_empty() {
                return None;
            }
            let first = DomainName::parse(first).ok()?;
            Some((first, opaque))
        }
    }
}

/// The content of a local part: the canonical text, without the quotes and
/// escapes of a quoted string.
fn local_content(local: &LocalPart) -> Cow<'_, str> {
    let text = local.as_str();
    if !local.is_quoted() {
        return Cow::Borrowed(text);
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(e) = chars.next() {
                out.push(e);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The local part whose content is `content`: quoting it and letting the
/// parser drop the quotes when the content is a dot-string gives exactly the
/// canonical form, whatever the content.
fn local_from_content(content: &str) -> Result<LocalPart, AddressError> {
    let mut quoted = String::with_capacity(content.len() + 2);
    quoted.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    LocalPart::parse(&quoted)
}

/// Days since the epoch, modulo 1024.
fn day_of(now: Timestamp) -> u16 {
    // rem_euclid of an i32 by 1024 is in 0..1024.
    now.day()
        .days_since_epoch()
        .rem_euclid(i32::from(DAY_MODULUS)) as u16
}

/// Two lower-case base32 characters for a day counter (< 1024).
fn encode_day(day: u16) -> String {
    let hi = BASE32[usize::from((day >> 5) & 31)];
    let lo = BASE32[usize::from(day & 31)];
    let mut s = String::with_capacity(2);
    s.push(char::from(hi));
    s.push(char::from(lo));
    s
}

/// Reads two base32 characters (either case) as a day counter.
fn decode_day(tt: &str) -> Option<u16> {
    match tt.as_bytes() {
        [hi, lo] => Some((u16::from(base32_value(*hi)?) << 5) | u16::from(base32_value(*lo)?)),
        _ => None,
    }
}

/// The value of one base32 character, either case.
fn base32_value(c: u8) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    BASE32
        .iter()
        .position(|&b| b == c)
        .and_then(|p| u8::try_from(p).ok())
}

/// Splits the hash field into the key id (lower case) and the hash
/// characters (lower case).
fn parse_hash_field(field: &str) -> Result<(char, [u8; HASH_LEN]), SrsError> {
    let bytes = field.as_bytes();
    let Some((&id, hash)) = bytes.split_first() else {
        return Err(SrsError::Malformed);
    };
    if !id.is_ascii_alphanumeric() || hash.len() != HASH_LEN {
        return Err(SrsError::Malformed);
    }
    let mut out = [0u8; HASH_LEN];
    for (slot, &c) in out.iter_mut().zip(hash) {
        if base32_value(c).is_none() {
            return Err(SrsError::Malformed);
        }
        *slot = c.to_ascii_lowercase();
    }
    Ok((char::from(id.to_ascii_lowercase()), out))
}

/// Appends `<id><hash>`.
fn push_hash_field(out: &mut String, id: char, hash: &[u8; HASH_LEN]) {
    out.push(id);
    out.extend(hash.iter().map(|&b| char::from(b)));
}

/// HMAC over NUL-separated, lower-cased fields (no field can contain NUL:
/// local parts and domains exclude control characters), truncated to
/// [`HASH_BITS`] bits and written in lower-case base32. The SRS kind and the
/// key id are part of the input, so an SRS0 hash never validates an SRS1
/// address and vice versa.
fn mac(key: &SrsKey, kind: &[u8], fields: &[&str]) -> [u8; HASH_LEN] {
    let mut ctx = hmac::Context::with_key(&key.key);
    ctx.update(kind);
    let mut id = [0u8; 4];
    ctx.update(b"\0");
    ctx.update(key.id.encode_utf8(&mut id).as_bytes());
    for field in fields {
        ctx.update(b"\0");
        if field.is_ascii() {
            // Avoid an allocation on the common path.
            for chunk in field.as_bytes().chunks(64) {
                let mut lower = [0u8; 64];
                let lower = &mut lower[..chunk.len()];
                lower.copy_from_slice(chunk);
                lower.make_ascii_lowercase();
                ctx.update(lower);
            }
        } else {
            ctx.update(field.to_lowercase().as_bytes());
        }
    }
    let tag = ctx.sign();
    let t = tag.as_ref();
    let bits = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    let mut out = [0u8; HASH_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 32 - 5 * (i as u32 + 1);
        *slot = BASE32[((bits >> shift) & 31) as usize];
    }
    out
}

/// The SRS0 hash over (TT, original domain, original local content).
fn srs0_hash(key: &SrsKey, tt: &str, domain: &str, local: &str) -> [u8; HASH_LEN] {
    mac(key, b"SRS0", &[tt, domain, local])
}

/// The SRS1 hash over (first forwarder's domain, opaque rest).
fn srs1_hash(key: &SrsKey, first: &str, opaque: &str) -> [u8; HASH_LEN] {
    mac(key, b"SRS1", &[first, opaque])
}

/// Constant-time comparison of two hash fields (no early exit on the first
/// differing byte).
fn hash_matches(expected: &[u8; HASH_LEN], given: &[u8; HASH_LEN]) -> bool {
    let diff = expected
        .iter()
        .zip(given.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_encoding_round_trips() {
        for day in 0..DAY_MODULUS {
            let tt = encode_day(day);
            assert_eq!(decode_day(&tt), Some(day));
            assert_eq!(decode_day(&tt.to_ascii_uppercase()), Some(day));
        }
        assert_eq!(decode_day("a"), None);
        assert_eq!(decode_day("a1"), None);
    }

    #[test]
    fn content_round_trips_through_quoting() {
        for text in ["john.doe", "\"john doe\"", "\"a\\\"b\"", "\".x\""] {
            let local = LocalPart::parse(text).expect("parse");
            let content = local_content(&local);
            let again = local_from_content(&content).expect("again");
            assert_eq!(again.as_str(), local.as_str(), "{text}");
        }
    }
}
