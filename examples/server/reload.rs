//! `SIGHUP`: read the configuration again and apply what can change while
//! the server runs — `[limits]` values, `[features]`, `[log] level` and the
//! `[tls]` certificate files — without dropping a connection. Anything else
//! that changed is reported as needing a restart; a configuration that does
//! not validate is refused and the running one stays.

use std::path::PathBuf;
use std::sync::Arc;

use smtpy::core::limits::Limits;
use smtpy_smtp::policy::MailPolicy;
use smtpy_smtp::server::tls::CertReloader;

use crate::config::{Config, ConfigError, Overrides};

/// Where the configuration came from, to read it again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// The command-line flags.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Loads and validates it (file, environment, flags).
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load_with(self.file.as_deref(), &self.overrides)
    }
}

/// Applies a new `[log] level` directive.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload can change, held by the running server.
pub struct Reloadable {
    /// Where to read the configuration from.
    pub source: ConfigSource,
    /// The configuration in force.
    pub current: Config,
    /// The mail path's policy (its limits).
    pub mail_policy: Arc<MailPolicy>,
    /// The API's limits, when the API runs with limits.
    pub api_limits: Option<Arc<Limits>>,
    /// The STARTTLS certificate, when it comes from files.
    pub tls: Option<CertReloader>,
    /// Applies a new `[log] level`.
    pub set_log_level: SetLogLevel,
    /// Applies new `[features]` values (when no admin choice is stored).
    pub set_features: Box<dyn Fn(&smtpy::core::features::FeatureFlags) + Send + Sync>,
}

/// What one reload did, for the log and for tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What was applied.
    pub applied: Vec<String>,
    /// Changed settings that take effect only after a restart.
    pub need_restart: Vec<String>,
    /// Why the reload (or a part of it) was refused.
    pub refused: Vec<String>,
}

impl Reloadable {
    /// Reads the configuration again and applies what can change.
    pub fn reload(&mut self) -> Outcome {
        let mut out = Outcome::default();
        let next = match self.source.load() {
            Ok(c) => c,
            Err(e) => {
                out.refused
                    .push(format!("{e}; the running configuration stays"));
                return out;
            }
        };
        if next.limits_enabled != self.current.limits_enabled
            || next.limits_shared != self.current.limits_shared
        {
            out.need_restart
                .push("limits.enabled / limits.shared".to_owned());
        }
        if next.limits_enabled && self.current.limits_enabled {
            let policy = crate::policy::limit_policy(&next);
            if policy != crate::policy::limit_policy(&self.current) {
                if let Some(l) = &self.mail_policy.limits {
                    l.set_policy(policy.clone());
                }
                if let Some(l) = &self.api_limits {
                    l.set_policy(policy);
                }
                out.applied.push("limits".to_owned());
            }
        }
        if next.features != self.current.features {
            (self.set_features)(&next.features);
            out.applied.push("features".to_owned());
        }
        if next.log_level != self.current.log_level {
            match (self.set_log_level)(&next.log_level) {
                Ok(()) => out.applied.push(format!("log.level = {}", next.log_level)),
                Err(e) => out.refused.push(format!("log.level: {e}")),
            }
        }
        match (&self.tls, &next.tls_cert_file, &next.tls_key_file) {
            (Some(reloader), Some(cert), Some(key)) => match reloader.reload(cert, key) {
                Ok(()) => out.applied.push("tls certificate".to_owned()),
                Err(e) => out
                    .refused
                    .push(format!("tls: {e}; the certificate in use stays")),
            },
            (None, Some(_), _) | (Some(_), None, _) => {
                out.need_restart.push("tls.cert_file".to_owned());
            }
            _ => {}
        }
        // Everything else: compare the effective configurations without the
        // sections handled above.
        let rest = |c: &Config| {
            let mut t: toml::Table = c.render().parse().unwrap_or_default();
            for handled in ["limits", "features", "log", "tls"] {
                t.remove(handled);
            }
            t
        };
        let (before, after) = (rest(&self.current), rest(&next));
        for (section, value) in &after {
            if before.get(section) != Some(value) {
                out.need_restart.push(section.clone());
            }
        }
        // Keep what was not applied as it runs, so a later reload compares
        // against what is really in force.
        let mut kept = self.current.clone();
        kept.limits = next.limits;
        kept.features = next.features;
        if !out.refused.iter().any(|r| r.starts_with("log.level")) {
            kept.log_level = next.log_level.clone();
        }
        kept.tls_cert_file = next.tls_cert_file.clone().or(kept.tls_cert_file);
        kept.tls_key_file = next.tls_key_file.clone().or(kept.tls_key_file);
        self.current = kept;
        out
    }

    /// Installs the `SIGHUP` handler now (before the server reports itself
    /// running, so an early `SIGHUP` does not end the process) and reloads
    /// on each one, until the task is aborted.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(hup) => hup,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: configuration reload is off");
                    return tokio::spawn(async {});
                }
            };
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let out = self.reload();
                    for r in &out.refused {
                        tracing::error!(problem = %r, "reload refused");
                    }
                    if !out.need_restart.is_empty() {
                        tracing::warn!(
                            sections = %out.need_restart.join(", "),
                            "changed settings that take effect only after a restart"
                        );
                    }
                    if out.refused.is_empty() || !out.applied.is_empty() {
                        tracing::info!(applied = %out.applied.join(", "), "configuration reloaded (SIGHUP)");
                    }
                }
            })
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            tokio::spawn(async {})
        }
    }
}
