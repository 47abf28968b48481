//! # smtpy
//!
//! An email aliasing service as a Rust library. People hand out aliases
//! (`shop@alias.example`) instead of their real address; mail to an alias is
//! forwarded to the owner's real mailboxes, replies go back through the
//! alias without revealing the mailbox, and any alias can be filtered,
//! disabled or deleted.
//!
//! This crate is the facade: it re-exports [`core`] (the domain model and
//! storage traits) and each adapter behind a feature, the way `sqlx`
//! re-exports its drivers.
//!
//! | feature | what it brings | default |
//! | --- | --- | --- |
//! | `redb` | [`redb`]: embedded single-process store | yes |
//! | `sql` | [`sql`]: SQLite and PostgreSQL store | no |
//! | `smtp` | [`smtp`]: SMTP front end and delivery | no |
//! | `http` | [`http`]: HTTP API | no |
//! | `web` | the web interface in [`http`] (implies `http`) | no |
//!
//! ```no_run
//! # #[cfg(feature = "redb")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smtpy::core::address::EmailAddress;
//! use smtpy::core::store::AliasStore;
//!
//! let store = smtpy::redb::RedbStore::open("smtpy.redb")?;
//! let alias = store
//!     .find_alias_by_address(&EmailAddress::parse("shop@alias.example")?)
//!     .await?;
//! println!("{alias:?}");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use smtpy_core as core;

pub use smtpy_core::{Store, StoreError, StoreResult};

/// Embedded redb store (feature `redb`, on by default).
#[cfg(feature = "redb")]
#[cfg_attr(docsrs, doc(cfg(feature = "redb")))]
pub use smtpy_store_redb as redb;

/// SQLite and PostgreSQL store (feature `sql`).
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(feature = "sql")))]
pub use smtpy_store_sql as sql;

/// SMTP front end and delivery (feature `smtp`).
#[cfg(feature = "smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smtp")))]
pub use smtpy_smtp as smtp;

/// HTTP API (feature `http`).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use smtpy_http as http;
