//! [`HickoryDns`]: the production [`Dns`], on `hickory-resolver`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, Record};
use smtpy_core::dns::{Dns, DnsError, MxRecord};

/// Configuration of a [`HickoryDns`]; a consuming builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HickoryDnsConfig {
    name_servers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: usize,
    cache_size: u64,
}

impl HickoryDnsConfig {
    /// The system's resolver configuration (`/etc/resolv.conf` on Unix),
    /// with this type's timeout, attempts and cache size.
    #[must_use]
    pub fn system() -> Self {
        Self {
            name_servers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 1024,
        }
    }

    /// Exactly these recursive name servers (UDP, falling back to TCP),
    /// e.g. a local validating resolver at `127.0.0.1:53`.
    #[must_use]
    pub fn name_servers(servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            name_servers: servers.into_iter().collect(),
            ..Self::system()
        }
    }

    /// Timeout of one query to one server. Default 5 s (the resolv.conf
    /// default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries after a failed query before the lookup fails (temporarily).
    /// Default 2.
    #[must_use]
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// Responses cached (honouring their TTLs). Default 1024.
    #[must_use]
    pub fn cache_size(mut self, entries: u64) -> Self {
        self.cache_size = entries;
        self
    }
}

impl Default for HickoryDnsConfig {
    fn default() -> Self {
        Self::system()
    }
}

/// Why a [`HickoryDns`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsSetupError {
    /// The system resolver configuration could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// The resolver could not be built from its configuration.
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// A [`Dns`] on `hickory-resolver` (tokio; lookups must run inside a tokio
/// runtime).
///
/// Every name is looked up as fully qualified (no search domains).
/// Addresses are returned IPv4 first, then IPv6 (A and AAAA are queried in
/// parallel): many mail hosts have no working IPv6 route. `ip` of an IP
/// address returns it without a query.
///
/// Errors: NXDOMAIN and "no records of that type" are
/// [`DnsError::NotFound`], and so is a name that is not a valid DNS name;
/// everything else (timeout, SERVFAIL, REFUSED, network errors) is
/// [`DnsError::Temporary`].
#[derive(Debug, Clone)]
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl HickoryDns {
    /// Builds the resolver. Sends no query.
    ///
    /// # Errors
    ///
    /// [`DnsSetupError`] when the system configuration cannot be read or
    /// the resolver cannot be built.
    pub fn new(config: &HickoryDnsConfig) -> Result<Self, DnsSetupError> {
        let mut builder = if config.name_servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .name_servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(ResolverOpts::default())
        };
        let options = builder.options_mut();
        options.timeout = config.timeout;
        options.attempts = config.attempts;
        options.cache_size = config.cache_size;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder
            .build()
            .map_err(|e| DnsSetupError::Build(e.to_string()))?;
        Ok(Self { resolver })
    }

    /// [`HickoryDns::new`] with [`HickoryDnsConfig::system`].
    ///
    /// # Errors
    ///
    /// As [`HickoryDns::new`].
    pub fn system() -> Result<Self, DnsSetupError> {
        Self::new(&HickoryDnsConfig::system())
    }
}

/// `name` as a fully qualified DNS name.
fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut parsed = Name::from_ascii(name.trim_end_matches('.'))
        .map_err(|e| DnsError::NotFound(format!("{name}: not a valid DNS name: {e}")))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The smtpy meaning of a resolver error.
fn map_error(name: &str, error: &NetError) -> DnsError {
    if error.is_no_records_found() {
        DnsError::NotFound(name.to_owned())
    } else {
        DnsError::Temporary(format!("{name}: {error}"))
    }
}

/// `Name` as the `Dns` trait spells host names: lower case, no trailing dot
/// (the root, a null MX, becomes "").
fn host_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn mx_records(answers: &[Record]) -> Vec<MxRecord> {
    answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some(MxRecord {
                preference: mx.preference,
                exchange: host_name(&mx.exchange),
            }),
            _ => None,
        })
        .collect()
}

fn txt_records(answers: &[Record]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn non_empty<T>(name: &str, records: Vec<T>) -> Result<Vec<T>, DnsError> {
    if records.is_empty() {
        Err(DnsError::NotFound(name.to_owned()))
    } else {
        Ok(records)
    }
}

#[async_trait]
impl Dns for HickoryDns {
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let lookup = self
            .resolver
            .mx_lookup(fqdn(domain)?)
            .await
            .map_err(|e| map_error(domain, &e))?;
        non_empty(domain, mx_records(lookup.answers()))
    }

    async fn ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let lookup = self
            .resolver
            .lookup_ip(fqdn(host)?)
            .await
            .map_err(|e| map_error(host, &e))?;
        non_empty(host, lookup.iter().collect())
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let lookup = self
            .resolver
            .txt_lookup(fqdn(name)?)
            .await
            .map_err(|e| map_error(name, &e))?;
        non_empty(name, txt_records(lookup.answers()))
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::net::{DnsError as NetDnsError, NoRecords};
    use hickory_resolver::proto::op::{Query, ResponseCode};
    use hickory_resolver::proto::rr::RecordType;
    use hickory_resolver::proto::rr::rdata::{MX, TXT};

    use super::*;

    fn no_records(code: ResponseCode) -> NetError {
        let name = Name::from_ascii("example.test.").expect("valid name");
        NetError::from(NoRecords::new(Query::query(name, RecordType::MX), code))
    }

    #[test]
    fn nxdomain_and_no_data_are_not_found() {
        assert!(matches!(
            map_error("example.test", &no_records(ResponseCode::NXDomain)),
            DnsError::NotFound(_)
        ));
        assert!(matches!(
            map_error("example.test", &no_records(ResponseCode::NoError)),
            DnsError::NotFound(_)
        ));
    }

    #[test]
    fn other_failures_are_temporary() {
        for error in [
            NetError::Timeout,
            NetError::Dns(NetDnsError::ResponseCode(ResponseCode::ServFail)),
            NetError::Dns(NetDnsError::ResponseCode(ResponseCode::Refused)),
            NetError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            NetError::NoConnections,
        ] {
            assert!(
                matches!(map_error("example.test", &error), DnsError::Temporary(_)),
                "{error:?}"
            );
        }
    }

    #[test]
    fn invalid_names_are_not_found() {
        assert!(matches!(fqdn("exa mple..test"), Err(DnsError::NotFound(_))));
        assert!(fqdn("example.test.").is_ok_and(|n| n.is_fqdn()));
    }

    #[test]
    fn mx_answers_convert_including_null_mx() {
        let owner = Name::from_ascii("example.test.").expect("valid name");
        let answers = [
            Record::from_rdata(
                owner.clone(),
                300,
                RData::MX(MX::new(
                    10,
                    Name::from_ascii("MX1.Example.Test.").expect("valid name"),
                )),
            ),
            Record::from_rdata(owner.clone(), 300, RData::MX(MX::new(0, Name::root()))),
            Record::from_rdata(
                owner,
                300,
                RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
            ),
        ];
        assert_eq!(
            mx_records(&answers),
            [
                MxRecord {
                    preference: 10,
                    exchange: "mx1.example.test".into()
                },
                MxRecord {
                    preference: 0,
                    exchange: String::new()
                },
            ]
        );
        assert_eq!(txt_records(&answers), ["v=spf1 -all"]);
    }

    #[tokio::test]
    async fn builds_with_given_name_servers_and_answers_ip_literals_locally() {
        let dns = HickoryDns::new(
            &HickoryDnsConfig::name_servers(["127.0.0.1:53".parse().expect("address")])
                .timeout(Duration::from_millis(100))
                .attempts(0),
        )
        .expect("resolver");
        assert_eq!(
            dns.ip("192.0.2.7").await,
            Ok(vec!["192.0.2.7".parse::<IpAddr>().expect("ip")])
        );
    }
}
