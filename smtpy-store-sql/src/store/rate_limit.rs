//! [`RateLimitStore`]: GCRA state shared by every instance using the store.
//!
//! The decision itself is [`gcra::decide`](smtpy_core::gcra::decide); the
//! store only makes read-decide-write atomic per key:
//!
//! * SQLite: inside a `BEGIN IMMEDIATE` transaction, which holds the
//!   database's single write lock from its first statement.
//! * PostgreSQL: the key's row is inserted if missing (`ON CONFLICT DO
//!   NOTHING`, as a `NULL` placeholder) and then locked with `SELECT … FOR
//!   UPDATE`, so concurrent callers on one key queue on that row lock while
//!   other keys proceed in parallel. A placeholder that ends up unused is
//!   deleted before commit.

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::gcra::{Decision, Quota, decide};
use smtpy_core::store::RateLimitStore;
use smtpy_core::time::Timestamp;

use crate::SqlStore;
use crate::db::{Dialect, args};

/// Attempts before giving up when a key's row vanishes under a concurrent
/// purge between insert and lock (each retry starts a new transaction).
const MAX_ATTEMPTS: usize = 8;

#[async_trait]
impl RateLimitStore for SqlStore {
    async fn check_rate(
        &self,
        key: &str,
        quota: &Quota,
        now: Timestamp,
        cost: u32,
    ) -> StoreResult<Decision> {
        let now_ms = now.as_unix_millis();
        match self.dialect() {
            Dialect::Sqlite => {
                let mut s = self.db.write().await?;
                let stored = s
                    .fetch_optional("SELECT tat_ms FROM rate_limits WHERE key = $1", args![key])
                    .await?
                    .map(|r| r.get::<i64>("tat_ms"))
                    .transpose()?;
                let decision = decide(quota, stored, now_ms, cost);
                if decision.allowed && cost > 0 {
                    s.execute(
                        "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET tat_ms = excluded.tat_ms",
                        args![key, decision.new_tat_ms],
                    )
                    .await?;
                }
                // Also when nothing was written: ends the transaction (and
                // releases the write lock) now rather than on drop.
                s.commit().await?;
                Ok(decision)
            }
            Dialect::Postgres => {
                for _ in 0..MAX_ATTEMPTS {
                    let mut s = self.db.write().await?;
                    let inserted = s
                        .execute(
                            "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, NULL) \
                             ON CONFLICT (key) DO NOTHING",
                            args![key],
                        )
                        .await?;
                    let Some(row) = s
                        .fetch_optional(
                            "SELECT tat_ms FROM rate_limits WHERE key = $1 FOR UPDATE",
                            args![key],
                        )
                        .await?
                    else {
                        // Purged between our insert attempt and the lock.
                        continue;
                    };
                    let stored: Option<i64> = row.get("tat_ms")?;
                    let decision = decide(quota, stored, now_ms, cost);
                    if decision.allowed && cost > 0 {
                        s.execute(
                            "UPDATE rate_limits SET tat_ms = $2 WHERE key = $1",
                            args![key, decision.new_tat_ms],
                        )
                        .await?;
                    } else if inserted > 0 {
                        s.execute("DELETE FROM rate_limits WHERE key = $1", args![key])
                            .await?;
                    }
                    s.commit().await?;
                    return Ok(decision);
                }
                Err(smtpy_core::StoreError::unavailable(
                    "rate-limit row kept disappearing under concurrent purges",
                ))
            }
        }
    }

    async fn purge_rate_limits(&self, older_than: Timestamp) -> StoreResult<u64> {
        let mut s = self.db.write_one().await?;
        Ok(s.execute(
            "DELETE FROM rate_limits WHERE tat_ms <= $1",
            args![older_than],
        )
        .await?)
    }
}
