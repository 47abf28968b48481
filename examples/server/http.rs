//! `[http]`: the API of the reference server, sharing the store, clock,
//! metrics, keys, limits and mail queue with the SMTP side.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use smtpy::core::Store;
use smtpy::core::dns::Dns;
use smtpy::core::ids::UserId;
use smtpy::core::limits::{Limits, RateLimiter};
use smtpy::core::metrics::Metrics;
use smtpy::core::notify::Notification;
use smtpy::core::reverse::ReverseAliases;
use smtpy::core::secret::Keyring;
use smtpy::core::srs::SrsKey;
use smtpy::core::store::QueueStore;
use smtpy::core::time::Clock;
use smtpy_http::{ApiState, Budget, HttpConfig, Outbox, Readiness};
use smtpy_smtp::policy::MailPolicy;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::run::{Failure, read_or_create_secret};

/// Sends the API's mail (mailbox verification, password reset): rendered
/// with the notification templates, signed as the service, queued, and the
/// delivery workers woken.
#[derive(Debug)]
pub struct MailOutbox {
    policy: Arc<MailPolicy>,
    queue: Arc<dyn QueueStore>,
    clock: Arc<dyn Clock>,
    hostname: String,
    lifetime: Duration,
    wake: Arc<Notify>,
}

#[async_trait]
impl Outbox for MailOutbox {
    async fn send(&self, owner: UserId, notification: Notification) -> Result<(), String> {
        self.policy
            .queue_notification(
                &*self.queue,
                &notification,
                &self.hostname,
                owner,
                self.clock.now(),
                self.lifetime,
            )
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The key of the API's stateless tokens: `[http] token_key_file`, or
/// `data_dir/token.key` generated on first start (mode 0600).
pub fn token_key(config: &Config) -> Result<Vec<u8>, Failure> {
    let configured = config.http.token_key_file.is_some();
    let path: PathBuf = config
        .http
        .token_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("token.key"));
    if configured && !path.exists() {
        return Err(Failure::Usage(format!(
            "http.token_key_file: {} does not exist (write base64 of 32 random bytes into it, e.g. openssl rand -base64 32)",
            path.display()
        )));
    }
    let text = read_or_create_secret(&path, || {
        use ring::rand::SecureRandom as _;
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| Failure::Runtime("no system randomness".into()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(key))
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|k| k.len() >= 32)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "http.token_key_file: {}: expected base64 of at least 32 random bytes",
                path.display()
            ))
        })?;
    Ok(key)
}

/// The API configuration from `[http]` and the rest of the file.
pub fn http_config(config: &Config, token_key: Vec<u8>) -> HttpConfig {
    let h = &config.http;
    let mut c = HttpConfig::default();
    c.public_url.clone_from(&h.public_url);
    c.tls = h.tls;
    c.open_registration = h.open_registration;
    c.web = h.web;
    c.cors_origins.clone_from(&h.cors_origins);
    c.trusted_proxies.clone_from(&h.trusted_proxies);
    c.mail_hostname.clone_from(&config.hostname);
    c.ready_queue_backlog = h.ready_queue_backlog;
    c.limits.per_api_key = Budget::new(h.api_key_requests_per_minute, Duration::from_secs(60));
    c.bootstrap_token_hash = h.bootstrap_token_hash;
    c.token_key = Some(token_key);
    c.dkim_algorithms.clone_from(&config.dkim_algorithms);
    c.dkim_mode = crate::policy::publish_mode(config);
    c
}

/// The DNS the API checks customer domains with: the records file when
/// `[auth] dns_records_file` is set (re-read when it changes), else the
/// system resolver.
fn dns(config: &Config) -> Result<Arc<dyn Dns>, Failure> {
    Ok(match &config.auth_dns_records_file {
        Some(path) => Arc::new(crate::policy::FileDns::open(path)?),
        None => Arc::new(
            smtpy_smtp::transport::HickoryDns::system()
                .map_err(|e| Failure::Runtime(format!("DNS resolver: {e}")))?,
        ),
    })
}

/// What the API shares with the mail side.
pub struct Shared<'a> {
    pub config: &'a Config,
    pub store: &'a Arc<dyn Store>,
    pub queue: &'a Arc<dyn QueueStore>,
    pub clock: &'a Arc<dyn Clock>,
    pub metrics: &'a Arc<Metrics>,
    pub keyring: &'a Arc<Keyring>,
    pub srs_key: &'a SrsKey,
    /// The mail path's limiter and the API's own [`Limits`] over it.
    pub limits: Option<(Arc<dyn RateLimiter>, Arc<Limits>)>,
    pub policy: &'a Arc<MailPolicy>,
    pub wake: Arc<Notify>,
    pub readiness: Readiness,
    /// The feature flags shared with the mail side (admins switch them).
    pub features: smtpy::core::features::Features,
}

/// The API state over what the mail side uses.
pub fn state(s: Shared<'_>) -> Result<ApiState, Failure> {
    let config = s.config;
    let mut state = ApiState::new(Arc::clone(s.store), http_config(config, token_key(config)?))
        .with_clock(Arc::clone(s.clock))
        .with_metrics(Arc::clone(s.metrics))
        .with_keyring(Arc::clone(s.keyring))
        .with_reverse(Arc::new(ReverseAliases::new(s.srs_key.clone())))
        .with_dns(dns(config)?)
        .with_queue(Arc::clone(s.queue))
        .with_readiness(s.readiness)
        .with_features(s.features);
    // The admin configuration page. `render` shows secrets by their source
    // only and masks the store URL's password. The running configuration
    // lives in the SIGHUP task, so this is the configuration as loaded at
    // start-up: say so in the text.
    let rendered = format!(
        "# as loaded at start-up: a SIGHUP reload may since have changed [limits], [features], [log] level and the [tls] certificate\n{}",
        config.render()
    );
    state = state.with_config_view(Arc::new(move || rendered.clone()));
    if let Some((limiter, limits)) = s.limits {
        // The same limiter: limits shared between instances stay shared.
        state = state.with_limits(limits).with_limiter(limiter);
    }
    if config.notify_enabled {
        state = state.with_outbox(Arc::new(MailOutbox {
            policy: Arc::clone(s.policy),
            queue: Arc::clone(s.queue),
            clock: Arc::clone(s.clock),
            hostname: config.hostname.clone(),
            lifetime: config.expire,
            wake: s.wake,
        }));
    }
    Ok(state)
}

/// A running API: stop it with [`Api::stop`].
pub struct Api {
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

/// Binds `[http] listen` and serves the API (the domain re-check is the
/// `dns-recheck` job).
pub async fn start(config: &Config, state: ApiState) -> Result<Api, Failure> {
    let addr = config.http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Runtime(format!("http.listen: cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, "HTTP API listening");
    let (stop, mut stopped) = watch::channel(false);
    let router = smtpy_http::router(state.clone());
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(e) = smtpy_http::serve(listener, router, shutdown).await {
            tracing::error!(error = %e, "the HTTP API stopped");
        }
    });
    Ok(Api { stop, server })
}

impl Api {
    /// Stops taking requests, finishes those in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}
