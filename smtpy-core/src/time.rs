//! Time, injected: every component reads the time from a [`Clock`], so retry
//! schedules, expiries and rate limits are tested with a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Milliseconds are precise enough for mail (SMTP timestamps are in seconds)
/// and fit every backend's 64-bit integer column.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the Unix epoch.
    #[must_use]
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }
    /// From whole seconds since the Unix epoch (saturating).
    #[must_use]
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }
    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }
    /// Whole seconds since the Unix epoch (rounded down).
    #[must_use]
    pub const fn as_unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    /// This instant plus `d`, saturating at the end of representable time.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }
    /// This instant minus `d`, saturating at the start of representable time.
    #[must_use]
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }
    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        let ms = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
    /// The UTC calendar day this instant falls on.
    #[must_use]
    pub const fn day(self) -> Day {
        // 86_400_000 ms a day; result always fits in i32 for i64 millis / 86.4e6.
        Day((self.0.div_euclid(86_400_000)) as i32)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

/// A UTC calendar day, counted in days since 1970-01-01 (usage counters are per day).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug, Default,
)]
#[serde(transparent)]
pub struct Day(i32);

impl Day {
    /// From a count of days since 1970-01-01.
    #[must_use]
    pub const fn from_days_since_epoch(days: i32) -> Self {
        Self(days)
    }
    /// Days since 1970-01-01.
    #[must_use]
    pub const fn days_since_epoch(self) -> i32 {
        self.0
    }
    /// The first instant of this day.
    #[must_use]
    pub const fn start(self) -> Timestamp {
        Timestamp((self.0 as i64) * 86_400_000)
    }
    /// The next day (saturating).
    #[must_use]
    pub const fn next(self) -> Day {
        Day(self.0.saturating_add(1))
    }
    /// The proleptic Gregorian calendar date: (year, month 1–12, day 1–31).
    ///
    /// ```
    /// use smtpy_core::time::Day;
    /// assert_eq!(Day::from_days_since_epoch(0).civil(), (1970, 1, 1));
    /// assert_eq!(Day::from_days_since_epoch(19_782).civil(), (2024, 2, 29));
    /// ```
    #[must_use]
    pub const fn civil(self) -> (i64, u32, u32) {
        // Days counted from 0000-03-01 in 400-year eras of 146 097 days, so
        // the leap day ends a year (H. Hinnant's `civil_from_days`).
        let z = self.0 as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153; // 0 = March
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
        // In range by construction: 1..=12 and 1..=31.
        (y, m as u32, d as u32)
    }
    /// The day of a proleptic Gregorian date, or `None` for a date that does
    /// not exist (`2023-02-29`, month 13) or lies outside `i32` days.
    ///
    /// ```
    /// use smtpy_core::time::Day;
    /// assert_eq!(Day::from_civil(2024, 2, 29).map(Day::civil), Some((2024, 2, 29)));
    /// assert_eq!(Day::from_civil(2023, 2, 29), None);
    /// ```
    #[must_use]
    pub fn from_civil(year: i64, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year.abs() > 5_000_000 {
            return None;
        }
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let d = Day(i32::try_from(era * 146_097 + doe - 719_468).ok()?);
        // 31 April and the like come back as another date.
        (d.civil() == (year, month, day)).then_some(d)
    }
    /// Parses `YYYY-MM-DD` (four-digit year, two-digit month and day).
    #[must_use]
    pub fn parse(text: &str) -> Option<Day> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = text.get(r)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        Day::from_civil(i64::from(num(0..4)?), num(5..7)?, num(8..10)?)
    }
}

/// `YYYY-MM-DD`.
impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use smtpy_core::time::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().as_unix_secs(), 1_700_000_060);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `at`.
    #[must_use]
    pub fn new(at: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(at.0)))
    }
    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::Day;

    #[test]
    fn calendar_dates_round_trip_and_impossible_ones_are_refused() {
        // Every day from 1600 to 2400 maps to a date and back.
        let from = Day::from_civil(1600, 1, 1).expect("1600-01-01");
        let to = Day::from_civil(2400, 12, 31).expect("2400-12-31");
        let mut last = None;
        for n in from.days_since_epoch()..=to.days_since_epoch() {
            let day = Day::from_days_since_epoch(n);
            let (y, m, d) = day.civil();
            assert_eq!(Day::from_civil(y, m, d), Some(day), "{y}-{m}-{d}");
            assert_eq!(Day::parse(&day.to_string()), Some(day));
            if let Some(prev) = last {
                assert!((y, m, d) > prev, "dates increase");
            }
            last = Some((y, m, d));
        }
        assert_eq!(Day::from_days_since_epoch(0).to_string(), "1970-01-01");
        assert_eq!(Day::from_days_since_epoch(-1).to_string(), "1969-12-31");
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-1-01",
            "2024-01-0x",
            "",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Day::parse("2000-02-29").map(Day::civil),
            Some((2000, 2, 29))
        );
    }
}
