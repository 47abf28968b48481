//! Test doubles for [`Transport`]: test the delivery worker (or anything
//! else above a transport) without sockets.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use smtpy_core::address::EmailAddress;
//! use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};
//! use smtpy_smtp::transport::testing::RecordingTransport;
//!
//! let bob = EmailAddress::parse("bob@example.org")?;
//! let carol = EmailAddress::parse("carol@example.org")?;
//! let transport = RecordingTransport::new();
//! // Bob's first attempt fails temporarily; everything else is delivered.
//! transport.push_outcome(&bob, DeliveryOutcome::temporary("try later"));
//!
//! let envelope = Envelope { reverse_path: None, recipients: vec![bob.clone(), carol] };
//! let first = transport.deliver(&envelope, b"Subject: hi\r\n\r\nhello\r\n").await;
//! assert!(matches!(first[0], DeliveryOutcome::Temporary(_)));
//! assert!(matches!(first[1], DeliveryOutcome::Delivered(None)));
//! let second = transport.deliver(&envelope, b"Subject: hi\r\n\r\nhello\r\n").await;
//! assert!(matches!(second[0], DeliveryOutcome::Delivered(None)));
//!
//! assert_eq!(transport.deliveries().len(), 2);
//! assert_eq!(transport.attempts_for(&bob), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use smtpy_core::address::EmailAddress;
use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};
use tokio::sync::Notify;

/// Decides an outcome for a recipient that has no scripted one left.
pub type OutcomeFn = dyn Fn(&EmailAddress, &Envelope) -> DeliveryOutcome + Send + Sync;

/// One call of [`Transport::deliver`] as a [`RecordingTransport`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedDelivery {
    /// The envelope.
    pub envelope: Envelope,
    /// The message bytes, as given.
    pub message: Vec<u8>,
    /// What the transport answered, one per recipient.
    pub outcomes: Vec<DeliveryOutcome>,
}

enum Fallback {
    Fixed(DeliveryOutcome),
    Computed(Arc<OutcomeFn>),
}

struct State {
    deliveries: Vec<RecordedDelivery>,
    scripted: HashMap<EmailAddress, VecDeque<DeliveryOutcome>>,
    fallback: Fallback,
    delay: Duration,
}

/// A [`Transport`] that keeps every delivery in memory and answers from a
/// script.
///
/// For each recipient of a delivery, the outcome is, in order of
/// precedence: the next outcome [pushed](Self::push_outcome) for that
/// address (each is used once, first in first out), else the
/// [fallback](Self::set_fallback) outcome or [function](Self::with_fn),
/// which is `Delivered(None)` unless changed. Addresses compare as
/// [`EmailAddress`] does (case-insensitive).
///
/// Deliveries are recorded before [`deliver`](Transport::deliver) returns
/// (after the optional [delay](Self::set_delay)), so a test can wait for
/// them with [`wait_for_deliveries`](Self::wait_for_deliveries).
pub struct RecordingTransport {
    state: Mutex<State>,
    recorded: Notify,
}

impl fmt::Debug for RecordingTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingTransport")
            .field("deliveries", &self.lock().deliveries.len())
            .finish_non_exhaustive()
    }
}

impl Default for RecordingTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingTransport {
    /// Delivers everything (`Delivered(None)`).
    #[must_use]
    pub fn new() -> Self {
        Self::with_fallback(DeliveryOutcome::Delivered(None))
    }

    /// Answers `outcome` for every recipient without a scripted outcome.
    #[must_use]
    pub fn with_fallback(outcome: DeliveryOutcome) -> Self {
        Self {
            state: Mutex::new(State {
                deliveries: Vec::new(),
                scripted: HashMap::new(),
                fallback: Fallback::Fixed(outcome),
                delay: Duration::ZERO,
            }),
            recorded: Notify::new(),
        }
    }

    /// Asks `decide` for every recipient without a scripted outcome (it is
    /// called with the recipient and the whole envelope, under a lock: keep
    /// it quick and do not call back into this transport).
    #[must_use]
    pub fn with_fn(
        decide: impl Fn(&EmailAddress, &Envelope) -> DeliveryOutcome + Send + Sync + 'static,
    ) -> Self {
        let transport = Self::new();
        transport.lock().fallback = Fallback::Computed(Arc::new(decide));
        transport
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `outcome` for the next delivery attempt to `recipient`.
    pub fn push_outcome(&self, recipient: &EmailAddress, outcome: DeliveryOutcome) {
        self.lock()
            .scripted
            .entry(recipient.clone())
            .or_default()
            .push_back(outcome);
    }

    /// Replaces the fallback with a fixed `outcome`.
    pub fn set_fallback(&self, outcome: DeliveryOutcome) {
        self.lock().fallback = Fallback::Fixed(outcome);
    }

    /// Makes every delivery take `delay` before it is recorded and returns
    /// (a slow next hop). Default none.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every delivery so far, oldest first.
    #[must_use]
    pub fn deliveries(&self) -> Vec<RecordedDelivery> {
        self.lock().deliveries.clone()
    }

    /// Removes and returns every delivery so far.
    pub fn take_deliveries(&self) -> Vec<RecordedDelivery> {
        std::mem::take(&mut self.lock().deliveries)
    }

    /// How many deliveries included `recipient`.
    #[must_use]
    pub fn attempts_for(&self, recipient: &EmailAddress) -> usize {
        self.lock()
            .deliveries
            .iter()
            .filter(|d| d.envelope.recipients.contains(recipient))
            .count()
    }

    /// Waits until at least `count` deliveries are recorded (counting ones
    /// taken by [`take_deliveries`](Self::take_deliveries) as gone) or
    /// `timeout` passes; true when they are there.
    pub async fn wait_for_deliveries(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().deliveries.len() >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().deliveries.len() >= count;
            }
        }
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Vec<DeliveryOutcome> {
        let delay = self.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let outcomes = {
            let mut state = self.lock();
            let outcomes: Vec<DeliveryOutcome> = envelope
                .recipients
                .iter()
                .map(|recipient| {
                    let scripted = state
                        .scripted
                        .get_mut(recipient)
                        .and_then(VecDeque::pop_front);
                    scripted.unwrap_or_else(|| match &state.fallback {
                        Fallback::Fixed(outcome) => outcome.clone(),
                        Fallback::Computed(decide) => decide(recipient, envelope),
                    })
                })
                .collect();
            state.deliveries.push(RecordedDelivery {
                envelope: envelope.clone(),
                message: message.to_vec(),
                outcomes: outcomes.clone(),
            });
            outcomes
        };
        self.recorded.notify_waiters();
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(s: &str) -> EmailAddress {
        EmailAddress::parse(s).expect("valid address")
    }

    #[tokio::test]
    async fn computed_fallback_and_waiting() {
        let transport = Arc::new(RecordingTransport::with_fn(|rcpt, _| {
            if rcpt.local_part().as_str() == "bounce" {
                DeliveryOutcome::permanent("5.1.1", "no such user")
            } else {
                DeliveryOutcome::Delivered(None)
            }
        }));
        let envelope = Envelope {
            reverse_path: Some(address("a@example.org")),
            recipients: vec![address("bounce@example.net"), address("ok@example.net")],
        };
        let waiter = {
            let transport = transport.clone();
            tokio::spawn(async move {
                transport
                    .wait_for_deliveries(1, Duration::from_secs(5))
                    .await
            })
        };
        let outcomes = transport.deliver(&envelope, b"x\r\n").await;
        assert!(matches!(outcomes[0], DeliveryOutcome::Permanent(_)));
        assert!(matches!(outcomes[1], DeliveryOutcome::Delivered(None)));
        assert!(waiter.await.expect("waiter"));
        assert_eq!(transport.take_deliveries().len(), 1);
        assert!(
            !transport
                .wait_for_deliveries(1, Duration::from_millis(10))
                .await
        );
    }
}
