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

/// Sections and top-level keys an `SMTPY_*` variable may set. Other
/// `SMTPY_*` variables (say `SMTPY_TEST_POSTGRES_URL`) are not configuration.
const KNOWN: &[&str] = &[
    "hostname", "data_dir", "smtp", "store", "delivery", "srs", "tls", "auth", "dkim", "limits",
    "bounces", "notify", "aliases", "http",
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
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
    pub srs_secret_file: Option<PathBuf>,
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

/// Command-line flags that override the file and the environment.
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

impl Config {
    /// [`load`](Self::load), then the command-line `overrides` on top
    /// (flags > environment > file > defaults). This build applies
    /// `data_dir`; the other flags are accepted and not used yet.
    pub fn load_with(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let Overrides {
            profile,
            data_dir,
            log_format,
            log_level,
        } = overrides;
        if data_dir.is_none() {
            // Not applied by this build: --profile, --log-format, --log-level.
            let _ = (profile, log_format, log_level);
            return Self::load(file);
        }
        let flags = overrides.data_dir.as_ref().map(|d| {
            (
                "SMTPY_DATA_DIR".to_owned(),
                format!("{:?}", d.display().to_string()),
            )
        });
        Self::load_from(file, std::env::vars().chain(flags))
    }

    /// Reads `file` (if any), applies the environment, validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// [`load`](Self::load) with explicit environment variables (tests).
    pub fn load_from(
        file: Option<&Path>,
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
        let env_token = vars
            .iter()
            .find(|(k, v)| k == BOOTSTRAP_TOKEN_ENV && !v.trim().is_empty())
            .map(|(_, v)| v.clone());
        apply_env(&mut table, vars.into_iter())?;
        let raw: Raw = Raw::deserialize(toml::Value::Table(table)).map_err(|e| {
            let msg = e.to_string();
            err("config", msg.trim().replace('\n', " "))
        })?;
        Self::validate(raw, env_token)
    }

    fn validate(raw: Raw, env_token: Option<String>) -> Result<Config, ConfigError> {
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
        if raw.delivery.relay_username.is_some() != raw.delivery.relay_password_file.is_some() {
            return Err(err(
                "delivery.relay_username",
                "relay_username and relay_password_file go together",
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
        let http = http_settings(raw.http, env_token)?;
        Ok(Config {
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
            srs_secret_file: raw.srs.secret_file.map(PathBuf::from),
            srs_domain,
            tls_cert_file: raw.tls.cert_file.map(PathBuf::from),
            tls_key_file: raw.tls.key_file.map(PathBuf::from),
            auth_enabled,
            auth_dns_records_file: raw.auth.dns_records_file.map(PathBuf::from),
            dkim_algorithms,
            dkim_delegate_to: raw.dkim.delegate_to,
            dkim_publish_delay,
            dkim_grace,
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
