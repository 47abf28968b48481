//! What the HTTP layer is configured with.

use std::time::Duration;

use smtpy_core::dkim::PublishMode;
use smtpy_core::model::DkimAlgorithm;
use smtpy_core::password::PasswordParams;

/// A budget of attempts: `attempts` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// How many attempts are allowed in one window.
    pub attempts: u32,
    /// The window.
    pub per: Duration,
}

impl Budget {
    /// `attempts` per `per`.
    #[must_use]
    pub const fn new(attempts: u32, per: Duration) -> Budget {
        Budget { attempts, per }
    }
}

/// Rate limits of the HTTP layer. Each answers `429` with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Failed and successful logins from one client IP (default 20 per 15 min).
    pub login_per_ip: Budget,
    /// Logins against one account, from anywhere (default 10 per 15 min).
    pub login_per_account: Budget,
    /// Registrations from one client IP (default 5 per hour).
    pub register_per_ip: Budget,
    /// Password-reset requests from one client IP (default 5 per hour).
    pub reset_per_ip: Budget,
    /// Verification attempts (mailbox tokens, TOTP codes, invitation and
    /// reset tokens) from one client IP (default 30 per hour).
    pub verify_per_ip: Budget,
    /// Requests made with one API key (default 600 per minute).
    pub per_api_key: Budget,
}

impl Default for HttpLimits {
    fn default() -> Self {
        const MIN: u64 = 60;
        HttpLimits {
            login_per_ip: Budget::new(20, Duration::from_secs(15 * MIN)),
            login_per_account: Budget::new(10, Duration::from_secs(15 * MIN)),
            register_per_ip: Budget::new(5, Duration::from_secs(60 * MIN)),
            reset_per_ip: Budget::new(5, Duration::from_secs(60 * MIN)),
            verify_per_ip: Budget::new(30, Duration::from_secs(60 * MIN)),
            per_api_key: Budget::new(600, Duration::from_secs(MIN)),
        }
    }
}

/// Configuration of the API router. `Default` is safe: registration closed,
/// CORS closed, cookies without `Secure` only because TLS is off.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The URL people reach the service at, e.g. `https://mail.example.com`
    /// (no trailing slash). Used for the `Origin` check of cookie-authenticated
    /// requests and in links sent by mail. `None`: the request's `Host`.
    pub public_url: Option<String>,
    /// Requests reach the service over TLS (directly or through a proxy that
    /// terminates it): cookies get `Secure` and the `__Host-` prefix, and
    /// responses carry `Strict-Transport-Security`.
    pub tls: bool,
    /// Anyone may register without an invitation: the initial value of the
    /// `registration` feature flag (the runtime flag decides; see
    /// [`ApiState::with_features`](crate::ApiState::with_features)).
    pub open_registration: bool,
    /// A session ends after this long without a request (default 2 h).
    pub session_idle: Duration,
    /// A session ends this long after login, however active (default 7 d).
    pub session_lifetime: Duration,
    /// Invitations expire after this long (default 7 d).
    pub invitation_lifetime: Duration,
    /// Password-reset tokens expire after this long (default 1 h).
    pub reset_lifetime: Duration,
    /// Mailbox verification tokens expire after this long (default 24 h).
    pub mailbox_verification_lifetime: Duration,
    /// Largest request body in bytes (default 1 MiB).
    pub body_limit: usize,
    /// Largest body of `POST /api/v1/import` (default 32 MiB).
    pub import_body_limit: usize,
    /// Origins allowed by CORS; empty (the default) allows none.
    pub cors_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed. A request whose
    /// TCP peer is one of them is attributed to the last address in that
    /// header that is not itself a trusted proxy, so per-IP rate limits and
    /// audit events see the real client. Empty (the default): the TCP peer
    /// is the client and the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Rate limits.
    pub limits: HttpLimits,
    /// argon2id cost of stored passwords.
    pub password_params: PasswordParams,
    /// Shortest accepted password, in characters (default 10).
    pub min_password_chars: usize,
    /// The mail host name: the MX target published for customer domains and
    /// the domain of notification senders.
    pub mail_hostname: String,
    /// What customer domains include in their SPF record
    /// (`v=spf1 include:<spf_include> ~all`); default the mail host name.
    pub spf_include: Option<String>,
    /// `/readyz` fails when more messages than this wait in the queue
    /// (default 10 000).
    pub ready_queue_backlog: u64,
    /// Hash of the bootstrap token (`POST /api/v1/bootstrap` creates the
    /// first admin while there is none). `None` disables bootstrapping.
    pub bootstrap_token_hash: Option<smtpy_core::model::SecretHash>,
    /// Service name shown to people (TOTP issuer, notifications).
    pub service_name: String,
    /// Key of the stateless tokens the API mints (password reset), at least
    /// 32 bytes. Several instances must share it; `None` makes
    /// [`ApiState::new`](crate::ApiState::new) draw a random one per process
    /// (tokens then die with the process).
    pub token_key: Option<Vec<u8>>,
    /// Algorithms of the DKIM keys generated for a new domain (default
    /// RSA-2048 and Ed25519).
    pub dkim_algorithms: Vec<DkimAlgorithm>,
    /// How customer domains publish DKIM keys (default: directly).
    pub dkim_mode: PublishMode,
    /// With the `web` feature: serve the web interface (`/login`, `/app/…`,
    /// `/admin/…`) beside the API (default true). `false` leaves the API
    /// alone on the listener.
    pub web: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            public_url: None,
            tls: false,
            open_registration: false,
            session_idle: Duration::from_secs(2 * 3600),
            session_lifetime: Duration::from_secs(7 * 86_400),
            invitation_lifetime: Duration::from_secs(7 * 86_400),
            reset_lifetime: Duration::from_secs(3600),
            mailbox_verification_lifetime: Duration::from_secs(86_400),
            body_limit: 1024 * 1024,
            import_body_limit: 32 * 1024 * 1024,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            limits: HttpLimits::default(),
            password_params: PasswordParams::default(),
            min_password_chars: 10,
            mail_hostname: "localhost".to_owned(),
            spf_include: None,
            ready_queue_backlog: 10_000,
            bootstrap_token_hash: None,
            service_name: "smtpy".to_owned(),
            token_key: None,
            dkim_algorithms: vec![DkimAlgorithm::Rsa2048, DkimAlgorithm::Ed25519],
            dkim_mode: PublishMode::Direct,
            web: true,
        }
    }
}
