//! Delivery settings.

use std::time::Duration;

use smtpy_core::address::EmailAddress;

/// When to try again after a temporary failure.
///
/// The n-th retry waits `delays[n]`; past the end the last delay repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    /// A schedule from explicit delays (at least one; zero delays become one second).
    #[must_use]
    pub fn new(delays: Vec<Duration>) -> Self {
        let mut delays: Vec<Duration> = delays
            .into_iter()
            .map(|d| d.max(Duration::from_secs(1)))
            .collect();
        if delays.is_empty() {
            delays.push(Duration::from_secs(120));
        }
        Self { delays }
    }

    /// The delay after the `attempt`-th attempt (1-based) failed temporarily.
    #[must_use]
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[i]
    }

    /// The delays.
    #[must_use]
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

impl Default for RetrySchedule {
    /// 2m, 5m, 10m, 15m, 30m, 1h, 2h, then every 2h: quick enough to ride
    /// out a greylisting server (which usually accepts after 1–5 minutes),
    /// sparse enough not to hammer a server that is down.
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self::new(vec![m(2), m(5), m(10), m(15), m(30), m(60), m(120)])
    }
}

/// How the delivery workers run.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Our host name (DSNs' Reporting-MTA, logs).
    pub hostname: String,
    /// The From address of DSNs (`MAILER-DAEMON@hostname` by default).
    pub postmaster: EmailAddress,
    /// Retry delays.
    pub retry: RetrySchedule,
    /// How long a message may stay queued before pending recipients fail.
    /// Default 5 days (RFC 5321 §4.5.4.1 suggests 4–5 days).
    pub lifetime: Duration,
    /// How long a lease lasts; a worker that dies releases its messages
    /// after this. Default 5 minutes (longer than one delivery attempt
    /// with the transport's timeouts).
    pub lease: Duration,
    /// Messages taken per lease call. Default 32.
    pub batch: usize,
    /// Messages delivered at once by one worker. Default 32.
    pub concurrency: usize,
    /// Longest sleep when the queue is empty (an enqueue wakes the worker
    /// earlier). Default 1 second.
    pub idle_poll: Duration,
}

impl DeliveryConfig {
    /// Defaults for `hostname`.
    ///
    /// # Errors
    /// When `hostname` cannot make a postmaster address.
    pub fn new(hostname: &str) -> Result<Self, smtpy_core::address::AddressError> {
        Ok(Self {
            hostname: hostname.to_owned(),
            postmaster: EmailAddress::parse(&format!("MAILER-DAEMON@{hostname}"))?,
            retry: RetrySchedule::default(),
            lifetime: Duration::from_secs(5 * 24 * 3600),
            lease: Duration::from_secs(300),
            batch: 32,
            concurrency: 32,
            idle_poll: Duration::from_secs(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_and_last_delay_repeats() {
        let s = RetrySchedule::default();
        let mins: Vec<u64> = (1..=9).map(|a| s.delay_after(a).as_secs() / 60).collect();
        assert_eq!(mins, vec![2, 5, 10, 15, 30, 60, 120, 120, 120]);
        assert_eq!(s.delay_after(0), Duration::from_secs(120));
    }

    #[test]
    fn schedule_down_to_seconds_and_never_empty() {
        let s = RetrySchedule::new(vec![Duration::from_secs(2), Duration::ZERO]);
        assert_eq!(s.delay_after(1), Duration::from_secs(2));
        assert_eq!(s.delay_after(2), Duration::from_secs(1));
        assert_eq!(
            RetrySchedule::new(vec![]).delay_after(3),
            Duration::from_secs(120)
        );
    }
}
