//! Notices to owners: mailbox verification, bounces, quarantined mail,
//! DMARC failures and password resets.
//!
//! A [`Notification`] holds the facts (its kind, the owner's mailbox and a
//! few named values); [`Templates`] turn it into a complete RFC 5322
//! message — `multipart/alternative` with a `text/plain` and a `text/html`
//! part, both UTF-8 — which the caller DKIM-signs and queues like any other
//! outbound mail.
//!
//! ```
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::notify::{AutoDisabled, Notification, RenderEnv, Templates};
//! use smtpy_core::time::Timestamp;
//!
//! let owner = EmailAddress::parse("me@mail.example")?;
//! let notice = Notification::bounce(
//!     owner.clone(),
//!     &EmailAddress::parse("shop@alias.example")?,
//!     &owner,
//!     "hard",
//!     "550 5.1.1 <me@mail.example>: user unknown",
//!     AutoDisabled { alias: false, mailbox: true },
//! );
//! let from = EmailAddress::parse("notifications@alias.example")?;
//! let env = RenderEnv {
//!     from: &from,
//!     service_name: "Alias Example",
//!     hostname: "mx.alias.example",
//!     now: Timestamp::from_unix_secs(1_700_000_000),
//!     base_url: Some("https://alias.example"),
//! };
//! let message = Templates::builtin().render(&notice, &env)?;
//! let text = String::from_utf8(message)?;
//! assert!(text.contains("\r\nAuto-Submitted: auto-generated\r\n"));
//! assert!(text.contains("multipart/alternative"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The message
//!
//! `From` is the service address with the service name as display name,
//! `To` the owner's mailbox, `Subject` the rendered subject template, then
//! `Date`, `Message-ID: <random@hostname>`, `Auto-Submitted:
//! auto-generated` (RFC 3834: nobody should auto-reply to it) and
//! `X-Auto-Response-Suppress: All` (the same request, for Exchange).
//! Non-ASCII subjects are RFC 2047-encoded and long lines are
//! quoted-printable encoded by `mail-builder`, so no line exceeds 998
//! octets.
//!
//! A notification never carries the body of the message it is about: only
//! its sender, its subject (cut to [`MAX_SUBJECT_CHARS`] characters) and
//! the reason. The built-in templates are short and plain, with no remote
//! images and no tracking.
//!
//! # Variables
//!
//! Every value is cleaned when the message is rendered: line breaks and
//! tabs become spaces, other control characters and Unicode bidirectional
//! controls are removed, runs of spaces collapse, and the value is cut to
//! [`MAX_VALUE_CHARS`] characters. So a value can never start a new header
//! line. Values are HTML-escaped in the HTML part and written as they are in
//! the text part and the subject. Values named `base_url` or `…_link` are
//! kept only when they are `http://` or `https://` URLs without blanks.
//!
//! Every kind has these:
//!
//! | variable | value |
//! | --- | --- |
//! | `service_name` | [`RenderEnv::service_name`] |
//! | `hostname` | [`RenderEnv::hostname`] |
//! | `base_url` | [`RenderEnv::base_url`], or empty |
//! | `owner` | the notification's recipient ([`Notification::to`]) |
//!
//! and, per kind ([`NotificationKind::variables`] lists them all):
//!
//! | kind | variables |
//! | --- | --- |
//! | `mailbox_verification` | `mailbox`, `verification_code`, `verification_link` (may be empty), `expires` |
//! | `bounce` | `alias`, `mailbox`, `bounce_class`, `bounce_explanation`, `remote_reply`, `alias_disabled`, `mailbox_disabled` |
//! | `quarantine` | `alias`, `sender`, `sender_name`, `sender_address`, `subject`, `reason`, `reason_code`, `rule_name`, `release_link` (may be empty) |
//! | `dmarc_failure` | `alias`, `sender`, `sender_name`, `sender_address`, `subject`, `action`, `action_description` |
//! | `password_reset` | `reset_code`, `reset_link` (may be empty), `expires` |
//!
//! Flags (`alias_disabled`, `mailbox_disabled`) are `yes` or empty.
//!
//! # Templates and operator overrides
//!
//! Each kind has three templates: `<kind>.subject` (one line), `<kind>.txt`
//! and `<kind>.html`. The syntax is `{{name}}` for a value, and
//! `{{#name}}…{{/name}}` (shown when the value is not empty) or
//! `{{^name}}…{{/name}}` (shown when it is empty) for optional parts; a line
//! holding only a section tag disappears with its line break. A tag opens
//! and closes on one line; there is no way to write a literal `{{`.
//!
//! [`Templates::from_dir`] loads an operator's directory of overrides: any
//! of the fifteen files present replaces the built-in one, the others are
//! kept. Every file is checked at load time — an unknown variable, an
//! unbalanced `{{`, a mismatched section, a multi-line subject, invalid
//! UTF-8, a file over [`MAX_TEMPLATE_LEN`] octets or a file name that is not
//! one of the fifteen is an error naming the file, so a typo stops the
//! service at startup rather than at the first notice. Hidden files (names
//! starting with `.`) are ignored.

mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::forward::format_rfc5322_date;
use crate::time::Timestamp;
use template::{Escape, Template};

/// Longest subject of the message a notice is about, in characters; longer
/// subjects are cut and end with `…`.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Longest value of any variable, in characters; longer values are cut and
/// end with `…`.
pub const MAX_VALUE_CHARS: usize = 1000;

/// Longest rendered Subject of a notice, in characters.
pub const MAX_RENDERED_SUBJECT_CHARS: usize = 300;

/// Largest template file [`Templates::from_dir`] accepts, in octets.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;

/// Longest link kept in a `…_link` or `base_url` value, in octets.
const MAX_LINK_LEN: usize = 2000;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Confirm that a newly added mailbox belongs to the owner.
    MailboxVerification,
    /// A forward through an alias to a mailbox bounced.
    Bounce,
    /// A message to an alias was held for review.
    Quarantine,
    /// A message to an alias failed DMARC and was refused or tagged.
    DmarcFailure,
    /// Someone asked to reset the account's password.
    PasswordReset,
}

/// Variables every kind provides, filled from the [`RenderEnv`] and the
/// recipient.
const COMMON_VARS: [&str; 4] = ["service_name", "hostname", "base_url", "owner"];

const VERIFICATION_VARS: &[&str] = &[
    "service_name",
    "hostname",
    "base_url",
    "owner",
    "mailbox",
    "verification_code",
    "verification_link",
    "expires",
];

const BOUNCE_VARS: &[&str] = &[
    "service_name",
    "hostname",
    "base_url",
    "owner",
    "alias",
    "mailbox",
    "bounce_class",
    "bounce_explanation",
    "remote_reply",
    "alias_disabled",
    "mailbox_disabled",
];

const QUARANTINE_VARS: &[&str] = &[
    "service_name",
    "hostname",
    "base_url",
    "owner",
    "alias",
    "sender",
    "sender_name",
    "sender_address",
    "subject",
    "reason",
    "reason_code",
    "rule_name",
    "release_link",
];

const RESET_VARS: &[&str] = &[
    "service_name",
    "hostname",
    "base_url",
    "owner",
    "reset_code",
    "reset_link",
    "expires",
];

const DMARC_VARS: &[&str] = &[
    "service_name",
    "hostname",
    "base_url",
    "owner",
    "alias",
    "sender",
    "sender_name",
    "sender_address",
    "subject",
    "action",
    "action_description",
];

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 5] = [
        NotificationKind::MailboxVerification,
        NotificationKind::Bounce,
        NotificationKind::Quarantine,
        NotificationKind::DmarcFailure,
        NotificationKind::PasswordReset,
    ];

    /// The kind's name, also the stem of its template files:
    /// `mailbox_verification`, `bounce`, `quarantine`, `dmarc_failure`,
    /// `password_reset`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::MailboxVerification => "mailbox_verification",
            NotificationKind::Bounce => "bounce",
            NotificationKind::Quarantine => "quarantine",
            NotificationKind::DmarcFailure => "dmarc_failure",
            NotificationKind::PasswordReset => "password_reset",
        }
    }

    /// The variables this kind's templates may use (see the
    /// [module documentation](self)).
    ///
    /// ```
    /// use smtpy_core::notify::NotificationKind;
    /// assert!(NotificationKind::Bounce.variables().contains(&"remote_reply"));
    /// assert!(!NotificationKind::Bounce.variables().contains(&"verification_link"));
    /// ```
    #[must_use]
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            NotificationKind::MailboxVerification => VERIFICATION_VARS,
            NotificationKind::Bounce => BOUNCE_VARS,
            NotificationKind::Quarantine => QUARANTINE_VARS,
            NotificationKind::DmarcFailure => DMARC_VARS,
            NotificationKind::PasswordReset => RESET_VARS,
        }
    }

    /// Position in [`NotificationKind::ALL`].
    fn index(self) -> usize {
        match self {
            NotificationKind::MailboxVerification => 0,
            NotificationKind::Bounce => 1,
            NotificationKind::Quarantine => 2,
            NotificationKind::DmarcFailure => 3,
            NotificationKind::PasswordReset => 4,
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of a bounce's alias and mailbox were disabled automatically
/// because of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AutoDisabled {
    /// The alias was disabled.
    pub alias: bool,
    /// The mailbox was disabled.
    pub mailbox: bool,
}

/// What a notice says about the message it is about: never its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// The sender's address as the message gives it (header `From`, or the
    /// envelope sender); not necessarily valid.
    pub sender_address: String,
    /// The sender's display name, if any.
    pub sender_name: Option<String>,
    /// The message's Subject, if any (decoded); cut to
    /// [`MAX_SUBJECT_CHARS`] characters in the notice.
    pub subject: Option<String>,
}

impl MessageSummary {
    /// A summary of a message from `sender_address`.
    ///
    /// ```
    /// use smtpy_core::notify::MessageSummary;
    /// let m = MessageSummary::new("bob@sender.example", Some("Bob"), Some("Hello"));
    /// assert_eq!(m.sender_name.as_deref(), Some("Bob"));
    /// ```
    #[must_use]
    pub fn new(sender_address: &str, sender_name: Option<&str>, subject: Option<&str>) -> Self {
        Self {
            sender_address: sender_address.to_owned(),
            sender_name: sender_name.map(str::to_owned),
            subject: subject.map(str::to_owned),
        }
    }
}

/// Why a message was held.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    /// It failed DMARC and the owner's settings hold such mail.
    Dmarc,
    /// One of the owner's forwarding rules holds it.
    Rule {
        /// The rule's name.
        name: String,
    },
}

/// What happened to a message that failed DMARC (when it was held, the
/// notice is a [`NotificationKind::Quarantine`] one instead).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmarcOutcome {
    /// Refused during the SMTP session; not forwarded.
    Rejected,
    /// Forwarded with the owner's subject tag.
    Tagged,
}

impl DmarcOutcome {
    /// `rejected` or `tagged` (the `action` variable).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcOutcome::Rejected => "rejected",
            DmarcOutcome::Tagged => "tagged",
        }
    }
}

/// One notice to an owner: its kind, recipient and values.
///
/// Build it with the constructor of its kind; [`Notification::vars`] is
/// public so that a caller can add or adjust a value, but every template
/// variable of the kind must be present when it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// What it is about.
    pub kind: NotificationKind,
    /// The owner's mailbox it goes to.
    pub to: EmailAddress,
    /// The kind's own variables (the common ones come from the
    /// [`RenderEnv`] and `to`).
    pub vars: BTreeMap<&'static str, String>,
}

impl Notification {
    fn new(kind: NotificationKind, to: EmailAddress) -> Self {
        Self {
            kind,
            to,
            vars: BTreeMap::new(),
        }
    }

    fn set(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.vars.insert(name, value.into());
        self
    }

    fn set_message(self, message: &MessageSummary) -> Self {
        let address = clean_value(&message.sender_address, MAX_VALUE_CHARS);
        let name = message
            .sender_name
            .as_deref()
            .map(|n| clean_value(n, MAX_VALUE_CHARS))
            .unwrap_or_default();
        let sender = if name.is_empty() {
            address.clone()
        } else {
            format!("{name} <{address}>")
        };
        let subject = message
            .subject
            .as_deref()
            .map(|s| clean_value(s, MAX_SUBJECT_CHARS))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(no subject)".to_owned());
        self.set("sender", sender)
            .set("sender_name", name)
            .set("sender_address", address)
            .set("subject", subject)
    }

    /// Asks the owner of the new mailbox `to` to confirm it: with
    /// `code` (a token the owner can enter) and, when the service has a web
    /// address, `link` (a URL that confirms it), valid until `expires`.
    ///
    /// ```
    /// use smtpy_core::address::EmailAddress;
    /// use smtpy_core::notify::{Notification, NotificationKind};
    /// use smtpy_core::time::Timestamp;
    ///
    /// let n = Notification::mailbox_verification(
    ///     EmailAddress::parse("me@mail.example")?,
    ///     "K7QJ-2MXD",
    ///     Some("https://alias.example/verify?t=K7QJ-2MXD"),
    ///     Timestamp::from_unix_secs(1_700_086_400),
    /// );
    /// assert_eq!(n.kind, NotificationKind::MailboxVerification);
    /// assert_eq!(n.vars["expires"], "Wed, 15 Nov 2023 22:13:20 UTC");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn mailbox_verification(
        to: EmailAddress,
        code: &str,
        link: Option<&str>,
        expires: Timestamp,
    ) -> Self {
        let mailbox = to.to_string();
        Self::new(NotificationKind::MailboxVerification, to)
            .set("mailbox", mailbox)
            .set("verification_code", clean_value(code, MAX_VALUE_CHARS))
            .set(
                "verification_link",
                link.map(clean_link).unwrap_or_default(),
            )
            .set("expires", human_date(expires))
    }

    /// Lets the owner of the account `to` choose a new password: with
    /// `code` (a single-use token the owner can enter) and, when the service
    /// has a web address, `link` (a URL that opens the reset form), valid
    /// until `expires`.
    ///
    /// ```
    /// use smtpy_core::address::EmailAddress;
    /// use smtpy_core::notify::{Notification, NotificationKind};
    /// use smtpy_core::time::Timestamp;
    ///
    /// let n = Notification::password_reset(
    ///     EmailAddress::parse("me@mail.example")?,
    ///     "q3Zr9xT0",
    ///     Some("https://alias.example/reset-password/confirm#token=q3Zr9xT0"),
    ///     Timestamp::from_unix_secs(1_700_003_600),
    /// );
    /// assert_eq!(n.kind, NotificationKind::PasswordReset);
    /// assert_eq!(n.vars["reset_code"], "q3Zr9xT0");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn password_reset(
        to: EmailAddress,
        code: &str,
        link: Option<&str>,
        expires: Timestamp,
    ) -> Self {
        Self::new(NotificationKind::PasswordReset, to)
            .set("reset_code", clean_value(code, MAX_VALUE_CHARS))
            .set("reset_link", link.map(clean_link).unwrap_or_default())
            .set("expires", human_date(expires))
    }

    /// Tells the owner that a forward through `alias` to `mailbox` bounced.
    ///
    /// `class` is the bounce class (`hard`, `soft` or `spam`, as the bounce
    /// classifier names them; other labels are shown as they are, without an
    /// explanation), `remote_reply` what the receiving server said, and
    /// `disabled` whether the alias or the mailbox was disabled because of
    /// repeated bounces.
    #[must_use]
    pub fn bounce(
        to: EmailAddress,
        alias: &EmailAddress,
        mailbox: &EmailAddress,
        class: &str,
        remote_reply: &str,
        disabled: AutoDisabled,
    ) -> Self {
        let class = clean_value(class, 64).to_lowercase();
        let explanation = bounce_explanation(&class);
        let flag = |b: bool| if b { "yes" } else { "" };
        Self::new(NotificationKind::Bounce, to)
            .set("alias", alias.to_string())
            .set("mailbox", mailbox.to_string())
            .set("bounce_class", class)
            .set("bounce_explanation", explanation)
            .set("remote_reply", clean_value(remote_reply, MAX_VALUE_CHARS))
            .set("alias_disabled", flag(disabled.alias))
            .set("mailbox_disabled", flag(disabled.mailbox))
    }

    /// Tells the owner that `message`, sent to `alias`, is held for review
    /// because of `reason`; `release_link`, when given, is a URL where the
    /// owner can release or delete it.
    ///
    /// ```
    /// use smtpy_core::address::EmailAddress;
    /// use smtpy_core::notify::{MessageSummary, Notification, QuarantineReason};
    ///
    /// let n = Notification::quarantine(
    ///     EmailAddress::parse("me@mail.example")?,
    ///     &EmailAddress::parse("shop@alias.example")?,
    ///     &MessageSummary::new("news@sender.example", Some("News"), Some("Offers")),
    ///     &QuarantineReason::Rule { name: "hold newsletters".into() },
    ///     None,
    /// );
    /// assert_eq!(n.vars["sender"], "News <news@sender.example>");
    /// assert_eq!(n.vars["reason_code"], "rule");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn quarantine(
        to: EmailAddress,
        alias: &EmailAddress,
        message: &MessageSummary,
        reason: &QuarantineReason,
        release_link: Option<&str>,
    ) -> Self {
        let (code, text, rule) = match reason {
            QuarantineReason::Dmarc => (
                "dmarc",
                "it failed DMARC: the domain in its From address did not confirm \
                 that it sent it, so it may be forged"
                    .to_owned(),
                String::new(),
            ),
            QuarantineReason::Rule { name } => {
                let name = clean_value(name, 200);
                ("rule", format!("it matched your rule \"{name}\""), name)
            }
        };
        Self::new(NotificationKind::Quarantine, to)
            .set("alias", alias.to_string())
            .set_message(message)
            .set("reason", text)
            .set("reason_code", code)
            .set("rule_name", rule)
            .set(
                "release_link",
                release_link.map(clean_link).unwrap_or_default(),
            )
    }

    /// Tells the owner that `message`, sent to `alias`, failed DMARC and was
    /// refused or forwarded with a tag (`outcome`).
    #[must_use]
    pub fn dmarc_failure(
        to: EmailAddress,
        alias: &EmailAddress,
        message: &MessageSummary,
        outcome: DmarcOutcome,
    ) -> Self {
        let description = match outcome {
            DmarcOutcome::Rejected => {
                "It was refused: the sending server was told it could not be \
                 delivered, and it was not forwarded to you."
            }
            DmarcOutcome::Tagged => {
                "It was forwarded to you with a tag added to its subject, so \
                 that you can recognise it."
            }
        };
        Self::new(NotificationKind::DmarcFailure, to)
            .set("alias", alias.to_string())
            .set_message(message)
            .set("action", outcome.as_str())
            .set("action_description", description)
    }
}

/// The explanation shown for a bounce class.
fn bounce_explanation(class: &str) -> &'static str {
    match class {
        "hard" => {
            "A permanent failure: the receiving server refused the message for \
             this mailbox (for example, the address does not exist or was closed)."
        }
        "soft" => {
            "A temporary failure: the receiving server could not take the message \
             (for example, the mailbox is full). Later messages may get through."
        }
        "spam" => {
            "A policy rejection: the receiving server refused the message as spam \
             or because of its policy."
        }
        _ => "",
    }
}

/// What [`Templates::render`] needs besides the notification.
#[derive(Debug, Clone, Copy)]
pub struct RenderEnv<'a> {
    /// The service's sender address, e.g. `notifications@<hostname>`.
    pub from: &'a EmailAddress,
    /// The service's name, used as the `From` display name and in the text.
    pub service_name: &'a str,
    /// Our host name, the domain of the `Message-ID`.
    pub hostname: &'a str,
    /// The time of the `Date` header.
    pub now: Timestamp,
    /// The web address of the service, if it has one (`http://` or
    /// `https://`; anything else is ignored).
    pub base_url: Option<&'a str>,
}

/// Why loading or rendering notification templates failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A template file is wrong.
    #[error("notification template {file}{}: {problem}", line_suffix(*.line))]
    Template {
        /// The file's path.
        file: String,
        /// The 1-based line of the problem, when it is on one line.
        line: Option<usize>,
        /// What is wrong.
        problem: TemplateProblem,
    },
    /// The override directory holds a file that is not a template.
    #[error(
        "unexpected file {file} in the notification template directory \
         (expected <kind>.subject, <kind>.txt or <kind>.html with kind one of \
         mailbox_verification, bounce, quarantine, dmarc_failure, password_reset)"
    )]
    UnexpectedFile {
        /// The file's path.
        file: String,
    },
    /// A file or the directory could not be read.
    #[error("cannot read notification templates at {file}: {source}")]
    Io {
        /// The path.
        file: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The notification lacks a variable its templates use (only possible
    /// when [`Notification::vars`] was edited by hand).
    #[error("notification {kind} has no value for template variable `{name}`")]
    MissingVariable {
        /// The notification's kind.
        kind: NotificationKind,
        /// The variable.
        name: &'static str,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

/// What is wrong with a template.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateProblem {
    /// A variable the notification kind does not provide.
    #[error("unknown variable `{0}`")]
    UnknownVariable(String),
    /// `{{` without `}}` on the same line, or `{{` inside a tag.
    #[error("unbalanced `{{{{`: a tag must close with `}}}}` on the same line")]
    Unbalanced,
    /// A tag that is not `name`, `#name`, `^name` or `/name` (names are
    /// lower-case letters, digits and `_`).
    #[error("invalid tag `{{{{{0}}}}}`")]
    InvalidTag(String),
    /// A section that is never closed.
    #[error("section `{0}` is not closed")]
    UnclosedSection(String),
    /// A closing tag that does not close the innermost open section.
    #[error("`{{{{/{0}}}}}` does not close the open section")]
    UnexpectedClose(String),
    /// Sections nested too deeply.
    #[error("sections nested more than 8 deep")]
    TooDeep,
    /// A subject template with a line break.
    #[error("a subject template must be a single line")]
    MultiLineSubject,
    /// The file is larger than [`MAX_TEMPLATE_LEN`].
    #[error("file larger than 65536 octets")]
    TooLarge,
    /// The file is not UTF-8.
    #[error("file is not valid UTF-8")]
    NotUtf8,
}

/// Which of a kind's three templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    fn extension(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "txt",
            Part::Html => "html",
        }
    }
}

/// One kind's templates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KindTemplates {
    subject: Template,
    text: Template,
    html: Template,
}

/// The subject, text and HTML templates of every notification kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// Indexed by [`NotificationKind::index`].
    kinds: [KindTemplates; 5],
}

/// The built-in template sources of `kind`: subject, text, HTML.
fn builtin_sources(kind: NotificationKind) -> [&'static str; 3] {
    match kind {
        NotificationKind::MailboxVerification => [
            include_str!("../../templates/mailbox_verification.subject"),
            include_str!("../../templates/mailbox_verification.txt"),
            include_str!("../../templates/mailbox_verification.html"),
        ],
        NotificationKind::Bounce => [
            include_str!("../../templates/bounce.subject"),
            include_str!("../../templates/bounce.txt"),
            include_str!("../../templates/bounce.html"),
        ],
        NotificationKind::Quarantine => [
            include_str!("../../templates/quarantine.subject"),
            include_str!("../../templates/quarantine.txt"),
            include_str!("../../templates/quarantine.html"),
        ],
        NotificationKind::DmarcFailure => [
            include_str!("../../templates/dmarc_failure.subject"),
            include_str!("../../templates/dmarc_failure.txt"),
            include_str!("../../templates/dmarc_failure.html"),
        ],
        NotificationKind::PasswordReset => [
            include_str!("../../templates/password_reset.subject"),
            include_str!("../../templates/password_reset.txt"),
            include_str!("../../templates/password_reset.html"),
        ],
    }
}

/// Parses one template of `kind`.
fn parse_part(
    source: &str,
    kind: NotificationKind,
    part: Part,
) -> Result<Template, (Option<usize>, TemplateProblem)> {
    let source = if part == Part::Subject {
        let trimmed = source.trim();
        if trimmed.contains(['\r', '\n']) {
            return Err((None, TemplateProblem::MultiLineSubject));
        }
        trimmed
    } else {
        source
    };
    Template::parse(source, kind.variables()).map_err(|(line, problem)| (Some(line), problem))
}

impl Templates {
    /// The built-in templates (English).
    #[must_use]
    pub fn builtin() -> Self {
        let kinds = NotificationKind::ALL.map(|kind| {
            // The built-in sources are checked by this module's tests; the
            // literal fallback only keeps this function infallible.
            let [subject, text, html] = builtin_sources(kind);
            let parse = |source: &str, part| {
                parse_part(source, kind, part).unwrap_or_else(|_| Template::literal(source))
            };
            KindTemplates {
                subject: parse(subject, Part::Subject),
                text: parse(text, Part::Text),
                html: parse(html, Part::Html),
            }
        });
        Self { kinds }
    }

    /// The built-in templates with the operator's overrides from `dir`:
    /// files named `<kind>.subject`, `<kind>.txt` and `<kind>.html` replace
    /// the built-in ones; missing files fall back to them.
    ///
    /// # Errors
    ///
    /// [`NotifyError::Io`] when `dir` or a file cannot be read,
    /// [`NotifyError::UnexpectedFile`] for a file that is not one of the
    /// fifteen templates (hidden files are ignored), and
    /// [`NotifyError::Template`] for a template with an unknown variable,
    /// an unbalanced `{{`, a section error, a line break in a subject,
    /// invalid UTF-8 or more than [`MAX_TEMPLATE_LEN`] octets. Every error
    /// names the file.
    pub fn from_dir(dir: &Path) -> Result<Self, NotifyError> {
        let io_error = |path: &Path| {
            let file = path.display().to_string();
            move |source| NotifyError::Io { file, source }
        };
        let mut entries: Vec<(PathBuf, Option<String>)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name().into_string().ok();
            if name.as_deref().is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            entries.push((entry.path(), name));
        }
        entries.sort();

        let mut templates = Self::builtin();
        for (path, name) in entries {
            let file = path.display().to_string();
            let Some((kind, part)) = name.as_deref().and_then(parse_file_name) else {
                return Err(NotifyError::UnexpectedFile { file });
            };
            let source = read_template(&path).map_err(|e| match e {
                ReadError::Io(source) => NotifyError::Io {
                    file: file.clone(),
                    source,
                },
                ReadError::Problem(problem) => NotifyError::Template {
                    file: file.clone(),
                    line: None,
                    problem,
                },
            })?;
            let template = parse_part(&source, kind, part).map_err(|(line, problem)| {
                NotifyError::Template {
                    file: file.clone(),
                    line,
                    problem,
                }
            })?;
            let slot = &mut templates.kinds[kind.index()];
            match part {
                Part::Subject => slot.subject = template,
                Part::Text => slot.text = template,
                Part::Html => slot.html = template,
            }
        }
        Ok(templates)
    }

    /// Renders `n` as a complete message (CRLF line endings), ready to be
    /// DKIM-signed and queued. See the [module documentation](self) for its
    /// headers and how values are cleaned and escaped.
    ///
    /// # Errors
    ///
    /// [`NotifyError::MissingVariable`] when `n.vars` lacks a variable its
    /// templates use.
    pub fn render(&self, n: &Notification, env: &RenderEnv<'_>) -> Result<Vec<u8>, NotifyError> {
        let set = &self.kinds[n.kind.index()];
        let service_name = clean_value(env.service_name, 200);
        let mut vars: BTreeMap<&'static str, String> = n
            .vars
            .iter()
            .map(|(name, value)| {
                let value = if name.ends_with("_link") {
                    clean_link(value)
                } else {
                    clean_value(value, MAX_VALUE_CHARS)
                };
                (*name, value)
            })
            .collect();
        let [service, host, base, owner] = COMMON_VARS;
        vars.insert(service, service_name.clone());
        vars.insert(host, clean_value(env.hostname, 253));
        vars.insert(base, env.base_url.map(clean_link).unwrap_or_default());
        vars.insert(owner, n.to.to_string());

        let missing = |name| NotifyError::MissingVariable { kind: n.kind, name };
        let mut subject = String::new();
        set.subject
            .render(&vars, Escape::None, &mut subject)
            .map_err(missing)?;
        let subject = clean_value(&subject, MAX_RENDERED_SUBJECT_CHARS);
        let mut text = String::new();
        set.text
            .render(&vars, Escape::None, &mut text)
            .map_err(missing)?;
        let mut html = String::new();
        set.html
            .render(&vars, Escape::Html, &mut html)
            .map_err(missing)?;

        let message_id = format!(
            "{}.notice@{}",
            uuid::Uuid::new_v4().simple(),
            message_id_domain(env.hostname)
        );
        let from_name = (!service_name.is_empty()).then_some(service_name);
        let mut out = Vec::new();
        MessageBuilder::new()
            .from(Address::new_address(from_name, wire_form(env.from)))
            .to(Address::new_address(None::<&str>, wire_form(&n.to)))
            .subject(subject)
            .header("Date", Raw::new(format_rfc5322_date(env.now)))
            .message_id(message_id)
            .header("Auto-Submitted", Raw::new("auto-generated"))
            .header("X-Auto-Response-Suppress", Raw::new("All"))
            .text_body(to_crlf(&text))
            .html_body(to_crlf(&html))
            .serialize(&mut out);
        Ok(out)
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::builtin()
    }
}

/// `<kind>.<subject|txt|html>` → kind and part.
fn parse_file_name(name: &str) -> Option<(NotificationKind, Part)> {
    let (stem, extension) = name.rsplit_once('.')?;
    let kind = NotificationKind::ALL
        .into_iter()
        .find(|k| k.as_str() == stem)?;
    let part = [Part::Subject, Part::Text, Part::Html]
        .into_iter()
        .find(|p| p.extension() == extension)?;
    Some((kind, part))
}

enum ReadError {
    Io(std::io::Error),
    Problem(TemplateProblem),
}

/// Reads a template file of at most [`MAX_TEMPLATE_LEN`] octets as UTF-8.
fn read_template(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_TEMPLATE_LEN {
        return Err(ReadError::Problem(TemplateProblem::TooLarge));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::Problem(TemplateProblem::NotUtf8))
}

/// Unicode bidirectional embedding, override and isolate controls (they can
/// make text display in another order than it is written).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `value` as one clean line: line breaks and tabs become spaces, other
/// control characters and bidi controls are removed, runs of spaces
/// collapse, blanks at both ends go; at most `max` characters (a cut value
/// ends with `…`).
fn clean_value(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max.saturating_mul(4)));
    let mut count = 0;
    let mut pending_space = false;
    let mut cut = false;
    for c in value.chars() {
        let c = match c {
            '\r' | '\n' | '\t' | '\u{2028}' | '\u{2029}' => ' ',
            c if c.is_control() || is_bidi_control(c) => continue,
            c => c,
        };
        if c == ' ' {
            pending_space = count > 0;
            continue;
        }
        let needed = usize::from(pending_space) + 1;
        if count + needed > max {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        count += needed;
    }
    if cut && max > 0 {
        // Make room for the ellipsis.
        while count >= max {
            if out.pop().is_none() {
                break;
            }
            count -= 1;
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('…');
    }
    out
}

/// `link` when it is an `http://` or `https://` URL without blanks or
/// control characters and at most [`MAX_LINK_LEN`] octets; otherwise empty.
fn clean_link(link: &str) -> String {
    let link = link.trim();
    let lower = link.get(..8).unwrap_or(link).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        link.get(8..)
    } else if lower.starts_with("http://") {
        link.get(7..)
    } else {
        None
    };
    let host_ok = rest
        .and_then(|r| r.chars().next())
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '[');
    let chars_ok = !link
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c));
    if host_ok && chars_ok && link.len() <= MAX_LINK_LEN {
        link.to_owned()
    } else {
        String::new()
    }
}

/// A date for people: `Wed, 15 Nov 2023 22:13:20 UTC`.
fn human_date(at: Timestamp) -> String {
    let date = format_rfc5322_date(at);
    match date.strip_suffix(" +0000") {
        Some(d) => format!("{d} UTC"),
        None => date,
    }
}

/// The host name made safe for the right side of a Message-ID.
fn message_id_domain(hostname: &str) -> String {
    let host: String = hostname
        .trim()
        .trim_end_matches('.')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .take(253)
        .collect();
    if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    }
}

/// `local@A-label`, the form for headers.
fn wire_form(address: &EmailAddress) -> String {
    format!(
        "{}@{}",
        address.local_part().as_str(),
        address.domain().as_ascii()
    )
}

/// Line breaks as CRLF (`text` uses `\n`).
fn to_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for c in text.chars() {
        match c {
            '\r' => {}
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_parse() {
        for kind in NotificationKind::ALL {
            let [subject, text, html] = builtin_sources(kind);
            for (source, part) in [
                (subject, Part::Subject),
                (text, Part::Text),
                (html, Part::Html),
            ] {
                if let Err(e) = parse_part(source, kind, part) {
                    panic!("{kind}.{}: {e:?}", part.extension());
                }
            }
        }
    }

    #[test]
    fn builtin_html_has_no_remote_content() {
        for kind in NotificationKind::ALL {
            let [_, _, html] = builtin_sources(kind);
            let lower = html.to_lowercase();
            assert!(!lower.contains("<img"), "{kind}");
            assert!(!lower.contains("<script"), "{kind}");
            assert!(!lower.contains("src="), "{kind}");
            assert!(!lower.contains("url("), "{kind}");
            assert!(lower.contains("<html lang=\"en\">"), "{kind}");
        }
    }

    #[test]
    fn values_are_cleaned() {
        assert_eq!(clean_value("a\r\nBcc: x", 100), "a Bcc: x");
        assert_eq!(clean_value("  a \t\u{0}b\u{202E}c  ", 100), "a bc");
        assert_eq!(clean_value("abcdef", 4), "abc…");
        assert_eq!(clean_value("ab  cdef", 4), "ab…");
        assert_eq!(clean_value("abcd", 4), "abcd");
        assert_eq!(clean_value("ééééé", 3).chars().count(), 3);
        assert_eq!(clean_value("x", 0), "");
    }

    #[test]
    fn links_are_checked() {
        assert_eq!(
            clean_link(" https://a.example/v?t=1 "),
            "https://a.example/v?t=1"
        );
        assert_eq!(clean_link("HTTP://a.example"), "HTTP://a.example");
        assert_eq!(clean_link("javascript:alert(1)"), "");
        assert_eq!(clean_link("https://a.example/\r\nBcc: x"), "");
        assert_eq!(clean_link("https://"), "");
        assert_eq!(
            clean_link(&format!("https://a.example/{}", "x".repeat(3000))),
            ""
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_file_name("bounce.txt"),
            Some((NotificationKind::Bounce, Part::Text))
        );
        assert_eq!(
            parse_file_name("dmarc_failure.subject"),
            Some((NotificationKind::DmarcFailure, Part::Subject))
        );
        assert_eq!(parse_file_name("bounce.text"), None);
        assert_eq!(parse_file_name("bounces.txt"), None);
        assert_eq!(parse_file_name("README"), None);
    }

    #[test]
    fn message_id_domains() {
        assert_eq!(message_id_domain("mx.alias.example."), "mx.alias.example");
        assert_eq!(message_id_domain("mx>\r\nBcc: x"), "mx");
        assert_eq!(message_id_domain(""), "localhost");
    }

    #[test]
    fn common_variables_are_in_every_kind() {
        for kind in NotificationKind::ALL {
            for v in COMMON_VARS {
                assert!(kind.variables().contains(&v), "{kind} lacks {v}");
            }
            assert_eq!(NotificationKind::ALL[kind.index()], kind);
        }
    }
}
