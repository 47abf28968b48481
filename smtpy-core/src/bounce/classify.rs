//! Status codes and wording → [`BounceClass`].

use std::fmt;

use super::BounceClass;

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// 2, 4 or 5.
    pub(crate) class: u8,
    /// 0–999.
    pub(crate) subject: u16,
    /// 0–999.
    pub(crate) detail: u16,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Status {
    /// `x.0.0`: says only "failed" or "delayed".
    pub(crate) fn is_generic(self) -> bool {
        self.subject == 0 && self.detail == 0
    }

    /// The first enhanced status code in `text` that stands on its own: not
    /// preceded by a letter, digit or dot, and not followed by a digit or by
    /// a dot and a digit (so `192.0.2.4` holds none).
    pub(crate) fn find(text: &str) -> Option<Status> {
        let b = text.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if !matches!(c, b'2' | b'4' | b'5') {
                continue;
            }
            if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.') {
                continue;
            }
            let Some((status, end)) = parse_at(b, i) else {
                continue;
            };
            let after = b.get(end).copied();
            let digit_after_dot =
                after == Some(b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit);
            if after.is_some_and(|a| a.is_ascii_digit()) || digit_after_dot {
                continue;
            }
            return Some(status);
        }
        None
    }
}

/// `class.subject.detail` starting at `i`: the code and the index after it.
fn parse_at(b: &[u8], i: usize) -> Option<(Status, usize)> {
    let class = b.get(i)?.checked_sub(b'0')?;
    if b.get(i + 1) != Some(&b'.') {
        return None;
    }
    let (subject, j) = number(b, i + 2)?;
    if b.get(j) != Some(&b'.') {
        return None;
    }
    let (detail, end) = number(b, j + 1)?;
    Some((
        Status {
            class,
            subject,
            detail,
        },
        end,
    ))
}

/// One to three digits at `i`: the value and the index after them.
fn number(b: &[u8], i: usize) -> Option<(u16, usize)> {
    let mut value = 0u16;
    let mut j = i;
    while j < b.len() && j - i < 3 && b[j].is_ascii_digit() {
        value = value * 10 + u16::from(b[j] - b'0');
        j += 1;
    }
    (j > i).then_some((value, j))
}

/// The first basic SMTP reply code (`2xx`, `4xx`, `5xx`) in `text` that
/// starts a token (at the start, or after white space, `#`, `:`, `;`, `(`)
/// and is followed by a space, `-` or the end.
pub(crate) fn find_basic(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') {
            continue;
        }
        if i > 0 && !matches!(b[i - 1], b' ' | b'\t' | b'#' | b':' | b';' | b'(') {
            continue;
        }
        let Some(digits) = b.get(i..i + 3) else {
            break;
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        if matches!(
            b.get(i + 3),
            None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n')
        ) {
            let code = digits
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            return Some(code);
        }
    }
    None
}

/// Wording of spam and blocklist refusals: a refusal saying this is Spam
/// whatever its code (except 5.1.x / 5.2.1, which say the address is gone).
const SPAM_WORDS: &[&str] = &[
    "spam",
    "unsolicited",
    "blocklist",
    "block list",
    "blacklist",
    "black list",
    "denylist",
    "deny list",
    "dnsbl",
    "spamhaus",
    "spamcop",
    "barracuda",
    "reputation",
    "junk mail",
    "phish",
    "malware",
    "virus",
    "bulk mail",
];

/// Wording of policy refusals: Spam when the code is 5.7.x.
const POLICY_WORDS: &[&str] = &[
    "policy",
    "policies",
    "block",
    "denied",
    "rejected",
    "refused",
    "not accepted",
    "not allowed",
    "not permitted",
    "prohibited",
    "content",
    "dmarc",
    "spf",
    "dkim",
    "authenticat",
    "listed",
    "forwarding",
];

/// Wording of an address that does not exist or is disabled.
const UNKNOWN_WORDS: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "no such address",
    "unknown recipient",
    "unknown address",
    "recipient not found",
    "recipientnotfound",
    "address not found",
    "does not exist",
    "doesn't exist",
    "mailbox unavailable",
    "mailbox not found",
    "mailbox disabled",
    "mailbox is disabled",
    "mailbox is inactive",
    "account disabled",
    "account is disabled",
    "account has been disabled",
    "account is inactive",
    "invalid recipient",
    "invalid mailbox",
    "unrouteable address",
    "not our customer",
];

/// Wording of a full mailbox.
const FULL_WORDS: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "overquota",
    "over its quota",
    "quota exceeded",
    "exceeded storage",
    "exceeds storage",
    "insufficient storage",
    "out of storage",
    "storage limit",
    "mailbox size limit",
];

/// Wording of a delay: the message is still being retried.
const DELAY_WORDS: &[&str] = &[
    "delayed",
    "not yet been delivered",
    "not been delivered yet",
    "will be retried",
    "will retry",
    "still trying",
    "delivery attempts will continue",
    "temporar",
    "try again later",
    "deferred",
];

/// Wording of a final failure without a reason.
const FAILURE_WORDS: &[&str] = &[
    "permanent error",
    "permanent failure",
    "permanently",
    "could not be delivered",
    "couldn't be delivered",
    "wasn't delivered",
    "was not delivered",
    "undeliverable",
    "unable to deliver",
    "not able to deliver",
    "wasn't able to deliver",
    "delivery has failed",
    "delivery failed",
    "failed",
    "rejected",
    "giving up",
    "gave up",
];

/// Whether `lower` (already lower-case) contains one of `words`.
fn any(lower: &str, words: &[&str]) -> bool {
    words.iter().any(|w| lower.contains(w))
}

/// Whether the lower-case text speaks of spam or a blocklist.
pub(crate) fn spam_wording(lower: &str) -> bool {
    any(lower, SPAM_WORDS)
}

/// The class of a failure with enhanced code `status`, described by
/// `lower` (the lower-cased diagnostic).
fn by_status(status: Status, lower: &str) -> BounceClass {
    match (status.class, status.subject, status.detail) {
        // Temporary, or a success that slipped through: nothing to hold
        // against the address.
        (2 | 4, _, _) => BounceClass::Soft,
        // Mailbox full; message too big for the mailbox or the system: the
        // message, not the address, is at fault.
        (5, 2, 2 | 3) | (5, 3, 4) => BounceClass::Soft,
        // Unknown user, bad address, disabled mailbox.
        (5, 1, _) | (5, 2, 1) => BounceClass::Hard,
        (5, 7, _) if spam_wording(lower) || any(lower, POLICY_WORDS) => BounceClass::Spam,
        _ if spam_wording(lower) => BounceClass::Spam,
        // A bare "failed" (x.0.0): let the wording refine it.
        _ if status.is_generic() => by_wording(lower).unwrap_or(BounceClass::Hard),
        _ => BounceClass::Hard,
    }
}

/// The class of a failure with only a basic reply code.
fn by_basic(code: u16, lower: &str) -> BounceClass {
    match code {
        400..=499 => BounceClass::Soft,
        // 552: "exceeded storage allocation" (or message size).
        552 => match by_wording(lower) {
            Some(BounceClass::Hard) => BounceClass::Hard,
            Some(BounceClass::Spam) => BounceClass::Spam,
            _ => BounceClass::Soft,
        },
        _ => by_wording(lower).unwrap_or(BounceClass::Hard),
    }
}

/// The class from wording alone; `None` when nothing says it is a failure.
pub(crate) fn by_wording(lower: &str) -> Option<BounceClass> {
    if spam_wording(lower) {
        Some(BounceClass::Spam)
    } else if any(lower, UNKNOWN_WORDS) {
        Some(BounceClass::Hard)
    } else if any(lower, FULL_WORDS) || any(lower, DELAY_WORDS) {
        Some(BounceClass::Soft)
    } else if any(lower, FAILURE_WORDS) {
        Some(BounceClass::Hard)
    } else {
        None
    }
}

/// Classifies a failure from its enhanced code, else its basic code, else
/// its wording (`text`, any case). `None` only when there is no code and no
/// wording of a failure.
///
/// | code | class |
/// | --- | --- |
/// | `4.x.x`, basic `4xx` | Soft |
/// | `5.2.2` (mailbox full), `5.2.3`, `5.3.4` (message too big) | Soft |
/// | `5.1.x`, `5.2.1` (unknown, disabled) | Hard |
/// | `5.7.x` with spam, blocklist, policy, blocked, denied, reputation… wording | Spam |
/// | other `5.x.x` with spam or blocklist wording | Spam |
/// | `5.0.0`, basic `5xx` | by wording, else Hard |
/// | other `5.x.x` | Hard |
pub(crate) fn classify(
    status: Option<Status>,
    basic: Option<u16>,
    text: &str,
) -> Option<BounceClass> {
    let lower = text.to_lowercase();
    match (status, basic) {
        (Some(status), _) => Some(by_status(status, &lower)),
        (None, Some(code)) => Some(by_basic(code, &lower)),
        (None, None) => by_wording(&lower),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> Option<String> {
        Status::find(text).map(|s| s.to_string())
    }

    #[test]
    fn finds_enhanced_codes_but_not_addresses_or_versions() {
        assert_eq!(
            status("550 5.1.1 <a@b.example>: unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            status("550-5.7.1 [192.0.2.4] blocked").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(
            status("smtp;550 5.1.10 RESOLVER.ADR").as_deref(),
            Some("5.1.10")
        );
        assert_eq!(status("Status: 4.2.2.").as_deref(), Some("4.2.2"));
        assert_eq!(status("#5.7.520 Access denied").as_deref(), Some("5.7.520"));
        assert_eq!(status("host [192.0.2.4] said"), None);
        assert_eq!(status("host [5.6.7.8] said"), None);
        assert_eq!(status("Exim 4.96 and 2.1"), None);
        assert_eq!(status("v5.1.1 x5.1.1 15.1.1 5.1.1234"), None);
        assert_eq!(status("5.1."), None);
    }

    #[test]
    fn finds_basic_codes_at_token_starts() {
        assert_eq!(find_basic("550 5.1.1 unknown"), Some(550));
        assert_eq!(find_basic("    452-4.2.2 full"), Some(452));
        assert_eq!(find_basic("#550 5.1.10"), Some(550));
        assert_eq!(find_basic("RCPT TO:<a@b.example>: 550"), Some(550));
        assert_eq!(find_basic("at 2023 year 5500"), None);
        assert_eq!(find_basic("a550 b"), None);
    }

    #[test]
    fn classifies_by_code_then_wording() {
        let s = |t: &str| Status::find(t);
        let c = |t: &str| classify(s(t), find_basic(t), t);
        assert_eq!(c("550 5.1.1 user unknown"), Some(BounceClass::Hard));
        assert_eq!(c("550 5.2.1 mailbox disabled"), Some(BounceClass::Hard));
        assert_eq!(c("552 5.2.2 mailbox full"), Some(BounceClass::Soft));
        assert_eq!(c("552 5.3.4 message too big"), Some(BounceClass::Soft));
        assert_eq!(c("421 4.7.0 unsolicited mail"), Some(BounceClass::Soft));
        assert_eq!(
            c("550 5.7.1 Message rejected as spam"),
            Some(BounceClass::Spam)
        );
        assert_eq!(c("550 5.7.1 Relaying denied"), Some(BounceClass::Spam));
        assert_eq!(c("554 5.7.1 Service unavailable"), Some(BounceClass::Hard));
        assert_eq!(
            c("554 5.6.0 blocked using Spamhaus"),
            Some(BounceClass::Spam)
        );
        assert_eq!(c("550 5.1.1 blocked: spam"), Some(BounceClass::Hard));
        assert_eq!(c("550 5.0.0 mailbox full"), Some(BounceClass::Soft));
        assert_eq!(c("550 5.0.0 something"), Some(BounceClass::Hard));
        assert_eq!(c("550 Requested action not taken"), Some(BounceClass::Hard));
        assert_eq!(
            c("552 Requested mail action aborted"),
            Some(BounceClass::Soft)
        );
        assert_eq!(c("450 try later"), Some(BounceClass::Soft));
        assert_eq!(c("The mailbox is full"), Some(BounceClass::Soft));
        assert_eq!(c("no such user here"), Some(BounceClass::Hard));
        assert_eq!(c("hello there"), None);
    }
}
