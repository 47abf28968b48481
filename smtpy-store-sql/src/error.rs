//! Classification of sqlx errors into [`StoreError`]s.

use smtpy_core::StoreError;
use sqlx::error::ErrorKind;

use crate::db::Dialect;

/// A failure reported by sqlx, with the dialect it came from.
///
/// Converts into [`StoreError`] with the generic classification
/// (`Unavailable` for connection and lock problems, `Backend` otherwise);
/// operations that expect a constraint violation check
/// [`is_unique_violation`](Self::is_unique_violation) first.
#[derive(Debug)]
pub(crate) struct DbError {
    dialect: Dialect,
    source: sqlx::Error,
}

impl DbError {
    pub(crate) fn new(dialect: Dialect, source: sqlx::Error) -> Self {
        Self { dialect, source }
    }

    fn kind(&self) -> Option<ErrorKind> {
        match &self.source {
            sqlx::Error::Database(db) => Some(db.kind()),
            _ => None,
        }
    }

    /// A UNIQUE or PRIMARY KEY constraint refused the write.
    pub(crate) fn is_unique_violation(&self) -> bool {
        self.kind() == Some(ErrorKind::UniqueViolation)
    }

    /// A FOREIGN KEY constraint refused the write.
    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        self.kind() == Some(ErrorKind::ForeignKeyViolation)
    }
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        classify(e.dialect, e.source)
    }
}

/// Maps a sqlx error to the semantic store error.
pub(crate) fn classify(dialect: Dialect, e: sqlx::Error) -> StoreError {
    if is_temporary(dialect, &e) {
        StoreError::unavailable(e)
    } else {
        StoreError::backend(dialect.name(), e)
    }
}

/// Whether `e` is a failure of the connection or of a lock rather than of
/// the statement: reported as `Unavailable`, and a connection that saw one
/// is not trusted with the next statement.
pub(crate) fn is_temporary(dialect: Dialect, e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => match dialect {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with any extended code:
            // the lock was not granted within the busy timeout.
            Dialect::Sqlite => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
            Dialect::Postgres => db.code().is_some_and(|c| {
                // Class 08: connection exception; 53: insufficient resources;
                // 57P01-57P05: shutdown / cannot connect now; 40001/40P01:
                // serialization failure / deadlock; 55P03: lock not available.
                c.starts_with("08")
                    || c.starts_with("53")
                    || c.starts_with("57P")
                    || c == "40001"
                    || c == "40P01"
                    || c == "55P03"
            }),
        },
        _ => false,
    }
}

/// Helpers to turn expected constraint violations into semantic errors.
pub(crate) trait DbResultExt<T> {
    /// A unique violation becomes `AlreadyExists { entity }`.
    fn on_unique(self, entity: &'static str) -> Result<T, StoreError>;
    /// A unique violation becomes `AlreadyExists { entity }`, a foreign-key
    /// violation becomes `fk`.
    fn on_unique_or_fk(self, entity: &'static str, fk: StoreError) -> Result<T, StoreError>;
    /// A foreign-key violation becomes `fk`.
    fn on_fk(self, fk: StoreError) -> Result<T, StoreError>;
}

impl<T> DbResultExt<T> for Result<T, DbError> {
    fn on_unique(self, entity: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| {
            if e.is_unique_violation() {
                StoreError::AlreadyExists { entity }
            } else {
                e.into()
            }
        })
    }

    fn on_unique_or_fk(self, entity: &'static str, fk: StoreError) -> Result<T, StoreError> {
        self.map_err(|e| {
            if e.is_unique_violation() {
                StoreError::AlreadyExists { entity }
            } else if e.is_foreign_key_violation() {
                fk
            } else {
                e.into()
            }
        })
    }

    fn on_fk(self, fk: StoreError) -> Result<T, StoreError> {
        self.map_err(|e| {
            if e.is_foreign_key_violation() {
                fk
            } else {
                e.into()
            }
        })
    }
}
