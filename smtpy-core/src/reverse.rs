//! Reverse aliases: the signed addresses that stand for a contact.
//!
//! In alias mode a forwarded message's `From` becomes a *reverse alias* on
//! the alias's domain (`r--…@alias.example`). The owner's reply goes to that
//! address, comes back through smtpy, and is sent on from the alias to the
//! contact. Each reverse alias names one [`Contact`](crate::model::Contact):
//! its local part is the contact's
//! [`reverse_key`](crate::model::Contact::reverse_key).
//!
//! Reverse aliases are **signed**, so `RCPT TO` for a forged or mistyped one
//! is refused by [`ReverseAliases::verify`] without a database lookup; only a
//! token that verifies is looked up with
//! [`find_contact_by_reverse_key`](crate::store::ContactStore::find_contact_by_reverse_key).
//!
//! ```
//! use smtpy_core::address::DomainName;
//! use smtpy_core::reverse::{ReverseAliases, ReverseError};
//! use smtpy_core::srs::SrsKey;
//!
//! let reverse = ReverseAliases::new(SrsKey::new('a', [7; 32])?);
//! let domain = DomainName::parse("alias.example")?;
//! let token = reverse.mint(&domain)?;
//! assert!(ReverseAliases::looks_like(&token));
//! assert_eq!(reverse.verify(&token, &domain), Ok(()));
//! // Relays may change the case of an address.
//! assert_eq!(reverse.verify(&token.to_ascii_uppercase(), &domain), Ok(()));
//! // A token is bound to the domain it was minted for.
//! let other = DomainName::parse("other.example")?;
//! assert_eq!(reverse.verify(&token, &other), Err(ReverseError::BadSignature));
//!
//! let address = ReverseAliases::address(&token, &domain)?;
//! assert_eq!(address.domain(), &domain);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Token format
//!
//! ```text
//! r--  <nonce: 16 base32>  <key id: 1>  <mac: 12 base32>      32 octets
//! r--  c3x7m2kqhd4wz6fa     a            xuqfiw5zunmm
//! ```
//!
//! * [`PREFIX`] `r--` marks reverse aliases. A double hyphen right after one
//!   letter is very unlikely in an alias a person would choose, and alias
//!   creation refuses any local part that starts with it
//!   ([`ReverseAliases::looks_like`]), so a reverse alias and an alias can
//!   never collide.
//! * The nonce is [`NONCE_BITS`] = 80 random bits from the operating
//!   system's CSPRNG: it makes every token unique (a contact's key) and
//!   unguessable.
//! * The key id is the id of the [`SrsKey`] that signed the token (one ASCII
//!   letter or digit), so keys can rotate: tokens signed with a previous key
//!   keep verifying while that key is configured
//!   ([`ReverseAliases::with_previous`]). Reverse aliases live as long as
//!   their contact, so a retired key should stay configured as long as
//!   tokens it signed are in use.
//! * The MAC is the first [`MAC_BITS`] = 60 bits of an HMAC-SHA256, keyed
//!   with the `reverse-alias` subkey of the [`SrsKey`] (so an SRS hash never
//!   validates a reverse alias or the other way round), over the nonce, the
//!   key id and the alias domain's A-label form. A token minted for one
//!   domain does not verify on another.
//!
//! Everything is lower-case base32 (RFC 4648 alphabet `a–z2–7`), because
//! mail systems may fold the case of an address: verification reads either
//! case, and [`ReverseAliases::lookup_key`] gives the stored form. The token
//! is a plain dot-atom (no dots at all), well within the 64 octets of a
//! local part.
//!
//! Any single-character change to a token — a substitution (other than of
//! letter case), a deletion or an insertion — is refused: a deletion or
//! insertion changes the fixed length, a change to the prefix makes it
//! [`ReverseError::NotReverse`], to the key id [`ReverseError::UnknownKey`]
//! (or a failed MAC), and to the nonce or the MAC a MAC mismatch.

use std::fmt;

use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::address::{DomainName, EmailAddress, LocalPart};
use crate::srs::SrsKey;

/// The reserved prefix of every reverse alias (compared case-insensitively).
pub const PREFIX: &str = "r--";

/// Random bits in a token's nonce.
pub const NONCE_BITS: usize = 80;

/// Base32 characters of the nonce (5 bits each).
pub const NONCE_LEN: usize = NONCE_BITS / 5;

/// Bits of HMAC-SHA256 output kept in a token.
///
/// A forger needs about 2^59 attempts (each one an SMTP `RCPT TO` we refuse)
/// to hit a valid MAC, and a valid MAC alone is not enough: the token must
/// also name an existing contact.
pub const MAC_BITS: usize = 60;

/// Base32 characters of the MAC (5 bits each).
pub const MAC_LEN: usize = MAC_BITS / 5;

/// Length in octets of every token: prefix, nonce, key id and MAC.
pub const TOKEN_LEN: usize = PREFIX.len() + NONCE_LEN + 1 + MAC_LEN;

/// The subkey purpose passed to [`SrsKey`]'s derivation.
const PURPOSE: &str = "reverse-alias";

/// RFC 4648 base32 alphabet, lower case.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a reverse-alias token could not be minted, verified or used.
///
/// At `RCPT TO` every variant of [`ReverseAliases::verify`] means "no such
/// recipient" (`550 5.1.1`); the variants exist for logs and metrics.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReverseError {
    /// The local part does not start with the reserved [`PREFIX`].
    #[error("not a reverse alias")]
    NotReverse,
    /// It has the prefix but the wrong length or characters.
    #[error("malformed reverse alias")]
    Malformed,
    /// It names a key id we do not hold (retired or forged).
    #[error("reverse alias signed with unknown key id {id:?}")]
    UnknownKey {
        /// The key id found in the token (lower case).
        id: char,
    },
    /// The MAC does not match: forged, damaged, or minted for another domain.
    #[error("reverse alias signature does not match")]
    BadSignature,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// One verification key: its id and its `reverse-alias` subkey.
#[derive(Clone)]
struct Signer {
    id: char,
    key: hmac::Key,
}

impl Signer {
    fn from_srs_key(key: &SrsKey) -> Signer {
        Signer {
            id: key.id(),
            key: key.derive(PURPOSE),
        }
    }

    /// The MAC characters (lower-case base32) over the lower-cased nonce, the
    /// key id and the domain's A-label form.
    fn mac(&self, nonce: &[u8; NONCE_LEN], domain: &DomainName) -> [u8; MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"r1\0");
        ctx.update(nonce);
        ctx.update(b"\0");
        let mut id = [0u8; 4];
        ctx.update(self.id.encode_utf8(&mut id).as_bytes());
        ctx.update(b"\0");
        ctx.update(domain.as_ascii().as_bytes());
        let tag = ctx.sign();
        let t = tag.as_ref();
        // 60 bits from the first 8 bytes (the tag has 32).
        let mut first = [0u8; 8];
        first.copy_from_slice(&t[..8]);
        let bits = u64::from_be_bytes(first);
        let mut out = [0u8; MAC_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 64 - 5 * (i + 1);
            *slot = BASE32[((bits >> shift) & 31) as usize];
        }
        out
    }
}

/// Mints and verifies reverse-alias tokens: signs with the current key,
/// verifies with the current and any previous keys.
///
/// Cheap to share; it holds no mutable state. `Debug` shows key ids only.
#[derive(Clone)]
pub struct ReverseAliases {
    current: Signer,
    previous: Vec<Signer>,
}

impl fmt::Debug for ReverseAliases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<char> = self.previous.iter().map(|s| s.id).collect();
        f.debug_struct("ReverseAliases")
            .field("current", &self.current.id)
            .field("previous", &previous)
            .finish()
    }
}

impl ReverseAliases {
    /// Signs with `current` (its `reverse-alias` subkey; the same operator
    /// secret as SRS can be used, the two never verify each other's output).
    #[must_use]
    pub fn new(current: SrsKey) -> Self {
        ReverseAliases {
            current: Signer::from_srs_key(&current),
            previous: Vec::new(),
        }
    }

    /// Also accept tokens signed with `key` (a key retired by rotation).
    /// Previous keys verify, never sign. If several keys share an id, each
    /// is tried.
    #[must_use]
    pub fn with_previous(mut self, key: SrsKey) -> Self {
        self.previous.push(Signer::from_srs_key(&key));
        self
    }

    /// A fresh token for a new contact of an alias on `alias_domain`:
    /// [`PREFIX`], an 80-bit random nonce, the current key id and the MAC,
    /// [`TOKEN_LEN`] lower-case octets. Store it as the contact's
    /// `reverse_key`; the reverse alias is
    /// [`address(token, alias_domain)`](Self::address).
    ///
    /// # Errors
    ///
    /// [`ReverseError::Random`] if the system RNG fails.
    pub fn mint(&self, alias_domain: &DomainName) -> Result<String, ReverseError> {
        // 80 bits: 10 random bytes, read 5 bits at a time.
        let mut random = [0u8; NONCE_BITS / 8];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| ReverseError::Random)?;
        let mut nonce = [0u8; NONCE_LEN];
        for (i, slot) in nonce.iter_mut().enumerate() {
            let bit = i * 5;
            let byte = bit / 8;
            let pair = (u16::from(random[byte]) << 8)
                | u16::from(random.get(byte + 1).copied().unwrap_or(0));
            let shift = 16 - 5 - (bit % 8);
            *slot = BASE32[usize::from((pair >> shift) & 31)];
        }
        let mac = self.current.mac(&nonce, alias_domain);
        let mut token = String::with_capacity(TOKEN_LEN);
        token.push_str(PREFIX);
        token.extend(nonce.iter().map(|&b| char::from(b)));
        token.push(self.current.id);
        token.extend(mac.iter().map(|&b| char::from(b)));
        Ok(token)
    }

    /// Checks a local part (as received, any case) against `alias_domain`,
    /// without a database: the prefix ([`ReverseError::NotReverse`]), the
    /// length and alphabet ([`ReverseError::Malformed`]), the key id
    /// ([`ReverseError::UnknownKey`]) and the MAC, compared in constant time
    /// ([`ReverseError::BadSignature`]).
    ///
    /// A token that verifies still has to name an existing contact: look it
    /// up by [`lookup_key`](Self::lookup_key).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn verify(&self, local_part: &str, alias_domain: &DomainName) -> Result<(), ReverseError> {
        if !Self::looks_like(local_part) {
            return Err(ReverseError::NotReverse);
        }
        let (nonce, id, given) = parse(local_part)?;
        let signers: Vec<&Signer> = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .filter(|s| s.id == id)
            .collect();
        if signers.is_empty() {
            return Err(ReverseError::UnknownKey { id });
        }
        // Every candidate key is tried (no early exit).
        let ok = signers.iter().fold(false, |ok, signer| {
            ok | macs_match(&signer.mac(&nonce, alias_domain), &given)
        });
        if ok {
            Ok(())
        } else {
            Err(ReverseError::BadSignature)
        }
    }

    /// Whether `local_part` starts with the reserved [`PREFIX`] (any case).
    /// Such a local part can never be an alias: alias creation refuses it,
    /// and `RCPT TO` treats it as a reverse alias.
    ///
    /// ```
    /// use smtpy_core::reverse::ReverseAliases;
    /// assert!(ReverseAliases::looks_like("R--anything"));
    /// assert!(!ReverseAliases::looks_like("r-shop"));
    /// ```
    #[must_use]
    pub fn looks_like(local_part: &str) -> bool {
        local_part
            .as_bytes()
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX.as_bytes()))
    }

    /// The key a verified token is stored under (a contact's
    /// `reverse_key`): the token lower-cased, as [`mint`](Self::mint)
    /// produced it.
    #[must_use]
    pub fn lookup_key(local_part: &str) -> String {
        local_part.to_ascii_lowercase()
    }

    /// The reverse-alias address `token@alias_domain`, token lower-cased.
    /// Checks the token's shape (prefix, length, alphabet) but not its MAC,
    /// which needs the keys ([`verify`](Self::verify)).
    ///
    /// # Errors
    ///
    /// [`ReverseError::NotReverse`] or [`ReverseError::Malformed`] (also when
    /// the address would be too long for `alias_domain`).
    pub fn address(token: &str, alias_domain: &DomainName) -> Result<EmailAddress, ReverseError> {
        if !Self::looks_like(token) {
            return Err(ReverseError::NotReverse);
        }
        parse(token)?;
        let local =
            LocalPart::parse(&Self::lookup_key(token)).map_err(|_| ReverseError::Malformed)?;
        EmailAddress::new(local, alias_domain.clone()).map_err(|_| ReverseError::Malformed)
    }
}

/// Splits a token that has the prefix into its lower-cased nonce, key id
/// and MAC, checking length and alphabet.
fn parse(token: &str) -> Result<([u8; NONCE_LEN], char, [u8; MAC_LEN]), ReverseError> {
    let bytes = token.as_bytes();
    if bytes.len() != TOKEN_LEN {
        return Err(ReverseError::Malformed);
    }
    let body = &bytes[PREFIX.len()..];
    let (nonce_part, rest) = body.split_at(NONCE_LEN);
    let (id, mac_part) = rest.split_at(1);
    let mut nonce = [0u8; NONCE_LEN];
    read_base32(nonce_part, &mut nonce)?;
    let mut mac = [0u8; MAC_LEN];
    read_base32(mac_part, &mut mac)?;
    let id = id[0];
    if !id.is_ascii_alphanumeric() {
        return Err(ReverseError::Malformed);
    }
    Ok((nonce, char::from(id.to_ascii_lowercase()), mac))
}

/// Copies base32 characters (either case) into `out`, lower-cased.
fn read_base32(input: &[u8], out: &mut [u8]) -> Result<(), ReverseError> {
    for (slot, &c) in out.iter_mut().zip(input) {
        let lower = c.to_ascii_lowercase();
        if !BASE32.contains(&lower) {
            return Err(ReverseError::Malformed);
        }
        *slot = lower;
    }
    Ok(())
}

/// Constant-time comparison (no early exit on the first differing byte).
fn macs_match(expected: &[u8; MAC_LEN], given: &[u8; MAC_LEN]) -> bool {
    let diff = expected
        .iter()
        .zip(given.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> DomainName {
        DomainName::parse("alias.example").expect("domain")
    }

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let reverse = ReverseAliases::new(SrsKey::new('K', [1; 32]).expect("key"));
        let token = reverse.mint(&domain()).expect("mint");
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(TOKEN_LEN, 32);
        assert!(token.starts_with(PREFIX));
        assert_eq!(token.as_bytes()[PREFIX.len() + NONCE_LEN], b'k');
        assert!(
            token[PREFIX.len()..]
                .bytes()
                .all(|b| BASE32.contains(&b) || b == b'k')
        );
        assert!(LocalPart::parse(&token).is_ok_and(|l| !l.is_quoted()));
    }

    #[test]
    fn nonces_differ_and_use_every_position() {
        let reverse = ReverseAliases::new(SrsKey::new('a', [1; 32]).expect("key"));
        let tokens: Vec<String> = (0..64)
            .map(|_| reverse.mint(&domain()).expect("mint"))
            .collect();
        let unique: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(unique.len(), tokens.len());
        // The last nonce character carries random bits too (not padding).
        let last: std::collections::HashSet<u8> = tokens
            .iter()
            .map(|t| t.as_bytes()[PREFIX.len() + NONCE_LEN - 1])
            .collect();
        assert!(last.len() > 4, "{last:?}");
    }

    #[test]
    fn srs_subkey_is_not_the_reverse_subkey() {
        let key = SrsKey::new('a', [1; 32]).expect("key");
        let a = hmac::sign(&key.derive(PURPOSE), b"x");
        let b = hmac::sign(&key.derive("bounce"), b"x");
        assert_ne!(a.as_ref(), b.as_ref());
    }
}
