//! Conversions between model values and column values.
//!
//! Enums are stored as their serde names (`"admin"`, `"alias"`…), so the
//! database reads like the API. Values that are never queried (rule
//! conditions, DKIM keys, audit details…) are stored as JSON text.

use serde::Serialize;
use serde::de::DeserializeOwned;
use smtpy_core::StoreError;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::password::PasswordHash;
use smtpy_core::secret::EncryptedSecret;

use crate::db::Row;
use crate::row::ColumnRef;

/// The serde name of a unit enum variant, e.g. `Role::Admin` → `"admin"`.
pub(crate) fn enum_text<T: Serialize>(
    value: &T,
    entity: &'static str,
) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(StoreError::Invalid {
            entity,
            reason: format!("cannot store {other} as a name"),
        }),
        Err(e) => Err(StoreError::Invalid {
            entity,
            reason: e.to_string(),
        }),
    }
}

/// JSON text of a value.
pub(crate) fn json_text<T: Serialize + ?Sized>(
    value: &T,
    entity: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid {
        entity,
        reason: e.to_string(),
    })
}

/// A `u64` that must fit a signed 64-bit column.
pub(crate) fn to_i64(value: u64, entity: &'static str, field: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        entity,
        reason: format!("{field} is larger than {}", i64::MAX),
    })
}

/// Decoding helpers on rows for values stored as text.
impl Row {
    /// A unit enum stored by its serde name.
    pub(crate) fn enum_value<T: DeserializeOwned>(
        &self,
        name: impl ColumnRef,
    ) -> Result<T, StoreError> {
        let text: String = self.get(name)?;
        serde_json::from_value(serde_json::Value::String(text))
            .map_err(|e| self.corrupt(format_args!("{name}: {e}")))
    }

    /// A JSON text column.
    pub(crate) fn json<T: DeserializeOwned>(&self, name: impl ColumnRef) -> Result<T, StoreError> {
        let text: String = self.get(name)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(format_args!("{name}: {e}")))
    }

    /// An address column, as it was written.
    pub(crate) fn address(&self, name: impl ColumnRef) -> Result<EmailAddress, StoreError> {
        let text: String = self.get(name)?;
        EmailAddress::parse(&text).map_err(|e| self.corrupt(format_args!("{name}: {e}")))
    }

    /// A nullable address column.
    pub(crate) fn opt_address(
        &self,
        name: impl ColumnRef,
    ) -> Result<Option<EmailAddress>, StoreError> {
        let text: Option<String> = self.get(name)?;
        text.map(|t| EmailAddress::parse(&t).map_err(|e| self.corrupt(format_args!("{name}: {e}"))))
            .transpose()
    }

    /// A domain name column.
    pub(crate) fn domain_name(&self, name: impl ColumnRef) -> Result<DomainName, StoreError> {
        let text: String = self.get(name)?;
        DomainName::parse(&text).map_err(|e| self.corrupt(format_args!("{name}: {e}")))
    }

    /// A nullable PHC password hash column.
    pub(crate) fn opt_password(
        &self,
        name: impl ColumnRef,
    ) -> Result<Option<PasswordHash>, StoreError> {
        let text: Option<String> = self.get(name)?;
        text.map(|t| {
            PasswordHash::from_phc(&t).map_err(|e| self.corrupt(format_args!("{name}: {e}")))
        })
        .transpose()
    }

    /// A nullable sealed secret column (base64 of the compact encoding).
    pub(crate) fn opt_secret(
        &self,
        name: impl ColumnRef,
    ) -> Result<Option<EncryptedSecret>, StoreError> {
        let text: Option<String> = self.get(name)?;
        text.map(|t| {
            EncryptedSecret::from_text(&t).map_err(|e| self.corrupt(format_args!("{name}: {e}")))
        })
        .transpose()
    }

    /// A nullable non-negative integer column.
    pub(crate) fn opt_u64(&self, name: impl ColumnRef) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self.get(name)?;
        v.map(|v| u64::try_from(v).map_err(|_| self.corrupt(format_args!("{name} is negative"))))
            .transpose()
    }

    /// A nullable integer column holding a `u32`.
    pub(crate) fn opt_u32(&self, name: impl ColumnRef) -> Result<Option<u32>, StoreError> {
        let v: Option<i64> = self.get(name)?;
        v.map(|v| u32::try_from(v).map_err(|_| self.corrupt(format_args!("{name} out of range"))))
            .transpose()
    }

    /// An ordered list of UUIDs: on SQLite the comma-separated hex of
    /// `group_concat(hex(…))`, on PostgreSQL a `uuid[]` (from `ARRAY(…)`).
    pub(crate) fn uuid_list(&self, name: impl ColumnRef) -> Result<Vec<uuid::Uuid>, StoreError> {
        if let Row::Postgres(r) = self {
            return sqlx::Row::try_get::<Vec<uuid::Uuid>, _>(r, name)
                .map_err(|e| StoreError::backend("postgres", e));
        }
        let text: Option<String> = self.get(name)?;
        match text {
            None => Ok(Vec::new()),
            Some(t) if t.is_empty() => Ok(Vec::new()),
            Some(t) => t
                .split(',')
                .map(|s| {
                    uuid::Uuid::try_parse(s.trim())
                        .map_err(|e| self.corrupt(format_args!("{name}: {e}")))
                })
                .collect(),
        }
    }
}
