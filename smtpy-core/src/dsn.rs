//! Delivery status notifications (RFC 3464), built with `mail-builder`.
//!
//! When a forwarded message fails (or is delayed), the original sender gets a
//! `multipart/report; report-type=delivery-status` message with three parts:
//! a human-readable explanation, the machine-readable
//! `message/delivery-status`, and the original message's header block as
//! `text/rfc822-headers`.
//!
//! # No leak
//!
//! A DSN about a forward goes to an outside sender, so it must never reveal
//! the mailbox the alias forwards to (architecture decision 7). The request
//! names the alias as each recipient's [`final_recipient`](DsnRecipient::final_recipient)
//! and lists the mailboxes in [`secret_addresses`](DsnRequest::secret_addresses);
//! every text that comes from elsewhere is scrubbed before it is used:
//!
//! * each recipient's remote diagnostic: every occurrence of a secret address
//!   is replaced by that recipient's final recipient (the alias);
//! * the original header block (the forwarded copy's trace fields such as
//!   `Received: … for <mailbox>` or `Delivered-To:` may name the mailbox):
//!   every occurrence is replaced by the *first* recipient's final recipient
//!   (a DSN normally reports on one alias; when it names several, the sender
//!   addressed all of them, so naming one of them reveals nothing new);
//! * the envelope id and reporting host.
//!
//! Matching is case-insensitive (Unicode-aware, character by character) and
//! covers each secret address in its A-label and U-label forms and, for a
//! dot-atom local part, the needlessly quoted form (`"real.person"@…`). It
//! does not decode RFC 2047 encoded words or base64 inside the header block.
//! The DSN's own recipient (`to`) is exempt: a DSN addressed to one of the
//! secret addresses goes to its owner, and nothing leaks.
//!
//! ```
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::dsn::{DsnAction, DsnRecipient, DsnRequest, build_dsn};
//! use smtpy_core::model::RemoteReply;
//! use smtpy_core::time::Timestamp;
//!
//! let alias = EmailAddress::parse("shop@alias.example")?;
//! let mailbox = EmailAddress::parse("real.person@mail.example")?;
//! let request = DsnRequest {
//!     reporting_mta: "mx.alias.example".into(),
//!     original_envelope_id: None,
//!     arrival_date: Timestamp::from_unix_secs(1_700_000_000),
//!     recipients: vec![DsnRecipient {
//!         final_recipient: alias.clone(),
//!         action: DsnAction::Failed,
//!         status: "5.1.1".into(),
//!         diagnostic: Some(RemoteReply {
//!             code: 550,
//!             enhanced: Some("5.1.1".into()),
//!             text: "<Real.Person@Mail.Example>: user unknown".into(),
//!         }),
//!     }],
//!     original_headers: b"From: bob@sender.example\r\nSubject: hi\r\n".to_vec(),
//!     to: EmailAddress::parse("bob@sender.example")?,
//!     from_postmaster: EmailAddress::parse("postmaster@alias.example")?,
//!     secret_addresses: vec![mailbox],
//! };
//! let dsn = build_dsn(&request, Timestamp::from_unix_secs(1_700_000_600));
//! let text = String::from_utf8_lossy(&dsn).to_lowercase();
//! assert!(!text.contains("real.person@mail.example"));
//! assert!(text.contains("final-recipient: rfc822; shop@alias.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use crate::address::EmailAddress;
use crate::forward::{format_rfc5322_date, header_block};
use crate::model::{MessageKind, RemoteReply};
use crate::time::Timestamp;

/// Longest diagnostic text kept per recipient, in octets; longer remote
/// replies are cut at a word boundary.
pub const MAX_DIAGNOSTIC_LEN: usize = 2048;

/// Longest run of non-blank characters in a delivery-status field before it
/// is broken, so that no line comes near the 998-octet limit.
const MAX_WORD_LEN: usize = 900;

/// Fold delivery-status fields at about this column.
const FOLD_AT: usize = 76;

/// What happened to a recipient (RFC 3464 `Action`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DsnAction {
    /// Delivery failed permanently; the message will not be retried.
    Failed,
    /// Delivery has been delayed; it will be retried.
    Delayed,
}

impl DsnAction {
    /// The RFC 3464 action value (`failed`, `delayed`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
        }
    }
}

/// One recipient a DSN reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The recipient the DSN names: the **alias** for forwards, never the
    /// mailbox.
    pub final_recipient: EmailAddress,
    /// Failed or delayed.
    pub action: DsnAction,
    /// RFC 3463 status code, e.g. `5.1.1`. An invalid code is replaced by
    /// `5.0.0` (failed) or `4.0.0` (delayed).
    pub status: String,
    /// The remote server's reply, reported as `Diagnostic-Code: smtp; …`
    /// after scrubbing (see the module documentation).
    pub diagnostic: Option<RemoteReply>,
}

/// Everything [`build_dsn`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRequest {
    /// Our host name, for `Reporting-MTA: dns; …` and the Message-ID.
    pub reporting_mta: String,
    /// The `ENVID` the client gave with `MAIL FROM`, if any (already
    /// xtext-decoded).
    pub original_envelope_id: Option<String>,
    /// When we accepted the original message.
    pub arrival_date: Timestamp,
    /// The recipients reported on.
    pub recipients: Vec<DsnRecipient>,
    /// The original message's header block (a whole message is accepted too:
    /// only its header block is used), returned as `text/rfc822-headers`
    /// after scrubbing.
    pub original_headers: Vec<u8>,
    /// The DSN's recipient: the original envelope sender.
    pub to: EmailAddress,
    /// The DSN's `From`: our postmaster.
    pub from_postmaster: EmailAddress,
    /// Addresses that must not appear anywhere in the DSN: the mailboxes the
    /// aliases forward to.
    pub secret_addresses: Vec<EmailAddress>,
}

/// Whether a DSN may be sent about a message: never to the null sender, and
/// never about a DSN or a relayed bounce (no DSN about a DSN, RFC 3461 §6.2).
#[must_use]
pub fn dsn_allowed(original_sender: Option<&EmailAddress>, kind: MessageKind) -> bool {
    original_sender.is_some() && !matches!(kind, MessageKind::Dsn | MessageKind::BounceRelay)
}

/// Builds the DSN described by `request`, dated `now`: a complete message
/// with CRLF line endings, ready to be queued with the null reverse-path.
///
/// Headers: `From` (postmaster, display name "Mail Delivery System"), `To`
/// (the original sender), `Subject` ("Undelivered Mail Returned to Sender"
/// when any recipient failed, otherwise "Delivery delayed"),
/// `Auto-Submitted: auto-replied`, `Date`, a fresh `Message-ID` on the
/// reporting host, `MIME-Version`.
///
/// The `message/delivery-status` part is 7-bit (non-ASCII text in
/// diagnostics becomes `?`; a non-ASCII final recipient uses RFC 6533's
/// `utf-8` address type with `\x{…}` escapes). The header part is sent as
/// is when it is 7-bit, otherwise quoted-printable or base64.
#[must_use]
pub fn build_dsn(request: &DsnRequest, now: Timestamp) -> Vec<u8> {
    let scrubber = Scrubber::new(&request.secret_addresses, &request.to);
    let default_replacement = request
        .recipients
        .first()
        .map_or(&request.from_postmaster, |r| &r.final_recipient);
    let default_replacement = wire_form(default_replacement);
    let host = sanitize_host(&scrubber.scrub_str(&request.reporting_mta, &default_replacement));
    let any_failed = request
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);

    let diagnostics: Vec<Option<String>> = request
        .recipients
        .iter()
        .map(|r| {
            r.diagnostic
                .as_ref()
                .map(|d| diagnostic_text(d, &scrubber, &wire_form(&r.final_recipient)))
        })
        .collect();

    let human = human_part(request, &host, any_failed, &diagnostics);
    let status = status_part(
        request,
        &host,
        &scrubber,
        &default_replacement,
        &diagnostics,
        now,
    );
    let headers = crlf_normalize(&scrubber.scrub_bytes(
        header_block(&request.original_headers),
        &default_replacement,
    ));

    let headers_part = if is_7bit(&headers) {
        MimePart::new("text/rfc822-headers", BodyPart::Binary(headers.into()))
            .transfer_encoding("7bit")
    } else {
        MimePart::new("text/rfc822-headers", BodyPart::Binary(headers.into()))
    };
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new(
                "message/delivery-status",
                BodyPart::Binary(status.into_bytes().into()),
            )
            .transfer_encoding("7bit"),
            headers_part,
        ],
    );

    let subject = if any_failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delivery delayed"
    };
    let message_id = format!("{}.dsn@{}", uuid::Uuid::new_v4().simple(), host);
    let mut out = Vec::new();
    MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            wire_form(&request.from_postmaster),
        ))
        .to(Address::new_address(None::<&str>, wire_form(&request.to)))
        .subject(subject)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("Date", Raw::new(format_rfc5322_date(now)))
        .message_id(message_id)
        .body(report)
        .serialize(&mut out);
    out
}

/// `local@A-label`, the form for the wire and for DSN fields.
fn wire_form(address: &EmailAddress) -> String {
    format!(
        "{}@{}",
        address.local_part().as_str(),
        address.domain().as_ascii()
    )
}

/// The explanation for humans.
fn human_part(
    request: &DsnRequest,
    host: &str,
    any_failed: bool,
    diagnostics: &[Option<String>],
) -> String {
    let mut s = String::new();
    s.push_str("This is the mail system at host ");
    s.push_str(host);
    s.push_str(".\r\n\r\n");
    if any_failed {
        s.push_str("I'm sorry to have to inform you that your message could not\r\n");
        s.push_str("be delivered to one or more recipients. Details follow.\r\n");
    } else {
        s.push_str("Your message could not be delivered yet to one or more\r\n");
        s.push_str("recipients. Delivery will be retried; you do not need to\r\n");
        s.push_str("send it again.\r\n");
    }
    for (recipient, diagnostic) in request.recipients.iter().zip(diagnostics) {
        s.push_str("\r\n<");
        s.push_str(&wire_form(&recipient.final_recipient));
        s.push_str(">: ");
        s.push_str(match recipient.action {
            DsnAction::Failed => "delivery failed",
            DsnAction::Delayed => "delivery delayed",
        });
        s.push_str(" (");
        s.push_str(&valid_status(&recipient.status, recipient.action));
        s.push_str(")\r\n");
        if let Some(d) = diagnostic {
            s.push_str("    the remote server said: ");
            s.push_str(d);
            s.push_str("\r\n");
        }
    }
    s
}

/// The `message/delivery-status` body.
fn status_part(
    request: &DsnRequest,
    host: &str,
    scrubber: &Scrubber,
    default_replacement: &str,
    diagnostics: &[Option<String>],
    now: Timestamp,
) -> String {
    let mut s = String::new();
    push_field(&mut s, "Reporting-MTA", &format!("dns; {host}"));
    if let Some(envid) = &request.original_envelope_id {
        let envid = scrubber.scrub_str(envid, default_replacement);
        let envid = to_printable_ascii(&envid);
        if !envid.is_empty() {
            push_field(&mut s, "Original-Envelope-Id", &envid);
        }
    }
    push_field(
        &mut s,
        "Arrival-Date",
        &format_rfc5322_date(request.arrival_date),
    );
    let last_attempt = format_rfc5322_date(now);
    for (recipient, diagnostic) in request.recipients.iter().zip(diagnostics) {
        s.push_str("\r\n");
        push_field(
            &mut s,
            "Final-Recipient",
            &dsn_address(&recipient.final_recipient),
        );
        push_field(&mut s, "Action", recipient.action.as_str());
        push_field(
            &mut s,
            "Status",
            &valid_status(&recipient.status, recipient.action),
        );
        if let Some(d) = diagnostic {
            push_field(&mut s, "Diagnostic-Code", &format!("smtp; {d}"));
        }
        push_field(&mut s, "Last-Attempt-Date", &last_attempt);
    }
    s
}

/// `rfc822; local@domain`, or RFC 6533's `utf-8; …` with `\x{HEX}` escapes
/// for a non-ASCII local part (the part must stay 7-bit).
fn dsn_address(address: &EmailAddress) -> String {
    let wire = wire_form(address);
    if wire.is_ascii() {
        return format!("rfc822; {wire}");
    }
    let mut s = String::from("utf-8; ");
    for c in wire.chars() {
        if c.is_ascii() {
            s.push(c);
        } else {
            s.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    s
}

/// `status` when it is a valid RFC 3463 code (`class.subject.detail`,
/// class 2, 4 or 5, subject and detail 1–3 digits), else the generic code
/// for `action`.
fn valid_status(status: &str, action: DsnAction) -> Cow<'_, str> {
    let status = status.trim();
    let mut parts = status.split('.');
    let valid = matches!(parts.next(), Some("2" | "4" | "5"))
        && parts
            .by_ref()
            .take(2)
            .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            .count()
            == 2
        && parts.next().is_none();
    if valid {
        Cow::Borrowed(status)
    } else {
        Cow::Borrowed(match action {
            DsnAction::Failed => "5.0.0",
            DsnAction::Delayed => "4.0.0",
        })
    }
}

/// The reported diagnostic: `code [enhanced] text`, scrubbed (replacing
/// secrets by `alias`), flattened to one line of printable ASCII and cut to
/// [`MAX_DIAGNOSTIC_LEN`] at a word boundary (so no part of an address is
/// left at the cut).
fn diagnostic_text(reply: &RemoteReply, scrubber: &Scrubber, alias: &str) -> String {
    let mut raw = String::with_capacity(reply.text.len() + 16);
    raw.push_str(&reply.code.to_string());
    if let Some(e) = &reply.enhanced {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .take(11)
            .collect();
        if !e.is_empty() {
            raw.push(' ');
            raw.push_str(&e);
        }
    }
    raw.push(' ');
    raw.push_str(&reply.text);
    // Scrub first (while non-ASCII secrets are intact), flatten, then scrub
    // again in case flattening produced a secret's ASCII form.
    let scrubbed = scrubber.scrub_str(&raw, alias);
    let flat = to_printable_ascii(&scrubbed);
    let mut text = scrubber.scrub_str(&flat, alias).into_owned();
    if text.len() > MAX_DIAGNOSTIC_LEN {
        // ASCII only, so any index is a char boundary.
        text.truncate(MAX_DIAGNOSTIC_LEN);
        match text.rfind(' ') {
            Some(i) => text.truncate(i),
            None => text.clear(),
        }
        text.push_str(" ...");
    }
    text
}

/// Control characters become spaces (so multi-line replies become one
/// line), other non-ASCII characters `?`; runs of spaces collapse; trimmed.
fn to_printable_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || c == ' ' {
            ' '
        } else if c.is_ascii() {
            c
        } else {
            '?'
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

/// A host name made safe for `Reporting-MTA` and the Message-ID: cut at the
/// first character that cannot be part of a host name.
fn sanitize_host(host: &str) -> String {
    let host: String = host
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(253)
        .collect();
    if host.is_empty() {
        "localhost".into()
    } else {
        host
    }
}

/// Appends `Name: value` folded at blanks near [`FOLD_AT`] columns, CRLF
/// terminated. `value` is printable ASCII; words longer than
/// [`MAX_WORD_LEN`] are broken.
fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut column = name.len() + 1;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        let mut word = word;
        loop {
            let (piece, rest) = word.split_at(word.len().min(MAX_WORD_LEN));
            if column + 1 + piece.len() > FOLD_AT && column > name.len() + 1 {
                out.push_str("\r\n");
                column = 0;
            }
            out.push(' ');
            out.push_str(piece);
            column += 1 + piece.len();
            if rest.is_empty() {
                break;
            }
            word = rest;
        }
    }
    out.push_str("\r\n");
}

/// Whether `bytes` can be sent as 7bit: ASCII without NUL, CR and LF only
/// as CRLF, lines at most 998 octets.
fn is_7bit(bytes: &[u8]) -> bool {
    let mut line = 0usize;
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            0 | 128..=255 => return false,
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => return false,
            b'\n' if prev != b'\r' => return false,
            b'\n' => line = 0,
            b'\r' => {}
            _ => {
                line += 1;
                if line > 998 {
                    return false;
                }
            }
        }
        prev = b;
    }
    true
}

/// Bare CR and bare LF become CRLF; a final line break is added if missing.
fn crlf_normalize(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------
// Scrubbing

/// Replaces secret addresses, case-insensitively, in text and bytes.
struct Scrubber {
    /// The forms to look for, longest first (so a longer form is replaced
    /// before a shorter one it contains).
    needles: Vec<Vec<char>>,
}

impl Scrubber {
    /// Needles for every form of every secret, except addresses equal to
    /// `exempt` (the DSN's own recipient).
    fn new(secrets: &[EmailAddress], exempt: &EmailAddress) -> Scrubber {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets.iter().filter(|s| *s != exempt) {
            let local = secret.local_part().as_str();
            let ascii = secret.domain().as_ascii();
            let unicode = secret.domain().as_unicode();
            forms.push(format!("{local}@{ascii}"));
            forms.push(format!("{local}@{unicode}"));
            if !secret.local_part().is_quoted() {
                forms.push(format!("\"{local}\"@{ascii}"));
                forms.push(format!("\"{local}\"@{unicode}"));
            }
        }
        forms.sort_by(|a, b| b.chars().count().cmp(&a.chars().count()).then(a.cmp(b)));
        forms.dedup();
        Scrubber {
            needles: forms.into_iter().map(|f| f.chars().collect()).collect(),
        }
    }

    /// `text` with every needle replaced by `replacement`.
    fn scrub_str<'a>(&self, text: &'a str, replacement: &str) -> Cow<'a, str> {
        match self.scrub(text.as_bytes(), replacement) {
            None => Cow::Borrowed(text),
            // Replacing whole characters of valid UTF-8 by valid UTF-8 keeps
            // it valid; the fallback never happens.
            Some(bytes) => Cow::Owned(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// `bytes` (any encoding; UTF-8 sequences are decoded where needed) with
    /// every needle replaced by `replacement`.
    fn scrub_bytes<'a>(&self, bytes: &'a [u8], replacement: &str) -> Cow<'a, [u8]> {
        match self.scrub(bytes, replacement) {
            None => Cow::Borrowed(bytes),
            Some(out) => Cow::Owned(out),
        }
    }

    /// One left-to-right pass; at each position the first (longest) needle
    /// that matches is replaced. `None` when nothing matched.
    fn scrub(&self, haystack: &[u8], replacement: &str) -> Option<Vec<u8>> {
        if self.needles.is_empty() {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut i = 0;
        while i < haystack.len() {
            let matched = self
                .needles
                .iter()
                .find_map(|n| match_ci(&haystack[i..], n));
            match matched {
                Some(len) => {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(haystack.len()));
                    buf.extend_from_slice(&haystack[copied..i]);
                    buf.extend_from_slice(replacement.as_bytes());
                    i += len;
                    copied = i;
                }
                None => i += 1,
            }
        }
        let mut buf = out?;
        buf.extend_from_slice(&haystack[copied..]);
        Some(buf)
    }
}

/// If `haystack` starts with `needle` (case-insensitively, character by
/// character), the number of bytes matched.
fn match_ci(haystack: &[u8], needle: &[char]) -> Option<usize> {
    let mut at = 0;
    for &n in needle {
        let (c, len) = decode_char(haystack.get(at..)?)?;
        if c != n && !c.to_lowercase().eq(n.to_lowercase()) {
            return None;
        }
        at += len;
    }
    Some(at)
}

/// The UTF-8 character at the start of `bytes` and its length.
fn decode_char(bytes: &[u8]) -> Option<(char, usize)> {
    let first = *bytes.first()?;
    let len = match first {
        0x00..=0x7f => return Some((char::from(first), 1)),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(bytes.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_validated() {
        assert_eq!(valid_status("5.1.1", DsnAction::Failed), "5.1.1");
        assert_eq!(valid_status(" 4.4.7 ", DsnAction::Failed), "4.4.7");
        assert_eq!(valid_status("5.1", DsnAction::Failed), "5.0.0");
        assert_eq!(valid_status("3.1.1", DsnAction::Delayed), "4.0.0");
        assert_eq!(valid_status("5.1.1.1", DsnAction::Failed), "5.0.0");
        assert_eq!(valid_status("5.1000.1", DsnAction::Failed), "5.0.0");
        assert_eq!(valid_status("5.x.1", DsnAction::Failed), "5.0.0");
    }

    #[test]
    fn folding_keeps_lines_short() {
        let mut s = String::new();
        let long = "word ".repeat(100) + &"x".repeat(2000);
        push_field(&mut s, "Diagnostic-Code", &long);
        for line in s.split("\r\n") {
            assert!(line.len() <= 998, "{}", line.len());
        }
        assert!(s.ends_with("\r\n"));
    }

    #[test]
    fn crlf_normalisation() {
        assert_eq!(crlf_normalize(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert!(is_7bit(b"a\r\nb\r\n"));
        assert!(!is_7bit(b"a\nb"));
        assert!(!is_7bit("é".as_bytes()));
    }
}
