//! [`ControlStore`](crate::store::ControlStore): settings, job leases and
//! run records, and the queries of the background jobs.
//!
//! Setting keys and job names are unique per test; the global operations
//! (`purge_expired_invitations`, `rollup_usage`) use cut-offs far before
//! [`T0`], so rows of other tests sharing the store are never touched.

use super::expect;
use super::fixtures::{self, FAR_FUTURE, T0, new_invitation, t, unique};
use crate::StoreError;
use crate::model::{UsageRecord, UsageSubject};
use crate::store::{Access, JobRun, Store, month_start};
use crate::time::{Day, Timestamp};

/// An instant long before [`T0`] (2020-09-13), for the global purges.
const EARLY: Timestamp = Timestamp::from_unix_secs(1_600_000_000);

/// Settings round-trip; the version starts at 1 and grows on each write;
/// keys are exact; bad keys are `Invalid`.
pub async fn control_settings_round_trip_and_versioning(store: &dyn Store) {
    let key = unique("setting");
    assert_eq!(store.get_setting(&key).await.expect("get"), None);
    let first = store
        .put_setting(&key, r#"{"a":true}"#, T0)
        .await
        .expect("put_setting");
    assert_eq!(
        (first.key.as_str(), first.value.as_str(), first.version),
        (key.as_str(), r#"{"a":true}"#, 1)
    );
    assert_eq!(first.updated_at, T0);
    let second = store
        .put_setting(&key, r#"{"a":false}"#, t(5))
        .await
        .expect("put_setting again");
    assert_eq!(second.version, 2);
    assert_eq!(second.updated_at, t(5));
    assert_eq!(
        store.get_setting(&key).await.expect("get"),
        Some(second.clone())
    );
    let third = store.put_setting(&key, "[]", t(6)).await.expect("put");
    assert_eq!(third.version, 3, "every write bumps the version");
    let other = unique("setting");
    store.put_setting(&other, "1", T0).await.expect("put");
    let listed = store.list_settings().await.expect("list_settings");
    let mine: Vec<_> = listed
        .iter()
        .filter(|s| s.key == key || s.key == other)
        .collect();
    assert_eq!(mine.len(), 2, "each key listed once: {mine:?}");
    assert!(listed.contains(&third));
    let keys: Vec<_> = listed.iter().map(|s| s.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "listed by key");
    assert_eq!(
        store
            .get_setting(&key.to_uppercase())
            .await
            .expect("get upper"),
        None,
        "keys are exact"
    );
    for bad in [String::new(), "x".repeat(200), "a\nb".to_owned()] {
        assert!(
            matches!(
                store.put_setting(&bad, "1", T0).await,
                Err(StoreError::Invalid { .. })
            ),
            "bad key {bad:?} is Invalid"
        );
    }
}

/// While one holder's lease runs, another cannot take it; the holder can
/// extend it; after release anyone can take it.
pub async fn control_lease_exclusive_extend_release(store: &dyn Store) {
    let job = unique("job");
    assert!(
        store
            .acquire_job_lease(&job, "a", T0, t(60))
            .await
            .expect("acquire")
    );
    assert!(
        !store
            .acquire_job_lease(&job, "b", t(30), t(90))
            .await
            .expect("acquire b"),
        "a's lease runs"
    );
    assert!(
        store
            .acquire_job_lease(&job, "a", t(30), t(120))
            .await
            .expect("extend"),
        "the holder extends its own lease"
    );
    assert!(
        !store
            .acquire_job_lease(&job, "b", t(90), t(150))
            .await
            .expect("acquire b"),
        "the extension holds past the first until"
    );
    let state = job_state(store, &job).await;
    assert_eq!(state.holder.as_deref(), Some("a"));
    assert_eq!(state.lease_until, Some(t(120)));
    assert!(
        !store.release_job_lease(&job, "b").await.expect("release b"),
        "only the holder releases"
    );
    assert!(store.release_job_lease(&job, "a").await.expect("release"));
    let state = job_state(store, &job).await;
    assert_eq!((state.holder, state.lease_until), (None, None));
    assert!(
        store
            .acquire_job_lease(&job, "b", t(91), t(150))
            .await
            .expect("acquire after release"),
        "a released lease is free"
    );
    assert!(
        !store
            .release_job_lease(&unique("job"), "a")
            .await
            .expect("release unknown"),
        "releasing an unknown job is false"
    );
    assert!(matches!(
        store.acquire_job_lease("", "a", T0, t(1)).await,
        Err(StoreError::Invalid { .. })
    ));
}

/// A lease lapses at `until` (inclusive): then another holder takes it over.
pub async fn control_lease_lapse_and_takeover(store: &dyn Store) {
    let job = unique("job");
    assert!(
        store
            .acquire_job_lease(&job, "a", T0, t(60))
            .await
            .expect("acquire")
    );
    assert!(
        !store
            .acquire_job_lease(&job, "b", t(59), t(120))
            .await
            .expect("before lapse")
    );
    assert!(
        store
            .acquire_job_lease(&job, "b", t(60), t(120))
            .await
            .expect("at lapse"),
        "until <= now has lapsed"
    );
    assert!(
        !store
            .acquire_job_lease(&job, "a", t(61), t(200))
            .await
            .expect("old holder"),
        "the old holder lost it"
    );
    assert_eq!(
        job_state(store, &job).await.holder.as_deref(),
        Some("b"),
        "b holds it"
    );
}

/// Many holders racing for one free lease: exactly one gets it.
pub async fn control_lease_concurrent_one_wins(store: &dyn Store) {
    let job = unique("job");
    let won = fixtures::concurrently(8, |i| {
        let job = job.clone();
        async move {
            store
                .acquire_job_lease(&job, &format!("holder-{i}"), T0, t(60))
                .await
                .expect("acquire")
        }
    })
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).expect("a winner");
    assert_eq!(
        job_state(store, &job).await.holder,
        Some(format!("holder-{winner}"))
    );
}

/// Run records keep the last run; a success also sets `last_success_at`;
/// recording leaves the lease alone.
pub async fn control_job_runs_recorded(store: &dyn Store) {
    let job = unique("job");
    let ok = JobRun {
        at: T0,
        ok: true,
        detail: "purged 3".into(),
    };
    store.record_job_run(&job, &ok).await.expect("record");
    let state = job_state(store, &job).await;
    assert_eq!(state.holder, None, "a run record takes no lease");
    assert_eq!(state.last_run_at, Some(T0));
    assert_eq!(state.last_ok, Some(true));
    assert_eq!(state.last_detail.as_deref(), Some("purged 3"));
    assert_eq!(state.last_success_at, Some(T0));
    assert!(
        store
            .acquire_job_lease(&job, "a", t(1), t(60))
            .await
            .expect("acquire")
    );
    let failed = JobRun {
        at: t(10),
        ok: false,
        detail: "store unavailable".into(),
    };
    store.record_job_run(&job, &failed).await.expect("record");
    let state = job_state(store, &job).await;
    assert_eq!(state.last_run_at, Some(t(10)));
    assert_eq!(state.last_ok, Some(false));
    assert_eq!(state.last_detail.as_deref(), Some("store unavailable"));
    assert_eq!(state.last_success_at, Some(T0), "the last success stays");
    assert_eq!(state.holder.as_deref(), Some("a"), "the lease stays");
    assert_eq!(state.lease_until, Some(t(60)));
}

/// `expired_aliases` lists live aliases whose `expires_at <= now`, by id,
/// up to the limit; soft-deleted and unexpired ones are left out.
pub async fn control_expired_aliases(store: &dyn Store) {
    let (owner, domain, mailbox, _) = fixtures::owner_with_alias(store).await;
    let make = |expires_at: Option<Timestamp>| {
        let mut a = fixtures::new_alias(&owner, &domain, &[&mailbox]);
        a.expires_at = expires_at;
        a
    };
    let before = make(Some(Timestamp::from_unix_secs(1_599_999_000)));
    let at = make(Some(EARLY));
    let after = make(Some(Timestamp::from_unix_secs(1_600_000_001)));
    let deleted = make(Some(Timestamp::from_unix_secs(1_599_000_000)));
    let never = make(None);
    for a in [&before, &at, &after, &deleted, &never] {
        store.create_alias(a).await.expect("create_alias");
    }
    store
        .delete_alias(Access::System, deleted.id, T0)
        .await
        .expect("delete_alias");
    let found = store
        .expired_aliases(EARLY, 100)
        .await
        .expect("expired_aliases");
    let ids: Vec<_> = found.iter().map(|a| a.id).collect();
    assert_eq!(ids, vec![before.id, at.id], "expired live aliases, by id");
    assert_eq!(found[0], before, "whole rows");
    let one = store.expired_aliases(EARLY, 1).await.expect("limit 1");
    assert_eq!(one.len(), 1, "the limit holds");
    assert_eq!(
        store
            .expired_aliases(EARLY, 0)
            .await
            .expect("limit 0")
            .len(),
        1,
        "a zero limit is clamped to 1"
    );
}

/// Invitations expired at or before `now` go, used or not; the others stay.
pub async fn control_purge_expired_invitations(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let expired = new_invitation(&admin, Timestamp::from_unix_secs(1_599_000_000));
    let at_now = new_invitation(&admin, EARLY);
    let mut used = new_invitation(&admin, Timestamp::from_unix_secs(1_599_500_000));
    used.used_at = Some(Timestamp::from_unix_secs(1_599_400_000));
    used.used_by = Some(admin.id);
    let live = new_invitation(&admin, Timestamp::from_unix_secs(1_600_000_001));
    let far = new_invitation(&admin, FAR_FUTURE);
    for i in [&expired, &at_now, &used, &live, &far] {
        store.create_invitation(i).await.expect("create_invitation");
    }
    let purged = store
        .purge_expired_invitations(EARLY)
        .await
        .expect("purge_expired_invitations");
    assert!(purged >= 3, "three expired invitations, purged {purged}");
    for gone in [&expired, &at_now, &used] {
        assert_eq!(
            store.find_invitation(&gone.token_hash).await.expect("find"),
            None,
            "expired invitation purged"
        );
    }
    for kept in [&live, &far] {
        assert_eq!(
            store
                .find_invitation(&kept.token_hash)
                .await
                .expect("find")
                .as_ref(),
            Some(kept)
        );
    }
    expect::not_found(
        store.delete_invitation(expired.id).await,
        "a purged invitation is gone",
    );
}

/// Roll-up folds days before the cut-off into one row per subject and
/// month (on its first day), keeps totals, leaves later days alone, and a
/// second run changes nothing.
pub async fn control_usage_rollup_preserves_totals(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    // 2020-07-xx and 2020-08-xx, well before T0 and EARLY's day.
    let jul_1 = month_start(Timestamp::from_unix_secs(1_594_000_000).day());
    let day = |n: i32| Day::from_days_since_epoch(jul_1.days_since_epoch() + n);
    let aug_1 = month_start(day(40));
    assert_eq!(aug_1, day(31), "July has 31 days");
    let record = |d: Day, alias: Option<_>, messages: u64| UsageRecord {
        user: owner.id,
        alias,
        at: Timestamp::from_unix_millis(d.start().as_unix_millis() + 3_600_000),
        messages,
        bytes: messages * 10,
    };
    // July: days 1, 3 (with alias), 15 (user only); August: 1st, 5th; a
    // day at the cut-off stays.
    let cutoff = day(45);
    for r in [
        record(day(2), Some(alias.id), 1),
        record(day(2), Some(alias.id), 2),
        record(day(14), None, 4),
        record(aug_1, Some(alias.id), 8),
        record(day(35), Some(alias.id), 16),
        record(cutoff, Some(alias.id), 32),
    ] {
        store.record_usage(&r).await.expect("record_usage");
    }
    let sum = |rows: &[crate::model::DailyUsage]| {
        rows.iter()
            .fold((0, 0), |(m, b), r| (m + r.messages, b + r.bytes))
    };
    let range = |subject| async move {
        store
            .usage(Access::System, subject, jul_1, day(60))
            .await
            .expect("usage")
    };
    let user = UsageSubject::User(owner.id);
    let per_alias = UsageSubject::Alias(alias.id);
    let (user_before, alias_before) = (range(user).await, range(per_alias).await);
    assert_eq!(user_before.len(), 5);
    assert_eq!(alias_before.len(), 4);

    let removed = store.rollup_usage(cutoff).await.expect("rollup_usage");
    assert!(
        removed >= 3,
        "user: 2 July rows fold into 1, 2 August rows into 1; alias: 2 August rows into 1; removed {removed}"
    );
    let (user_after, alias_after) = (range(user).await, range(per_alias).await);
    assert_eq!(sum(&user_after), sum(&user_before), "user totals kept");
    assert_eq!(sum(&alias_after), sum(&alias_before), "alias totals kept");
    let days = |rows: &[crate::model::DailyUsage]| rows.iter().map(|r| r.day).collect::<Vec<_>>();
    assert_eq!(days(&user_after), vec![jul_1, aug_1, cutoff]);
    assert_eq!(days(&alias_after), vec![jul_1, aug_1, cutoff]);
    assert_eq!(
        (user_after[0].messages, user_after[0].bytes),
        (7, 70),
        "July of the user"
    );
    assert_eq!(user_after[1].messages, 24, "August before the cut-off");
    assert_eq!(user_after[2].messages, 32, "the cut-off day is untouched");
    assert_eq!(alias_after[0].messages, 3);

    store.rollup_usage(cutoff).await.expect("second rollup");
    assert_eq!(
        range(user).await,
        user_after,
        "a second run changes nothing"
    );
    assert_eq!(range(per_alias).await, alias_after);
}

async fn job_state(store: &dyn Store, job: &str) -> crate::store::JobState {
    store
        .list_jobs()
        .await
        .expect("list_jobs")
        .into_iter()
        .find(|j| j.job == job)
        .unwrap_or_else(|| panic!("job {job} is listed"))
}

/// A job that counts its runs (for the scheduler tests).
#[derive(Debug, Clone)]
pub struct CountingJob {
    /// Its name (leak a unique one with [`CountingJob::unique`]).
    pub name: &'static str,
    /// Its interval.
    pub interval: std::time::Duration,
    /// Runs so far, shared by clones.
    pub runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When set, every run fails with this message.
    pub fail: Option<&'static str>,
}

impl CountingJob {
    /// A job with a name no other test uses, running every `interval`.
    #[must_use]
    pub fn unique(interval: std::time::Duration) -> Self {
        Self {
            name: Box::leak(unique("job").into_boxed_str()),
            interval,
            runs: std::sync::Arc::default(),
            fail: None,
        }
    }

    /// Runs so far.
    #[must_use]
    pub fn count(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl crate::jobs::Job for CountingJob {
    fn name(&self) -> &'static str {
        self.name
    }
    fn interval(&self) -> std::time::Duration {
        self.interval
    }
    async fn run(&self, _now: Timestamp) -> Result<String, crate::jobs::JobError> {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match self.fail {
            Some(msg) => Err(crate::jobs::JobError::Failed(msg.to_owned())),
            None => Ok(format!("run {n}")),
        }
    }
}

/// Two schedulers (two instances) sharing one store: each interval exactly
/// one of them runs the job; when the holder stops renewing, the other
/// takes over once the lease lapses. Not in [`conformance_suite!`]
/// (it needs an `Arc`): backends call it from their own tests.
pub async fn jobs_two_schedulers_share_leases(store: std::sync::Arc<dyn Store>) {
    use crate::jobs::{JobOutcome, Scheduler};
    use crate::metrics::{JOB_RUNS, Metrics};
    use crate::time::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;

    let interval = Duration::from_secs(60);
    let job = CountingJob::unique(interval);
    let clock = Arc::new(ManualClock::new(T0));
    let (ma, mb) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let mut a = Scheduler::new(
        Arc::clone(&store),
        clock.clone(),
        "instance-a".into(),
        ma.clone(),
    );
    let mut b = Scheduler::new(
        Arc::clone(&store),
        clock.clone(),
        "instance-b".into(),
        mb.clone(),
    );
    a.add(job.clone());
    b.add(job.clone());

    let ra = a.tick(T0).await;
    let rb = b.tick(T0).await;
    assert!(matches!(ra[0].outcome, JobOutcome::Ok(_)), "{ra:?}");
    assert_eq!(rb[0].outcome, JobOutcome::Skipped, "a holds the lease");
    assert_eq!(job.count(), 1);
    assert!(a.tick(t(30)).await.is_empty(), "not due mid-interval");
    assert!(b.tick(t(30)).await.is_empty(), "not due mid-interval");

    // Next interval: a renews first and runs again; b still skips.
    assert!(matches!(a.tick(t(60)).await[0].outcome, JobOutcome::Ok(_)));
    assert_eq!(b.tick(t(60)).await[0].outcome, JobOutcome::Skipped);
    assert_eq!(job.count(), 2, "one run per interval");

    // a stops; its lease (until t(120)) lapses and b takes the job over.
    assert_eq!(
        b.tick(t(120)).await[0].outcome,
        JobOutcome::Ok("run 3".into())
    );
    assert_eq!(job.count(), 3);
    let state = store
        .list_jobs()
        .await
        .expect("list_jobs")
        .into_iter()
        .find(|j| j.job == job.name)
        .expect("listed");
    assert_eq!(state.holder.as_deref(), Some("instance-b"));
    assert_eq!(state.lease_until, Some(t(180)));
    assert_eq!(state.last_run_at, Some(t(120)));
    assert_eq!(state.last_detail.as_deref(), Some("run 3"));
    // a comes back: b's lease runs, a skips.
    assert_eq!(a.tick(t(125)).await[0].outcome, JobOutcome::Skipped);
    assert_eq!(job.count(), 3);

    let labels = |outcome| [("job", job.name), ("outcome", outcome)];
    assert_eq!(ma.get(JOB_RUNS, &labels("ok")), 2.0);
    assert_eq!(ma.get(JOB_RUNS, &labels("skipped")), 1.0);
    assert_eq!(mb.get(JOB_RUNS, &labels("ok")), 1.0);
    assert_eq!(mb.get(JOB_RUNS, &labels("skipped")), 2.0);
}
