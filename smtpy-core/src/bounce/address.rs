//! Signed VERP-style bounce addresses: the envelope sender of a forward names
//! its queued message, so a bounce coming back identifies the delivery.

use std::fmt;

use ring::hmac;

use crate::address::{DomainName, EmailAddress, LocalPart, MAX_ADDRESS_LEN};
use crate::ids::MessageId;
use crate::srs::SrsKey;
use crate::time::Timestamp;

/// The reserved local-part prefix of bounce addresses. No alias may start
/// with it on the bounce domain.
pub const BOUNCE_PREFIX: &str = "bounce=";

/// Default maximum age of a bounce address, in days: remote queues give up
/// after 5 to 7 days, but some bounce much later (mailbox providers sending
/// late non-delivery reports, greylisting chains), and a forward's bounce is
/// worth recording for about a month.
pub const DEFAULT_MAX_AGE_DAYS: u16 = 30;

/// Largest accepted maximum age, in days; larger values are clamped. The day
/// stamp wraps every 32 768 days (about 89 years).
pub const MAX_AGE_DAYS_LIMIT: u16 = 3650;

/// Days in the future a day stamp may lie and still be accepted (instances
/// whose clocks disagree around midnight).
pub const FUTURE_SKEW_DAYS: u16 = 1;

/// Base32 characters of the MAC: 80 bits.
pub const MAC_LEN: usize = 16;

/// Length of the local part of every bounce address, in octets:
/// `bounce=` + key id + 3-character day + `=` + 26-character message id +
/// `=` + MAC.
pub const BOUNCE_LOCAL_LEN: usize = BOUNCE_PREFIX.len() + 1 + DAY_LEN + 1 + ID_LEN + 1 + MAC_LEN;

/// Base32 characters of the day stamp (15 bits).
const DAY_LEN: usize = 3;
/// Base32 characters of a message id (128 bits, 2 zero padding bits).
const ID_LEN: usize = 26;
/// The day stamp's modulus.
const DAY_MODULUS: u32 = 1 << (5 * DAY_LEN);
/// RFC 4648 base32 alphabet, lower case.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a bounce address was refused (or could not be set up).
///
/// At `RCPT TO` every variant means "not a valid bounce address" (answer
/// [`Reply::BAD_BOUNCE_ADDRESS`](crate::reply::Reply::BAD_BOUNCE_ADDRESS));
/// the variants exist for logs and metrics.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BounceAddressError {
    /// Not on the bounce domain, or without the [`BOUNCE_PREFIX`].
    #[error("not a bounce address on this domain")]
    NotBounce,
    /// Has the prefix but a field is missing, too long or invalid.
    #[error("malformed bounce address")]
    Malformed,
    /// Signed with a key id we do not hold (retired or forged).
    #[error("bounce address signed with unknown key id {id:?}")]
    UnknownKey {
        /// The key id found in the address (lower case).
        id: char,
    },
    /// The MAC does not match: forged or damaged.
    #[error("bounce address MAC does not match")]
    BadMac,
    /// Older than the maximum age, or stamped too far in the future.
    #[error("bounce address has expired")]
    Expired,
    /// The bounce domain is too long for `<local part>@<domain>` to fit in
    /// 254 octets.
    #[error("the bounce domain is too long for bounce addresses")]
    DomainTooLong,
}

/// Signed VERP-style bounce addresses for forwards.
///
/// A forward is sent with the envelope sender
/// `bounce=<k><ddd>=<message id>=<mac>@<bounce domain>`, so a bounce names
/// the queued message (the delivery record) it is about, and is verified
/// without a database:
///
/// * `<k>`: the signing key's id, so keys can rotate
///   ([`with_previous`](Self::with_previous));
/// * `<ddd>`: the day of signing (days since 1970 modulo 32 768, three
///   base32 characters); addresses older than
///   [`max_age`](Self::max_age) days (default [`DEFAULT_MAX_AGE_DAYS`]) are
///   refused, as are stamps more than [`FUTURE_SKEW_DAYS`] ahead;
/// * `<message id>`: the [`MessageId`]'s 16 bytes in base32 (26 characters);
/// * `<mac>`: the first 80 bits of an HMAC-SHA256 with the key derived for
///   the purpose `"bounce"` ([`SrsKey`]'s subkey, so an SRS hash never
///   verifies as a bounce MAC) over the key id, day, message id and bounce
///   domain, compared in constant time.
///
/// Everything is lower-case base32; decoding accepts either case, since mail
/// systems may change the case of an address. The local part is always
/// [`BOUNCE_LOCAL_LEN`] (55) octets, within the 64 allowed.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::bounce::BounceAddresses;
/// use smtpy_core::ids::MessageId;
/// use smtpy_core::srs::SrsKey;
/// use smtpy_core::time::Timestamp;
///
/// let bounces = BounceAddresses::new(DomainName::parse("bounce.example.org")?, SrsKey::new('a', [7; 32])?)?;
/// let message = MessageId::new();
/// let now = Timestamp::from_unix_secs(1_700_000_000);
/// let address = bounces.encode(message, now);
/// assert!(BounceAddresses::looks_like(address.local_part().as_str()));
/// assert_eq!(bounces.decode(&address, now)?, message);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BounceAddresses {
    domain: DomainName,
    fallback: EmailAddress,
    current: BounceKey,
    previous: Vec<BounceKey>,
    max_age_days: u16,
}

/// A key id and its derived bounce subkey.
#[derive(Clone)]
struct BounceKey {
    id: char,
    key: hmac::Key,
}

impl BounceKey {
    fn from_srs(key: &SrsKey) -> BounceKey {
        BounceKey {
            id: key.id(),
            key: key.derive("bounce"),
        }
    }
}

impl fmt::Debug for BounceAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<char> = self.previous.iter().map(|k| k.id).collect();
        f.debug_struct("BounceAddresses")
            .field("domain", &self.domain)
            .field("current", &self.current.id)
            .field("previous", &previous)
            .field("max_age_days", &self.max_age_days)
            .finish()
    }
}

impl BounceAddresses {
    /// Bounce addresses on `domain`, signed with `current`, with the default
    /// maximum age.
    ///
    /// # Errors
    ///
    /// [`BounceAddressError::DomainTooLong`] when the domain leaves no room
    /// for the 55-octet local part within the 254 octets of an address.
    pub fn new(domain: DomainName, current: SrsKey) -> Result<Self, BounceAddressError> {
        if BOUNCE_LOCAL_LEN + 1 + domain.as_ascii().len() > MAX_ADDRESS_LEN {
            return Err(BounceAddressError::DomainTooLong);
        }
        let fallback = LocalPart::parse("bounce=invalid")
            .and_then(|local| EmailAddress::new(local, domain.clone()))
            .map_err(|_| BounceAddressError::DomainTooLong)?;
        Ok(BounceAddresses {
            domain,
            fallback,
            current: BounceKey::from_srs(&current),
            previous: Vec::new(),
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        })
    }

    /// Also accept addresses signed with `key` (retired by rotation); it
    /// verifies, never signs. Keep it for the maximum age after rotating.
    #[must_use]
    pub fn with_previous(mut self, key: SrsKey) -> Self {
        self.previous.push(BounceKey::from_srs(&key));
        self
    }

    /// Refuse addresses older than `days` days (clamped to
    /// [`MAX_AGE_DAYS_LIMIT`]). An address signed `days` days ago (UTC days)
    /// is still accepted.
    #[must_use]
    pub fn max_age_days(mut self, days: u16) -> Self {
        self.max_age_days = days.min(MAX_AGE_DAYS_LIMIT);
        self
    }

    /// The configured maximum age, in days.
    #[must_use]
    pub fn max_age(&self) -> u16 {
        self.max_age_days
    }

    /// The bounce domain.
    #[must_use]
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// Whether `local_part` (as text, optionally still quoted) starts with
    /// the reserved [`BOUNCE_PREFIX`], in any case. Checks no MAC.
    #[must_use]
    pub fn looks_like(local_part: &str) -> bool {
        let local = local_part.strip_prefix('"').unwrap_or(local_part);
        local
            .as_bytes()
            .get(..BOUNCE_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(BOUNCE_PREFIX.as_bytes()))
    }

    /// The envelope sender for a forward of `message`, signed now.
    #[must_use]
    pub fn encode(&self, message: MessageId, now: Timestamp) -> EmailAddress {
        let day = day_of(now);
        let id = message.to_bytes();
        let mut local = String::with_capacity(BOUNCE_LOCAL_LEN);
        local.push_str(BOUNCE_PREFIX);
        local.push(self.current.id);
        push_day(&mut local, day);
        local.push('=');
        push_base32(&mut local, &id);
        local.push('=');
        push_base32(&mut local, &self.mac(&self.current, day, &id));
        self.address(&local)
    }

    /// The message a bounce address on our domain stands for.
    ///
    /// Checks, in order: domain and prefix ([`BounceAddressError::NotBounce`]),
    /// syntax ([`BounceAddressError::Malformed`]), key id
    /// ([`BounceAddressError::UnknownKey`]), MAC, in constant time
    /// ([`BounceAddressError::BadMac`]), age ([`BounceAddressError::Expired`]).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn decode(
        &self,
        address: &EmailAddress,
        now: Timestamp,
    ) -> Result<MessageId, BounceAddressError> {
        if address.domain() != &self.domain {
            return Err(BounceAddressError::NotBounce);
        }
        let local = address.local_part().as_str();
        if !Self::looks_like(local) {
            return Err(BounceAddressError::NotBounce);
        }
        let bytes = local.as_bytes();
        if bytes.len() != BOUNCE_LOCAL_LEN {
            return Err(BounceAddressError::Malformed);
        }
        let body = &bytes[BOUNCE_PREFIX.len()..];
        let (id_char, rest) = body.split_first().ok_or(BounceAddressError::Malformed)?;
        let (day, rest) = rest.split_at(DAY_LEN);
        let (sep1, rest) = rest.split_at(1);
        let (message, rest) = rest.split_at(ID_LEN);
        let (sep2, given_mac) = rest.split_at(1);
        if !id_char.is_ascii_alphanumeric() || sep1 != b"=" || sep2 != b"=" {
            return Err(BounceAddressError::Malformed);
        }
        let day = decode_day(day).ok_or(BounceAddressError::Malformed)?;
        let message: [u8; 16] = decode_base32(message).ok_or(BounceAddressError::Malformed)?;
        let given_mac: [u8; 10] = decode_base32(given_mac).ok_or(BounceAddressError::Malformed)?;

        let id = char::from(id_char.to_ascii_lowercase());
        let keys: Vec<&BounceKey> = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .filter(|k| k.id == id)
            .collect();
        if keys.is_empty() {
            return Err(BounceAddressError::UnknownKey { id });
        }
        // Every candidate key is tried, without an early exit.
        let ok = keys.iter().fold(false, |ok, key| {
            ok | equal_in_constant_time(&self.mac(key, day, &message), &given_mac)
        });
        if !ok {
            return Err(BounceAddressError::BadMac);
        }
        if !self.fresh(day, now) {
            return Err(BounceAddressError::Expired);
        }
        Ok(MessageId::from_bytes(message))
    }

    /// The first 80 bits of the HMAC over the fields, NUL-separated, with a
    /// version tag.
    fn mac(&self, key: &BounceKey, day: u32, message: &[u8; 16]) -> [u8; 10] {
        let mut ctx = hmac::Context::with_key(&key.key);
        ctx.update(b"smtpy-bounce-v1\0");
        let mut id = [0u8; 4];
        ctx.update(key.id.encode_utf8(&mut id).as_bytes());
        ctx.update(b"\0");
        ctx.update(&day.to_be_bytes());
        ctx.update(b"\0");
        ctx.update(message);
        ctx.update(b"\0");
        ctx.update(self.domain.as_ascii().as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 10];
        for (slot, byte) in out.iter_mut().zip(tag.as_ref()) {
            *slot = *byte;
        }
        out
    }

    /// `local` (already valid dot-atom text of fixed length) on our domain.
    fn address(&self, local: &str) -> EmailAddress {
        // The local part is 55 octets of [a-z0-9=] and `new` checked the
        // domain length, so this cannot fail; the fallback (built by `new`,
        // never decoding) only keeps `encode` total.
        LocalPart::parse(local)
            .and_then(|local| EmailAddress::new(local, self.domain.clone()))
            .unwrap_or_else(|_| self.fallback.clone())
    }

    /// Whether a stamp of `day` is within the maximum age at `now`.
    fn fresh(&self, day: u32, now: Timestamp) -> bool {
        let age = (day_of(now) + DAY_MODULUS - day) % DAY_MODULUS;
        age <= u32::from(self.max_age_days) || age >= DAY_MODULUS - u32::from(FUTURE_SKEW_DAYS)
    }
}

/// Days since the epoch modulo the stamp's modulus.
fn day_of(now: Timestamp) -> u32 {
    now.day().days_since_epoch().rem_euclid(DAY_MODULUS as i32) as u32
}

/// Appends a day stamp: three base32 characters.
fn push_day(out: &mut String, day: u32) {
    for shift in [10, 5, 0] {
        out.push(char::from(BASE32[((day >> shift) & 31) as usize]));
    }
}

/// Reads a three-character day stamp, either case.
fn decode_day(text: &[u8]) -> Option<u32> {
    if text.len() != DAY_LEN {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &c| {
        Some((acc << 5) | u32::from(base32_value(c)?))
    })
}

/// Appends `bytes` in unpadded lower-case base32 (RFC 4648 order).
fn push_base32(out: &mut String, bytes: &[u8]) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
}

/// Decodes exactly `N` bytes of unpadded base32 (either case), refusing
/// non-zero padding bits so that every value has exactly one spelling (up to
/// case).
fn decode_base32<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 8).div_ceil(5) {
        return None;
    }
    let mut out = [0u8; N];
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0;
    for &c in text {
        acc = (acc << 5) | u32::from(base32_value(c)?);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (n == N && acc == 0).then_some(out)
}

/// The value of one base32 character, either case.
fn base32_value(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a'),
        b'A'..=b'Z' => Some(c - b'A'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

/// Compares without an early exit on the first differing byte.
fn equal_in_constant_time(a: &[u8; 10], b: &[u8; 10]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_and_refuses_padding_bits() {
        let bytes: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let mut text = String::new();
        push_base32(&mut text, &bytes);
        assert_eq!(text.len(), ID_LEN);
        assert_eq!(decode_base32::<16>(text.as_bytes()), Some(bytes));
        assert_eq!(
            decode_base32::<16>(text.to_ascii_uppercase().as_bytes()),
            Some(bytes)
        );
        // The last character carries 3 data bits and 2 padding bits.
        let mut padded = text.into_bytes();
        let last = padded.len() - 1;
        let value = base32_value(padded[last]).expect("base32");
        padded[last] = BASE32[usize::from(value | 1)];
        if value & 1 == 0 {
            assert_eq!(decode_base32::<16>(&padded), None);
        }
        assert_eq!(decode_base32::<16>(b"abc"), None);
        assert_eq!(decode_base32::<10>(b"0000000000000000"), None);
    }

    #[test]
    fn day_stamps_round_trip() {
        for day in [0, 1, 31, 32, 20_000, DAY_MODULUS - 1] {
            let mut text = String::new();
            push_day(&mut text, day);
            assert_eq!(decode_day(text.as_bytes()), Some(day));
        }
    }

    #[test]
    fn the_local_part_has_its_documented_length() {
        assert_eq!(BOUNCE_LOCAL_LEN, 55);
        const { assert!(BOUNCE_LOCAL_LEN <= crate::address::MAX_LOCAL_PART_LEN) };
    }
}
