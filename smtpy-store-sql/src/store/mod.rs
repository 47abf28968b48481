//! The [`Store`] traits implemented on [`SqlStore`], one module per concern.
//!
//! Every operation is written once against [`Session`](crate::db::Session);
//! the few statements whose SQL differs between the dialects carry both
//! texts.

mod aliases;
mod audit;
mod contacts;
mod control;
mod credentials;
mod domains;
mod events;
mod mailboxes;
pub(crate) mod queue;
mod rate_limit;
mod rules;
mod usage;
mod users;

use async_trait::async_trait;
use smtpy_core::store::{Access, PageRequest};
use smtpy_core::{Store, StoreError, StoreResult};
use uuid::Uuid;

use crate::SqlStore;
use crate::db::{Arg, DbError, Dialect, Row, Session, Sql, args};

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

    /// Adds `column < cursor` when the page has a cursor: the next page of
    /// a newest-first list (`ORDER BY column DESC`).
    pub(crate) fn before(&mut self, column: &str, page: &PageRequest) -> &mut Self {
        if let Some(cursor) = page.after {
            self.and(&format!("{column} < ?"), *cursor.last_id());
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

/// Most keys of one `IN (…)` list in [`fetch_in`].
const IN_KEYS: usize = 4096;

/// Statement sizes for `n` rows of a multi-row statement: as many full
/// chunks of `max` rows as fit, then the rest as descending powers of two
/// (1300 rows at most 512 → 512, 512, 256, 16, 4).
///
/// Each size is a distinct statement, prepared and cached once per
/// connection; cutting the rest into powers of two keeps the number of
/// shapes (and so of cached statements) logarithmic instead of one per batch
/// size. `max` must be a power of two.
pub(crate) fn chunk_sizes(n: usize, max: usize) -> impl Iterator<Item = usize> {
    debug_assert!(max.is_power_of_two());
    let full = n / max;
    let rest = n % max;
    let mut bit = max;
    std::iter::repeat_n(max, full).chain(std::iter::from_fn(move || {
        while bit > 1 {
            bit /= 2;
            if rest & bit != 0 {
                return Some(bit);
            }
        }
        None
    }))
}

/// `(…), (…)`: `rows` tuples of `cols` placeholders each, for a multi-row
/// `VALUES`, numbered from `$1` on PostgreSQL.
///
/// SQLite gets anonymous `?`s (bound in order): it keeps the names of
/// `$N` parameters in a list that is scanned linearly for each one, once
/// when the statement is prepared and again — through
/// `sqlite3_bind_parameter_name` — each time sqlx binds it, which makes a
/// statement of thousands of `$N`s cost quadratic time.
pub(crate) fn values_tuples(dialect: Dialect, cols: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 8);
    let mut n = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            push_param(&mut sql, dialect, n);
            n += 1;
        }
        sql.push(')');
    }
    sql
}

/// `?` on SQLite, `$n` on PostgreSQL (see [`values_tuples`]).
fn push_param(sql: &mut String, dialect: Dialect, n: usize) {
    match dialect {
        Dialect::Sqlite => sql.push('?'),
        Dialect::Postgres => {
            sql.push('$');
            sql.push_str(&n.to_string());
        }
    }
}

/// Every row of `{head} IN (…){tail}` over `keys`, in chunks of at most
/// [`IN_KEYS`] keys (under SQLite's limit of 32,766 bound parameters;
/// placeholders as in [`values_tuples`]).
///
/// Each chunk is padded to a power of two by repeating its last key (a
/// repeated key changes nothing in an `IN` list), so a batch of any size
/// uses a few statement shapes only (see [`chunk_sizes`]). `head` must not
/// bind parameters.
pub(crate) async fn fetch_in(
    s: &mut Session,
    head: &str,
    tail: &str,
    keys: &[Arg],
) -> Result<Vec<Row>, DbError> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(IN_KEYS) {
        let Some(last) = chunk.last() else {
            continue;
        };
        let padded = chunk.len().next_power_of_two();
        let mut args = chunk.to_vec();
        args.resize(padded, last.clone());
        let mut sql = String::with_capacity(head.len() + tail.len() + padded * 7 + 8);
        sql.push_str(head);
        sql.push_str(" IN (");
        for n in 1..=padded {
            if n > 1 {
                sql.push_str(", ");
            }
            push_param(&mut sql, s.dialect(), n);
        }
        sql.push(')');
        sql.push_str(tail);
        rows.extend(s.fetch_all(sql, args).await?);
    }
    Ok(rows)
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

    #[test]
    fn chunk_sizes_are_full_chunks_then_powers_of_two() {
        let sizes = |n, max| chunk_sizes(n, max).collect::<Vec<_>>();
        assert_eq!(sizes(0, 512), Vec::<usize>::new());
        assert_eq!(sizes(1, 512), vec![1]);
        assert_eq!(sizes(512, 512), vec![512]);
        assert_eq!(sizes(1300, 512), vec![512, 512, 256, 16, 4]);
        assert_eq!(
            sizes(1023, 512),
            vec![512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
        );
        assert_eq!(sizes(7, 1), vec![1; 7]);
        for n in 0..2000 {
            assert_eq!(chunk_sizes(n, 256).sum::<usize>(), n);
        }
    }

    #[test]
    fn values_tuples_number_placeholders_row_by_row() {
        assert_eq!(
            values_tuples(Dialect::Postgres, 3, 2),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(values_tuples(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
