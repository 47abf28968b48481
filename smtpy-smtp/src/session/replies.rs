//! The replies the session decides by itself, and their wire encoding.
//!
//! Every reply carries an enhanced status code (RFC 2034, RFC 3463) except
//! the three RFC 2034 §3 and RFC 5321 exclude: the `220` greeting and the
//! `EHLO`/`HELO` replies (their first word must be the server's name and the
//! EHLO lines must be extension keywords), and the `354` intermediate reply
//! (there is no class-3 enhanced code).

use std::borrow::Cow;

use smtpy_core::reply::Reply;

pub(crate) const OK: Reply = Reply::new(250, (2, 0, 0), "OK");
pub(crate) const SENDER_OK: Reply = Reply::new(250, (2, 1, 0), "Sender OK");
pub(crate) const POSTMASTER_OK: Reply = Reply::new(250, (2, 1, 5), "Postmaster OK");
pub(crate) const HELP: Reply = Reply::new(
    214,
    (2, 0, 0),
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP HELP QUIT VRFY STARTTLS",
);
pub(crate) const VRFY: Reply = Reply::new(
    252,
    (2, 5, 2),
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub(crate) const BYE: Reply = Reply::new(221, (2, 0, 0), "Bye");
pub(crate) const TLS_GO_AHEAD: Reply = Reply::new(220, (2, 0, 0), "Ready to start TLS");
pub(crate) const START_DATA: &[u8] = b"354 Start mail input; end with <CRLF>.<CRLF>\r\n";

pub(crate) const UNKNOWN_COMMAND: Reply = Reply::new(500, (5, 5, 2), "Command unrecognized");
pub(crate) const BARE_CR: Reply = Reply::new(500, (5, 5, 2), "Bare CR in command line");
pub(crate) const LINE_TOO_LONG: Reply = Reply::new(500, (5, 5, 6), "Line too long");
pub(crate) const NO_ARGUMENTS: Reply =
    Reply::new(501, (5, 5, 4), "This command takes no arguments");
pub(crate) const NOT_IMPLEMENTED: Reply = Reply::new(502, (5, 5, 1), "Command not implemented");
pub(crate) const TLS_NOT_AVAILABLE: Reply = Reply::new(502, (5, 5, 1), "STARTTLS not available");
pub(crate) const NEED_HELO: Reply = Reply::new(503, (5, 5, 1), "Send EHLO or HELO first");
pub(crate) const NEED_MAIL: Reply = Reply::new(503, (5, 5, 1), "Send MAIL first");
pub(crate) const NESTED_MAIL: Reply = Reply::new(503, (5, 5, 1), "Sender already specified");
pub(crate) const RCPT_AFTER_BDAT: Reply = Reply::new(503, (5, 5, 1), "RCPT not allowed after BDAT");
pub(crate) const DATA_AFTER_BDAT: Reply = Reply::new(503, (5, 5, 1), "DATA not allowed after BDAT");
pub(crate) const TLS_ACTIVE: Reply = Reply::new(503, (5, 5, 1), "TLS already active");
pub(crate) const NO_VALID_RECIPIENTS: Reply = Reply::new(554, (5, 5, 1), "No valid recipients");
pub(crate) const PARAMS_NEED_EHLO: Reply = Reply::new(555, (5, 5, 4), "Parameters require EHLO");
pub(crate) const BINARYMIME: Reply = Reply::new(555, (5, 5, 4), "BODY=BINARYMIME not supported");
pub(crate) const BAD_SENDER: Reply = Reply::new(553, (5, 1, 7), "Invalid sender address");
pub(crate) const NON_ASCII_ADDRESS: Reply = Reply::new(
    553,
    (5, 6, 7),
    "Non-ASCII address requires the SMTPUTF8 parameter",
);
pub(crate) const BAD_BDAT: Reply = Reply::new(
    501,
    (5, 5, 4),
    "Syntax: BDAT chunk-size [LAST]; closing connection",
);
pub(crate) const TOO_BIG: Reply = Reply::new(
    552,
    (5, 3, 4),
    "Message size exceeds fixed maximum message size",
);
pub(crate) const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, (4, 5, 3), "Too many recipients");
pub(crate) const TOO_MANY_ERRORS: Reply =
    Reply::new(421, (4, 7, 0), "Too many errors, closing connection");
pub(crate) const TOO_MANY_MESSAGES: Reply = Reply::new(
    421,
    (4, 7, 0),
    "Too many messages on this connection, reconnect",
);
pub(crate) const TOO_MUCH_PIPELINING: Reply = Reply::new(
    421,
    (4, 7, 0),
    "Too much pipelined input, closing connection",
);
pub(crate) const EARLY_TALKER: Reply = Reply::new(
    554,
    (5, 5, 0),
    "Protocol violation: client sent data before the greeting",
);
pub(crate) const DATA_SYNC_ERROR: Reply = Reply::new(
    554,
    (5, 5, 0),
    "Synchronization error: input sent before the reply to DATA",
);
pub(crate) const COMMAND_TIMEOUT: Reply =
    Reply::new(421, (4, 4, 2), "Timeout exceeded, closing connection");
pub(crate) const SESSION_TIMEOUT: Reply =
    Reply::new(421, (4, 4, 2), "Connection time limit exceeded");
pub(crate) const DATA_RATE_TIMEOUT: Reply =
    Reply::new(421, (4, 4, 2), "Data transfer too slow, closing connection");
pub(crate) const SHUTDOWN: Reply = Reply::new(421, (4, 3, 2), "Service shutting down");
pub(crate) const LOCAL_ERROR: Reply =
    Reply::new(451, (4, 3, 0), "Temporary local problem, try again later");

/// `250 2.0.0 <n> octets received` for a non-final BDAT chunk.
pub(crate) fn chunk_received(octets: usize) -> Reply {
    Reply::with_text(250, (2, 0, 0), format!("{octets} octets received"))
}

/// `555 5.5.4` naming the parameter that is not supported.
pub(crate) fn unsupported_parameter(param: &str) -> Reply {
    Reply::with_text(
        555,
        (5, 5, 4),
        format!("Unsupported parameter {}", printable(param)),
    )
}

/// `501 5.5.4` with the expected syntax or the invalid parameter.
pub(crate) fn syntax_error(what: &str) -> Reply {
    Reply::with_text(501, (5, 5, 4), format!("Syntax error: {what}"))
}

/// Makes a reply that came from the driver safe to send: a code outside
/// 200–599 becomes `451 4.3.0`, and the enhanced class follows the code.
pub(crate) fn from_driver(reply: Reply) -> Reply {
    if !(200..600).contains(&reply.code) || (300..400).contains(&reply.code) {
        return LOCAL_ERROR;
    }
    let class = (reply.code / 100) as u8;
    let (_, subject, detail) = reply.enhanced;
    Reply {
        enhanced: (class, subject, detail),
        ..reply
    }
}

/// Appends `code x.y.z text CRLF`, with CR, LF and other controls in the
/// text replaced by spaces so a reply can never break the framing.
pub(crate) fn encode(reply: &Reply, out: &mut Vec<u8>) {
    let (class, subject, detail) = reply.enhanced;
    let line = format!(
        "{:03} {class}.{subject}.{detail} {}\r\n",
        reply.code.min(999),
        printable(&reply.text)
    );
    out.extend_from_slice(line.as_bytes());
}

/// The `220` greeting (no enhanced code, RFC 5321 §4.2 / RFC 2034 §3).
pub(crate) fn greeting(hostname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("220 {hostname} ESMTP ready\r\n").as_bytes());
}

/// The `HELO` reply: `250 hostname`.
pub(crate) fn helo(hostname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("250 {hostname}\r\n").as_bytes());
}

/// The multi-line `EHLO` reply: the name, then one extension per line.
pub(crate) fn ehlo(hostname: &str, max_size: usize, starttls: bool, out: &mut Vec<u8>) {
    let size = format!("SIZE {max_size}");
    let mut lines: Vec<&str> = vec![
        hostname,
        "PIPELINING",
        &size,
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
    ];
    if starttls {
        lines.push("STARTTLS");
    }
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
    }
}

/// A host name safe to put in a reply: controls and spaces removed,
/// `localhost` when nothing is left.
pub(crate) fn sanitize_hostname(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    if clean.is_empty() {
        "localhost".to_owned()
    } else {
        clean
    }
}

/// `text` with every control character replaced by a space.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}
