//! [`Row`]: a result row of either dialect, with typed getters.

use smtpy_core::StoreError;
use smtpy_core::model::SecretHash;
use smtpy_core::time::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row as _, Sqlite, Type};
use uuid::Uuid;

use crate::db::Dialect;

/// A result row of either dialect.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// Column `name` decoded as `T`.
    pub(crate) fn get<T>(&self, name: &str) -> Result<T, StoreError>
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
    pub(crate) fn ts(&self, name: &str) -> Result<Timestamp, StoreError> {
        self.get::<i64>(name).map(Timestamp::from_unix_millis)
    }

    /// A nullable timestamp column.
    pub(crate) fn opt_ts(&self, name: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .get::<Option<i64>>(name)?
            .map(Timestamp::from_unix_millis))
    }

    /// A non-negative integer column.
    pub(crate) fn u64(&self, name: &str) -> Result<u64, StoreError> {
        let v: i64 = self.get(name)?;
        u64::try_from(v).map_err(|_| self.corrupt(format_args!("{name} is negative")))
    }

    /// A UUID column.
    pub(crate) fn uuid(&self, name: &str) -> Result<Uuid, StoreError> {
        self.get(name)
    }

    /// A nullable UUID column.
    pub(crate) fn opt_uuid(&self, name: &str) -> Result<Option<Uuid>, StoreError> {
        self.get(name)
    }

    /// A 32-byte hash column.
    pub(crate) fn hash(&self, name: &str) -> Result<SecretHash, StoreError> {
        let bytes: Vec<u8> = self.get(name)?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| self.corrupt(format_args!("{name} is not 32 bytes")))?;
        Ok(SecretHash::from_bytes(array))
    }

    /// A nullable 32-byte hash column.
    pub(crate) fn opt_hash(&self, name: &str) -> Result<Option<SecretHash>, StoreError> {
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
