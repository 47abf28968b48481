//! The audit log, usage counters and rate-limit state: [`AuditStore`],
//! [`UsageStore`] and [`RateLimitStore`].

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::gcra::{self, Decision, Quota};
use smtpy_core::model::{Alias, AuditEvent, DailyUsage, UsageRecord, UsageSubject};
use smtpy_core::store::{
    Access, AuditFilter, AuditStore, Page, PageRequest, RateLimitStore, UsageStore,
};
use smtpy_core::time::{Day, Timestamp};

use crate::codec::{encode, pair, usage_key, usage_key_day, usage_parts, usage_value};
use crate::error::{exists, not_found};
use crate::schema::{ALIASES, AUDIT, AUDIT_BY_OWNER, USAGE};
use crate::store::{RedbStore, load, page_children, page_rows};

#[async_trait]
impl AuditStore for RedbStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let event = event.clone();
        self.write(move |tx| {
            let id = event.id.to_bytes();
            if tx.audit()?.get(&id)?.is_some() {
                return Err(exists("audit event"));
            }
            tx.audit()?.insert(&id, encode(&event)?.as_slice())?;
            if let Some(owner) = event.owner {
                tx.audit_by_owner()?
                    .insert(&pair(owner.to_bytes(), id), ())?;
            }
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        access: Access,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        let filter = filter.clone();
        self.read(move |txn| {
            let rows = txn.open_table(AUDIT)?;
            let keep = |e: &AuditEvent| {
                filter.action.as_ref().is_none_or(|a| *a == e.action)
                    && filter.since.is_none_or(|t| e.at >= t)
            };
            let uuid = |e: &AuditEvent| *e.id.as_uuid();
            match access {
                Access::Owner(owner) => page_children(
                    &txn.open_table(AUDIT_BY_OWNER)?,
                    &rows,
                    owner.to_bytes(),
                    page,
                    |e: &AuditEvent| e.owner == Some(owner) && keep(e),
                    uuid,
                ),
                Access::System => page_rows(&rows, page, keep, uuid),
            }
        })
        .await
    }
}

#[async_trait]
impl UsageStore for RedbStore {
    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()> {
        let record = *record;
        self.write_lazy(move |tx| {
            let day = record.at.day();
            let mut usage = tx.usage()?;
            let subjects = std::iter::once(UsageSubject::User(record.user))
                .chain(record.alias.map(UsageSubject::Alias));
            for subject in subjects {
                let key = usage_key(subject, day);
                let (m, b) = usage.get(&key)?.map_or((0, 0), |g| usage_parts(g.value()));
                let value = usage_value(
                    m.saturating_add(record.messages),
                    b.saturating_add(record.bytes),
                );
                usage.insert(&key, &value)?;
            }
            Ok(())
        })
        .await
    }

    async fn usage(
        &self,
        access: Access,
        subject: UsageSubject,
        from: Day,
        to: Day,
    ) -> StoreResult<Vec<DailyUsage>> {
        self.read(move |txn| {
            if let Access::Owner(me) = access {
                let owner = match subject {
                    UsageSubject::User(u) => Some(u),
                    UsageSubject::Alias(a) => {
                        load::<Alias, 16>(&txn.open_table(ALIASES)?, &a.to_bytes())?
                            .map(|a| a.owner)
                    }
                };
                if owner != Some(me) {
                    return Err(not_found(match subject {
                        UsageSubject::User(_) => "user",
                        UsageSubject::Alias(_) => "alias",
                    }));
                }
            }
            if from > to {
                return Ok(Vec::new());
            }
            let usage = txn.open_table(USAGE)?;
            let (start, end) = (usage_key(subject, from), usage_key(subject, to));
            let mut out = Vec::new();
            for entry in usage.range::<&[u8; 21]>(&start..=&end)? {
                let (k, v) = entry?;
                let (messages, bytes) = usage_parts(v.value());
                out.push(DailyUsage {
                    day: usage_key_day(k.value()),
                    messages,
                    bytes,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl RateLimitStore for RedbStore {
    async fn check_rate(
        &self,
        key: &str,
        quota: &Quota,
        now: Timestamp,
        cost: u32,
    ) -> StoreResult<Decision> {
        let key = key.to_owned();
        let quota = *quota;
        // One write transaction: redb runs them one at a time, so two
        // callers cannot both read the same TAT and spend the same capacity.
        self.write(move |tx| {
            let mut state = tx.rate_limits()?;
            let tat = state.get(key.as_str())?.map(|g| g.value());
            let decision = gcra::decide(&quota, tat, now.as_unix_millis(), cost);
            if decision.allowed && cost > 0 {
                state.insert(key.as_str(), decision.new_tat_ms)?;
            } else {
                tx.unchanged();
            }
            Ok(decision)
        })
        .await
    }

    async fn purge_rate_limits(&self, older_than: Timestamp) -> StoreResult<u64> {
        let cutoff = older_than.as_unix_millis();
        self.write(move |tx| {
            let mut state = tx.rate_limits()?;
            let mut purged = 0u64;
            state.retain(|_, tat| {
                let stale = tat <= cutoff;
                purged += u64::from(stale);
                !stale
            })?;
            if purged == 0 {
                tx.unchanged();
            }
            Ok(purged)
        })
        .await
    }
}
