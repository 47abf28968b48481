//! What crosses the boundary between a [`Session`](super::Session) and its
//! driver: [`Event`]s and [`Action`]s out, [`Verdict`]s and replies in, and
//! the [`Envelope`] of a finished transaction.

use smtpy_core::address::EmailAddress;
use smtpy_core::reply::Reply;

/// One output of the session, in the order the driver must handle them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes to write to the client (one or more complete reply lines).
    Write(Vec<u8>),
    /// Something only the driver can do; see [`Action`] for which ones the
    /// session waits for.
    Action(Action),
}

/// A request to the driver.
///
/// The session stops processing input after emitting one of the first four
/// until the driver answers with the named method; input fed meanwhile is
/// buffered (pipelining), except after [`StartTls`](Action::StartTls).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `MAIL FROM` needs a decision (only with
    /// [`SessionConfig::check_sender`](super::SessionConfig::check_sender)).
    /// Answer with [`Session::sender_result`](super::Session::sender_result).
    CheckSender {
        /// The reverse path; `None` is the null sender `<>`.
        reverse_path: Option<EmailAddress>,
        /// The path as the client wrote it, between the angle brackets.
        raw: String,
        /// The accepted MAIL parameters.
        params: MailParams,
    },
    /// `RCPT TO` needs a decision: is this one of ours, may it receive now?
    /// Answer with [`Session::recipient_result`](super::Session::recipient_result).
    ///
    /// `<postmaster>` (no domain) never comes here: the session accepts it
    /// itself (RFC 5321 §4.5.1) and lists it as [`ForwardPath::Postmaster`].
    /// `<postmaster@domain>` does come here, like any address.
    CheckRecipient {
        /// The recipient, parsed.
        forward_path: EmailAddress,
        /// The path as the client wrote it, between the angle brackets
        /// (source route included).
        raw: String,
    },
    /// The client finished a message. Queue it durably, then answer with
    /// [`Session::message_result`](super::Session::message_result): `250`
    /// only once it is durable, `451` if the queue failed, `554` to refuse.
    Message {
        /// Who sent it to whom.
        envelope: Envelope,
        /// The message, moved out of the session: CRLF line endings (bare CR
        /// and bare LF were normalised to CRLF), dot-stuffing removed, no
        /// trailing `.` line. May be empty.
        body: Vec<u8>,
    },
    /// Write everything polled so far (the `220` for STARTTLS), then run the
    /// TLS handshake on the socket and call
    /// [`Session::tls_established`](super::Session::tls_established). Input
    /// fed before that is plaintext injected ahead of TLS and is discarded.
    /// If the handshake fails, close the connection.
    StartTls,
    /// Write everything polled so far, then close the connection. Nothing
    /// follows.
    Close,
}

/// The driver's answer to [`Action::CheckRecipient`] or
/// [`Action::CheckSender`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept: `250 2.1.5` for a recipient, `250 2.1.0` for a sender.
    Accept,
    /// Refuse for good with this reply (5xx, e.g. [`Reply::UNKNOWN_RECIPIENT`]).
    Reject(Reply),
    /// Refuse for now with this reply (4xx, e.g. [`Reply::STORE_UNAVAILABLE`]).
    TempFail(Reply),
}

/// The answer to a recipient check.
pub type RcptVerdict = Verdict;

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<postmaster>` without a domain (any case): always accepted by the
    /// session, to be routed to the operator.
    Postmaster,
    /// An address the driver accepted.
    Mailbox(EmailAddress),
}

impl ForwardPath {
    /// The address, unless this is the bare postmaster.
    #[must_use]
    pub fn mailbox(&self) -> Option<&EmailAddress> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(address) => Some(address),
        }
    }
}

/// The `BODY=` parameter of MAIL FROM (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The MAIL FROM parameters smtpy supports; any other parameter is refused
/// with `555 5.5.4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MailParams {
    /// `SIZE=` as declared by the client (RFC 1870); `None` when absent or 0.
    pub size: Option<usize>,
    /// `BODY=`; `None` when absent.
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531): addresses and headers may be UTF-8.
    pub smtputf8: bool,
}

/// The envelope of a transaction: who (according to the client) sends to
/// whom, and how the client introduced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// Whether the client said EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
    /// Whether the transaction ran under TLS.
    pub tls: bool,
    /// MAIL FROM; `None` is the null reverse path `<>` (bounces, DSNs).
    pub reverse_path: Option<EmailAddress>,
    /// The accepted recipients in the order they were accepted, without
    /// duplicates.
    pub recipients: Vec<ForwardPath>,
    /// The MAIL FROM parameters.
    pub params: MailParams,
}

impl Envelope {
    /// The accepted recipient addresses, leaving out the bare postmaster.
    pub fn mailboxes(&self) -> impl Iterator<Item = &EmailAddress> {
        self.recipients.iter().filter_map(ForwardPath::mailbox)
    }

    /// Whether `<postmaster>` is among the recipients.
    #[must_use]
    pub fn has_postmaster(&self) -> bool {
        self.recipients.contains(&ForwardPath::Postmaster)
    }

    /// The `with` keyword for a `Received:` header (RFC 3848, RFC 6531):
    /// `SMTP`, `ESMTP`, `ESMTPS`, `UTF8SMTP` or `UTF8SMTPS`.
    #[must_use]
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.params.smtputf8, self.tls) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, false, true) => "ESMTPS",
            (true, true, false) => "UTF8SMTP",
            (true, true, true) => "UTF8SMTPS",
        }
    }
}

/// Which time limit ran out; see
/// [`TimeLimits`](super::TimeLimits). Every kind is answered `421 4.4.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The client was silent for too long.
    Command,
    /// The connection lived too long.
    Session,
    /// Message content arrived too slowly.
    DataRate,
}

/// What the session is waiting for from the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Awaiting {
    /// [`Session::sender_result`](super::Session::sender_result).
    Sender,
    /// [`Session::recipient_result`](super::Session::recipient_result).
    Recipient,
    /// [`Session::message_result`](super::Session::message_result).
    Message,
    /// [`Session::tls_established`](super::Session::tls_established).
    Tls,
}
