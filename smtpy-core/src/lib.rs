//! # smtpy-core
//!
//! The domain model, policy and storage traits of smtpy, an email aliasing
//! service. No sockets and no database here: adapters (`smtpy-store-redb`,
//! `smtpy-store-sql`, `smtpy-smtp`, `smtpy-http`) depend on this crate,
//! never the other way round.
//!
//! ```
//! # tokio_test_block_on(async {
//! use smtpy_core::address::{DomainName, EmailAddress};
//! use smtpy_core::memory::MemoryStore;
//! use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
//! use smtpy_core::store::{AliasStore, DomainStore, MailboxStore, UserStore};
//! use smtpy_core::time::{Clock, SystemClock};
//!
//! let store = MemoryStore::new();
//! let now = SystemClock.now();
//! let user = User::new(EmailAddress::parse("owner@example.org")?, Role::User, now);
//! store.create_user(&user).await?;
//! let domain = Domain::new(DomainName::parse("alias.example")?, user.id, "token".into(), now);
//! store.create_domain(&domain).await?;
//! let mailbox = Mailbox::new(user.id, EmailAddress::parse("me@mail.example")?, now);
//! store.create_mailbox(&mailbox).await?;
//! let alias = Alias::new(EmailAddress::parse("shop@alias.example")?, user.id, domain.id, vec![mailbox.id], now);
//! store.create_alias(&alias).await?;
//!
//! // Lookup is case-insensitive.
//! let found = store.find_alias_by_address(&EmailAddress::parse("SHOP@Alias.Example")?).await?;
//! assert_eq!(found.map(|a| a.id), Some(alias.id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! ## Map
//!
//! * [`address`] — RFC 5321 addresses and IDNA domains, parsed once.
//! * [`model`] — users, domains, mailboxes, aliases, contacts, rules, audit, usage.
//! * [`store`] — the storage traits and their contracts; [`memory`] is the
//!   reference implementation.
//! * [`gcra`] — the rate-limit algorithm; [`secret`] — encryption at rest;
//!   [`password`] — argon2id; [`time`] — injected clocks.
//! * [`routing`] — what one `RCPT TO` is: alias, reverse alias, bounce
//!   address, SRS address, postmaster, or a refusal.
//! * [`auth`] — SPF, DKIM, DMARC and ARC of incoming mail, and ARC sealing;
//!   [`dkim`] — signing what we send, keys, rotation, DNS records.
//! * [`reverse`] — signed reverse aliases; [`rewrite`] — alias-mode
//!   rewriting and reply scrubbing (the mailbox never leaves).
//! * [`rules`] — the rules engine and `explain`; [`limits`] — rate limits
//!   and quotas; [`bounce`] — bounce addresses and DSN classification;
//!   [`notify`] — owner notifications; [`srs`], [`dsn`], [`forward`] — the
//!   forwarding basics.
//! * [`features`] — feature flags switched at runtime; [`jobs`] — the
//!   background job scheduler (leases, metrics) and the store-only jobs.
//! * `testing` (feature `testing`) — the conformance suite every backend runs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod address;
pub mod auth;
pub mod bounce;
pub mod dkim;
pub mod dns;
pub mod dsn;
pub mod error;
pub mod features;
pub mod forward;
pub mod gcra;
pub mod ids;
pub mod jobs;
pub mod join;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod password;
pub mod reply;
pub mod reverse;
pub mod rewrite;
pub mod routing;
pub mod rules;
pub mod secret;
pub mod srs;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod time;
pub mod transport;

pub use error::{StoreError, StoreResult};
pub use store::Store;
