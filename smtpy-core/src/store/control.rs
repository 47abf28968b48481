//! [`ControlStore`]: the control plane shared by every instance using one
//! store — runtime settings, background job leases and run records, and the
//! few queries the background jobs need that no other trait offers.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::StoreResult;
use crate::model::Alias;
use crate::time::{Day, Timestamp};

/// Longest setting key or job name a store accepts, in bytes.
pub const MAX_CONTROL_KEY_LEN: usize = 128;

/// One runtime setting: a JSON document under a key.
///
/// `version` starts at 1 and grows by one on every write, so an instance
/// can poll [`ControlStore::get_setting`] and act only when the version
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The key (for example `"features"`).
    pub key: String,
    /// The value, JSON text. The store keeps it as given.
    pub value: String,
    /// 1 on the first write, then incremented on every write.
    pub version: u64,
    /// When it was last written.
    pub updated_at: Timestamp,
}

/// The outcome of one run of a background job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// When the run started.
    pub at: Timestamp,
    /// Whether it succeeded.
    pub ok: bool,
    /// A one-line summary (what it did, or the error).
    pub detail: String,
}

/// Where one background job stands, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// The job's name (for example `"purge-deleted-aliases"`).
    pub job: String,
    /// Who holds the lease, if anyone (an instance id).
    pub holder: Option<String>,
    /// Until when the lease holds; `None` when released or never taken.
    pub lease_until: Option<Timestamp>,
    /// When the last recorded run started.
    pub last_run_at: Option<Timestamp>,
    /// Whether the last recorded run succeeded.
    pub last_ok: Option<bool>,
    /// The last recorded run's summary.
    pub last_detail: Option<String>,
    /// When the last successful run started.
    pub last_success_at: Option<Timestamp>,
}

impl JobState {
    /// A job with no lease and no run yet.
    #[must_use]
    pub fn new(job: &str) -> Self {
        Self {
            job: job.to_owned(),
            holder: None,
            lease_until: None,
            last_run_at: None,
            last_ok: None,
            last_detail: None,
            last_success_at: None,
        }
    }

    /// True if `holder` may take the lease at `now`: nobody holds it, it
    /// lapsed (`lease_until <= now`), or `holder` already holds it. The
    /// reference semantics of [`ControlStore::acquire_job_lease`].
    #[must_use]
    pub fn lease_available(&self, holder: &str, now: Timestamp) -> bool {
        match (&self.holder, self.lease_until) {
            (Some(h), Some(until)) => h == holder || until <= now,
            _ => true,
        }
    }

    /// Applies a run record (the reference semantics of
    /// [`ControlStore::record_job_run`]).
    pub fn apply_run(&mut self, run: &JobRun) {
        self.last_run_at = Some(run.at);
        self.last_ok = Some(run.ok);
        self.last_detail = Some(run.detail.clone());
        if run.ok {
            self.last_success_at = Some(run.at);
        }
    }
}

/// Checks a setting key or job name: 1 to [`MAX_CONTROL_KEY_LEN`] bytes,
/// no control characters. Backends call it before writing.
///
/// # Errors
///
/// [`StoreError::Invalid`](crate::StoreError::Invalid) naming `entity`.
pub fn check_control_key(entity: &'static str, key: &str) -> StoreResult<()> {
    let reason = if key.is_empty() {
        "must not be empty".to_owned()
    } else if key.len() > MAX_CONTROL_KEY_LEN {
        format!("longer than {MAX_CONTROL_KEY_LEN} bytes")
    } else if key.chars().any(char::is_control) {
        "contains control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(crate::StoreError::Invalid { entity, reason })
}

/// The first day of the month `day` falls in (UTC, proleptic Gregorian):
/// the day usage roll-ups date a month's row with.
///
/// ```
/// use smtpy_core::store::month_start;
/// use smtpy_core::time::Timestamp;
///
/// // 2024-02-29 → 2024-02-01
/// let leap = Timestamp::from_unix_secs(1_709_164_800).day();
/// assert_eq!(month_start(leap), Timestamp::from_unix_secs(1_706_745_600).day());
/// ```
#[must_use]
pub fn month_start(day: Day) -> Day {
    let (y, m, _) = day.civil();
    // The first of a month exists whenever the month does.
    Day::from_civil(y, m, 1).unwrap_or(day)
}

/// Runtime settings, background job leases, and the queries of the
/// background jobs.
///
/// Leases make a job run on one instance at a time when several share the
/// store: an instance takes the job's lease before running it, and another
/// instance only gets it once the holder releases it or it lapses.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use smtpy_core::memory::MemoryStore;
/// use smtpy_core::store::ControlStore;
/// use smtpy_core::time::Timestamp;
///
/// let store = MemoryStore::new();
/// let (t0, t1) = (Timestamp::from_unix_secs(100), Timestamp::from_unix_secs(160));
/// assert!(store.acquire_job_lease("purge", "instance-a", t0, t1).await?);
/// assert!(!store.acquire_job_lease("purge", "instance-b", t0, t1).await?, "held by a");
/// assert!(store.acquire_job_lease("purge", "instance-b", t1, t1).await?, "lapsed at t1");
///
/// let first = store.put_setting("features", r#"{"replies":false}"#, t0).await?;
/// let second = store.put_setting("features", r#"{"replies":true}"#, t1).await?;
/// assert_eq!((first.version, second.version), (1, 2));
/// # Ok::<(), smtpy_core::StoreError>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait ControlStore: Send + Sync {
    /// The setting under `key`, if it was ever written.
    async fn get_setting(&self, key: &str) -> StoreResult<Option<Setting>>;
    /// Writes `value` (JSON text, stored as given) under `key` and returns
    /// the stored setting: version 1 for a new key, else the previous
    /// version plus one. `Invalid` for a bad key (see [`check_control_key`]).
    async fn put_setting(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<Setting>;
    /// Every setting, by key.
    async fn list_settings(&self) -> StoreResult<Vec<Setting>>;

    /// Takes or extends the lease of `job` for `holder` until `until`, in
    /// one atomic step (several processes may race). True if the lease was
    /// free, lapsed (`lease_until <= now`) or already `holder`'s; false
    /// (and nothing changed) while another holder's lease runs. `Invalid`
    /// for a bad job or holder name (see [`check_control_key`]).
    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives the lease of `job` up if `holder` holds it; true if it did.
    /// The job's run records stay.
    async fn release_job_lease(&self, job: &str, holder: &str) -> StoreResult<bool>;
    /// Records the outcome of a run of `job` (the last one is kept; a
    /// successful run also sets `last_success_at`). Leaves the lease as it is.
    async fn record_job_run(&self, job: &str, run: &JobRun) -> StoreResult<()>;
    /// Every job that was ever leased or recorded, by name.
    async fn list_jobs(&self) -> StoreResult<Vec<JobState>>;

    /// Up to `limit` (clamped to `1..=`[`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE))
    /// live (not soft-deleted) aliases whose `expires_at` is at or before
    /// `now`, by id.
    async fn expired_aliases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Alias>>;
    /// Deletes invitations whose `expires_at` is at or before `now`, used or
    /// not (none can be redeemed any more); returns how many.
    async fn purge_expired_invitations(&self, now: Timestamp) -> StoreResult<u64>;
    /// Folds the daily usage rows of days before `before` into one row per
    /// subject (user or alias) and month, dated the first day of the month
    /// (see [`month_start`]): the sums of every [`usage`](super::UsageStore::usage)
    /// range covering whole months stay the same, in fewer rows. Rows of
    /// `before` and later are untouched; running it again changes nothing.
    /// Returns how many rows were removed.
    async fn rollup_usage(&self, before: Day) -> StoreResult<u64>;
}

/// What a usage roll-up changes, computed by [`plan_usage_rollup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRollupPlan<S> {
    /// Rows to delete: (subject, day).
    pub delete: Vec<(S, Day)>,
    /// Rows to write after the deletes: (subject, first day of the month,
    /// messages, bytes).
    pub write: Vec<(S, Day, u64, u64)>,
}

impl<S> UsageRollupPlan<S> {
    /// How many rows the plan removes in all (deleted minus written).
    #[must_use]
    pub fn removed(&self) -> u64 {
        (self.delete.len().saturating_sub(self.write.len())) as u64
    }
}

/// The reference roll-up every backend applies (see
/// [`ControlStore::rollup_usage`]): given the usage rows of days before the
/// cut-off as (subject, day, messages, bytes), which rows to delete and
/// which monthly rows to write. A month whose only row is already dated on
/// its first day is left alone, so a second run plans nothing.
///
/// ```
/// use smtpy_core::store::{month_start, plan_usage_rollup};
/// use smtpy_core::time::Day;
///
/// let day = |n| Day::from_days_since_epoch(n);
/// // 1970-01-02 and 1970-01-05 fold into 1970-01-01.
/// let plan = plan_usage_rollup(vec![("u", day(1), 1, 10), ("u", day(4), 2, 20)]);
/// assert_eq!(plan.write, vec![("u", day(0), 3, 30)]);
/// assert_eq!(plan.removed(), 1);
/// assert!(plan_usage_rollup(plan.write.clone()).delete.is_empty());
/// ```
#[must_use]
pub fn plan_usage_rollup<S: Ord + Clone>(rows: Vec<(S, Day, u64, u64)>) -> UsageRollupPlan<S> {
    /// (day, messages, bytes) of one subject's month.
    type Days = Vec<(Day, u64, u64)>;
    let mut groups: std::collections::BTreeMap<(S, Day), Days> = std::collections::BTreeMap::new();
    for (subject, day, messages, bytes) in rows {
        groups
            .entry((subject, month_start(day)))
            .or_default()
            .push((day, messages, bytes));
    }
    let mut plan = UsageRollupPlan {
        delete: Vec::new(),
        write: Vec::new(),
    };
    for ((subject, month), days) in groups {
        if let [(only, _, _)] = days.as_slice()
            && *only == month
        {
            continue;
        }
        let (mut messages, mut bytes) = (0u64, 0u64);
        for (day, m, b) in days {
            messages = messages.saturating_add(m);
            bytes = bytes.saturating_add(b);
            plan.delete.push((subject.clone(), day));
        }
        plan.write.push((subject, month, messages, bytes));
    }
    plan
}
