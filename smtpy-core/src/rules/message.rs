//! What rules read from a message's bytes, parsed once with `mail-parser`
//! and bounded.

use mail_parser::{HeaderName, MessageParser};

use super::condition::cap;
use super::{
    MAX_HEADER_BLOCK, MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_MIME_BYTES, MAX_VALUE_BYTES,
};
use crate::forward::header_block;

/// The parts of a message rules look at; [`MessageFacts::new`](super::MessageFacts::new)
/// borrows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMessage {
    /// The bare address of the first mailbox of the header `From`.
    pub header_from: Option<String>,
    /// The first `Subject`, decoded (RFC 2047) and unfolded.
    pub subject: Option<String>,
    /// Header fields in order: name as written, value decoded and unfolded.
    /// At most [`MAX_HEADER_FIELDS`] fields, each value cut at
    /// [`MAX_VALUE_BYTES`], [`MAX_HEADER_BYTES`] of values in total.
    pub headers: Vec<(String, String)>,
    /// Whether the MIME structure has an attachment (a part that is not a
    /// text or HTML body, as `mail-parser` counts them).
    pub has_attachment: bool,
}

impl ParsedMessage {
    /// Parses a whole message, or only its header block (then
    /// `has_attachment` is false).
    ///
    /// Never fails: malformed input (invalid UTF-8, broken MIME, no header
    /// block at all) yields whatever could be read, possibly nothing. Reads
    /// at most [`MAX_HEADER_BLOCK`] bytes of header block and parses at most
    /// [`MAX_MIME_BYTES`] bytes as MIME for the attachment test.
    ///
    /// ```
    /// use smtpy_core::rules::ParsedMessage;
    ///
    /// let parsed = ParsedMessage::parse(
    ///     b"From: \"Ann\" <ann@example.com>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n  now\r\nX-Tag: a\r\n\r\nbody\r\n",
    /// );
    /// assert_eq!(parsed.header_from.as_deref(), Some("ann@example.com"));
    /// assert_eq!(parsed.subject.as_deref(), Some("café now"));
    /// assert!(parsed.headers.contains(&("X-Tag".to_owned(), "a".to_owned())));
    /// assert!(!parsed.has_attachment);
    /// ```
    #[must_use]
    pub fn parse(raw: &[u8]) -> ParsedMessage {
        let block = header_block(&raw[..raw.len().min(MAX_HEADER_BLOCK)]);
        let mut parsed = ParsedMessage::default();
        if block.is_empty() {
            return parsed;
        }

        // Every field as decoded, unfolded text.
        let text = MessageParser::new()
            .header_text(HeaderName::Subject)
            .default_header_text();
        if let Some(message) = text.parse_headers(block) {
            let mut budget = MAX_HEADER_BYTES;
            for header in message.headers().iter().take(MAX_HEADER_FIELDS) {
                let value = header.value().as_text().unwrap_or("").trim();
                if parsed.subject.is_none() && header.name().eq_ignore_ascii_case("subject") {
                    parsed.subject = Some(cap(value, MAX_VALUE_BYTES).to_owned());
                }
                if budget > 0 {
                    let value = cap(value, MAX_VALUE_BYTES.min(budget));
                    budget -= value.len();
                    parsed
                        .headers
                        .push((header.name().to_owned(), value.to_owned()));
                }
            }
        }

        // The From address, with the address parser.
        let from = MessageParser::new()
            .header_address(HeaderName::From)
            .default_header_ignore();
        parsed.header_from = from.parse_headers(block).and_then(|message| {
            let address = message.from()?.first()?.address()?.trim();
            (!address.is_empty()).then(|| cap(address, MAX_VALUE_BYTES).to_owned())
        });

        // Attachments need the MIME structure, so the body.
        if block.len() < raw.len() {
            let mime = &raw[..raw.len().min(MAX_MIME_BYTES)];
            parsed.has_attachment = MessageParser::new()
                .parse(mime)
                .is_some_and(|m| m.attachment_count() > 0);
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_input_yields_a_safe_result() {
        for raw in [
            &b""[..],
            b"\r\n\r\nbody only",
            b"\xff\xfe: \xff\r\n\r\n",
            b"From: <<<@@@>>>\r\nSubject:\r\n",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x",
        ] {
            let parsed = ParsedMessage::parse(raw);
            assert!(parsed.headers.len() <= MAX_HEADER_FIELDS);
        }
        // Invalid UTF-8 in values is read lossily.
        let parsed = ParsedMessage::parse(b"X-Bin: \xff\xfe\r\nSubject: \xe9t\xe9\r\n\r\n");
        assert_eq!(parsed.subject.as_deref(), Some("\u{fffd}t\u{fffd}"));
        assert_eq!(parsed.headers.len(), 2);
        // A line that is not a field ends the header block, as everywhere in smtpy.
        let parsed = ParsedMessage::parse(b"\xff\xfe: x\r\nSubject: hi\r\n\r\n");
        assert_eq!(parsed, ParsedMessage::default());
    }

    #[test]
    fn huge_header_block_is_bounded() {
        let mut raw = Vec::new();
        for i in 0..20_000 {
            raw.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "j".repeat(100)).as_bytes());
        }
        raw.extend_from_slice(b"Subject: late\r\n\r\nbody\r\n");
        let parsed = ParsedMessage::parse(&raw);
        assert_eq!(parsed.headers.len(), MAX_HEADER_FIELDS);
        assert_eq!(parsed.subject, None, "beyond the header block limit");
        let total: usize = parsed.headers.iter().map(|(_, v)| v.len()).sum();
        assert!(total <= MAX_HEADER_BYTES);
    }

    #[test]
    fn attachment_is_found_in_the_body() {
        let raw = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let parsed = ParsedMessage::parse(raw);
        assert!(parsed.has_attachment);
        // The header block alone cannot tell.
        let block = header_block(raw);
        assert!(!ParsedMessage::parse(block).has_attachment);
    }

    #[test]
    fn from_group_and_display_names() {
        let parsed =
            ParsedMessage::parse(b"From: Team: Bob <bob@example.org>, c@example.org;\r\n\r\n");
        assert_eq!(parsed.header_from.as_deref(), Some("bob@example.org"));
        let parsed = ParsedMessage::parse(b"From: undisclosed-recipients:;\r\n\r\n");
        assert_eq!(parsed.header_from, None);
    }
}
