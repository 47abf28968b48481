//! DNS seam: lookups smtpy needs, injectable so tests never touch the network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use async_trait::async_trait;

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxRecord {
    /// Lower is tried first.
    pub preference: u16,
    /// Host name of the exchanger (no trailing dot).
    pub exchange: String,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist or has no record of that type (permanent).
    #[error("no such record: {0}")]
    NotFound(String),
    /// Timeout, SERVFAIL, network failure: try again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

/// The lookups smtpy makes.
#[async_trait]
pub trait Dns: Send + Sync + std::fmt::Debug {
    /// MX records of `domain` (A-label form), in no particular order.
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError>;
    /// A and AAAA addresses of `host`.
    async fn ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError>;
    /// TXT records of `name`, each joined from its strings.
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError>;
}

/// A [`Dns`] answering from records it was given (tests, fixed routes).
/// Names are matched case-insensitively, without a trailing dot.
#[derive(Debug, Default)]
pub struct StaticDns {
    mx: RwLock<HashMap<String, Vec<MxRecord>>>,
    ip: RwLock<HashMap<String, Vec<IpAddr>>>,
    txt: RwLock<HashMap<String, Vec<String>>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn get<T: Clone>(map: &RwLock<HashMap<String, Vec<T>>>, name: &str) -> Result<Vec<T>, DnsError> {
    let map = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match map.get(&key(name)) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(DnsError::NotFound(name.to_owned())),
    }
}

fn add<T>(map: &RwLock<HashMap<String, Vec<T>>>, name: &str, value: T) {
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key(name))
        .or_default()
        .push(value);
}

impl StaticDns {
    /// No records.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds an MX record.
    pub fn add_mx(&self, domain: &str, preference: u16, exchange: &str) {
        add(
            &self.mx,
            domain,
            MxRecord {
                preference,
                exchange: key(exchange),
            },
        );
    }
    /// Adds an address.
    pub fn add_ip(&self, host: &str, ip: IpAddr) {
        add(&self.ip, host, ip);
    }
    /// Adds a TXT record.
    pub fn add_txt(&self, name: &str, text: &str) {
        add(&self.txt, name, text.to_owned());
    }
}

#[async_trait]
impl Dns for StaticDns {
    async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        get(&self.mx, domain)
    }
    async fn ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        get(&self.ip, host)
    }
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        get(&self.txt, name)
    }
}
