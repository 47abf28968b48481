//! The storage error every [`Store`](crate::store::Store) method returns.

use std::error::Error as StdError;

/// Boxed source error of a backend.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a store operation can fail with.
///
/// The variants are semantic so a caller can react without knowing the
/// backend: the SMTP layer answers `451 4.4.3` to [`Unavailable`](Self::Unavailable)
/// and [`Backend`](Self::Backend), the HTTP layer answers 404 to
/// [`NotFound`](Self::NotFound) and 409 to [`AlreadyExists`](Self::AlreadyExists),
/// [`Gone`](Self::Gone) and [`Conflict`](Self::Conflict).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist, or it belongs to another owner (the two are
    /// deliberately indistinguishable so ids of other users leak nothing).
    #[error("{entity} not found")]
    NotFound {
        /// Kind of row, e.g. `"alias"`.
        entity: &'static str,
    },
    /// A row with the same unique key (address, name, …) already exists.
    #[error("{entity} already exists")]
    AlreadyExists {
        /// Kind of row, e.g. `"alias"`.
        entity: &'static str,
    },
    /// The key was used before and was retired for good (a purged alias
    /// leaves a tombstone: its address can never be created again).
    #[error("{entity} was deleted and cannot be reused")]
    Gone {
        /// Kind of row, e.g. `"alias"`.
        entity: &'static str,
    },
    /// The write conflicts with the stored state: a stale revision (someone
    /// else updated the row first), a row still referenced by others, a
    /// single-use token already used.
    #[error("{entity}: {reason}")]
    Conflict {
        /// Kind of row, e.g. `"alias"`.
        entity: &'static str,
        /// What conflicts, for humans.
        reason: &'static str,
    },
    /// The value cannot be stored as given (violates a model invariant).
    #[error("invalid {entity}: {reason}")]
    Invalid {
        /// Kind of row, e.g. `"alias"`.
        entity: &'static str,
        /// What is wrong, for humans.
        reason: String,
    },
    /// The store cannot be reached right now (connection refused, pool
    /// exhausted, database locked past the busy timeout). Retry later.
    #[error("store unavailable: {source}")]
    Unavailable {
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure (I/O, corruption, a bug).
    #[error("{backend} store error: {source}")]
    Backend {
        /// Which backend, e.g. `"redb"`.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Wraps a backend failure.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            backend,
            source: source.into(),
        }
    }
    /// Wraps a temporary failure.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }
    /// True for failures that may succeed when retried later
    /// ([`Unavailable`](Self::Unavailable), [`Backend`](Self::Backend)):
    /// the mail path answers them with a temporary 4xx, never a 5xx.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Backend { .. })
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;
