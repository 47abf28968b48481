//! The [`Store`] traits implemented on [`SqlStore`], one module per concern.
//!
//! Every operation is written once against [`Session`](crate::db::Session);
//! the few statements whose SQL differs between the dialects carry both
//! texts.

mod aliases;
mod audit;
mod contacts;
mod credentials;
mod domains;
mod mailboxes;
mod rate_limit;
mod rules;
mod usage;
mod users;

use async_trait::async_trait;
use smtpy_core::store::{Access, PageRequest};
use smtpy_core::{Store, StoreError, StoreResult};
use uuid::Uuid;

use crate::SqlStore;
use crate::db::{Arg, Dialect, Session, Sql, args};

#[async_trait]
impl Store for SqlStore {
    fn backend_name(&self) -> &'static str {
        self.dialect().name()
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut s = self.db.read().await?;
        s.fetch_i64("SELECT CAST(1 AS BIGINT)", args![]).await?;
        Ok(())
    }
}

/// `NotFound { entity }`.
pub(crate) fn not_found(entity: &'static str) -> StoreError {
    StoreError::NotFound { entity }
}

/// `Conflict` for a revision that is not the stored one.
pub(crate) fn stale(entity: &'static str) -> StoreError {
    StoreError::Conflict {
        entity,
        reason: "stale revision: the row was changed since it was read",
    }
}

/// Why a revision-checked write changed nothing: `Conflict` if the row
/// `exists` finds is there (so the revision was stale), else `NotFound`.
pub(crate) async fn missing_or_stale(
    s: &mut Session,
    exists: impl Into<Sql>,
    args: Vec<Arg>,
    entity: &'static str,
) -> StoreError {
    match s.exists(exists, args).await {
        Ok(true) => stale(entity),
        Ok(false) => not_found(entity),
        Err(e) => e.into(),
    }
}

/// The owner an access is limited to, if any.
pub(crate) fn owner_of(access: Access) -> Option<Uuid> {
    match access {
        Access::Owner(user) => Some(*user.as_uuid()),
        Access::System => None,
    }
}

/// A revision as stored (a signed 64-bit column).
pub(crate) fn revision_arg(revision: u64, entity: &'static str) -> StoreResult<i64> {
    crate::codec::to_i64(revision, entity, "revision")
}

/// A `WHERE` clause built from fixed fragments, numbering placeholders.
///
/// Each condition is a fixed SQL fragment where `?` stands for its single
/// argument (every `?` of one fragment is the same argument), so user input
/// only ever travels as a bound parameter.
#[derive(Debug, Default)]
pub(crate) struct Where {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `condition`, binding `arg` to its `?`s.
    pub(crate) fn and(&mut self, condition: &str, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        let placeholder = format!("${}", self.args.len());
        self.conditions.push(condition.replace('?', &placeholder));
        self
    }

    /// Adds `column IN (…)` over `values` (at least one).
    pub(crate) fn and_in<A: Into<Arg>>(
        &mut self,
        column: &str,
        values: impl IntoIterator<Item = A>,
    ) -> &mut Self {
        let first = self.args.len() + 1;
        self.args.extend(values.into_iter().map(Into::into));
        let list = placeholders(first, self.args.len() + 1 - first);
        self.conditions.push(format!("{column} IN ({list})"));
        self
    }

    /// Adds a condition without an argument.
    pub(crate) fn and_fixed(&mut self, condition: &str) -> &mut Self {
        self.conditions.push(condition.to_owned());
        self
    }

    /// Adds `column > cursor` when the page has a cursor.
    pub(crate) fn after(&mut self, column: &str, page: &PageRequest) -> &mut Self {
        if let Some(cursor) = page.after {
            self.and(&format!("{column} > ?"), *cursor.last_id());
        }
        self
    }

    /// `SELECT … WHERE … ORDER BY … LIMIT limit+1` for one page.
    pub(crate) fn page_query(
        self,
        select: &str,
        order_by: &str,
        page: &PageRequest,
    ) -> (String, Vec<Arg>) {
        let limit = page.effective_limit() + 1;
        let sql = format!(
            "{select}{} ORDER BY {order_by} LIMIT {limit}",
            self.clause()
        );
        (sql, self.args)
    }

    /// ` WHERE a AND b`, or nothing.
    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// The SQL and arguments of `prefix WHERE …`.
    pub(crate) fn build(self, prefix: &str) -> (String, Vec<Arg>) {
        (format!("{prefix}{}", self.clause()), self.args)
    }
}

/// `$first, $first+1, …` for `n` arguments (an `IN (…)` list).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Substring test: `instr` on SQLite, `strpos` on PostgreSQL.
pub(crate) fn contains_fn(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "instr",
        Dialect::Postgres => "strpos",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_numbers_placeholders_in_order() {
        let mut w = Where::new();
        w.and("owner_id = ?", Uuid::nil())
            .and_fixed("deleted_at IS NULL")
            .and("(instr(a, ?) > 0 OR instr(b, ?) > 0)", "x");
        let (sql, args) = w.build("SELECT 1 FROM t");
        assert_eq!(
            sql,
            "SELECT 1 FROM t WHERE owner_id = $1 AND deleted_at IS NULL AND (instr(a, $2) > 0 OR instr(b, $2) > 0)"
        );
        assert_eq!(args.len(), 2);
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }
}
