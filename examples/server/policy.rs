//! The mail policy of the reference server: authentication, DKIM keys,
//! reverse aliases, bounce addresses, limits and notifications, from the
//! configuration and the files in the data directory.

use std::path::Path;
use std::sync::Arc;

use smtpy::core::Store;
use smtpy::core::address::DomainName;
use smtpy::core::auth::Authenticator;
use smtpy::core::bounce::{BounceAddresses, BounceThresholds};
use smtpy::core::dkim::{self, PublishMode, SelectorNaming, SigningKey};
use smtpy::core::dns::StaticDns;
use smtpy::core::gcra::Quota;
use smtpy::core::limits::{LimitPolicy, Limits, LocalLimiter, RateLimiter, StoreLimiter};
use smtpy::core::model::{DkimAlgorithm, Domain};
use smtpy::core::notify::Templates;
use smtpy::core::reverse::ReverseAliases;
use smtpy::core::secret::{Keyring, SecretKey};
use smtpy::core::srs::SrsKey;
use smtpy::core::time::{Clock, SystemClock};
use smtpy_smtp::policy::MailPolicy;

use crate::config::Config;
use crate::run::{Failure, read_or_create_secret, write_secret};

/// The operator's key sealing DKIM private keys at rest: from
/// `data_dir/secret.key`, generated on first start (mode 0600).
pub fn keyring(config: &Config) -> Result<Keyring, Failure> {
    let text = match &config.secret_key {
        crate::config::SecretSource::Generated(path) => read_or_create_secret(path, || {
            SecretKey::generate("k1")
                .map(|k| k.to_base64())
                .map_err(|e| Failure::Runtime(format!("cannot generate the secret key: {e}")))
        })?,
        other => crate::run::secret_text(other, "secrets.key_file")?,
    };
    let key = SecretKey::from_base64("k1", text.trim()).map_err(|e| {
        Failure::Usage(format!(
            "secret key ({}): {e} (expected base64 of a 32-byte key)",
            config.secret_key.describe()
        ))
    })?;
    Ok(Keyring::new(key))
}

/// How DKIM records are published for hosted domains.
pub fn publish_mode(config: &Config) -> PublishMode {
    match config
        .dkim_delegate_to
        .as_deref()
        .and_then(|d| DomainName::parse(d).ok())
    {
        Some(service_domain) => PublishMode::Delegated { service_domain },
        None => PublishMode::Direct,
    }
}

/// Generates the configured DKIM keys for a new domain (active at once: no
/// mail has been signed for it yet) and returns the records to publish.
pub fn provision_dkim(
    config: &Config,
    domain: &mut Domain,
    keyring: &Keyring,
) -> Result<Vec<dkim::DnsRecord>, Failure> {
    let mode = publish_mode(config);
    let naming = SelectorNaming::for_mode(&mode);
    let now = SystemClock.now();
    for alg in &config.dkim_algorithms {
        if domain.dkim_keys.iter().any(|k| k.algorithm == *alg) {
            continue;
        }
        let key = dkim::new_key(domain, *alg, now, keyring, &naming)
            .map_err(|e| Failure::Runtime(format!("DKIM key generation failed: {e}")))?;
        domain.dkim_keys.push(key);
    }
    Ok(dkim::records_to_publish(domain, &mode))
}

/// The service's own signing keys (for DSNs, notifications and ARC seals),
/// kept as PKCS#8/PKCS#1 DER files under `data_dir/dkim/`, generated on
/// first start. Returns each key with its private key bytes.
fn service_keys(config: &Config) -> Result<Vec<(SigningKey, Vec<u8>)>, Failure> {
    let hostname = DomainName::parse(&config.hostname)
        .map_err(|e| Failure::Usage(format!("hostname: {e}")))?;
    let dir = config.data_dir.join("dkim");
    let mut keys = Vec::new();
    for alg in &config.dkim_algorithms {
        let (name, selector) = match alg {
            DkimAlgorithm::Ed25519 => ("service-ed25519.der", "smtpye"),
            _ => ("service-rsa.der", "smtpyr"),
        };
        let path = dir.join(name);
        let entry = if path.exists() {
            let der = std::fs::read(&path)
                .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", path.display())))?;
            let key = SigningKey::from_der(hostname.clone(), selector, *alg, &der)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            (key, der)
        } else {
            let (key, der) = SigningKey::generate(hostname.clone(), selector, *alg)
                .map_err(|e| Failure::Runtime(format!("DKIM key generation failed: {e}")))?;
            write_secret(&path, &der)?;
            tracing::info!(
                name = %key.dns_name(),
                record = %key.dns_record(),
                "generated the service DKIM key; publish this TXT record"
            );
            (key, der)
        };
        keys.push(entry);
    }
    Ok(keys)
}

/// Static DNS records from a TOML file (authentication lookups, and the
/// API's domain checks):
///
/// ```toml
/// [txt]
/// "example.com" = ["v=spf1 ip4:192.0.2.1 -all"]
/// "_dmarc.example.com" = ["v=DMARC1; p=reject"]
/// [ip]
/// "mail.example.com" = ["192.0.2.1"]
/// [mx]
/// "example.com" = ["10 mx.example.net"]
/// ```
pub fn load_dns_records(path: &Path) -> Result<StaticDns, Failure> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        txt: std::collections::BTreeMap<String, Vec<String>>,
        #[serde(default)]
        ip: std::collections::BTreeMap<String, Vec<String>>,
        #[serde(default)]
        mx: std::collections::BTreeMap<String, Vec<String>>,
    }
    let bad = |e: String| Failure::Usage(format!("auth.dns_records_file: {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?;
    let dns = StaticDns::new();
    for (name, values) in file.txt {
        for v in values {
            dns.add_txt(&name, &v);
        }
    }
    for (name, values) in file.ip {
        for v in values {
            let ip = v
                .parse()
                .map_err(|_| bad(format!("{v:?} is not an IP address")))?;
            dns.add_ip(&name, ip);
        }
    }
    for (name, values) in file.mx {
        for v in values {
            let (pref, host) = v
                .split_once(' ')
                .and_then(|(p, h)| Some((p.parse::<u16>().ok()?, h.trim())))
                .filter(|(_, h)| !h.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "{v:?} is not an MX record; write \"<preference> <host>\", e.g. \"10 mx.example.net\""
                    ))
                })?;
            dns.add_mx(&name, pref, host);
        }
    }
    Ok(dns)
}

/// A [`Dns`](smtpy::core::dns::Dns) answering from a records file (see
/// [`load_dns_records`]) and reading it again whenever it changes, so
/// records published after startup are seen (offline operation, tests).
/// A file that does not parse keeps the previous records (logged) until it
/// does.
#[derive(Debug)]
pub struct FileDns {
    path: std::path::PathBuf,
    current: std::sync::RwLock<(Option<Stamp>, Arc<StaticDns>)>,
}

/// When a file was last modified, and its length.
type Stamp = (std::time::SystemTime, u64);

impl FileDns {
    /// Records from `path`, read now.
    pub fn open(path: &Path) -> Result<FileDns, Failure> {
        let dns = load_dns_records(path)?;
        Ok(FileDns {
            path: path.to_owned(),
            current: std::sync::RwLock::new((Self::stamp(path), Arc::new(dns))),
        })
    }

    fn stamp(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// The records, reloaded first when the file changed.
    fn records(&self) -> Arc<StaticDns> {
        let stamp = Self::stamp(&self.path);
        {
            let current = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.0 == stamp {
                return Arc::clone(&current.1);
            }
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match load_dns_records(&self.path) {
            Ok(dns) => {
                *current = (stamp, Arc::new(dns));
                tracing::info!(path = %self.path.display(), "DNS records file reloaded");
            }
            Err(Failure::Usage(e) | Failure::Runtime(e)) => {
                tracing::warn!(error = %e, "DNS records file not reloaded; keeping the previous records");
            }
        }
        Arc::clone(&current.1)
    }
}

#[async_trait::async_trait]
impl smtpy::core::dns::Dns for FileDns {
    async fn mx(
        &self,
        domain: &str,
    ) -> Result<Vec<smtpy::core::dns::MxRecord>, smtpy::core::dns::DnsError> {
        smtpy::core::dns::Dns::mx(&*self.records(), domain).await
    }
    async fn ip(&self, host: &str) -> Result<Vec<std::net::IpAddr>, smtpy::core::dns::DnsError> {
        smtpy::core::dns::Dns::ip(&*self.records(), host).await
    }
    async fn txt(&self, name: &str) -> Result<Vec<String>, smtpy::core::dns::DnsError> {
        smtpy::core::dns::Dns::txt(&*self.records(), name).await
    }
}

/// The limiter and limits of the mail path (`None` when `[limits]` is
/// off). The API applies the same ones (alias creation), with the same
/// limiter.
pub fn limits(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Option<(Arc<dyn RateLimiter>, LimitPolicy)> {
    if !config.limits_enabled {
        return None;
    }
    let limiter: Arc<dyn RateLimiter> = if config.limits_shared {
        Arc::new(StoreLimiter::new(
            Arc::clone(store) as Arc<dyn smtpy::core::store::RateLimitStore>,
            Arc::new(SystemClock),
        ))
    } else {
        Arc::new(LocalLimiter::new(Arc::new(SystemClock)))
    };
    let limit_policy = limit_policy(config);
    Some((limiter, limit_policy))
}

/// `[limits]` as the mail path's policy (what a reload replaces).
pub fn limit_policy(config: &Config) -> LimitPolicy {
    let l = &config.limits;
    LimitPolicy {
        ip_messages: Quota::per_hour(l.ip_messages_per_hour).ok(),
        alias_messages_per_hour: l.alias_messages_per_hour,
        user_forwards_per_day: l.user_forwards_per_day,
        user_replies_per_day: l.user_replies_per_day,
        user_aliases_per_hour: l.user_aliases_per_hour,
        sender_domain_messages: Quota::per_hour(l.sender_domain_messages_per_hour).ok(),
    }
}

/// Everything the acceptor and the delivery workers apply.
pub async fn build(
    config: &Config,
    srs_key: &SrsKey,
    limits: Option<(Arc<dyn RateLimiter>, LimitPolicy)>,
) -> Result<MailPolicy, Failure> {
    let mut policy = MailPolicy::default();
    let hostname = DomainName::parse(&config.hostname)
        .map_err(|e| Failure::Usage(format!("hostname: {e}")))?;
    if config.auth_enabled {
        policy.authenticator = Some(match &config.auth_dns_records_file {
            Some(path) => Authenticator::from_static(Arc::new(load_dns_records(path)?)),
            None => Authenticator::system()
                .map_err(|e| Failure::Runtime(format!("auth: cannot set up DNS: {e}")))?,
        });
    }
    let service = service_keys(config)?;
    // The Ed25519 service key (or the first) also seals ARC sets: a second
    // instance of it, as the signer owns its keys.
    if let Some((arc, der)) = service
        .iter()
        .find(|(k, _)| k.algorithm() == DkimAlgorithm::Ed25519)
        .or_else(|| service.first())
    {
        let sealer = SigningKey::from_der(hostname.clone(), arc.selector(), arc.algorithm(), der)
            .map_err(|e| Failure::Runtime(format!("service key: {e}")))?;
        policy.arc_key = Some(Arc::new(sealer));
    }
    for (k, _) in service {
        policy.signer.insert(k);
    }
    policy.reverse = Some(ReverseAliases::new(srs_key.clone()));
    policy.bounces = Some(
        BounceAddresses::new(hostname.clone(), srs_key.clone())
            .map_err(|e| Failure::Usage(format!("hostname: cannot make bounce addresses: {e}")))?,
    );
    if let Some((limiter, limit_policy)) = limits {
        policy.limits = Some(Limits::new(limiter, limit_policy));
    }
    policy.thresholds = BounceThresholds {
        window: config.bounce_window,
        alias_hard: config.bounce_alias_hard,
        mailbox_hard: config.bounce_mailbox_hard,
        ..BounceThresholds::default()
    };
    if config.notify_enabled {
        policy.templates = Some(match &config.notify_templates_dir {
            Some(dir) => Templates::from_dir(dir)
                .map_err(|e| Failure::Usage(format!("notify.templates_dir: {e}")))?,
            None => Templates::builtin(),
        });
        policy.notify_from = Some(config.notify_from.clone());
        policy.base_url.clone_from(&config.notify_base_url);
    }
    policy.sender_format.clone_from(&config.sender_format);
    Ok(policy)
}
