//! What a session is allowed to do: [`SessionConfig`] (limits and identity),
//! [`TimeLimits`] (enforced by the driver) and [`PeerInfo`] (who is on the
//! other end of this connection).

use std::net::IpAddr;
use std::time::Duration;

/// Limits and identity of an inbound SMTP session.
///
/// Start from [`SessionConfig::new`] (or [`Default`], hostname `localhost`)
/// and adjust with the `with_*` setters or the public fields. Every default
/// below is chosen for a public MX that forwards mail for aliases; each
/// setter's documentation gives the default and the reason for it.
///
/// ```
/// use smtpy_smtp::session::SessionConfig;
///
/// let config = SessionConfig::new("mx.alias.example")
///     .with_max_message_size(10 * 1024 * 1024)
///     .with_max_recipients(50);
/// assert_eq!(config.max_line_length, SessionConfig::DEFAULT_MAX_LINE_LENGTH);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The name this server gives in its greeting and EHLO reply.
    pub hostname: String,
    /// Longest accepted command line in octets, CRLF included. See
    /// [`with_max_line_length`](Self::with_max_line_length).
    pub max_line_length: usize,
    /// Largest accepted message in octets (after dot-unstuffing and CRLF
    /// normalisation). See [`with_max_message_size`](Self::with_max_message_size).
    pub max_message_size: usize,
    /// Most recipients accepted in one transaction. See
    /// [`with_max_recipients`](Self::with_max_recipients).
    pub max_recipients: usize,
    /// Protocol errors tolerated before the session is closed. See
    /// [`with_max_errors`](Self::with_max_errors).
    pub max_errors: usize,
    /// Messages accepted on one connection. See
    /// [`with_max_messages`](Self::with_max_messages).
    pub max_messages: usize,
    /// Input the session buffers while it waits for the driver. See
    /// [`with_max_buffered_input`](Self::with_max_buffered_input).
    pub max_buffered_input: usize,
    /// Whether MAIL FROM is handed to the driver
    /// ([`Action::CheckSender`](super::Action::CheckSender)). See
    /// [`with_check_sender`](Self::with_check_sender).
    pub check_sender: bool,
    /// Time limits. The session never reads a clock: these values are for
    /// the driver, which calls [`Session::timeout`](super::Session::timeout).
    pub time_limits: TimeLimits,
}

impl SessionConfig {
    /// Default [`max_line_length`](Self::max_line_length): 1024 octets.
    pub const DEFAULT_MAX_LINE_LENGTH: usize = 1024;
    /// Default [`max_message_size`](Self::max_message_size): 25 MiB.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
    /// Default [`max_recipients`](Self::max_recipients): 100.
    pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
    /// Default [`max_errors`](Self::max_errors): 10.
    pub const DEFAULT_MAX_ERRORS: usize = 10;
    /// Default [`max_messages`](Self::max_messages): 100.
    pub const DEFAULT_MAX_MESSAGES: usize = 100;
    /// Default [`max_buffered_input`](Self::max_buffered_input): 1 MiB.
    pub const DEFAULT_MAX_BUFFERED_INPUT: usize = 1024 * 1024;
    /// Smallest line limit the session uses, whatever the configuration says:
    /// below this not even `QUIT` would fit.
    pub const MIN_LINE_LENGTH: usize = 16;

    /// The defaults, with `hostname` as the server's name.
    #[must_use]
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            max_line_length: Self::DEFAULT_MAX_LINE_LENGTH,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: Self::DEFAULT_MAX_RECIPIENTS,
            max_errors: Self::DEFAULT_MAX_ERRORS,
            max_messages: Self::DEFAULT_MAX_MESSAGES,
            max_buffered_input: Self::DEFAULT_MAX_BUFFERED_INPUT,
            check_sender: false,
            time_limits: TimeLimits::default(),
        }
    }

    /// Longest command line, CRLF included (default 1024 octets).
    ///
    /// RFC 5321 §4.5.3.1.4 sets 512 octets and lets extensions raise it;
    /// `MAIL FROM` with a 256-octet path, `SIZE`, `BODY` and `SMTPUTF8`
    /// stays under 400, so 1024 leaves a margin for clients that pad while
    /// bounding what one line costs. A longer line is answered
    /// `500 5.5.6` and discarded up to its end. Values below
    /// [`MIN_LINE_LENGTH`](Self::MIN_LINE_LENGTH) are raised to it.
    #[must_use]
    pub fn with_max_line_length(mut self, octets: usize) -> Self {
        self.max_line_length = octets;
        self
    }

    /// Largest message (default 25 MiB, what the large mailbox providers
    /// accept, so a message that reached us can be forwarded on).
    ///
    /// Advertised as `SIZE`; a larger `SIZE=` at MAIL gets `552 5.3.4`, and
    /// a message that grows past it while streaming is no longer buffered
    /// and gets `552 5.3.4` at its end. The session never holds more than
    /// this (plus one command line) per connection.
    #[must_use]
    pub fn with_max_message_size(mut self, octets: usize) -> Self {
        self.max_message_size = octets;
        self
    }

    /// Most recipients per transaction (default 100, the minimum RFC 5321
    /// §4.5.3.1.8 requires a server to accept). The next `RCPT` gets
    /// `452 4.5.3` and the client sends the rest in another transaction.
    #[must_use]
    pub fn with_max_recipients(mut self, count: usize) -> Self {
        self.max_recipients = count;
        self
    }

    /// Protocol errors (unknown commands, syntax errors, bad sequence,
    /// over-long lines) tolerated per session (default 10). The next one is
    /// answered `421 4.7.0` and the session closes: a real MTA makes at most
    /// one or two mistakes, a scanner or a confused HTTP client makes many.
    /// Rejections decided by the driver (unknown alias …) do not count.
    #[must_use]
    pub fn with_max_errors(mut self, count: usize) -> Self {
        self.max_errors = count;
        self
    }

    /// Messages per connection (default 100). The next `MAIL` is answered
    /// `421 4.7.0` and the session closes; the client reconnects. This
    /// bounds how long one connection can hold a worker.
    #[must_use]
    pub fn with_max_messages(mut self, count: usize) -> Self {
        self.max_messages = count;
        self
    }

    /// Input buffered while the session waits for the driver (default
    /// 1 MiB).
    ///
    /// A driver that stops reading while an action is outstanding (see
    /// [`Session::awaiting`](super::Session::awaiting)) never comes near it;
    /// this bounds the memory of a driver that keeps reading anyway. Past
    /// it the session answers `421 4.7.0` and closes.
    #[must_use]
    pub fn with_max_buffered_input(mut self, octets: usize) -> Self {
        self.max_buffered_input = octets;
        self
    }

    /// Whether `MAIL FROM` waits for the driver's
    /// [`Session::sender_result`](super::Session::sender_result) (default
    /// `false`: every syntactically valid reverse path is accepted, since
    /// smtpy authenticates senders at the end of DATA with SPF/DKIM/DMARC).
    #[must_use]
    pub fn with_check_sender(mut self, check: bool) -> Self {
        self.check_sender = check;
        self
    }

    /// The time limits the driver enforces (default [`TimeLimits::default`]).
    #[must_use]
    pub fn with_time_limits(mut self, limits: TimeLimits) -> Self {
        self.time_limits = limits;
        self
    }
}

impl Default for SessionConfig {
    /// The defaults with hostname `localhost`.
    fn default() -> Self {
        Self::new("localhost")
    }
}

/// Time limits of a session, enforced by the driver with its clock.
///
/// The state machine never reads time. The driver arms timers from these
/// values and, when one fires, calls
/// [`Session::timeout`](super::Session::timeout) with the matching
/// [`Timeout`](super::Timeout); the session then queues `421 4.4.2` and
/// [`Action::Close`](super::Action::Close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeLimits {
    /// How long the driver waits before taking the greeting out of the
    /// session (default zero: no pause). During the pause it may still read
    /// the socket and feed what arrives; a client that talks first is an
    /// early talker and is refused `554 5.5.0`. A few seconds catch most
    /// spam bots, at the price of slowing every legitimate connection.
    pub greeting_delay: Duration,
    /// Longest silence of the client while the session waits for a command
    /// or for more message content (default 5 minutes, RFC 5321
    /// §4.5.3.2.7). Not armed while the driver handles an action: then the
    /// client is waiting for us. Fires [`Timeout::Command`](super::Timeout::Command).
    pub command: Duration,
    /// Longest lifetime of a connection (default 30 minutes). Fires
    /// [`Timeout::Session`](super::Timeout::Session).
    pub session: Duration,
    /// Slowest accepted transfer of message content, in octets per second
    /// (default 1024; 0 disables). The driver measures it while
    /// [`Session::is_receiving_content`](super::Session::is_receiving_content)
    /// is true, over windows of its choosing (say 30 seconds), and fires
    /// [`Timeout::DataRate`](super::Timeout::DataRate).
    pub min_data_rate: u64,
}

impl Default for TimeLimits {
    fn default() -> Self {
        Self {
            greeting_delay: Duration::ZERO,
            command: Duration::from_secs(5 * 60),
            session: Duration::from_secs(30 * 60),
            min_data_rate: 1024,
        }
    }
}

/// The other end of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's IP address (for logs and the driver's decisions).
    pub ip: IpAddr,
    /// Whether this listener can do STARTTLS (a certificate is configured).
    /// Only then is `STARTTLS` advertised and accepted.
    pub tls_available: bool,
    /// Whether the connection is already encrypted (implicit TLS). Then
    /// STARTTLS is neither advertised nor accepted.
    pub tls_active: bool,
}

impl PeerInfo {
    /// A plaintext connection from `ip` without STARTTLS.
    #[must_use]
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            tls_available: false,
            tls_active: false,
        }
    }

    /// Sets whether STARTTLS can be offered.
    #[must_use]
    pub fn with_tls_available(mut self, available: bool) -> Self {
        self.tls_available = available;
        self
    }

    /// Marks the connection as already encrypted (implicit TLS).
    #[must_use]
    pub fn with_implicit_tls(mut self) -> Self {
        self.tls_active = true;
        self
    }
}
