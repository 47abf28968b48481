//! The SMTP listener: accepts connections, admits them under the
//! connection limits, and drives one [`Session`](crate::session::Session)
//! per connection, routing recipients through core and queueing accepted
//! mail durably before answering 250.
//!
//! Shutdown (see [`SmtpServer::serve`]): new connections are answered
//! `421 4.3.2`, connections between transactions get `421 4.3.2` at their
//! next command, transactions in flight are finished, and `serve` returns
//! once every connection has ended — nothing accepted is lost.

mod accept;
mod connection;
mod limits;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::time::Clock;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use accept::Acceptor;
pub(crate) use accept::stamp_correlation;
pub use limits::{Admission, ConnectionLimits, Network, Refused, Slot};

use crate::session::SessionConfig;

/// Everything a listener needs.
#[derive(Clone)]
pub struct SmtpServer {
    session: SessionConfig,
    acceptor: Acceptor,
    admission: Admission,
    tls: Option<TlsAcceptor>,
    clock: Arc<dyn Clock>,
    /// How long `serve` waits for connections to finish after shutdown.
    drain_timeout: Duration,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("hostname", &self.session.hostname)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// A server answering with `session` settings and queueing through `acceptor`.
    #[must_use]
    pub fn new(mut session: SessionConfig, acceptor: Acceptor, clock: Arc<dyn Clock>) -> Self {
        // Rate limits on MAIL FROM need the sender check.
        if acceptor.policy.limits.is_some() {
            session.check_sender = true;
        }
        Self {
            session,
            acceptor,
            admission: Admission::new(ConnectionLimits::default()),
            tls: None,
            clock,
            drain_timeout: Duration::from_secs(60),
        }
    }
    /// Connection limits (default [`ConnectionLimits::default`]).
    #[must_use]
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.admission = Admission::new(limits);
        self
    }
    /// Records SMTP sessions, messages accepted and refused, and rate-limit
    /// denials in `metrics` (shared with the HTTP layer's `/metrics`).
    /// Default: a private set nobody reads.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<smtpy_core::metrics::Metrics>) -> Self {
        self.acceptor.metrics = metrics;
        self
    }
    /// Offers STARTTLS with this acceptor.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsAcceptor) -> Self {
        self.tls = Some(tls);
        self
    }
    /// How long [`serve`](Self::serve) waits for open connections after
    /// shutdown before abandoning them (default 60 s; their transactions
    /// were either queued — and answered 250 — or never acknowledged).
    #[must_use]
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Accepts connections on `listener` until `shutdown` turns true, then
    /// drains: new connections get `421 4.3.2`, open ones finish their
    /// transaction. Returns when every connection has ended (or the drain
    /// timeout passed).
    pub async fn serve(&self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    match self.admission.admit(peer.ip(), self.clock.now()) {
                        Ok(slot) => {
                            let (config, acceptor, tls) = (self.session.clone(), self.acceptor.clone(), self.tls.clone());
                            let rx = shutdown.clone();
                            connections.spawn(async move {
                                let _slot = slot;
                                connection::serve(tcp, peer, config, acceptor, tls, rx).await;
                            });
                        }
                        Err(why) => {
                            tracing::info!(peer = %peer.ip(), ?why, "connection refused");
                            connections.spawn(refuse(tcp, &self.session.hostname, "421 4.7.0 Too many connections, try again later"));
                        }
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() { break; }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(open = connections.len(), "SMTP listener draining");
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((tcp, _)) = accepted {
                        connections.spawn(refuse(tcp, &self.session.hostname, "421 4.3.2 Shutting down, try again later"));
                    }
                }
                joined = connections.join_next() => {
                    if joined.is_none() { break; }
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(open = connections.len(), "drain timeout: closing remaining connections");
                    connections.abort_all();
                    break;
                }
            }
        }
    }
}

/// Greets with a refusal and closes.
fn refuse(
    mut tcp: tokio::net::TcpStream,
    hostname: &str,
    reply: &'static str,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = hostname;
    let line = format!("{reply}\r\n");
    async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = tcp.write_all(line.as_bytes()).await;
            let _ = tcp.shutdown().await;
        })
        .await;
    }
}
