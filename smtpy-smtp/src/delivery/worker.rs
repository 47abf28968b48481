//! The worker loop.

use std::sync::Arc;

use smtpy_core::address::DomainName;
use smtpy_core::bounce::BounceClass;
use smtpy_core::dsn::{self, DsnAction, DsnRecipient, DsnRequest};
use smtpy_core::ids::MessageId;
use smtpy_core::metrics::{DELIVERIES, DELIVERY_LATENCY, Metrics};
use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind, RemoteReply};
use smtpy_core::model::{Leased, MessageKind, QueuedMessage, QueuedRecipient, RecipientState};
use smtpy_core::store::{Access, PageRequest};
use smtpy_core::store::{Completion, QueueStore};
use smtpy_core::time::{Clock, Timestamp};
use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};
use smtpy_core::{Store, StoreError};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::{DeliveryConfig, apply_outcomes};
use crate::policy::{BounceReport, MailPolicy};

/// Delivers what is due in the queue, until shut down.
#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn QueueStore>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    /// The store and policy for events, bounces, signing and notices.
    policy: Option<(Arc<dyn Store>, Arc<MailPolicy>)>,
    /// Deliveries by outcome and delivery latency.
    metrics: Arc<Metrics>,
}

/// A running worker: wait for it to finish after signalling shutdown.
#[derive(Debug)]
pub struct WorkerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Waits until the worker has finished its in-flight deliveries and stopped.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "delivery worker panicked");
        }
    }
}

impl DeliveryWorker {
    /// A worker over the queue in `store`, delivering through `transport`.
    #[must_use]
    pub fn new(
        store: Arc<dyn QueueStore>,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        config: DeliveryConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                transport,
                clock,
                config,
                wake: Arc::new(Notify::new()),
                policy: None,
                metrics: Arc::new(Metrics::new()),
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            store: Arc::clone(&shared.store),
            transport: Arc::clone(&shared.transport),
            clock: Arc::clone(&shared.clock),
            config: shared.config.clone(),
            wake: Arc::clone(&shared.wake),
            policy: shared.policy.clone(),
            metrics: Arc::clone(&shared.metrics),
        });
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Records deliveries by outcome (`delivered`, `deferred`, `bounced`)
    /// and the delivery latency (acceptance to delivery) in `metrics`.
    /// Default: a private set nobody reads. Call before
    /// [`waker`](Self::waker) and [`spawn`](Self::spawn).
    #[must_use]
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        self.edit(|i| i.metrics = metrics)
    }

    /// Records delivery events in `store`, treats permanent failures of
    /// forwards as bounces (thresholds, notices), suppresses DSNs that
    /// would be backscatter and DKIM-signs DSNs, all per `policy`. Call
    /// before [`waker`](Self::waker) and [`spawn`](Self::spawn).
    #[must_use]
    pub fn with_policy(self, store: Arc<dyn Store>, policy: Arc<MailPolicy>) -> Self {
        self.edit(|i| i.policy = Some((store, policy)))
    }

    /// Wakes the worker (call after an enqueue so new mail goes out at once).
    #[must_use]
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.wake)
    }

    /// One round: lease what is due and deliver it. Returns how many messages
    /// were attempted.
    ///
    /// # Errors
    /// When leasing fails (the store is unreachable); outcomes that cannot be
    /// recorded are logged and retried after the lease lapses.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now();
        let leased = self
            .inner
            .store
            .lease_due(now, self.inner.config.lease, self.inner.config.batch)
            .await?;
        let n = leased.len();
        // Every attempt of the round ends while a quarter of the lease is
        // left to record it (see `deliver`).
        let lease = self.inner.config.lease;
        let deadline = tokio::time::Instant::now() + lease.saturating_sub(lease / 4);
        let limit = Arc::new(Semaphore::new(self.inner.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for lease in leased {
            let inner = Arc::clone(&self.inner);
            let permit = Arc::clone(&limit).acquire_owned().await;
            // Everything logged for this attempt names the message.
            let span = tracing::info_span!(
                "delivery",
                message_id = %lease.message.id,
                correlation = %lease.message.correlation_id,
            );
            tasks.spawn(
                async move {
                    let _permit = permit;
                    inner.deliver(lease, deadline).await
                }
                .instrument(span),
            );
        }
        let mut done = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(completion) => done.push(completion),
                // The lease lapses and the message is delivered again.
                Err(e) => tracing::error!(error = %e, "delivery task panicked"),
            }
        }
        // One call for the whole round: one commit on backends that batch.
        self.inner.record(&done).await;
        Ok(n)
    }

    /// Runs until `shutdown` turns true; in-flight deliveries finish first.
    #[must_use]
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> WorkerHandle {
        let task = tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let worked = match self.run_once().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot lease from the queue; retrying");
                        0
                    }
                };
                if worked == 0 {
                    tokio::select! {
                        () = self.inner.wake.notified() => {}
                        () = tokio::time::sleep(self.inner.config.idle_poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        });
        WorkerHandle { task }
    }
}

impl Inner {
    /// Delivers one leased message and returns what to record.
    async fn deliver(&self, lease: Leased, deadline: tokio::time::Instant) -> Completion {
        let Leased {
            mut message, token, ..
        } = lease;
        let tried: Vec<usize> = message
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.state.is_final())
            .map(|(i, _)| i)
            .collect();
        if tried.is_empty() {
            return Completion {
                token,
                message,
                follow_ups: Vec::new(),
            };
        }
        let envelope = Envelope {
            reverse_path: message.reverse_path.clone(),
            recipients: tried
                .iter()
                .map(|&i| message.recipients[i].address.clone())
                .collect(),
        };
        // An attempt may not outlive its lease: past it another worker (or
        // instance) would lease the message and deliver it a second time
        // while this one is still talking. Stop with a temporary failure
        // while a quarter of the lease is left to record the outcome.
        let outcomes = match tokio::time::timeout_at(
            deadline,
            self.transport.deliver(&envelope, &message.body),
        )
        .await
        {
            Ok(outcomes) => outcomes,
            Err(_) => {
                tracing::warn!(
                    message = %message.id,
                    correlation = %message.correlation_id,
                    lease_secs = self.config.lease.as_secs_f64(),
                    "delivery attempt stopped: it would have outlived the lease"
                );
                let reason = format!(
                    "delivery did not finish within three quarters of the {} s lease; will retry",
                    self.config.lease.as_secs()
                );
                envelope
                    .recipients
                    .iter()
                    .map(|_| DeliveryOutcome::temporary(reason.clone()))
                    .collect()
            }
        };
        let now = self.clock.now();
        let failed = apply_outcomes(&mut message, &tried, outcomes, now, &self.config.retry);
        self.count(&message, &tried, now);
        tracing::info!(
            message = %message.id,
            correlation = %message.correlation_id,
            attempt = message.attempts,
            tried = tried.len(),
            failed = failed.len(),
            done = message.is_done(),
            "delivery attempt"
        );
        let mut follow_ups: Vec<QueuedMessage> = Vec::new();
        let mut dsn_allowed = true;
        if let Some((store, policy)) = &self.policy {
            dsn_allowed = self
                .after_attempt(
                    &**store,
                    policy,
                    &message,
                    &tried,
                    &failed,
                    now,
                    &mut follow_ups,
                )
                .await;
        }
        if dsn_allowed {
            follow_ups.extend(self.dsn(&message, &failed, now));
        }
        Completion {
            token,
            message,
            follow_ups,
        }
    }

    /// Deliveries of this attempt by outcome, and latencies of the delivered.
    fn count(&self, message: &QueuedMessage, tried: &[usize], now: Timestamp) {
        for r in tried.iter().filter_map(|&i| message.recipients.get(i)) {
            let outcome = match &r.state {
                RecipientState::Delivered { .. } => {
                    let latency = now.duration_since(message.received_at).as_secs_f64();
                    self.metrics.observe(DELIVERY_LATENCY, &[], latency);
                    "delivered"
                }
                RecipientState::Failed { .. } => "bounced",
                _ => "deferred",
            };
            self.metrics.inc(DELIVERIES, &[("outcome", outcome)]);
        }
    }

    /// Events for this attempt, bounces of forwards, notices. Returns
    /// whether a DSN to the sender may be sent (not when the failure is a
    /// spam rejection of mail whose sender we could not authenticate: that
    /// DSN would be backscatter).
    #[allow(clippy::too_many_arguments)]
    async fn after_attempt(
        &self,
        store: &dyn Store,
        policy: &MailPolicy,
        message: &QueuedMessage,
        tried: &[usize],
        failed: &[usize],
        now: Timestamp,
        follow_ups: &mut Vec<QueuedMessage>,
    ) -> bool {
        let mut events = Vec::with_capacity(tried.len());
        let mut spam_failure = false;
        let mailboxes = match message.owner {
            Some(owner) if !failed.is_empty() => {
                store.list_mailboxes(owner).await.unwrap_or_default()
            }
            _ => Vec::new(),
        };
        for &i in tried {
            let Some(r) = message.recipients.get(i) else {
                continue;
            };
            let (kind, reply) = match &r.state {
                RecipientState::Delivered { reply, .. } => (EventKind::Delivered, reply.clone()),
                RecipientState::Failed { reply, reason, .. } => (
                    EventKind::Failed,
                    reply.clone().or_else(|| {
                        Some(RemoteReply {
                            code: 554,
                            enhanced: None,
                            text: reason.clone(),
                        })
                    }),
                ),
                _ => (EventKind::Deferred, r.last_reply.clone()),
            };
            let mut e = DeliveryEvent::new(kind, now)
                .with("attempt", message.attempts.to_string())
                .with("kind", format!("{:?}", message.kind).to_ascii_lowercase())
                .with("correlation", message.correlation_id.clone());
            e.owner = message.owner;
            e.alias = r.alias;
            e.message = Some(message.id);
            e.mailbox = mailboxes
                .iter()
                .find(|m| m.address.canonical() == r.address.canonical())
                .map(|m| m.id);
            if let Some(reply) = &reply {
                e = e.with("reply", reply.to_string());
            }
            events.push(e);
            if kind == EventKind::Failed
                && let Some(owner) = message.owner
                && matches!(message.kind, MessageKind::Forward | MessageKind::Reply)
            {
                let class = reply.as_ref().map_or(BounceClass::Hard, |r| {
                    smtpy_core::bounce::classify_reply(r.code, r.enhanced.as_deref(), &r.text)
                });
                spam_failure |= class == BounceClass::Spam;
                let report = BounceReport {
                    owner,
                    alias: r.alias,
                    mailbox: events.last().and_then(|e| e.mailbox),
                    message: Some(message.id),
                    class,
                    reply: reply.map(|r| r.to_string()).unwrap_or_default(),
                    kind: message.kind,
                };
                if let Some(n) = policy
                    .record_bounce(
                        store,
                        &report,
                        &self.config.hostname,
                        now,
                        self.config.lifetime,
                        &message.correlation_id,
                    )
                    .await
                {
                    follow_ups.push(n);
                }
            }
        }
        if let Err(e) = store.append_events(&events).await {
            tracing::warn!(correlation = %message.correlation_id, error = %e, "cannot record delivery events");
        }
        if spam_failure && message.kind == MessageKind::Forward {
            return sender_was_authenticated(store, message.id).await;
        }
        true
    }

    async fn record(&self, done: &[Completion]) {
        if done.is_empty() {
            return;
        }
        match self.store.complete_attempts(done).await {
            Ok(results) => {
                for (c, r) in done.iter().zip(results) {
                    match r {
                        Ok(()) => {}
                        Err(StoreError::Conflict { .. }) => tracing::warn!(
                            message = %c.message.id,
                            correlation = %c.message.correlation_id,
                            "lease lapsed during delivery; another worker owns the message now"
                        ),
                        Err(e) => tracing::error!(
                            message = %c.message.id,
                            correlation = %c.message.correlation_id,
                            error = %e,
                            "cannot record the delivery outcome; the message will be retried when its lease lapses"
                        ),
                    }
                }
                if done.iter().any(|c| !c.follow_ups.is_empty()) {
                    self.wake.notify_one();
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                messages = done.len(),
                "cannot record delivery outcomes; the messages will be retried when their leases lapse"
            ),
        }
    }

    /// The DSN for recipients that failed in this attempt, if one is due.
    fn dsn(
        &self,
        message: &QueuedMessage,
        failed: &[usize],
        now: Timestamp,
    ) -> Option<QueuedMessage> {
        if failed.is_empty() || !dsn::dsn_allowed(message.original_sender.as_ref(), message.kind) {
            return None;
        }
        let to = message.original_sender.clone()?;
        let failed: Vec<&QueuedRecipient> = failed
            .iter()
            .filter_map(|&i| message.recipients.get(i))
            .collect();
        let recipients = failed
            .iter()
            .map(|r| {
                let (status, diagnostic) = match &r.state {
                    RecipientState::Failed { reply, .. } => (
                        reply
                            .as_ref()
                            .and_then(|x| x.enhanced.clone())
                            .unwrap_or_else(|| "5.0.0".into()),
                        reply.clone(),
                    ),
                    _ => ("5.0.0".into(), None),
                };
                DsnRecipient {
                    final_recipient: r.original.clone().unwrap_or_else(|| r.address.clone()),
                    action: DsnAction::Failed,
                    status,
                    diagnostic,
                }
            })
            .collect();
        // Every delivery address that is not what the DSN names (the
        // mailboxes behind an alias) must never reach the sender.
        let secret_addresses = message
            .recipients
            .iter()
            .filter(|r| r.original.as_ref().is_some_and(|o| *o != r.address))
            .map(|r| r.address.clone())
            .collect();
        let request = DsnRequest {
            reporting_mta: self.config.hostname.clone(),
            original_envelope_id: None,
            arrival_date: message.received_at,
            recipients,
            original_headers: smtpy_core::forward::header_block(&message.body).to_vec(),
            to: to.clone(),
            from_postmaster: self.config.postmaster.clone(),
            secret_addresses,
        };
        let secrets: Vec<String> = request
            .secret_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut body = dsn::build_dsn(&request, now);
        // Last guard: a DSN that would still show a mailbox is not sent.
        if secrets
            .iter()
            .any(|s| smtpy_core::rewrite::scrub::leaks(&body, s))
        {
            tracing::error!(
                message = %message.id,
                "DSN suppressed: it would reveal a mailbox address"
            );
            return None;
        }
        if let Some((_, policy)) = &self.policy
            && let Ok(domain) = DomainName::parse(&self.config.hostname)
        {
            body = policy.sign(&domain, None, body, now);
        }
        Some(QueuedMessage {
            id: MessageId::new(),
            kind: MessageKind::Dsn,
            reverse_path: None,
            original_sender: None,
            body: body.into(),
            recipients: vec![QueuedRecipient::new(to)],
            owner: message.owner,
            received_at: now,
            next_attempt_at: now,
            expires_at: now.saturating_add(self.config.lifetime),
            attempts: 0,
            held: false,
            correlation_id: message.correlation_id.clone(),
        })
    }
}

/// Whether the sender of a forward passed DMARC, or SPF or DKIM, when we
/// accepted it (from its `Accepted` event). Unknown counts as not.
async fn sender_was_authenticated(store: &dyn Store, message: MessageId) -> bool {
    let Ok(page) = store
        .list_events(
            Access::System,
            &EventFilter {
                message: Some(message),
                kinds: vec![EventKind::Accepted, EventKind::Quarantined],
                ..EventFilter::default()
            },
            PageRequest::first(10),
        )
        .await
    else {
        return false;
    };
    page.items.iter().any(|e| {
        ["dmarc", "spf", "dkim"]
            .iter()
            .any(|k| e.details.get(*k).is_some_and(|v| v == "pass"))
    })
}
