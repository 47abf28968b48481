//! The forwarding transformation: what smtpy adds to a message it forwards,
//! and the cheap checks it makes before accepting one.
//!
//! In this (transparent) form the message is kept byte for byte; smtpy only
//! prepends header fields — its `Received` trace field
//! ([`received_header`]) and its loop marker ([`loop_marker_header`]) — with
//! [`prepend_headers`]. Alias-mode header rewriting lives elsewhere.
//!
//! Loop detection ([`loop_check`]) looks at the header block only, never at
//! the MIME body: it counts `Received` fields (more than Postfix's default
//! `hopcount_limit` means a loop) and looks for our own loop marker. Callers
//! answer a detected loop with `554 5.4.6`.
//!
//! ```
//! use smtpy_core::forward::{LOOP_MARKER_HEADER, loop_check, loop_marker_header, prepend_headers};
//!
//! let message = b"Subject: hi\r\n\r\nbody\r\n";
//! assert!(loop_check(message, "mx.alias.example").is_ok());
//! let forwarded = prepend_headers(message, &[loop_marker_header("mx.alias.example")]);
//! assert!(forwarded.starts_with(LOOP_MARKER_HEADER.as_bytes()));
//! assert!(loop_check(&forwarded, "MX.alias.example").is_err());
//! ```

use std::collections::HashSet;
use std::net::IpAddr;

use crate::address::EmailAddress;
use crate::time::Timestamp;

/// The most `Received` fields a message may carry when it leaves us
/// (Postfix's default `hopcount_limit`). A message that arrives with this
/// many or more is refused by [`loop_check`]: with ours added it would
/// exceed the limit.
pub const MAX_RECEIVED: usize = 50;

/// The header field smtpy adds to every message it forwards, with our
/// hostname as its value. Seeing it with our hostname on an incoming message
/// means the message went round a loop back to us.
pub const LOOP_MARKER_HEADER: &str = "X-Smtpy-Loop";

/// Longest HELO name or host name copied into a `Received` field, in octets.
const MAX_HOST_LEN: usize = 255;

/// Longest protocol name (`with`) copied into a `Received` field.
const MAX_WITH_LEN: usize = 32;

/// Longest queue id copied into a `Received` field.
const MAX_ID_LEN: usize = 64;

/// A mail loop was detected; the SMTP answer is `554 5.4.6`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    /// The message carries [`MAX_RECEIVED`] or more `Received` fields.
    #[error("too many hops: at least {count} Received header fields")]
    TooManyHops {
        /// How many were counted (the count stops at the limit).
        count: usize,
    },
    /// The message carries our own loop marker: it was forwarded by us before.
    #[error("mail loop: the message was already forwarded by this host")]
    MarkerFound,
}

// ---------------------------------------------------------------------------
// Header block scanning

/// One header field of a message's header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The field name as written (without the colon and any whitespace
    /// before it).
    pub name: &'a [u8],
    /// The raw value after the colon, folding line breaks included, without
    /// the final line break.
    pub value: &'a [u8],
}

impl HeaderField<'_> {
    /// Whether the field is called `name` (ASCII case-insensitive).
    #[must_use]
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (line breaks removed) and trimmed of surrounding
    /// whitespace.
    #[must_use]
    pub fn unfolded_value(&self) -> Vec<u8> {
        let unfolded: Vec<u8> = self
            .value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        unfolded.trim_ascii().to_vec()
    }
}

/// Iterator over the header fields of a message; see [`header_fields`].
#[derive(Debug, Clone)]
pub struct HeaderFields<'a> {
    rest: &'a [u8],
}

/// The header fields of `message`, in order, without looking at the body.
///
/// The header block ends at the first empty line (`CRLF` or a bare `LF`), or
/// at the first line that is neither a field (`name:` where the name is
/// printable ASCII, optionally followed by whitespace before the colon) nor
/// a continuation line (starting with a space or tab) — as Postfix does, such
/// a line is taken as the start of the body. A message without a separator
/// is all header block until such a line or the end.
#[must_use]
pub fn header_fields(message: &[u8]) -> HeaderFields<'_> {
    HeaderFields { rest: message }
}

/// The header block of `message`: every field line [`header_fields`] would
/// return, including their line breaks, without the empty line that ends
/// the block.
#[must_use]
pub fn header_block(message: &[u8]) -> &[u8] {
    let mut fields = header_fields(message);
    while fields.next().is_some() {}
    let consumed = message.len() - fields.rest.len();
    &message[..consumed]
}

/// Splits off one line: (line including its `\n`, content without the line
/// break).
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &bytes[..=i];
            let content = &bytes[..i];
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            (line, content)
        }
        None => (bytes, bytes),
    }
}

/// The length of a field name on a line, or `None` when the line is not a
/// field line.
fn field_name_len(content: &[u8]) -> Option<usize> {
    let colon = content.iter().position(|&b| b == b':')?;
    let name = content[..colon].trim_ascii_end();
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    Some(colon)
}

impl<'a> Iterator for HeaderFields<'a> {
    type Item = HeaderField<'a>;

    fn next(&mut self) -> Option<HeaderField<'a>> {
        let start = self.rest;
        let (line, content) = split_line(start);
        if content.is_empty() {
            // Empty line (or end of input): end of the header block.
            return None;
        }
        if matches!(content[0], b' ' | b'\t') {
            // A continuation line with no field before it: not a header block.
            return None;
        }
        let colon = field_name_len(content)?;
        let name = content[..colon].trim_ascii_end();
        let mut len = line.len();
        // Continuation lines.
        loop {
            let (next_line, next_content) = split_line(&start[len..]);
            if next_line.is_empty() || !matches!(next_content.first(), Some(b' ' | b'\t')) {
                break;
            }
            len += next_line.len();
        }
        let field = &start[..len];
        let value = &field[colon + 1..];
        let value = value
            .strip_suffix(b"\n")
            .map(|v| v.strip_suffix(b"\r").unwrap_or(v))
            .unwrap_or(value);
        self.rest = &start[len..];
        Some(HeaderField { name, value })
    }
}

/// How many `Received` fields (name case-insensitive) the header block of
/// `message` holds. A `Received:` line in the body is not counted.
#[must_use]
pub fn count_received(message: &[u8]) -> usize {
    header_fields(message).filter(|f| f.is("Received")).count()
}

/// Whether the header block of `message` holds a `marker_header_name` field
/// (case-insensitive) whose value, unfolded and trimmed, is `our_hostname`
/// (ASCII case-insensitive).
#[must_use]
pub fn has_loop_marker(message: &[u8], marker_header_name: &str, our_hostname: &str) -> bool {
    header_fields(message).any(|f| f.is(marker_header_name) && is_our_marker(&f, our_hostname))
}

/// Whether a marker field's value names `hostname`.
fn is_our_marker(field: &HeaderField<'_>, hostname: &str) -> bool {
    field
        .unfolded_value()
        .eq_ignore_ascii_case(hostname.trim().as_bytes())
}

/// The loop check made at end of DATA, in one pass over the header block:
/// refuses a message with [`MAX_RECEIVED`] or more `Received` fields, or with
/// our [`LOOP_MARKER_HEADER`] naming `hostname`. Callers answer an error
/// with `554 5.4.6`.
///
/// # Errors
///
/// [`LoopError::TooManyHops`] or [`LoopError::MarkerFound`].
pub fn loop_check(message: &[u8], hostname: &str) -> Result<(), LoopError> {
    let mut received = 0;
    for field in header_fields(message) {
        if field.is("Received") {
            received += 1;
            if received >= MAX_RECEIVED {
                return Err(LoopError::TooManyHops { count: received });
            }
        } else if field.is(LOOP_MARKER_HEADER) && is_our_marker(&field, hostname) {
            return Err(LoopError::MarkerFound);
        }
    }
    Ok(())
}

/// Our loop marker field, `X-Smtpy-Loop: <hostname>`, without a final line
/// break (as [`prepend_headers`] expects).
#[must_use]
pub fn loop_marker_header(hostname: &str) -> String {
    let host = sanitize_host(hostname);
    let mut s = String::with_capacity(LOOP_MARKER_HEADER.len() + 2 + host.len());
    s.push_str(LOOP_MARKER_HEADER);
    s.push_str(": ");
    s.push_str(&host);
    s
}

// ---------------------------------------------------------------------------
// Building

/// `headers` followed by `message`, in a single allocation; `message` is
/// copied unchanged.
///
/// Each header is one complete field (`Name: value`, folded with `CRLF` +
/// whitespace if needed). A `CRLF` is appended to each that does not already
/// end with one. The fields must not contain bare CR or LF.
#[must_use]
pub fn prepend_headers(message: &[u8], headers: &[String]) -> Vec<u8> {
    let needs_crlf = |h: &String| !h.ends_with("\r\n");
    let extra: usize = headers
        .iter()
        .map(|h| h.len() + if needs_crlf(h) { 2 } else { 0 })
        .sum();
    let mut out = Vec::with_capacity(extra + message.len());
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        if needs_crlf(h) {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(message);
    out
}

/// Our `Received` trace field (RFC 5321 §4.4), without a final line break:
///
/// ```text
/// Received: from client.example ([192.0.2.1])
///         by mx.alias.example with ESMTPS id 0BX7
///         for <shop@alias.example>; Tue, 14 Nov 2023 22:13:20 +0000
/// ```
///
/// It names the alias (`for`), never the mailbox. Values from the client
/// are sanitised so they cannot break the field: the HELO name and host
/// keep printable ASCII other than `()<>;"\` (anything else becomes `_`,
/// an empty HELO becomes `unknown`), `with` and `id` keep letters, digits
/// and `-_=+`, and each is truncated (255/32/64 octets). Every line is far
/// below 998 octets: the clauses go on separate lines, and the alias is
/// written with its A-label domain (a local part is at most 64 octets).
#[must_use]
pub fn received_header(
    by_host: &str,
    from_helo: &str,
    from_ip: IpAddr,
    with: &str,
    id: &str,
    for_alias: &EmailAddress,
    now: Timestamp,
) -> String {
    let helo = sanitize_host(from_helo);
    let by = sanitize_host(by_host);
    let with = sanitize_token(with, MAX_WITH_LEN);
    let id = sanitize_token(id, MAX_ID_LEN);
    let ip = match from_ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    let mut s = String::with_capacity(200 + helo.len() + by.len());
    s.push_str("Received: from ");
    s.push_str(&helo);
    s.push_str(" (");
    s.push_str(&ip);
    s.push_str(")\r\n\tby ");
    s.push_str(&by);
    if !with.is_empty() {
        s.push_str(" with ");
        s.push_str(&with);
    }
    if !id.is_empty() {
        s.push_str(" id ");
        s.push_str(&id);
    }
    s.push_str("\r\n\tfor <");
    s.push_str(for_alias.local_part().as_str());
    s.push('@');
    s.push_str(for_alias.domain().as_ascii());
    s.push_str(">; ");
    s.push_str(&format_rfc5322_date(now));
    s
}

/// A host name or HELO argument made safe for a trace field.
fn sanitize_host(host: &str) -> String {
    let mut out: String = host
        .trim()
        .chars()
        .take(MAX_HOST_LEN)
        .map(|c| {
            if c.is_ascii_graphic() && !"()<>;\"\\".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

/// A protocol name or queue id made safe for a trace field.
fn sanitize_token(token: &str, max: usize) -> String {
    token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_=+".contains(*c))
        .take(max)
        .collect()
}

/// Formats `at` as an RFC 5322 `date-time` in UTC, e.g.
/// `Tue, 14 Nov 2023 22:13:20 +0000` (day of month without a leading zero).
///
/// Instants outside years 0000–9999 (which RFC 5322's four-digit year
/// cannot express) are clamped to that range.
#[must_use]
pub fn format_rfc5322_date(at: Timestamp) -> String {
    const DAY_NAMES: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTH_NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    const MIN_SECS: i64 = -62_167_219_200;
    const MAX_SECS: i64 = 253_402_300_799;
    let secs = at.as_unix_secs().clamp(MIN_SECS, MAX_SECS);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // In range: `secs` is clamped to years 0000–9999.
    let (year, month, day) = crate::time::Day::from_days_since_epoch(days as i32).civil();
    // 1970-01-01 was a Thursday.
    let weekday = DAY_NAMES[days.rem_euclid(7) as usize];
    let month_name = MONTH_NAMES[(month - 1) as usize];
    format!(
        "{weekday}, {day} {month_name} {year:04} {:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// `recipients` without duplicates by canonical form
/// ([`EmailAddress::canonical`]: case-insensitive local part, A-label
/// domain), keeping the first occurrence of each and the order.
#[must_use]
pub fn dedup_recipients(recipients: Vec<EmailAddress>) -> Vec<EmailAddress> {
    let mut seen = HashSet::with_capacity(recipients.len());
    recipients
        .into_iter()
        .filter(|r| seen.insert(r.canonical()))
        .collect()
}
