//! [`Row`]: a result row of either dialect, with typed getters.

use smtpy_core::StoreError;
use smtpy_core::model::SecretHash;
use smtpy_core::time::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{ColumnIndex, Decode, Postgres, Row as _, Sqlite, Type};
use uuid::Uuid;

use crate::db::Dialect;

/// Where a getter of [`Row`] finds its column: by name (`"owner_id"`), or
/// by position with a name for error messages ([`Col`]), which skips the
/// lookup of the name on rows read on the hot path.
pub(crate) trait ColumnRef:
    ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + std::fmt::Display + Copy
{
}

impl ColumnRef for &str {}
impl ColumnRef for Col {}

/// A column by position, named for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col(pub(crate) usize, pub(crate) &'static str);

impl std::fmt::Display for Col {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
}

impl ColumnIndex<SqliteRow> for Col {
    fn index(&self, row: &SqliteRow) -> Result<usize, sqlx::Error> {
        self.0.index(row)
    }
}

impl ColumnIndex<PgRow> for Col {
    fn index(&self, row: &PgRow) -> Result<usize, sqlx::Error> {
        self.0.index(row)
    }
}

/// A result row of either dialect.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// Column `name` decoded as `T`.
    pub(crate) fn get<T>(&self, name: impl ColumnRef) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>
            + for<'r> Decode<'r, Postgres>
            + Type<Postgres>,
    {
        match self {
            Row::Sqlite(r) => r
                .try_get(name)
                .map_err(|e| StoreError::backend("sqlite", e)),
            Row::Postgres(r) => r
                .try_get(name)
                .map_err(|e| StoreError::backend("postgres", e)),
        }
    }

    /// Column number `index` decoded as `T`.
    pub(crate) fn get_at<T>(&self, index: usize) -> Result<T, StoreError>
    where
        T: for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>
            + for<'r> Decode<'r, Postgres>
            + Type<Postgres>,
    {
        match self {
            Row::Sqlite(r) => r
                .try_get(index)
                .map_err(|e| StoreError::backend("sqlite", e)),
            Row::Postgres(r) => r
                .try_get(index)
                .map_err(|e| StoreError::backend("postgres", e)),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Row::Sqlite(_) => Dialect::Sqlite,
            Row::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A stored value that does not decode into the model: the database was
    /// changed behind the store's back.
    pub(crate) fn corrupt(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::backend(self.dialect().name(), format!("corrupt row: {what}"))
    }

    /// A timestamp column.
    pub(crate) fn ts(&self, name: impl ColumnRef) -> Result<Timestamp, StoreError> {
        self.get::<i64>(name).map(Timestamp::from_unix_millis)
    }

    /// A nullable timestamp column.
    pub(crate) fn opt_ts(&self, name: impl ColumnRef) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .get::<Option<i64>>(name)?
            .map(Timestamp::from_unix_millis))
    }

    /// A non-negative integer column.
    pub(crate) fn u64(&self, name: impl ColumnRef) -> Result<u64, StoreError> {
        let v: i64 = self.get(name)?;
        u64::try_from(v).map_err(|_| self.corrupt(format_args!("{name} is negative")))
    }

    /// A UUID column.
    pub(crate) fn uuid(&self, name: impl ColumnRef) -> Result<Uuid, StoreError> {
        self.get(name)
    }

    /// A nullable UUID column.
    pub(crate) fn opt_uuid(&self, name: impl ColumnRef) -> Result<Option<Uuid>, StoreError> {
        self.get(name)
    }

    /// A 32-byte hash column.
    pub(crate) fn hash(&self, name: impl ColumnRef) -> Result<SecretHash, StoreError> {
        let bytes: Vec<u8> = self.get(name)?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| self.corrupt(format_args!("{name} is not 32 bytes")))?;
        Ok(SecretHash::from_bytes(array))
    }

    /// A nullable 32-byte hash column.
    pub(crate) fn opt_hash(&self, name: impl ColumnRef) -> Result<Option<SecretHash>, StoreError> {
        let bytes: Option<Vec<u8>> = self.get(name)?;
        bytes
            .map(|b| {
                let array: [u8; 32] = b
                    .try_into()
                    .map_err(|_| self.corrupt(format_args!("{name} is not 32 bytes")))?;
                Ok(SecretHash::from_bytes(array))
            })
            .transpose()
    }
}
