//! The background job scheduler and the store-only jobs, on the in-memory
//! store with a manual clock.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::Store;
use smtpy_core::jobs::{
    EventRetention, ExpireAliases, Job, JobOutcome, PurgeDeletedAliases, RETRY_AFTER, Scheduler,
    SessionAndTokenCleanup, UsageRollup,
};
use smtpy_core::memory::MemoryStore;
use smtpy_core::metrics::{JOB_DURATION, JOB_LAST_SUCCESS, JOB_RUNS, Metrics};
use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind, UsageRecord, UsageSubject};
use smtpy_core::store::{
    Access, AliasFilter, AuditFilter, DeletedFilter, PageRequest, month_start,
};
use smtpy_core::testing::fixtures::{self, T0, new_invitation, new_session, t};
use smtpy_core::testing::{CountingJob, jobs_two_schedulers_share_leases};
use smtpy_core::time::{ManualClock, Timestamp};

const DAY: Duration = Duration::from_secs(86_400);

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn scheduler(store: &Arc<dyn Store>, holder: &str, metrics: &Arc<Metrics>) -> Scheduler {
    Scheduler::new(
        Arc::clone(store),
        Arc::new(ManualClock::new(T0)),
        holder.into(),
        Arc::clone(metrics),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_share_leases_on_memory() {
    jobs_two_schedulers_share_leases(memory()).await;
}

#[tokio::test]
async fn metrics_record_runs_duration_and_last_success() {
    let store = memory();
    let metrics = Arc::new(Metrics::new());
    let mut s = scheduler(&store, "a", &metrics);
    let job = CountingJob::unique(Duration::from_secs(60));
    s.add(job.clone());
    s.tick(T0).await;
    s.tick(t(60)).await;
    let ok = [("job", job.name), ("outcome", "ok")];
    assert_eq!(metrics.get(JOB_RUNS, &ok), 2.0);
    assert_eq!(
        metrics.get(JOB_DURATION, &[("job", job.name)]),
        2.0,
        "two observations"
    );
    assert_eq!(
        metrics.get(JOB_LAST_SUCCESS, &[("job", job.name)]),
        t(60).as_unix_secs() as f64
    );
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "smtpy_job_runs_total{{job=\"{}\",outcome=\"ok\"}} 2",
            job.name
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE smtpy_job_duration_seconds histogram"));
    assert!(text.contains("# TYPE smtpy_job_last_success_timestamp_seconds gauge"));
}

#[tokio::test]
async fn a_failed_run_is_recorded_releases_the_lease_and_retries_sooner() {
    let store = memory();
    let metrics = Arc::new(Metrics::new());
    let mut a = scheduler(&store, "a", &metrics);
    let mut failing = CountingJob::unique(DAY);
    failing.fail = Some("boom");
    a.add(failing.clone());
    let report = a.tick(T0).await;
    assert_eq!(report[0].outcome, JobOutcome::Error("boom".into()));
    assert_eq!(
        metrics.get(JOB_RUNS, &[("job", failing.name), ("outcome", "error")]),
        1.0
    );
    assert_eq!(metrics.get(JOB_LAST_SUCCESS, &[("job", failing.name)]), 0.0);
    let state = store
        .list_jobs()
        .await
        .expect("list")
        .into_iter()
        .find(|j| j.job == failing.name)
        .expect("listed");
    assert_eq!(state.last_ok, Some(false));
    assert_eq!(state.last_detail.as_deref(), Some("boom"));
    assert_eq!(state.holder, None, "a failed run releases its lease");
    // Retried after RETRY_AFTER, not after the whole day.
    let retry_at = T0.saturating_add(RETRY_AFTER);
    assert_eq!(a.next_due(), Some(retry_at));
    assert!(
        a.tick(retry_at.saturating_sub(Duration::from_secs(1)))
            .await
            .is_empty()
    );
    assert_eq!(a.tick(retry_at).await.len(), 1);
    assert_eq!(failing.count(), 2);
    // Another instance may run it right away: nobody holds the lease.
    let mut b = scheduler(&store, "b", &metrics);
    b.add(failing.clone());
    assert_eq!(
        b.tick(retry_at).await[0].outcome,
        JobOutcome::Error("boom".into())
    );
}

#[tokio::test]
async fn spawned_loop_runs_due_jobs_and_stops_on_shutdown() {
    let store = memory();
    let metrics = Arc::new(Metrics::new());
    let mut s = Scheduler::new(
        Arc::clone(&store),
        Arc::new(smtpy_core::time::SystemClock),
        "loop".into(),
        metrics,
    );
    let job = CountingJob::unique(Duration::from_secs(3600));
    s.add(job.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = Arc::new(s).spawn(rx);
    for _ in 0..200 {
        if job.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(job.count(), 1, "ran once at start");
    tx.send(true).expect("send");
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
}

#[tokio::test]
async fn purge_deleted_aliases_job_purges_after_retention() {
    let store = memory();
    let (owner, domain, mailbox, old) = fixtures::owner_with_alias(&*store).await;
    let recent = fixtures::alias(&*store, &owner, &domain, &mailbox).await;
    let now = t(40 * 86_400);
    store
        .delete_alias(Access::System, old.id, T0)
        .await
        .expect("delete");
    store
        .delete_alias(Access::System, recent.id, t(39 * 86_400))
        .await
        .expect("delete");
    let job = PurgeDeletedAliases::new(Arc::clone(&store), 30 * DAY);
    assert_eq!(job.name(), "purge-deleted-aliases");
    assert_eq!(job.run(now).await.expect("run"), "purged 1 deleted aliases");
    assert!(store.is_tombstoned(&old.address).await.expect("tombstone"));
    let trash = store
        .list_aliases(
            Access::System,
            &AliasFilter {
                deleted: DeletedFilter::Deleted,
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .expect("list");
    assert_eq!(
        trash.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![recent.id]
    );
}

#[tokio::test]
async fn session_cleanup_job_removes_expired_sessions_and_invitations() {
    let store = memory();
    let user = fixtures::admin(&*store).await;
    let mut expired = new_session(&user, T0);
    expired.expires_at = t(10);
    let mut live = new_session(&user, T0);
    live.expires_at = t(1000);
    store.create_session(&expired).await.expect("session");
    store.create_session(&live).await.expect("session");
    let old_inv = new_invitation(&user, t(5));
    let new_inv = new_invitation(&user, t(5000));
    store.create_invitation(&old_inv).await.expect("inv");
    store.create_invitation(&new_inv).await.expect("inv");
    let job = SessionAndTokenCleanup::new(Arc::clone(&store));
    assert_eq!(
        job.run(t(100)).await.expect("run"),
        "removed 1 expired sessions and 1 expired invitations"
    );
    assert!(
        store
            .find_session(&expired.id_hash)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .find_session(&live.id_hash)
            .await
            .expect("find")
            .is_some()
    );
    assert!(
        store
            .find_invitation(&old_inv.token_hash)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .find_invitation(&new_inv.token_hash)
            .await
            .expect("find")
            .is_some()
    );
}

#[tokio::test]
async fn expire_aliases_job_soft_deletes_and_audits() {
    let store = memory();
    let (owner, domain, mailbox, keep) = fixtures::owner_with_alias(&*store).await;
    let mut gone = fixtures::new_alias(&owner, &domain, &[&mailbox]);
    gone.expires_at = Some(t(50));
    store.create_alias(&gone).await.expect("alias");
    let mut later = fixtures::new_alias(&owner, &domain, &[&mailbox]);
    later.expires_at = Some(t(500));
    store.create_alias(&later).await.expect("alias");
    let job = ExpireAliases::new(Arc::clone(&store));
    assert_eq!(job.run(t(100)).await.expect("run"), "expired 1 aliases");
    let row = store.get_alias(Access::System, gone.id).await.expect("get");
    assert_eq!(row.deleted_at, Some(t(100)), "soft-deleted, in the trash");
    for id in [keep.id, later.id] {
        assert_eq!(
            store
                .get_alias(Access::System, id)
                .await
                .expect("get")
                .deleted_at,
            None
        );
    }
    let audit = store
        .list_audit(
            Access::Owner(owner.id),
            &AuditFilter {
                action: Some("alias.expire".into()),
                since: None,
            },
            PageRequest::default(),
        )
        .await
        .expect("audit");
    assert_eq!(audit.items.len(), 1);
    assert_eq!(audit.items[0].target, Some(gone.id.to_string()));
    assert_eq!(
        audit.items[0].details.get("address"),
        Some(&gone.address.to_string())
    );
    assert_eq!(
        job.run(t(200)).await.expect("second run"),
        "expired 0 aliases"
    );
}

#[tokio::test]
async fn usage_rollup_job_folds_rows_older_than_keep_daily() {
    let store = memory();
    let (owner, _, _, alias) = fixtures::owner_with_alias(&*store).await;
    let old = Timestamp::from_unix_secs(1_600_000_000); // 2020-09-13
    for (at, n) in [(old, 1), (old.saturating_add(DAY), 2), (T0, 4)] {
        store
            .record_usage(&UsageRecord {
                user: owner.id,
                alias: Some(alias.id),
                at,
                messages: n,
                bytes: n,
            })
            .await
            .expect("usage");
    }
    let job = UsageRollup::new(Arc::clone(&store), 400 * DAY);
    let summary = job.run(T0).await.expect("run");
    assert_eq!(summary, "folded 2 daily usage rows into monthly rows");
    let rows = store
        .usage(
            Access::System,
            UsageSubject::Alias(alias.id),
            month_start(old.day()),
            T0.day(),
        )
        .await
        .expect("usage");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].day, rows[0].messages), (month_start(old.day()), 3));
    assert_eq!((rows[1].day, rows[1].messages), (T0.day(), 4));
}

#[tokio::test]
async fn event_retention_job_drops_old_events_and_idle_rate_limits() {
    let store = memory();
    let old = DeliveryEvent::new(EventKind::Accepted, T0);
    let new = DeliveryEvent::new(EventKind::Accepted, t(95 * 86_400));
    store
        .append_events(&[old, new.clone()])
        .await
        .expect("events");
    let quota = smtpy_core::gcra::Quota::per_hour(10).expect("quota");
    store.check_rate("k", &quota, T0, 1).await.expect("rate");
    let job = EventRetention::new(Arc::clone(&store), 90 * DAY);
    let summary = job.run(t(100 * 86_400)).await.expect("run");
    assert_eq!(
        summary,
        "deleted 1 old delivery events and 1 idle rate-limit keys"
    );
    let page = store
        .list_events(
            Access::System,
            &EventFilter::default(),
            PageRequest::default(),
        )
        .await
        .expect("list");
    assert_eq!(page.items, vec![new]);
}
