//! [`MxDelivery`]: direct delivery to each recipient domain's mail
//! exchangers.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::dns::{Dns, DnsError, MxRecord};
use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};

use super::client::SessionSetup;
use super::config::{Timeouts, TlsMode, TlsTrust, TransportBuildError, check_wire_name};
use super::pool::{Pool, PoolConfig};
use super::tls::TlsConnectors;
use super::transaction::Transaction;
use super::wire::local_reply;
use smtpy_core::join::join_all;

/// Configuration of an [`MxDelivery`]; a consuming builder.
///
/// ```
/// use std::sync::Arc;
/// use smtpy_core::dns::StaticDns;
/// use smtpy_smtp::transport::{MxConfig, MxDelivery};
///
/// let dns = Arc::new(StaticDns::new());
/// let mx = MxDelivery::new(
///     MxConfig::new("mx.alias.example").route("partner.example", "10.0.0.5:2525"),
///     dns,
/// )?;
/// # let _ = mx;
/// # Ok::<(), smtpy_smtp::transport::TransportBuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MxConfig {
    helo_name: String,
    port: u16,
    tls_mode: TlsMode,
    tls_trust: TlsTrust,
    timeouts: Timeouts,
    pool: PoolConfig,
    routes: Vec<(String, String)>,
    shuffle_equal_preference: bool,
    max_addresses: usize,
}

impl MxConfig {
    /// Direct delivery greeting every server with `EHLO helo_name` (our
    /// host name; it should have matching forward and reverse DNS).
    ///
    /// Defaults: port 25, [`TlsMode::Opportunistic`], [`Timeouts::rfc5321`],
    /// [`PoolConfig::default`], no routes, equal-preference exchangers
    /// shuffled, at most 5 addresses tried per domain.
    #[must_use]
    pub fn new(helo_name: impl Into<String>) -> Self {
        Self {
            helo_name: helo_name.into(),
            port: 25,
            tls_mode: TlsMode::Opportunistic,
            tls_trust: TlsTrust::Platform,
            timeouts: Timeouts::rfc5321(),
            pool: PoolConfig::default(),
            routes: Vec::new(),
            shuffle_equal_preference: true,
            max_addresses: 5,
        }
    }

    /// The port every exchanger is contacted on. Default 25; tests point it
    /// at a loopback sink.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// When to use TLS. Default [`TlsMode::Opportunistic`]: STARTTLS when
    /// offered, certificates not verified (most MX certificates would fail
    /// verification, and failing would push mail to plaintext, not stop
    /// it). [`TlsMode::Required`] verifies against the exchanger's name.
    #[must_use]
    pub fn tls_mode(mut self, mode: TlsMode) -> Self {
        self.tls_mode = mode;
        self
    }

    /// Which certificates verify in [`TlsMode::Required`]. Default
    /// [`TlsTrust::Platform`].
    #[must_use]
    pub fn tls_trust(mut self, trust: TlsTrust) -> Self {
        self.tls_trust = trust;
        self
    }

    /// Timeouts. Default [`Timeouts::rfc5321`].
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Concurrency and connection reuse, per exchanger. Default
    /// [`PoolConfig::default`].
    #[must_use]
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Sends mail for `domain` to `target` instead of its MX: `host`,
    /// `host:port`, `1.2.3.4:port` or `[2001:db8::1]:port` (the port
    /// defaults to [`port`](Self::port)). A host name is resolved to its
    /// A/AAAA records, never to MX. Checked by [`MxDelivery::new`].
    #[must_use]
    pub fn route(mut self, domain: impl Into<String>, target: impl Into<String>) -> Self {
        self.routes.push((domain.into(), target.into()));
        self
    }

    /// Adds every `(domain, target)` of `routes` (e.g. the reference
    /// server's `[delivery] routes` table), as [`route`](Self::route).
    #[must_use]
    pub fn routes<D, T>(mut self, routes: impl IntoIterator<Item = (D, T)>) -> Self
    where
        D: Into<String>,
        T: Into<String>,
    {
        self.routes
            .extend(routes.into_iter().map(|(d, t)| (d.into(), t.into())));
        self
    }

    /// Shuffle exchangers of equal preference (RFC 5321 §5.1 asks senders
    /// to spread load over them). Default `true`; `false` keeps the order
    /// the [`Dns`] returned them in.
    #[must_use]
    pub fn shuffle_equal_preference(mut self, shuffle: bool) -> Self {
        self.shuffle_equal_preference = shuffle;
        self
    }

    /// Addresses tried per domain and delivery, across all its exchangers.
    /// Default 5 (as Postfix's `smtp_mx_address_limit`): bounds the time a
    /// dead domain costs. At least 1.
    #[must_use]
    pub fn max_addresses(mut self, limit: usize) -> Self {
        self.max_addresses = limit.max(1);
        self
    }
}

/// Why a host is a candidate for a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Mx,
    /// No MX: the domain itself (RFC 5321 §5.1).
    ImplicitMx,
    Route,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    origin: Origin,
}

/// A [`Transport`] delivering straight to each recipient domain's mail
/// exchangers.
///
/// Recipients are grouped by domain (A-label, case-insensitive); the groups
/// are delivered concurrently, one transaction each. For a group:
///
/// 1. A static [route](MxConfig::route) wins; otherwise the MX records are
///    looked up through the injected [`Dns`]. A null MX (`0 .`, RFC 7505;
///    all records null) fails every recipient with `556 5.1.10`; null
///    records next to real ones are ignored. No MX (`NotFound`, or an empty
///    answer) means the domain itself is the exchanger (RFC 5321 §5.1); if
///    it has no address either, `550 5.1.2`. A temporary DNS failure is
///    `451 4.4.3`.
/// 2. Exchangers are tried by ascending preference (ties shuffled unless
///    [disabled](MxConfig::shuffle_equal_preference)), each of their
///    addresses in the order the [`Dns`] gave, at most
///    [`max_addresses`](MxConfig::max_addresses) in all, until a session
///    opens (greeting, EHLO, TLS as configured). The first server that
///    opens a session decides every outcome of the group, even when it
///    then refuses MAIL FROM or a recipient: later exchangers are not
///    tried for that delivery.
/// 3. An exchanger whose name does not resolve is skipped; when no session
///    could be opened at all, the last failure (temporary) is every
///    recipient's outcome.
#[derive(Debug)]
pub struct MxDelivery {
    config: MxConfig,
    dns: Arc<dyn Dns>,
    routes: HashMap<String, Target>,
    setup: SessionSetup,
    pool: Pool,
}

impl MxDelivery {
    /// Builds the transport. Opens no connection and makes no lookup.
    ///
    /// # Errors
    ///
    /// [`TransportBuildError::InvalidRoute`] for a malformed route,
    /// [`TransportBuildError::InvalidConfig`] for a malformed HELO name or
    /// port 0, [`TransportBuildError::Tls`] when the trust store cannot be
    /// loaded.
    pub fn new(config: MxConfig, dns: Arc<dyn Dns>) -> Result<Self, TransportBuildError> {
        check_wire_name("the HELO name", &config.helo_name)?;
        if config.port == 0 {
            return Err(TransportBuildError::InvalidConfig(
                "the MX port must not be 0".to_owned(),
            ));
        }
        let mut routes = HashMap::new();
        for (domain, target) in &config.routes {
            let invalid = |reason: String| TransportBuildError::InvalidRoute {
                domain: domain.clone(),
                target: target.clone(),
                reason,
            };
            let name = DomainName::parse(domain).map_err(|e| invalid(e.to_string()))?;
            let (host, port) = parse_target(target, config.port).map_err(invalid)?;
            routes.insert(
                name.as_ascii().to_owned(),
                Target {
                    host,
                    port,
                    origin: Origin::Route,
                },
            );
        }
        let setup = SessionSetup {
            helo: config.helo_name.clone(),
            tls_mode: config.tls_mode,
            tls: TlsConnectors::new(config.tls_mode, &config.tls_trust)?,
            credentials: None,
            allow_plaintext_auth: false,
            timeouts: config.timeouts,
        };
        Ok(Self {
            pool: Pool::new(config.pool.clone()),
            routes,
            setup,
            dns,
            config,
        })
    }

    /// The configuration it was built from.
    #[must_use]
    pub fn config(&self) -> &MxConfig {
        &self.config
    }

    async fn deliver_domain(
        &self,
        domain: &str,
        recipients: &[&EmailAddress],
        reverse_path: Option<&EmailAddress>,
        message: &[u8],
    ) -> Vec<DeliveryOutcome> {
        let all = |outcome: DeliveryOutcome| vec![outcome; recipients.len()];
        let targets = match self.targets(domain).await {
            Ok(targets) => targets,
            Err(outcome) => return all(outcome),
        };
        let txn = Transaction {
            reverse_path,
            recipients,
            message,
        };
        let mut budget = self.config.max_addresses;
        let mut last = None;
        for target in &targets {
            if budget == 0 {
                break;
            }
            let mut addresses = match self.addresses(domain, target).await {
                Ok(addresses) => addresses,
                Err(outcome @ DeliveryOutcome::Permanent(_)) => return all(outcome),
                Err(outcome) => {
                    last = Some(outcome);
                    continue;
                }
            };
            addresses.truncate(budget);
            budget -= addresses.len();
            let destination = format!("{}:{}", target.host, target.port);
            match self
                .pool
                .deliver(
                    &self.setup,
                    &destination,
                    &target.host,
                    std::future::ready(Ok(addresses)),
                    &txn,
                )
                .await
            {
                Ok(outcomes) => return outcomes,
                Err(e) => {
                    tracing::info!(domain, %destination, error = %e, "exchanger unavailable");
                    last = Some(e.outcome());
                }
            }
        }
        all(last.unwrap_or_else(|| {
            DeliveryOutcome::Temporary(local_reply(
                451,
                "4.4.1",
                format!("no mail exchanger of {domain} could be reached"),
            ))
        }))
    }

    /// The hosts to try for `domain`, in order, or the outcome for every
    /// recipient when there is none.
    async fn targets(&self, domain: &str) -> Result<Vec<Target>, DeliveryOutcome> {
        if let Some(route) = self.routes.get(domain) {
            return Ok(vec![route.clone()]);
        }
        let implicit = || {
            vec![Target {
                host: domain.to_owned(),
                port: self.config.port,
                origin: Origin::ImplicitMx,
            }]
        };
        let records = match self.dns.mx(domain).await {
            Ok(records) if records.is_empty() => return Ok(implicit()),
            Ok(records) => records,
            Err(DnsError::NotFound(_)) => return Ok(implicit()),
            Err(e) => {
                return Err(DeliveryOutcome::Temporary(local_reply(
                    451,
                    "4.4.3",
                    format!("MX lookup for {domain} failed: {e}"),
                )));
            }
        };
        let mut records: Vec<MxRecord> = records
            .into_iter()
            .filter(|r| !is_null_exchange(&r.exchange))
            .collect();
        if records.is_empty() {
            return Err(DeliveryOutcome::Permanent(local_reply(
                556,
                "5.1.10",
                format!("{domain} does not accept mail (null MX, RFC 7505)"),
            )));
        }
        records.sort_by_key(|r| r.preference);
        if self.config.shuffle_equal_preference {
            shuffle_ties(&mut records);
        }
        Ok(records
            .into_iter()
            .map(|r| Target {
                host: r.exchange.trim_end_matches('.').to_ascii_lowercase(),
                port: self.config.port,
                origin: Origin::Mx,
            })
            .collect())
    }

    /// The socket addresses of `target`, or its outcome when it has none.
    async fn addresses(
        &self,
        domain: &str,
        target: &Target,
    ) -> Result<Vec<SocketAddr>, DeliveryOutcome> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let host = &target.host;
        let temporary = |text: String| DeliveryOutcome::Temporary(local_reply(451, "4.4.3", text));
        match self.dns.ip(host).await {
            Ok(ips) if !ips.is_empty() => Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, target.port))
                .collect()),
            Ok(_) | Err(DnsError::NotFound(_)) => Err(match target.origin {
                Origin::ImplicitMx => DeliveryOutcome::Permanent(local_reply(
                    550,
                    "5.1.2",
                    format!("{domain} has no MX and no address: no such domain"),
                )),
                Origin::Mx => temporary(format!("MX host {host} of {domain} has no address")),
                Origin::Route => temporary(format!("route host {host} has no address")),
            }),
            Err(e) => Err(temporary(format!("address lookup of {host} failed: {e}"))),
        }
    }
}

#[async_trait]
impl Transport for MxDelivery {
    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Vec<DeliveryOutcome> {
        // Recipient indexes per domain, domains in order of first appearance.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, recipient) in envelope.recipients.iter().enumerate() {
            let domain = recipient.domain().as_ascii();
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, members)) => members.push(i),
                None => groups.push((domain, vec![i])),
            }
        }
        let deliveries = groups
            .iter()
            .map(|(domain, members)| {
                let recipients: Vec<&EmailAddress> =
                    members.iter().map(|&i| &envelope.recipients[i]).collect();
                async move {
                    self.deliver_domain(
                        domain,
                        &recipients,
                        envelope.reverse_path.as_ref(),
                        message,
                    )
                    .await
                }
            })
            .collect();
        let results = join_all(deliveries).await;

        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; envelope.recipients.len()];
        for ((_, members), result) in groups.iter().zip(results) {
            for (&i, outcome) in members.iter().zip(result) {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| DeliveryOutcome::temporary("no outcome for this recipient"))
            })
            .collect()
    }
}

/// `.` or empty: the null MX exchange (RFC 7505).
fn is_null_exchange(exchange: &str) -> bool {
    exchange.trim_end_matches('.').is_empty()
}

/// Shuffles each run of equal preference in a sorted list.
fn shuffle_ties(records: &mut [MxRecord]) {
    // Load spreading, not security: a per-call random seed is enough.
    let mut state = RandomState::new().hash_one(records.len()) | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for run in records.chunk_by_mut(|a, b| a.preference == b.preference) {
        for i in (1..run.len()).rev() {
            let j = usize::try_from(next() % (i as u64 + 1)).unwrap_or(0);
            run.swap(i, j);
        }
    }
}

/// `host`, `host:port`, `ipv4:port`, `[ipv6]`, `[ipv6]:port` or a bare
/// IPv6 address.
fn parse_target(target: &str, default_port: u16) -> Result<(String, u16), String> {
    let parse_port = |port: &str| match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {port:?}")),
        Ok(port) => Ok(port),
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '['".to_owned())?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let port = match after {
            "" => default_port,
            _ => parse_port(after.strip_prefix(':').ok_or("junk after ']'")?)?,
        };
        return Ok((ip.to_string(), port));
    }
    if let Ok(ip) = target.parse::<IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (target, default_port),
    };
    check_wire_name("the route host", host).map_err(|e| e.to_string())?;
    Ok((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_targets_parse() {
        assert_eq!(
            parse_target("relay.example:2525", 25),
            Ok(("relay.example".to_owned(), 2525))
        );
        assert_eq!(
            parse_target("Relay.Example", 25),
            Ok(("relay.example".to_owned(), 25))
        );
        assert_eq!(
            parse_target("127.0.0.1:26", 25),
            Ok(("127.0.0.1".to_owned(), 26))
        );
        assert_eq!(
            parse_target("[2001:db8::1]:26", 25),
            Ok(("2001:db8::1".to_owned(), 26))
        );
        assert_eq!(
            parse_target("2001:db8::1", 25),
            Ok(("2001:db8::1".to_owned(), 25))
        );
        assert!(parse_target("relay.example:0", 25).is_err());
        assert!(parse_target("relay.example:x", 25).is_err());
        assert!(parse_target("[::1", 25).is_err());
        assert!(parse_target("bad host:25", 25).is_err());
        assert!(parse_target("", 25).is_err());
    }

    #[test]
    fn ties_are_shuffled_within_their_preference_only() {
        let mut records: Vec<MxRecord> = (0..8)
            .map(|i| MxRecord {
                preference: if i < 4 { 10 } else { 20 },
                exchange: format!("mx{i}"),
            })
            .collect();
        for _ in 0..20 {
            shuffle_ties(&mut records);
            assert!(records[..4].iter().all(|r| r.preference == 10));
            assert!(records[4..].iter().all(|r| r.preference == 20));
            let mut names: Vec<&str> = records.iter().map(|r| r.exchange.as_str()).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                ["mx0", "mx1", "mx2", "mx3", "mx4", "mx5", "mx6", "mx7"]
            );
        }
    }

    #[test]
    fn null_exchange() {
        assert!(is_null_exchange("."));
        assert!(is_null_exchange(""));
        assert!(!is_null_exchange("mx.example"));
    }
}
