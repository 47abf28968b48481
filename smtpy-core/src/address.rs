//! RFC 5321 mail addresses: [`EmailAddress`], [`LocalPart`] and [`DomainName`].
//!
//! These types follow "parse, don't validate": a value of one of these types
//! can only be obtained by parsing, and once you hold one it is known to be
//! well-formed and is stored in a canonical form. Nothing here ever panics,
//! whatever the input.
//!
//! # What is accepted
//!
//! * **Local part**: an RFC 5321 `Dot-string` (RFC 5322 `atext` atoms joined by
//!   single dots) or a `Quoted-string`, both extended by RFC 6531 (SMTPUTF8) to
//!   allow any non-ASCII character. Control characters (C0, DEL and C1) are
//!   never accepted, not even escaped inside quotes. At most
//!   [`MAX_LOCAL_PART_LEN`] octets.
//! * **Domain**: a domain name only — never an address literal such as
//!   `[192.0.2.1]` or `[IPv6:2001:db8::1]`, because smtpy never hosts or routes
//!   IP literals. Internationalised names are accepted in either U-label
//!   (`bücher.example`) or A-label (`xn--bcher-kva.example`) form and are
//!   processed with UTS #46 (see [`DomainName`]).
//! * **Whole address**: `local@domain`, without angle brackets or a display
//!   name, at most [`MAX_ADDRESS_LEN`] octets.
//!
//! Legacy routing syntaxes are not interpreted, ever: a source route
//! (`@relay:user@example.com`) is rejected, while the `%` hack
//! (`user%other@example.com`) and bang paths (`a!b@example.com`) are simply
//! local parts made of legal `atext` characters. smtpy treats such local parts
//! as opaque names and never routes on them.
//!
//! # Canonical forms and comparison
//!
//! * A [`LocalPart`] is stored unquoted when its content is a valid dot-atom
//!   (so `"john.doe"` becomes `john.doe`), otherwise quoted with only `"` and
//!   `\` escaped (so `"a\b c"` becomes `"ab c"`).
//! * A [`DomainName`] is stored as its lower-case A-label form (the lookup key)
//!   plus the U-label form (for display).
//! * [`EmailAddress`] equality, hashing and ordering use
//!   [`EmailAddress::canonical`]: the local part lower-cased plus the A-label
//!   domain. See the type documentation for why.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Maximum length of a local part, in octets (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Maximum length of one domain label in A-label form, in octets
/// (RFC 5321 §4.5.3.1.2, RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Maximum length of a domain name in A-label form, in octets.
///
/// RFC 5321 §4.5.3.1.2 allows 255 octets, but that figure counts the DNS wire
/// format (length prefixes and the root label). The longest name that can
/// actually be written as dotted text and resolved is 253 octets, so a longer
/// name could never receive mail; smtpy rejects it up front.
pub const MAX_DOMAIN_LEN: usize = 253;

/// Maximum length of a whole address (`local@A-label-domain`), in octets.
///
/// RFC 5321 §4.5.3.1.3 limits a path (`<local@domain>`) to 256 octets; minus
/// the two angle brackets that leaves 254 octets for the address itself.
pub const MAX_ADDRESS_LEN: usize = 254;

/// Inputs longer than this many octets are rejected before any other work
/// (in particular before IDNA processing), to bound the CPU spent on hostile
/// input.
///
/// The bound is generous: every octet of a valid A-label domain comes from at
/// most one input character of at most four octets, and every octet of a
/// canonical local part from at most two input octets (an unnecessary
/// backslash escape), so no valid address needs anywhere near this much input
/// unless it is padded with code points that UTS #46 deletes.
pub const MAX_INPUT_LEN: usize = 1024;

/// Why a mail address, local part or domain could not be parsed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The input was empty.
    #[error("the address is empty")]
    Empty,
    /// There was no `@` (outside a quoted string) separating the local part
    /// from the domain.
    #[error("the address has no '@' separating the local part from the domain")]
    MissingAt,
    /// The local part is longer than [`MAX_LOCAL_PART_LEN`] octets.
    ///
    /// `len` is measured on the canonical form, or on its lower-cased form
    /// (which is used as a lookup key) when that is longer, or on the raw
    /// input when it exceeds [`MAX_INPUT_LEN`].
    #[error("the local part is {len} octets long; at most 64 are allowed")]
    LocalPartTooLong {
        /// The measured length in octets.
        len: usize,
    },
    /// The domain is longer than [`MAX_DOMAIN_LEN`] octets in A-label form
    /// (or the raw input exceeds [`MAX_INPUT_LEN`]).
    #[error("the domain is {len} octets long; at most 253 are allowed")]
    DomainTooLong {
        /// The measured length in octets.
        len: usize,
    },
    /// The whole address is longer than [`MAX_ADDRESS_LEN`] octets (or the
    /// raw input exceeds [`MAX_INPUT_LEN`]).
    #[error("the address is {len} octets long; at most 254 are allowed")]
    AddressTooLong {
        /// The measured length in octets.
        len: usize,
    },
    /// A domain label is longer than [`MAX_LABEL_LEN`] octets in A-label form.
    #[error("a domain label is longer than 63 octets")]
    LabelTooLong,
    /// A domain label is empty (leading dot, or two dots in a row).
    #[error("the domain has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel,
    /// The local part is malformed.
    #[error("invalid local part: {reason}")]
    InvalidLocalPart {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The domain is malformed.
    #[error("invalid domain: {reason}")]
    InvalidDomain {
        /// What is wrong, in a few words.
        reason: &'static str,
    },
    /// The domain is an address literal such as `[192.0.2.1]`, which smtpy
    /// never accepts.
    #[error("address literals such as [192.0.2.1] are not supported; a domain name is required")]
    AddressLiteral,
    /// The domain is not a valid internationalised domain name under UTS #46
    /// (for example a malformed `xn--` label, a disallowed code point or a
    /// bidi rule violation).
    #[error("the domain is not a valid internationalised domain name")]
    Idna,
}

// ---------------------------------------------------------------------------
// Character classes

/// RFC 5322 `atext`, ASCII part.
fn is_ascii_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// `atext` extended by RFC 6531: any non-ASCII character that is not a control.
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        is_ascii_atext(c)
    } else {
        !c.is_control()
    }
}

/// RFC 5321 `qtextSMTP` extended by RFC 6531.
fn is_qtext(c: char) -> bool {
    match c {
        ' ' | '!' | '#'..='[' | ']'..='~' => true,
        _ => !c.is_ascii() && !c.is_control(),
    }
}

/// Whether `s` is an RFC 5321 `Dot-string` (with RFC 6531 characters).
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Describes why `s` (unquoted input) is not a dot-string.
fn dot_string_error(s: &str) -> &'static str {
    if s.starts_with('.') {
        return "leading dot";
    }
    if s.ends_with('.') {
        return "trailing dot";
    }
    if s.contains("..") {
        return "two dots in a row";
    }
    for c in s.chars() {
        match c {
            '@' => return "more than one '@' outside a quoted string",
            '"' => return "a quoted string must make up the whole local part",
            c if c.is_control() => return "control character",
            ' ' | '\t' => return "whitespace outside a quoted string",
            c if !is_atext(c) && c != '.' => {
                return "character not allowed outside a quoted string";
            }
            _ => {}
        }
    }
    "malformed dot-string"
}

// ---------------------------------------------------------------------------
// LocalPart

/// The part of a mail address before the `@` (RFC 5321 `Local-part`).
///
/// Stored in canonical text form: unquoted when the content is a valid
/// dot-atom, otherwise as a quoted string in which only `"` and `\` are
/// escaped. Thus `"john.doe"` and `john.doe` are the same local part, and
/// `"a\b"` is stored as `ab`.
///
/// The original letter case is kept: RFC 5321 says a local part MAY be case
/// sensitive, so it is preserved for display and delivery. Equality, hashing
/// and ordering, however, are case-insensitive (Unicode-aware lower-casing),
/// consistent with [`EmailAddress`].
///
/// Non-ASCII local parts are accepted (RFC 6531) but not Unicode-normalised;
/// they need an SMTPUTF8-capable peer.
///
/// `%` and `!` are ordinary characters: `user%other` and `a!b` are opaque
/// names and never interpreted as routing instructions.
#[derive(Clone)]
pub struct LocalPart {
    /// Canonical text (case preserved).
    text: String,
    /// `text` lower-cased: the lookup key.
    folded: String,
}

impl LocalPart {
    /// Parses a local part, either a dot-string (`john.doe`) or a quoted
    /// string (`"john doe"`). The quoted string must make up the whole input.
    ///
    /// # Errors
    ///
    /// [`AddressError::Empty`] for empty input,
    /// [`AddressError::LocalPartTooLong`] when the canonical form (or its
    /// lower-cased form) exceeds [`MAX_LOCAL_PART_LEN`] octets, and
    /// [`AddressError::InvalidLocalPart`] for any syntax error.
    pub fn parse(input: &str) -> Result<LocalPart, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(AddressError::LocalPartTooLong { len: input.len() });
        }
        if input.starts_with('@') {
            return Err(AddressError::InvalidLocalPart {
                reason: "source routes are not supported",
            });
        }
        let text = if let Some(quoted) = input.strip_prefix('"') {
            canonical_from_quoted(quoted)?
        } else if is_dot_string(input) {
            input.to_owned()
        } else {
            return Err(AddressError::InvalidLocalPart {
                reason: dot_string_error(input),
            });
        };
        let folded = text.to_lowercase();
        let len = text.len().max(folded.len());
        if len > MAX_LOCAL_PART_LEN {
            return Err(AddressError::LocalPartTooLong { len });
        }
        Ok(LocalPart { text, folded })
    }

    /// The canonical text of the local part, with its original case.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the local part is pure ASCII. If not, sending to or from it
    /// requires the SMTPUTF8 extension (RFC 6531).
    #[must_use]
    pub fn is_ascii(&self) -> bool {
        self.text.is_ascii()
    }

    /// Whether the canonical form is a quoted string (its content is not a
    /// valid dot-atom).
    #[must_use]
    pub fn is_quoted(&self) -> bool {
        self.text.starts_with('"')
    }

    /// The lower-cased canonical text, used as part of the lookup key.
    fn folded(&self) -> &str {
        &self.folded
    }
}

/// Decodes a quoted string (without its opening quote) and returns the
/// canonical text of the local part.
fn canonical_from_quoted(rest: &str) -> Result<String, AddressError> {
    let mut content = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                closed = true;
                break;
            }
            '\\' => match chars.next() {
                Some(e @ ' '..='~') => content.push(e),
                Some(e) if e.is_control() => {
                    return Err(AddressError::InvalidLocalPart {
                        reason: "control character",
                    });
                }
                Some(_) => {
                    return Err(AddressError::InvalidLocalPart {
                        reason: "a backslash may only escape a printable ASCII character",
                    });
                }
                None => {
                    return Err(AddressError::InvalidLocalPart {
                        reason: "unterminated quoted string",
                    });
                }
            },
            c if is_qtext(c) => content.push(c),
            c if c.is_control() => {
                return Err(AddressError::InvalidLocalPart {
                    reason: "control character",
                });
            }
            _ => {
                return Err(AddressError::InvalidLocalPart {
                    reason: "character not allowed in a quoted string",
                });
            }
        }
    }
    if !closed {
        return Err(AddressError::InvalidLocalPart {
            reason: "unterminated quoted string",
        });
    }
    if !chars.as_str().is_empty() {
        return Err(AddressError::InvalidLocalPart {
            reason: "a quoted string must make up the whole local part",
        });
    }
    if content.is_empty() {
        return Err(AddressError::InvalidLocalPart {
            reason: "empty quoted string",
        });
    }
    if is_dot_string(&content) {
        return Ok(content);
    }
    let mut text = String::with_capacity(content.len() + 2);
    text.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
    Ok(text)
}

impl PartialEq for LocalPart {
    fn eq(&self, other: &Self) -> bool {
        self.folded == other.folded
    }
}

impl Eq for LocalPart {}

impl Hash for LocalPart {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.folded.hash(state);
    }
}

impl PartialOrd for LocalPart {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LocalPart {
    fn cmp(&self, other: &Self) -> Ordering {
        self.folded.cmp(&other.folded)
    }
}

impl fmt::Debug for LocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LocalPart").field(&self.text).finish()
    }
}

impl fmt::Display for LocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LocalPart {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LocalPart::parse(s)
    }
}

// ---------------------------------------------------------------------------
// DomainName

/// A domain name as used in a mail address (never an address literal).
///
/// Parsing accepts U-labels (`bücher.example`), A-labels
/// (`xn--bcher-kva.example`) or a mix, in any case, and applies UTS #46
/// processing (case folding, NFC, width mapping, …) with the STD3 ASCII rules
/// (only letters, digits and hyphens) and no leading or trailing hyphen in a
/// label. Labels with `--` in the third and fourth positions are accepted when
/// they are not `xn--` labels, as RFC 5321's grammar allows; `xn--` labels
/// must be valid Punycode that decodes to a valid label.
///
/// Further rules: labels are 1 to [`MAX_LABEL_LEN`] octets and the whole name
/// at most [`MAX_DOMAIN_LEN`] octets, both measured in A-label form; a
/// trailing dot (the DNS root) is rejected; single-label names such as
/// `localhost` are allowed; the last label must not be all digits, so that a
/// dotted IPv4 address can never pass for a domain name.
///
/// Equality, hashing and ordering use the A-label form
/// ([`as_ascii`](Self::as_ascii)); [`Display`](fmt::Display) and serde use the
/// U-label form ([`as_unicode`](Self::as_unicode)).
#[derive(Clone)]
pub struct DomainName {
    /// Lower-case A-label form.
    ascii: String,
    /// U-label form, as produced by UTS #46 `ToUnicode`.
    unicode: String,
}

/// The UTS #46 processor (data compiled into the binary).
const UTS46: Uts46 = Uts46::new();

/// Checks the structure of an ASCII domain name (case-insensitively).
fn check_ascii_domain(s: &str) -> Result<(), AddressError> {
    if s.is_empty() {
        return Err(AddressError::InvalidDomain {
            reason: "empty domain",
        });
    }
    if s.ends_with('.') {
        return Err(AddressError::InvalidDomain {
            reason: "trailing dot",
        });
    }
    if s.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong { len: s.len() });
    }
    let mut last = "";
    for label in s.split('.') {
        if label.is_empty() {
            return Err(AddressError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(AddressError::LabelTooLong);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(AddressError::InvalidDomain {
                reason: "only letters, digits, hyphens and dots are allowed",
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(AddressError::InvalidDomain {
                reason: "a label may not start or end with a hyphen",
            });
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::InvalidDomain {
            reason: "the last label may not be all digits",
        });
    }
    Ok(())
}

impl DomainName {
    /// Parses a domain name given in A-label or U-label form, in any case.
    ///
    /// # Errors
    ///
    /// [`AddressError::Empty`] for empty input, [`AddressError::AddressLiteral`]
    /// for `[...]` literals, [`AddressError::DomainTooLong`],
    /// [`AddressError::LabelTooLong`], [`AddressError::EmptyLabel`],
    /// [`AddressError::InvalidDomain`] for syntax errors (including a trailing
    /// dot) and [`AddressError::Idna`] when UTS #46 processing fails.
    pub fn parse(input: &str) -> Result<DomainName, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(AddressError::DomainTooLong { len: input.len() });
        }
        if input.starts_with('[') {
            return Err(AddressError::AddressLiteral);
        }
        // Cheap structural checks first, for precise errors and so that
        // obviously bad input never reaches IDNA processing.
        if input.is_ascii() {
            check_ascii_domain(input)?;
        } else {
            if input.ends_with('.') {
                return Err(AddressError::InvalidDomain {
                    reason: "trailing dot",
                });
            }
            if input.split('.').any(str::is_empty) {
                return Err(AddressError::EmptyLabel);
            }
            if input.chars().any(char::is_control) {
                return Err(AddressError::InvalidDomain {
                    reason: "control character",
                });
            }
        }
        let ascii = UTS46
            .to_ascii(
                input.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Ignore,
            )
            .map_err(|_| AddressError::Idna)?
            .into_owned();
        // UTS #46 may have mapped characters (e.g. U+3002 to '.'), so check
        // the result again.
        check_ascii_domain(&ascii)?;
        let (unicode, result) = UTS46.to_unicode(
            ascii.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
        );
        result.map_err(|_| AddressError::Idna)?;
        // Guarantee that the display form parses back to the same name.
        let again = UTS46
            .to_ascii(
                unicode.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Ignore,
            )
            .map_err(|_| AddressError::Idna)?;
        if again != ascii {
            return Err(AddressError::Idna);
        }
        let unicode = unicode.into_owned();
        Ok(DomainName { ascii, unicode })
    }

    /// The lower-case A-label form, e.g. `xn--bcher-kva.example`. This is the
    /// canonical lookup key and the form to use on the wire and in DNS.
    #[must_use]
    pub fn as_ascii(&self) -> &str {
        &self.ascii
    }

    /// The U-label form, e.g. `bücher.example`, for display.
    #[must_use]
    pub fn as_unicode(&self) -> &str {
        &self.unicode
    }

    /// Whether `self` is `parent` or lies below it, comparing whole labels:
    /// `mail.example.com` and `example.com` are both within `example.com`,
    /// while `badexample.com` is not.
    ///
    /// Following RFC 8499's definition, a domain counts as a subdomain of
    /// itself. This is a plain label-suffix test; it knows nothing about
    /// public suffixes or zone cuts.
    #[must_use]
    pub fn is_subdomain_of(&self, parent: &DomainName) -> bool {
        self.ascii
            .strip_suffix(parent.ascii.as_str())
            .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.'))
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        self.ascii == other.ascii
    }
}

impl Eq for DomainName {}

impl Hash for DomainName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ascii.hash(state);
    }
}

impl PartialOrd for DomainName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DomainName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ascii.cmp(&other.ascii)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DomainName").field(&self.ascii).finish()
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unicode)
    }
}

impl FromStr for DomainName {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::parse(s)
    }
}

// ---------------------------------------------------------------------------
// EmailAddress

/// A mail address, `local@domain` (RFC 5321 `Mailbox`, RFC 6531 extended),
/// with a domain name (never an address literal).
///
/// # Case and comparison
///
/// RFC 5321 says the local part MAY be case-sensitive. smtpy treats its own
/// aliases case-insensitively: equality, hashing and ordering are defined on
/// [`canonical`](Self::canonical) — the local part lower-cased
/// (Unicode-aware) plus the A-label domain — so `A@Example.COM` equals
/// `a@example.com`, and `"a"@example.com` equals `a@example.com`. The
/// original case of the local part is kept for display and for delivery to a
/// mailbox, where the receiving system decides.
///
/// # Forms
///
/// * [`Display`](fmt::Display) and serde: `local@U-label`, the human form.
/// * [`to_ascii_string`](Self::to_ascii_string): `local@A-label`, for the wire.
/// * [`canonical`](Self::canonical): the lookup key.
///
/// The local part is never interpreted: `user%other@example.com` and
/// `a!b@example.com` are plain addresses, not routing instructions.
#[derive(Clone)]
pub struct EmailAddress {
    local: LocalPart,
    domain: DomainName,
}

impl EmailAddress {
    /// Parses `local@domain`, with no angle brackets and no display name.
    ///
    /// The input is split at the last `@` outside a quoted string, so
    /// `"a@b"@example.com` is valid while `a@b@example.com` is not.
    ///
    /// # Errors
    ///
    /// [`AddressError::Empty`], [`AddressError::MissingAt`],
    /// [`AddressError::AddressTooLong`], or any error from
    /// [`LocalPart::parse`] or [`DomainName::parse`] (an empty local part or
    /// domain is reported as [`AddressError::InvalidLocalPart`] or
    /// [`AddressError::InvalidDomain`]).
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(AddressError::AddressTooLong { len: input.len() });
        }
        let at = split_position(input)?;
        let (local, domain) = match (input.get(..at), input.get(at + 1..)) {
            (Some(l), Some(d)) => (l, d),
            _ => return Err(AddressError::MissingAt),
        };
        if local.is_empty() {
            return Err(AddressError::InvalidLocalPart {
                reason: "empty local part",
            });
        }
        if domain.is_empty() {
            return Err(AddressError::InvalidDomain {
                reason: "empty domain",
            });
        }
        let local = LocalPart::parse(local)?;
        let domain = DomainName::parse(domain)?;
        EmailAddress::new(local, domain)
    }

    /// Builds an address from already-parsed parts, checking the total length.
    ///
    /// # Errors
    ///
    /// [`AddressError::AddressTooLong`] when `local@A-label-domain` (or its
    /// lower-cased form) exceeds [`MAX_ADDRESS_LEN`] octets.
    pub fn new(local: LocalPart, domain: DomainName) -> Result<EmailAddress, AddressError> {
        let local_len = local.text.len().max(local.folded.len());
        let len = local_len + 1 + domain.ascii.len();
        if len > MAX_ADDRESS_LEN {
            return Err(AddressError::AddressTooLong { len });
        }
        Ok(EmailAddress { local, domain })
    }

    /// The local part (before the `@`).
    #[must_use]
    pub fn local_part(&self) -> &LocalPart {
        &self.local
    }

    /// The domain (after the `@`).
    #[must_use]
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The lookup key: the local part lower-cased (Unicode-aware
    /// [`str::to_lowercase`]), `@`, and the A-label domain, e.g.
    /// `john.doe@xn--bcher-kva.example`.
    ///
    /// Parsing the key yields an equal address with the same key.
    #[must_use]
    pub fn canonical(&self) -> String {
        let mut key = String::with_capacity(self.local.folded.len() + 1 + self.domain.ascii.len());
        key.push_str(self.local.folded());
        key.push('@');
        key.push_str(&self.domain.ascii);
        key
    }

    /// `local@A-label-domain`, suitable for a plain SMTP session; `None` when
    /// the local part is non-ASCII and so needs SMTPUTF8.
    #[must_use]
    pub fn to_ascii_string(&self) -> Option<String> {
        if self.local.is_ascii() {
            Some(format!("{}@{}", self.local.text, self.domain.ascii))
        } else {
            None
        }
    }

    /// Whether the SMTPUTF8 extension (RFC 6531) is needed to send to or from
    /// this address, i.e. whether the local part is non-ASCII. An
    /// internationalised domain alone does not need it: its A-label form is
    /// used instead.
    #[must_use]
    pub fn requires_smtputf8(&self) -> bool {
        !self.local.is_ascii()
    }

    /// The bytes of the canonical key, without allocating.
    fn key_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.local
            .folded
            .bytes()
            .chain(std::iter::once(b'@'))
            .chain(self.domain.ascii.bytes())
    }
}

/// Finds the last `@` outside a quoted string.
fn split_position(input: &str) -> Result<usize, AddressError> {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut last_at = None;
    for (i, c) in input.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '@' {
            last_at = Some(i);
        }
    }
    match last_at {
        Some(i) => Ok(i),
        None if in_quotes => Err(AddressError::InvalidLocalPart {
            reason: "unterminated quoted string",
        }),
        None => Err(AddressError::MissingAt),
    }
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.local.folded == other.local.folded && self.domain.ascii == other.domain.ascii
    }
}

impl Eq for EmailAddress {}

impl Hash for EmailAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `Eq`: the domain never contains '@', so the pair
        // determines the canonical key and vice versa.
        self.local.folded.hash(state);
        self.domain.ascii.hash(state);
    }
}

impl PartialOrd for EmailAddress {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EmailAddress {
    /// Orders by the bytes of [`canonical`](EmailAddress::canonical).
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_bytes().cmp(other.key_bytes())
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = format!("{}@{}", self.local.text, self.domain.ascii);
        f.debug_tuple("EmailAddress").field(&wire).finish()
    }
}

impl fmt::Display for EmailAddress {
    /// `local@U-label`, the human form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local.text, self.domain.unicode)
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmailAddress::parse(s)
    }
}

// ---------------------------------------------------------------------------
// serde: the display form out, parsing in.

macro_rules! serde_via_display {
    ($ty:ident, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        $ty::parse(v).map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

serde_via_display!(EmailAddress, "a mail address such as user@example.com");
serde_via_display!(DomainName, "a domain name such as example.com");
serde_via_display!(LocalPart, "the local part of a mail address");
