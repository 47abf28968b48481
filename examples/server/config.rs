//! The reference server's configuration: a TOML file, then `SMTPY_*`
//! environment overrides, validated into typed settings. Every error names
//! the key, what is wrong, and what a valid value looks like.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use smtpy::core::address::EmailAddress;

pub use crate::logging::LogFormat;
use smtpy::core::features::FeatureFlags;

/// Sections and top-level keys an `SMTPY_*` variable may set. Other
/// `SMTPY_*` variables (say `SMTPY_TEST_POSTGRES_URL`) are not configuration.
const KNOWN: &[&str] = &[
    "profile", "hostname", "data_dir", "smtp", "store", "delivery", "srs", "tls", "auth", "dkim",
    "limits", "bounces", "notify", "aliases", "http", "log", "features", "jobs", "secrets",
];

/// The environment variable holding the secret key (base64 of 32 bytes)
/// that seals DKIM private keys and TOTP secrets at rest, instead of
/// `[secrets] key_file`.
pub const SECRET_KEY_ENV: &str = "SMTPY_SECRET_KEY";

/// The environment variable holding the SRS secret (base64 of 32 bytes),
/// instead of `[srs] secret_file`.
pub const SRS_SECRET_ENV: &str = "SMTPY_SRS_SECRET";

/// The environment variable holding the smarthost password, instead of
/// `[delivery] relay_password_file`.
pub const RELAY_PASSWORD_ENV: &str = "SMTPY_RELAY_PASSWORD";

/// Variables that carry secrets: read once, never printed.
const SECRET_ENVS: &[&str] = &[
    BOOTSTRAP_TOKEN_ENV,
    SECRET_KEY_ENV,
    SRS_SECRET_ENV,
    RELAY_PASSWORD_ENV,
];

/// The environment variable holding the bootstrap token (instead of
/// `[http] bootstrap_token_file`). Only its hash is kept.
pub const BOOTSTRAP_TOKEN_ENV: &str = "SMTPY_HTTP_BOOTSTRAP_TOKEN";

/// A configuration problem: exits with status 2.
#[derive(Debug)]
pub struct ConfigError {
    /// The key, dotted (`smtp.max_recipients`), or the file.
    pub key: String,
    /// What is wrong, and an example of a valid value.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}: {}", self.key, self.problem)
    }
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    profile: Option<String>,
    hostname: Option<String>,
    data_dir: Option<String>,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    srs: RawSrs,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    dkim: RawDkim,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    bounces: RawBounces,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    aliases: RawAliases,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    features: RawFeatures,
    #[serde(default)]
    jobs: RawJobs,
    #[serde(default)]
    secrets: RawSecrets,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    registration: Option<bool>,
    replies: Option<bool>,
    send_from_alias: Option<bool>,
    auto_create: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    enabled: Option<bool>,
    deleted_alias_retention: Option<String>,
    event_retention: Option<String>,
    usage_daily_retention: Option<String>,
    dns_recheck_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
    web: Option<bool>,
    listen: Option<String>,
    public_url: Option<String>,
    tls: Option<bool>,
    open_registration: Option<bool>,
    cors_origins: Option<Vec<String>>,
    bootstrap_token_file: Option<String>,
    token_key_file: Option<String>,
    ready_queue_backlog: Option<u64>,
    api_key_requests_per_minute: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    enabled: Option<bool>,
    dns_records_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    algorithms: Option<Vec<String>>,
    delegate_to: Option<String>,
    publish_delay: Option<String>,
    grace: Option<String>,
    rotate_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    enabled: Option<bool>,
    shared: Option<bool>,
    ip_messages_per_hour: Option<u32>,
    alias_messages_per_hour: Option<u32>,
    user_forwards_per_day: Option<u32>,
    user_replies_per_day: Option<u32>,
    user_aliases_per_hour: Option<u32>,
    sender_domain_messages_per_hour: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    window: Option<String>,
    alias_hard: Option<u32>,
    mailbox_hard: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    enabled: Option<bool>,
    from: Option<String>,
    templates_dir: Option<String>,
    base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAliases {
    sender_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    listen: Option<Vec<String>>,
    max_message_size: Option<u64>,
    max_recipients: Option<u64>,
    postmaster: Option<String>,
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    connections_per_minute_per_ip: Option<u64>,
    limit_exempt: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    cache_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    relay: Option<String>,
    relay_username: Option<String>,
    relay_password_file: Option<String>,
    #[serde(default)]
    routes: BTreeMap<String, String>,
    retry: Option<Vec<String>>,
    expire: Option<String>,
    lease: Option<String>,
    concurrency: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSrs {
    secret_file: Option<String>,
    domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
}

/// Where mail leaves through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// Direct MX delivery.
    Mx,
    /// A smarthost.
    Smarthost {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
        /// `smtp://`: STARTTLS when offered; `smtp+starttls://`: required;
        /// `smtps://`: implicit TLS.
        scheme: RelayScheme,
    },
}

/// How a smarthost is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayScheme {
    /// `smtp://`
    Opportunistic,
    /// `smtp+starttls://`
    StartTls,
    /// `smtps://`
    Implicit,
}

/// How strict validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Generated secrets and a self-signed certificate are fine (the default).
    Development,
    /// Refuses insecure settings (see [`Config::production_problems`]).
    Production,
}

impl Profile {
    fn parse(text: &str) -> Option<Profile> {
        match text {
            "development" | "dev" => Some(Profile::Development),
            "production" | "prod" => Some(Profile::Production),
            _ => None,
        }
    }

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Production => "production",
        }
    }
}

/// `[jobs]`: background jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSettings {
    /// Run the jobs in this instance (default true; with several instances
    /// leases make each job run once per interval anyway).
    pub enabled: bool,
    /// Soft-deleted aliases are purged after this (default 30 days).
    pub deleted_alias_retention: Duration,
    /// Delivery events are kept this long (default 90 days).
    pub event_retention: Duration,
    /// Per-day usage rows older than this are rolled up per month (default 400 days).
    pub usage_daily_retention: Duration,
    /// How often hosted domains' DNS is re-checked (default 6 hours).
    pub dns_recheck_interval: Duration,
}

/// A secret value: never printed (`Debug` shows `<redacted>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file the operator made (`*_file` keys).
    File(PathBuf),
    /// An environment variable (its value, redacted).
    Env(&'static str, Secret),
    /// Generated on first start into the data directory (development).
    Generated(PathBuf),
}

impl SecretSource {
    /// How the source is shown by `check-config` (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(name, _) => format!("environment {name} (<redacted>)"),
            SecretSource::Generated(p) => format!("generated {}", p.display()),
        }
    }
}

/// Command-line flags, which win over the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

impl Overrides {
    fn apply(&self, table: &mut toml::Table) {
        let mut set = |section: Option<&str>, key: &str, value: String| {
            let target = match section {
                None => &mut *table,
                Some(name) => {
                    let entry = table
                        .entry(name.to_owned())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if !entry.is_table() {
                        *entry = toml::Value::Table(toml::Table::new());
                    }
                    match entry.as_table_mut() {
                        Some(t) => t,
                        None => return,
                    }
                }
            };
            target.insert(key.to_owned(), toml::Value::String(value));
        };
        if let Some(p) = &self.profile {
            set(None, "profile", p.clone());
        }
        if let Some(d) = &self.data_dir {
            set(None, "data_dir", d.display().to_string());
        }
        if let Some(f) = &self.log_format {
            set(Some("log"), "format", f.clone());
        }
        if let Some(l) = &self.log_level {
            set(Some("log"), "level", l.clone());
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `profile`.
    pub profile: Profile,
    /// `[log] format`.
    pub log_format: LogFormat,
    /// `[log] level`: a tracing filter directive (`info`, `smtpy=debug`).
    pub log_level: String,
    /// `[features]`: the initial feature flags. An admin's runtime choice
    /// (`PATCH /api/v1/admin/features`, stored and shared by every
    /// instance) wins over these once made.
    pub features: FeatureFlags,
    /// `[jobs]`.
    pub jobs: JobSettings,
    /// The key sealing DKIM private keys and TOTP secrets at rest.
    pub secret_key: SecretSource,
    /// The SRS secret.
    pub srs_secret: SecretSource,
    /// `SMTPY_RELAY_PASSWORD`, when the smarthost password comes from the environment.
    pub relay_password_env: Option<Secret>,
    pub hostname: String,
    pub data_dir: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub postmaster: Option<EmailAddress>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// 0 = no rate limit.
    pub connections_per_minute_per_ip: u32,
    pub limit_exempt: Vec<String>,
    pub store_url: String,
    pub store_cache_size: usize,
    pub relay: Relay,
    pub relay_username: Option<String>,
    pub relay_password_file: Option<PathBuf>,
    pub routes: Vec<(String, String)>,
    pub retry: Vec<Duration>,
    pub expire: Duration,
    pub lease: Duration,
    pub concurrency: usize,
    pub srs_domain: String,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// `[auth]`: verify SPF/DKIM/DMARC/ARC of incoming mail.
    pub auth_enabled: bool,
    /// `[auth] dns_records_file`: answer authentication lookups from this
    /// TOML file only (offline operation, tests).
    pub auth_dns_records_file: Option<PathBuf>,
    /// `[dkim] algorithms`: keys generated per domain (dual signing when both).
    pub dkim_algorithms: Vec<smtpy::core::model::DkimAlgorithm>,
    /// `[dkim] delegate_to`: the service domain customers CNAME their selectors to.
    pub dkim_delegate_to: Option<String>,
    /// `[dkim] publish_delay`.
    pub dkim_publish_delay: Duration,
    /// `[dkim] grace`.
    pub dkim_grace: Duration,
    /// `[dkim] rotate_every`: start a rotation when a domain's signing keys
    /// are this old (the `dkim-rotation` job); `None`: rotations start only
    /// by command (`dkim rotate`).
    pub dkim_rotate_every: Option<Duration>,
    /// `[limits] enabled`.
    pub limits_enabled: bool,
    /// `[limits] shared`: keep limiter state in the store (several instances).
    pub limits_shared: bool,
    /// `[limits]` values.
    pub limits: LimitValues,
    /// `[bounces]`.
    pub bounce_window: Duration,
    /// `[bounces] alias_hard`.
    pub bounce_alias_hard: u32,
    /// `[bounces] mailbox_hard`.
    pub bounce_mailbox_hard: u32,
    /// `[notify] enabled`.
    pub notify_enabled: bool,
    /// `[notify] from`.
    pub notify_from: EmailAddress,
    /// `[notify] templates_dir`.
    pub notify_templates_dir: Option<PathBuf>,
    /// `[notify] base_url`.
    pub notify_base_url: Option<String>,
    /// `[aliases] sender_format`.
    pub sender_format: String,
    /// `[http]`.
    pub http: HttpSettings,
}

/// `[http]`: the API.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `enabled` (default true).
    pub enabled: bool,
    /// `web`: serve the web interface beside the API (default true).
    pub web: bool,
    /// `listen` (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `public_url`: how people reach the API (no trailing slash).
    pub public_url: Option<String>,
    /// `tls`: requests arrive over TLS (a proxy terminates it).
    pub tls: bool,
    /// `open_registration` (default false).
    pub open_registration: bool,
    /// `cors_origins` (default none).
    pub cors_origins: Vec<String>,
    /// The hash of the bootstrap token (`bootstrap_token_file` or
    /// `SMTPY_HTTP_BOOTSTRAP_TOKEN`); the token itself is not kept.
    pub bootstrap_token_hash: Option<smtpy::core::model::SecretHash>,
    /// `token_key_file`: key of stateless tokens; default
    /// `data_dir/token.key`, generated when absent.
    pub token_key_file: Option<PathBuf>,
    /// `ready_queue_backlog` (default 10000).
    pub ready_queue_backlog: u64,
    /// `api_key_requests_per_minute` (default 600).
    pub api_key_requests_per_minute: u32,
    /// `trusted_proxies`: reverse proxies whose `X-Forwarded-For` is
    /// believed (default none).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The shortest bootstrap token accepted.
const MIN_BOOTSTRAP_TOKEN: usize = 24;

fn http_settings(raw: RawHttp, env_token: Option<String>) -> Result<HttpSettings, ConfigError> {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
        err(
            "http.listen",
            format!("{listen_text:?} is not an IP:port; example: listen = \"127.0.0.1:8080\""),
        )
    })?;
    let public_url = match raw.public_url {
        None => None,
        Some(u) => {
            let trimmed = u.trim_end_matches('/').to_owned();
            let scheme_ok = trimmed.starts_with("https://") || trimmed.starts_with("http://");
            let host = trimmed.split_once("://").map_or("", |(_, h)| h);
            if !scheme_ok || host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                return Err(err(
                    "http.public_url",
                    format!(
                        "{u:?} is not an origin (scheme and host, no path); example: public_url = \"https://mail.example.org\""
                    ),
                ));
            }
            Some(trimmed)
        }
    };
    let cors_origins = raw.cors_origins.unwrap_or_default();
    for o in &cors_origins {
        if !(o.starts_with("https://") || o.starts_with("http://"))
            || o.ends_with('/')
            || o.contains(['*', ' '])
        {
            return Err(err(
                "http.cors_origins",
                format!(
                    "{o:?} is not an origin; example: cors_origins = [\"https://app.example.org\"]"
                ),
            ));
        }
    }
    let token = match (&raw.bootstrap_token_file, env_token) {
        (Some(_), Some(_)) => {
            return Err(err(
                "http.bootstrap_token_file",
                format!("set either bootstrap_token_file or {BOOTSTRAP_TOKEN_ENV}, not both"),
            ));
        }
        (Some(file), None) => Some((
            "http.bootstrap_token_file",
            std::fs::read_to_string(file)
                .map_err(|e| {
                    err(
                        "http.bootstrap_token_file",
                        format!("cannot read {file}: {e}"),
                    )
                })?
                .trim()
                .to_owned(),
        )),
        (None, Some(t)) => Some((BOOTSTRAP_TOKEN_ENV, t.trim().to_owned())),
        (None, None) => None,
    };
    let bootstrap_token_hash = match token {
        None => None,
        Some((key, t)) if t.chars().count() < MIN_BOOTSTRAP_TOKEN => {
            return Err(err(
                key,
                format!(
                    "the bootstrap token must be at least {MIN_BOOTSTRAP_TOKEN} characters; make one with: openssl rand -hex 32"
                ),
            ));
        }
        Some((_, t)) => Some(smtpy::core::model::SecretHash::of(t.as_bytes())),
    };
    let ready_queue_backlog = raw.ready_queue_backlog.unwrap_or(10_000);
    if ready_queue_backlog == 0 {
        return Err(err(
            "http.ready_queue_backlog",
            "must be at least 1; example: ready_queue_backlog = 10000",
        ));
    }
    let api_key_requests_per_minute = u32::try_from(raw.api_key_requests_per_minute.unwrap_or(600))
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| {
            err(
                "http.api_key_requests_per_minute",
                "must be between 1 and 1000000; example: api_key_requests_per_minute = 600",
            )
        })?;
    let mut trusted_proxies = Vec::new();
    for p in raw.trusted_proxies.unwrap_or_default() {
        let ip = p.parse::<std::net::IpAddr>().map_err(|_| {
            err(
                "http.trusted_proxies",
                format!("{p:?} is not an IP address; example: trusted_proxies = [\"127.0.0.1\"]"),
            )
        })?;
        trusted_proxies.push(ip);
    }
    Ok(HttpSettings {
        enabled: raw.enabled.unwrap_or(true),
        web: raw.web.unwrap_or(true),
        listen,
        public_url,
        tls: raw.tls.unwrap_or(false),
        open_registration: raw.open_registration.unwrap_or(false),
        cors_origins,
        bootstrap_token_hash,
        token_key_file: raw.token_key_file.map(PathBuf::from),
        ready_queue_backlog,
        api_key_requests_per_minute,
        trusted_proxies,
    })
}

/// `[limits]` numbers (per hour / per day as named).
#[derive(Debug, Clone, Copy)]
pub struct LimitValues {
    pub ip_messages_per_hour: u32,
    pub alias_messages_per_hour: u32,
    pub user_forwards_per_day: u32,
    pub user_replies_per_day: u32,
    pub user_aliases_per_hour: u32,
    pub sender_domain_messages_per_hour: u32,
}

/// Parses `"90s"`, `"5m"`, `"2h"`, `"5d"` (also `"1500ms"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// `90s`, `5m`, `2h`, `7d`: the largest unit that divides the duration.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A TOML value from an environment variable: arrays, numbers and booleans
/// as TOML; anything else as a string.
fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Applies `SMTPY_<SECTION>__<KEY>` (and `SMTPY_<KEY>` for top-level keys).
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("SMTPY_") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !KNOWN.contains(&path[0].as_str()) {
            continue;
        }
        let key = path.join(".");
        let mut cursor = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = cursor
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().ok_or_else(|| {
                err(
                    &key,
                    format!("{name} sets a key inside `{part}`, which is not a section"),
                )
            })?;
        }
        cursor.insert(path[path.len() - 1].clone(), env_value(&value));
    }
    Ok(())
}

/// Secret values from the environment (`SECRET_ENVS`), by name.
type EnvSecrets = BTreeMap<&'static str, String>;

impl Config {
    /// Reads `file` (if any), applies the environment and then the
    /// command-line flags, validates.
    pub fn load_with(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load_with_from(file, overrides, std::env::vars())
    }

    /// [`load_with`](Self::load_with) with explicit environment variables.
    pub fn load_with_from(
        file: Option<&Path>,
        overrides: &Overrides,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    err(
                        &path.display().to_string(),
                        format!("cannot read the file: {e}"),
                    )
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    err(
                        &path.display().to_string(),
                        format!("not valid TOML: {}", e.message()),
                    )
                })?
            }
            None => toml::Table::new(),
        };
        let vars: Vec<(String, String)> = vars.collect();
        let mut secrets = EnvSecrets::new();
        for name in SECRET_ENVS {
            if let Some((_, v)) = vars.iter().find(|(k, v)| k == name && !v.trim().is_empty()) {
                secrets.insert(name, v.trim().to_owned());
            }
        }
        let rust_log = vars
            .iter()
            .find(|(k, v)| k == "RUST_LOG" && !v.trim().is_empty())
            .map(|(_, v)| v.clone());
        apply_env(&mut table, vars.into_iter())?;
        overrides.apply(&mut table);
        let raw: Raw = Raw::deserialize(toml::Value::Table(table)).map_err(|e| {
            let msg = e.to_string();
            err("config", msg.trim().replace('\n', " "))
        })?;
        let config = Self::validate(raw, secrets, rust_log)?;
        if config.profile == Profile::Production {
            let problems = config.production_problems();
            match problems.len() {
                0 => {}
                1 => {
                    return Err(problems
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| err("profile", "")));
                }
                n => {
                    let mut text = format!("the production profile refuses {n} settings:");
                    for p in &problems {
                        text.push_str(&format!("\n  - {}: {}", p.key, p.problem));
                    }
                    return Err(err(&problems[0].key, text));
                }
            }
        }
        Ok(config)
    }

    /// The effective configuration as TOML, for `check-config`: every key
    /// with its value after defaults, environment and flags. Secrets are
    /// shown by source (`file …`, `environment … (<redacted>)`), never by
    /// value, and a store URL's password is masked.
    pub fn render(&self) -> String {
        use toml::Value as V;
        fn s(v: impl ToString) -> V {
            V::String(v.to_string())
        }
        fn d(v: Duration) -> V {
            V::String(format_duration(v))
        }
        fn n(v: impl TryInto<i64>) -> V {
            V::Integer(v.try_into().unwrap_or(i64::MAX))
        }
        fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> V {
            V::Array(items.into_iter().map(|i| s(i)).collect())
        }
        fn opt<T: std::fmt::Display>(v: &Option<T>) -> V {
            v.as_ref()
                .map_or_else(|| s("(not set)"), |x| s(x.to_string()))
        }
        fn path(v: &Option<PathBuf>) -> V {
            v.as_ref()
                .map_or_else(|| s("(not set)"), |p| s(p.display()))
        }
        let mut t = toml::Table::new();
        let mut section = |name: &str, entries: Vec<(&str, V)>| {
            let mut table = toml::Table::new();
            for (k, v) in entries {
                table.insert(k.to_owned(), v);
            }
            t.insert(name.to_owned(), V::Table(table));
        };
        section(
            "smtp",
            vec![
                ("listen", list(&self.listen)),
                ("max_message_size", n(self.max_message_size as u64)),
                ("max_recipients", n(self.max_recipients as u64)),
                ("postmaster", opt(&self.postmaster)),
                ("max_connections", n(self.max_connections as u64)),
                (
                    "max_connections_per_ip",
                    n(self.max_connections_per_ip as u64),
                ),
                (
                    "connections_per_minute_per_ip",
                    n(self.connections_per_minute_per_ip),
                ),
                ("limit_exempt", list(&self.limit_exempt)),
            ],
        );
        section(
            "store",
            vec![
                ("url", s(crate::run::redact(&self.store_url))),
                ("cache_size", n(self.store_cache_size as u64)),
            ],
        );
        let relay = match &self.relay {
            Relay::Mx => "(direct MX)".to_owned(),
            Relay::Smarthost { host, port, scheme } => {
                let scheme = match scheme {
                    RelayScheme::Opportunistic => "smtp",
                    RelayScheme::StartTls => "smtp+starttls",
                    RelayScheme::Implicit => "smtps",
                };
                format!("{scheme}://{host}:{port}")
            }
        };
        let relay_password = match (&self.relay_password_file, &self.relay_password_env) {
            (_, Some(_)) => format!("environment {RELAY_PASSWORD_ENV} (<redacted>)"),
            (Some(p), None) => format!("file {}", p.display()),
            (None, None) => "(not set)".to_owned(),
        };
        section(
            "delivery",
            vec![
                ("relay", s(relay)),
                ("relay_username", opt(&self.relay_username)),
                ("relay_password", s(relay_password)),
                (
                    "routes",
                    list(self.routes.iter().map(|(d, t)| format!("{d} -> {t}"))),
                ),
                (
                    "retry",
                    V::Array(self.retry.iter().map(|r| d(*r)).collect()),
                ),
                ("expire", d(self.expire)),
                ("lease", d(self.lease)),
                ("concurrency", n(self.concurrency as u64)),
            ],
        );
        section(
            "srs",
            vec![
                ("secret", s(self.srs_secret.describe())),
                ("domain", s(&self.srs_domain)),
            ],
        );
        section("secrets", vec![("key", s(self.secret_key.describe()))]);
        section(
            "tls",
            vec![
                ("cert_file", path(&self.tls_cert_file)),
                ("key_file", path(&self.tls_key_file)),
            ],
        );
        section(
            "auth",
            vec![
                ("enabled", V::Boolean(self.auth_enabled)),
                ("dns_records_file", path(&self.auth_dns_records_file)),
            ],
        );
        section(
            "dkim",
            vec![
                (
                    "algorithms",
                    list(self.dkim_algorithms.iter().map(|a| match a {
                        smtpy::core::model::DkimAlgorithm::Ed25519 => "ed25519",
                        _ => "rsa",
                    })),
                ),
                ("delegate_to", opt(&self.dkim_delegate_to)),
                ("publish_delay", d(self.dkim_publish_delay)),
                ("grace", d(self.dkim_grace)),
                (
                    "rotate_every",
                    self.dkim_rotate_every.map_or_else(|| s("(not set)"), d),
                ),
            ],
        );
        let l = &self.limits;
        section(
            "limits",
            vec![
                ("enabled", V::Boolean(self.limits_enabled)),
                ("shared", V::Boolean(self.limits_shared)),
                ("ip_messages_per_hour", n(l.ip_messages_per_hour)),
                ("alias_messages_per_hour", n(l.alias_messages_per_hour)),
                ("user_forwards_per_day", n(l.user_forwards_per_day)),
                ("user_replies_per_day", n(l.user_replies_per_day)),
                ("user_aliases_per_hour", n(l.user_aliases_per_hour)),
                (
                    "sender_domain_messages_per_hour",
                    n(l.sender_domain_messages_per_hour),
                ),
            ],
        );
        section(
            "bounces",
            vec![
                ("window", d(self.bounce_window)),
                ("alias_hard", n(self.bounce_alias_hard)),
                ("mailbox_hard", n(self.bounce_mailbox_hard)),
            ],
        );
        section(
            "notify",
            vec![
                ("enabled", V::Boolean(self.notify_enabled)),
                ("from", s(&self.notify_from)),
                ("templates_dir", path(&self.notify_templates_dir)),
                ("base_url", opt(&self.notify_base_url)),
            ],
        );
        section("aliases", vec![("sender_format", s(&self.sender_format))]);
        let h = &self.http;
        section(
            "http",
            vec![
                ("enabled", V::Boolean(h.enabled)),
                ("web", V::Boolean(h.web)),
                ("listen", s(h.listen)),
                ("public_url", opt(&h.public_url)),
                ("tls", V::Boolean(h.tls)),
                ("cors_origins", list(&h.cors_origins)),
                (
                    "bootstrap_token",
                    s(if h.bootstrap_token_hash.is_some() {
                        "set (<redacted>)"
                    } else {
                        "(not set)"
                    }),
                ),
                ("token_key_file", path(&h.token_key_file)),
                ("ready_queue_backlog", n(h.ready_queue_backlog)),
                (
                    "api_key_requests_per_minute",
                    n(h.api_key_requests_per_minute),
                ),
                ("trusted_proxies", list(&h.trusted_proxies)),
            ],
        );
        section(
            "log",
            vec![
                (
                    "format",
                    s(match self.log_format {
                        LogFormat::Pretty => "pretty",
                        LogFormat::Json => "json",
                    }),
                ),
                ("level", s(&self.log_level)),
            ],
        );
        let f = &self.features;
        section(
            "features",
            vec![
                ("registration", V::Boolean(f.registration)),
                ("replies", V::Boolean(f.replies)),
                ("send_from_alias", V::Boolean(f.send_from_alias)),
                ("auto_create", V::Boolean(f.auto_create)),
            ],
        );
        let j = &self.jobs;
        section(
            "jobs",
            vec![
                ("enabled", V::Boolean(j.enabled)),
                ("deleted_alias_retention", d(j.deleted_alias_retention)),
                ("event_retention", d(j.event_retention)),
                ("usage_daily_retention", d(j.usage_daily_retention)),
                ("dns_recheck_interval", d(j.dns_recheck_interval)),
            ],
        );
        let head = format!(
            "# effective configuration (profile {}); secrets are shown by source only\nprofile = \"{}\"\nhostname = \"{}\"\ndata_dir = \"{}\"\n\n",
            self.profile.as_str(),
            self.profile.as_str(),
            self.hostname,
            self.data_dir.display()
        );
        head + &toml::to_string(&t).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// What the production profile refuses in this configuration (each
    /// with the key and the fix). Empty when it would start.
    pub fn production_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.tls_cert_file.is_none() {
            problems.push(err(
                "tls.cert_file",
                "production needs a real certificate for STARTTLS (no self-signed fallback); example: [tls] cert_file = \"/etc/smtpy/fullchain.pem\", key_file = \"/etc/smtpy/privkey.pem\"",
            ));
        }
        if matches!(self.srs_secret, SecretSource::Generated(_)) {
            problems.push(err(
                "srs.secret_file",
                format!("production needs the SRS secret from the operator (shared by every instance): set [srs] secret_file = \"/etc/smtpy/srs.key\" or {SRS_SECRET_ENV} (base64 of 32 random bytes: openssl rand -base64 32)"),
            ));
        }
        if matches!(self.secret_key, SecretSource::Generated(_)) {
            problems.push(err(
                "secrets.key_file",
                format!("production needs the key that seals DKIM private keys at rest from the operator (shared by every instance): set [secrets] key_file = \"/etc/smtpy/secret.key\" or {SECRET_KEY_ENV} (base64 of 32 random bytes: openssl rand -base64 32)"),
            ));
        }
        if self.features.registration && !self.limits_enabled {
            problems.push(err(
                "features.registration",
                "open registration with [limits] enabled = false lets anyone create accounts that forward without limits; set [limits] enabled = true or registration = false",
            ));
        }
        if !self.http.tls && self.http.enabled && !self.http.listen.ip().is_loopback() {
            problems.push(err(
                "http.listen",
                format!("the API listens on {} without TLS: passwords and keys would cross the network in clear; put a TLS proxy in front and set [http] tls = true, or listen = \"127.0.0.1:8080\"", self.http.listen),
            ));
        }
        if self.auth_dns_records_file.is_some() {
            problems.push(err(
                "auth.dns_records_file",
                "answers SPF/DKIM/DMARC lookups from a file (a test seam); remove it in production so the real DNS is asked",
            ));
        }
        problems
    }

    fn validate(
        raw: Raw,
        secrets: EnvSecrets,
        rust_log: Option<String>,
    ) -> Result<Config, ConfigError> {
        let env_token = secrets.get(BOOTSTRAP_TOKEN_ENV).cloned();
        let profile = match raw.profile.as_deref() {
            None => Profile::Development,
            Some(p) => Profile::parse(p).ok_or_else(|| {
                err(
                    "profile",
                    format!("{p:?} is not a profile; example: profile = \"production\" (or \"development\")"),
                )
            })?,
        };
        let log_format = match raw.log.format.as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(err(
                    "log.format",
                    format!(
                        "{other:?} is not a log format; example: format = \"json\" (or \"pretty\")"
                    ),
                ));
            }
        };
        // `RUST_LOG` is the default a developer expects; `[log] level` wins.
        let log_level = raw.log.level.or(rust_log).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err()
            || log_level.trim().is_empty()
        {
            return Err(err(
                "log.level",
                format!(
                    "{log_level:?} is not a log filter; examples: level = \"info\", level = \"warn,smtpy_smtp=debug\""
                ),
            ));
        }
        let hostname = raw.hostname.unwrap_or_else(|| "localhost".into());
        smtpy::core::address::DomainName::parse(&hostname).map_err(|e| {
            err(
                "hostname",
                format!("{e}; example: hostname = \"mx.example.org\""),
            )
        })?;
        let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "smtpy-data".into()));

        let listen_raw = raw
            .smtp
            .listen
            .unwrap_or_else(|| vec!["127.0.0.1:2525".into()]);
        if listen_raw.is_empty() {
            return Err(err(
                "smtp.listen",
                "needs at least one address; example: listen = [\"0.0.0.0:25\"]",
            ));
        }
        let listen = listen_raw
            .iter()
            .map(|a| {
                a.parse::<SocketAddr>().map_err(|_| {
                    err(
                        "smtp.listen",
                        format!("{a:?} is not an IP:port; example: listen = [\"127.0.0.1:2525\"]"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_message_size = raw.smtp.max_message_size.unwrap_or(25 * 1024 * 1024);
        if !(1024..=1 << 30).contains(&max_message_size) {
            return Err(err(
                "smtp.max_message_size",
                "must be between 1024 and 1073741824 bytes; example: max_message_size = 26214400",
            ));
        }
        let max_recipients = raw.smtp.max_recipients.unwrap_or(100);
        if !(1..=10_000).contains(&max_recipients) {
            return Err(err(
                "smtp.max_recipients",
                "must be between 1 and 10000; example: max_recipients = 100",
            ));
        }
        let postmaster = raw
            .smtp
            .postmaster
            .map(|p| {
                EmailAddress::parse(&p).map_err(|e| {
                    err(
                        "smtp.postmaster",
                        format!("{e}; example: postmaster = \"admin@example.org\""),
                    )
                })
            })
            .transpose()?;

        let max_connections = raw.smtp.max_connections.unwrap_or(1000);
        if !(1..=100_000).contains(&max_connections) {
            return Err(err(
                "smtp.max_connections",
                "must be between 1 and 100000; example: max_connections = 1000",
            ));
        }
        let max_connections_per_ip = raw.smtp.max_connections_per_ip.unwrap_or(20);
        if !(1..=100_000).contains(&max_connections_per_ip) {
            return Err(err(
                "smtp.max_connections_per_ip",
                "must be between 1 and 100000; example: max_connections_per_ip = 20",
            ));
        }
        let connections_per_minute_per_ip = raw.smtp.connections_per_minute_per_ip.unwrap_or(60);
        let connections_per_minute_per_ip = u32::try_from(connections_per_minute_per_ip)
            .ok()
            .filter(|n| *n <= 60_000)
            .ok_or_else(|| err("smtp.connections_per_minute_per_ip", "must be between 0 (off) and 60000; example: connections_per_minute_per_ip = 60"))?;
        let limit_exempt = raw
            .smtp
            .limit_exempt
            .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()]);
        for n in &limit_exempt {
            if smtpy_smtp::server::Network::parse(n).is_none() {
                return Err(err(
                    "smtp.limit_exempt",
                    format!(
                        "{n:?} is not a network; example: limit_exempt = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"
                    ),
                ));
            }
        }

        let store_url = raw
            .store
            .url
            .unwrap_or_else(|| format!("redb://{}", data_dir.join("smtpy.redb").display()));
        if ![
            "redb://",
            "sqlite://",
            "sqlite:",
            "postgres://",
            "postgresql://",
        ]
        .iter()
        .any(|p| store_url.starts_with(p))
        {
            return Err(err(
                "store.url",
                format!(
                    "{store_url:?} is not a store URL; examples: \"redb:///var/lib/smtpy/smtpy.redb\", \"sqlite:///var/lib/smtpy/smtpy.db\", \"postgres://smtpy@db/mail\""
                ),
            ));
        }

        let store_cache_size = raw.store.cache_size.unwrap_or(32 * 1024 * 1024);
        if !(1024 * 1024..=1 << 40).contains(&store_cache_size) {
            return Err(err(
                "store.cache_size",
                "must be at least 1048576 bytes; example: cache_size = 33554432",
            ));
        }
        let relay = match raw.delivery.relay.as_deref() {
            None | Some("") => Relay::Mx,
            Some(url) => parse_relay(url)?,
        };
        let mut routes = Vec::new();
        for (domain, target) in raw.delivery.routes {
            smtpy::core::address::DomainName::parse(&domain).map_err(|e| {
                err(
                    &format!("delivery.routes.{domain}"),
                    format!("{e}; example: routes = {{ \"example.net\" = \"10.0.0.5:25\" }}"),
                )
            })?;
            if target
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(err(
                    &format!("delivery.routes.{domain}"),
                    format!("{target:?} is not host:port; example: \"127.0.0.1:2526\""),
                ));
            }
            routes.push((domain, target));
        }
        let retry = match raw.delivery.retry {
            None => vec![
                Duration::from_secs(120),
                Duration::from_secs(300),
                Duration::from_secs(600),
                Duration::from_secs(900),
                Duration::from_secs(1800),
                Duration::from_secs(3600),
                Duration::from_secs(7200),
            ],
            Some(list) if list.is_empty() => {
                return Err(err("delivery.retry", "needs at least one duration; example: retry = [\"2m\", \"5m\", \"1h\"]"));
            }
            Some(list) => list
                .iter()
                .map(|d| {
                    parse_duration(d).filter(|d| !d.is_zero()).ok_or_else(|| {
                        err("delivery.retry", format!("{d:?} is not a duration; write e.g. \"30s\", \"5m\", \"2h\", \"1d\""))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let expire = match raw.delivery.expire {
            None => Duration::from_secs(5 * 86_400),
            Some(d) => parse_duration(&d).filter(|d| !d.is_zero()).ok_or_else(|| {
                err(
                    "delivery.expire",
                    format!("{d:?} is not a duration; example: expire = \"5d\""),
                )
            })?,
        };
        let lease = match raw.delivery.lease {
            None => Duration::from_secs(300),
            Some(d) => parse_duration(&d)
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    err(
                        "delivery.lease",
                        format!("{d:?} is not a duration of at least 1s; example: lease = \"5m\""),
                    )
                })?,
        };
        let concurrency = raw.delivery.concurrency.unwrap_or(32);
        if !(1..=1024).contains(&concurrency) {
            return Err(err(
                "delivery.concurrency",
                "must be between 1 and 1024; example: concurrency = 32",
            ));
        }
        let relay_password_env = secrets.get(RELAY_PASSWORD_ENV).cloned().map(Secret);
        if raw.delivery.relay_password_file.is_some() && relay_password_env.is_some() {
            return Err(err(
                "delivery.relay_password_file",
                format!("set either relay_password_file or {RELAY_PASSWORD_ENV}, not both"),
            ));
        }
        let has_password =
            raw.delivery.relay_password_file.is_some() || relay_password_env.is_some();
        if raw.delivery.relay_username.is_some() != has_password {
            return Err(err(
                "delivery.relay_username",
                format!(
                    "relay_username goes with a password: relay_password_file or {RELAY_PASSWORD_ENV}"
                ),
            ));
        }
        let srs_domain = raw.srs.domain.unwrap_or_else(|| hostname.clone());
        smtpy::core::address::DomainName::parse(&srs_domain).map_err(|e| {
            err(
                "srs.domain",
                format!("{e}; example: domain = \"bounce.example.org\""),
            )
        })?;
        if raw.tls.cert_file.is_some() != raw.tls.key_file.is_some() {
            return Err(err("tls.cert_file", "cert_file and key_file go together"));
        }
        let auth_enabled = raw.auth.enabled.unwrap_or(true);
        let dkim_algorithms = raw
            .dkim
            .algorithms
            .unwrap_or_else(|| vec!["ed25519".into(), "rsa".into()])
            .iter()
            .map(|a| match a.as_str() {
                "ed25519" => Ok(smtpy::core::model::DkimAlgorithm::Ed25519),
                "rsa" | "rsa2048" => Ok(smtpy::core::model::DkimAlgorithm::Rsa2048),
                other => Err(err(
                    "dkim.algorithms",
                    format!("{other:?} is not one of \"ed25519\", \"rsa\"; example: algorithms = [\"ed25519\", \"rsa\"]"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if dkim_algorithms.is_empty() {
            return Err(err(
                "dkim.algorithms",
                "needs at least one algorithm; example: algorithms = [\"ed25519\", \"rsa\"]",
            ));
        }
        if let Some(d) = &raw.dkim.delegate_to {
            smtpy::core::address::DomainName::parse(d).map_err(|e| {
                err(
                    "dkim.delegate_to",
                    format!("{e}; example: delegate_to = \"dkim.example.net\""),
                )
            })?;
        }
        let duration = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(v) => parse_duration(&v).ok_or_else(|| {
                err(
                    key,
                    format!(
                        "{v:?} is not a duration; example: {} = \"7d\"",
                        key.rsplit('.').next().unwrap_or(key)
                    ),
                )
            }),
        };
        let dkim_publish_delay = duration(
            "dkim.publish_delay",
            raw.dkim.publish_delay,
            Duration::from_secs(48 * 3600),
        )?;
        let dkim_grace = duration(
            "dkim.grace",
            raw.dkim.grace,
            Duration::from_secs(7 * 86_400),
        )?;
        let dkim_rotate_every = match raw.dkim.rotate_every {
            None => None,
            Some(v) => Some(
                parse_duration(&v)
                    .filter(|d| *d >= Duration::from_secs(86_400))
                    .ok_or_else(|| {
                        err(
                            "dkim.rotate_every",
                            format!("{v:?} is not a duration of at least 1d; example: rotate_every = \"180d\""),
                        )
                    })?,
            ),
        };
        let positive = |key: &str, v: Option<u32>, default: u32| match v {
            Some(0) => Err(err(
                key,
                format!(
                    "must be at least 1; example: {} = {default}",
                    key.rsplit('.').next().unwrap_or(key)
                ),
            )),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let limits = LimitValues {
            ip_messages_per_hour: positive(
                "limits.ip_messages_per_hour",
                raw.limits.ip_messages_per_hour,
                600,
            )?,
            alias_messages_per_hour: positive(
                "limits.alias_messages_per_hour",
                raw.limits.alias_messages_per_hour,
                200,
            )?,
            user_forwards_per_day: positive(
                "limits.user_forwards_per_day",
                raw.limits.user_forwards_per_day,
                2000,
            )?,
            user_replies_per_day: positive(
                "limits.user_replies_per_day",
                raw.limits.user_replies_per_day,
                500,
            )?,
            user_aliases_per_hour: positive(
                "limits.user_aliases_per_hour",
                raw.limits.user_aliases_per_hour,
                100,
            )?,
            sender_domain_messages_per_hour: positive(
                "limits.sender_domain_messages_per_hour",
                raw.limits.sender_domain_messages_per_hour,
                10_000,
            )?,
        };
        let bounce_window = duration(
            "bounces.window",
            raw.bounces.window,
            Duration::from_secs(7 * 86_400),
        )?;
        let bounce_alias_hard = positive("bounces.alias_hard", raw.bounces.alias_hard, 5)?;
        let bounce_mailbox_hard = positive("bounces.mailbox_hard", raw.bounces.mailbox_hard, 3)?;
        let notify_from = match raw.notify.from {
            Some(f) => EmailAddress::parse(&f).map_err(|e| {
                err(
                    "notify.from",
                    format!("{e}; example: from = \"notifications@example.org\""),
                )
            })?,
            None => EmailAddress::parse(&format!("notifications@{hostname}"))
                .map_err(|e| err("hostname", e.to_string()))?,
        };
        let sender_format = raw
            .aliases
            .sender_format
            .unwrap_or_else(|| "{name} via smtpy".into());
        if sender_format.len() > 200 || sender_format.contains(['\r', '\n']) {
            return Err(err(
                "aliases.sender_format",
                "at most 200 characters on one line; example: sender_format = \"{name} via smtpy\"",
            ));
        }
        let mut http = http_settings(raw.http, env_token)?;
        let registration = match (raw.features.registration, http.open_registration) {
            (Some(f), true) if !f => {
                return Err(err(
                    "features.registration",
                    "contradicts [http] open_registration = true; keep only [features] registration",
                ));
            }
            (Some(f), _) => f,
            (None, h) => h,
        };
        http.open_registration = registration;
        let features = FeatureFlags {
            registration,
            replies: raw.features.replies.unwrap_or(true),
            send_from_alias: raw.features.send_from_alias.unwrap_or(true),
            auto_create: raw.features.auto_create.unwrap_or(true),
        };
        let at_least_a_minute = |key: &str, value: Option<String>, default: Duration| {
            duration(key, value, default).and_then(|d| {
                if d < Duration::from_secs(60) {
                    Err(err(
                        key,
                        format!(
                            "must be at least 1m; example: {} = \"{}\"",
                            key.rsplit('.').next().unwrap_or(key),
                            if key.ends_with("interval") {
                                "6h"
                            } else {
                                "30d"
                            }
                        ),
                    ))
                } else {
                    Ok(d)
                }
            })
        };
        let jobs = JobSettings {
            enabled: raw.jobs.enabled.unwrap_or(true),
            deleted_alias_retention: at_least_a_minute(
                "jobs.deleted_alias_retention",
                raw.jobs.deleted_alias_retention,
                Duration::from_secs(30 * 86_400),
            )?,
            event_retention: at_least_a_minute(
                "jobs.event_retention",
                raw.jobs.event_retention,
                Duration::from_secs(90 * 86_400),
            )?,
            usage_daily_retention: at_least_a_minute(
                "jobs.usage_daily_retention",
                raw.jobs.usage_daily_retention,
                Duration::from_secs(400 * 86_400),
            )?,
            dns_recheck_interval: at_least_a_minute(
                "jobs.dns_recheck_interval",
                raw.jobs.dns_recheck_interval,
                Duration::from_secs(6 * 3600),
            )?,
        };
        let secret_key = match (raw.secrets.key_file, secrets.get(SECRET_KEY_ENV)) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "secrets.key_file",
                    format!("set either key_file or {SECRET_KEY_ENV}, not both"),
                ));
            }
            (Some(f), None) => SecretSource::File(PathBuf::from(f)),
            (None, Some(v)) => SecretSource::Env(SECRET_KEY_ENV, Secret(v.clone())),
            (None, None) => SecretSource::Generated(data_dir.join("secret.key")),
        };
        let srs_secret = match (&raw.srs.secret_file, secrets.get(SRS_SECRET_ENV)) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "srs.secret_file",
                    format!("set either secret_file or {SRS_SECRET_ENV}, not both"),
                ));
            }
            (Some(f), None) => SecretSource::File(PathBuf::from(f)),
            (None, Some(v)) => SecretSource::Env(SRS_SECRET_ENV, Secret(v.clone())),
            (None, None) => SecretSource::Generated(data_dir.join("srs.key")),
        };
        Ok(Config {
            profile,
            log_format,
            log_level,
            features,
            jobs,
            secret_key,
            srs_secret,
            relay_password_env,
            hostname,
            data_dir,
            listen,
            max_message_size: max_message_size as usize,
            max_recipients: max_recipients as usize,
            postmaster,
            max_connections: max_connections as usize,
            max_connections_per_ip: max_connections_per_ip as usize,
            connections_per_minute_per_ip,
            limit_exempt,
            store_url,
            store_cache_size: store_cache_size as usize,
            relay,
            relay_username: raw.delivery.relay_username,
            relay_password_file: raw.delivery.relay_password_file.map(PathBuf::from),
            routes,
            retry,
            expire,
            lease,
            concurrency: concurrency as usize,
            srs_domain,
            tls_cert_file: raw.tls.cert_file.map(PathBuf::from),
            tls_key_file: raw.tls.key_file.map(PathBuf::from),
            auth_enabled,
            auth_dns_records_file: raw.auth.dns_records_file.map(PathBuf::from),
            dkim_algorithms,
            dkim_delegate_to: raw.dkim.delegate_to,
            dkim_publish_delay,
            dkim_grace,
            dkim_rotate_every,
            limits_enabled: raw.limits.enabled.unwrap_or(true),
            limits_shared: raw.limits.shared.unwrap_or(false),
            limits,
            bounce_window,
            bounce_alias_hard,
            bounce_mailbox_hard,
            notify_enabled: raw.notify.enabled.unwrap_or(true),
            notify_from,
            notify_templates_dir: raw.notify.templates_dir.map(PathBuf::from),
            notify_base_url: raw.notify.base_url,
            sender_format,
            http,
        })
    }
}

fn parse_relay(url: &str) -> Result<Relay, ConfigError> {
    let bad = || {
        err(
            "delivery.relay",
            format!(
                "{url:?} is not a relay URL; examples: \"smtp://127.0.0.1:2526\", \"smtp+starttls://smtp.example.net:587\", \"smtps://smtp.example.net:465\""
            ),
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme {
        "smtp" => RelayScheme::Opportunistic,
        "smtp+starttls" => RelayScheme::StartTls,
        "smtps" => RelayScheme::Implicit,
        _ => return Err(bad()),
    };
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Relay::Smarthost {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        scheme,
    })
}
