//! Alias-mode rewriting of forwarded mail.
//!
//! In alias mode the mailbox provider must see a message *from our domain*
//! (so DMARC passes with our DKIM signature), and the owner's replies must go
//! back through us. So before forwarding, every outside address the owner
//! could write to is replaced by its reverse alias
//! ([`crate::reverse`]):
//!
//! ```text
//! From: "Bob" <bob@sender.example>          From: "Bob via smtpy" <r--…@alias.example>
//! Cc: carol@else.example, shop@alias.example  ─▶  Cc: "carol@else.example via smtpy" <r--…@alias.example>, shop@alias.example
//! DKIM-Signature: … (theirs)                  X-Smtpy-Original-From: "Bob" <bob@sender.example>
//! ```
//!
//! The work is split in two pure steps around the store:
//!
//! 1. [`external_addresses`] lists the outside addresses (in `From`,
//!    `Reply-To`, `To`, `Cc` and the `mailto:` targets of
//!    `List-Unsubscribe`); the caller finds or creates a contact, and so a
//!    reverse alias, for each.
//! 2. [`rewrite`] replaces them, following an [`AliasModePlan`].
//!
//! ```
//! use std::collections::HashMap;
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::rewrite::alias_mode::{AliasModePlan, external_addresses, rewrite};
//!
//! let message = b"From: Bob <bob@sender.example>\r\nTo: shop@alias.example\r\nSubject: hi\r\n\r\nHello\r\n";
//! let alias = EmailAddress::parse("shop@alias.example")?;
//! let is_ours = |a: &EmailAddress| a.domain() == alias.domain();
//! let external = external_addresses(message, &is_ours);
//! assert_eq!(external.len(), 1);
//! assert_eq!(external[0].address.to_string(), "bob@sender.example");
//!
//! let mut reverse = HashMap::new();
//! reverse.insert(
//!     external[0].address.canonical(),
//!     EmailAddress::parse("r--c3x7m2kqhd4wz6faaxuqfiw5zunmm@alias.example")?,
//! );
//! let plan = AliasModePlan { alias: &alias, sender_format: "{name} via smtpy", reverse: &reverse };
//! let out = String::from_utf8(rewrite(message, &plan)?)?;
//! assert!(out.starts_with(
//!     "From: \"Bob via smtpy\" <r--c3x7m2kqhd4wz6faaxuqfiw5zunmm@alias.example>\r\n\
//!      X-Smtpy-Original-From: \"Bob\" <bob@sender.example>\r\n\
//!      To: shop@alias.example\r\n"
//! ));
//! assert!(out.ends_with("\r\n\r\nHello\r\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is kept byte for byte
//!
//! Only the fields that change are rewritten: every other header line —
//! `Message-ID`, `In-Reply-To`, `References`, `Subject`, MIME fields, trace
//! fields — and the whole body (from the empty line that ends the header
//! block) are copied unchanged. An address field is re-rendered only when at
//! least one of its addresses is replaced; the addresses it keeps are then
//! written from their parsed form (display name and address; comments other
//! than the one taken as display name are lost). An entry whose address is
//! not a valid [`EmailAddress`] is then written as a quoted display name
//! only, so a mail client cannot reply to it directly from the mailbox.
//!
//! The header block is delimited as [`crate::forward::header_fields`] does
//! (Postfix's rule): it ends at the first empty line or the first line that
//! is neither a field nor a continuation line. A message without any
//! separator is all header block.
//!
//! Address lists are read with `mail-parser` (groups, quoted names,
//! comments, RFC 2047 encoded words); its types stay inside this module.
//! Fields written by this module are folded at 78 octets where whitespace
//! allows and never exceed 998 octets per line; they use the message's line
//! ending (CRLF, or bare LF when the first line ends in one).

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue};

use crate::address::EmailAddress;
use crate::forward::header_block;

/// The field [`rewrite`] adds after `From`, holding the original `From` for
/// the owner. Any such field already in the message is removed first, so
/// the one the owner sees is always ours.
pub const ORIGINAL_FROM_HEADER: &str = "X-Smtpy-Original-From";

/// Display names longer than this many characters are cut (after control
/// characters are replaced and whitespace collapsed).
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;

/// Fields written by this module are folded before this many octets where
/// whitespace allows (RFC 5322's recommended line length).
const FOLD_AT: usize = 78;

/// RFC 5322's hard limit on a line, without its CRLF.
const MAX_LINE: usize = 998;

/// Raw UTF-8 bytes per RFC 2047 encoded word: 45 bytes give 60 base64
/// characters, and the word `=?utf-8?b?…?=` stays within 75 characters.
const ENCODED_WORD_BYTES: usize = 45;

/// Fields removed from every rewritten message (compared case-insensitively).
const REMOVED_FIELDS: [&str; 4] = [
    "Sender",
    "Return-Path",
    "DKIM-Signature",
    ORIGINAL_FROM_HEADER,
];

/// Where an outside address was found.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressRole {
    /// The `From` field.
    From,
    /// The `Reply-To` field.
    ReplyTo,
    /// The `To` field.
    To,
    /// The `Cc` field.
    Cc,
    /// A `mailto:` target of the `List-Unsubscribe` field.
    ListUnsubscribe,
}

impl AddressRole {
    /// The roles in the order [`external_addresses`] reports them.
    const ORDER: [AddressRole; 5] = [
        AddressRole::From,
        AddressRole::ReplyTo,
        AddressRole::To,
        AddressRole::Cc,
        AddressRole::ListUnsubscribe,
    ];

    /// The role of a field, by name (ASCII case-insensitive).
    fn of_field(name: &[u8]) -> Option<AddressRole> {
        Self::ORDER
            .into_iter()
            .find(|role| name.eq_ignore_ascii_case(role.field_name().as_bytes()))
    }

    /// The header field this role is read from.
    fn field_name(self) -> &'static str {
        match self {
            AddressRole::From => "From",
            AddressRole::ReplyTo => "Reply-To",
            AddressRole::To => "To",
            AddressRole::Cc => "Cc",
            AddressRole::ListUnsubscribe => "List-Unsubscribe",
        }
    }
}

/// An outside address of a message: one that needs a reverse alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAddress {
    /// The address.
    pub address: EmailAddress,
    /// Its display name, RFC 2047 decoded, control characters replaced,
    /// whitespace collapsed, at most [`MAX_DISPLAY_NAME_CHARS`] characters.
    pub display_name: Option<String>,
    /// Where it was first found.
    pub role: AddressRole,
}

/// What [`rewrite`] replaces, and how.
#[derive(Debug, Clone, Copy)]
pub struct AliasModePlan<'a> {
    /// The alias the message was sent to. Every reverse alias in
    /// [`reverse`](Self::reverse) must be on its domain.
    pub alias: &'a EmailAddress,
    /// The display name given to each replaced address, e.g.
    /// `"{name} via smtpy"`: `{name}` is the original display name (or the
    /// address when there is none), `{address}` the original address.
    /// Other text is copied; the result is cleaned like a display name, and
    /// an empty result means no display name.
    pub sender_format: &'a str,
    /// Reverse aliases by [`EmailAddress::canonical`] of the outside
    /// address. An address missing here is left unchanged.
    pub reverse: &'a HashMap<String, EmailAddress>,
}

/// Why a message could not be rewritten.
///
/// The first three describe the message (the caller refuses it, e.g. with
/// `550 5.6.0`); the others describe the caller's input.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The header block has no `From` field.
    #[error("the message has no From header field")]
    MissingFrom,
    /// The header block has more than one `From` field (which one a mail
    /// client shows is unpredictable).
    #[error("the message has {count} From header fields")]
    DuplicateFrom {
        /// How many `From` fields there are.
        count: usize,
    },
    /// The `From` field holds no valid mail address.
    #[error("the From header field holds no valid address")]
    NoFromAddress,
    /// A reverse alias in the plan is not on the alias's domain.
    #[error("reverse alias {address} is not on the alias's domain")]
    ForeignReverseAlias {
        /// The reverse alias.
        address: String,
    },
    /// A header field name is empty or holds characters other than
    /// printable ASCII without `:`.
    #[error("invalid header field name")]
    InvalidHeaderName,
    /// A header field value holds a CR, LF or other control character
    /// (other than tab), which could inject fields.
    #[error("header field value holds a line break or control character")]
    InvalidHeaderValue,
    /// A field would have a line longer than 998 octets that cannot be
    /// folded (no whitespace to fold at).
    #[error("header field line too long")]
    LineTooLong,
}

// ---------------------------------------------------------------------------
// Header block

/// One header field.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    /// The whole field, continuation lines and final line break included.
    raw: &'a [u8],
    /// The name, without the colon and any whitespace before it.
    name: &'a [u8],
    /// Everything after the colon, without the final line break.
    value: &'a [u8],
    /// The final line break (empty on a last line without one).
    line_break: &'a [u8],
}

impl Field<'_> {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The header fields of `message` and everything after them (the empty line
/// and the body, if any).
fn split_message(message: &[u8]) -> (Vec<Field<'_>>, &[u8]) {
    let block = header_block(message);
    let rest = &message[block.len()..];
    let mut fields = Vec::new();
    let mut start = 0;
    while start < block.len() {
        // A field runs until a line that does not start with SP or HT.
        let mut end = start;
        loop {
            end = match block[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end + i + 1,
                None => block.len(),
            };
            if end >= block.len() || !matches!(block[end], b' ' | b'\t') {
                break;
            }
        }
        let raw = &block[start..end];
        let content = raw
            .strip_suffix(b"\n")
            .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
            .unwrap_or(raw);
        let (name, value) = match content.iter().position(|&b| b == b':') {
            Some(colon) => (content[..colon].trim_ascii_end(), &content[colon + 1..]),
            None => (content, &content[content.len()..]),
        };
        let line_break = &raw[content.len()..];
        fields.push(Field {
            raw,
            name,
            value,
            line_break,
        });
        start = end;
    }
    (fields, rest)
}

/// The line ending to use in new fields: bare LF when the message's first
/// line ends in one, CRLF otherwise.
fn line_ending(message: &[u8]) -> &'static str {
    match message.iter().position(|&b| b == b'\n') {
        Some(i) if i == 0 || message[i - 1] != b'\r' => "\n",
        _ => "\r\n",
    }
}

/// Appends `field` (which ends with its line break) to `out`, first ending
/// the previous line if it has no line break.
fn push_field(out: &mut Vec<u8>, field: &[u8], eol: &str) {
    if out.last().is_some_and(|&b| b != b'\n') {
        out.extend_from_slice(eol.as_bytes());
    }
    out.extend_from_slice(field);
}

// ---------------------------------------------------------------------------
// Parsed address lists (our own types; mail-parser's stay in this module)

/// One mailbox of an address list, as parsed.
#[derive(Debug, Clone)]
struct Mailbox {
    /// Decoded display name (comments included), cleaned.
    name: Option<String>,
    /// The address text, if any.
    address: Option<String>,
}

/// One entry of an address list.
#[derive(Debug, Clone)]
enum Entry {
    /// A plain mailbox.
    Mailbox(Mailbox),
    /// `name: member, member;`
    Group {
        /// The group's display name.
        name: String,
        /// Its members.
        members: Vec<Mailbox>,
    },
}

impl Entry {
    fn mailboxes(&self) -> &[Mailbox] {
        match self {
            Entry::Mailbox(m) => std::slice::from_ref(m),
            Entry::Group { members, .. } => members,
        }
    }
}

/// Parses an address field's raw value.
fn parse_address_list(value: &[u8]) -> Vec<Entry> {
    let mut buf = Vec::with_capacity(value.len() + 2);
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
    let parsed = MessageStream::new(&buf).parse_address();
    let HeaderValue::Address(address) = parsed else {
        return Vec::new();
    };
    let mailbox = |a: &Addr<'_>| Mailbox {
        name: a.name.as_deref().and_then(clean_text),
        address: a
            .address
            .as_deref()
            .map(|s| s.chars().filter(|c| !c.is_control()).collect::<String>())
            .filter(|s| !s.trim().is_empty()),
    };
    match &address {
        Address::List(list) => list.iter().map(|a| Entry::Mailbox(mailbox(a))).collect(),
        Address::Group(groups) => {
            let mut entries = Vec::new();
            for group in groups {
                let members = group.addresses.iter().map(mailbox);
                match group.name.as_deref().and_then(clean_text) {
                    Some(name) => entries.push(Entry::Group {
                        name,
                        members: members.collect(),
                    }),
                    None => entries.extend(members.map(Entry::Mailbox)),
                }
            }
            entries
        }
    }
}

/// An address from a header as an [`EmailAddress`], or `None` when it is
/// not valid (or holds the replacement character of undecodable bytes).
fn parse_email(text: &str) -> Option<EmailAddress> {
    if text.contains('\u{FFFD}') {
        return None;
    }
    EmailAddress::parse(text.trim()).ok()
}

/// A display name made safe: control characters become spaces, whitespace
/// runs collapse, surrounding whitespace goes, and it is cut to
/// [`MAX_DISPLAY_NAME_CHARS`]. `None` when nothing is left.
fn clean_text(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len().min(4 * MAX_DISPLAY_NAME_CHARS));
    let mut chars = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if chars + usize::from(pending_space) + 1 > MAX_DISPLAY_NAME_CHARS {
            break;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    (!out.is_empty()).then_some(out)
}

// ---------------------------------------------------------------------------
// Finding outside addresses

/// The outside addresses of `message` that need a reverse alias: those in
/// `From`, `Reply-To`, `To` and `Cc`, and the `mailto:` targets of
/// `List-Unsubscribe`, for which `is_ours` (one of our aliases, or any
/// address we host) is false.
///
/// Each address appears once (compared by [`EmailAddress::canonical`]),
/// with the role where it was first found in the order `From`, `Reply-To`,
/// `To`, `Cc`, `List-Unsubscribe` (then header order), and the first display
/// name found for it. Text that is not a valid [`EmailAddress`] is skipped
/// (and [`rewrite`] leaves it as it is). Only the header block is read.
#[must_use]
pub fn external_addresses(
    message: &[u8],
    is_ours: &dyn Fn(&EmailAddress) -> bool,
) -> Vec<ExternalAddress> {
    let (fields, _) = split_message(message);
    let mut found: Vec<ExternalAddress> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for role in AddressRole::ORDER {
        for field in fields.iter().filter(|f| f.is(role.field_name())) {
            let candidates: Vec<(EmailAddress, Option<String>)> =
                if role == AddressRole::ListUnsubscribe {
                    list_unsubscribe_uris(field.value)
                        .iter()
                        .filter_map(|uri| Mailto::parse(uri))
                        .filter_map(|m| m.address)
                        .map(|a| (a, None))
                        .collect()
                } else {
                    parse_address_list(field.value)
                        .iter()
                        .flat_map(Entry::mailboxes)
                        .filter_map(|m| {
                            let address = parse_email(m.address.as_deref()?)?;
                            Some((address, m.name.clone()))
                        })
                        .collect()
                };
            for (address, display_name) in candidates {
                if is_ours(&address) {
                    continue;
                }
                let key = address.canonical();
                if let Some(&i) = index.get(&key) {
                    if found[i].display_name.is_none() {
                        found[i].display_name = display_name;
                    }
                    continue;
                }
                index.insert(key, found.len());
                found.push(ExternalAddress {
                    address,
                    display_name,
                    role,
                });
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Rewriting

/// `message` rewritten for alias mode, following `plan`:
///
/// * `From` becomes `"<formatted name>" <reverse alias>` for each of its
///   addresses found in [`AliasModePlan::reverse`], the name formatted with
///   [`AliasModePlan::sender_format`] (quoted, or RFC 2047 encoded when not
///   ASCII); an [`ORIGINAL_FROM_HEADER`] field with the original `From`
///   (display names and addresses) follows it, for the owner;
/// * `Reply-To`, `To` and `Cc`: each address found in the map becomes its
///   reverse alias, with a display name formatted the same way; other
///   addresses (our own aliases among them) are kept;
/// * `List-Unsubscribe`: a `mailto:` target found in the map becomes its
///   reverse alias (keeping only the `subject` and `body` of its query, so
///   no `cc=` can reveal the mailbox); a `mailto:` target that is not a
///   valid address is removed (the owner could not unsubscribe through us);
///   other URIs (`https:`) are kept; a field left empty is removed;
/// * `Sender`, `Return-Path`, every `DKIM-Signature` (the sender's signature
///   no longer verifies once `From` changes) and any incoming
///   [`ORIGINAL_FROM_HEADER`] are removed;
/// * everything else — `Message-ID`, `In-Reply-To`, `References`, other
///   fields, and the body — is copied byte for byte.
///
/// # Errors
///
/// [`RewriteError::MissingFrom`], [`RewriteError::DuplicateFrom`] or
/// [`RewriteError::NoFromAddress`] for a message whose sender cannot be
/// determined, [`RewriteError::ForeignReverseAlias`] when the plan maps an
/// address to a reverse alias on another domain than the alias's, and
/// [`RewriteError::LineTooLong`] when an address is too long to write.
pub fn rewrite(message: &[u8], plan: &AliasModePlan<'_>) -> Result<Vec<u8>, RewriteError> {
    if let Some(foreign) = plan
        .reverse
        .values()
        .find(|r| r.domain() != plan.alias.domain())
    {
        return Err(RewriteError::ForeignReverseAlias {
            address: foreign.to_string(),
        });
    }
    let (fields, rest) = split_message(message);
    match fields.iter().filter(|f| f.is("From")).count() {
        0 => return Err(RewriteError::MissingFrom),
        1 => {}
        count => return Err(RewriteError::DuplicateFrom { count }),
    }
    let eol = line_ending(message);
    let mut out = Vec::with_capacity(message.len() + 512);
    for field in &fields {
        if REMOVED_FIELDS.iter().any(|name| field.is(name)) {
            continue;
        }
        match AddressRole::of_field(field.name) {
            Some(AddressRole::From) => {
                let entries = parse_address_list(field.value);
                let has_address = entries
                    .iter()
                    .flat_map(Entry::mailboxes)
                    .any(|m| m.address.as_deref().and_then(parse_email).is_some());
                if !has_address {
                    return Err(RewriteError::NoFromAddress);
                }
                let (from, changed) = render_address_field("From", &entries, Some(plan), eol)?;
                if changed {
                    push_field(&mut out, from.as_bytes(), eol);
                } else {
                    push_field(&mut out, field.raw, eol);
                }
                let (original, _) =
                    render_address_field(ORIGINAL_FROM_HEADER, &entries, None, eol)?;
                push_field(&mut out, original.as_bytes(), eol);
            }
            Some(role @ (AddressRole::ReplyTo | AddressRole::To | AddressRole::Cc)) => {
                let entries = parse_address_list(field.value);
                let (text, changed) =
                    render_address_field(role.field_name(), &entries, Some(plan), eol)?;
                if changed {
                    push_field(&mut out, text.as_bytes(), eol);
                } else {
                    push_field(&mut out, field.raw, eol);
                }
            }
            Some(AddressRole::ListUnsubscribe) => match rewrite_list_unsubscribe(field, plan, eol)?
            {
                ListUnsubscribe::Unchanged => push_field(&mut out, field.raw, eol),
                ListUnsubscribe::Removed => {}
                ListUnsubscribe::Rewritten(text) => push_field(&mut out, text.as_bytes(), eol),
            },
            None => push_field(&mut out, field.raw, eol),
        }
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Writes one field, folding between words: `Name: word word…` with a
/// line break at the end.
struct FieldWriter<'e> {
    out: String,
    line: usize,
    /// Whether the current line holds a word (after the field name).
    has_word: bool,
    eol: &'e str,
}

impl<'e> FieldWriter<'e> {
    fn new(name: &str, eol: &'e str) -> Self {
        let mut out = String::with_capacity(128);
        out.push_str(name);
        out.push(':');
        FieldWriter {
            line: out.len(),
            out,
            has_word: false,
            eol,
        }
    }

    /// Appends ` word`, or a fold and ` word` when the line would pass
    /// [`FOLD_AT`] octets and already holds a word.
    fn word(&mut self, word: &str) -> Result<(), RewriteError> {
        if self.has_word && self.line + 1 + word.len() > FOLD_AT {
            self.out.push_str(self.eol);
            self.line = 0;
        }
        self.out.push(' ');
        self.out.push_str(word);
        self.line += 1 + word.len();
        self.has_word = true;
        if self.line > MAX_LINE {
            return Err(RewriteError::LineTooLong);
        }
        Ok(())
    }

    /// Appends words that belong together, folding first when they do not
    /// fit on the current line.
    fn unit(&mut self, words: &[String]) -> Result<(), RewriteError> {
        let len: usize = words.iter().map(|w| 1 + w.len()).sum();
        if self.has_word && self.line + len > FOLD_AT {
            self.out.push_str(self.eol);
            self.line = 0;
            self.has_word = false;
        }
        for word in words {
            self.word(word)?;
        }
        Ok(())
    }

    fn finish(mut self) -> String {
        self.out.push_str(self.eol);
        self.out
    }
}

/// Renders an address field from parsed entries, replacing the addresses
/// found in `plan`'s map (none when `plan` is `None`). Returns the field
/// and whether any address was replaced.
///
/// Each mailbox (and each group name) is a unit: a fold goes before a unit
/// that does not fit on the current line, and inside a unit only when it
/// does not fit on a line of its own.
fn render_address_field(
    name: &str,
    entries: &[Entry],
    plan: Option<&AliasModePlan<'_>>,
    eol: &str,
) -> Result<(String, bool), RewriteError> {
    let mut units: Vec<Vec<String>> = Vec::new();
    let mut changed = false;
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Entry::Mailbox(mailbox) => {
                let mut unit = Vec::new();
                changed |= mailbox_words(mailbox, plan, &mut unit);
                units.push(unit);
            }
            Entry::Group { name, members } => {
                units.push(phrase_words(name));
                append_to_last(&mut units, ":");
                for (j, member) in members.iter().enumerate() {
                    let mut unit = Vec::new();
                    changed |= mailbox_words(member, plan, &mut unit);
                    units.push(unit);
                    if j + 1 < members.len() {
                        append_to_last(&mut units, ",");
                    }
                }
                append_to_last(&mut units, ";");
            }
        }
        if i + 1 < entries.len() {
            append_to_last(&mut units, ",");
        }
    }
    let mut writer = FieldWriter::new(name, eol);
    for unit in &units {
        writer.unit(unit)?;
    }
    Ok((writer.finish(), changed))
}

/// Appends `suffix` to the last word of the last unit.
fn append_to_last(units: &mut Vec<Vec<String>>, suffix: &str) {
    match units.last_mut().and_then(|u| u.last_mut()) {
        Some(last) => last.push_str(suffix),
        None => units.push(vec![suffix.to_owned()]),
    }
}

/// The words of one mailbox: its display name then `<address>`, replaced
/// by the reverse alias when `plan` maps the address. Returns whether it
/// was replaced.
fn mailbox_words(
    mailbox: &Mailbox,
    plan: Option<&AliasModePlan<'_>>,
    words: &mut Vec<String>,
) -> bool {
    let Some(text) = mailbox.address.as_deref() else {
        // A name without an address: keep the name.
        if let Some(name) = &mailbox.name {
            words.extend(phrase_words(name));
        }
        return false;
    };
    let parsed = parse_email(text);
    let reverse = parsed.as_ref().and_then(|address| {
        let plan = plan?;
        let reverse = plan.reverse.get(&address.canonical())?;
        Some((plan, address, reverse))
    });
    match reverse {
        Some((plan, address, reverse)) => {
            let name = format_name(plan.sender_format, mailbox.name.as_deref(), address);
            push_name_addr(words, name.as_deref(), &wire_form(reverse));
            true
        }
        None => {
            match &parsed {
                Some(address) => {
                    push_name_addr(words, mailbox.name.as_deref(), &wire_form(address))
                }
                None => {
                    // Not a valid address: shown as a quoted name, never as
                    // an address a client could reply to (it has no reverse
                    // alias, so replying would reveal the mailbox).
                    let shown = match &mailbox.name {
                        Some(name) => format!("{name} <{text}>"),
                        None => text.to_owned(),
                    };
                    if let Some(shown) = clean_text(&shown) {
                        words.extend(phrase_words(&shown));
                    }
                }
            }
            false
        }
    }
}

/// `"name" <address>`, or the bare address without a name.
fn push_name_addr(words: &mut Vec<String>, name: Option<&str>, address: &str) {
    match name {
        Some(name) => {
            words.extend(phrase_words(name));
            words.push(format!("<{address}>"));
        }
        None => words.push(address.to_owned()),
    }
}

/// An address as written in a header: `local@A-label` when the local part
/// is ASCII, `local@U-label` otherwise (such a message needs SMTPUTF8
/// anyway).
fn wire_form(address: &EmailAddress) -> String {
    address
        .to_ascii_string()
        .unwrap_or_else(|| address.to_string())
}

/// The display name for a replaced address: `format` with `{name}` (the
/// original display name, or the address) and `{address}` substituted in
/// one pass, then cleaned.
fn format_name(format: &str, name: Option<&str>, address: &EmailAddress) -> Option<String> {
    let address_text = address.to_string();
    let name = name.unwrap_or(&address_text);
    let mut out = String::with_capacity(format.len() + name.len() + address_text.len());
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix("{name}") {
            out.push_str(name);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{address}") {
            out.push_str(&address_text);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    clean_text(&out)
}

/// A display name (already cleaned) as RFC 5322 phrase words: one quoted
/// string when it is ASCII, RFC 2047 encoded words otherwise.
fn phrase_words(name: &str) -> Vec<String> {
    if name.is_ascii() {
        let mut quoted = String::with_capacity(name.len() + 2);
        quoted.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        vec![quoted]
    } else {
        encoded_words(name)
    }
}

/// `text` as RFC 2047 `B`-encoded UTF-8 words of at most 75 characters,
/// split at character boundaries.
fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + ENCODED_WORD_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = &text[start..end];
        words.push(format!("=?utf-8?b?{}?=", BASE64.encode(chunk)));
        start = end;
    }
    words
}

// ---------------------------------------------------------------------------
// List-Unsubscribe

/// The URIs of a `List-Unsubscribe` value: the text of each `<…>`, with
/// whitespace (folding) removed (RFC 2369).
fn list_unsubscribe_uris(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut uris = Vec::new();
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            break;
        };
        let uri: String = after[..close]
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_control())
            .collect();
        if !uri.is_empty() {
            uris.push(uri);
        }
        rest = &after[close + 1..];
    }
    uris
}

/// A `mailto:` URI, split.
struct Mailto<'a> {
    /// The target address, when it is one valid address.
    address: Option<EmailAddress>,
    /// The query after `?`, if any.
    query: Option<&'a str>,
}

impl<'a> Mailto<'a> {
    /// `None` when `uri` is not a `mailto:` URI.
    fn parse(uri: &'a str) -> Option<Mailto<'a>> {
        let scheme = uri.get(..7)?;
        if !scheme.eq_ignore_ascii_case("mailto:") {
            return None;
        }
        let rest = &uri[7..];
        let (to, query) = match rest.split_once('?') {
            Some((to, query)) => (to, Some(query)),
            None => (rest, None),
        };
        let address = percent_decode(to).and_then(|t| parse_email(&t));
        Some(Mailto { address, query })
    }
}

/// What happens to one `List-Unsubscribe` field.
enum ListUnsubscribe {
    Unchanged,
    Removed,
    Rewritten(String),
}

/// Rewrites the `mailto:` targets of one `List-Unsubscribe` field.
fn rewrite_list_unsubscribe(
    field: &Field<'_>,
    plan: &AliasModePlan<'_>,
    eol: &str,
) -> Result<ListUnsubscribe, RewriteError> {
    let uris = list_unsubscribe_uris(field.value);
    let mut changed = false;
    let mut kept: Vec<String> = Vec::with_capacity(uris.len());
    for uri in uris {
        let Some(mailto) = Mailto::parse(&uri) else {
            kept.push(uri);
            continue;
        };
        let Some(address) = mailto.address else {
            // Not an address we could give a reverse alias: unusable
            // without revealing the mailbox.
            changed = true;
            continue;
        };
        let Some(reverse) = plan.reverse.get(&address.canonical()) else {
            kept.push(uri);
            continue;
        };
        let mut new_uri = String::from("mailto:");
        new_uri.push_str(&percent_encode(&wire_form(reverse)));
        let query = safe_mailto_query(mailto.query.unwrap_or(""));
        if !query.is_empty() {
            new_uri.push('?');
            new_uri.push_str(&query);
        }
        kept.push(new_uri);
        changed = true;
    }
    if !changed {
        return Ok(ListUnsubscribe::Unchanged);
    }
    if kept.is_empty() {
        return Ok(ListUnsubscribe::Removed);
    }
    let mut writer = FieldWriter::new("List-Unsubscribe", eol);
    let last = kept.len() - 1;
    for (i, uri) in kept.iter().enumerate() {
        let sep = if i < last { "," } else { "" };
        writer.word(&format!("<{uri}>{sep}"))?;
    }
    Ok(ListUnsubscribe::Rewritten(writer.finish()))
}

/// The `subject` and `body` fields of a `mailto:` query, as written; every
/// other field (`to`, `cc`, `bcc`, headers) is dropped.
fn safe_mailto_query(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            name.eq_ignore_ascii_case("subject") || name.eq_ignore_ascii_case("body")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything in an address but unreserved characters,
/// `@` and RFC 6068's safe delimiters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*+;:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Subject and extra fields

/// `message` with `prefix` put in front of its subject, for rules and
/// DMARC's tag-the-subject action.
///
/// * `prefix` is cleaned like a display name (control characters, line
///   breaks included, become spaces); an empty prefix changes nothing.
/// * A non-ASCII prefix is written as RFC 2047 encoded words; the subject's
///   own text — plain or encoded words — is kept byte for byte after it.
/// * A subject that already starts with the prefix (after decoding) is left
///   alone, so a thread is not tagged twice; every `Subject` field is
///   prefixed when there are several.
/// * A message without `Subject` gets `Subject: <prefix>` at the end of its
///   header block.
///
/// ```
/// use smtpy_core::rewrite::alias_mode::prefix_subject;
///
/// let out = prefix_subject(b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n\r\nbody", "[SPAM?]");
/// assert_eq!(out, b"Subject: [SPAM?] =?utf-8?q?Caf=C3=A9?=\r\n\r\nbody");
/// ```
#[must_use]
pub fn prefix_subject(message: &[u8], prefix: &str) -> Vec<u8> {
    let Some(prefix) = clean_text(prefix) else {
        return message.to_vec();
    };
    let (fields, rest) = split_message(message);
    let eol = line_ending(message);
    let mut out = Vec::with_capacity(message.len() + prefix.len() * 2 + 16);
    let mut seen = false;
    for field in &fields {
        if field.is("Subject") {
            seen = true;
            if !already_prefixed(field.value, &prefix) {
                push_field(&mut out, &prefixed_subject(field, &prefix, eol), eol);
                out.extend_from_slice(field.line_break);
                continue;
            }
        }
        push_field(&mut out, field.raw, eol);
    }
    if !seen {
        let mut subject = b"Subject: ".to_vec();
        subject.extend_from_slice(encoded_prefix(&prefix, false).as_bytes());
        subject.extend_from_slice(eol.as_bytes());
        push_field(&mut out, &subject, eol);
    }
    out.extend_from_slice(rest);
    out
}

/// Whether the decoded subject already starts with `prefix`.
fn already_prefixed(value: &[u8], prefix: &str) -> bool {
    let mut buf = Vec::with_capacity(value.len() + 2);
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
    let decoded = match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(text) => text,
        _ => Cow::Borrowed(""),
    };
    decoded.trim_start().starts_with(prefix)
}

/// The prefix as written: as is when ASCII, else encoded words (with the
/// separating space inside the last word when encoded words follow, since
/// whitespace between encoded words is not displayed).
fn encoded_prefix(prefix: &str, encoded_words_follow: bool) -> String {
    if prefix.is_ascii() {
        return prefix.to_owned();
    }
    let mut text = prefix.to_owned();
    if encoded_words_follow {
        text.push(' ');
    }
    encoded_words(&text).join(" ")
}

/// `Subject: <prefix> <original value>`, without the final line break
/// (the caller copies the original one). The original value's bytes follow
/// unchanged (minus leading blanks on its first line); when the first line
/// would exceed 998 octets the original value starts on a folded line.
fn prefixed_subject(field: &Field<'_>, prefix: &str, eol: &str) -> Vec<u8> {
    let value = field.value;
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let original = &value[start..];
    let prefix = encoded_prefix(prefix, original.starts_with(b"=?"));
    let mut out = Vec::with_capacity(16 + prefix.len() + value.len());
    out.extend_from_slice(b"Subject: ");
    out.extend_from_slice(prefix.as_bytes());
    let first_line = original
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(original.len());
    if original.is_empty() || matches!(original.first(), Some(b'\r' | b'\n')) {
        // Empty, or the value starts on a continuation line.
        out.extend_from_slice(original);
    } else if out.len() + 1 + first_line > MAX_LINE {
        out.extend_from_slice(eol.as_bytes());
        out.push(b' ');
        out.extend_from_slice(original);
    } else {
        out.push(b' ');
        out.extend_from_slice(original);
    }
    out
}

/// `message` with the field `name: value` added at the top of its header
/// block, folded at spaces when longer than 78 octets.
///
/// ```
/// use smtpy_core::rewrite::alias_mode::{RewriteError, add_header};
///
/// let out = add_header(b"Subject: hi\r\n\r\nbody", "X-Smtpy-Rule", "tagged")?;
/// assert_eq!(out, b"X-Smtpy-Rule: tagged\r\nSubject: hi\r\n\r\nbody");
/// assert_eq!(
///     add_header(b"Subject: hi\r\n\r\n", "X-A", "x\r\nBcc: victim@example.com"),
///     Err(RewriteError::InvalidHeaderValue)
/// );
/// # Ok::<(), RewriteError>(())
/// ```
///
/// # Errors
///
/// [`RewriteError::InvalidHeaderName`] unless `name` is non-empty printable
/// ASCII without `:`; [`RewriteError::InvalidHeaderValue`] when `value`
/// holds CR, LF or another control character but tab;
/// [`RewriteError::LineTooLong`] when a word of `value` is too long for a
/// line.
pub fn add_header(message: &[u8], name: &str, value: &str) -> Result<Vec<u8>, RewriteError> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(RewriteError::InvalidHeaderName);
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(RewriteError::InvalidHeaderValue);
    }
    let eol = line_ending(message);
    let field = fold_text_field(name, value, eol)?;
    let mut out = Vec::with_capacity(field.len() + message.len());
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// `name: value` with a line break, folded before existing spaces so that
/// unfolding gives back `value` exactly.
fn fold_text_field(name: &str, value: &str, eol: &str) -> Result<String, RewriteError> {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push_str(": ");
    let mut line = out.len();
    for (i, segment) in value.split(' ').enumerate() {
        if i > 0 {
            if line + 1 + segment.len() > FOLD_AT && line > name.len() + 2 {
                out.push_str(eol);
                line = 0;
            }
            out.push(' ');
            line += 1;
        }
        out.push_str(segment);
        line += segment.len();
        if line > MAX_LINE {
            return Err(RewriteError::LineTooLong);
        }
    }
    out.push_str(eol);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte() {
        let message = b"A: 1\r\nB: 2\r\n  more\r\nC:3\r\n\r\nbody\r\nD: 4\r\n";
        let (fields, rest) = split_message(message);
        let names: Vec<&[u8]> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, vec![&b"A"[..], b"B", b"C"]);
        assert_eq!(fields[1].value, b" 2\r\n  more");
        assert_eq!(rest, b"\r\nbody\r\nD: 4\r\n");
        let joined: Vec<u8> = fields
            .iter()
            .flat_map(|f| f.raw.iter().copied())
            .chain(rest.iter().copied())
            .collect();
        assert_eq!(joined, message);
    }

    #[test]
    fn split_without_separator_or_final_line_break() {
        let (fields, rest) = split_message(b"A: 1\r\nB: 2");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].raw, b"B: 2");
        assert_eq!(fields[1].value, b" 2");
        assert!(rest.is_empty());
    }

    #[test]
    fn clean_text_collapses_and_cuts() {
        assert_eq!(clean_text(" a\r\n\tb  c "), Some("a b c".to_owned()));
        assert_eq!(clean_text("\r\n"), None);
        let long = "é".repeat(500);
        assert_eq!(
            clean_text(&long).map(|s| s.chars().count()),
            Some(MAX_DISPLAY_NAME_CHARS)
        );
    }

    #[test]
    fn encoded_words_respect_length_and_boundaries() {
        let text = "é".repeat(100);
        let words = encoded_words(&text);
        assert!(words.iter().all(|w| w.len() <= 75), "{words:?}");
        let decoded: String = words
            .iter()
            .map(|w| {
                let b64 = &w["=?utf-8?b?".len()..w.len() - 2];
                String::from_utf8(BASE64.decode(b64).expect("b64")).expect("utf8")
            })
            .collect();
        assert_eq!(decoded, text);
    }

    #[test]
    fn format_name_substitutes_once() {
        let address = EmailAddress::parse("bob@example.com").expect("address");
        assert_eq!(
            format_name("{name} via {x} <{address}>", Some("{address}"), &address).as_deref(),
            Some("{address} via {x} <bob@example.com>")
        );
        assert_eq!(
            format_name("{name}", None, &address).as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(format_name("", Some("Bob"), &address), None);
    }

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode("a%40b%2Bc@x").as_deref(), Some("a@b+c@x"));
        assert_eq!(percent_decode("%zz%4"), Some("%zz%4".to_owned()));
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_encode("a b&c@x"), "a%20b%26c@x");
    }

    #[test]
    fn mailto_query_keeps_subject_and_body_only() {
        assert_eq!(
            safe_mailto_query("subject=unsub&cc=me@x&BODY=go&to=y@z"),
            "subject=unsub&BODY=go"
        );
    }

    #[test]
    fn fold_text_unfolds_to_the_value() {
        let value = "word ".repeat(40);
        let field = fold_text_field("X-Long", &value, "\r\n").expect("fold");
        assert!(field.split("\r\n").all(|l| l.len() <= FOLD_AT));
        let unfolded = field.trim_end_matches("\r\n").replace("\r\n", "");
        assert_eq!(unfolded, format!("X-Long: {value}"));
        assert_eq!(
            fold_text_field("X", &"a".repeat(1000), "\r\n"),
            Err(RewriteError::LineTooLong)
        );
    }
}
