//! `server serve`: open the store, start the SMTP listeners and the delivery
//! workers, stop cleanly on SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use smtpy::core::address::DomainName;
use smtpy::core::features::{FeatureFlags, Features};
use smtpy::core::limits::Limits;
use smtpy::core::srs::{Srs, SrsKey};
use smtpy::core::time::{Clock, SystemClock};
use smtpy::core::transport::Transport;
use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker, RetrySchedule};
use smtpy_smtp::server::{Acceptor, ConnectionLimits, Network, SmtpServer, tls};
use smtpy_smtp::session::SessionConfig;
use smtpy_smtp::transport::{
    HickoryDns, HickoryDnsConfig, MxConfig, MxDelivery, RelayConfig, RelayCredentials, SmtpRelay,
    TlsMode,
};
use tokio::sync::watch;

use crate::config::{Config, Relay, RelayScheme, SecretSource};

/// How a command failed: `Usage` exits 2, `Runtime` exits 1.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration or arguments.
    Usage(String),
    /// Anything else.
    Runtime(String),
}

/// The text of a secret: the operator's file, the environment, or (in
/// development) a file generated once into the data directory, readable
/// only by the owner, so it stays the same across restarts.
pub fn secret_text(source: &SecretSource, key: &str) -> Result<String, Failure> {
    match source {
        SecretSource::Env(_, value) => Ok(value.expose().to_owned()),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("{key}: cannot read {}: {e}", path.display()))),
        SecretSource::Generated(path) => read_or_create_secret(path, || {
            Ok(base64::engine::general_purpose::STANDARD.encode(ring_random_32()?))
        }),
    }
}

/// The SRS key: from `srs.secret_file`, `SMTPY_SRS_SECRET`, or generated
/// once into the data directory so bounce addresses stay valid across
/// restarts.
pub fn srs_key(config: &Config) -> Result<SrsKey, Failure> {
    let text = secret_text(&config.srs_secret, "srs.secret_file")?;
    SrsKey::from_base64('a', text.trim()).map_err(|e| {
        Failure::Usage(format!(
            "srs secret ({}): {e} (expected base64 of 32 random bytes)",
            config.srs_secret.describe()
        ))
    })
}

/// The text of the secret file at `path`, created with `generate` (mode
/// 0600) when it does not exist yet.
pub fn read_or_create_secret(
    path: &Path,
    generate: impl FnOnce() -> Result<String, Failure>,
) -> Result<String, Failure> {
    if !path.exists() {
        write_secret(path, generate()?.as_bytes())?;
        tracing::info!(path = %path.display(), "generated a new secret");
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

fn ring_random_32() -> Result<[u8; 32], Failure> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| Failure::Runtime("no system randomness".into()))?;
    Ok(key)
}

/// Writes a new secret file (mode 0600, synced); refuses to overwrite one.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))
}

fn transport(config: &Config) -> Result<Arc<dyn Transport>, Failure> {
    let build =
        |e: smtpy_smtp::transport::TransportBuildError| Failure::Usage(format!("delivery: {e}"));
    // As many connections per destination as messages delivered at once, and
    // keep them open for reuse: a connection per message costs a handshake.
    let pool = smtpy_smtp::transport::PoolConfig::new()
        .max_connections_per_destination(config.concurrency)
        .max_idle_per_destination(config.concurrency);
    match &config.relay {
        Relay::Smarthost { host, port, scheme } => {
            let mode = match scheme {
                RelayScheme::Opportunistic => TlsMode::Opportunistic,
                RelayScheme::StartTls => TlsMode::Required,
                RelayScheme::Implicit => TlsMode::Implicit,
            };
            let mut relay = RelayConfig::new(host.clone(), *port, config.hostname.clone())
                .tls_mode(mode)
                .pool(pool);
            if let Some(user) = &config.relay_username {
                let password = match (&config.relay_password_file, &config.relay_password_env) {
                    (_, Some(secret)) => secret.expose().to_owned(),
                    (Some(file), None) => std::fs::read_to_string(file).map_err(|e| {
                        Failure::Usage(format!(
                            "delivery.relay_password_file: cannot read {}: {e}",
                            file.display()
                        ))
                    })?,
                    (None, None) => {
                        return Err(Failure::Usage(
                            "delivery.relay_username: no password configured".into(),
                        ));
                    }
                };
                relay = relay.credentials(RelayCredentials::new(
                    user.clone(),
                    password.trim_end().to_owned(),
                ));
            }
            Ok(Arc::new(SmtpRelay::new(relay).map_err(build)?))
        }
        Relay::Mx => {
            let dns = HickoryDns::new(&HickoryDnsConfig::system())
                .map_err(|e| Failure::Runtime(format!("DNS resolver: {e}")))?;
            let mut mx = MxConfig::new(config.hostname.clone()).pool(pool);
            for (domain, target) in &config.routes {
                mx = mx.route(domain.clone(), target.clone());
            }
            Ok(Arc::new(MxDelivery::new(mx, Arc::new(dns)).map_err(build)?))
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn serve(
    config: Config,
    source: crate::reload::ConfigSource,
    log: crate::logging::LogHandle,
) -> Result<(), Failure> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Failure::Runtime(format!(
            "data_dir: cannot create {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let handles = crate::cli::open(&config, true).await?;
    let (store, queue) = (Arc::clone(&handles.store), Arc::clone(&handles.queue));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let srs_domain = DomainName::parse(&config.srs_domain)
        .map_err(|e| Failure::Usage(format!("srs.domain: {e}")))?;
    let srs_key = srs_key(&config)?;
    let srs = Arc::new(Srs::new(srs_domain, srs_key.clone()));
    let keyring = Arc::new(crate::policy::keyring(&config)?);
    let limits = crate::policy::limits(&config, &store);
    let policy = Arc::new(crate::policy::build(&config, &srs_key, limits.clone()).await?);
    // The signer follows the store: every domain's keys now, then those
    // created or rotated by the API, the command line or another instance.
    let key_sync = Arc::new(crate::jobs::KeySync::new(
        Arc::clone(&store),
        Arc::clone(&policy),
        Arc::clone(&keyring),
    ));
    let loaded = key_sync.sync().await;
    tracing::info!(domains = loaded, "DKIM keys loaded");
    let control = crate::control::Control::start(&config, handles, Arc::clone(&key_sync))?;
    // One set of metrics for SMTP, delivery and the API's /metrics.
    let metrics = Arc::new(smtpy::core::metrics::Metrics::new());
    let readiness = smtpy_http::Readiness::new().expecting_smtp();
    let (tls, cert_reloader) = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => {
            let (acceptor, reloader) = tls::reloadable_from_pem_files(cert, key)
                .map_err(|e| Failure::Usage(format!("tls: {e}")))?;
            (acceptor, Some(reloader))
        }
        _ => {
            tracing::warn!(
                "no [tls] certificate configured: STARTTLS uses a generated self-signed certificate (development only)"
            );
            let acceptor = tls::self_signed(&config.hostname)
                .map_err(|e| Failure::Runtime(format!("tls: {e}")))?;
            (acceptor, None)
        }
    };

    let mut delivery = DeliveryConfig::new(&config.hostname)
        .map_err(|e| Failure::Usage(format!("hostname: {e}")))?;
    delivery.retry = RetrySchedule::new(config.retry.clone());
    delivery.lifetime = config.expire;
    delivery.lease = config.lease;
    delivery.concurrency = config.concurrency;
    delivery.batch = config.concurrency;
    let worker = DeliveryWorker::new(
        Arc::clone(&queue),
        transport(&config)?,
        Arc::clone(&clock),
        delivery,
    )
    .with_policy(Arc::clone(&store), Arc::clone(&policy))
    .with_metrics(Arc::clone(&metrics));

    // Feature flags: `[features]` until an admin stores a choice through the
    // API; the stored flags then win on every instance (polled below).
    let features = Features::new(config.features);
    match features.load(&*store).await {
        Ok(true) => tracing::info!(
            flags = ?features.get(),
            "feature flags stored by an administrator are in force ([features] is not used)"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored feature flags; using [features]")
        }
    }
    let mut acceptor = Acceptor::new(
        Arc::clone(&store),
        Arc::clone(&queue),
        Arc::clone(&clock),
        config.hostname.clone(),
    )
    .with_srs(srs)
    .with_policy(Arc::clone(&policy))
    .with_limit_exempt(
        config
            .limit_exempt
            .iter()
            .filter_map(|n| Network::parse(n))
            .collect(),
    )
    .with_lifetime(config.expire)
    .with_features(features.clone())
    .with_waker(worker.waker());
    if let Some(pm) = &config.postmaster {
        acceptor = acceptor.with_postmaster(pm.clone());
    }
    let session = SessionConfig::new(config.hostname.clone())
        .with_max_message_size(config.max_message_size)
        .with_max_recipients(config.max_recipients);
    let connection_limits = ConnectionLimits {
        max_connections: config.max_connections,
        max_per_ip: config.max_connections_per_ip,
        rate_per_ip: match config.connections_per_minute_per_ip {
            0 => None,
            n => smtpy::core::gcra::Quota::per_minute(n)
                .and_then(|q| q.with_burst(n.min(20)))
                .ok(),
        },
        exempt: config
            .limit_exempt
            .iter()
            .filter_map(|n| Network::parse(n))
            .collect(),
    };
    let server = SmtpServer::new(session, acceptor, Arc::clone(&clock))
        .with_tls(tls)
        .with_limits(connection_limits)
        .with_metrics(Arc::clone(&metrics));

    let mut listeners = Vec::new();
    for addr in &config.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::Runtime(format!("smtp.listen: cannot listen on {addr}: {e}")))?;
        tracing::info!(%addr, "SMTP listening");
        listeners.push(l);
    }
    let api_limits = limits.as_ref().map(|(limiter, policy)| {
        (
            Arc::clone(limiter),
            Arc::new(Limits::new(Arc::clone(limiter), policy.clone())),
        )
    });
    let reloadable = crate::reload::Reloadable {
        source,
        current: config.clone(),
        mail_policy: Arc::clone(&policy),
        api_limits: api_limits.as_ref().map(|(_, l)| Arc::clone(l)),
        tls: cert_reloader,
        set_log_level: Box::new(move |level: &str| log.set_level(level)),
        set_features: {
            let features = features.clone();
            Box::new(move |values: &FeatureFlags| {
                if features.version() == 0 {
                    features.set(*values);
                } else {
                    tracing::warn!(
                        "[features] changed, but flags stored by an administrator are in force; change them with PATCH /api/v1/admin/features"
                    );
                }
            })
        },
    };
    let api = if config.http.enabled {
        let state = crate::http::state(crate::http::Shared {
            config: &config,
            store: &store,
            queue: &queue,
            clock: &clock,
            metrics: &metrics,
            keyring: &keyring,
            srs_key: &srs_key,
            limits: api_limits,
            policy: &policy,
            wake: worker.waker(),
            readiness: readiness.clone(),
            features: features.clone(),
        })?;
        Some((crate::http::start(&config, state.clone()).await?, state))
    } else {
        None
    };
    let (api, api_state) = match api {
        Some((api, state)) => (Some(api), Some(state)),
        None => (None, None),
    };
    let (stop_smtp, smtp_rx) = watch::channel(false);
    let (stop_worker, worker_rx) = watch::channel(false);
    let worker = worker.spawn(worker_rx);
    let mut servers = tokio::task::JoinSet::new();
    for l in listeners {
        let (server, rx) = (server.clone(), smtp_rx.clone());
        servers.spawn(async move { server.serve(l, rx).await });
    }
    readiness.set_smtp_listening(true);
    // Background jobs, each under a lease (one instance runs a job per
    // interval); `[jobs] enabled = false` leaves them to other instances.
    let (stop_jobs, jobs_rx) = watch::channel(false);
    let jobs = if config.jobs.enabled {
        let scheduler = Arc::new(crate::jobs::scheduler(
            &config, &store, &clock, &metrics, &keyring, api_state,
        ));
        tracing::info!(jobs = ?scheduler.job_names(), holder = scheduler.holder(), "background jobs scheduled");
        Some(scheduler.spawn(jobs_rx))
    } else {
        tracing::info!("[jobs] enabled = false: this instance runs no background jobs");
        None
    };
    // Every instance: signing keys (rotations, domains added elsewhere) and
    // feature flags stored by an administrator (possibly on another instance).
    let refresh = {
        let (store, key_sync, features) =
            (Arc::clone(&store), Arc::clone(&key_sync), features.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                match features.refresh_if_changed(&*store).await {
                    Ok(true) => tracing::info!(flags = ?features.get(), "feature flags changed"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the stored feature flags"),
                }
                key_sync.sync().await;
            }
        })
    };
    let reload = reloadable.spawn();
    tracing::info!(hostname = %config.hostname, store = %redact(&config.store_url), profile = config.profile.as_str(), "smtpy running");
    termination().await;
    control.stop().await;
    tracing::info!("shutting down: refusing new connections, finishing transactions");
    readiness.set_smtp_listening(false);
    if let Some(api) = api {
        api.stop().await;
    }
    let _ = stop_smtp.send(true);
    while servers.join_next().await.is_some() {}
    let _ = stop_worker.send(true);
    worker.join().await;
    let _ = stop_jobs.send(true);
    if let Some(jobs) = jobs {
        let _ = jobs.await;
    }
    refresh.abort();
    reload.abort();
    tracing::info!("stopped");
    Ok(())
}

/// How often each instance looks for feature flags an administrator
/// changed and for domains whose DKIM keys changed.
const POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// A store URL without its password, for logs.
pub fn redact(url: &str) -> String {
    // The password of the userinfo (`user:password@`).
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    // Query parameters that carry secrets (`?password=…`, `sslpassword=…`,
    // `token=…`, …).
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if ["pass", "secret", "token", "key", "auth"]
                        .iter()
                        .any(|w| k.to_ascii_lowercase().contains(w)) =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}{}", masked.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn store_urls_lose_their_secrets() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/smtpy"),
            "postgres://app:***@db:5432/smtpy"
        );
        assert_eq!(
            redact("postgres://db/smtpy?user=app&password=hunter2&sslmode=require"),
            "postgres://db/smtpy?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://db/x?sslpassword=p&auth_token=t"),
            "postgres://db/x?sslpassword=***&auth_token=***"
        );
        assert_eq!(redact("redb://data/smtpy.redb"), "redb://data/smtpy.redb");
    }
}
