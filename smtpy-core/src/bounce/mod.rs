//! Bounces of forwards: signed bounce addresses, reading bounce messages,
//! classifying them, and deciding when to disable an alias or a mailbox.
//!
//! A forward leaves with a [`BounceAddresses`] envelope sender naming its
//! queued message. When the mailbox provider bounces it, the bounce comes
//! back to that address:
//!
//! 1. [`BounceAddresses::decode`] checks the address (no database) and
//!    yields the [`MessageId`](crate::ids::MessageId) of the delivery;
//! 2. [`is_auto_reply`] sets aside vacation and other auto-replies (they go
//!    to the owner, are never counted as bounces and never bounced);
//! 3. [`parse_bounce`] reads the report (RFC 3464, or a text bounce) into
//!    [`BouncedRecipient`]s, each with a [`BounceClass`];
//! 4. the caller counts hard bounces per alias and per mailbox over
//!    [`BounceThresholds::window`] (spam refusals included when
//!    [`BounceThresholds::spam_counts_as_hard`]) and asks [`auto_disable`].
//!
//! ```
//! use smtpy_core::bounce::{BounceClass, parse_bounce};
//! let exim = b"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n\
//! Subject: Mail delivery failed: returning message to sender\n\n\
//! This message was created automatically by mail delivery software.\n\n\
//! A message that you sent could not be delivered to one or more of its\n\
//! recipients. This is a permanent error. The following address(es) failed:\n\n\
//!   gone@example.net\n\
//!     host mx.example.net [192.0.2.25]\n\
//!     SMTP error from remote mail server after RCPT TO:<gone@example.net>:\n\
//!     550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown\n";
//! let bounce = parse_bounce(exim).expect("a text bounce");
//! assert!(!bounce.rfc3464);
//! assert_eq!(bounce.class, BounceClass::Hard);
//! assert_eq!(bounce.recipients[0].status.as_deref(), Some("5.1.1"));
//! assert_eq!(bounce.recipients[0].address.as_deref(), Some("gone@example.net"));
//! ```

mod address;
mod classify;
mod parse;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use address::{
    BOUNCE_LOCAL_LEN, BOUNCE_PREFIX, BounceAddressError, BounceAddresses, DEFAULT_MAX_AGE_DAYS,
    FUTURE_SKEW_DAYS, MAC_LEN, MAX_AGE_DAYS_LIMIT,
};
pub use parse::{MAX_DIAGNOSTIC_LEN, MAX_PARSE_LEN, MAX_RECIPIENTS, is_auto_reply, parse_bounce};

/// Classifies the reply a remote server gave when it refused a delivery
/// for good (a bounce at delivery time), by the same rules as
/// [`parse_bounce`]: enhanced code, else basic code, else wording.
///
/// ```
/// use smtpy_core::bounce::{BounceClass, classify_reply};
/// assert_eq!(classify_reply(550, Some("5.1.1"), "User unknown"), BounceClass::Hard);
/// assert_eq!(classify_reply(552, Some("5.2.2"), "Mailbox full"), BounceClass::Soft);
/// assert_eq!(classify_reply(550, Some("5.7.1"), "Message rejected as spam"), BounceClass::Spam);
/// ```
#[must_use]
pub fn classify_reply(code: u16, enhanced: Option<&str>, text: &str) -> BounceClass {
    let status = enhanced.and_then(classify::Status::find);
    classify::classify(status, Some(code), text).unwrap_or(BounceClass::Hard)
}

/// What a bounce says about the address it failed for.
///
/// | status | class |
/// | --- | --- |
/// | `4.x.x` (delayed, temporary), or `Action: delayed` | `Soft` |
/// | `5.2.2` mailbox full; `5.2.3`, `5.3.4` message too big | `Soft` |
/// | `5.1.x` (unknown user, bad address), `5.2.1` (disabled mailbox) | `Hard` |
/// | `5.7.x` with spam, blocklist, policy, blocked, denied, reputation, DMARC… wording (Gmail `550-5.7.1 … unsolicited`, Outlook `550 5.7.520 … Access denied`, `blocked using Spamhaus`) | `Spam` |
/// | any other `5.x.x` with spam or blocklist wording | `Spam` |
/// | other `5.x.x` (a generic `5.0.0` refined by wording) | `Hard` |
/// | no code: by wording (spam → `Spam`, unknown user → `Hard`, full or delayed → `Soft`, failed → `Hard`) | |
///
/// Severity ([`worst`](Self::worst)): `Hard` > `Spam` > `Soft` — a hard
/// bounce says the address is gone; a spam refusal says the address exists
/// but refused this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// Permanent: the address does not exist or is disabled.
    Hard,
    /// Temporary or message-specific: mailbox full, delayed, too big.
    Soft,
    /// Refused as spam, or by a policy (blocklist, reputation, DMARC,
    /// forwarding not allowed).
    Spam,
}

impl BounceClass {
    /// `hard`, `soft` or `spam`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::Spam => "spam",
        }
    }

    /// 0 for `Soft`, 1 for `Spam`, 2 for `Hard`.
    #[must_use]
    pub fn severity(self) -> u8 {
        match self {
            BounceClass::Soft => 0,
            BounceClass::Spam => 1,
            BounceClass::Hard => 2,
        }
    }

    /// The more severe of two classes.
    ///
    /// ```
    /// use smtpy_core::bounce::BounceClass::{Hard, Soft, Spam};
    /// assert_eq!(Soft.worst(Spam), Spam);
    /// assert_eq!(Hard.worst(Spam), Hard);
    /// ```
    #[must_use]
    pub fn worst(self, other: BounceClass) -> BounceClass {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// One failed (or delayed) recipient of a bounce. Text fields are as found
/// in the bounce, trimmed and capped in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedRecipient {
    /// The recipient (`Final-Recipient`, else `Original-Recipient`, without
    /// the `rfc822;` type; for text bounces the nearest address).
    pub address: Option<String>,
    /// The enhanced status code, e.g. `5.1.1` (from `Status`, refined by the
    /// diagnostic's code when `Status` is generic; for text bounces the code
    /// of the line).
    pub status: Option<String>,
    /// The RFC 3464 `Action`, lower case (`failed`, `delayed`); `None` for
    /// text bounces.
    pub action: Option<String>,
    /// The remote server's reply (`Diagnostic-Code` without the `smtp;`
    /// type; for text bounces the line with the code and its continuation),
    /// at most [`MAX_DIAGNOSTIC_LEN`] octets.
    pub diagnostic: Option<String>,
    /// The classification.
    pub class: BounceClass,
}

/// A message read as a bounce by [`parse_bounce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBounce {
    /// Whether it carried an RFC 3464 delivery-status report (else it was
    /// read as a text bounce).
    pub rfc3464: bool,
    /// The failed or delayed recipients (at least one, at most
    /// [`MAX_RECIPIENTS`]).
    pub recipients: Vec<BouncedRecipient>,
    /// The worst class among the recipients.
    pub class: BounceClass,
}

/// When repeated bounces disable an alias or a mailbox.
///
/// | field | default | meaning |
/// | --- | --- | --- |
/// | `window` | 7 days (`"7d"`) | hard bounces are counted over this window |
/// | `alias_hard` | 5 | disable an alias after this many hard bounces of its forwards (0: never) |
/// | `mailbox_hard` | 3 | disable a mailbox after this many hard bounces of forwards to it (0: never) |
/// | `spam_counts_as_hard` | true | count [`BounceClass::Spam`] as hard |
///
/// `window` is written as seconds (`604800`) or as text with a unit
/// (`"7d"`, `"36h"`, `"90m"`, `"600s"`).
///
/// ```
/// use std::time::Duration;
/// use smtpy_core::bounce::BounceThresholds;
/// let t: BounceThresholds = serde_json::from_str(r#"{ "window": "2d", "mailbox_hard": 2 }"#)?;
/// assert_eq!(t.window, Duration::from_secs(2 * 86_400));
/// assert_eq!((t.alias_hard, t.mailbox_hard, t.spam_counts_as_hard), (5, 2, true));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BounceThresholds {
    /// The counting window.
    #[serde(with = "duration_text")]
    pub window: Duration,
    /// Hard bounces in the window that disable an alias (0: never).
    pub alias_hard: u32,
    /// Hard bounces in the window that disable a mailbox (0: never).
    pub mailbox_hard: u32,
    /// Whether spam refusals count as hard bounces.
    pub spam_counts_as_hard: bool,
}

impl Default for BounceThresholds {
    fn default() -> Self {
        BounceThresholds {
            window: Duration::from_secs(7 * 86_400),
            alias_hard: 5,
            mailbox_hard: 3,
            spam_counts_as_hard: true,
        }
    }
}

impl BounceThresholds {
    /// Whether a bounce of class `class` counts towards the hard-bounce
    /// thresholds: `Hard` always, `Spam` when
    /// [`spam_counts_as_hard`](Self::spam_counts_as_hard), `Soft` never.
    #[must_use]
    pub fn counts_as_hard(&self, class: BounceClass) -> bool {
        match class {
            BounceClass::Hard => true,
            BounceClass::Spam => self.spam_counts_as_hard,
            BounceClass::Soft => false,
        }
    }
}

/// Hard bounces (as [`BounceThresholds::counts_as_hard`] counts them) within
/// [`BounceThresholds::window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BounceCounts {
    /// Hard bounces of forwards through the alias.
    pub alias_hard: u64,
    /// Hard bounces of forwards to the mailbox.
    pub mailbox_hard: u64,
}

/// What [`auto_disable`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoDisable {
    /// Disable the alias.
    pub alias: bool,
    /// Disable the mailbox.
    pub mailbox: bool,
}

/// Whether the counts reach the thresholds: a count at or above a non-zero
/// threshold disables.
///
/// ```
/// use smtpy_core::bounce::{BounceCounts, BounceThresholds, auto_disable};
/// let t = BounceThresholds::default();
/// let d = auto_disable(&t, &BounceCounts { alias_hard: 4, mailbox_hard: 3 });
/// assert!(!d.alias && d.mailbox);
/// ```
#[must_use]
pub fn auto_disable(t: &BounceThresholds, counts: &BounceCounts) -> AutoDisable {
    let reached = |count: u64, threshold: u32| threshold > 0 && count >= u64::from(threshold);
    AutoDisable {
        alias: reached(counts.alias_hard, t.alias_hard),
        mailbox: reached(counts.mailbox_hard, t.mailbox_hard),
    }
}

/// Serde for a duration as whole seconds, or text with a unit (`s`, `m`,
/// `h`, `d`, `w`).
mod duration_text {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("seconds, or a duration such as \"7d\", \"36h\", \"90m\", \"600s\"")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    /// `<digits><unit>`, unit one of s, m, h, d, w.
    pub(super) fn parse(text: &str) -> Option<Duration> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit())?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let unit_secs = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return None,
        };
        n.checked_mul(unit_secs).map(Duration::from_secs)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_units() {
            assert_eq!(parse("7d"), Some(Duration::from_secs(604_800)));
            assert_eq!(parse("36h"), Some(Duration::from_secs(129_600)));
            assert_eq!(parse(" 90m "), Some(Duration::from_secs(5400)));
            assert_eq!(parse("1w"), Some(Duration::from_secs(604_800)));
            assert_eq!(parse("10"), None);
            assert_eq!(parse("d"), None);
            assert_eq!(parse("5y"), None);
            assert_eq!(parse("99999999999999999999d"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_default_and_zero_never_disables() {
        let t = BounceThresholds::default();
        assert_eq!(t.window, Duration::from_secs(7 * 86_400));
        assert_eq!((t.alias_hard, t.mailbox_hard), (5, 3));
        let below = BounceCounts {
            alias_hard: 4,
            mailbox_hard: 2,
        };
        assert_eq!(auto_disable(&t, &below), AutoDisable::default());
        let at = BounceCounts {
            alias_hard: 5,
            mailbox_hard: 3,
        };
        assert_eq!(
            auto_disable(&t, &at),
            AutoDisable {
                alias: true,
                mailbox: true
            }
        );
        let never = BounceThresholds {
            alias_hard: 0,
            mailbox_hard: 0,
            ..t
        };
        let many = BounceCounts {
            alias_hard: u64::MAX,
            mailbox_hard: u64::MAX,
        };
        assert_eq!(auto_disable(&never, &many), AutoDisable::default());
    }

    #[test]
    fn spam_counts_as_hard_only_when_configured() {
        let mut t = BounceThresholds::default();
        assert!(t.counts_as_hard(BounceClass::Hard));
        assert!(t.counts_as_hard(BounceClass::Spam));
        assert!(!t.counts_as_hard(BounceClass::Soft));
        t.spam_counts_as_hard = false;
        assert!(!t.counts_as_hard(BounceClass::Spam));
    }

    #[test]
    fn thresholds_serde_round_trip() {
        let t = BounceThresholds::default();
        let json = serde_json::to_string(&t).expect("serialise");
        assert!(json.contains("\"window\":604800"), "{json}");
        let back: BounceThresholds = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, t);
        assert!(serde_json::from_str::<BounceThresholds>(r#"{"window":"7y"}"#).is_err());
        assert!(serde_json::from_str::<BounceThresholds>(r#"{"window":-1}"#).is_err());
        assert!(serde_json::from_str::<BounceThresholds>(r#"{"windw":1}"#).is_err());
    }

    #[test]
    fn worst_is_hard_then_spam_then_soft() {
        use BounceClass::{Hard, Soft, Spam};
        for (a, b, w) in [
            (Soft, Soft, Soft),
            (Soft, Spam, Spam),
            (Spam, Soft, Spam),
            (Spam, Hard, Hard),
            (Hard, Soft, Hard),
        ] {
            assert_eq!(a.worst(b), w);
        }
    }
}
