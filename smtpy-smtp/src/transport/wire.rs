//! Small pieces of the SMTP client wire format: the DATA transparency
//! procedure, reply conversion and address formatting.

use smtp_proto::Response;
use smtpy_core::address::EmailAddress;
use smtpy_core::model::RemoteReply;
use smtpy_core::transport::DeliveryOutcome;

/// The transparency procedure of RFC 5321 §4.5.2, applied chunk by chunk:
/// a `.` that starts a line is doubled. "Starts a line" means the first
/// byte of the message or a byte after CR or LF, so a bare CR or LF
/// (which the queue never holds) cannot smuggle an end of data either.
#[derive(Debug, Default)]
pub(crate) struct DotStuffer {
    /// The last two bytes seen (`None` before the first byte).
    last: [Option<u8>; 2],
}

impl DotStuffer {
    /// Appends the stuffed form of `input` to `out`.
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        for (i, &byte) in input.iter().enumerate() {
            if byte == b'.' && matches!(self.last[1], None | Some(b'\r' | b'\n')) {
                out.extend_from_slice(&input[start..i]);
                out.push(b'.');
                start = i;
            }
            self.last = [self.last[1], Some(byte)];
        }
        out.extend_from_slice(&input[start..]);
    }

    /// Appends the end of data: the message's last line is terminated with
    /// CRLF when it is not already (an empty message has no line), then
    /// `.CRLF`.
    pub(crate) fn finish(&self, out: &mut Vec<u8>) {
        match self.last {
            [_, None] | [Some(b'\r'), Some(b'\n')] => {}
            _ => out.extend_from_slice(b"\r\n"),
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The address as it goes into `MAIL FROM:<…>` / `RCPT TO:<…>`: the
/// A-label domain, and the local part as is (non-ASCII only when the
/// session uses SMTPUTF8).
pub(crate) fn wire_address(address: &EmailAddress) -> String {
    address.to_ascii_string().unwrap_or_else(|| {
        format!(
            "{}@{}",
            address.local_part().as_str(),
            address.domain().as_ascii()
        )
    })
}

/// A server reply in the queue's terms.
pub(crate) fn remote_reply(reply: &Response<String>) -> RemoteReply {
    let [class, subject, detail] = reply.esc;
    RemoteReply {
        code: reply.code,
        enhanced: (class != 0).then(|| format!("{class}.{subject}.{detail}")),
        text: reply.message.clone(),
    }
}

/// The outcome a final reply (RCPT, end of DATA) means: 2xx delivered, 5xx
/// permanent, anything else temporary.
pub(crate) fn outcome_of(reply: &Response<String>) -> DeliveryOutcome {
    match reply.code / 100 {
        2 => DeliveryOutcome::Delivered(Some(remote_reply(reply))),
        5 => DeliveryOutcome::Permanent(remote_reply(reply)),
        _ => DeliveryOutcome::Temporary(remote_reply(reply)),
    }
}

/// The outcome a negative reply means (MAIL FROM, DATA): 5xx permanent,
/// anything else (including an unexpected 2xx / 3xx) temporary.
pub(crate) fn failure_of(reply: &Response<String>) -> DeliveryOutcome {
    match reply.code / 100 {
        5 => DeliveryOutcome::Permanent(remote_reply(reply)),
        _ => DeliveryOutcome::Temporary(remote_reply(reply)),
    }
}

/// A locally made reply.
pub(crate) fn local_reply(code: u16, enhanced: &str, text: impl Into<String>) -> RemoteReply {
    RemoteReply {
        code,
        enhanced: Some(enhanced.to_owned()),
        text: text.into(),
    }
}

/// A reply for logs and local failure texts: `code text`.
pub(crate) fn reply_text(reply: &Response<String>) -> String {
    remote_reply(reply).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            stuffer.push(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    #[test]
    fn leading_dots_are_doubled_and_the_end_marker_added_once() {
        assert_eq!(
            stuff(&[b"A: b\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n"]),
            b"A: b\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\n.\r\n"
        );
    }

    #[test]
    fn the_first_line_is_stuffed_too() {
        assert_eq!(stuff(&[b".\r\n"]), b"..\r\n.\r\n");
    }

    #[test]
    fn a_missing_final_crlf_is_added() {
        assert_eq!(
            stuff(&[b"A: b\r\n\r\nno newline"]),
            b"A: b\r\n\r\nno newline\r\n.\r\n"
        );
        assert_eq!(stuff(&[b""]), b".\r\n");
    }

    #[test]
    fn dots_after_bare_cr_or_lf_are_stuffed() {
        assert_eq!(stuff(&[b"a\r.b\n.c\r\n"]), b"a\r..b\n..c\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let message = b"x\r\n.y\r\n..\r\n.\r\nz\r\n";
        let whole = stuff(&[message]);
        for split in 0..message.len() {
            let (a, b) = message.split_at(split);
            assert_eq!(stuff(&[a, b]), whole, "split at {split}");
        }
    }

    #[test]
    fn enhanced_status_is_kept() {
        let reply = Response {
            code: 550,
            esc: [5, 1, 1],
            message: "no such user".to_owned(),
        };
        let remote = remote_reply(&reply);
        assert_eq!(remote.enhanced.as_deref(), Some("5.1.1"));
        assert!(matches!(outcome_of(&reply), DeliveryOutcome::Permanent(_)));
        let reply = Response {
            code: 250,
            esc: [0, 0, 0],
            message: "ok".to_owned(),
        };
        assert_eq!(remote_reply(&reply).enhanced, None);
        assert!(matches!(failure_of(&reply), DeliveryOutcome::Temporary(_)));
    }
}
