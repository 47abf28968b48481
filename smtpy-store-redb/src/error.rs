//! Errors: the private one every operation uses, the public one of
//! [`RedbStore::open`](crate::RedbStore::open), and their mapping into
//! [`StoreError`].

use smtpy_core::StoreError;

/// Backend name used in [`StoreError::Backend`].
pub(crate) const BACKEND: &str = "redb";

/// Why [`RedbStore::open`](crate::RedbStore::open) failed.
///
/// Converts into [`StoreError`]: [`AlreadyOpen`](Self::AlreadyOpen) becomes
/// [`StoreError::Unavailable`], everything else [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another handle in this process) has the file
    /// open; redb allows one writer at a time.
    #[error("the database file is already open elsewhere")]
    AlreadyOpen,
    /// The file was written by a newer smtpy whose schema this version does
    /// not know. The file is left untouched; upgrade smtpy to open it.
    #[error(
        "the database has schema version {found}, newer than the {supported} this smtpy supports"
    )]
    SchemaTooNew {
        /// Version recorded in the file.
        found: u64,
        /// Newest version this build understands.
        supported: u64,
    },
    /// The file has an older schema and no upgrade step is registered for
    /// one of the versions in between (a bug in this build).
    #[error("no upgrade step from schema version {from}")]
    NoUpgradePath {
        /// The version with no step.
        from: u64,
    },
    /// The file is a redb database but not one smtpy created (it has tables
    /// but no schema version), or its metadata is unreadable.
    #[error("not an smtpy database: {reason}")]
    Unrecognised {
        /// What is wrong, for humans.
        reason: String,
    },
    /// redb failed (I/O, corruption, lock protocol…).
    #[error("redb: {0}")]
    Storage(#[source] redb::Error),
}

impl<E: Into<redb::Error>> From<E> for OpenError {
    fn from(e: E) -> Self {
        match e.into() {
            redb::Error::DatabaseAlreadyOpen => OpenError::AlreadyOpen,
            other => OpenError::Storage(other),
        }
    }
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::AlreadyOpen => StoreError::unavailable(e),
            other => StoreError::backend(BACKEND, other),
        }
    }
}

/// What an operation inside a transaction can fail with: a semantic outcome
/// (`NotFound`, `Conflict`, …) that aborts the transaction, or a backend
/// failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A contract outcome, passed through unchanged.
    #[error(transparent)]
    Store(StoreError),
    /// redb failed.
    #[error(transparent)]
    Redb(#[from] redb::Error),
    /// A row could not be encoded (a bug: every model type encodes).
    #[error("cannot encode {entity}: {source}")]
    Encode {
        /// Kind of row.
        entity: &'static str,
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// A stored row or index entry is not what this version wrote.
    #[error("corrupt {entity} record: {reason}")]
    Corrupt {
        /// Kind of row.
        entity: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two handles to one table at once inside a transaction (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The blocking task running the transaction panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The group commit an enqueue was part of failed; every message of the
    /// batch gets this, sharing the one cause.
    #[error("the queue's group commit failed: {0}")]
    Batch(#[source] std::sync::Arc<Error>),
    /// The queue's committer thread is gone (it panicked, or the store is
    /// shutting down).
    #[error("the queue committer stopped")]
    CommitterStopped,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Redb(redb::Error::DatabaseAlreadyOpen) => StoreError::unavailable(e),
            other => StoreError::backend(BACKEND, other),
        }
    }
}

impl Error {
    /// A corrupt-record error.
    pub(crate) fn corrupt(entity: &'static str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            entity,
            reason: reason.into(),
        }
    }
}

/// `NotFound { entity }`.
pub(crate) const fn not_found(entity: &'static str) -> Error {
    Error::Store(StoreError::NotFound { entity })
}

/// `AlreadyExists { entity }`.
pub(crate) const fn exists(entity: &'static str) -> Error {
    Error::Store(StoreError::AlreadyExists { entity })
}

/// `Conflict` for a stale revision.
pub(crate) const fn stale(entity: &'static str) -> Error {
    Error::Store(StoreError::Conflict {
        entity,
        reason: "the row was changed by someone else (stale revision)",
    })
}

/// `Conflict` with a reason.
pub(crate) const fn conflict(entity: &'static str, reason: &'static str) -> Error {
    Error::Store(StoreError::Conflict { entity, reason })
}

/// `Invalid` with a reason.
pub(crate) fn invalid(entity: &'static str, reason: &str) -> Error {
    Error::Store(StoreError::Invalid {
        entity,
        reason: reason.to_owned(),
    })
}

/// `Gone { entity }`.
pub(crate) const fn gone(entity: &'static str) -> Error {
    Error::Store(StoreError::Gone { entity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn already_open_is_unavailable() {
        let e: StoreError = OpenError::from(redb::DatabaseError::DatabaseAlreadyOpen).into();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
        let e: StoreError = Error::from(redb::DatabaseError::DatabaseAlreadyOpen).into();
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    }

    #[test]
    fn semantic_errors_pass_through() {
        let e: StoreError = not_found("alias").into();
        assert!(matches!(e, StoreError::NotFound { entity: "alias" }));
        let e: StoreError = Error::corrupt("alias", "bad").into();
        assert!(matches!(
            e,
            StoreError::Backend {
                backend: "redb",
                ..
            }
        ));
    }
}
