//! Connection admission: total and per-IP concurrent connections, and a
//! per-IP connection rate (GCRA, in process).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use smtpy_core::gcra::{self, Quota};
use smtpy_core::time::Timestamp;

/// Limits on who may connect.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections at once (default 1000).
    pub max_connections: usize,
    /// Most connections at once from one IP address (default 20).
    pub max_per_ip: usize,
    /// New connections per IP address (default 60 a minute, bursts of 20);
    /// `None` disables.
    pub rate_per_ip: Option<Quota>,
    /// Networks exempt from the per-IP limits (default loopback,
    /// `127.0.0.0/8` and `::1/128`: local submitters and monitoring). The
    /// total still applies to them.
    pub exempt: Vec<Network>,
}

/// An IP network (`address/prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (a /32 or /128).
    #[must_use]
    pub fn parse(text: &str) -> Option<Network> {
        let (a, p) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim().parse().ok()?
        };
        (prefix <= max).then_some(Network { addr, prefix })
    }

    /// True if `ip` is inside this network.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 20,
            rate_per_ip: Quota::per_minute(60).and_then(|q| q.with_burst(20)).ok(),
            exempt: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| Network::parse(n))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    rate: HashMap<IpAddr, i64>,
}

/// Admission control shared by a listener's connections.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: ConnectionLimits,
    state: Arc<Mutex<State>>,
}

/// Why a connection is refused (answered `421 4.7.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many connections in total.
    Busy,
    /// Too many connections from this address.
    TooManyFromIp,
    /// Connecting too fast from this address.
    TooFast,
}

/// A slot held by one connection; released on drop.
#[derive(Debug)]
pub struct Slot {
    ip: IpAddr,
    state: Arc<Mutex<State>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Admission under `limits`.
    #[must_use]
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            state: Arc::default(),
        }
    }

    /// Admits a connection from `ip` at `now`, or says why not.
    ///
    /// # Errors
    /// The reason the connection is refused.
    pub fn admit(&self, ip: IpAddr, now: Timestamp) -> Result<Slot, Refused> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total >= self.limits.max_connections {
            return Err(Refused::Busy);
        }
        let exempt = self.limits.exempt.iter().any(|n| n.contains(ip));
        if !exempt && s.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
            return Err(Refused::TooManyFromIp);
        }
        if let Some(quota) = self.limits.rate_per_ip.as_ref().filter(|_| !exempt) {
            let d = gcra::decide(quota, s.rate.get(&ip).copied(), now.as_unix_millis(), 1);
            if !d.allowed {
                return Err(Refused::TooFast);
            }
            if s.rate.len() > 100_000 {
                // Bound memory: forget addresses whose state has lapsed.
                let now_ms = now.as_unix_millis();
                s.rate.retain(|_, tat| *tat > now_ms);
            }
            s.rate.insert(ip, d.new_tat_ms);
        }
        s.total += 1;
        *s.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            ip,
            state: Arc::clone(&self.state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn total_and_per_ip_limits_release_on_drop() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 3,
            max_per_ip: 2,
            rate_per_ip: None,
            exempt: Vec::new(),
        });
        let now = Timestamp::from_unix_secs(0);
        let s1 = a.admit(ip(1), now).expect("first");
        let _s2 = a.admit(ip(1), now).expect("second");
        assert_eq!(a.admit(ip(1), now).err(), Some(Refused::TooManyFromIp));
        let _s3 = a.admit(ip(2), now).expect("other ip");
        assert_eq!(a.admit(ip(3), now).err(), Some(Refused::Busy));
        drop(s1);
        assert!(a.admit(ip(1), now).is_ok(), "a released slot is reusable");
    }

    #[test]
    fn exempt_networks_skip_the_per_ip_limits_but_not_the_total() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 5,
            max_per_ip: 1,
            rate_per_ip: Quota::per_minute(1).ok(),
            exempt: vec![Network::parse("192.0.2.0/28").expect("net")],
        });
        let now = Timestamp::from_unix_secs(0);
        let held: Vec<Slot> = (0..5)
            .map(|_| a.admit(ip(1), now).expect("exempt"))
            .collect();
        assert_eq!(
            a.admit(ip(2), now).err(),
            Some(Refused::Busy),
            "the total still applies"
        );
        drop(held);
        let _x = a.admit(ip(200), now).expect("outside the network: first");
        assert_eq!(a.admit(ip(200), now).err(), Some(Refused::TooManyFromIp));
    }

    #[test]
    fn networks_parse_and_match() {
        let n = Network::parse("10.1.0.0/16").expect("v4");
        assert!(n.contains("10.1.255.3".parse().expect("ip")));
        assert!(!n.contains("10.2.0.1".parse().expect("ip")));
        let v6 = Network::parse("2001:db8::/32").expect("v6");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("10.1.0.1".parse().expect("ip")));
        assert!(
            Network::parse("::1")
                .expect("bare")
                .contains("::1".parse().expect("ip"))
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains("203.0.113.9".parse().expect("ip"))
        );
        assert_eq!(Network::parse("10.0.0.0/33"), None);
        assert_eq!(Network::parse("nonsense"), None);
    }

    #[test]
    fn connection_rate_per_ip() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 100,
            max_per_ip: 100,
            rate_per_ip: Quota::per_second(1).and_then(|q| q.with_burst(2)).ok(),
            exempt: Vec::new(),
        });
        let t0 = Timestamp::from_unix_secs(100);
        let _a = a.admit(ip(1), t0).expect("1");
        let _b = a.admit(ip(1), t0).expect("2 (burst)");
        assert_eq!(a.admit(ip(1), t0).err(), Some(Refused::TooFast));
        assert!(a.admit(ip(2), t0).is_ok(), "other addresses unaffected");
        let later = Timestamp::from_unix_secs(101);
        assert!(
            a.admit(ip(1), later).is_ok(),
            "allowed again after the interval"
        );
    }
}
