//! The inbound SMTP session as a sans-IO state machine: bytes in, replies
//! and [`Action`]s out, no sockets, no clock, no store.
//!
//! A driver (the tokio listener, a test, a fuzzer) owns the socket and the
//! decisions: it [`feed`](Session::feed)s what it reads,
//! [`poll`](Session::poll)s [`Event`]s in order — writing every
//! [`Event::Write`] and answering every [`Event::Action`] — and calls
//! [`timeout`](Session::timeout) when one of its timers fires.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! use smtpy_core::reply::Reply;
//! use smtpy_smtp::session::{Action, Event, PeerInfo, Session, SessionConfig, Verdict};
//!
//! /// Writes what the session says and answers what it asks, until it
//! /// needs more input.
//! fn drive(session: &mut Session, wire: &mut Vec<u8>, queue: &mut Vec<Vec<u8>>) {
//!     while let Some(event) = session.poll() {
//!         match event {
//!             Event::Write(bytes) => wire.extend_from_slice(&bytes),
//!             Event::Action(Action::CheckRecipient { forward_path, .. }) => {
//!                 let ours = forward_path.domain().as_ascii() == "alias.example";
//!                 session.recipient_result(if ours {
//!                     Verdict::Accept
//!                 } else {
//!                     Verdict::Reject(Reply::RELAY_DENIED)
//!                 });
//!             }
//!             Event::Action(Action::Message { envelope, body }) => {
//!                 assert_eq!(envelope.recipients.len(), 1);
//!                 queue.push(body); // a real driver makes it durable first
//!                 session.message_result(Reply::new(250, (2, 0, 0), "Queued"));
//!             }
//!             // Close: a real driver writes what it polled and closes the socket.
//!             _ => {}
//!         }
//!     }
//! }
//!
//! let peer = PeerInfo::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
//! let mut session = Session::new(SessionConfig::new("mx.alias.example"), peer);
//! let (mut wire, mut queue) = (Vec::new(), Vec::new());
//! drive(&mut session, &mut wire, &mut queue); // the 220 greeting
//!
//! // A pipelining client sends the envelope in one write …
//! session.feed(b"EHLO client.example\r\nMAIL FROM:<bob@example.org>\r\n\
//!     RCPT TO:<elsewhere@example.net>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n");
//! drive(&mut session, &mut wire, &mut queue);
//! // … and the content once it has read the 354.
//! session.feed(b"Subject: hi\r\n\r\nHello\r\n..dot\r\n.\r\nQUIT\r\n");
//! drive(&mut session, &mut wire, &mut queue);
//!
//! assert_eq!(queue, [b"Subject: hi\r\n\r\nHello\r\n.dot\r\n".to_vec()]);
//! let codes: Vec<&str> = std::str::from_utf8(&wire)?
//!     .lines()
//!     .filter(|line| line.as_bytes().get(3) == Some(&b' '))
//!     .map(|line| &line[..3])
//!     .collect();
//! assert_eq!(codes, ["220", "250", "250", "550", "250", "354", "250", "221"]);
//! assert!(session.is_closed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Contract with the driver
//!
//! * Events come out in protocol order. An [`Event::Write`] holds one or
//!   more complete reply lines; write them before acting on a later event.
//! * [`Action::CheckSender`], [`Action::CheckRecipient`],
//!   [`Action::Message`] and [`Action::StartTls`] stop the session until
//!   the driver answers with [`sender_result`](Session::sender_result),
//!   [`recipient_result`](Session::recipient_result),
//!   [`message_result`](Session::message_result) or
//!   [`tls_established`](Session::tls_established). Commands the client
//!   pipelined meanwhile are buffered and processed, in order, after the
//!   answer — so a `DATA` is decided only once every `RCPT` before it is.
//!   [`awaiting`](Session::awaiting) says what is outstanding; a driver
//!   should not read from the socket while it is `Some`.
//! * After [`Action::Close`] the session ignores input; write what was
//!   polled and close.
//! * Replies from the driver are sent as given, except that a code outside
//!   200–599 (or a 3xx) becomes `451 4.3.0`, a positive reply inside
//!   [`Verdict::Reject`]/[`Verdict::TempFail`] becomes `451 4.3.0` (never
//!   a 250 that accepts nothing), and the enhanced class follows the code.
//!
//! # Synchronisation (RFC 2920 pipelining, RFC 3207)
//!
//! A reply is *written* once [`poll`](Session::poll) has handed it out.
//!
//! * **Early talker**: input fed before the greeting was polled is answered
//!   `554 5.5.0` (instead of the greeting) and the session closes. To
//!   test for this, a driver waits
//!   [`TimeLimits::greeting_delay`] before polling the greeting, feeding
//!   whatever arrives meanwhile.
//! * **DATA** ends a pipelined group (RFC 2920 §3.1): content must not be
//!   sent before the `354`, nor commands before a refusal of DATA. If input
//!   follows the `DATA` line in the buffer when the session decides on
//!   `DATA` (which it does only once every earlier `RCPT` is answered), or
//!   is fed before the reply to `DATA` was polled, the client is answered
//!   `554 5.5.0` instead and the session closes. Whatever the client sent
//!   blind is never read, neither as content nor as commands.
//! * **STARTTLS**: everything after the `STARTTLS` line — buffered or fed
//!   before [`tls_established`](Session::tls_established) — is plaintext
//!   injected ahead of the handshake (CVE-2011-0411) and is discarded. After
//!   the handshake the session starts over: the client must say EHLO again,
//!   and STARTTLS is no longer offered.
//!
//! # Commands and replies
//!
//! EHLO/HELO, MAIL (`SIZE=`, `BODY=7BIT|8BITMIME`, `SMTPUTF8`), RCPT, DATA,
//! BDAT (CHUNKING, RFC 3030), RSET, NOOP, HELP, QUIT, VRFY (`252 2.5.2`) and
//! STARTTLS. EHLO advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
//! ENHANCEDSTATUSCODES, CHUNKING and (when available and not active)
//! STARTTLS. Every reply carries an enhanced status code except the
//! greeting, the EHLO/HELO replies and the 354 (RFC 2034 §3 excludes them).
//! Command lines end with CR LF or a bare LF; a CR elsewhere in a command
//! line is refused (`500 5.5.2`). Commands smtpy does not offer (AUTH,
//! EXPN, ETRN, …) get `502 5.5.1`, unknown ones `500 5.5.2`, bad syntax
//! `501 5.5.4`, parameters smtpy does not offer (DSN's `RET=`, `NOTIFY=`, …,
//! `BODY=BINARYMIME`) `555 5.5.4`, and commands out of sequence `503 5.5.1`.
//! A reverse path that is not a valid address gets `553 5.1.7`, a forward
//! path `553 5.1.3` (the driver is not asked), a non-ASCII one without
//! `SMTPUTF8` `553 5.6.7`. `<postmaster>` without a domain is accepted by
//! the session itself and listed as [`ForwardPath::Postmaster`]. A `BDAT`
//! whose size cannot be parsed closes the session (`501 5.5.4`): its chunk
//! could not be skipped, and must not be read as commands; a well-formed
//! `BDAT` that is refused still has its octets consumed.
//!
//! # Message content
//!
//! DATA ends only on CR LF `.` CR LF (the start of the message counts as
//! after CR LF); no bare-CR or bare-LF variant ends it, so smuggled commands
//! stay inside the body. The body handed over in [`Action::Message`] has
//! CR LF line endings only — bare CR and bare LF become CR LF — and no dot
//! stuffing. BDAT content is taken verbatim except for that same line ending
//! normalisation, so nothing downstream ever signs or forwards a bare CR or
//! LF. Loop detection (counting `Received:` headers) is the pipeline's job
//! on that body.
//!
//! # Errors and limits
//!
//! The session never panics on input. Over-long lines (`500 5.5.6`),
//! too many recipients (`452 4.5.3`), too large messages (`552 5.3.4`),
//! too many protocol errors (`421 4.7.0`, close) and too many messages
//! (`421 4.7.0`, close) are decided here; time limits by the driver through
//! [`timeout`](Session::timeout) (`421 4.4.2`, close).

mod command;
mod config;
mod data;
mod event;
mod input;
mod output;
mod path;
mod replies;

use std::collections::VecDeque;
use std::fmt;

use smtpy_core::address::EmailAddress;
use smtpy_core::reply::Reply;

pub use config::{PeerInfo, SessionConfig, TimeLimits};
pub use event::{
    Action, Awaiting, BodyType, Envelope, Event, ForwardPath, MailParams, RcptVerdict, Timeout,
    Verdict,
};

use data::{Body, ChunkNormalizer, DotState};

/// One inbound SMTP connection, as a state machine. See the
/// [module documentation](self) for the protocol and the driver contract.
pub struct Session {
    config: SessionConfig,
    /// `config.hostname`, safe to put in replies.
    hostname: String,
    /// `config.max_line_length`, raised to the minimum.
    max_line: usize,
    peer: PeerInfo,
    tls_active: bool,
    helo: Option<Helo>,
    txn: Option<Transaction>,
    phase: Phase,
    pending: Option<Pending>,
    /// Input not yet processed (a partial line, or pipelined input while
    /// the driver is busy).
    input: Vec<u8>,
    /// Skipping the rest of an over-long command line.
    discarding_line: bool,
    /// Reply bytes not yet handed out; flushed into `out` before an action.
    write_buf: Vec<u8>,
    out: VecDeque<Event>,
    /// A reply the client must have read before it sends more.
    sync: Option<SyncPoint>,
    errors: usize,
    messages: usize,
    /// Messages refused for their size (`552 5.3.4`).
    too_big: usize,
    closed: bool,
}

/// What the client said in EHLO/HELO.
#[derive(Debug)]
struct Helo {
    name: String,
    esmtp: bool,
}

/// A mail transaction from MAIL to the end of its content.
#[derive(Debug)]
struct Transaction {
    envelope: Envelope,
    /// Created by DATA or the first kept BDAT chunk.
    body: Option<Body>,
    /// Set once BDAT content was received.
    bdat: Option<BdatProgress>,
}

#[derive(Debug, Default)]
struct BdatProgress {
    /// Sum of the chunk sizes so far.
    octets: usize,
    normalizer: ChunkNormalizer,
}

/// What the input is, at this point of the stream.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Command,
    Data(DotState),
    Bdat(BdatChunk),
}

#[derive(Debug, Clone, Copy)]
struct BdatChunk {
    size: usize,
    remaining: usize,
    last: bool,
    fate: ChunkFate,
}

/// What becomes of a BDAT chunk's octets. They are always consumed, even
/// when refused, so they are never read as commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkFate {
    Keep,
    Refuse(ChunkRefusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkRefusal {
    NeedHelo,
    NeedMail,
    NoRecipients,
    TooBig,
}

/// The driver's answer the session waits for.
#[derive(Debug)]
enum Pending {
    Sender {
        reverse_path: Option<EmailAddress>,
        params: MailParams,
    },
    Recipient(EmailAddress),
    Message,
    Tls,
}

#[derive(Debug, Clone, Copy)]
struct SyncPoint {
    /// Where the reply starts in `write_buf`.
    mark: usize,
    kind: SyncKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncKind {
    Greeting,
    Data,
}

impl Session {
    /// A new session; the `220` greeting is the first event to poll.
    #[must_use]
    pub fn new(config: SessionConfig, peer: PeerInfo) -> Self {
        let hostname = replies::sanitize_hostname(&config.hostname);
        let max_line = config.max_line_length.max(SessionConfig::MIN_LINE_LENGTH);
        let mut session = Self {
            tls_active: peer.tls_active,
            config,
            hostname,
            max_line,
            peer,
            helo: None,
            txn: None,
            phase: Phase::Command,
            pending: None,
            input: Vec::new(),
            discarding_line: false,
            write_buf: Vec::new(),
            out: VecDeque::new(),
            sync: None,
            errors: 0,
            messages: 0,
            too_big: 0,
            closed: false,
        };
        replies::greeting(&session.hostname, &mut session.write_buf);
        session.sync = Some(SyncPoint {
            mark: 0,
            kind: SyncKind::Greeting,
        });
        session
    }

    /// Input from the client. Processes as much as it can right away; the
    /// results are available from [`poll`](Self::poll).
    ///
    /// Input is ignored once the session is closed and discarded while a
    /// STARTTLS handshake is pending. Input fed while the greeting or the
    /// reply to DATA has not been polled yet breaks pipelining
    /// synchronisation: that reply is taken back and replaced by
    /// `554 5.5.0`, and the session closes (see the module documentation).
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.closed {
            return;
        }
        if self.sync.is_some() {
            self.sync_violation();
            return;
        }
        if matches!(self.pending, Some(Pending::Tls)) {
            tracing::debug!(peer = %self.peer.ip, octets = bytes.len(), "plaintext before TLS discarded");
            return;
        }
        if self.input.is_empty() {
            let used = self.run(bytes);
            if !self.closed {
                self.input
                    .extend_from_slice(bytes.get(used..).unwrap_or_default());
            }
        } else {
            self.input.extend_from_slice(bytes);
            self.resume();
        }
        if self.pending.is_some() && self.input.len() > self.config.max_buffered_input {
            self.reply(&replies::TOO_MUCH_PIPELINING);
            self.close();
        }
    }

    /// The next output, in order: bytes to write or an action. `None` when
    /// the session needs input (or an answer) to go on.
    pub fn poll(&mut self) -> Option<Event> {
        if let Some(event) = self.out.pop_front() {
            return Some(event);
        }
        if self.write_buf.is_empty() {
            return None;
        }
        // The pending synchronising reply (if any) is now written.
        self.sync = None;
        Some(Event::Write(std::mem::take(&mut self.write_buf)))
    }

    /// Answers [`Action::CheckSender`]. Ignored unless the session waits
    /// for it.
    pub fn sender_result(&mut self, verdict: Verdict) {
        let Some(Pending::Sender {
            reverse_path,
            params,
        }) = self.take_pending(Awaiting::Sender)
        else {
            return;
        };
        match verdict {
            Verdict::Accept => self.start_transaction(reverse_path, params),
            Verdict::Reject(reply) | Verdict::TempFail(reply) => {
                self.reply(&refusal(reply));
            }
        }
        self.resume();
    }

    /// Answers [`Action::CheckRecipient`]: [`Verdict::Accept`] is answered
    /// `250 2.1.5`, a refusal with its reply. Ignored unless the session
    /// waits for it.
    pub fn recipient_result(&mut self, verdict: RcptVerdict) {
        let Some(Pending::Recipient(address)) = self.take_pending(Awaiting::Recipient) else {
            return;
        };
        match verdict {
            Verdict::Accept => {
                if let Some(txn) = self.txn.as_mut() {
                    let path = ForwardPath::Mailbox(address);
                    if !txn.envelope.recipients.contains(&path) {
                        txn.envelope.recipients.push(path);
                    }
                }
                self.reply(&Reply::RECIPIENT_OK);
            }
            Verdict::Reject(reply) | Verdict::TempFail(reply) => {
                self.reply(&refusal(reply));
            }
        }
        self.resume();
    }

    /// Answers [`Action::Message`] with the reply for the client: a 250 only
    /// once the message is durable. Ignored unless the session waits for it.
    pub fn message_result(&mut self, reply: Reply) {
        if self.take_pending(Awaiting::Message).is_none() {
            return;
        }
        self.reply(&replies::from_driver(reply));
        self.resume();
    }

    /// Answers [`Action::StartTls`]: the handshake succeeded. The session
    /// forgets everything the client said before (RFC 3207 §4.2) and waits
    /// for a new EHLO; no greeting is sent. Ignored unless the session waits
    /// for it.
    pub fn tls_established(&mut self) {
        if self.take_pending(Awaiting::Tls).is_none() {
            return;
        }
        self.tls_active = true;
        self.helo = None;
        self.txn = None;
        self.phase = Phase::Command;
        self.input.clear();
        self.discarding_line = false;
    }

    /// A time limit ran out: queues `421 4.4.2` and [`Action::Close`]. Call
    /// it only while the client is the one expected to act (not while an
    /// action is outstanding). Does nothing once closed.
    pub fn timeout(&mut self, which: Timeout) {
        if self.closed {
            return;
        }
        let reply = match which {
            Timeout::Command => &replies::COMMAND_TIMEOUT,
            Timeout::Session => &replies::SESSION_TIMEOUT,
            Timeout::DataRate => &replies::DATA_RATE_TIMEOUT,
        };
        tracing::debug!(peer = %self.peer.ip, ?which, "session timed out");
        self.reply(reply);
        self.close();
    }

    /// The server is shutting down: queues `421 4.3.2` and
    /// [`Action::Close`]. Best called when nothing is outstanding (an
    /// [`Action::Message`] in progress should be finished first). Does
    /// nothing once closed.
    pub fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.reply(&replies::SHUTDOWN);
        self.close();
    }

    /// Whether the session has ended ([`Action::Close`] is queued or was
    /// polled). Poll the remaining events, then close the connection.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The driver answer the session is waiting for, if any.
    #[must_use]
    pub fn awaiting(&self) -> Option<Awaiting> {
        self.pending.as_ref().map(|pending| match pending {
            Pending::Sender { .. } => Awaiting::Sender,
            Pending::Recipient(_) => Awaiting::Recipient,
            Pending::Message => Awaiting::Message,
            Pending::Tls => Awaiting::Tls,
        })
    }

    /// Whether the connection is encrypted (implicit TLS or after STARTTLS).
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Whether the session is reading message content (DATA or a BDAT
    /// chunk): the window for [`TimeLimits::min_data_rate`].
    #[must_use]
    pub fn is_receiving_content(&self) -> bool {
        !self.closed && !matches!(self.phase, Phase::Command)
    }

    /// The EHLO/HELO argument, once given.
    #[must_use]
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|helo| helo.name.as_str())
    }

    /// The envelope of the transaction in progress (after an accepted MAIL),
    /// e.g. for a recipient decision that depends on the sender.
    #[must_use]
    pub fn envelope(&self) -> Option<&Envelope> {
        self.txn.as_ref().map(|txn| &txn.envelope)
    }

    /// Messages refused on this connection for their size (`552 5.3.4`:
    /// declared with `MAIL FROM … SIZE=`, or grown past the limit).
    #[must_use]
    pub fn too_big_count(&self) -> usize {
        self.too_big
    }

    /// Messages handed to the driver on this connection so far.
    #[must_use]
    pub fn message_count(&self) -> usize {
        self.messages
    }

    /// The peer this session talks to.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

/// A driver's refusal, made safe: never a positive reply that accepts
/// nothing.
fn refusal(reply: Reply) -> Reply {
    if reply.code < 400 {
        replies::LOCAL_ERROR
    } else {
        replies::from_driver(reply)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("tls_active", &self.tls_active)
            .field("helo", &self.helo)
            .field("phase", &self.phase)
            .field("awaiting", &self.awaiting())
            .field("buffered", &self.input.len())
            .field("errors", &self.errors)
            .field("messages", &self.messages)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}
