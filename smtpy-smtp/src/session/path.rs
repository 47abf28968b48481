//! Reverse and forward paths: from the bytes between the angle brackets of
//! `MAIL FROM:<…>` / `RCPT TO:<…>` to smtpy's [`EmailAddress`].
//!
//! smtp-proto validates the command's syntax and parameters; the path itself
//! is taken from the raw line here, because smtp-proto drops the quotes of a
//! quoted local part and reports `<postmaster>` and `<>` alike.

use smtpy_core::address::EmailAddress;
use smtpy_core::reply::Reply;

use super::event::ForwardPath;
use super::replies;

/// The bytes between the first `<` of `line` and its matching `>` (a `>`
/// inside a quoted string does not count). `None` when there is none.
pub(crate) fn bracketed(line: &[u8]) -> Option<&[u8]> {
    let open = line.iter().position(|&b| b == b'<')?;
    let rest = line.get(open + 1..)?;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in rest.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote => escaped = true,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => return rest.get(..i),
            _ => {}
        }
    }
    None
}

/// Parses a reverse path (MAIL FROM). `Ok(None)` is the null path `<>`.
///
/// # Errors
///
/// `553 5.6.7` for a non-ASCII path without `SMTPUTF8`, `553 5.1.7` for
/// anything [`EmailAddress::parse`] refuses (after removing a source route).
pub(crate) fn reverse_path(raw: &[u8], smtputf8: bool) -> Result<Option<EmailAddress>, Reply> {
    let text = std::str::from_utf8(raw).map_err(|_| replies::BAD_SENDER)?;
    if text.is_empty() {
        return Ok(None);
    }
    if !text.is_ascii() && !smtputf8 {
        return Err(replies::NON_ASCII_ADDRESS);
    }
    EmailAddress::parse(strip_source_route(text))
        .map(Some)
        .map_err(|_| replies::BAD_SENDER)
}

/// Parses a forward path (RCPT TO).
///
/// # Errors
///
/// `553 5.6.7` for a non-ASCII path without `SMTPUTF8`, and
/// [`Reply::BAD_ADDRESS`] (`553 5.1.3`) for an empty path or anything
/// [`EmailAddress::parse`] refuses.
pub(crate) fn forward_path(raw: &[u8], smtputf8: bool) -> Result<ForwardPath, Reply> {
    let text = std::str::from_utf8(raw).map_err(|_| Reply::BAD_ADDRESS)?;
    let text = strip_source_route(text);
    if text.eq_ignore_ascii_case("postmaster") {
        return Ok(ForwardPath::Postmaster);
    }
    if text.is_empty() {
        return Err(Reply::BAD_ADDRESS);
    }
    if !text.is_ascii() && !smtputf8 {
        return Err(replies::NON_ASCII_ADDRESS);
    }
    EmailAddress::parse(text)
        .map(ForwardPath::Mailbox)
        .map_err(|_| Reply::BAD_ADDRESS)
}

/// Removes an RFC 5321 source route (`@relay1,@relay2:user@example.com`),
/// which servers must accept and ignore (§3.3, §4.1.2).
fn strip_source_route(text: &str) -> &str {
    if text.starts_with('@')
        && let Some((_, mailbox)) = text.split_once(':')
    {
        return mailbox;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_respects_quotes() {
        assert_eq!(
            bracketed(b"RCPT TO:<\"a>b\"@x.example> X"),
            Some(&b"\"a>b\"@x.example"[..])
        );
        assert_eq!(bracketed(b"MAIL FROM:<>\r\n"), Some(&b""[..]));
        assert_eq!(bracketed(b"MAIL FROM:<a@b"), None);
        assert_eq!(bracketed(b"MAIL FROM:a@b"), None);
    }

    #[test]
    fn forward_paths() {
        assert_eq!(
            forward_path(b"PostMaster", false),
            Ok(ForwardPath::Postmaster)
        );
        assert_eq!(forward_path(b"", false), Err(Reply::BAD_ADDRESS));
        assert_eq!(forward_path(b"nodomain", false), Err(Reply::BAD_ADDRESS));
        assert!(matches!(
            forward_path(b"@relay.example:user@alias.example", false),
            Ok(ForwardPath::Mailbox(a)) if a.canonical() == "user@alias.example"
        ));
        assert_eq!(
            forward_path("jos\u{e9}@alias.example".as_bytes(), false),
            Err(replies::NON_ASCII_ADDRESS)
        );
        assert!(forward_path("jos\u{e9}@alias.example".as_bytes(), true).is_ok());
        assert!(matches!(
            forward_path(b"\"john doe\"@alias.example", false),
            Ok(ForwardPath::Mailbox(_))
        ));
    }

    #[test]
    fn reverse_paths() {
        assert_eq!(reverse_path(b"", false), Ok(None));
        assert_eq!(reverse_path(b"postmaster", false), Err(replies::BAD_SENDER));
        assert!(matches!(
            reverse_path(b"bob@example.org", false),
            Ok(Some(_))
        ));
        assert_eq!(
            reverse_path(b"\xff@x.example", true),
            Err(replies::BAD_SENDER)
        );
    }
}
