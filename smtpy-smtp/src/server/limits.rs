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
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 20,
            rate_per_ip: Quota::per_minute(60).and_then(|q| q.with_burst(20)).ok(),
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
        if s.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
            return Err(Refused::TooManyFromIp);
        }
        if let Some(quota) = &self.limits.rate_per_ip {
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
    fn connection_rate_per_ip() {
        let a = Admission::new(ConnectionLimits {
            max_connections: 100,
            max_per_ip: 100,
            rate_per_ip: Quota::per_second(1).and_then(|q| q.with_burst(2)).ok(),
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
