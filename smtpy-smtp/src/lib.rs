//! # smtpy-smtp
//!
//! The SMTP side of smtpy:
//!
//! * [`session`] — the inbound SMTP session as a sans-IO state machine
//!   (bytes in, replies and actions out), with pipelining synchronisation,
//!   STARTTLS, CHUNKING and smuggling-proof end of data;
//! * [`server`] — the tokio listener that drives sessions, routes each
//!   recipient through `smtpy_core::routing` and queues accepted mail
//!   durably before answering `250`;
//! * [`delivery`] — workers that lease due messages from the queue, deliver
//!   them, and schedule retries, expiry and DSNs;
//! * [`transport`] — outbound delivery: a smarthost relay and direct MX.
//!
//! A whole mail server in a few lines (in-memory store, a transport that
//! only records, no TLS):
//!
//! ```no_run
//! use std::sync::Arc;
//! use smtpy_core::memory::MemoryStore;
//! use smtpy_core::store::QueueStore;
//! use smtpy_core::time::{Clock, SystemClock};
//! use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker};
//! use smtpy_smtp::server::{Acceptor, SmtpServer};
//! use smtpy_smtp::session::SessionConfig;
//! use smtpy_smtp::transport::testing::RecordingTransport;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new());
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let worker = DeliveryWorker::new(
//!     Arc::clone(&store) as Arc<dyn QueueStore>,
//!     Arc::new(RecordingTransport::new()),
//!     Arc::clone(&clock),
//!     DeliveryConfig::new("mx.example.org")?,
//! );
//! let acceptor = Acceptor::new(store.clone(), store.clone(), Arc::clone(&clock), "mx.example.org")
//!     .with_waker(worker.waker());
//! let server = SmtpServer::new(SessionConfig::new("mx.example.org"), acceptor, clock);
//!
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let deliveries = worker.spawn(stopped.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:2525").await?;
//! server.serve(listener, stopped).await; // until `stop.send(true)`
//! deliveries.join().await;
//! # drop(stop);
//! # Ok(()) }
//! ```
//!
//! The reference server (`examples/server` in the repository) composes the
//! same pieces with a persistent store, TLS, SRS and a real transport.
pub mod delivery;
pub mod policy;
pub mod server;
pub mod session;
pub mod transport;
