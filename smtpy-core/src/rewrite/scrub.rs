//! Reply scrubbing: the owner's mailbox never leaves.
//!
//! The owner of `shop@alias.example` replies from their real mailbox
//! `me@mail.example` to a reverse alias (`ra_…@alias.example`, which stands
//! for the outside contact `bob@outside.example`). smtpy sends that reply
//! **from the alias, to the contact**, after [`scrub_reply`] has replaced
//! every mention of the mailbox (by the alias) and of each reverse alias (by
//! its contact) in every header field and every text part. The caller then
//! DKIM-signs the result as the alias domain.
//!
//! [`leaks`] is the independent check for anything that goes outside
//! (replies, DSNs, notifications): it looks for an address in the raw bytes
//! and in every decoded form a mail client could show. `scrub_reply` runs it
//! on its own output and refuses ([`ScrubError::Leak`]) rather than return a
//! message that still reveals a replaced address.
//!
//! ```
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::rewrite::scrub::{ReplyPlan, leaks, scrub_reply};
//!
//! let alias = EmailAddress::parse("shop@alias.example")?;
//! let contact = EmailAddress::parse("bob@outside.example")?;
//! let replacements = [
//!     ("me@mail.example".to_owned(), "shop@alias.example".to_owned()),
//!     ("ra_x1@alias.example".to_owned(), "bob@outside.example".to_owned()),
//! ];
//! let plan = ReplyPlan {
//!     from: &alias,
//!     to: &contact,
//!     to_display: Some("Bob"),
//!     replacements: &replacements,
//! };
//! let reply = b"From: Me Myself <me@mail.example>\r\n\
//!     To: Bob via smtpy <ra_x1@alias.example>\r\n\
//!     Subject: Re: the order\r\n\
//!     \r\n\
//!     Thanks! Write to ME@mail.example any time.\r\n";
//! assert!(leaks(reply, "me@mail.example"));
//!
//! let out = scrub_reply(reply, &plan)?;
//! let text = String::from_utf8_lossy(&out);
//! assert!(text.starts_with("From: shop@alias.example\r\nTo: \"Bob\" <bob@outside.example>\r\n"));
//! assert!(text.contains("Write to shop@alias.example any time."));
//! assert!(!leaks(&out, "me@mail.example"));
//! assert!(!leaks(&out, "ra_x1@alias.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Header fields
//!
//! At the top level of the reply:
//!
//! * `From` becomes the alias, without a display name (the owner's real name
//!   may identify them); `To` becomes the contact, with the plan's display
//!   name; `Bcc` is removed. Extra `From`/`To` fields are removed; missing
//!   ones are added at the top.
//! * Removed entirely, because they trace the owner's provider, name the
//!   mailbox or its IP address, or sign for it: `Sender`, `Return-Path`,
//!   `Received`, `X-Received`, `X-Originating-IP`, `X-Originating-Email`,
//!   `DKIM-Signature`, `ARC-*`, `Authentication-Results`, `Received-SPF`,
//!   `X-Google-*`, `X-Gm-*`, `X-MS-*` (all of Microsoft's, including
//!   `X-MS-Exchange-*`), `X-Microsoft-*`, `Delivered-To`, `X-Original-To`,
//!   `Autocrypt` and `OpenPGP` (they carry the mailbox's key and address),
//!   and smtpy's own `X-Smtpy-*` markers. `X-Mailer` and `User-Agent` are
//!   kept.
//! * `Disposition-Notification-To` and `Return-Receipt-To` are **rewritten
//!   to the alias**: the owner still gets the read receipt they asked for,
//!   through the alias, and the contact never sees the mailbox.
//!
//! Every other field (top level, MIME part headers, headers of attached
//! messages) is decoded — unfolded, RFC 2047 encoded words decoded with their
//! charset, adjacent words joined — and the replacements are applied. A
//! field that does not change stays byte for byte. A field that changes is
//! written again: plain text stays plain, a run of encoded words that
//! changed is re-encoded as UTF-8 encoded words (`Q` or `B`, whichever is
//! shorter), and the field is refolded at about 78 columns. `Message-ID`,
//! `In-Reply-To` and `References` are kept for threading; like any field,
//! they change only where they contain a replaced address (a Message-ID on
//! the mailbox's *domain* is fine, `<1234.me@mail.example>` is rewritten to
//! `<1234.shop@alias.example>`). Headers of attached messages get the
//! replacements only: nothing is removed from them.
//!
//! Every header block (the message's and each part's) is made unambiguous,
//! so that smtpy, the DKIM signer and the recipient's client all read the
//! same fields: lines that are not fields (no colon) and fields whose name
//! is not printable ASCII are removed, and a separator line made of blanks
//! becomes an empty line.
//!
//! # Bodies
//!
//! * `text/*` parts (plain, html, calendar, vCard, …, at any depth, inside
//!   attached `message/rfc822` too, including base64-encoded ones) are
//!   transfer-decoded and charset-decoded, the replacements are applied, and
//!   when something changed the part is re-encoded as quoted-printable UTF-8
//!   (its `Content-Transfer-Encoding` and `charset` are updated, a
//!   `<meta charset>` in HTML too). Unchanged parts, all boundaries,
//!   preambles and epilogues stay byte for byte (a preamble or epilogue that
//!   names an address gets the replacement in place).
//! * In HTML the address is also found as `mailto:` target, with
//!   entity-encoded characters (`me&#64;mail.example`, `&commat;`, `&#x40;`),
//!   percent-encoded characters (`me%40mail.example`), and split by tags
//!   (`me@<span>mail</span>.example`: the replacement takes the address's
//!   place and the tags are kept after it). The same forms and invisible
//!   characters (soft hyphen, zero-width space and joiners) are recognised
//!   everywhere.
//! * In `text/calendar` and vCard parts, folded content lines are unfolded
//!   before matching and refolded at 75 octets.
//! * `message/delivery-status`, `message/disposition-notification` and the
//!   other report types are rewritten in place (they stay 7bit).
//! * **Non-text attachments are never rewritten** (a PDF or an image cannot
//!   be edited safely). If one contains an address once transfer-decoded,
//!   [`leaks`] sees it and `scrub_reply` returns [`ScrubError::Leak`] naming
//!   the attachment's type: the reply must not be sent as it is, and the owner
//!   should be told why.
//!
//! The output uses CRLF line breaks only (bare CR or LF in the input become
//! CRLF) and ends with CRLF; a line longer than 998 octets that cannot be
//! refolded or re-encoded (in an attachment) gives
//! [`ScrubError::LineTooLong`].
//!
//! # Matching
//!
//! Each needle is matched case-insensitively (ASCII, and Unicode simple
//! lower-casing beyond), in its A-label and U-label domain forms and, for a
//! dot-atom local part, the needlessly quoted form. A match must not follow
//! a letter or a digit, so the mailbox `john@gmail.com` is not found inside
//! the different address `bigjohn@gmail.com`; after any other character
//! (`.`, `-`, `+`, `<`, `:`, …) it counts, so `x.me@mail.example` contains
//! `me@mail.example`. What follows the address does not matter.
//!
//! # Limits
//!
//! MIME structure deeper than [`MAX_NESTING`] levels is not inspected:
//! `leaks` reports it as leaking and `scrub_reply` refuses it. Archives
//! (zip, …), PGP armour and other encodings inside attachments are not
//! looked into. Work is linear in the message size times the number of
//! needles; nothing recurses on the input's structure.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};

use crate::address::EmailAddress;
use crate::forward::{header_block, header_fields};

/// MIME nesting (multiparts and attached messages) deeper than this is not
/// inspected: [`leaks`] reports it as leaking, [`scrub_reply`] refuses it.
pub const MAX_NESTING: usize = 32;

/// Longest line allowed in the output, in octets, without the CRLF
/// (RFC 5322 §2.1.1).
pub const MAX_LINE_LEN: usize = 998;

/// Rewritten header fields are folded at about this column.
const FOLD_AT: usize = 78;

/// Longest encoded line in quoted-printable output, soft break included.
const QP_LINE_LEN: usize = 76;

/// Longest RFC 2047 encoded word.
const MAX_WORD_LEN: usize = 75;

/// Longest content line in iCalendar / vCard, in octets.
const CALENDAR_LINE_LEN: usize = 75;

/// Replacement passes over one text (a replacement can in theory complete a
/// needle with its neighbours; one more pass catches that).
const MAX_PASSES: usize = 4;

/// Invisible characters and tags skipped inside one match.
const MAX_SKIPS: usize = 64;

/// Longest HTML tag skipped inside a match, in octets.
const MAX_TAG_LEN: usize = 1024;

/// Longest charset name in an encoded word.
const MAX_CHARSET_LEN: usize = 64;

/// Sweeps merging header segments for matches that straddle two of them.
const MAX_MERGE_SWEEPS: usize = 3;

// ---------------------------------------------------------------------------
// Public API

/// What [`scrub_reply`] does to one reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyPlan<'a> {
    /// The sender the contact sees: the alias.
    pub from: &'a EmailAddress,
    /// The recipient: the contact the reverse alias stands for.
    pub to: &'a EmailAddress,
    /// The contact's display name for the `To` field, if any.
    pub to_display: Option<&'a str>,
    /// (needle, replacement) pairs applied case-insensitively: each mailbox
    /// address of the owner → the alias; each reverse alias in the message →
    /// its contact's address.
    pub replacements: &'a [(String, String)],
}

/// Why a reply could not be scrubbed. None of these can be fixed by trying
/// again: the reply must not be sent as it is.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubError {
    /// The input has no header fields: it is not a message.
    #[error("the reply has no header fields")]
    NotAMessage,
    /// The plan cannot work: an empty needle, or a replacement (or the alias
    /// or contact) that is itself one of the addresses to hide.
    #[error("invalid reply plan: {reason}")]
    InvalidPlan {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The message's structure cannot be inspected or rewritten safely:
    /// nested deeper than [`MAX_NESTING`], or a header block that strict
    /// parsers and mail-parser would still read differently.
    #[error("the reply cannot be rewritten: {reason}")]
    Malformed {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// After scrubbing, an address to hide is still visible in a place smtpy
    /// does not rewrite (typically a non-text attachment that contains it).
    #[error(
        "the reply would reveal a hidden address in {place}, which smtpy does not rewrite; \
         it must not be sent"
    )]
    Leak {
        /// Where the address remains, e.g. `an attachment of type
        /// application/pdf`. It never contains the address.
        place: String,
    },
    /// The reply has a line longer than [`MAX_LINE_LEN`] octets in a part
    /// smtpy does not rewrite.
    #[error("the reply has a line longer than 998 octets in a part smtpy does not rewrite")]
    LineTooLong,
}

/// Rewrites a reply written by the owner so it can go to the contact: see
/// the [module documentation](self) for every rule.
///
/// The input may use CRLF or bare LF line breaks; the output uses CRLF.
///
/// # Errors
///
/// [`ScrubError::NotAMessage`] when there is no header field;
/// [`ScrubError::InvalidPlan`] for an empty needle, or when the alias, the
/// contact or a replacement contains a needle; [`ScrubError::Malformed`] for MIME nesting deeper than
/// [`MAX_NESTING`] or a header block that would read differently to
/// different parsers; [`ScrubError::Leak`] when a needle is still visible
/// after scrubbing (a non-text attachment that contains it, or a form smtpy
/// does not rewrite); [`ScrubError::LineTooLong`] for an over-long line in a
/// part that is not rewritten.
pub fn scrub_reply(message: &[u8], plan: &ReplyPlan<'_>) -> Result<Vec<u8>, ScrubError> {
    if plan
        .replacements
        .iter()
        .any(|(needle, _)| needle.trim().is_empty())
    {
        return Err(ScrubError::InvalidPlan {
            reason: "empty address to replace",
        });
    }
    let matcher = Matcher::new(plan.replacements);
    for (_, replacement) in plan.replacements {
        if matcher.contains(replacement.as_bytes(), false) {
            return Err(ScrubError::InvalidPlan {
                reason: "a replacement contains an address to replace",
            });
        }
    }
    if matcher.contains(wire_form(plan.from).as_bytes(), false) {
        return Err(ScrubError::InvalidPlan {
            reason: "the alias is itself an address to hide",
        });
    }
    if matcher.contains(wire_form(plan.to).as_bytes(), false) {
        return Err(ScrubError::InvalidPlan {
            reason: "the contact is itself an address to hide",
        });
    }

    let input = crlf_normalize(message);
    let walk = Walk::new(&input);
    if walk.too_deep {
        return Err(ScrubError::Malformed {
            reason: "MIME nesting deeper than 32 levels",
        });
    }
    if walk.entities.first().is_none_or(|e| e.fields.is_empty()) {
        return Err(ScrubError::NotAMessage);
    }

    let mut out = Scrubber {
        matcher: &matcher,
        plan,
    }
    .run(&walk)?;
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    if longest_line(&out) > MAX_LINE_LEN {
        return Err(ScrubError::LineTooLong);
    }
    let check = Walk::new(&out);
    if !header_block_is_unambiguous(&out, &check) {
        return Err(ScrubError::Malformed {
            reason: "the header block reads differently to different parsers",
        });
    }
    if let Some(place) = find_leak_in(&check, &matcher) {
        return Err(ScrubError::Leak { place });
    }
    Ok(out)
}

/// Whether a strict reader ([`header_fields`]) sees the same top-level
/// fields, ending at the same place, as the MIME walk (mail-parser).
fn header_block_is_unambiguous(message: &[u8], walk: &Walk<'_>) -> bool {
    let Some(top) = walk.entities.first() else {
        return false;
    };
    let strict: Vec<&[u8]> = header_fields(message).map(|f| f.name).collect();
    header_block(message).len() == top.header_end
        && strict.len() == top.fields.len()
        && strict.iter().zip(&top.fields).all(|(name, field)| {
            message[field.range.start..field.value_start - 1]
                .trim_ascii_end()
                .eq_ignore_ascii_case(name)
        })
}

/// True if `needle` (an address, ASCII case-insensitive) appears in the raw
/// bytes, in any header after RFC 2047 decoding, or in any MIME part after
/// transfer decoding (base64, quoted-printable incl. soft line breaks) and
/// charset decoding to UTF-8 — recursively through multiparts and
/// `message/rfc822`.
///
/// "Appears" is the matching of the [module documentation](self#matching):
/// case-insensitive, in A-label and U-label forms, not right after a letter
/// or digit, and also through HTML entities, percent-encoding, invisible
/// characters and (in HTML) tags. On top of the MIME walk, the whole message
/// is also checked quoted-printable-decoded, with every encoded word
/// decoded, and with every run of base64 lines decoded, so a part the MIME
/// walk reads differently from a mail client is still seen. MIME structure
/// deeper than [`MAX_NESTING`] counts as a leak (it cannot be checked). An
/// empty needle never leaks.
///
/// ```
/// use smtpy_core::rewrite::scrub::leaks;
///
/// let message = b"Subject: =?utf-8?q?write_to_me=40mail=2Eexample?=\r\n\r\nhi\r\n";
/// assert!(leaks(message, "ME@MAIL.EXAMPLE"));
/// assert!(!leaks(message, "bigme@mail.example"));
/// ```
#[must_use]
pub fn leaks(message: &[u8], needle: &str) -> bool {
    if needle.trim().is_empty() {
        return false;
    }
    let matcher = Matcher::new(&[(needle.to_owned(), String::new())]);
    find_leak(message, &matcher).is_some()
}

// ---------------------------------------------------------------------------
// Header field classes

/// Top-level fields removed from a reply (lower-case names).
const REMOVED_FIELDS: &[&str] = &[
    "bcc",
    "sender",
    "return-path",
    "received",
    "x-received",
    "x-originating-ip",
    "x-originating-email",
    "dkim-signature",
    "authentication-results",
    "received-spf",
    "delivered-to",
    "x-original-to",
    "autocrypt",
    "openpgp",
];

/// Prefixes of top-level fields removed from a reply (lower-case).
const REMOVED_PREFIXES: &[&str] = &[
    "arc-",
    "x-google-",
    "x-gm-",
    "x-ms-",
    "x-microsoft-",
    "x-smtpy-",
];

/// Read-receipt requests, rewritten to the alias.
const RECEIPT_FIELDS: &[&str] = &["disposition-notification-to", "return-receipt-to"];

/// `message/*` subtypes that are machine-readable reports, rewritten in place.
const REPORT_SUBTYPES: &[&str] = &[
    "delivery-status",
    "global-delivery-status",
    "disposition-notification",
    "global-disposition-notification",
    "feedback-report",
    "global-headers",
];

/// `text/*` subtypes with iCalendar/vCard line folding.
const CALENDAR_SUBTYPES: &[&str] = &["calendar", "x-vcalendar", "vcard", "x-vcard", "directory"];

/// Whether a raw field name (what mail-parser read before the colon) is
/// printable ASCII without blanks or colons inside, as RFC 5322 requires.
fn is_field_name(raw: &[u8]) -> bool {
    let name = raw.trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

fn is_removed_field(name: &str) -> bool {
    REMOVED_FIELDS.contains(&name) || REMOVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

// ---------------------------------------------------------------------------
// Matching

/// One form of one needle.
struct Pattern {
    chars: Vec<char>,
    /// Index of the replacement.
    target: usize,
}

/// A match: the bytes `start..end`, and the HTML tags inside it (kept).
struct Found {
    start: usize,
    end: usize,
    target: usize,
    tags: Vec<Range<usize>>,
}

/// Finds and replaces needles; see the module documentation.
struct Matcher {
    /// Longest first, so a longer form wins over a shorter one it contains.
    patterns: Vec<Pattern>,
    replacements: Vec<String>,
    /// Bytes a match can start with.
    starts: [bool; 256],
}

impl Matcher {
    /// Every form of every needle; empty needles are ignored.
    fn new(pairs: &[(String, String)]) -> Matcher {
        let mut patterns = Vec::new();
        let mut replacements = Vec::new();
        for (needle, replacement) in pairs {
            let target = replacements.len();
            replacements.push(replacement.clone());
            for form in needle_forms(needle) {
                patterns.push(Pattern {
                    chars: form.chars().collect(),
                    target,
                });
            }
        }
        patterns.sort_by_key(|p| std::cmp::Reverse(p.chars.len()));
        let mut starts = [false; 256];
        starts[usize::from(b'&')] = true;
        starts[usize::from(b'%')] = true;
        // UTF-8 lead bytes (a non-ASCII character may lower-case to a
        // needle's); continuation bytes never start a character.
        for slot in &mut starts[0xc2..=0xf4] {
            *slot = true;
        }
        for p in &patterns {
            if let Some(&first) = p.chars.first() {
                for b in 0u8..0x80 {
                    if chars_eq(char::from(b), first) {
                        starts[usize::from(b)] = true;
                    }
                }
            }
        }
        Matcher {
            patterns,
            replacements,
            starts,
        }
    }

    /// The first match at or after `from`.
    fn find(&self, hay: &[u8], from: usize, html: bool) -> Option<Found> {
        if self.patterns.is_empty() {
            return None;
        }
        for i in from..hay.len() {
            if !self.starts[usize::from(hay[i])] || follows_word_char(hay, i) {
                continue;
            }
            let Some((first, _)) = unit_at(hay, i) else {
                continue;
            };
            for p in &self.patterns {
                if !p.chars.first().is_some_and(|&n| chars_eq(first, n)) {
                    continue;
                }
                if let Some((end, tags)) = match_at(hay, i, &p.chars, html) {
                    return Some(Found {
                        start: i,
                        end,
                        target: p.target,
                        tags,
                    });
                }
            }
        }
        None
    }

    fn contains(&self, hay: &[u8], html: bool) -> bool {
        self.find(hay, 0, html).is_some()
    }

    /// One left-to-right pass; `None` when nothing matched.
    fn replace_once(&self, hay: &[u8], html: bool) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut from = 0;
        while let Some(found) = self.find(hay, from, html) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(hay.len() + 64));
            buf.extend_from_slice(&hay[copied..found.start]);
            let replacement = self
                .replacements
                .get(found.target)
                .map_or("", String::as_str);
            if html {
                buf.extend_from_slice(html_escape(replacement).as_bytes());
            } else {
                buf.extend_from_slice(replacement.as_bytes());
            }
            for tag in found.tags {
                buf.extend_from_slice(&hay[tag]);
            }
            copied = found.end;
            from = found.end;
        }
        let mut buf = out?;
        buf.extend_from_slice(&hay[copied..]);
        Some(buf)
    }

    /// Every match replaced (a few passes); `None` when nothing matched.
    fn replace(&self, hay: &[u8], html: bool) -> Option<Vec<u8>> {
        let mut current: Option<Vec<u8>> = None;
        for _ in 0..MAX_PASSES {
            match self.replace_once(current.as_deref().unwrap_or(hay), html) {
                Some(next) => current = Some(next),
                None => break,
            }
        }
        current
    }
}

/// The forms a needle is looked for in: as given, and for an address its
/// A-label and U-label domain forms and the quoted form of a dot-atom local
/// part.
fn needle_forms(needle: &str) -> Vec<String> {
    let needle = needle.trim();
    if needle.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![needle.to_owned()];
    if let Ok(address) = EmailAddress::parse(needle) {
        let local = address.local_part().as_str();
        for domain in [address.domain().as_ascii(), address.domain().as_unicode()] {
            forms.push(format!("{local}@{domain}"));
            if !address.local_part().is_quoted() {
                forms.push(format!("\"{local}\"@{domain}"));
            }
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Case-insensitive character comparison: ASCII, then Unicode lower-casing.
fn chars_eq(c: char, n: char) -> bool {
    if c == n {
        return true;
    }
    match (c.is_ascii(), n.is_ascii()) {
        (true, true) => c.eq_ignore_ascii_case(&n),
        // The only non-ASCII character that lower-cases to ASCII is the
        // Kelvin sign.
        (false, true) => c == '\u{212a}' && n.eq_ignore_ascii_case(&'k'),
        _ => c.to_lowercase().eq(n.to_lowercase()),
    }
}

/// Whether the character before `i` is a letter or digit (a match there
/// would be the tail of a different word).
fn follows_word_char(hay: &[u8], i: usize) -> bool {
    if i == 0 {
        return false;
    }
    let prev = hay[i - 1];
    if prev.is_ascii() {
        return prev.is_ascii_alphanumeric();
    }
    // Start of the UTF-8 sequence ending at i - 1.
    let mut start = i - 1;
    while start > 0 && i - start < 4 && hay[start] & 0xc0 == 0x80 {
        start -= 1;
    }
    match decode_char(&hay[start..i]) {
        Some((c, len)) if start + len == i => c.is_alphanumeric(),
        _ => false,
    }
}

/// Characters that render as nothing and may hide inside an address.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}'
    )
}

/// Matches `needle` at `i`: returns the end and the tags inside.
fn match_at(
    hay: &[u8],
    i: usize,
    needle: &[char],
    html: bool,
) -> Option<(usize, Vec<Range<usize>>)> {
    let mut j = i;
    let mut tags = Vec::new();
    let mut skips = 0;
    for (k, &n) in needle.iter().enumerate() {
        loop {
            let (c, len) = unit_at(hay, j)?;
            if chars_eq(c, n) {
                j += len;
                break;
            }
            if k == 0 || skips >= MAX_SKIPS {
                return None;
            }
            skips += 1;
            if is_invisible(c) {
                j += len;
                continue;
            }
            match html.then(|| tag_len(&hay[j..])).flatten() {
                Some(tag) => {
                    tags.push(j..j + tag);
                    j += tag;
                }
                None => return None,
            }
        }
    }
    Some((j, tags))
}

/// The character at `j` and how many bytes stand for it: a character
/// reference (`&#64;`, `&#x40;`, `&commat;`), a percent-encoded ASCII byte
/// (`%40`), or a UTF-8 character (an invalid byte stands for U+FFFD).
fn unit_at(hay: &[u8], j: usize) -> Option<(char, usize)> {
    let rest = hay.get(j..)?;
    let &b = rest.first()?;
    Some(match b {
        b'&' => char_reference(rest).unwrap_or(('&', 1)),
        b'%' => percent_encoded(rest).unwrap_or(('%', 1)),
        0..=0x7f => (char::from(b), 1),
        _ => decode_char(rest).unwrap_or(('\u{fffd}', 1)),
    })
}

/// Named character references recognised inside addresses.
const NAMED_REFERENCES: &[(&str, char)] = &[
    ("commat", '@'),
    ("period", '.'),
    ("lowbar", '_'),
    ("UnderBar", '_'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("plus", '+'),
    ("amp", '&'),
    ("AMP", '&'),
    ("percnt", '%'),
    ("equals", '='),
    ("num", '#'),
    ("excl", '!'),
    ("dollar", '$'),
    ("ast", '*'),
    ("sol", '/'),
    ("quest", '?'),
    ("quot", '"'),
    ("apos", '\''),
    ("shy", '\u{ad}'),
    ("zwnj", '\u{200c}'),
    ("zwj", '\u{200d}'),
];

/// An HTML character reference at the start of `rest` (which starts with `&`).
fn char_reference(rest: &[u8]) -> Option<(char, usize)> {
    if rest.get(1) == Some(&b'#') {
        let (radix, start, max) = match rest.get(2) {
            Some(b'x' | b'X') => (16, 3, 6),
            _ => (10, 2, 7),
        };
        let digits = rest
            .get(start..)?
            .iter()
            .take(max)
            .take_while(|b| char::from(**b).is_digit(radix))
            .count();
        if digits == 0 {
            return None;
        }
        let text = std::str::from_utf8(rest.get(start..start + digits)?).ok()?;
        let c = char::from_u32(u32::from_str_radix(text, radix).ok()?).filter(|&c| c != '\0')?;
        let mut len = start + digits;
        if rest.get(len) == Some(&b';') {
            len += 1;
        }
        return Some((c, len));
    }
    let name_len = rest
        .get(1..)?
        .iter()
        .take(9)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if rest.get(1 + name_len) != Some(&b';') {
        return None;
    }
    let name = rest.get(1..1 + name_len)?;
    NAMED_REFERENCES
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|&(_, c)| (c, name_len + 2))
}

/// `%XX` for an ASCII byte at the start of `rest`.
fn percent_encoded(rest: &[u8]) -> Option<(char, usize)> {
    let hi = hex_value(*rest.get(1)?)?;
    let lo = hex_value(*rest.get(2)?)?;
    let b = (hi << 4) | lo;
    b.is_ascii().then(|| (char::from(b), 3))
}

/// The length of an HTML tag (or comment) at the start of `rest`.
fn tag_len(rest: &[u8]) -> Option<usize> {
    if rest.first() != Some(&b'<') {
        return None;
    }
    let next = *rest.get(1)?;
    if !(next.is_ascii_alphabetic() || next == b'/' || next == b'!') {
        return None;
    }
    rest.iter()
        .take(MAX_TAG_LEN)
        .position(|&b| b == b'>')
        .map(|p| p + 1)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The UTF-8 character at the start of `bytes` and its length (`None` for
/// an invalid sequence).
fn decode_char(bytes: &[u8]) -> Option<(char, usize)> {
    let first = *bytes.first()?;
    let (len, min, mut code) = match first {
        0x00..=0x7f => return Some((char::from(first), 1)),
        0xc2..=0xdf => (2, 0x80, u32::from(first & 0x1f)),
        0xe0..=0xef => (3, 0x800, u32::from(first & 0x0f)),
        0xf0..=0xf4 => (4, 0x1_0000, u32::from(first & 0x07)),
        _ => return None,
    };
    for k in 1..len {
        let b = *bytes.get(k)?;
        if b & 0xc0 != 0x80 {
            return None;
        }
        code = (code << 6) | u32::from(b & 0x3f);
    }
    if code < min {
        return None;
    }
    char::from_u32(code).map(|c| (c, len))
}

fn html_escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Transfer and charset decoding

/// A part's transfer encoding, as far as decoding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
}

impl Cte {
    fn parse(value: &str) -> Cte {
        let value = value.trim();
        if value.eq_ignore_ascii_case("base64") {
            Cte::Base64
        } else if value.eq_ignore_ascii_case("quoted-printable") {
            Cte::QuotedPrintable
        } else {
            Cte::Identity
        }
    }

    fn decode(self, raw: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Cte::Identity => Cow::Borrowed(raw),
            Cte::Base64 => Cow::Owned(base64_decode(raw)),
            Cte::QuotedPrintable => Cow::Owned(qp_decode(raw)),
        }
    }

    fn encode(self, data: &[u8]) -> Vec<u8> {
        match self {
            Cte::Identity => data.to_vec(),
            Cte::Base64 => base64_lines(data),
            Cte::QuotedPrintable => qp_encode(data),
        }
    }
}

/// Tolerant quoted-printable decoding: `=XX` is a byte, `=` before a line
/// break (after optional blanks) is a soft line break, any other `=` is
/// kept.
fn qp_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let mut k = i + 1;
        while k < raw.len() && matches!(raw[k], b' ' | b'\t') {
            k += 1;
        }
        match raw.get(k) {
            None => {
                i = raw.len();
                continue;
            }
            Some(b'\n') => {
                i = k + 1;
                continue;
            }
            Some(b'\r') if raw.get(k + 1) == Some(&b'\n') => {
                i = k + 2;
                continue;
            }
            _ => {}
        }
        match (
            raw.get(i + 1).copied().and_then(hex_value),
            raw.get(i + 2).copied().and_then(hex_value),
        ) {
            (Some(hi), Some(lo)) => {
                out.push((hi << 4) | lo);
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Base64 alphabet values; `PAD` for `=`, `SKIP` for anything else.
const BASE64_VALUES: [u8; 256] = {
    let mut table = [SKIP; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = PAD;
    table
};
const SKIP: u8 = 0xff;
const PAD: u8 = 0xfe;

/// Tolerant base64 decoding: characters outside the alphabet are skipped,
/// `=` ends a block (so concatenated blocks decode).
fn base64_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in raw {
        let v = BASE64_VALUES[usize::from(b)];
        if v >= PAD {
            if v == PAD {
                acc = 0;
                bits = 0;
            }
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Base64 in lines of 76 characters, CRLF-separated, no final line break.
fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = BASE64.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for (n, chunk) in encoded.as_bytes().chunks(76).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// Quoted-printable: CRLF or LF in `data` are hard line breaks (written
/// CRLF); lines are soft-broken at 76 characters; a blank before a line end
/// is encoded. The output ends with a line break only if `data` does.
fn qp_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 8);
    let mut line = 0;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\n' || (b == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            line = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let at_line_end = match data.get(i + 1) {
            None | Some(b'\n') => true,
            Some(b'\r') => data.get(i + 2) == Some(&b'\n'),
            _ => false,
        };
        let literal = match b {
            b' ' | b'\t' => !at_line_end,
            33..=60 | 62..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        if line + width > QP_LINE_LEN - 1 {
            out.extend_from_slice(b"=\r\n");
            line = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.push(b'=');
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0xf)]);
        }
        line += width;
        i += 1;
    }
    out
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// `bytes` decoded from `charset` (an RFC 2231 `*language` suffix is
/// ignored); UTF-8, lossily, when the charset is absent or unknown.
fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let label = charset.map(|c| c.split('*').next().unwrap_or(c).trim());
    match label.and_then(|c| charset_decoder(c.as_bytes())) {
        Some(decoder) => decoder(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn is_utf8_label(charset: Option<&str>) -> bool {
    charset.is_some_and(|c| {
        let c = c.trim();
        c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8")
    })
}

// ---------------------------------------------------------------------------
// Header values: unfolding, encoded words, folding

/// Removes the line breaks of a folded value (the blanks after them stay).
fn unfold(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

/// A piece of an unfolded header value: plain text, or a run of encoded
/// words (with the blanks between them), decoded.
#[derive(Debug, Clone)]
struct Segment {
    raw: Range<usize>,
    decoded: Vec<u8>,
    encoded: bool,
}

/// One encoded word: its range, charset and decoded bytes.
struct Word {
    range: Range<usize>,
    charset: String,
    bytes: Vec<u8>,
}

/// Parses `=?charset?B|Q?text?=` at `i`.
fn encoded_word(value: &[u8], i: usize) -> Option<Word> {
    if value.get(i..i + 2) != Some(b"=?") {
        return None;
    }
    let cs_start = i + 2;
    let cs_len = value
        .get(cs_start..)?
        .iter()
        .take(MAX_CHARSET_LEN + 1)
        .position(|&b| b == b'?')?;
    if cs_len == 0 || cs_len > MAX_CHARSET_LEN {
        return None;
    }
    let charset = &value[cs_start..cs_start + cs_len];
    if charset
        .iter()
        .any(|b| b.is_ascii_whitespace() || !b.is_ascii())
    {
        return None;
    }
    let enc = *value.get(cs_start + cs_len + 1)?;
    if value.get(cs_start + cs_len + 2) != Some(&b'?') {
        return None;
    }
    let text_start = cs_start + cs_len + 3;
    let mut k = text_start;
    loop {
        let b = *value.get(k)?;
        if b == b'?' {
            break;
        }
        if b.is_ascii_whitespace() || b.is_ascii_control() {
            return None;
        }
        k += 1;
    }
    if value.get(k + 1) != Some(&b'=') {
        return None;
    }
    let text = &value[text_start..k];
    let bytes = match enc {
        b'b' | b'B' => base64_decode(text),
        b'q' | b'Q' => {
            let underscores: Vec<u8> = text
                .iter()
                .map(|&b| if b == b'_' { b' ' } else { b })
                .collect();
            qp_decode(&underscores)
        }
        _ => return None,
    };
    Some(Word {
        range: i..k + 2,
        charset: String::from_utf8_lossy(charset).into_owned(),
        bytes,
    })
}

/// Splits an unfolded value into plain and encoded segments that tile it.
/// Blanks between two encoded words belong to the run (and vanish when
/// decoded, RFC 2047 §6.2); adjacent words in the same charset are joined
/// before charset decoding, so a character split between words survives.
fn segments(value: &[u8]) -> Vec<Segment> {
    enum Token {
        Text(Range<usize>),
        Word(Word),
    }
    let mut tokens = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < value.len() {
        if value[i] == b'='
            && value[i + 1] == b'?'
            && let Some(word) = encoded_word(value, i)
        {
            if text_start < i {
                tokens.push(Token::Text(text_start..i));
            }
            i = word.range.end;
            text_start = i;
            tokens.push(Token::Word(word));
            continue;
        }
        i += 1;
    }
    if text_start < value.len() {
        tokens.push(Token::Text(text_start..value.len()));
    }

    let mut segs = Vec::new();
    let mut k = 0;
    while k < tokens.len() {
        match &tokens[k] {
            Token::Text(range) => {
                segs.push(Segment {
                    decoded: value[range.clone()].to_vec(),
                    raw: range.clone(),
                    encoded: false,
                });
                k += 1;
            }
            Token::Word(first) => {
                let start = first.range.start;
                let mut end = first.range.end;
                let mut words = vec![first];
                k += 1;
                loop {
                    // A blank-only text followed by another word joins the run.
                    match (tokens.get(k), tokens.get(k + 1)) {
                        (Some(Token::Text(gap)), Some(Token::Word(w)))
                            if value[gap.clone()].iter().all(u8::is_ascii_whitespace) =>
                        {
                            end = w.range.end;
                            words.push(w);
                            k += 2;
                        }
                        (Some(Token::Word(w)), _) => {
                            end = w.range.end;
                            words.push(w);
                            k += 1;
                        }
                        _ => break,
                    }
                }
                segs.push(Segment {
                    raw: start..end,
                    decoded: decode_words(&words).into_bytes(),
                    encoded: true,
                });
            }
        }
    }
    segs
}

/// Decodes a run of words, joining the bytes of neighbours in one charset.
fn decode_words(words: &[&Word]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < words.len() {
        let charset = &words[i].charset;
        let mut bytes = Vec::new();
        while i < words.len() && words[i].charset.eq_ignore_ascii_case(charset) {
            bytes.extend_from_slice(&words[i].bytes);
            i += 1;
        }
        out.push_str(&decode_charset(&bytes, Some(charset)));
    }
    out
}

/// The decoded text of a whole value (encoded words decoded).
fn decoded_value(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for seg in segments(value) {
        out.extend_from_slice(&seg.decoded);
    }
    out
}

/// Characters written as themselves in a `Q` encoded word (the RFC 2047
/// `phrase` subset).
fn q_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'*' | b'+' | b'-' | b'/')
}

/// `text` as UTF-8 encoded words (`Q` or `B`, whichever is shorter), each at
/// most 75 characters, separated by single spaces.
fn encode_words(text: &str) -> String {
    const OVERHEAD: usize = "=?utf-8?q??=".len();
    if text.is_empty() {
        return String::new();
    }
    let q_len: usize = text
        .bytes()
        .map(|b| if q_safe(b) || b == b' ' { 1 } else { 3 })
        .sum();
    let b_len = text.len().div_ceil(3) * 4;
    let use_q = q_len <= b_len;
    let mut words: Vec<String> = Vec::new();
    let mut chunk = String::new();
    let mut chunk_len = 0;
    let flush = |chunk: &mut String, words: &mut Vec<String>| {
        if chunk.is_empty() {
            return;
        }
        if use_q {
            let mut w = String::from("=?utf-8?q?");
            for b in chunk.bytes() {
                if b == b' ' {
                    w.push('_');
                } else if q_safe(b) {
                    w.push(char::from(b));
                } else {
                    w.push('=');
                    w.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
                    w.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
                }
            }
            w.push_str("?=");
            words.push(w);
        } else {
            words.push(format!("=?utf-8?b?{}?=", BASE64.encode(chunk.as_bytes())));
        }
        chunk.clear();
    };
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let len = if use_q {
            bytes
                .iter()
                .map(|&b| if q_safe(b) || b == b' ' { 1 } else { 3 })
                .sum()
        } else {
            bytes.len()
        };
        let fits = if use_q {
            chunk_len + len <= MAX_WORD_LEN - OVERHEAD
        } else {
            (chunk_len + len).div_ceil(3) * 4 <= MAX_WORD_LEN - OVERHEAD
        };
        if !fits {
            flush(&mut chunk, &mut words);
            chunk_len = 0;
        }
        chunk.push(c);
        chunk_len += len;
    }
    flush(&mut chunk, &mut words);
    words.join(" ")
}

/// A field line: `prefix` (`Name:`) and the unfolded `value`, folded before
/// blanks at about 78 columns, ending with CRLF. Trailing blanks are
/// dropped.
fn fold_field(prefix: &[u8], value: &[u8]) -> Vec<u8> {
    let value = value.trim_ascii_end();
    let mut out = Vec::with_capacity(prefix.len() + value.len() + 8);
    out.extend_from_slice(prefix);
    let mut line = prefix.len();
    let mut i = 0;
    let mut first = true;
    while i < value.len() {
        let start = i;
        while i < value.len() && matches!(value[i], b' ' | b'\t') {
            i += 1;
        }
        while i < value.len() && !matches!(value[i], b' ' | b'\t') {
            i += 1;
        }
        let chunk = &value[start..i];
        if !first && line + chunk.len() > FOLD_AT && matches!(chunk[0], b' ' | b'\t') {
            out.extend_from_slice(b"\r\n");
            line = 0;
        }
        out.extend_from_slice(chunk);
        line += chunk.len();
        first = false;
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A display name as a quoted string (printable ASCII) or encoded words.
fn phrase(display: &str) -> String {
    if display.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let mut s = String::with_capacity(display.len() + 2);
        s.push('"');
        for c in display.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    } else {
        encode_words(display)
    }
}

/// `local@A-label`: the form for header fields and the envelope.
fn wire_form(address: &EmailAddress) -> String {
    format!(
        "{}@{}",
        address.local_part().as_str(),
        address.domain().as_ascii()
    )
}

/// `Content-Type` value with `charset=utf-8` instead of any charset.
fn with_utf8_charset(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            items.push(&text[start..i]);
            start = i + 1;
        }
    }
    items.push(&text[start..]);
    let media = items.first().map_or("", |m| m.trim());
    let mut out = String::from(" ");
    out.push_str(if media.is_empty() {
        "text/plain"
    } else {
        media
    });
    for item in items.iter().skip(1) {
        let item = item.trim();
        let name = item.split(['=', '*']).next().unwrap_or("").trim();
        if item.is_empty() || name.eq_ignore_ascii_case("charset") {
            continue;
        }
        out.push_str("; ");
        out.push_str(item);
    }
    out.push_str("; charset=utf-8");
    out.into_bytes()
}

// ---------------------------------------------------------------------------
// Bodies: HTML charset, calendar folding, line lengths

/// Rewrites `charset=…` inside `<meta …>` tags to `utf-8`.
fn fix_meta_charset(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(rel) = lower.get(search..).and_then(|s| s.find("<meta")) {
        let tag_start = search + rel;
        let tag_end = lower[tag_start..]
            .find('>')
            .map_or(lower.len(), |e| tag_start + e);
        if let Some(c) = lower[tag_start..tag_end].find("charset") {
            let bytes = lower.as_bytes();
            let mut p = tag_start + c + "charset".len();
            while p < tag_end && bytes[p].is_ascii_whitespace() {
                p += 1;
            }
            if p < tag_end && bytes[p] == b'=' {
                p += 1;
                while p < tag_end
                    && (bytes[p].is_ascii_whitespace() || bytes[p] == b'"' || bytes[p] == b'\'')
                {
                    p += 1;
                }
                let value_start = p;
                while p < tag_end
                    && (bytes[p].is_ascii_alphanumeric()
                        || matches!(bytes[p], b'-' | b'_' | b':' | b'.'))
                {
                    p += 1;
                }
                if p > value_start {
                    out.push_str(&html[copied..value_start]);
                    out.push_str("utf-8");
                    copied = p;
                }
            }
        }
        search = tag_end.max(tag_start + 1);
    }
    out.push_str(&html[copied..]);
    out
}

/// Unfolds iCalendar / vCard content lines (a line break followed by one
/// blank is removed).
fn unfold_calendar(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r'
            && b.get(i + 1) == Some(&b'\n')
            && matches!(b.get(i + 2), Some(b' ' | b'\t'))
        {
            i += 3;
            continue;
        }
        if b[i] == b'\n' && matches!(b.get(i + 1), Some(b' ' | b'\t')) {
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were removed: still valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Folds iCalendar / vCard content lines longer than 75 octets, never inside
/// a character.
fn fold_calendar(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let (content, cr) = match line.strip_suffix('\r') {
            Some(c) => (c, "\r"),
            None => (line, ""),
        };
        let mut budget = CALENDAR_LINE_LEN;
        let mut used = 0;
        for c in content.chars() {
            if used + c.len_utf8() > budget {
                out.push_str("\r\n ");
                budget = CALENDAR_LINE_LEN - 1;
                used = 0;
            }
            out.push(c);
            used += c.len_utf8();
        }
        out.push_str(cr);
        if lines.peek().is_some() {
            out.push('\n');
        }
    }
    out
}

/// The longest line of `bytes`, in octets without its line break.
fn longest_line(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

/// Bare CR and bare LF become CRLF.
fn crlf_normalize(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
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
    out
}

// ---------------------------------------------------------------------------
// The MIME walk

/// One header field of an entity.
struct Field {
    /// The whole field, line break included (absolute in its buffer).
    range: Range<usize>,
    /// Just after the colon.
    value_start: usize,
    /// Lower case, blanks removed.
    name: String,
    header: HeaderName<'static>,
    parsed: HeaderValue<'static>,
}

/// What an entity's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Children are separate entities; delimiters and preamble are gaps.
    Multipart,
    /// An attached message; `Some(buffer)` when it was transfer-encoded and
    /// decoded into its own buffer.
    Message(Option<usize>),
    /// `text/*`.
    Text { html: bool, calendar: bool },
    /// A machine-readable `message/*` report.
    Report,
    /// Anything else: never rewritten.
    Binary,
    /// A multipart without usable boundaries: its body is left to the gap
    /// treatment (raw replacement).
    Opaque,
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
}

/// One MIME entity (a message, or a part), in one buffer.
struct Entity {
    buffer: usize,
    /// Start of the entity (where its header block starts).
    start: usize,
    fields: Vec<Field>,
    /// End of the last field (where fields are inserted).
    header_end: usize,
    /// The blank line that ends the header block, if any.
    blank: Option<Range<usize>>,
    body: Range<usize>,
    kind: Kind,
    /// The top-level message.
    top: bool,
    /// Effective transfer encoding (the last field, as mail-parser reads it)
    /// and every declared one.
    cte: Cte,
    ctes: Vec<Cte>,
    /// `type/subtype` (lower case) if declared.
    media: Option<String>,
    charset: Option<String>,
}

/// A buffer the walk reads: the message, or a decoded attached message.
struct Buffer<'a> {
    bytes: Cow<'a, [u8]>,
    /// For a decoded attached message: the buffer and body range it came
    /// from and its transfer encoding.
    parent: Option<(usize, Range<usize>, Cte)>,
}

/// Every entity of a message, found without recursion.
struct Walk<'a> {
    buffers: Vec<Buffer<'a>>,
    entities: Vec<Entity>,
    too_deep: bool,
}

/// An entity still to be read.
struct Pending {
    buffer: usize,
    range: Range<usize>,
    /// Inside a `multipart/digest`: the default type is `message/rfc822`.
    digest: bool,
    depth: usize,
    top: bool,
}

impl<'a> Walk<'a> {
    fn new(message: &'a [u8]) -> Walk<'a> {
        let mut walk = Walk {
            buffers: vec![Buffer {
                bytes: Cow::Borrowed(message),
                parent: None,
            }],
            entities: Vec::new(),
            too_deep: false,
        };
        let mut pending = vec![Pending {
            buffer: 0,
            range: 0..message.len(),
            digest: false,
            depth: 0,
            top: true,
        }];
        while let Some(p) = pending.pop() {
            walk.read_entity(p, &mut pending);
        }
        walk
    }

    fn read_entity(&mut self, p: Pending, pending: &mut Vec<Pending>) {
        let bytes: &[u8] = &self.buffers[p.buffer].bytes;
        let HeaderBlock {
            fields,
            header_end,
            blank,
        } = read_header_block(bytes, p.range.clone());
        let body = blank.as_ref().map_or(p.range.end, |b| b.end)..p.range.end;

        let content_type = fields
            .iter()
            .rev()
            .find(|f| f.header == HeaderName::ContentType)
            .and_then(|f| match &f.parsed {
                HeaderValue::ContentType(ct) => Some(ct),
                _ => None,
            });
        let ctype = content_type.map(|ct| ct.ctype().to_ascii_lowercase());
        let subtype = content_type
            .and_then(|ct| ct.subtype())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let boundary = content_type
            .and_then(|ct| ct.attribute("boundary"))
            .filter(|b| !b.is_empty())
            .map(|b| b.as_bytes().to_vec());
        let charset = content_type
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_owned);
        let media = ctype.as_ref().map(|t| format!("{t}/{subtype}"));
        let ctes: Vec<Cte> = fields
            .iter()
            .filter(|f| f.header == HeaderName::ContentTransferEncoding)
            .map(|f| match &f.parsed {
                HeaderValue::Text(t) => Cte::parse(t),
                _ => Cte::Identity,
            })
            .collect();
        let cte = ctes.last().copied().unwrap_or(Cte::Identity);

        let nested_ok = p.depth < MAX_NESTING;
        let mut kind = match ctype.as_deref() {
            None if p.digest => Kind::Message(None),
            None => Kind::Text {
                html: false,
                calendar: false,
            },
            Some("multipart") => Kind::Multipart,
            Some("message") if matches!(subtype.as_str(), "rfc822" | "global") => {
                Kind::Message(None)
            }
            Some("message") if REPORT_SUBTYPES.contains(&subtype.as_str()) => Kind::Report,
            Some("text") => Kind::Text {
                html: subtype == "html",
                calendar: CALENDAR_SUBTYPES.contains(&subtype.as_str()),
            },
            Some(_) => Kind::Binary,
        };

        match kind {
            Kind::Multipart => {
                let parts = boundary
                    .as_deref()
                    .and_then(|b| split_multipart(bytes, body.clone(), b));
                match parts {
                    None => kind = Kind::Opaque,
                    Some(_) if !nested_ok => {
                        kind = Kind::TooDeep;
                        self.too_deep = true;
                    }
                    Some(parts) => {
                        for range in parts.into_iter().rev() {
                            pending.push(Pending {
                                buffer: p.buffer,
                                range,
                                digest: subtype == "digest",
                                depth: p.depth + 1,
                                top: false,
                            });
                        }
                    }
                }
            }
            Kind::Message(_) if !nested_ok => {
                kind = Kind::TooDeep;
                self.too_deep = true;
            }
            Kind::Message(_) if cte == Cte::Identity => pending.push(Pending {
                buffer: p.buffer,
                range: body.clone(),
                digest: false,
                depth: p.depth + 1,
                top: false,
            }),
            Kind::Message(_) => {
                let decoded = cte.decode(&bytes[body.clone()]).into_owned();
                let id = self.buffers.len();
                let len = decoded.len();
                self.buffers.push(Buffer {
                    bytes: Cow::Owned(decoded),
                    parent: Some((p.buffer, body.clone(), cte)),
                });
                kind = Kind::Message(Some(id));
                pending.push(Pending {
                    buffer: id,
                    range: 0..len,
                    digest: false,
                    depth: p.depth + 1,
                    top: false,
                });
            }
            _ => {}
        }

        self.entities.push(Entity {
            buffer: p.buffer,
            start: p.range.start,
            fields,
            header_end,
            blank,
            body,
            kind,
            top: p.top,
            cte,
            ctes,
            media,
            charset,
        });
    }
}

/// The fields of the header block at `range` (parsed by mail-parser), the
/// end of the last field, and where the body starts: after the first blank
/// line that follows the fields (lines without a colon before it are
/// skipped, as mail-parser does).
fn read_header_block(bytes: &[u8], range: Range<usize>) -> HeaderBlock {
    let slice = &bytes[range.clone()];
    let mut fields = Vec::new();
    let mut last_end = 0;
    if let Some(message) = MessageParser::new().parse_headers(slice)
        && let Some(part) = message.parts.into_iter().next()
    {
        for header in part.headers {
            let s = header.offset_field as usize;
            let v = header.offset_start as usize;
            let e = header.offset_end as usize;
            // A "field" without a colon (a stray line at the end) is not one.
            if !(last_end <= s && s < v && v <= e && e <= slice.len()) || slice[v - 1] != b':' {
                continue;
            }
            last_end = e;
            let name: String = slice[s..v - 1]
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .map(|b| char::from(b.to_ascii_lowercase()))
                .collect();
            let header = header.into_owned();
            fields.push(Field {
                range: range.start + s..range.start + e,
                value_start: range.start + v,
                name,
                header: header.name,
                parsed: header.value,
            });
        }
    }
    let header_end = range.start + last_end;
    let mut p = header_end;
    let blank = loop {
        if p >= range.end {
            break None;
        }
        let next = bytes[p..range.end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(range.end, |n| p + n + 1);
        let line = &bytes[p..next];
        if line.iter().all(u8::is_ascii_whitespace) {
            break Some(p..next);
        }
        p = next;
    };
    HeaderBlock {
        fields,
        header_end,
        blank,
    }
}

/// What [`read_header_block`] finds.
struct HeaderBlock {
    fields: Vec<Field>,
    /// End of the last field.
    header_end: usize,
    /// The blank line that ends the block, if there is one (the body starts
    /// after it, or at the end of the entity without one).
    blank: Option<Range<usize>>,
}

/// The content ranges of a multipart body: between delimiter lines
/// (`--boundary`, optionally `--` and blanks), without the CRLF that
/// belongs to the next delimiter. `None` when no delimiter is found.
fn split_multipart(bytes: &[u8], body: Range<usize>, boundary: &[u8]) -> Option<Vec<Range<usize>>> {
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    let mut found = false;
    let mut p = body.start;
    while p < body.end {
        let next = bytes[p..body.end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.end, |n| p + n + 1);
        let line = &bytes[p..next];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if rest.iter().all(|b| matches!(b, b' ' | b'\t')) {
                found = true;
                if let Some(start) = open.take() {
                    let end = if p >= 2 && &bytes[p - 2..p] == b"\r\n" {
                        p - 2
                    } else {
                        p
                    };
                    parts.push(start..end.max(start));
                }
                if close {
                    return Some(parts);
                }
                open = Some(next);
            }
        }
        p = next;
    }
    if let Some(start) = open {
        parts.push(start..body.end);
    }
    found.then_some(parts)
}

// ---------------------------------------------------------------------------
// Scrubbing

/// A byte-range replacement in one buffer.
struct Edit {
    range: Range<usize>,
    bytes: Vec<u8>,
}

/// What becomes of one header field.
enum FieldOut {
    Keep,
    Remove,
    /// A new unfolded value, written after the field's own `Name:`.
    Value(Vec<u8>),
    /// A complete new field.
    Line(Vec<u8>),
}

/// A rewritten text body: re-encoded (the part's header must say
/// quoted-printable UTF-8) or replaced in place.
enum BodyOut {
    Reencoded(Vec<u8>),
    InPlace(Vec<u8>),
}

struct Scrubber<'p> {
    matcher: &'p Matcher,
    plan: &'p ReplyPlan<'p>,
}

impl Scrubber<'_> {
    fn run(&self, walk: &Walk<'_>) -> Result<Vec<u8>, ScrubError> {
        let n = walk.buffers.len();
        let mut edits: Vec<Vec<Edit>> = (0..n).map(|_| Vec::new()).collect();
        let mut covered: Vec<Vec<Range<usize>>> = (0..n).map(|_| Vec::new()).collect();

        for entity in &walk.entities {
            let bytes: &[u8] = &walk.buffers[entity.buffer].bytes;
            self.entity(
                bytes,
                entity,
                &mut edits[entity.buffer],
                &mut covered[entity.buffer],
            );
        }

        let mut result = Vec::new();
        for b in (0..n).rev() {
            let bytes: &[u8] = &walk.buffers[b].bytes;
            let mut list = std::mem::take(&mut edits[b]);
            // Gaps: preambles, delimiters, epilogues, stray lines.
            let mut ranges = std::mem::take(&mut covered[b]);
            ranges.sort_by_key(|r| r.start);
            let mut pos = 0;
            for r in ranges
                .iter()
                .chain(std::iter::once(&(bytes.len()..bytes.len())))
            {
                if r.start > pos
                    && let Some(new) = self.matcher.replace(&bytes[pos..r.start], false)
                {
                    list.push(Edit {
                        range: pos..r.start,
                        bytes: new,
                    });
                }
                pos = pos.max(r.end);
            }
            let changed = !list.is_empty();
            let out = splice(bytes, list)?;
            match &walk.buffers[b].parent {
                Some((parent, body, cte)) => {
                    if changed {
                        edits[*parent].push(Edit {
                            range: body.clone(),
                            bytes: cte.encode(&out),
                        });
                    }
                }
                None => result = out,
            }
        }
        Ok(result)
    }

    /// Edits for one entity's header fields and body.
    fn entity(
        &self,
        bytes: &[u8],
        e: &Entity,
        edits: &mut Vec<Edit>,
        covered: &mut Vec<Range<usize>>,
    ) {
        let mut outs: Vec<FieldOut> = Vec::with_capacity(e.fields.len());
        let mut seen_from = false;
        let mut seen_to = false;
        let mut after_from = None;
        for field in &e.fields {
            covered.push(field.range.clone());
            // A name a strict parser would not read as one (it would end the
            // header block there): the field goes.
            let out = if !is_field_name(&bytes[field.range.start..field.value_start - 1]) {
                FieldOut::Remove
            } else if e.top {
                match field.name.as_str() {
                    "from" if !seen_from => {
                        seen_from = true;
                        after_from = Some(field.range.end);
                        FieldOut::Line(self.sender_line())
                    }
                    "to" if !seen_to => {
                        seen_to = true;
                        FieldOut::Line(self.recipient_line())
                    }
                    "from" | "to" => FieldOut::Remove,
                    name if is_removed_field(name) => FieldOut::Remove,
                    name if RECEIPT_FIELDS.contains(&name) => {
                        FieldOut::Value(format!(" {}", wire_form(self.plan.from)).into_bytes())
                    }
                    _ => self.generic_field(bytes, field),
                }
            } else {
                self.generic_field(bytes, field)
            };
            outs.push(out);
        }

        // Stray lines in the header block (no colon: mail-parser skips them,
        // a strict parser ends the block there) are dropped, and a blank line
        // that holds blanks (the end for mail-parser, a continuation line for
        // a strict parser) becomes empty: every reader then sees the same
        // header fields and the same body.
        let mut strays = Vec::new();
        let mut pos = e.start;
        for field in &e.fields {
            if field.range.start > pos {
                strays.push(pos..field.range.start);
            }
            pos = field.range.end;
        }
        if let Some(blank) = &e.blank {
            if blank.start > pos {
                strays.push(pos..blank.start);
            }
            if &bytes[blank.clone()] != b"\r\n" {
                covered.push(blank.clone());
                edits.push(Edit {
                    range: blank.clone(),
                    bytes: b"\r\n".to_vec(),
                });
            }
        }
        for range in strays {
            covered.push(range.clone());
            edits.push(Edit {
                range,
                bytes: Vec::new(),
            });
        }

        let mut inserted = Vec::new();
        if e.top {
            // Missing From and To: at the top, To right after From.
            let mut head = Vec::new();
            if !seen_from {
                head.extend_from_slice(&self.sender_line());
            }
            if !seen_to {
                let line = self.recipient_line();
                match after_from {
                    Some(at) => edits.push(Edit {
                        range: at..at,
                        bytes: line,
                    }),
                    None => head.extend_from_slice(&line),
                }
            }
            if !head.is_empty() {
                edits.push(Edit {
                    range: e.start..e.start,
                    bytes: head,
                });
            }
        }

        match e.kind {
            Kind::Text { html, calendar } => {
                covered.push(e.body.clone());
                match self.text_body(bytes, e, html, calendar) {
                    Some(BodyOut::Reencoded(body)) => {
                        edits.push(Edit {
                            range: e.body.clone(),
                            bytes: body,
                        });
                        let mut has_type = false;
                        let mut has_cte = false;
                        for (field, out) in e.fields.iter().zip(outs.iter_mut()) {
                            if matches!(out, FieldOut::Remove) {
                                continue;
                            }
                            if field.header == HeaderName::ContentType {
                                has_type = true;
                                let base = match out {
                                    FieldOut::Value(v) => v.clone(),
                                    _ => unfold(field_value(bytes, field)),
                                };
                                *out = FieldOut::Value(with_utf8_charset(&base));
                            } else if field.header == HeaderName::ContentTransferEncoding {
                                has_cte = true;
                                *out = FieldOut::Value(b" quoted-printable".to_vec());
                            }
                        }
                        if e.top && !e.fields.iter().any(|f| f.name == "mime-version") {
                            inserted.extend_from_slice(b"MIME-Version: 1.0\r\n");
                        }
                        if !has_type {
                            inserted
                                .extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
                        }
                        if !has_cte {
                            inserted.extend_from_slice(
                                b"Content-Transfer-Encoding: quoted-printable\r\n",
                            );
                        }
                    }
                    Some(BodyOut::InPlace(body)) => edits.push(Edit {
                        range: e.body.clone(),
                        bytes: body,
                    }),
                    None => {}
                }
            }
            Kind::Report => {
                covered.push(e.body.clone());
                let raw = &bytes[e.body.clone()];
                let decoded = e.cte.decode(raw);
                let new = match self.matcher.replace(&decoded, false) {
                    Some(new) => Some(e.cte.encode(&new)),
                    None => self.matcher.replace(raw, false),
                };
                if let Some(new) = new {
                    edits.push(Edit {
                        range: e.body.clone(),
                        bytes: new,
                    });
                }
            }
            Kind::Binary | Kind::TooDeep | Kind::Message(Some(_)) => covered.push(e.body.clone()),
            Kind::Multipart | Kind::Message(None) | Kind::Opaque => {}
        }

        for (field, out) in e.fields.iter().zip(outs) {
            let new = match out {
                FieldOut::Keep => continue,
                FieldOut::Remove => Vec::new(),
                FieldOut::Line(line) => line,
                FieldOut::Value(value) => {
                    fold_field(&bytes[field.range.start..field.value_start], &value)
                }
            };
            edits.push(Edit {
                range: field.range.clone(),
                bytes: new,
            });
        }
        if !inserted.is_empty() {
            let at = if e.fields.is_empty() {
                e.start
            } else {
                e.header_end
            };
            edits.push(Edit {
                range: at..at,
                bytes: inserted,
            });
        }
    }

    fn sender_line(&self) -> Vec<u8> {
        fold_field(
            b"From:",
            format!(" {}", wire_form(self.plan.from)).as_bytes(),
        )
    }

    fn recipient_line(&self) -> Vec<u8> {
        let address = wire_form(self.plan.to);
        let display = self.plan.to_display.map(|d| {
            let d = match self.matcher.replace(d.as_bytes(), false) {
                Some(new) => String::from_utf8_lossy(&new).into_owned(),
                None => d.to_owned(),
            };
            d.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim()
                .to_owned()
        });
        let value = match display.filter(|d| !d.is_empty()) {
            Some(d) => format!(" {} <{address}>", phrase(&d)),
            None => format!(" {address}"),
        };
        fold_field(b"To:", value.as_bytes())
    }

    /// Decode, replace, re-encode what changed; refold over-long fields.
    fn generic_field(&self, bytes: &[u8], field: &Field) -> FieldOut {
        let value = unfold(field_value(bytes, field));
        match self.scrub_value(&value) {
            Some(new) => FieldOut::Value(new),
            None if longest_line(&bytes[field.range.clone()]) > MAX_LINE_LEN => {
                FieldOut::Value(value)
            }
            None => FieldOut::Keep,
        }
    }

    /// A new unfolded value, or `None` when nothing matched.
    fn scrub_value(&self, value: &[u8]) -> Option<Vec<u8>> {
        let mut segs = segments(value);
        let joined: Vec<u8> = segs
            .iter()
            .flat_map(|s| s.decoded.iter().copied())
            .collect();
        if !self.matcher.contains(&joined, false) {
            return None;
        }
        // Matches that straddle segments: merge those segments (one sweep
        // finds them all; a second one catches what a merge changed).
        for _ in 0..MAX_MERGE_SWEEPS {
            let mut starts = Vec::with_capacity(segs.len());
            let mut joined = Vec::new();
            for s in &segs {
                starts.push(joined.len());
                joined.extend_from_slice(&s.decoded);
            }
            let seg_of = |pos: usize| starts.partition_point(|&s| s <= pos).saturating_sub(1);
            let mut groups: Vec<Range<usize>> = Vec::new();
            let mut from = 0;
            while let Some(found) = self.matcher.find(&joined, from, false) {
                let (a, b) = (seg_of(found.start), seg_of(found.end - 1));
                if a != b {
                    match groups.last_mut() {
                        Some(last) if last.end >= a => last.end = last.end.max(b),
                        _ => groups.push(a..b),
                    }
                }
                from = found.end;
            }
            if groups.is_empty() {
                break;
            }
            let mut merged = Vec::with_capacity(segs.len());
            let mut next = 0;
            for group in groups {
                merged.extend(segs[next..group.start].iter().cloned());
                let members = &segs[group.start..=group.end];
                merged.push(Segment {
                    raw: members[0].raw.start..members[members.len() - 1].raw.end,
                    decoded: members
                        .iter()
                        .flat_map(|s| s.decoded.iter().copied())
                        .collect(),
                    encoded: members.iter().any(|s| s.encoded),
                });
                next = group.end + 1;
            }
            merged.extend(segs[next..].iter().cloned());
            segs = merged;
        }
        let mut out: Vec<u8> = Vec::with_capacity(value.len() + 32);
        let mut changed = false;
        for seg in &segs {
            let piece = match self.matcher.replace(&seg.decoded, false) {
                None => Cow::Borrowed(&value[seg.raw.clone()]),
                Some(new) if seg.encoded => {
                    changed = true;
                    Cow::Owned(encode_words(&String::from_utf8_lossy(&new)).into_bytes())
                }
                Some(new) => {
                    changed = true;
                    Cow::Owned(new)
                }
            };
            // Encoded words are separated by a blank (which decoders drop);
            // one at the very start gets one after the colon.
            if piece.starts_with(b"=?") && (out.is_empty() || out.ends_with(b"?=")) {
                out.push(b' ');
            }
            out.extend_from_slice(&piece);
        }
        changed.then_some(out)
    }

    /// The rewritten body of a text part, if it changes.
    fn text_body(&self, bytes: &[u8], e: &Entity, html: bool, calendar: bool) -> Option<BodyOut> {
        let raw = &bytes[e.body.clone()];
        let decoded = e.cte.decode(raw);
        let text = decode_charset(&decoded, e.charset.as_deref());
        let unfolded = if calendar {
            Cow::Owned(unfold_calendar(&text))
        } else {
            Cow::Borrowed(text.as_str())
        };
        let replaced = self.matcher.replace(unfolded.as_bytes(), html);
        let too_long = longest_line(raw) > MAX_LINE_LEN;
        let mut new_text = match replaced {
            Some(new) => {
                let new = String::from_utf8_lossy(&new).into_owned();
                if calendar { fold_calendar(&new) } else { new }
            }
            // A body that is not what its encoding says: replace in place.
            None if !too_long => return self.matcher.replace(raw, false).map(BodyOut::InPlace),
            None => text.clone(),
        };
        if html && !is_utf8_label(e.charset.as_deref()) {
            new_text = fix_meta_charset(&new_text);
        }
        Some(BodyOut::Reencoded(qp_encode(new_text.as_bytes())))
    }
}

/// The raw value of a field (after the colon), without its final line break.
fn field_value<'b>(bytes: &'b [u8], field: &Field) -> &'b [u8] {
    let value = &bytes[field.value_start..field.range.end];
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

/// `bytes` with `edits` applied (sorted by position; insertions before a
/// replacement at the same place, in the order given).
fn splice(bytes: &[u8], mut edits: Vec<Edit>) -> Result<Vec<u8>, ScrubError> {
    if edits.is_empty() {
        return Ok(bytes.to_vec());
    }
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = Vec::with_capacity(bytes.len() + 256);
    let mut pos = 0;
    for edit in edits {
        if edit.range.start < pos || edit.range.end > bytes.len() {
            return Err(ScrubError::Malformed {
                reason: "overlapping rewrites",
            });
        }
        out.extend_from_slice(&bytes[pos..edit.range.start]);
        out.extend_from_slice(&edit.bytes);
        pos = edit.range.end;
    }
    out.extend_from_slice(&bytes[pos..]);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Leak detection

/// Where a needle of `matcher` is visible in `message`, if anywhere.
fn find_leak(message: &[u8], matcher: &Matcher) -> Option<String> {
    if matcher.patterns.is_empty() {
        return None;
    }
    find_leak_in(&Walk::new(message), matcher)
}

/// [`find_leak`] on a message already walked. The place never names a
/// needle itself (a field name or media type could hold one).
fn find_leak_in(walk: &Walk<'_>, matcher: &Matcher) -> Option<String> {
    let place = leak_place(walk, matcher)?;
    if place.len() > 100 || matcher.contains(place.as_bytes(), false) {
        return Some("a part of the message".to_owned());
    }
    Some(place)
}

fn leak_place(walk: &Walk<'_>, matcher: &Matcher) -> Option<String> {
    if walk.too_deep {
        return Some(format!(
            "content nested more than {MAX_NESTING} levels deep"
        ));
    }
    for e in &walk.entities {
        let bytes: &[u8] = &walk.buffers[e.buffer].bytes;
        for field in &e.fields {
            let value = unfold(field_value(bytes, field));
            if matcher.contains(&decoded_value(&value), false)
                || any_parsed_string(&field.parsed, &mut |s| {
                    matcher.contains(s.as_bytes(), false)
                })
            {
                return Some(format!("the header field {}", display_name(bytes, field)));
            }
        }
        if let Some(place) = leaf_leak(bytes, e, matcher) {
            return Some(place);
        }
    }
    // What the MIME walk may have read differently from a mail client.
    for buffer in &walk.buffers {
        if let Some(place) = scan_bytes(&buffer.bytes, matcher) {
            return Some(place.to_owned());
        }
    }
    None
}

/// The field name as written, for messages.
fn display_name(bytes: &[u8], field: &Field) -> String {
    let raw = &bytes[field.range.start..field.value_start.saturating_sub(1).max(field.range.start)];
    String::from_utf8_lossy(raw.trim_ascii()).into_owned()
}

/// Leaks in a leaf body, decoded with every transfer encoding it declares.
fn leaf_leak(bytes: &[u8], e: &Entity, matcher: &Matcher) -> Option<String> {
    let raw = &bytes[e.body.clone()];
    let mut ctes = e.ctes.clone();
    ctes.push(e.cte);
    ctes.sort_by_key(|c| *c as u8);
    ctes.dedup();
    let media = e.media.as_deref().unwrap_or("text/plain");
    match e.kind {
        Kind::Text { html, calendar } => {
            for cte in ctes {
                let text = decode_charset(&cte.decode(raw), e.charset.as_deref());
                if matcher.contains(text.as_bytes(), html)
                    || (calendar && matcher.contains(unfold_calendar(&text).as_bytes(), false))
                {
                    return Some(format!("a part of type {media}"));
                }
            }
            None
        }
        Kind::Report | Kind::Binary => {
            for cte in ctes {
                if matcher.contains(&cte.decode(raw), false) {
                    return Some(if e.kind == Kind::Report {
                        format!("a part of type {media}")
                    } else {
                        format!("an attachment of type {media}")
                    });
                }
            }
            None
        }
        _ => None,
    }
}

/// Every string in a parsed header value; true as soon as `f` is.
fn any_parsed_string(value: &HeaderValue<'_>, f: &mut dyn FnMut(&str) -> bool) -> bool {
    match value {
        HeaderValue::Address(Address::List(list)) => list.iter().any(|a| {
            a.name.as_deref().is_some_and(&mut *f) || a.address.as_deref().is_some_and(&mut *f)
        }),
        HeaderValue::Address(Address::Group(groups)) => groups.iter().any(|g| {
            g.name.as_deref().is_some_and(&mut *f)
                || g.addresses.iter().any(|a| {
                    a.name.as_deref().is_some_and(&mut *f)
                        || a.address.as_deref().is_some_and(&mut *f)
                })
        }),
        HeaderValue::Text(t) => f(t),
        HeaderValue::TextList(list) => list.iter().any(|t| f(t)),
        HeaderValue::ContentType(ct) => ct
            .attributes()
            .is_some_and(|attrs| attrs.iter().any(|a| f(&a.value))),
        _ => false,
    }
}

/// Structure-independent checks of one buffer: raw, quoted-printable
/// decoded, encoded words decoded, base64 runs decoded.
fn scan_bytes(bytes: &[u8], matcher: &Matcher) -> Option<&'static str> {
    if matcher.contains(bytes, false) {
        return Some("the message text");
    }
    if bytes.contains(&b'=') && matcher.contains(&qp_decode(bytes), false) {
        return Some("quoted-printable text");
    }
    if bytes.windows(2).any(|w| w == b"=?")
        && matcher.contains(&decoded_value(&unfold_lines(bytes)), false)
    {
        return Some("an encoded word");
    }
    let mut run_start: Option<usize> = None;
    let mut p = 0;
    while p <= bytes.len() {
        let next = bytes[p..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len() + 1, |n| p + n + 1);
        let line = &bytes[p..next.min(bytes.len())];
        let content = line.trim_ascii();
        let is_b64 = !content.is_empty()
            && content
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        match (is_b64, run_start) {
            (true, None) => run_start = Some(p),
            (false, Some(start)) => {
                if p - start >= 8 && matcher.contains(&base64_decode(&bytes[start..p]), false) {
                    return Some("base64 data");
                }
                run_start = None;
            }
            _ => {}
        }
        p = next;
    }
    if let Some(start) = run_start
        && matcher.contains(&base64_decode(&bytes[start..]), false)
    {
        return Some("base64 data");
    }
    None
}

/// Folded lines joined (line breaks before a blank removed), other line
/// breaks kept.
fn unfold_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r'
            && bytes.get(i + 1) == Some(&b'\n')
            && matches!(bytes.get(i + 2), Some(b' ' | b'\t'))
        {
            i += 2;
            continue;
        }
        if bytes[i] == b'\n' && matches!(bytes.get(i + 1), Some(b' ' | b'\t')) {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(needle: &str) -> Matcher {
        Matcher::new(&[(needle.to_owned(), "shop@alias.example".to_owned())])
    }

    #[test]
    fn matching_forms() {
        let m = matcher("me@mail.example");
        for hay in [
            "me@mail.example",
            "x ME@Mail.Example y",
            "<me@mail.example>",
            "x.me@mail.example",
            "me&#64;mail.example",
            "me&#x40;mail&period;example",
            "&#109;&#101;&#64;mail.example",
            "me&commat;mail.example",
            "mailto:me%40mail.example",
            "me@mail\u{200b}.example",
            "me@mail\u{ad}.example",
            "\"me\"@mail.example",
            "me@mail.example.org",
        ] {
            assert!(m.contains(hay.as_bytes(), false), "{hay}");
        }
        for hay in [
            "bigme@mail.example",
            "me@mail.exampl",
            "me @mail.example",
            "me&#64mail.exampl",
            "émé@mail.example",
        ] {
            assert!(!m.contains(hay.as_bytes(), false), "{hay}");
        }
        assert!(!m.contains(b"me@<b>mail</b>.example", false));
        assert!(m.contains(b"me@<b>mail</b>.example", true));
        assert!(m.contains("ça me@mail.example".as_bytes(), false));
    }

    #[test]
    fn html_replacement_keeps_tags() {
        let m = matcher("me@mail.example");
        let out = m.replace(b"<p>me@<b>mail</b>.example</p>", true);
        assert_eq!(
            out.as_deref(),
            Some(&b"<p>shop@alias.example<b></b></p>"[..])
        );
        let m = Matcher::new(&[("me@mail.example".into(), "a&b@x.example".into())]);
        let out = m.replace(b"x me@mail.example", true);
        assert_eq!(out.as_deref(), Some(&b"x a&amp;b@x.example"[..]));
    }

    #[test]
    fn idn_forms_are_matched() {
        let m = matcher("me@bücher.example");
        assert!(m.contains(b"me@xn--bcher-kva.example", false));
        assert!(m.contains("ME@BÜCHER.example".as_bytes(), false));
    }

    #[test]
    fn quoted_printable_round_trip() {
        let text =
            "line one with trailing space \r\né = x\tand a very long line ".repeat(5) + "\r\n";
        let encoded = qp_encode(text.as_bytes());
        assert!(longest_line(&encoded) <= QP_LINE_LEN);
        assert_eq!(qp_decode(&encoded), text.as_bytes());
        assert_eq!(
            qp_decode(b"me=40mail.ex=\r\nample=\n x=4"),
            b"me@mail.example x=4"
        );
        assert_eq!(qp_decode(b"a=  \r\nb="), b"ab");
        assert_eq!(qp_encode(b"a \r\nb\t"), b"a=20\r\nb=09");
    }

    #[test]
    fn base64_tolerant() {
        assert_eq!(base64_decode(b"aGVs\r\nbG8="), b"hello");
        assert_eq!(base64_decode(b"aGk=aGk="), b"hihi");
        assert_eq!(base64_decode(b"a G V s b G 8"), b"hello");
        let lines = base64_lines(&[7u8; 200]);
        assert!(longest_line(&lines) <= 76);
        assert_eq!(base64_decode(&lines), vec![7u8; 200]);
    }

    #[test]
    fn encoded_words() {
        let segs = segments(b" =?utf-8?q?a?= =?UTF-8?B?Yg==?= c =?iso-8859-1?q?=E9?=");
        let decoded: Vec<u8> = segs.iter().flat_map(|s| s.decoded.clone()).collect();
        assert_eq!(String::from_utf8_lossy(&decoded), " ab c é");
        assert_eq!(segs.len(), 4);
        // A character split between two words survives.
        let split = segments(b"=?utf-8?q?=C3?= =?utf-8?q?=A9?=");
        assert_eq!(split[0].decoded, "é".as_bytes());
        // Not encoded words.
        assert!(!segments(b"=?utf-8?q?a b?=")[0].encoded);
        assert_eq!(decoded_value(b"=?x?z?a?="), b"=?x?z?a?=");
    }

    #[test]
    fn encode_words_round_trip() {
        for text in [
            "Bob Smith",
            "Zoë — “quoted”",
            &"é".repeat(100),
            &"x".repeat(200),
        ] {
            let words = encode_words(text);
            for w in words.split(' ') {
                assert!(w.len() <= MAX_WORD_LEN, "{w}");
            }
            assert_eq!(
                String::from_utf8_lossy(&decoded_value(words.as_bytes())),
                text
            );
        }
    }

    #[test]
    fn rewritten_encoded_words_stay_separated() {
        let m = matcher("me@mail.example");
        let scrubber_plan_alias = EmailAddress::parse("shop@alias.example");
        let Ok(alias) = scrubber_plan_alias else {
            panic!("alias")
        };
        let replacements = [(
            "me@mail.example".to_owned(),
            "shop@alias.example".to_owned(),
        )];
        let plan = ReplyPlan {
            from: &alias,
            to: &alias,
            to_display: None,
            replacements: &replacements,
        };
        let scrubber = Scrubber {
            matcher: &m,
            plan: &plan,
        };
        let value = b" =?utf-8?q?me?=@mail.example =?utf-8?q?me?=@mail.example";
        let new = scrubber.scrub_value(value).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&new),
            " =?utf-8?q?shop=40alias=2Eexample_?= =?utf-8?q?shop=40alias=2Eexample?="
        );
        assert_eq!(
            decoded_value(&new),
            b" shop@alias.example shop@alias.example"
        );
        let new = scrubber
            .scrub_value(b"=?utf-8?q?x_me=40mail.example?=")
            .unwrap_or_default();
        assert_eq!(decoded_value(&new), b" x shop@alias.example");
    }

    #[test]
    fn folding() {
        let value = b" a".repeat(100);
        let field = fold_field(b"Subject:", &value);
        assert!(longest_line(&field) <= FOLD_AT);
        assert_eq!(unfold(&field), [&b"Subject:"[..], &value, b""].concat());
        assert_eq!(fold_field(b"X:", b" v  "), b"X: v\r\n");
    }

    #[test]
    fn content_type_charset() {
        assert_eq!(
            with_utf8_charset(b" text/plain; charset=\"iso-8859-1\"; format=flowed"),
            b" text/plain; format=flowed; charset=utf-8"
        );
        assert_eq!(
            with_utf8_charset(b" text/html; name=\"a;b\"; CHARSET*=us-ascii'en'x"),
            b" text/html; name=\"a;b\"; charset=utf-8"
        );
    }

    #[test]
    fn meta_charset() {
        assert_eq!(
            fix_meta_charset(
                r#"<META http-equiv="Content-Type" content="text/html; charset=windows-1252"><meta charset='latin1'>"#
            ),
            r#"<META http-equiv="Content-Type" content="text/html; charset=utf-8"><meta charset='utf-8'>"#
        );
    }

    #[test]
    fn calendar_folding() {
        let line = format!("ORGANIZER;CN=Me:mailto:{}@mail.example", "m".repeat(80));
        let folded = fold_calendar(&line);
        assert!(longest_line(folded.as_bytes()) <= CALENDAR_LINE_LEN);
        assert_eq!(unfold_calendar(&folded), line);
    }

    #[test]
    fn multipart_split() {
        let body = b"pre\r\n--b\r\nA\r\n--b \r\n\r\nB\r\n--b--\r\nepi";
        let parts = split_multipart(body, 0..body.len(), b"b").unwrap_or_default();
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(texts, vec![&b"A"[..], b"\r\nB"]);
        assert!(split_multipart(b"no delimiter", 0..12, b"b").is_none());
        // Unterminated: the last part runs to the end.
        let body = b"--b\r\nA\r\n";
        let parts = split_multipart(body, 0..body.len(), b"b").unwrap_or_default();
        assert_eq!(parts, vec![5..8]);
    }

    #[test]
    fn utf8_decoding() {
        for c in ['a', 'é', '中', '😀', '\u{10ffff}'] {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            assert_eq!(decode_char(s.as_bytes()), Some((c, s.len())));
        }
        for bad in [
            &[0xc0u8, 0x80][..],
            &[0xe0, 0x80, 0x80],
            &[0xed, 0xa0, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0xe4, 0xb8],
            &[0x80],
            &[0xff],
        ] {
            assert_eq!(decode_char(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leak_places_never_name_the_needle() {
        let m = matcher("me@mail.example");
        let place = find_leak(
            b"X: 1\r\nme@mail.example: me@mail.example\r\n\r\nhi\r\n",
            &m,
        );
        assert_eq!(place.as_deref(), Some("a part of the message"));
        let place = find_leak(b"X: 1\r\nComments: me@mail.example\r\n\r\nhi\r\n", &m);
        assert_eq!(place.as_deref(), Some("the header field Comments"));
    }

    #[test]
    fn word_boundary_before_non_ascii() {
        assert!(follows_word_char("é".as_bytes(), 2));
        assert!(!follows_word_char("—".as_bytes(), 3));
        assert!(!follows_word_char(b"", 0));
    }
}
