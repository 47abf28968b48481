//! # smtpy-smtp
//!
//! The SMTP side of smtpy: the inbound session (a sans-IO state machine on
//! `smtp-proto` driven by a tokio listener), the durable queue's delivery
//! workers and the outbound transports.
//!
//! Not built yet: this crate holds only its documentation until the mail-path
//! work lands. The design is in `docs/architecture.md`.
pub mod delivery;
pub mod server;
pub mod session;
pub mod transport;
