//! [`ControlStore`]: settings, background job leases and run records, and
//! the queries of the background jobs.
//!
//! Both writes that race between instances are one statement each:
//!
//! * a setting write is `INSERT … ON CONFLICT (key) DO UPDATE SET version =
//!   settings.version + 1 … RETURNING`, so concurrent writers each get
//!   their own version;
//! * taking a lease is `INSERT … ON CONFLICT (job) DO UPDATE … WHERE` the
//!   lease is free, lapsed or the caller's: the row is written (one row
//!   affected) only when the caller may have it. PostgreSQL locks the
//!   conflicting row for the update and re-checks the `WHERE` on its latest
//!   version, so of several racing instances exactly one gets the lease;
//!   SQLite serialises writers.

use async_trait::async_trait;
use smtpy_core::ids::{AliasId, UserId};
use smtpy_core::model::{Alias, UsageSubject};
use smtpy_core::store::{
    ControlStore, JobRun, JobState, MAX_PAGE_SIZE, Setting, check_control_key, plan_usage_rollup,
};
use smtpy_core::time::{Day, Timestamp};
use smtpy_core::{StoreError, StoreResult};

use super::aliases::fetch_expired;
use crate::SqlStore;
use crate::codec::to_i64;
use crate::db::{Row, args};

fn setting_from_row(r: &Row) -> StoreResult<Setting> {
    Ok(Setting {
        key: r.get("key")?,
        value: r.get("value")?,
        version: r.u64("version")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn job_from_row(r: &Row) -> StoreResult<JobState> {
    Ok(JobState {
        job: r.get("job")?,
        holder: r.get("holder")?,
        lease_until: r.opt_ts("lease_until")?,
        last_run_at: r.opt_ts("last_run_at")?,
        last_ok: r.get("last_ok")?,
        last_detail: r.get("last_detail")?,
        last_success_at: r.opt_ts("last_success_at")?,
    })
}

const JOB_COLUMNS: &str =
    "job, holder, lease_until, last_run_at, last_ok, last_detail, last_success_at";

fn subject_of(kind: &str, id: uuid::Uuid) -> StoreResult<UsageSubject> {
    match kind {
        "user" => Ok(UsageSubject::User(UserId::from_uuid(id))),
        "alias" => Ok(UsageSubject::Alias(AliasId::from_uuid(id))),
        other => Err(StoreError::backend(
            "sql",
            format!("usage_daily has an unknown subject kind {other:?}"),
        )),
    }
}

#[async_trait]
impl ControlStore for SqlStore {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<Setting>> {
        let mut s = self.db.read().await?;
        s.fetch_optional(
            "SELECT key, value, version, updated_at FROM settings WHERE key = $1",
            args![key],
        )
        .await?
        .as_ref()
        .map(setting_from_row)
        .transpose()
    }

    async fn put_setting(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<Setting> {
        check_control_key("setting", key)?;
        let mut s = self.db.write_one().await?;
        let row = s
            .fetch_optional(
                "INSERT INTO settings (key, value, version, updated_at) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 version = settings.version + 1, updated_at = excluded.updated_at \
                 RETURNING key, value, version, updated_at",
                args![key, value, now],
            )
            .await?
            .ok_or_else(|| StoreError::backend("sql", "an upsert returned no row"))?;
        setting_from_row(&row)
    }

    async fn list_settings(&self) -> StoreResult<Vec<Setting>> {
        let mut s = self.db.read().await?;
        let rows = s
            .fetch_all(
                "SELECT key, value, version, updated_at FROM settings ORDER BY key",
                args![],
            )
            .await?;
        rows.iter().map(setting_from_row).collect()
    }

    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        check_control_key("job", job)?;
        check_control_key("job holder", holder)?;
        let mut s = self.db.write_one().await?;
        let written = s
            .execute(
                "INSERT INTO job_state (job, holder, lease_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, \
                 lease_until = excluded.lease_until \
                 WHERE job_state.holder IS NULL OR job_state.lease_until IS NULL \
                 OR job_state.lease_until <= $4 OR job_state.holder = excluded.holder",
                args![job, holder, until, now],
            )
            .await?;
        Ok(written > 0)
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> StoreResult<bool> {
        let mut s = self.db.write_one().await?;
        let written = s
            .execute(
                "UPDATE job_state SET holder = NULL, lease_until = NULL \
                 WHERE job = $1 AND holder = $2",
                args![job, holder],
            )
            .await?;
        Ok(written > 0)
    }

    async fn record_job_run(&self, job: &str, run: &JobRun) -> StoreResult<()> {
        check_control_key("job", job)?;
        let success = run.ok.then_some(run.at);
        let mut s = self.db.write_one().await?;
        s.execute(
            "INSERT INTO job_state (job, last_run_at, last_ok, last_detail, last_success_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job) DO UPDATE SET last_run_at = excluded.last_run_at, \
             last_ok = excluded.last_ok, last_detail = excluded.last_detail, \
             last_success_at = COALESCE(excluded.last_success_at, job_state.last_success_at)",
            args![job, run.at, run.ok, run.detail.as_str(), success],
        )
        .await?;
        Ok(())
    }

    async fn list_jobs(&self) -> StoreResult<Vec<JobState>> {
        let mut s = self.db.read().await?;
        let rows = s
            .fetch_all(
                format!("SELECT {JOB_COLUMNS} FROM job_state ORDER BY job"),
                args![],
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn expired_aliases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Alias>> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE_SIZE));
        let mut s = self.db.read().await?;
        fetch_expired(&mut s, now, limit).await
    }

    async fn purge_expired_invitations(&self, now: Timestamp) -> StoreResult<u64> {
        let mut s = self.db.write_one().await?;
        Ok(
            s.execute("DELETE FROM invitations WHERE expires_at <= $1", args![now])
                .await?,
        )
    }

    async fn rollup_usage(&self, before: Day) -> StoreResult<u64> {
        let cutoff = i64::from(before.days_since_epoch());
        let mut s = self.db.write().await?;
        // Locks the rows it folds on PostgreSQL, so a concurrent roll-up
        // (another instance) waits and then finds them already folded.
        let rows = s
            .fetch_all(
                crate::db::for_update!(
                    "SELECT subject_kind, subject_id, day, user_id, messages, bytes \
                     FROM usage_daily WHERE day < $1"
                ),
                args![cutoff],
            )
            .await?;
        let mut owners = std::collections::HashMap::new();
        let mut parsed = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.get("subject_kind")?;
            let subject = subject_of(&kind, r.uuid("subject_id")?)?;
            let day: i64 = r.get("day")?;
            let day = Day::from_days_since_epoch(i32::try_from(day).map_err(|_| r.corrupt("day"))?);
            owners.insert(subject, r.uuid("user_id")?);
            parsed.push((subject, day, r.u64("messages")?, r.u64("bytes")?));
        }
        let plan = plan_usage_rollup(parsed);
        if plan.delete.is_empty() {
            s.commit().await?;
            return Ok(0);
        }
        let columns = |subject: UsageSubject| match subject {
            UsageSubject::User(u) => ("user", *u.as_uuid()),
            UsageSubject::Alias(a) => ("alias", *a.as_uuid()),
        };
        for (subject, day) in &plan.delete {
            let (kind, id) = columns(*subject);
            s.execute(
                "DELETE FROM usage_daily WHERE subject_kind = $1 AND subject_id = $2 AND day = $3",
                args![kind, id, i64::from(day.days_since_epoch())],
            )
            .await?;
        }
        for (subject, month, messages, bytes) in &plan.write {
            let (kind, id) = columns(*subject);
            let owner = owners
                .get(subject)
                .copied()
                .ok_or_else(|| StoreError::backend("sql", "a rolled-up subject lost its owner"))?;
            s.execute(
                "INSERT INTO usage_daily (subject_kind, subject_id, day, user_id, messages, bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                args![
                    kind,
                    id,
                    i64::from(month.days_since_epoch()),
                    owner,
                    to_i64(*messages, "usage", "messages")?,
                    to_i64(*bytes, "usage", "bytes")?
                ],
            )
            .await?;
        }
        s.commit().await?;
        Ok(plan.removed())
    }
}
