//! Selector names and the DNS records to publish, directly or delegated.

use std::fmt;

use crate::address::DomainName;
use crate::model::{DkimAlgorithm, DkimKeyState, Domain};
use crate::time::Timestamp;

use super::DkimError;

/// The selector prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "smtpy";

/// Longest accepted selector prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 40;

/// The label between a delegated target's user domain and the service
/// domain: `<slot>.<user-domain>._dkim.<service-domain>`.
pub const DELEGATION_LABEL: &str = "_dkim";

/// Longest DNS name, in octets (without the final dot).
const MAX_NAME_LEN: usize = 253;

/// Who publishes the DKIM TXT records of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishMode {
    /// The domain's owner publishes every TXT record under
    /// `<selector>._domainkey.<domain>` and must add the new one at each
    /// rotation (selectors are dated: [`SelectorNaming::dated`]).
    Direct,
    /// The domain's owner publishes fixed CNAMEs once
    /// ([`delegated_cnames`]); the service publishes the TXT records at the
    /// CNAME targets in its own zone and rotates by alternating between two
    /// fixed selector slots per algorithm ([`SelectorNaming::slots`]).
    Delegated {
        /// The service's own domain, under which the targets live.
        service_domain: DomainName,
    },
}

/// How new selectors are named.
///
/// * **Dated** (direct publishing): `<prefix><yyyymmdd><r|e>`, e.g.
///   `smtpy20261125r` for RSA and `smtpy20261125e` for Ed25519, the date
///   being the UTC day the key was made. A second key of the same algorithm
///   made the same day gets a counter: `smtpy20261125e2`, `…e3`.
/// * **Slots** (delegated publishing): `<prefix>1<r|e>` and
///   `<prefix>2<r|e>`, e.g. `smtpy1e`/`smtpy2e` and `smtpy1r`/`smtpy2r`. A
///   rotation takes the slot of that algorithm no key holds; while the
///   previous key is still published (pending, active or retiring) both
///   slots are taken and a rotation is refused with
///   [`DkimError::NoFreeSlot`].
///
/// ```
/// use smtpy_core::address::{DomainName};
/// use smtpy_core::dkim::SelectorNaming;
/// use smtpy_core::ids::UserId;
/// use smtpy_core::model::{DkimAlgorithm, Domain};
/// use smtpy_core::time::Timestamp;
///
/// let now = Timestamp::from_unix_secs(1_795_564_800); // 2026-11-25
/// let domain = Domain::new(DomainName::parse("alias.example")?, UserId::new(), "t".into(), now);
/// let dated = SelectorNaming::dated("smtpy")?;
/// assert_eq!(dated.next_selector(&domain, DkimAlgorithm::Ed25519, now)?, "smtpy20261125e");
/// let slots = SelectorNaming::slots("smtpy")?;
/// assert_eq!(slots.next_selector(&domain, DkimAlgorithm::Rsa2048, now)?, "smtpy1r");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorNaming {
    prefix: String,
    slots: bool,
}

impl Default for SelectorNaming {
    /// Dated selectors with the prefix `smtpy`.
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            slots: false,
        }
    }
}

/// The one-letter algorithm suffix of generated selectors.
fn algorithm_letter(algorithm: DkimAlgorithm) -> char {
    match algorithm {
        DkimAlgorithm::Rsa2048 => 'r',
        DkimAlgorithm::Ed25519 => 'e',
    }
}

fn check_prefix(prefix: &str) -> Result<(), DkimError> {
    let ok = prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(DkimError::InvalidPrefix(prefix.to_owned()))
    }
}

impl SelectorNaming {
    /// Dated selectors (`<prefix><yyyymmdd><r|e>`), for direct publishing.
    ///
    /// # Errors
    /// [`DkimError::InvalidPrefix`] unless `prefix` is an ASCII letter
    /// followed by letters and digits, at most [`MAX_PREFIX_LEN`] bytes.
    pub fn dated(prefix: &str) -> Result<Self, DkimError> {
        check_prefix(prefix)?;
        Ok(Self {
            prefix: prefix.to_ascii_lowercase(),
            slots: false,
        })
    }

    /// Two fixed slots per algorithm (`<prefix>1<r|e>`, `<prefix>2<r|e>`),
    /// for delegated publishing.
    ///
    /// # Errors
    /// As [`SelectorNaming::dated`].
    pub fn slots(prefix: &str) -> Result<Self, DkimError> {
        check_prefix(prefix)?;
        Ok(Self {
            prefix: prefix.to_ascii_lowercase(),
            slots: true,
        })
    }

    /// The naming a publishing mode calls for, with the prefix
    /// [`DEFAULT_PREFIX`]: dated for [`PublishMode::Direct`], slots for
    /// [`PublishMode::Delegated`].
    #[must_use]
    pub fn for_mode(mode: &PublishMode) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            slots: matches!(mode, PublishMode::Delegated { .. }),
        }
    }

    /// The prefix (lower case).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether this is the fixed-slot naming.
    #[must_use]
    pub fn is_slots(&self) -> bool {
        self.slots
    }

    /// The two fixed selectors of `algorithm` (whatever the naming style).
    #[must_use]
    pub fn slot_selectors(&self, algorithm: DkimAlgorithm) -> [String; 2] {
        let letter = algorithm_letter(algorithm);
        [
            format!("{}1{letter}", self.prefix),
            format!("{}2{letter}", self.prefix),
        ]
    }

    /// The selector for a new `algorithm` key of `domain` made at `now`.
    ///
    /// # Errors
    /// [`DkimError::NoFreeSlot`] (slots) when both slots of the algorithm
    /// hold a key.
    pub fn next_selector(
        &self,
        domain: &Domain,
        algorithm: DkimAlgorithm,
        now: Timestamp,
    ) -> Result<String, DkimError> {
        let taken = |s: &str| {
            domain
                .dkim_keys
                .iter()
                .any(|k| k.selector.eq_ignore_ascii_case(s))
        };
        if self.slots {
            return self
                .slot_selectors(algorithm)
                .into_iter()
                .find(|s| !taken(s))
                .ok_or(DkimError::NoFreeSlot(algorithm));
        }
        let (year, month, day) = civil_date(now);
        let base = format!(
            "{}{year:04}{month:02}{day:02}{}",
            self.prefix,
            algorithm_letter(algorithm)
        );
        if !taken(&base) {
            return Ok(base);
        }
        // At most `dkim_keys.len()` selectors are taken, so one of the
        // first `len + 1` counters is free.
        (2..=domain.dkim_keys.len().saturating_add(2))
            .map(|n| format!("{base}{n}"))
            .find(|s| !taken(s))
            .ok_or(DkimError::InvalidSelector(base))
    }

    /// The CNAMEs the owner of `user_domain` publishes once to delegate
    /// this naming's slots to `service_domain` (see [`delegated_cnames`]).
    #[must_use]
    pub fn delegated_cnames(
        &self,
        user_domain: &DomainName,
        service_domain: &DomainName,
    ) -> Vec<DnsRecord> {
        [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048]
            .into_iter()
            .flat_map(|a| self.slot_selectors(a))
            .map(|slot| DnsRecord {
                name: format!("{slot}._domainkey.{}", user_domain.as_ascii()),
                kind: RecordKind::Cname,
                value: delegation_target(&slot, user_domain, service_domain),
            })
            .collect()
    }
}

/// The proleptic Gregorian UTC (year, month, day) of `at`, years clamped to
/// 0000–9999 so a selector always has eight digits.
fn civil_date(at: Timestamp) -> (i64, i64, i64) {
    // 0000-01-01 and 9999-12-31 in days since 1970-01-01.
    let days = at
        .as_unix_millis()
        .div_euclid(86_400_000)
        .clamp(-719_528, 2_932_896);
    // In `i32` range after the clamp.
    let (year, month, day) = crate::time::Day::from_days_since_epoch(days as i32).civil();
    (year, i64::from(month), i64::from(day))
}

/// The kind of a DNS record to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A TXT record (the DKIM key record).
    Txt,
    /// A CNAME (a delegated selector).
    Cname,
}

/// One DNS record to publish: names are fully qualified, written without
/// the final dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsRecord {
    /// The owner name, e.g. `smtpy20261125e._domainkey.alias.example`.
    pub name: String,
    /// TXT or CNAME.
    pub kind: RecordKind,
    /// The exact value: the whole TXT text (see [`DnsRecord::txt_strings`]
    /// for how it is split), or the CNAME target.
    pub value: String,
}

/// Longest character-string inside a TXT record, in bytes (RFC 1035).
pub const TXT_STRING_MAX: usize = 255;

impl DnsRecord {
    /// The TXT value split into character-strings of at most
    /// [`TXT_STRING_MAX`] bytes, as DNS requires. A 2048-bit RSA key record
    /// is about 410 bytes and needs two strings; verifiers concatenate them
    /// with nothing in between. DKIM values are ASCII; a split never falls
    /// inside a character. A CNAME gives its target as the only string.
    #[must_use]
    pub fn txt_strings(&self) -> Vec<&str> {
        if self.kind != RecordKind::Txt {
            return vec![self.value.as_str()];
        }
        let mut out = Vec::new();
        let mut rest = self.value.as_str();
        while rest.len() > TXT_STRING_MAX {
            let mut cut = TXT_STRING_MAX;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            out.push(head);
            rest = tail;
        }
        out.push(rest);
        out
    }

    /// The record as a zone-file line, e.g.
    /// `s._domainkey.alias.example. 3600 IN TXT "v=DKIM1; k=ed25519; p=…"`,
    /// with a long TXT value written as several quoted strings.
    #[must_use]
    pub fn zone_line(&self, ttl: u32) -> String {
        match self.kind {
            RecordKind::Txt => {
                let strings: Vec<String> = self
                    .txt_strings()
                    .into_iter()
                    .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect();
                format!("{}. {ttl} IN TXT {}", self.name, strings.join(" "))
            }
            RecordKind::Cname => format!("{}. {ttl} IN CNAME {}.", self.name, self.value),
        }
    }
}

impl fmt::Display for DnsRecord {
    /// The zone-file line with a TTL of one hour.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone_line(3600))
    }
}

/// Where the TXT record of a delegated `selector` of `user_domain` lives in
/// the service's zone: `<selector>.<user-domain>._dkim.<service-domain>`.
///
/// When that name would exceed 253 octets (a very long user domain), the
/// user domain is replaced by `h-` and the first 32 hex digits of the
/// SHA-256 of its A-label form, so the name stays valid and unique.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::delegation_target;
/// let target = delegation_target(
///     "smtpy1e",
///     &DomainName::parse("alias.example")?,
///     &DomainName::parse("smtpy.example")?,
/// );
/// assert_eq!(target, "smtpy1e.alias.example._dkim.smtpy.example");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn delegation_target(
    selector: &str,
    user_domain: &DomainName,
    service_domain: &DomainName,
) -> String {
    let full = format!(
        "{selector}.{}.{DELEGATION_LABEL}.{}",
        user_domain.as_ascii(),
        service_domain.as_ascii()
    );
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, user_domain.as_ascii().as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{selector}.h-{hex}.{DELEGATION_LABEL}.{}",
        service_domain.as_ascii()
    )
}

/// The CNAMEs the owner of `user_domain` publishes once, with the default
/// slot names: `smtpy1e`, `smtpy2e`, `smtpy1r`, `smtpy2r`, each
/// `<slot>._domainkey.<user-domain> CNAME <slot>.<user-domain>._dkim.<service-domain>`.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::delegated_cnames;
/// let records = delegated_cnames(&DomainName::parse("alias.example")?, &DomainName::parse("smtpy.example")?);
/// assert_eq!(records.len(), 4);
/// assert_eq!(
///     records[0].to_string(),
///     "smtpy1e._domainkey.alias.example. 3600 IN CNAME smtpy1e.alias.example._dkim.smtpy.example."
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn delegated_cnames(user_domain: &DomainName, service_domain: &DomainName) -> Vec<DnsRecord> {
    SelectorNaming::for_mode(&PublishMode::Delegated {
        service_domain: service_domain.clone(),
    })
    .delegated_cnames(user_domain, service_domain)
}

/// The TXT records that must be in DNS for `domain`'s keys: one per key
/// still published (pending, active or retiring), in the order of
/// `domain.dkim_keys`, with the exact stored value.
///
/// * [`PublishMode::Direct`]: at `<selector>._domainkey.<domain>`, in the
///   domain owner's zone.
/// * [`PublishMode::Delegated`]: at [`delegation_target`], in the service's
///   zone (the owner's CNAMEs come from [`delegated_cnames`]).
///
/// A record missing here and present in DNS (a key removed after its grace
/// period) should be deleted from DNS.
#[must_use]
pub fn records_to_publish(domain: &Domain, mode: &PublishMode) -> Vec<DnsRecord> {
    domain
        .dkim_keys
        .iter()
        .filter(|k| {
            matches!(
                k.state,
                DkimKeyState::Pending | DkimKeyState::Active | DkimKeyState::Retiring
            )
        })
        .map(|k| DnsRecord {
            name: match mode {
                PublishMode::Direct => {
                    format!("{}._domainkey.{}", k.selector, domain.name.as_ascii())
                }
                PublishMode::Delegated { service_domain } => {
                    delegation_target(&k.selector, &domain.name, service_domain)
                }
            },
            kind: RecordKind::Txt,
            value: k.dns_record.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i64, m: i64, d: i64) -> Timestamp {
        // Test oracle independent of `civil_date`: count days naively.
        let mut days = 0i64;
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for year in 1970..y {
            days += if leap(year) { 366 } else { 365 };
        }
        let lengths = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        for len in &lengths[..(m - 1) as usize] {
            days += len;
        }
        days += d - 1;
        Timestamp::from_unix_secs(days * 86_400 + 3_600)
    }

    #[test]
    fn civil_dates() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2024, 12, 31),
            (2026, 11, 25),
            (2100, 3, 1),
        ] {
            assert_eq!(civil_date(day(y, m, d)), (y, m, d));
        }
        assert_eq!(
            civil_date(Timestamp::from_unix_millis(i64::MAX)),
            (9999, 12, 31)
        );
        assert_eq!(civil_date(Timestamp::from_unix_millis(i64::MIN)), (0, 1, 1));
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(SelectorNaming::dated("smtpy").is_ok());
        assert_eq!(
            SelectorNaming::slots("SMTPY").map(|n| n.prefix().to_owned()),
            Ok("smtpy".into())
        );
        for bad in ["", "1abc", "a-b", "a.b", "é", &"a".repeat(41)] {
            assert_eq!(
                SelectorNaming::dated(bad),
                Err(DkimError::InvalidPrefix(bad.to_owned()))
            );
        }
    }

    #[test]
    fn long_txt_values_split_into_255_byte_strings() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let record = DnsRecord {
            name: "r._domainkey.alias.example".into(),
            kind: RecordKind::Txt,
            value: value.clone(),
        };
        let strings = record.txt_strings();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0].len(), 255);
        assert_eq!(strings[1].len(), value.len() - 255);
        assert_eq!(strings.concat(), value);
        assert_eq!(
            record.zone_line(300),
            format!(
                "r._domainkey.alias.example. 300 IN TXT \"{}\" \"{}\"",
                &value[..255],
                &value[255..]
            )
        );
        let short = DnsRecord {
            value: "v=DKIM1; k=ed25519; p=x".into(),
            ..record
        };
        assert_eq!(short.txt_strings(), ["v=DKIM1; k=ed25519; p=x"]);
        let exact = DnsRecord {
            value: "a".repeat(255),
            ..short.clone()
        };
        assert_eq!(exact.txt_strings().len(), 1);
    }

    #[test]
    fn overlong_delegation_targets_use_a_hash() {
        let label = "a".repeat(63);
        let user = DomainName::parse(&format!("{label}.{label}.{label}.{}.example", &label[..40]))
            .expect("domain");
        let service = DomainName::parse("smtpy.example").expect("domain");
        let target = delegation_target("smtpy1e", &user, &service);
        assert!(target.len() <= 253, "{target}");
        assert!(target.starts_with("smtpy1e.h-"), "{target}");
        assert!(target.ends_with("._dkim.smtpy.example"), "{target}");
        assert_eq!(target.split('.').nth(1).map(str::len), Some(34));
    }
}
