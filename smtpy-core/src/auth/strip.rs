//! Removing `Authentication-Results` fields that claim to be ours.

use std::borrow::Cow;

use crate::forward::{HeaderField, header_fields};

/// Where `part` (a sub-slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// Skips whitespace (folding included) and RFC 5322 comments, which may
/// nest; returns the rest.
fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        match s.first() {
            Some(b' ' | b'\t' | b'\r' | b'\n') => s = &s[1..],
            Some(b'(') => {
                let mut depth = 0usize;
                let mut i = 0;
                while i < s.len() {
                    match s[i] {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                s = s.get(i + 1..).unwrap_or_default();
            }
            _ => return s,
        }
    }
}

/// The authserv-id at the start of an `Authentication-Results` value: a
/// token or a quoted string, after any CFWS.
fn authserv_id(value: &[u8]) -> Vec<u8> {
    let value = skip_cfws(value);
    if let Some(quoted) = value.strip_prefix(b"\"") {
        let mut id = Vec::new();
        let mut chars = quoted.iter();
        while let Some(&c) = chars.next() {
            match c {
                b'"' => break,
                b'\\' => id.extend(chars.next()),
                b'\r' | b'\n' => {}
                _ => id.push(c),
            }
        }
        return id;
    }
    value
        .iter()
        .take_while(|&&c| !matches!(c, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n'))
        .copied()
        .collect()
}

fn claims_to_be(field: &HeaderField<'_>, ours: &[u8]) -> bool {
    if !field.is("Authentication-Results") {
        return false;
    }
    let id = authserv_id(field.value);
    let id = id.strip_suffix(b".").unwrap_or(&id);
    !id.is_empty() && id.eq_ignore_ascii_case(ours)
}

/// Removes every `Authentication-Results` field of the header block whose
/// authserv-id is `authserv_id` (ASCII case-insensitive, a trailing dot
/// ignored, comments and folding before it skipped, a quoted form
/// unquoted), continuation lines included. Such fields can only be forged:
/// we add ours after this. Other fields — including other hosts'
/// `Authentication-Results` and every `ARC-Authentication-Results` — and
/// the body are kept byte for byte; without a match the message is returned
/// borrowed.
///
/// The header block is the one [`header_fields`] sees.
///
/// ```
/// use smtpy_core::auth::strip_forged_results;
///
/// let message = b"Authentication-Results: MX.alias.example;\r\n\tspf=pass\r\n\
///                 Authentication-Results: mx.other.example; dkim=pass\r\n\
///                 Subject: hi\r\n\r\nbody\r\n";
/// let stripped = strip_forged_results(message, "mx.alias.example");
/// assert_eq!(
///     &stripped[..],
///     &b"Authentication-Results: mx.other.example; dkim=pass\r\nSubject: hi\r\n\r\nbody\r\n"[..]
/// );
/// ```
#[must_use]
pub fn strip_forged_results<'m>(message: &'m [u8], authserv_id: &str) -> Cow<'m, [u8]> {
    let ours = authserv_id.trim().trim_end_matches('.').as_bytes();
    if ours.is_empty() {
        return Cow::Borrowed(message);
    }
    // Byte ranges of the fields to remove, line breaks included.
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for field in header_fields(message) {
        if !claims_to_be(&field, ours) {
            continue;
        }
        let start = offset_in(message, field.name);
        let mut end = offset_in(message, field.value) + field.value.len();
        let rest = message.get(end..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            end += 2;
        } else if rest.starts_with(b"\n") {
            end += 1;
        }
        cuts.push((start, end.min(message.len())));
    }
    if cuts.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut kept = Vec::with_capacity(message.len());
    let mut from = 0;
    for (start, end) in cuts {
        kept.extend_from_slice(message.get(from..start).unwrap_or_default());
        from = end;
    }
    kept.extend_from_slice(message.get(from..).unwrap_or_default());
    Cow::Owned(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authserv_id_forms() {
        assert_eq!(authserv_id(b" mx.example; spf=pass"), b"mx.example");
        assert_eq!(authserv_id(b"\r\n\tmx.example 1; none"), b"mx.example");
        assert_eq!(
            authserv_id(b" (a (nested) comment) mx.example;"),
            b"mx.example"
        );
        assert_eq!(authserv_id(b" \"mx.\\example\"; none"), b"mx.example");
        assert_eq!(authserv_id(b" (unterminated"), b"");
        assert_eq!(authserv_id(b""), b"");
    }

    #[test]
    fn nothing_to_strip_borrows() {
        let m = b"Subject: x\r\n\r\nAuthentication-Results: mx.example; none\r\n";
        assert!(matches!(
            strip_forged_results(m, "mx.example"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(strip_forged_results(m, ""), Cow::Borrowed(_)));
    }

    #[test]
    fn bare_lf_and_last_line_without_break() {
        let m = b"A: 1\nauthentication-results: mx.example.;\n spf=fail\nB: 2\n\nbody";
        assert_eq!(
            &strip_forged_results(m, "MX.example")[..],
            b"A: 1\nB: 2\n\nbody"
        );
        let m = b"A: 1\r\nAuthentication-Results: mx.example; none";
        assert_eq!(&strip_forged_results(m, "mx.example")[..], b"A: 1\r\n");
    }
}
