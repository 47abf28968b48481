//! [`SmtpRelay`]: every message to one smarthost.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use smtpy_core::address::EmailAddress;
use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};

use super::client::{FailureKind, SessionError, SessionSetup};
use super::config::{Timeouts, TlsMode, TlsTrust, TransportBuildError, check_wire_name};
use super::pool::{Pool, PoolConfig};
use super::tls::TlsConnectors;
use super::transaction::Transaction;

/// User name and password for the smarthost (AUTH PLAIN, or LOGIN when
/// PLAIN is not offered). `Debug` shows the user name only; the password is
/// never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayCredentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl RelayCredentials {
    /// Credentials for AUTH.
    #[must_use]
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for RelayCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Configuration of an [`SmtpRelay`]; a consuming builder.
///
/// ```
/// use smtpy_smtp::transport::{RelayConfig, RelayCredentials, SmtpRelay, TlsMode};
///
/// let relay = SmtpRelay::new(
///     RelayConfig::new("smtp.provider.example", 587, "mx.alias.example")
///         .tls_mode(TlsMode::Required)
///         .credentials(RelayCredentials::new("smtpy", "secret")),
/// )?;
/// assert!(!format!("{relay:?}").contains("secret"));
/// # Ok::<(), smtpy_smtp::transport::TransportBuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RelayConfig {
    host: String,
    port: u16,
    helo_name: String,
    tls_mode: TlsMode,
    tls_trust: TlsTrust,
    tls_server_name: Option<String>,
    credentials: Option<RelayCredentials>,
    allow_plaintext_auth: bool,
    timeouts: Timeouts,
    pool: PoolConfig,
}

impl RelayConfig {
    /// A relay at `host:port` (a host name or an IP address), greeted with
    /// `EHLO helo_name` (our host name, as the relay should see it).
    ///
    /// Defaults: [`TlsMode::Required`] with the platform trust store (a
    /// smarthost is usually reached over the Internet and given
    /// credentials), no credentials, [`Timeouts::relay`], and
    /// [`PoolConfig::default`].
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16, helo_name: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            helo_name: helo_name.into(),
            tls_mode: TlsMode::Required,
            tls_trust: TlsTrust::Platform,
            tls_server_name: None,
            credentials: None,
            allow_plaintext_auth: false,
            timeouts: Timeouts::relay(),
            pool: PoolConfig::default(),
        }
    }

    /// When to use TLS. Default [`TlsMode::Required`]; use
    /// [`TlsMode::Implicit`] for port 465.
    #[must_use]
    pub fn tls_mode(mut self, mode: TlsMode) -> Self {
        self.tls_mode = mode;
        self
    }

    /// Which certificates verify. Default [`TlsTrust::Platform`].
    #[must_use]
    pub fn tls_trust(mut self, trust: TlsTrust) -> Self {
        self.tls_trust = trust;
        self
    }

    /// The name the certificate must carry (and the SNI), when it is not
    /// the host, e.g. when the host is given as an IP address. Default: the
    /// host.
    #[must_use]
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// Authenticate with these credentials. They are only ever sent inside
    /// TLS, unless [`allow_plaintext_auth`](Self::allow_plaintext_auth): a
    /// session that ends up in plaintext fails temporarily before AUTH.
    #[must_use]
    pub fn credentials(mut self, credentials: RelayCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Allow AUTH over a plaintext session (a relay on loopback or a
    /// trusted network). Default `false`.
    #[must_use]
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.allow_plaintext_auth = allow;
        self
    }

    /// Timeouts. Default [`Timeouts::relay`].
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Concurrency and connection reuse. Default [`PoolConfig::default`].
    #[must_use]
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// The relay host.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The relay port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A [`Transport`] that hands every message to one smarthost.
///
/// All recipients go in one transaction; each gets its own RCPT reply, and
/// the recipients the relay accepted get the reply to the end of DATA (see
/// the [`transport`](super) module for the full table). The relay host name
/// is resolved by the system resolver at each new connection; every address
/// is tried in turn.
#[derive(Debug)]
pub struct SmtpRelay {
    config: RelayConfig,
    setup: SessionSetup,
    pool: Pool,
    server_name: String,
    destination: String,
}

impl SmtpRelay {
    /// Builds the relay transport (and its TLS configuration). Opens no
    /// connection.
    ///
    /// # Errors
    ///
    /// [`TransportBuildError::InvalidConfig`] for a malformed host, HELO
    /// name or TLS server name; [`TransportBuildError::Tls`] when the trust
    /// store cannot be loaded.
    pub fn new(config: RelayConfig) -> Result<Self, TransportBuildError> {
        check_wire_name("the relay host", &config.host)?;
        check_wire_name("the HELO name", &config.helo_name)?;
        if config.port == 0 {
            return Err(TransportBuildError::InvalidConfig(
                "the relay port must not be 0".to_owned(),
            ));
        }
        let host = unbracket(&config.host).to_ascii_lowercase();
        let server_name = config
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host.clone());
        if ServerName::try_from(server_name.as_str()).is_err() {
            return Err(TransportBuildError::InvalidConfig(format!(
                "{server_name:?} is not a valid TLS server name"
            )));
        }
        let setup = SessionSetup {
            helo: config.helo_name.clone(),
            tls_mode: config.tls_mode,
            tls: TlsConnectors::new(config.tls_mode, &config.tls_trust)?,
            credentials: config.credentials.clone(),
            allow_plaintext_auth: config.allow_plaintext_auth,
            timeouts: config.timeouts,
        };
        Ok(Self {
            pool: Pool::new(config.pool.clone()),
            destination: format!("{host}:{}", config.port),
            server_name,
            setup,
            config,
        })
    }

    /// The configuration it was built from.
    #[must_use]
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }
}

#[async_trait]
impl Transport for SmtpRelay {
    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Vec<DeliveryOutcome> {
        if envelope.recipients.is_empty() {
            return Vec::new();
        }
        let recipients: Vec<&EmailAddress> = envelope.recipients.iter().collect();
        let txn = Transaction {
            reverse_path: envelope.reverse_path.as_ref(),
            recipients: &recipients,
            message,
        };
        let addresses = resolve(
            unbracket(&self.config.host),
            self.config.port,
            self.config.timeouts.connect,
        );
        match self
            .pool
            .deliver(
                &self.setup,
                &self.destination,
                &self.server_name,
                addresses,
                &txn,
            )
            .await
        {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(relay = %self.destination, error = %e, "relay unreachable");
                vec![e.outcome(); recipients.len()]
            }
        }
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, SessionError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let fail = |what: String| SessionError::new(FailureKind::Connect, what);
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(fail(format!("relay host {host} has no address")))
            } else {
                Ok(addresses)
            }
        }
        Ok(Err(e)) => Err(fail(format!("cannot resolve relay host {host}: {e}"))),
        Err(_) => Err(fail(format!("resolving relay host {host} timed out"))),
    }
}
