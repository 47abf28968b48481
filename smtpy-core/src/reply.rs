//! SMTP replies smtpy gives, with enhanced status codes (RFC 3463).

use std::borrow::Cow;
use std::fmt;

/// An SMTP reply: basic code, enhanced status code and text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// Basic code: 2xx success, 4xx temporary, 5xx permanent.
    pub code: u16,
    /// Enhanced status `class.subject.detail`, e.g. `(5, 1, 1)`.
    pub enhanced: (u8, u16, u16),
    /// Human text (one line, no CR/LF).
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply with static text.
    #[must_use]
    pub const fn new(code: u16, enhanced: (u8, u16, u16), text: &'static str) -> Self {
        Self {
            code,
            enhanced,
            text: Cow::Borrowed(text),
        }
    }
    /// A reply with owned text (CR and LF are replaced by spaces).
    #[must_use]
    pub fn with_text(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        let text: String = text.into().replace(['\r', '\n'], " ");
        Self {
            code,
            enhanced,
            text: Cow::Owned(text),
        }
    }
    /// 2xx.
    #[must_use]
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 4xx: try again later; nothing is lost.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: do not try again.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// `250 2.1.5` recipient accepted.
    pub const RECIPIENT_OK: Reply = Reply::new(250, (2, 1, 5), "Recipient OK");
    /// `550 5.1.1` no such alias (also used for disabled aliases).
    pub const UNKNOWN_RECIPIENT: Reply = Reply::new(550, (5, 1, 1), "No such recipient here");
    /// `550 5.7.1` relaying denied (domain not hosted).
    pub const RELAY_DENIED: Reply = Reply::new(550, (5, 7, 1), "Relaying denied");
    /// `550 5.7.1` a forged or expired bounce address.
    pub const BAD_BOUNCE_ADDRESS: Reply =
        Reply::new(550, (5, 7, 1), "Invalid or expired bounce address");
    /// `451 4.4.3` the store could not be reached; try again.
    pub const STORE_UNAVAILABLE: Reply =
        Reply::new(451, (4, 4, 3), "Temporary lookup failure, try again later");
    /// `553 5.1.3` the address is not a valid mailbox.
    pub const BAD_ADDRESS: Reply = Reply::new(553, (5, 1, 3), "Invalid address syntax");
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s, d) = self.enhanced;
        write!(f, "{} {c}.{s}.{d} {}", self.code, self.text)
    }
}
