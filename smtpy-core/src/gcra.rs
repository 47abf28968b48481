//! Rate limiting with the Generic Cell Rate Algorithm (GCRA).
//!
//! GCRA keeps a single number per limited key: the *theoretical arrival time*
//! (TAT), the instant at which the key would be "caught up" if every event so
//! far had arrived exactly at the permitted rate. Everything here is pure and
//! deterministic: the caller passes in the stored TAT and the current time and
//! gets back a [`Decision`] including the TAT to store. That makes it easy to
//! keep the state in any store (a map, a database row, a redb table) and to
//! test without a clock.
//!
//! # Formulation
//!
//! With emission interval `T` (milliseconds per event) and a burst of `B`
//! events, a request of `cost` cells arriving at `now` is evaluated as:
//!
//! ```text
//! tat      = max(stored_tat, now)            // a missing state counts as `now`
//! new_tat  = tat + cost * T
//! allow_at = new_tat - B * T
//! allowed  = now >= allow_at                 // the request fits in the burst
//! ```
//!
//! From a fresh state exactly `B` cost-1 events pass back to back at the same
//! instant, after which one more event passes every `T` milliseconds. Over any
//! window of `W` milliseconds at most `B + W / T` cells are allowed.
//!
//! All arithmetic is done in 128-bit integers, so no input (huge counts or
//! bursts, times near `i64::MIN` / `i64::MAX`, arbitrary stored states) can
//! overflow or panic.

use std::time::Duration;

/// Milliseconds in one second.
const SECOND_MS: u64 = 1_000;
/// Milliseconds in one minute.
const MINUTE_MS: u64 = 60 * SECOND_MS;
/// Milliseconds in one hour.
const HOUR_MS: u64 = 60 * MINUTE_MS;
/// Milliseconds in one day.
const DAY_MS: u64 = 24 * HOUR_MS;

/// Why a [`Quota`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The event count was zero; use no limiter at all to block everything.
    #[error("rate limit count must be at least 1")]
    ZeroCount,
    /// The burst was zero, which would deny every request.
    #[error("rate limit burst must be at least 1")]
    ZeroBurst,
    /// The period was zero.
    #[error("rate limit period must be longer than zero")]
    ZeroPeriod,
    /// The period does not fit in a `u64` number of milliseconds.
    #[error("rate limit period is too long")]
    PeriodTooLong,
    /// More than one event per millisecond was requested; the emission
    /// interval would round to 0 ms. The fastest representable rate is one
    /// event per millisecond (1000 per second).
    #[error("rate limit of {count} per {period_ms} ms is faster than one event per millisecond")]
    RateTooHigh {
        /// The requested number of events.
        count: u32,
        /// The requested period, in milliseconds.
        period_ms: u64,
    },
}

/// A rate limit: `count` events per `period`, with up to `burst` events
/// allowed back to back at the same instant (`burst >= 1`).
///
/// Time is tracked in whole milliseconds. The emission interval
/// ([`Quota::emission_interval_ms`]) is `period / count` **rounded up** to a
/// whole millisecond, so the enforced long-run rate never exceeds the
/// requested one; it is exactly the requested rate when `count` divides the
/// period in milliseconds (e.g. 100 per hour, 1000 per day) and slightly
/// slower otherwise (`per_second(600)` enforces one event every 2 ms, i.e.
/// 500 per second). The fastest representable rate is one event per
/// millisecond; faster quotas are rejected with [`QuotaError::RateTooHigh`].
/// A period that is not a whole number of milliseconds is rounded up too.
///
/// Deserialising validates the fields the same way [`Quota::new`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawQuota")]
pub struct Quota {
    count: u32,
    period_ms: u64,
    burst: u32,
}

/// Unvalidated wire form of [`Quota`], used only for deserialisation.
#[derive(serde::Deserialize)]
struct RawQuota {
    count: u32,
    period_ms: u64,
    burst: u32,
}

impl TryFrom<RawQuota> for Quota {
    type Error = QuotaError;

    fn try_from(raw: RawQuota) -> Result<Self, Self::Error> {
        Quota::from_ms(raw.count, raw.period_ms, raw.burst)
    }
}

impl Quota {
    /// A quota of `count` events per `period`, allowing `burst` events at once.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] when `count`, `burst` or `period` is zero, when the
    /// period overflows `u64` milliseconds, or when the rate is faster than
    /// one event per millisecond.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Quota, QuotaError> {
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        let mut millis = period.as_millis();
        if !period.subsec_nanos().is_multiple_of(1_000_000) {
            millis = millis.saturating_add(1);
        }
        let period_ms = u64::try_from(millis).map_err(|_| QuotaError::PeriodTooLong)?;
        Quota::from_ms(count, period_ms, burst)
    }

    /// Shared validation for [`Quota::new`] and deserialisation.
    fn from_ms(count: u32, period_ms: u64, burst: u32) -> Result<Quota, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        if period_ms == 0 {
            return Err(QuotaError::ZeroPeriod);
        }
        if u64::from(count) > period_ms {
            return Err(QuotaError::RateTooHigh { count, period_ms });
        }
        Ok(Quota {
            count,
            period_ms,
            burst,
        })
    }

    /// `n` events per second, with a burst of `n`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] when `n` is zero or above 1000.
    pub fn per_second(n: u32) -> Result<Quota, QuotaError> {
        Quota::from_ms(n, SECOND_MS, n)
    }

    /// `n` events per minute, with a burst of `n`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] when `n` is zero or above 60 000.
    pub fn per_minute(n: u32) -> Result<Quota, QuotaError> {
        Quota::from_ms(n, MINUTE_MS, n)
    }

    /// `n` events per hour, with a burst of `n`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] when `n` is zero or above 3 600 000.
    pub fn per_hour(n: u32) -> Result<Quota, QuotaError> {
        Quota::from_ms(n, HOUR_MS, n)
    }

    /// `n` events per day, with a burst of `n`.
    ///
    /// # Errors
    ///
    /// [`QuotaError`] when `n` is zero or above 86 400 000.
    pub fn per_day(n: u32) -> Result<Quota, QuotaError> {
        Quota::from_ms(n, DAY_MS, n)
    }

    /// The same rate with a different burst.
    ///
    /// # Errors
    ///
    /// [`QuotaError::ZeroBurst`] when `burst` is zero.
    pub fn with_burst(self, burst: u32) -> Result<Quota, QuotaError> {
        Quota::from_ms(self.count, self.period_ms, burst)
    }

    /// Milliseconds between two events at the sustained rate:
    /// `period / count`, rounded up. Always at least 1.
    pub fn emission_interval_ms(&self) -> u64 {
        // `count >= 1` and `count <= period_ms` are guaranteed by the
        // constructors; the zero check only keeps this total.
        let count = u64::from(self.count);
        if count == 0 {
            return u64::MAX;
        }
        self.period_ms.div_ceil(count).max(1)
    }

    /// Events per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period, in whole milliseconds.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// Events allowed back to back.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The TAT (unix milliseconds) to store for this key. When the request is
    /// denied, or is a peek (`cost == 0`), this is the stored TAT unchanged
    /// (or `now_ms` if there was none, which is equivalent to no state).
    pub new_tat_ms: i64,
    /// When denied: milliseconds to wait before the same request will be
    /// allowed (assuming no other traffic), or [`Decision::RETRY_NEVER`] if it
    /// can never be allowed (its cost exceeds the burst). 0 when allowed.
    pub retry_after_ms: u64,
    /// How many more cost-1 events would be allowed right now, after this
    /// request.
    pub remaining: u32,
}

impl Decision {
    /// [`Decision::retry_after_ms`] value meaning "this request will never be
    /// allowed", e.g. because its cost is larger than the burst.
    pub const RETRY_NEVER: u64 = u64::MAX;
}

/// Decide whether a request costing `cost` cells, arriving at `now_ms` (unix
/// milliseconds), conforms to `quota`, given the stored TAT (`None` for a key
/// never seen before).
///
/// `cost == 0` is a peek: it reports `remaining` (and whether the state is
/// within the limit) without changing state. A `cost` larger than the burst is
/// always denied with [`Decision::RETRY_NEVER`].
///
/// Never panics and never overflows, whatever the inputs. If the new TAT
/// would not fit in an `i64` the request is denied with
/// [`Decision::RETRY_NEVER`] rather than silently saturating (this can only
/// happen with times hundreds of millions of years away).
pub fn decide(quota: &Quota, tat_ms: Option<i64>, now_ms: i64, cost: u32) -> Decision {
    let interval = i128::from(quota.emission_interval_ms());
    let now = i128::from(now_ms);
    let stored = tat_ms.unwrap_or(now_ms);
    let tat = i128::from(stored).max(now);
    // Largest allowed distance between the TAT and now: B * T.
    let burst_offset = interval * i128::from(quota.burst());

    let remaining_at = |tat_after: i128| -> u32 {
        let headroom = burst_offset - (tat_after - now);
        if headroom <= 0 || interval <= 0 {
            0
        } else {
            u32::try_from(headroom / interval).unwrap_or(u32::MAX)
        }
    };

    let deny = |retry_after_ms: u64| Decision {
        allowed: false,
        new_tat_ms: stored,
        retry_after_ms,
        remaining: remaining_at(tat),
    };

    if cost > quota.burst() {
        return deny(Decision::RETRY_NEVER);
    }

    let new_tat = tat + interval * i128::from(cost);
    let allow_at = new_tat - burst_offset;
    if now < allow_at {
        let wait = u64::try_from(allow_at - now).unwrap_or(Decision::RETRY_NEVER);
        return deny(wait);
    }

    if cost == 0 {
        return Decision {
            allowed: true,
            new_tat_ms: stored,
            retry_after_ms: 0,
            remaining: remaining_at(tat),
        };
    }

    match i64::try_from(new_tat) {
        Ok(new_tat_ms) => Decision {
            allowed: true,
            new_tat_ms,
            retry_after_ms: 0,
            remaining: remaining_at(new_tat),
        },
        Err(_) => deny(Decision::RETRY_NEVER),
    }
}
