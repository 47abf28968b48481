//! Reading incoming bounces (RFC 3464 reports and text bounces) and
//! recognising auto-replies.

use std::borrow::Cow;

use mail_parser::{
    Addr, Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};

use super::classify::{self, Status};
use super::{BounceClass, BouncedRecipient, ParsedBounce};

/// At most this many leading octets of a message are parsed; the report
/// parts of a bounce come first, the returned original (which may be large)
/// last.
pub const MAX_PARSE_LEN: usize = 512 * 1024;

/// At most this many recipients are read from one bounce.
pub const MAX_RECIPIENTS: usize = 100;

/// At most this many octets of a delivery-status part are read.
const MAX_STATUS_PART_LEN: usize = 256 * 1024;

/// At most this many octets of human-readable text are scanned.
const MAX_TEXT_LEN: usize = 64 * 1024;

/// Longest diagnostic kept per recipient, in octets.
pub const MAX_DIAGNOSTIC_LEN: usize = 1000;

/// Longest recipient address (or status, action) kept, in octets.
const MAX_FIELD_LEN: usize = 320;

/// At most this many fields are read per delivery-status group.
const MAX_FIELDS_PER_GROUP: usize = 64;

/// At most this many octets of a message are scanned for auto-reply headers.
const MAX_HEADER_SCAN_LEN: usize = 256 * 1024;

/// Parses `message` as a bounce: `None` when it is not one.
///
/// * **RFC 3464 reports**: every `message/delivery-status` (or
///   `message/global-delivery-status`) part of the message — not inside a
///   returned original — is read. Each per-recipient group whose `Action` is
///   `failed` or `delayed` (or, without an `Action`, whose `Status` is not
///   `2.x.x`) becomes a [`BouncedRecipient`], classified by its `Status`
///   (refined by the enhanced code of its `Diagnostic-Code` when the status
///   is the generic `x.0.0`) and its diagnostic wording; `delayed` is always
///   [`BounceClass::Soft`]. A report in which every recipient was
///   `delivered`, `relayed` or `expanded` is a success notice: `None`.
/// * **Text bounces** (no usable report part): the message must look like
///   one — from `MAILER-DAEMON`/`postmaster` or a "Mail Delivery System",
///   with a delivery-failure subject, or a body in a mail system's words
///   (Exim's "This message was created automatically by mail delivery
///   software", qmail's "I wasn't able to deliver your message", …) — and
///   its text, up to the returned
///   original, must hold a status code or failure wording. Each line with a
///   `4xx`/`5xx` code (joined with its continuation lines) becomes a
///   recipient, with the nearest address above it or on it.
///
/// Classification: see [`BounceClass`].
///
/// Bounded: only the first [`MAX_PARSE_LEN`] octets are parsed, at most
/// [`MAX_RECIPIENTS`] recipients are returned, each field is capped
/// ([`MAX_DIAGNOSTIC_LEN`] for diagnostics). Never panics (a panic inside
/// mail-parser is caught and the message treated as unparseable).
///
/// ```
/// use smtpy_core::bounce::{BounceClass, parse_bounce};
/// let bounce = b"From: MAILER-DAEMON@mx.example.net\r\n\
/// Subject: Undelivered Mail Returned to Sender\r\n\
/// Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
/// --b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
/// --b\r\nContent-Type: message/delivery-status\r\n\r\n\
/// Reporting-MTA: dns; mx.example.net\r\n\r\n\
/// Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
/// Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--b--\r\n";
/// let parsed = parse_bounce(bounce).expect("a bounce");
/// assert!(parsed.rfc3464);
/// assert_eq!(parsed.class, BounceClass::Hard);
/// assert_eq!(parsed.recipients[0].address.as_deref(), Some("gone@example.net"));
/// assert_eq!(parse_bounce(b"From: a@b.example\r\nSubject: hi\r\n\r\nHello"), None);
/// ```
#[must_use]
pub fn parse_bounce(message: &[u8]) -> Option<ParsedBounce> {
    let raw = &message[..message.len().min(MAX_PARSE_LEN)];
    let parsed = parse_guarded(raw, false)?;

    let mut report = ReportScan::default();
    for part in &parsed.parts {
        if report.recipients.len() >= MAX_RECIPIENTS {
            break;
        }
        if is_delivery_status(part) {
            report.saw_report = true;
            if let Some(body) = part_bytes(part) {
                read_delivery_status(&body[..body.len().min(MAX_STATUS_PART_LEN)], &mut report);
            }
        }
    }
    if !report.recipients.is_empty() {
        return Some(finish(true, report.recipients));
    }
    if report.saw_report && report.successes > 0 {
        // A delivery (or relay) notice: nothing failed.
        return None;
    }
    text_bounce(&parsed)
}

/// Whether `message` is an auto-reply: `Auto-Submitted` other than `no`,
/// `X-Autoreply`, `X-Autorespond` (and similar `X-Auto*`-reply fields),
/// `Precedence: auto_reply`, or a vacation subject ("Out of Office",
/// "Automatic reply:", "Auto:", "Autoreply", "Abwesenheitsnotiz",
/// "Réponse automatique", …).
///
/// Mail to a bounce address that is an auto-reply goes to the owner: it is
/// never treated as a bounce and never bounced.
///
/// Delivery status notifications are **not** auto-replies here, although
/// their generators (Postfix, Exim, Gmail) mark them `Auto-Submitted:
/// auto-replied` as RFC 3834 asks: a `multipart/report` with
/// `report-type=delivery-status`, or mail from `MAILER-DAEMON`,
/// `postmaster` or a "Mail Delivery System", is a bounce for
/// [`parse_bounce`] to read.
///
/// Only the header block is read (at most the first 256 KiB of the message).
///
/// ```
/// use smtpy_core::bounce::is_auto_reply;
/// assert!(is_auto_reply(b"From: a@b.example\r\nAuto-Submitted: auto-replied\r\nSubject: Away\r\n\r\nBack soon."));
/// assert!(!is_auto_reply(b"From: a@b.example\r\nAuto-Submitted: no\r\nSubject: Hi\r\n\r\nHello."));
/// ```
#[must_use]
pub fn is_auto_reply(message: &[u8]) -> bool {
    let raw = &message[..message.len().min(MAX_HEADER_SCAN_LEN)];
    let Some(parsed) = parse_guarded(raw, true) else {
        return false;
    };
    let headers = root_headers(&parsed);
    if is_report_header(headers) || from_mailer_daemon(headers) {
        return false;
    }
    let mut marked = false;
    for header in headers {
        let name = header.name();
        let value = header_text(header).to_ascii_lowercase();
        let value = value.trim();
        let first_token = value
            .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
            .next()
            .unwrap_or("");
        marked |= if name.eq_ignore_ascii_case("Auto-Submitted") {
            !first_token.is_empty() && first_token != "no"
        } else if name.eq_ignore_ascii_case("X-Autoreply")
            || name.eq_ignore_ascii_case("X-Autorespond")
            || name.eq_ignore_ascii_case("X-Autoresponse")
            || name.eq_ignore_ascii_case("X-AutoReply-From")
            || name.eq_ignore_ascii_case("X-Mail-Autoreply")
            || name.eq_ignore_ascii_case("X-Vacation")
        {
            first_token != "no" && first_token != "false"
        } else if name.eq_ignore_ascii_case("X-Autogenerated") {
            first_token == "reply"
        } else if name.eq_ignore_ascii_case("Precedence") {
            first_token == "auto_reply"
        } else if name.eq_ignore_ascii_case("Subject") {
            vacation_subject(value)
        } else {
            false
        };
    }
    marked
}

/// Subjects of vacation and out-of-office replies (lower case).
fn vacation_subject(lower: &str) -> bool {
    const PREFIXES: &[&str] = &["auto:", "autoreply:", "auto-reply:", "automatic reply:"];
    const ANYWHERE: &[&str] = &[
        "out of office",
        "out of the office",
        "automatic reply",
        "auto-reply",
        "autoreply",
        "auto reply",
        "vacation reply",
        "abwesenheitsnotiz",
        "automatische antwort",
        "réponse automatique",
        "respuesta automática",
        "risposta automatica",
        "automatisch antwoord",
        "resposta automática",
    ];
    PREFIXES.iter().any(|p| lower.starts_with(p)) || ANYWHERE.iter().any(|w| lower.contains(w))
}

// ---------------------------------------------------------------------------
// RFC 3464

/// What the delivery-status parts held.
#[derive(Default)]
struct ReportScan {
    saw_report: bool,
    successes: usize,
    recipients: Vec<BouncedRecipient>,
}

/// `message/delivery-status` or `message/global-delivery-status`.
fn is_delivery_status(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            })
    })
}

/// The decoded body of a leaf part.
fn part_bytes<'a>(part: &'a MessagePart<'_>) -> Option<&'a [u8]> {
    match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.as_ref()),
        PartType::Text(t) | PartType::Html(t) => Some(t.as_bytes()),
        PartType::Message(_) | PartType::Multipart(_) => None,
    }
}

/// The field groups of a delivery-status body: `(lower-case name, unfolded
/// value)` per field, groups separated by blank lines.
fn field_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
                if groups.len() > MAX_RECIPIENTS {
                    return groups;
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut()
                && value.len() < MAX_DIAGNOSTIC_LEN * 2
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && current.len() < MAX_FIELDS_PER_GROUP
        {
            current.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The value of field `name` in a group.
fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The text after `type;` in a typed field (`rfc822; a@b`, `smtp; 550 …`);
/// the whole value when it has no type.
fn after_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().is_empty() && !kind.contains(char::is_whitespace) => {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// Reads the per-recipient groups of one delivery-status body.
fn read_delivery_status(body: &[u8], scan: &mut ReportScan) {
    for group in field_groups(body) {
        if scan.recipients.len() >= MAX_RECIPIENTS {
            return;
        }
        let action = field(&group, "action").map(|a| first_word(a).to_ascii_lowercase());
        let status_field = field(&group, "status");
        let diagnostic = field(&group, "diagnostic-code").map(after_type);
        let address = field(&group, "final-recipient")
            .or_else(|| field(&group, "original-recipient"))
            .map(|v| clean_address(after_type(v)));
        if action.is_none() && status_field.is_none() && diagnostic.is_none() {
            // The per-message group (Reporting-MTA, Arrival-Date, …).
            continue;
        }
        let status = status_field.and_then(Status::find);
        if matches!(
            action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        ) || (action.is_none() && status.is_some_and(|s| s.class == 2))
        {
            scan.successes += 1;
            continue;
        }
        let from_diagnostic = diagnostic.and_then(Status::find);
        let status = match (status, from_diagnostic) {
            (Some(s), Some(d)) if s.is_generic() && d.class == s.class => Some(d),
            (Some(s), _) => Some(s),
            (None, d) => d,
        };
        let basic = diagnostic.and_then(classify::find_basic);
        let class = if action.as_deref() == Some("delayed") {
            BounceClass::Soft
        } else {
            classify::classify(status, basic, diagnostic.unwrap_or("")).unwrap_or(BounceClass::Hard)
        };
        scan.recipients.push(BouncedRecipient {
            address: address.filter(|a| !a.is_empty()),
            status: status.map(|s| s.to_string()),
            action: action.map(|a| cap(&a, MAX_FIELD_LEN)),
            diagnostic: diagnostic.map(|d| cap(d, MAX_DIAGNOSTIC_LEN)),
            class,
        });
    }
}

// ---------------------------------------------------------------------------
// Text bounces

/// Lower-case local parts of bounce senders.
const DAEMONS: &[&str] = &[
    "mailer-daemon",
    "mailer_daemon",
    "mailerdaemon",
    "mail-daemon",
    "postmaster",
];

/// Lower-case phrases of bounce subjects.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery status notification",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "delivery problem",
    "delivery delayed",
    "delayed mail",
    "failure notice",
    "returned mail",
    "returned to sender",
    "non-delivery",
    "nondeliverable",
    "not delivered",
    "could not be delivered",
    "warning: message",
];

/// Lower-case phrases that only mail systems write in bounces (a person
/// writing "could not be delivered" does not make a bounce).
const BOUNCE_BODIES: &[&str] = &[
    "mail delivery software",
    "this is the mail system at host",
    "this is the qmail-send program",
    "wasn't able to deliver your message",
    "could not be delivered to one or more",
    "has not yet been delivered to one or more",
    "the following address(es) failed",
    "delivery to the following recipient",
    "delivery has failed to these recipients",
    "your message wasn't delivered to",
    "message could not be delivered to the following",
];

/// Lines from which on the text is the returned original (lower case).
const ORIGINAL_MARKERS: &[&str] = &[
    "this is a copy of the message",
    "below this line is a copy of the message",
    "original message follows",
    "original message headers",
    "----- original message",
    "--- original message",
    "returned message",
    "header of the original message",
    "message headers follow",
];

/// Reads a bounce without a usable report part; `None` when it does not
/// look like a bounce.
fn text_bounce(parsed: &Message<'_>) -> Option<ParsedBounce> {
    let text = human_text(parsed);
    let lower = text.to_lowercase();
    let headers = root_headers(parsed);
    let subject = headers
        .iter()
        .find(|h| h.name == HeaderName::Subject)
        .map(|h| header_text(h).to_lowercase())
        .unwrap_or_default();
    let looks_like_bounce = from_mailer_daemon(headers)
        || BOUNCE_SUBJECTS.iter().any(|p| subject.contains(p))
        || BOUNCE_BODIES.iter().any(|p| lower.contains(p));
    if !looks_like_bounce {
        return None;
    }

    let lines: Vec<&str> = text.lines().collect();
    let mut recipients: Vec<BouncedRecipient> = Vec::new();
    let mut i = 0;
    while i < lines.len() && recipients.len() < MAX_RECIPIENTS {
        let line = lines[i];
        let status = Status::find(line);
        let basic = classify::find_basic(line);
        let failing = match (status, basic) {
            (Some(s), _) => s.class != 2,
            (None, Some(code)) => code >= 400,
            (None, None) => false,
        };
        if !failing {
            i += 1;
            continue;
        }
        // The diagnostic: this line and its continuation lines (up to a
        // blank line, at most five more).
        let mut diagnostic = line.trim().to_owned();
        let mut j = i + 1;
        while j < lines.len() && j <= i + 5 {
            let next = lines[j].trim();
            if next.is_empty() || is_address_line(next) || diagnostic.len() > MAX_DIAGNOSTIC_LEN {
                break;
            }
            diagnostic.push(' ');
            diagnostic.push_str(next);
            j += 1;
        }
        let address = find_address(line).or_else(|| {
            lines[i.saturating_sub(4)..i]
                .iter()
                .rev()
                .find_map(|l| find_address(l))
        });
        let class = classify::classify(status, basic, &diagnostic).unwrap_or(BounceClass::Hard);
        let status = status.map(|s| s.to_string());
        let duplicate = recipients
            .iter()
            .any(|r| r.address == address && r.status == status);
        if !duplicate {
            recipients.push(BouncedRecipient {
                address,
                status,
                action: None,
                diagnostic: Some(cap(&diagnostic, MAX_DIAGNOSTIC_LEN)),
                class,
            });
        }
        i = j;
    }
    if recipients.is_empty() {
        // No code: the wording alone, for the first listed address.
        let class = classify::classify(None, None, &text)?;
        let address = lines
            .iter()
            .map(|l| l.trim())
            .find(|l| is_address_line(l))
            .and_then(find_address);
        recipients.push(BouncedRecipient {
            address,
            status: None,
            action: None,
            diagnostic: None,
            class,
        });
    }
    Some(finish(false, recipients))
}

/// The human-readable text of a message (plain text bodies, HTML converted),
/// cut where the returned original starts, at most [`MAX_TEXT_LEN`] octets.
fn human_text(parsed: &Message<'_>) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(body) = parsed.body_text(i) {
        i += 1;
        let body = cut_at_original(&body);
        let room = MAX_TEXT_LEN.saturating_sub(out.len());
        if room == 0 {
            break;
        }
        out.push_str(truncate(body, room));
        out.push('\n');
    }
    out
}

/// `text` up to the first line that starts the returned original.
fn cut_at_original(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let lower = line.to_lowercase();
        if ORIGINAL_MARKERS.iter().any(|m| lower.contains(m)) {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// Whether a trimmed line is just an address (`a@b.example`, `<a@b.example>`,
/// `a@b.example:`), as bounces list failed recipients.
fn is_address_line(line: &str) -> bool {
    let bare = line
        .trim_end_matches(':')
        .trim_start_matches('<')
        .trim_end_matches('>');
    !bare.is_empty() && !bare.contains(char::is_whitespace) && looks_like_address(bare)
}

/// The first `local@domain` in `line` (without angle brackets), if any.
fn find_address(line: &str) -> Option<String> {
    let is_delim = |c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '"' | ',' | ';' | ':')
    };
    line.split(is_delim)
        .map(|t| t.trim_end_matches('.'))
        .find(|t| looks_like_address(t))
        .map(|t| cap(t, MAX_FIELD_LEN))
}

/// `local@domain.tld`, roughly.
fn looks_like_address(token: &str) -> bool {
    match token.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

/// The bounce with its worst class.
fn finish(rfc3464: bool, recipients: Vec<BouncedRecipient>) -> ParsedBounce {
    let class = recipients
        .iter()
        .map(|r| r.class)
        .reduce(BounceClass::worst)
        .unwrap_or(BounceClass::Hard);
    ParsedBounce {
        rfc3464,
        recipients,
        class,
    }
}

/// Whether the top-level `Content-Type` is a delivery-status report.
fn is_report_header(headers: &[Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name().eq_ignore_ascii_case("Content-Type")
            && match h.value() {
                HeaderValue::ContentType(ct) => {
                    ct.ctype().eq_ignore_ascii_case("multipart")
                        && ct
                            .subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                        && ct
                            .attribute("report-type")
                            .is_some_and(|r| r.to_ascii_lowercase().contains("delivery-status"))
                }
                _ => false,
            }
    })
}

/// Whether `From` is a mail system (`MAILER-DAEMON@…`, `postmaster@…`) or
/// names itself "Mail Delivery System/Subsystem".
fn from_mailer_daemon(headers: &[Header<'_>]) -> bool {
    let from: Option<&Addr<'_>> = headers
        .iter()
        .find(|h| h.name == HeaderName::From)
        .and_then(|h| h.value().as_address())
        .and_then(|a| a.first());
    let Some(from) = from else {
        return false;
    };
    let daemon_address = from.address().is_some_and(|a| {
        let local = a
            .rsplit_once('@')
            .map_or(a, |(l, _)| l)
            .to_ascii_lowercase();
        DAEMONS.contains(&local.as_str())
    });
    let daemon_name = from
        .name()
        .is_some_and(|n| n.to_ascii_lowercase().contains("mail delivery"));
    daemon_address || daemon_name
}

/// The top-level header fields (none for a message without parts).
fn root_headers<'a>(parsed: &'a Message<'_>) -> &'a [Header<'a>] {
    parsed
        .parts
        .first()
        .map_or(&[][..], |p| p.headers.as_slice())
}

/// Parses with mail-parser (whole message, or the header block only),
/// turning a panic inside the parser into "not parseable".
///
/// mail-parser 0.11 keeps `debug_assert!`s that malformed MIME can reach (a
/// `message/rfc822` part whose enclosing boundary never comes; the
/// regression input is in `tests/dsn_classify.rs`). They compile to nothing
/// in release builds but panic in debug builds; catching the unwind keeps
/// hostile input harmless in every build, and guards against a genuine
/// panic in the parser as well.
fn parse_guarded(raw: &[u8], headers_only: bool) -> Option<Message<'_>> {
    std::panic::catch_unwind(|| {
        let parser = MessageParser::default();
        if headers_only {
            parser.parse_headers(raw)
        } else {
            parser.parse(raw)
        }
    })
    .ok()
    .flatten()
}

/// A header value as text (addresses and other structured values: empty).
fn header_text<'a>(header: &'a Header<'_>) -> Cow<'a, str> {
    match header.value() {
        HeaderValue::Text(t) => Cow::Borrowed(t.as_ref()),
        HeaderValue::TextList(list) => Cow::Owned(list.join(" ")),
        _ => Cow::Borrowed(""),
    }
}

/// The first whitespace-separated word.
fn first_word(value: &str) -> &str {
    value.split_whitespace().next().unwrap_or("")
}

/// Strips angle brackets and surrounding white space from an address.
fn clean_address(value: &str) -> String {
    let value = value.trim().trim_start_matches('<').trim_end_matches('>');
    cap(value.trim(), MAX_FIELD_LEN)
}

/// At most `max` octets of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An owned copy of at most `max` octets of `text`.
fn cap(text: &str, max: usize) -> String {
    truncate(text, max).to_owned()
}
