//! Per-destination concurrency limit and connection reuse; the
//! guarantees are documented on [`PoolConfig`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use smtpy_core::transport::DeliveryOutcome;
use tokio::sync::Semaphore;

use super::client::{self, Connection, SessionError, SessionSetup};
use super::transaction::Transaction;

/// Destinations kept without idle connections or waiters are forgotten once
/// there are more than this many.
const PRUNE_ABOVE: usize = 1024;

/// Concurrency and connection reuse per destination.
///
/// A *destination* is one next-hop server name and port (`smtp.example:587`,
/// `mx1.example.org:25`). For each destination, per transport:
///
/// * **At most `max_connections_per_destination` transactions run at
///   once** (a semaphore); further deliveries wait for a slot, in FIFO
///   order. A new connection is opened only by a slot holder that found no
///   idle connection, so the open connections to a destination (idle ones
///   included) never exceed the limit either, apart from ones being closed.
/// * **Idle connections are reused.** After a transaction that left the
///   session in step (every command answered, no 421), the connection is
///   kept idle, at most `max_idle_per_destination` of them, for
///   `idle_timeout`; then it is sent QUIT and closed. The next delivery to
///   the destination takes the most recently used idle connection and
///   sends RSET first; a connection that does not answer RSET with 2xx is
///   discarded and the next idle one (or a new connection) is used. A
///   connection that carried `max_messages_per_connection` messages is
///   closed instead of kept.
/// * Any I/O error, timeout, unparseable or out-of-sequence reply, or 421
///   discards the connection.
///
/// * Waiting for a slot has no timeout of its own: it is bounded by the
///   deliveries ahead, each bounded by its [`Timeouts`](super::Timeouts).
///   An MX delivery holds a slot of one exchanger at a time.
///
/// The limit is per transport instance and per process: two transports, or
/// two processes, each have their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
    pub(crate) max_messages: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            idle_timeout: Duration::from_secs(5),
            max_idle: 2,
            max_messages: 100,
        }
    }
}

impl PoolConfig {
    /// Defaults: 10 transactions at once per destination, 2 idle
    /// connections kept for 5 s, at most 100 messages per connection.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Transactions (and connections) at once per destination. Default 10:
    /// enough to keep a queue moving, few enough that large providers do
    /// not throttle us (Postfix's default is 20 per destination). At least 1.
    #[must_use]
    pub fn max_connections_per_destination(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// How long an idle connection is kept. Default 5 s: long enough to
    /// catch the next message of a burst, far below the 5 min a server waits
    /// (RFC 5321 §4.5.3.2.7), so the server rarely closes it first. Zero
    /// disables reuse.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Idle connections kept per destination. Default 2. Zero disables
    /// reuse.
    #[must_use]
    pub fn max_idle_per_destination(mut self, limit: usize) -> Self {
        self.max_idle = limit;
        self
    }

    /// Messages sent over one connection before it is closed. Default 100:
    /// bounds the damage of a session that degrades, like Postfix's
    /// connection reuse limits. At least 1.
    #[must_use]
    pub fn max_messages_per_connection(mut self, limit: u32) -> Self {
        self.max_messages = limit.max(1);
        self
    }

    fn reuse(&self) -> bool {
        self.max_idle > 0 && !self.idle_timeout.is_zero()
    }
}

struct Idle {
    id: u64,
    connection: Connection,
    since: Instant,
}

#[derive(Default)]
struct Destination {
    slots: Option<Arc<Semaphore>>,
    /// Oldest first; reuse takes the last.
    idle: Vec<Idle>,
}

type Destinations = Mutex<HashMap<String, Destination>>;

/// The destinations of one transport.
pub(crate) struct Pool {
    config: PoolConfig,
    destinations: Arc<Destinations>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.config)
            .field("destinations", &lock(&self.destinations).len())
            .finish()
    }
}

fn lock(destinations: &Destinations) -> MutexGuard<'_, HashMap<String, Destination>> {
    destinations.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    pub(crate) fn new(config: PoolConfig) -> Self {
        Self {
            config,
            destinations: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
        }
    }

    /// Runs `txn` at `destination` (`host:port`): in a slot of the
    /// destination, on an idle connection after RSET or else on a new one
    /// to the first of `addresses` that opens (`addresses` is awaited only
    /// when a new connection is needed). An error means no session could be
    /// opened; the caller may try another destination.
    pub(crate) async fn deliver(
        &self,
        setup: &SessionSetup,
        destination: &str,
        server_name: &str,
        addresses: impl Future<Output = Result<Vec<SocketAddr>, SessionError>>,
        txn: &Transaction<'_>,
    ) -> Result<Vec<DeliveryOutcome>, SessionError> {
        let slots = self.slots(destination);
        // Only a closed semaphore fails, and these are never closed.
        let _slot = slots.acquire_owned().await.ok();

        let mut reused = None;
        while let Some(mut connection) = self.take_idle(destination) {
            if connection.reset(&setup.timeouts).await {
                reused = Some(connection);
                break;
            }
            tracing::debug!(destination, "idle connection failed RSET; discarded");
        }
        let mut connection = match reused {
            Some(connection) => connection,
            None => connect(setup, server_name, addresses.await?).await?,
        };

        let sent = connection.send(txn, &setup.timeouts).await;
        if sent.reusable {
            self.release(destination, connection, setup.timeouts.command);
        }
        Ok(sent.outcomes)
    }

    fn slots(&self, destination: &str) -> Arc<Semaphore> {
        let mut map = lock(&self.destinations);
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, d| {
                !d.idle.is_empty() || d.slots.as_ref().is_some_and(|s| Arc::strong_count(s) > 1)
            });
        }
        let entry = map.entry(destination.to_owned()).or_default();
        entry
            .slots
            .get_or_insert_with(|| Arc::new(Semaphore::new(self.config.max_connections)))
            .clone()
    }

    /// The most recently used idle connection that has not expired.
    fn take_idle(&self, destination: &str) -> Option<Connection> {
        let mut map = lock(&self.destinations);
        let idle = &mut map.get_mut(destination)?.idle;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.config.idle_timeout {
                return Some(entry.connection);
            }
            // Expired: dropped (closed); its expiry task finds nothing.
        }
        None
    }

    /// Keeps `connection` idle, or closes it when reuse is off, the
    /// connection carried enough messages or enough are idle already.
    fn release(&self, destination: &str, connection: Connection, quit_timeout: Duration) {
        let keep = self.config.reuse() && connection.transactions < self.config.max_messages;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let refused = {
            let mut map = lock(&self.destinations);
            let idle = &mut map.entry(destination.to_owned()).or_default().idle;
            if keep && idle.len() < self.config.max_idle {
                idle.push(Idle {
                    id,
                    connection,
                    since: Instant::now(),
                });
                None
            } else {
                Some(connection)
            }
        };
        match refused {
            Some(connection) => {
                tokio::spawn(connection.quit(quit_timeout));
            }
            None => self.expire_later(destination.to_owned(), id, quit_timeout),
        }
    }

    /// Closes idle connection `id` after the idle timeout unless it was
    /// taken by then. The task holds only a weak reference: dropping the
    /// transport drops its idle connections.
    fn expire_later(&self, destination: String, id: u64, quit_timeout: Duration) {
        let destinations: Weak<Destinations> = Arc::downgrade(&self.destinations);
        let after = self.config.idle_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let expired = destinations.upgrade().and_then(|destinations| {
                let mut map = lock(&destinations);
                let idle = &mut map.get_mut(&destination)?.idle;
                let at = idle.iter().position(|entry| entry.id == id)?;
                Some(idle.remove(at).connection)
            });
            if let Some(connection) = expired {
                tracing::debug!(destination, peer = %connection.peer(), "idle connection expired");
                connection.quit(quit_timeout).await;
            }
        });
    }
}

/// Opens a session to the first of `addresses` that answers.
async fn connect(
    setup: &SessionSetup,
    server_name: &str,
    addresses: Vec<SocketAddr>,
) -> Result<Connection, SessionError> {
    let mut last = None;
    for addr in addresses {
        match client::open(addr, server_name, setup).await {
            Ok(connection) => return Ok(connection),
            Err(e) => {
                tracing::info!(%addr, server = server_name, error = %e, "could not open SMTP session");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        SessionError::new(
            client::FailureKind::Connect,
            format!("{server_name}: no address to connect to"),
        )
    }))
}
