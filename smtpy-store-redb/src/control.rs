//! The control plane: [`ControlStore`] — settings, job leases and run
//! records, and the queries of the background jobs.
//!
//! A lease is taken in one write transaction; redb runs write transactions
//! one at a time, so two callers never both get a lease.

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::ids::{AliasId, UserId};
use smtpy_core::model::{Alias, Invitation, UsageSubject};
use smtpy_core::store::{
    ControlStore, JobRun, JobState, MAX_PAGE_SIZE, Setting, check_control_key, plan_usage_rollup,
};
use smtpy_core::time::{Day, Timestamp};

use crate::accounts::remove_invitation;
use crate::codec::{decode, encode, usage_key, usage_key_day, usage_parts, usage_value};
use crate::error::Error;
use crate::schema::{ALIASES, JOBS, SETTINGS, Tx};
use crate::store::RedbStore;

/// The stored state of `job`, or a fresh one.
fn job_state(tx: &Tx<'_>, job: &str) -> Result<JobState, Error> {
    match tx.jobs()?.get(job)? {
        Some(row) => decode(row.value()),
        None => Ok(JobState::new(job)),
    }
}

fn put_job(tx: &Tx<'_>, state: &JobState) -> Result<(), Error> {
    tx.jobs()?
        .insert(state.job.as_str(), encode(state)?.as_slice())?;
    Ok(())
}

/// The subject of a usage key (its first 17 bytes).
fn usage_key_subject(k: &[u8; 21]) -> Result<UsageSubject, Error> {
    let mut id = [0u8; 16];
    id.copy_from_slice(&k[1..17]);
    let uuid = uuid::Uuid::from_bytes(id);
    match k[0] {
        0 => Ok(UsageSubject::User(UserId::from_uuid(uuid))),
        1 => Ok(UsageSubject::Alias(AliasId::from_uuid(uuid))),
        other => Err(Error::corrupt(
            "usage",
            format!("unknown subject kind {other}"),
        )),
    }
}

#[async_trait]
impl ControlStore for RedbStore {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<Setting>> {
        let key = key.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(SETTINGS)?;
            match table.get(key.as_str())? {
                Some(row) => decode(row.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str, now: Timestamp) -> StoreResult<Setting> {
        check_control_key("setting", key)?;
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |tx| {
            let mut table = tx.settings()?;
            let version = match table.get(key.as_str())? {
                Some(row) => decode::<Setting>(row.value())?.version + 1,
                None => 1,
            };
            let setting = Setting {
                key,
                value,
                version,
                updated_at: now,
            };
            table.insert(setting.key.as_str(), encode(&setting)?.as_slice())?;
            Ok(setting)
        })
        .await
    }

    async fn list_settings(&self) -> StoreResult<Vec<Setting>> {
        self.read(|txn| {
            let table = txn.open_table(SETTINGS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
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
        let (job, holder) = (job.to_owned(), holder.to_owned());
        self.write(move |tx| {
            let mut state = job_state(tx, &job)?;
            if !state.lease_available(&holder, now) {
                tx.unchanged();
                return Ok(false);
            }
            state.holder = Some(holder);
            state.lease_until = Some(until);
            put_job(tx, &state)?;
            Ok(true)
        })
        .await
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> StoreResult<bool> {
        let (job, holder) = (job.to_owned(), holder.to_owned());
        self.write(move |tx| {
            let exists = tx.jobs()?.get(job.as_str())?.is_some();
            let mut state = job_state(tx, &job)?;
            if !exists || state.holder.as_deref() != Some(holder.as_str()) {
                tx.unchanged();
                return Ok(false);
            }
            state.holder = None;
            state.lease_until = None;
            put_job(tx, &state)?;
            Ok(true)
        })
        .await
    }

    async fn record_job_run(&self, job: &str, run: &JobRun) -> StoreResult<()> {
        check_control_key("job", job)?;
        let (job, run) = (job.to_owned(), run.clone());
        self.write(move |tx| {
            let mut state = job_state(tx, &job)?;
            state.apply_run(&run);
            put_job(tx, &state)
        })
        .await
    }

    async fn list_jobs(&self) -> StoreResult<Vec<JobState>> {
        self.read(|txn| {
            let table = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn expired_aliases(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Alias>> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
        // A scan of every alias row: a background job's query, run every
        // few minutes, not on the mail path.
        self.read(move |txn| {
            let table = txn.open_table(ALIASES)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, v) = entry?;
                let alias: Alias = decode(v.value())?;
                if alias.deleted_at.is_none() && alias.expires_at.is_some_and(|e| e <= now) {
                    out.push(alias);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge_expired_invitations(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            let expired: Vec<Invitation> = {
                let rows = tx.invitations()?;
                let mut out = Vec::new();
                for entry in rows.iter()? {
                    let (_, v) = entry?;
                    let inv: Invitation = decode(v.value())?;
                    if inv.expires_at <= now {
                        out.push(inv);
                    }
                }
                out
            };
            if expired.is_empty() {
                tx.unchanged();
                return Ok(0);
            }
            for inv in &expired {
                remove_invitation(tx, inv)?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn rollup_usage(&self, before: Day) -> StoreResult<u64> {
        self.write(move |tx| {
            let plan = {
                let usage = tx.usage()?;
                let mut rows = Vec::new();
                for entry in usage.iter()? {
                    let (k, v) = entry?;
                    let key = k.value();
                    let day = usage_key_day(key);
                    if day < before {
                        let (messages, bytes) = usage_parts(v.value());
                        rows.push((usage_key_subject(key)?, day, messages, bytes));
                    }
                }
                plan_usage_rollup(rows)
            };
            if plan.delete.is_empty() {
                tx.unchanged();
                return Ok(0);
            }
            let mut usage = tx.usage()?;
            for (subject, day) in &plan.delete {
                usage.remove(&usage_key(*subject, *day))?;
            }
            for (subject, month, messages, bytes) in &plan.write {
                usage.insert(
                    &usage_key(*subject, *month),
                    &usage_value(*messages, *bytes),
                )?;
            }
            Ok(plan.removed())
        })
        .await
    }
}
