//! [`UsageStore`]: daily usage counters, one row per subject and UTC day.

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::model::{DailyUsage, UsageRecord, UsageSubject};
use smtpy_core::store::{Access, UsageStore};
use smtpy_core::time::Day;
use uuid::Uuid;

use super::{not_found, owner_of};
use crate::SqlStore;
use crate::codec::to_i64;
use crate::db::args;

const ADD_USAGE: &str = "INSERT INTO usage_daily (subject_kind, subject_id, day, user_id, messages, bytes) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (subject_kind, subject_id, day) DO UPDATE SET \
     messages = usage_daily.messages + excluded.messages, \
     bytes = usage_daily.bytes + excluded.bytes";

fn subject_columns(subject: UsageSubject) -> (&'static str, Uuid) {
    match subject {
        UsageSubject::User(u) => ("user", *u.as_uuid()),
        UsageSubject::Alias(a) => ("alias", *a.as_uuid()),
    }
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()> {
        let day = i64::from(record.at.day().days_since_epoch());
        let messages = to_i64(record.messages, "usage", "messages")?;
        let bytes = to_i64(record.bytes, "usage", "bytes")?;
        let mut s = self.db.write().await?;
        s.execute(
            ADD_USAGE,
            args!["user", record.user, day, record.user, messages, bytes],
        )
        .await?;
        if let Some(alias) = record.alias {
            s.execute(
                ADD_USAGE,
                args!["alias", alias, day, record.user, messages, bytes],
            )
            .await?;
        }
        s.commit().await
    }

    async fn usage(
        &self,
        access: Access,
        subject: UsageSubject,
        from: Day,
        to: Day,
    ) -> StoreResult<Vec<DailyUsage>> {
        let mut s = self.db.read().await?;
        if let Some(me) = owner_of(access) {
            match subject {
                UsageSubject::User(u) if *u.as_uuid() == me => {}
                UsageSubject::User(_) => return Err(not_found("user")),
                UsageSubject::Alias(a) => {
                    if !s
                        .exists(
                            "SELECT 1 FROM aliases WHERE id = $1 AND owner_id = $2",
                            args![a, me],
                        )
                        .await?
                    {
                        return Err(not_found("alias"));
                    }
                }
            }
        }
        let (kind, id) = subject_columns(subject);
        let rows = s
            .fetch_all(
                "SELECT day, messages, bytes FROM usage_daily \
                 WHERE subject_kind = $1 AND subject_id = $2 AND day >= $3 AND day <= $4 \
                 ORDER BY day",
                args![
                    kind,
                    id,
                    i64::from(from.days_since_epoch()),
                    i64::from(to.days_since_epoch())
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let day: i64 = r.get("day")?;
                Ok(DailyUsage {
                    day: Day::from_days_since_epoch(
                        i32::try_from(day).map_err(|_| r.corrupt("day out of range"))?,
                    ),
                    messages: r.u64("messages")?,
                    bytes: r.u64("bytes")?,
                })
            })
            .collect()
    }
}
