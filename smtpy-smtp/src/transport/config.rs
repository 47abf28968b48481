//! Configuration shared by the SMTP transports: timeouts, TLS policy and
//! trust, and the error a transport's construction can return.

use std::fmt;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

/// How a transport uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// STARTTLS must succeed and the server certificate must verify (against
    /// the [`TlsTrust`], for the server's host name) before anything else is
    /// sent; otherwise the delivery fails temporarily. The relay's default.
    Required,
    /// STARTTLS when the server offers it, without verifying the certificate
    /// (RFC 7435: unauthenticated encryption beats plaintext, and most MX
    /// certificates do not match the MX name). Plaintext when STARTTLS is not
    /// offered or is refused, and when the TLS handshake fails the session
    /// is opened again once in plaintext. The MX default.
    Opportunistic,
    /// Never STARTTLS (a loopback relay, tests).
    Never,
    /// TLS from the first byte (SMTPS, usually port 465, RFC 8314), the
    /// certificate verified as for [`TlsMode::Required`].
    Implicit,
}

/// Which certificates [`TlsMode::Required`] and [`TlsMode::Implicit`]
/// accept. Opportunistic TLS never verifies.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum TlsTrust {
    /// The operating system's trust store (rustls-platform-verifier). The
    /// default.
    #[default]
    Platform,
    /// Exactly these root certificates (DER), e.g. a private CA or a
    /// self-signed relay certificate.
    Roots(Vec<CertificateDer<'static>>),
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::Platform => f.write_str("Platform"),
            TlsTrust::Roots(roots) => write!(f, "Roots({} certificates)", roots.len()),
        }
    }
}

/// Timeouts of one SMTP session. Each bounds one wait; a slow but live
/// server can take up to their sum for one message.
///
/// [`Timeouts::rfc5321`] (the [`Default`], and the MX default) uses the
/// client timeouts of RFC 5321 §4.5.3.2; [`Timeouts::relay`] (the relay
/// default) is shorter, because a smarthost is ours and close by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) greeting: Duration,
    pub(crate) command: Duration,
    pub(crate) data: Duration,
}

impl Timeouts {
    /// RFC 5321 §4.5.3.2: greeting 5 min, each command 5 min, and 10 min for
    /// sending the data and getting the final reply (the RFC's "DATA
    /// termination"). The connect timeout, which the RFC does not set, is
    /// 30 s.
    #[must_use]
    pub fn rfc5321() -> Self {
        Self {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data: Duration::from_secs(600),
        }
    }

    /// For a smarthost: connect 10 s, greeting 30 s, each command 30 s,
    /// data 120 s.
    #[must_use]
    pub fn relay() -> Self {
        Self {
            connect: Duration::from_secs(10),
            greeting: Duration::from_secs(30),
            command: Duration::from_secs(30),
            data: Duration::from_secs(120),
        }
    }

    /// The same `timeout` for every step (tests).
    #[must_use]
    pub fn uniform(timeout: Duration) -> Self {
        Self {
            connect: timeout,
            greeting: timeout,
            command: timeout,
            data: timeout,
        }
    }

    /// TCP connect, per address tried.
    #[must_use]
    pub fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// Waiting for the server's 220 greeting.
    #[must_use]
    pub fn greeting(mut self, timeout: Duration) -> Self {
        self.greeting = timeout;
        self
    }

    /// Each command's reply (EHLO, STARTTLS and the TLS handshake, AUTH,
    /// MAIL, RCPT, DATA, RSET, QUIT).
    #[must_use]
    pub fn command(mut self, timeout: Duration) -> Self {
        self.command = timeout;
        self
    }

    /// Sending the message and receiving the reply to the final `.`.
    #[must_use]
    pub fn data(mut self, timeout: Duration) -> Self {
        self.data = timeout;
        self
    }

    /// The connect timeout.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect
    }

    /// The greeting timeout.
    #[must_use]
    pub fn greeting_timeout(&self) -> Duration {
        self.greeting
    }

    /// The per-command timeout.
    #[must_use]
    pub fn command_timeout(&self) -> Duration {
        self.command
    }

    /// The data timeout.
    #[must_use]
    pub fn data_timeout(&self) -> Duration {
        self.data
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::rfc5321()
    }
}

/// Why a transport could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportBuildError {
    /// The TLS client configuration could not be built (platform trust store
    /// unavailable, a root certificate rejected).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A static route's domain or target is malformed.
    #[error("invalid route {domain} -> {target}: {reason}")]
    InvalidRoute {
        /// The route's domain, as given.
        domain: String,
        /// The route's target, as given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// Another setting is invalid (an empty or malformed host or HELO name).
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(String),
}

/// Checks a name that goes on the wire as-is (EHLO argument, host names):
/// non-empty, printable ASCII, no spaces, so no command can be injected.
pub(crate) fn check_wire_name(what: &str, name: &str) -> Result<(), TransportBuildError> {
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TransportBuildError::InvalidConfig(format!(
            "{what} must be 1 to 255 printable ASCII characters without spaces: {name:?}"
        )));
    }
    Ok(())
}
