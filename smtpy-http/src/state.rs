//! The shared state every handler sees.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use ring::rand::{SecureRandom as _, SystemRandom};
use smtpy_core::dns::Dns;
use smtpy_core::features::{FeatureFlags, Features};
use smtpy_core::ids::UserId;
use smtpy_core::limits::{Limits, LocalLimiter, RateLimiter};
use smtpy_core::metrics::Metrics;
use smtpy_core::notify::Notification;
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::secret::Keyring;
use smtpy_core::store::{QueueStore, Store};
use smtpy_core::time::{Clock, SystemClock};

use crate::config::HttpConfig;

/// Where the API sends mail to people (mailbox verification, password
/// reset): usually "render, sign and enqueue" in the embedding service.
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Queues `notification` for delivery to its recipient on behalf of
    /// `owner`.
    ///
    /// # Errors
    ///
    /// A human-readable reason when the notification cannot be queued.
    async fn send(&self, owner: UserId, notification: Notification) -> Result<(), String>;
}

/// What `/readyz` checks besides the store: flags the embedding service sets.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    smtp_listening: Arc<AtomicBool>,
    smtp_expected: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness without an SMTP listener to wait for.
    #[must_use]
    pub fn new() -> Readiness {
        Readiness::default()
    }
    /// `/readyz` waits until [`set_smtp_listening`](Self::set_smtp_listening)
    /// is called with `true`.
    #[must_use]
    pub fn expecting_smtp(self) -> Readiness {
        self.smtp_expected.store(true, Ordering::SeqCst);
        self
    }
    /// Records whether the SMTP listener accepts connections.
    pub fn set_smtp_listening(&self, listening: bool) {
        self.smtp_listening.store(listening, Ordering::SeqCst);
    }
    /// `None` when no SMTP listener is expected, else whether it listens.
    #[must_use]
    pub fn smtp_listening(&self) -> Option<bool> {
        self.smtp_expected
            .load(Ordering::SeqCst)
            .then(|| self.smtp_listening.load(Ordering::SeqCst))
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: HttpConfig,
    clock: Arc<dyn Clock>,
    limiter: Arc<dyn RateLimiter>,
    metrics: Arc<Metrics>,
    outbox: Option<Arc<dyn Outbox>>,
    keyring: Option<Arc<Keyring>>,
    dns: Option<Arc<dyn Dns>>,
    readiness: Readiness,
    limits: Option<Arc<Limits>>,
    reverse: Option<Arc<ReverseAliases>>,
    token_key: Arc<[u8]>,
    queue: Option<Arc<dyn QueueStore>>,
    features: Features,
    config_view: Option<ConfigView>,
}

/// Renders the embedding service's effective configuration for the admin
/// pages; see [`ApiState::with_config_view`].
type ConfigView = Arc<dyn Fn() -> String + Send + Sync>;

/// Everything the API needs, cheap to clone. Build with [`ApiState::new`]
/// and the `with_*` methods.
///
/// ```
/// use std::sync::Arc;
/// use smtpy_core::memory::MemoryStore;
/// use smtpy_http::{ApiState, HttpConfig};
/// let state = ApiState::new(Arc::new(MemoryStore::new()), HttpConfig::default());
/// let router: axum::Router = smtpy_http::router(state);
/// # let _ = router;
/// ```
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over `store`, with the system clock, an in-process rate
    /// limiter, fresh metrics, no outbox (mail-sending endpoints answer
    /// `503`), no keyring (no DKIM keys or TOTP) and no DNS (domain checks
    /// report `unknown`).
    #[must_use]
    pub fn new(store: Arc<dyn Store>, config: HttpConfig) -> ApiState {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let token_key: Arc<[u8]> = match &config.token_key {
            Some(k) => k.clone().into(),
            None => {
                let mut k = vec![0u8; 32];
                if SystemRandom::new().fill(&mut k).is_err() {
                    tracing::error!(
                        "no randomness for the token key; password reset tokens are disabled"
                    );
                    k.clear();
                }
                k.into()
            }
        };
        ApiState {
            inner: Arc::new(Inner {
                store,
                limiter: Arc::new(LocalLimiter::new(clock.clone())),
                clock,
                metrics: Arc::new(Metrics::new()),
                outbox: None,
                keyring: None,
                dns: None,
                readiness: Readiness::new(),
                limits: None,
                reverse: None,
                token_key,
                queue: None,
                features: Features::new(FeatureFlags {
                    registration: config.open_registration,
                    ..FeatureFlags::default()
                }),
                config_view: None,
                config,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> ApiState {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    store: old.store.clone(),
                    config: old.config.clone(),
                    clock: old.clock.clone(),
                    limiter: old.limiter.clone(),
                    metrics: old.metrics.clone(),
                    outbox: old.outbox.clone(),
                    keyring: old.keyring.clone(),
                    dns: old.dns.clone(),
                    readiness: old.readiness.clone(),
                    limits: old.limits.clone(),
                    reverse: old.reverse.clone(),
                    token_key: old.token_key.clone(),
                    queue: old.queue.clone(),
                    features: old.features.clone(),
                    config_view: old.config_view.clone(),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// Uses `clock` (and a fresh in-process limiter on it, unless
    /// [`with_limiter`](Self::with_limiter) is called afterwards).
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> ApiState {
        self.edit(|i| {
            i.limiter = Arc::new(LocalLimiter::new(clock.clone()));
            i.clock = clock;
        })
    }
    /// Uses `limiter` for the HTTP rate limits (a store-backed one shares
    /// them between instances).
    #[must_use]
    pub fn with_limiter(self, limiter: Arc<dyn RateLimiter>) -> ApiState {
        self.edit(|i| i.limiter = limiter)
    }
    /// Shares `metrics` with the rest of the service.
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> ApiState {
        self.edit(|i| i.metrics = metrics)
    }
    /// Sends verification and reset mail through `outbox`.
    #[must_use]
    pub fn with_outbox(self, outbox: Arc<dyn Outbox>) -> ApiState {
        self.edit(|i| i.outbox = Some(outbox))
    }
    /// Seals DKIM keys and TOTP secrets with `keyring`.
    #[must_use]
    pub fn with_keyring(self, keyring: Arc<Keyring>) -> ApiState {
        self.edit(|i| i.keyring = Some(keyring))
    }
    /// Checks customer domains' DNS through `dns`.
    #[must_use]
    pub fn with_dns(self, dns: Arc<dyn Dns>) -> ApiState {
        self.edit(|i| i.dns = Some(dns))
    }
    /// Reports SMTP readiness through `readiness`.
    #[must_use]
    pub fn with_readiness(self, readiness: Readiness) -> ApiState {
        self.edit(|i| i.readiness = readiness)
    }

    /// Applies `limits` (new aliases per hour per user) to alias creation.
    #[must_use]
    pub fn with_limits(self, limits: Arc<Limits>) -> ApiState {
        self.edit(|i| i.limits = Some(limits))
    }

    /// Mints reverse aliases for contacts with `reverse` (the same keys as
    /// the SMTP side, so they verify there). Without it, creating a contact
    /// answers `503`.
    #[must_use]
    pub fn with_reverse(self, reverse: Arc<ReverseAliases>) -> ApiState {
        self.edit(|i| i.reverse = Some(reverse))
    }

    /// Reads the mail queue through `queue` (`/readyz` backlog, `/metrics`
    /// queue gauges). Without it those checks report no queue.
    #[must_use]
    pub fn with_queue(self, queue: Arc<dyn QueueStore>) -> ApiState {
        self.edit(|i| i.queue = Some(queue))
    }

    /// Reads the runtime feature flags from `features`, shared with the
    /// SMTP side and refreshed from the store by the embedding service.
    /// Without it the state has its own handle with the defaults and
    /// `registration` = [`HttpConfig::open_registration`]. The flags decide
    /// open registration (`registration`) and owner-created contacts
    /// (`send_from_alias`); administrators change them through
    /// `PATCH /api/v1/admin/features`.
    #[must_use]
    pub fn with_features(self, features: Features) -> ApiState {
        self.edit(|i| i.features = features)
    }

    /// Shows the embedding service's effective configuration on the admin
    /// configuration page: `view` is called each time the page is shown.
    /// **The text must already have secrets redacted** (passwords, keys,
    /// tokens); it is shown to administrators as is. Without it the page
    /// says that the embedding service provides none.
    #[must_use]
    pub fn with_config_view(self, view: Arc<dyn Fn() -> String + Send + Sync>) -> ApiState {
        self.edit(|i| i.config_view = Some(view))
    }

    /// The embedding service's effective configuration (secrets redacted),
    /// if it provides one ([`with_config_view`](Self::with_config_view)).
    #[must_use]
    pub fn config_view(&self) -> Option<String> {
        self.inner.config_view.as_ref().map(|view| view())
    }

    /// The feature flags handle.
    #[must_use]
    pub fn features(&self) -> &Features {
        &self.inner.features
    }

    /// The mail queue, if any.
    #[must_use]
    pub fn queue(&self) -> Option<&Arc<dyn QueueStore>> {
        self.inner.queue.as_ref()
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }
    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
    /// The HTTP rate limiter.
    #[must_use]
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.inner.limiter
    }
    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
    /// The outbox, if any.
    #[must_use]
    pub fn outbox(&self) -> Option<&Arc<dyn Outbox>> {
        self.inner.outbox.as_ref()
    }
    /// The keyring, if any.
    #[must_use]
    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.inner.keyring.as_ref()
    }
    /// The DNS seam, if any.
    #[must_use]
    pub fn dns(&self) -> Option<&Arc<dyn Dns>> {
        self.inner.dns.as_ref()
    }
    /// The mail-path limits, if any.
    #[must_use]
    pub fn limits(&self) -> Option<&Arc<Limits>> {
        self.inner.limits.as_ref()
    }
    /// The reverse-alias minter, if any.
    #[must_use]
    pub fn reverse(&self) -> Option<&Arc<ReverseAliases>> {
        self.inner.reverse.as_ref()
    }
    /// The key of stateless tokens ([`HttpConfig::token_key`]); empty when
    /// none could be made (token endpoints then answer `503`).
    #[must_use]
    pub fn token_key(&self) -> &[u8] {
        &self.inner.token_key
    }
    /// The readiness flags.
    #[must_use]
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }
}
