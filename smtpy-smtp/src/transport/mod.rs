//! Outbound SMTP transports: implementations of
//! [`smtpy_core::transport::Transport`] that hand a message to the next hop
//! over SMTP, and a DNS resolver for them.
//!
//! * [`SmtpRelay`] — every message goes to one smarthost (`host:port`),
//!   optionally authenticated (AUTH PLAIN / LOGIN) and over TLS.
//! * [`MxDelivery`] — direct delivery: recipients are grouped by domain and
//!   each group goes to the domain's mail exchangers, found through the
//!   injected [`Dns`](smtpy_core::dns::Dns) (or a static route).
//! * [`HickoryDns`] — the production [`Dns`](smtpy_core::dns::Dns), on
//!   `hickory-resolver`.
//! * [`testing::RecordingTransport`] — an in-memory transport with scripted
//!   outcomes, for testing what sits above a transport without sockets.
//!
//! # What a delivery returns
//!
//! One [`DeliveryOutcome`](smtpy_core::transport::DeliveryOutcome) per
//! envelope recipient, in envelope order, never an error for the whole call:
//!
//! | what happened | outcome |
//! | --- | --- |
//! | RCPT 2xx and the DATA reply is 2xx | `Delivered(Some(DATA reply))` |
//! | RCPT 4xx / 5xx | `Temporary` / `Permanent` with that RCPT reply |
//! | RCPT 2xx, DATA (or its final reply) 4xx / 5xx | `Temporary` / `Permanent` with the DATA reply |
//! | MAIL FROM 4xx / 5xx | that reply, for every recipient |
//! | no connection, timeout, TLS failure, greeting / EHLO / AUTH refused, connection lost | `Temporary` (a local `451`) for every recipient not yet answered |
//! | message larger than the server's `SIZE` | `Permanent` `552 5.3.4` |
//! | non-ASCII address and no `SMTPUTF8` at the server | `Permanent` `553 5.6.7` |
//! | MX: null MX (RFC 7505) | `Permanent` `556 5.1.10` |
//! | MX: the domain has neither MX nor A/AAAA (NXDOMAIN) | `Permanent` `550 5.1.2` |
//! | MX: DNS temporary failure | `Temporary` `451 4.4.3` |
//!
//! A failure to set up the session is never permanent, even when the server
//! answered 5xx at the greeting or to EHLO / AUTH: it is not about this
//! message, and an operator can fix it (credentials, TLS, a block list)
//! before the queue lifetime ends.
//!
//! A connection lost after the message was sent but before the final reply
//! makes the message `Temporary`: it will be delivered again, possibly a
//! second time (RFC 1047); delivery is at-least-once.
//!
//! # The wire
//!
//! The message must have CRLF line endings (the queue guarantees it). The
//! transports apply the SMTP transparency procedure themselves: a `.` at
//! the start of a line (including the very first line, and after a bare CR
//! or LF) is doubled, a final CRLF is added only when the message lacks
//! one, then `.CRLF` ends the data. (mail-send's own `data()` does not
//! stuff a leading `.` on the first line and always adds an extra CRLF, so
//! it is not used for the body.)
//!
//! `SIZE=`, `BODY=8BITMIME` (when the message has 8-bit bytes) and
//! `SMTPUTF8` (when an address needs it) are sent on MAIL FROM when the
//! server advertises them. Pipelining and CHUNKING are not used.

mod client;
mod config;
mod dns;
mod mx;
mod pool;
mod relay;
mod tls;
mod transaction;
mod wire;

pub mod testing;

pub use config::{Timeouts, TlsMode, TlsTrust, TransportBuildError};
pub use dns::{DnsSetupError, HickoryDns, HickoryDnsConfig};
pub use mx::{MxConfig, MxDelivery};
pub use pool::PoolConfig;
pub use relay::{RelayConfig, RelayCredentials, SmtpRelay};
