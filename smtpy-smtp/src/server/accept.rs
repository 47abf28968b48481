//! What happens at RCPT and at the end of DATA: route each recipient
//! through core, then turn an accepted message into durable queue entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smtpy_core::Store;
use smtpy_core::address::EmailAddress;
use smtpy_core::forward;
use smtpy_core::ids::MessageId;
use smtpy_core::model::{MessageKind, QueuedMessage, QueuedRecipient};
use smtpy_core::reply::Reply;
use smtpy_core::routing::{Refusal, Route, Router};
use smtpy_core::srs::Srs;
use smtpy_core::store::QueueStore;
use smtpy_core::time::Clock;
use tokio::sync::Notify;

use crate::session::{Envelope, ForwardPath};

/// Decides recipients and queues messages for one server.
#[derive(Debug, Clone)]
pub struct Acceptor {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) queue: Arc<dyn QueueStore>,
    pub(crate) srs: Option<Arc<Srs>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hostname: String,
    pub(crate) lifetime: Duration,
    pub(crate) postmaster: Option<EmailAddress>,
    /// `postmaster@<hostname>`: named by headers of mail that has no alias,
    /// and the holder of postmaster mail when `postmaster` is not set.
    pub(crate) local_postmaster: Option<EmailAddress>,
    pub(crate) wake: Option<Arc<Notify>>,
}

/// `554 5.4.6`: a mail loop (too many `Received:` or our own marker).
const LOOP: Reply = Reply::new(554, (5, 4, 6), "Mail loop detected");
/// `451 4.3.0`: the queue could not make the message durable.
const QUEUE_FAILED: Reply = Reply::new(
    451,
    (4, 3, 0),
    "Cannot queue the message now, try again later",
);

impl Acceptor {
    /// An acceptor routing through `store` and queueing into `queue` (often
    /// the same backend).
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn QueueStore>,
        clock: Arc<dyn Clock>,
        hostname: impl Into<String>,
    ) -> Self {
        let hostname = hostname.into();
        Self {
            local_postmaster: EmailAddress::parse(&format!("postmaster@{hostname}")).ok(),
            store,
            queue,
            srs: None,
            clock,
            hostname,
            lifetime: Duration::from_secs(5 * 24 * 3600),
            postmaster: None,
            wake: None,
        }
    }
    /// Rewrites forwarded envelopes with SRS and accepts bounces to SRS addresses.
    #[must_use]
    pub fn with_srs(mut self, srs: Arc<Srs>) -> Self {
        self.srs = Some(srs);
        self
    }
    /// How long accepted mail may stay queued (default 5 days).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }
    /// Where mail to `postmaster` goes. Without it, postmaster mail is
    /// accepted and held in the queue for the operator.
    #[must_use]
    pub fn with_postmaster(mut self, address: EmailAddress) -> Self {
        self.postmaster = Some(address);
        self
    }
    /// Notified after every enqueue (wakes the delivery workers).
    #[must_use]
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// The route for one recipient (RCPT time).
    pub async fn route(
        &self,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
    ) -> Result<Route, Refusal> {
        Router::new(&*self.store, self.srs.as_deref())
            .route(rcpt, sender, self.clock.now())
            .await
    }

    /// Queues a finished message and returns the reply for the client:
    /// `250` only once everything is durable.
    pub async fn accept(
        &self,
        envelope: &Envelope,
        routes: &HashMap<String, Route>,
        body: Vec<u8>,
        peer: IpAddr,
        correlation_id: &str,
    ) -> Reply {
        if let Err(e) = forward::loop_check(&body, &self.hostname) {
            tracing::info!(correlation = correlation_id, error = %e, "refused a looping message");
            return LOOP;
        }
        let now = self.clock.now();
        let id = MessageId::new();
        let mut forwards: Vec<QueuedRecipient> = Vec::new();
        let mut bounces: Vec<EmailAddress> = Vec::new();
        let mut owner = None;
        let mut postmaster = false;
        let mut first_alias: Option<&EmailAddress> = None;
        for path in &envelope.recipients {
            let route = match path {
                ForwardPath::Postmaster => {
                    postmaster = true;
                    continue;
                }
                ForwardPath::Mailbox(a) => routes.get(&a.canonical()),
            };
            match route {
                Some(Route::Forward { alias, mailboxes }) => {
                    owner.get_or_insert(alias.owner);
                    first_alias.get_or_insert(&alias.address);
                    for m in mailboxes {
                        if forwards
                            .iter()
                            .any(|r| r.address.canonical() == m.address.canonical())
                        {
                            continue;
                        }
                        let mut r = QueuedRecipient::new(m.address.clone());
                        r.alias = Some(alias.id);
                        r.original = Some(alias.address.clone());
                        forwards.push(r);
                    }
                }
                Some(Route::BounceRelay { original }) => bounces.push(original.clone()),
                Some(Route::Postmaster) => postmaster = true,
                // Discarded (a disabled alias set to discard) or unknown: nothing to queue.
                _ => {}
            }
        }
        let mut messages = Vec::with_capacity(3);
        let received = |for_alias: Option<&EmailAddress>| -> Vec<String> {
            for_alias
                .or(self.local_postmaster.as_ref())
                .map(|alias| {
                    forward::received_header(
                        &self.hostname,
                        &envelope.helo,
                        peer,
                        envelope.protocol(),
                        &id.to_string(),
                        alias,
                        now,
                    )
                })
                .into_iter()
                .collect()
        };
        if !forwards.is_empty() {
            let mut headers = received(first_alias);
            headers.push(forward::loop_marker_header(&self.hostname));
            let reverse_path = match (&envelope.reverse_path, &self.srs) {
                (Some(sender), Some(srs)) => match srs.forward(sender, now) {
                    Ok(rewritten) => Some(rewritten),
                    Err(e) => {
                        tracing::warn!(correlation = correlation_id, error = %e, "SRS rewrite failed; forwarding with the original sender");
                        Some(sender.clone())
                    }
                },
                (sender, _) => sender.clone(),
            };
            messages.push(self.message(
                id,
                MessageKind::Forward,
                reverse_path,
                envelope.reverse_path.clone(),
                forward::prepend_headers(&body, &headers),
                forwards,
                owner,
                correlation_id,
                false,
            ));
        }
        if !bounces.is_empty() {
            let bounce_id = if messages.is_empty() {
                id
            } else {
                MessageId::new()
            };
            messages.push(
                self.message(
                    bounce_id,
                    MessageKind::BounceRelay,
                    None,
                    None,
                    forward::prepend_headers(&body, &received(None)),
                    forward::dedup_recipients(bounces)
                        .into_iter()
                        .map(QueuedRecipient::new)
                        .collect(),
                    None,
                    correlation_id,
                    false,
                ),
            );
        }
        if postmaster {
            let pm_id = if messages.is_empty() {
                id
            } else {
                MessageId::new()
            };
            let (to, held) = match (&self.postmaster, &self.local_postmaster) {
                (Some(a), _) => (a.clone(), false),
                (None, Some(local)) => (local.clone(), true),
                (None, None) => return QUEUE_FAILED,
            };
            messages.push(self.message(
                pm_id,
                MessageKind::Forward,
                envelope.reverse_path.clone(),
                envelope.reverse_path.clone(),
                forward::prepend_headers(&body, &received(None)),
                vec![QueuedRecipient::new(to)],
                None,
                correlation_id,
                held,
            ));
        }
        for m in &messages {
            if let Err(e) = self.queue.enqueue(m).await {
                tracing::error!(correlation = correlation_id, error = %e, "enqueue failed");
                return QUEUE_FAILED;
            }
        }
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
        Reply::with_text(250, (2, 0, 0), format!("Queued as {id}"))
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        id: MessageId,
        kind: MessageKind,
        reverse_path: Option<EmailAddress>,
        original_sender: Option<EmailAddress>,
        body: Vec<u8>,
        recipients: Vec<QueuedRecipient>,
        owner: Option<smtpy_core::ids::UserId>,
        correlation_id: &str,
        held: bool,
    ) -> QueuedMessage {
        let now = self.clock.now();
        QueuedMessage {
            id,
            kind,
            reverse_path,
            original_sender,
            body: body.into(),
            recipients,
            owner,
            received_at: now,
            next_attempt_at: now,
            expires_at: now.saturating_add(self.lifetime),
            attempts: 0,
            held,
            correlation_id: correlation_id.to_owned(),
        }
    }
}
