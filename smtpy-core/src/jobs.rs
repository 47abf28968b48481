//! Background jobs: a small scheduler that runs each job once per interval
//! across every instance sharing a store, and the jobs that need nothing
//! but the store.
//!
//! A [`Job`] has a name, an interval and a `run`. The [`Scheduler`] keeps
//! when each job is next due on this instance; when it is, the scheduler
//! takes the job's lease in the store
//! ([`ControlStore::acquire_job_lease`], for one interval). Only the
//! instance that gets the lease runs the job; the others count the turn as
//! `skipped` and try again an interval later. The lease is kept after a
//! successful run, so no other instance runs the job again before the
//! interval is over; the holder renews it on its next turn, and when the
//! holder stops (crash, shutdown) the lease lapses and another instance
//! takes the job over. A failed run releases the lease and is retried after
//! [`RETRY_AFTER`] (or the interval, if shorter) by whichever instance comes
//! first. Every run is recorded in the store
//! ([`ControlStore::record_job_run`], listed by `GET /api/v1/admin/jobs`)
//! and in the metrics ([`JOB_RUNS`], [`JOB_LAST_SUCCESS`],
//! [`JOB_DURATION`]).
//!
//! Jobs that need more than the store (DNS re-checks, DKIM rotation) are
//! implemented outside this crate: [`Job`] is an ordinary object-safe trait
//! (via `async_trait`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use smtpy_core::jobs::{JobOutcome, Scheduler, SessionAndTokenCleanup};
//! use smtpy_core::memory::MemoryStore;
//! use smtpy_core::metrics::Metrics;
//! use smtpy_core::time::{ManualClock, Timestamp};
//! use smtpy_core::Store;
//!
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
//! let mut scheduler = Scheduler::new(Arc::clone(&store), clock.clone(), "instance-a".into(), Arc::new(Metrics::new()));
//! scheduler.add(SessionAndTokenCleanup::new(Arc::clone(&store)));
//! let report = scheduler.tick(clock.now()).await;
//! assert_eq!(report[0].job, "session-cleanup");
//! assert!(matches!(report[0].outcome, JobOutcome::Ok(_)));
//! // Not due again until its interval has passed.
//! assert!(scheduler.tick(clock.now()).await.is_empty());
//! # use smtpy_core::time::Clock;
//! # });
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::ids::AuditEventId;
use crate::metrics::Metrics;
pub use crate::metrics::{JOB_DURATION, JOB_LAST_SUCCESS, JOB_RUNS};
use crate::model::{Actor, AuditEvent};
use crate::store::{Access, JobRun, Store};
use crate::time::{Clock, Timestamp};

/// After a failed run, the job is tried again this much later (or after its
/// interval, if that is shorter).
pub const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The longest the spawned loop sleeps between two looks at the clock.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, for humans.
    #[error("{0}")]
    Failed(String),
}

/// A background job. Implementations must be cheap to call `name` and
/// `interval` on; `run` does the work and returns a one-line summary.
///
/// ```
/// use std::time::Duration;
/// use async_trait::async_trait;
/// use smtpy_core::jobs::{Job, JobError};
/// use smtpy_core::time::Timestamp;
///
/// struct Hello;
///
/// #[async_trait]
/// impl Job for Hello {
///     fn name(&self) -> &'static str { "hello" }
///     fn interval(&self) -> Duration { Duration::from_secs(3600) }
///     async fn run(&self, _now: Timestamp) -> Result<String, JobError> {
///         Ok("said hello".into())
///     }
/// }
/// ```
#[async_trait]
pub trait Job: Send + Sync {
    /// The job's name: its lease key, metric label and log field
    /// (`purge-deleted-aliases`). Unique per scheduler.
    fn name(&self) -> &'static str;
    /// How often it runs (across all instances).
    fn interval(&self) -> Duration;
    /// Runs once at `now`; the summary ends up in the run record.
    async fn run(&self, now: Timestamp) -> Result<String, JobError>;
}

/// What one due job did in a [`Scheduler::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Ran and succeeded, with its summary.
    Ok(String),
    /// Ran (or could not take its lease) and failed, with the error.
    Error(String),
    /// Another instance holds the lease: not run here.
    Skipped,
}

/// One entry of a tick's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job's name.
    pub job: &'static str,
    /// What happened.
    pub outcome: JobOutcome,
}

struct Entry {
    job: Arc<dyn Job>,
    next_due: Timestamp,
}

/// Runs jobs when due, one instance at a time per job. See the
/// [module docs](self).
pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    holder: String,
    metrics: Arc<Metrics>,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("holder", &self.holder)
            .field("jobs", &self.job_names())
            .finish_non_exhaustive()
    }
}

fn add_duration(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d)
}

impl Scheduler {
    /// A scheduler with no jobs. `holder_id` names this instance in leases
    /// (unique per running process, e.g. hostname and process id).
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        holder_id: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            clock,
            holder: holder_id,
            metrics,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Adds a job, due at once. A job with the name of one already added
    /// replaces it.
    pub fn add(&mut self, job: impl Job + 'static) -> &mut Self {
        self.add_arc(Arc::new(job))
    }

    /// [`add`](Self::add) for a shared job.
    pub fn add_arc(&mut self, job: Arc<dyn Job>) -> &mut Self {
        let entries = self
            .entries
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| e.job.name() != job.name());
        entries.push(Entry {
            job,
            next_due: Timestamp::from_unix_millis(i64::MIN),
        });
        self
    }

    /// The names of the jobs, in the order they were added.
    #[must_use]
    pub fn job_names(&self) -> Vec<&'static str> {
        self.lock().iter().map(|e| e.job.name()).collect()
    }

    /// This instance's lease holder id.
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the next job is due on this instance (`None`: no jobs).
    #[must_use]
    pub fn next_due(&self) -> Option<Timestamp> {
        self.lock().iter().map(|e| e.next_due).min()
    }

    /// Runs every job due at `now`, one after the other, and reports what
    /// each did. Jobs not due are left out of the report.
    pub async fn tick(&self, now: Timestamp) -> Vec<JobReport> {
        let due: Vec<Arc<dyn Job>> = self
            .lock()
            .iter()
            .filter(|e| e.next_due <= now)
            .map(|e| Arc::clone(&e.job))
            .collect();
        let mut report = Vec::with_capacity(due.len());
        for job in due {
            let (outcome, next) = self.run_one(job.as_ref(), now).await;
            if let Some(e) = self.lock().iter_mut().find(|e| e.job.name() == job.name()) {
                e.next_due = next;
            }
            report.push(JobReport {
                job: job.name(),
                outcome,
            });
        }
        report
    }

    async fn run_one(&self, job: &dyn Job, now: Timestamp) -> (JobOutcome, Timestamp) {
        let name = job.name();
        let interval = job.interval().max(Duration::from_secs(1));
        let retry = add_duration(now, interval.min(RETRY_AFTER));
        let lease_until = add_duration(now, interval);
        match self
            .store
            .acquire_job_lease(name, &self.holder, now, lease_until)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.metrics
                    .inc(JOB_RUNS, &[("job", name), ("outcome", "skipped")]);
                tracing::debug!(job = name, "job lease held by another instance");
                return (JobOutcome::Skipped, add_duration(now, interval));
            }
            Err(e) => {
                self.metrics
                    .inc(JOB_RUNS, &[("job", name), ("outcome", "error")]);
                tracing::warn!(job = name, error = %e, "cannot take the job lease");
                return (
                    JobOutcome::Error(format!("cannot take the lease: {e}")),
                    retry,
                );
            }
        }
        let started = Instant::now();
        let result = job.run(now).await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .observe(JOB_DURATION, &[("job", name)], seconds);
        let (outcome, run, next) = match result {
            Ok(summary) => {
                self.metrics
                    .inc(JOB_RUNS, &[("job", name), ("outcome", "ok")]);
                self.metrics.set(
                    JOB_LAST_SUCCESS,
                    &[("job", name)],
                    now.as_unix_millis() as f64 / 1000.0,
                );
                tracing::info!(job = name, seconds, summary = %summary, "job ran");
                let run = JobRun {
                    at: now,
                    ok: true,
                    detail: summary.clone(),
                };
                (JobOutcome::Ok(summary), run, lease_until)
            }
            Err(e) => {
                self.metrics
                    .inc(JOB_RUNS, &[("job", name), ("outcome", "error")]);
                tracing::warn!(job = name, seconds, error = %e, "job failed");
                let detail = e.to_string();
                if let Err(release) = self.store.release_job_lease(name, &self.holder).await {
                    tracing::warn!(job = name, error = %release, "cannot release the job lease");
                }
                let run = JobRun {
                    at: now,
                    ok: false,
                    detail: detail.clone(),
                };
                (JobOutcome::Error(detail), run, retry)
            }
        };
        if let Err(e) = self.store.record_job_run(name, &run).await {
            tracing::warn!(job = name, error = %e, "cannot record the job run");
        }
        (outcome, next)
    }

    /// Runs the scheduler until `shutdown` turns true (or its sender is
    /// dropped): ticks whenever a job is due, looking at the clock at least
    /// every 30 seconds. Leases this instance holds are left to lapse (a
    /// job that just ran is not run again elsewhere before its interval).
    pub fn spawn(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let now = self.clock.now();
                self.tick(now).await;
                let now = self.clock.now();
                let wait = self.next_due().map_or(MAX_SLEEP, |due| {
                    if due <= now {
                        Duration::from_millis(10)
                    } else {
                        due.duration_since(now).min(MAX_SLEEP)
                    }
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The store-only jobs.

/// Name of [`PurgeDeletedAliases`].
pub const PURGE_DELETED_ALIASES: &str = "purge-deleted-aliases";
/// Name of [`SessionAndTokenCleanup`].
pub const SESSION_CLEANUP: &str = "session-cleanup";
/// Name of [`ExpireAliases`].
pub const EXPIRE_ALIASES: &str = "expire-aliases";
/// Name of [`UsageRollup`].
pub const USAGE_ROLLUP: &str = "usage-rollup";
/// Name of [`EventRetention`].
pub const EVENT_RETENTION: &str = "event-retention";
/// Name the reference server gives its DNS re-check job.
pub const DNS_RECHECK: &str = "dns-recheck";
/// Name the reference server gives its DKIM rotation job.
pub const DKIM_ROTATION: &str = "dkim-rotation";

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Permanently removes aliases soft-deleted longer ago than `retention`
/// (they leave tombstones). Default: retention 30 days, every hour.
#[derive(Clone)]
pub struct PurgeDeletedAliases {
    store: Arc<dyn Store>,
    retention: Duration,
    interval: Duration,
}

impl PurgeDeletedAliases {
    /// Default retention (30 days).
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

    /// Purges aliases deleted more than `retention` ago, hourly.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, retention: Duration) -> Self {
        Self {
            store,
            retention,
            interval: HOUR,
        }
    }

    /// Runs every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Job for PurgeDeletedAliases {
    fn name(&self) -> &'static str {
        PURGE_DELETED_ALIASES
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let n = self
            .store
            .purge_deleted_aliases(now.saturating_sub(self.retention))
            .await?;
        Ok(format!("purged {n} deleted aliases"))
    }
}

/// Removes expired sessions and expired invitations. Default: every 15
/// minutes.
#[derive(Clone)]
pub struct SessionAndTokenCleanup {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl SessionAndTokenCleanup {
    /// The job, every 15 minutes.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            interval: Duration::from_secs(15 * 60),
        }
    }

    /// Runs every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Job for SessionAndTokenCleanup {
    fn name(&self) -> &'static str {
        SESSION_CLEANUP
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let sessions = self.store.purge_expired_sessions(now).await?;
        let invitations = self.store.purge_expired_invitations(now).await?;
        Ok(format!(
            "removed {sessions} expired sessions and {invitations} expired invitations"
        ))
    }
}

/// Soft-deletes aliases whose `expires_at` has passed (they go to the
/// owner's trash and are purged after the retention like any deleted
/// alias), with an `alias.expire` audit event per alias in the owner's log.
/// Default: every 5 minutes, at most 10 000 aliases per run.
#[derive(Clone)]
pub struct ExpireAliases {
    store: Arc<dyn Store>,
    interval: Duration,
}

/// Aliases read per batch by [`ExpireAliases`].
const EXPIRE_BATCH: u32 = 200;
/// Batches per run of [`ExpireAliases`] (the rest waits for the next run).
const EXPIRE_MAX_BATCHES: usize = 50;

impl ExpireAliases {
    /// The job, every 5 minutes.
    #[must_use]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            interval: Duration::from_secs(5 * 60),
        }
    }

    /// Runs every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Job for ExpireAliases {
    fn name(&self) -> &'static str {
        EXPIRE_ALIASES
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let mut expired = 0u64;
        for _ in 0..EXPIRE_MAX_BATCHES {
            let batch = self.store.expired_aliases(now, EXPIRE_BATCH).await?;
            for alias in &batch {
                match self.store.delete_alias(Access::System, alias.id, now).await {
                    Ok(()) => {}
                    // Purged or deleted meanwhile: nothing left to expire.
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
                let mut details = BTreeMap::new();
                if let Some(at) = alias.expires_at {
                    details.insert("expires_at".to_owned(), at.as_unix_secs().to_string());
                }
                details.insert("address".to_owned(), alias.address.to_string());
                self.store
                    .append_audit(&AuditEvent {
                        id: AuditEventId::new(),
                        actor: Actor::System,
                        owner: Some(alias.owner),
                        action: "alias.expire".to_owned(),
                        target: Some(alias.id.to_string()),
                        ip: None,
                        at: now,
                        details,
                    })
                    .await?;
                expired += 1;
            }
            if batch.len() < EXPIRE_BATCH as usize {
                break;
            }
        }
        Ok(format!("expired {expired} aliases"))
    }
}

/// Folds daily usage rows older than `keep_daily` into monthly rows
/// ([`ControlStore::rollup_usage`](crate::store::ControlStore::rollup_usage)).
/// Default: keep 400 days of daily rows, run daily.
#[derive(Clone)]
pub struct UsageRollup {
    store: Arc<dyn Store>,
    keep_daily: Duration,
    interval: Duration,
}

impl UsageRollup {
    /// Default daily retention (400 days).
    pub const DEFAULT_KEEP_DAILY: Duration = Duration::from_secs(400 * 86_400);

    /// Keeps `keep_daily` of daily rows; runs daily.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, keep_daily: Duration) -> Self {
        Self {
            store,
            keep_daily,
            interval: DAY,
        }
    }

    /// Runs every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Job for UsageRollup {
    fn name(&self) -> &'static str {
        USAGE_ROLLUP
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let before = now.saturating_sub(self.keep_daily).day();
        let n = self.store.rollup_usage(before).await?;
        Ok(format!("folded {n} daily usage rows into monthly rows"))
    }
}

/// Deletes delivery events older than `keep` and rate-limit state that no
/// longer limits anything. Default: keep 90 days of events, hourly.
#[derive(Clone)]
pub struct EventRetention {
    store: Arc<dyn Store>,
    keep: Duration,
    interval: Duration,
}

impl EventRetention {
    /// Default event retention (90 days).
    pub const DEFAULT_KEEP: Duration = Duration::from_secs(90 * 86_400);

    /// Keeps `keep` of events; runs hourly.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, keep: Duration) -> Self {
        Self {
            store,
            keep,
            interval: HOUR,
        }
    }

    /// Runs every `interval` instead.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

#[async_trait]
impl Job for EventRetention {
    fn name(&self) -> &'static str {
        EVENT_RETENTION
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let events = self
            .store
            .purge_events(now.saturating_sub(self.keep))
            .await?;
        // A key whose theoretical arrival time is in the past behaves as a
        // fresh key: dropping it changes no decision.
        let limits = self.store.purge_rate_limits(now).await?;
        Ok(format!(
            "deleted {events} old delivery events and {limits} idle rate-limit keys"
        ))
    }
}
