//! What smtpy does to mail beyond routing: inbound authentication, rules,
//! rate limits, alias-mode rewriting, reply scrubbing, DKIM signing, bounce
//! handling and owner notifications.
//!
//! Every part is optional: a [`MailPolicy::default`] forwards like a plain
//! forwarder (SRS envelope, no rewriting, no signing). The reference server
//! turns everything on.

use std::sync::Arc;
use std::time::Duration;

use smtpy_core::Store;
use smtpy_core::address::EmailAddress;
use smtpy_core::auth::Authenticator;
use smtpy_core::bounce::{
    AutoDisable, BounceAddresses, BounceClass, BounceCounts, BounceThresholds,
};
use smtpy_core::dkim::{DkimSigner, SigningKey};
use smtpy_core::ids::{AliasId, MailboxId, MessageId, UserId};
use smtpy_core::limits::Limits;
use smtpy_core::model::{
    CounterDelta, DeliveryEvent, EventFilter, EventKind, MessageKind, QueuedMessage,
    QueuedRecipient,
};
use smtpy_core::notify::{Notification, RenderEnv, Templates};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::store::{Access, QueueStore};
use smtpy_core::time::Timestamp;

/// The mail-handling policy shared by the SMTP acceptor and the delivery
/// workers. Build it once and share it (`Arc`).
#[derive(Debug)]
#[non_exhaustive]
pub struct MailPolicy {
    /// Verifies SPF, DKIM, DMARC and ARC of incoming mail. Without it no
    /// `Authentication-Results:` is added, DMARC policies are not applied
    /// and replies through reverse aliases are refused (they cannot be
    /// authenticated).
    pub authenticator: Option<Authenticator>,
    /// Signs outgoing mail per domain (alias domains and the service's own
    /// hostname for DSNs and notifications).
    pub signer: DkimSigner,
    /// The service's own key: ARC-seals forwards in forward mode.
    pub arc_key: Option<Arc<SigningKey>>,
    /// Mints and verifies reverse aliases (alias mode, replies).
    pub reverse: Option<ReverseAliases>,
    /// Signed bounce addresses (VERP) put on every alias-mode forward and reply.
    pub bounces: Option<BounceAddresses>,
    /// Rate limits and quotas.
    pub limits: Option<Limits>,
    /// Notification templates; `None` sends no notifications.
    pub templates: Option<Templates>,
    /// Sender of notifications (e.g. `notifications@<hostname>`).
    pub notify_from: Option<EmailAddress>,
    /// Display format of rewritten senders (`{name}`, `{address}`), unless
    /// the owner set their own.
    pub sender_format: String,
    /// The service's name in notifications.
    pub service_name: String,
    /// Link base for notifications (the web UI), if any.
    pub base_url: Option<String>,
    /// When bounces auto-disable an alias or mailbox.
    pub thresholds: BounceThresholds,
}

impl Default for MailPolicy {
    fn default() -> Self {
        Self {
            authenticator: None,
            signer: DkimSigner::new(),
            arc_key: None,
            reverse: None,
            bounces: None,
            limits: None,
            templates: None,
            notify_from: None,
            sender_format: "{name} via smtpy".to_owned(),
            service_name: "smtpy".to_owned(),
            base_url: None,
            thresholds: BounceThresholds::default(),
        }
    }
}

/// A bounce to record: which forward, which mailbox, how bad.
#[derive(Debug, Clone)]
pub(crate) struct BounceReport {
    pub owner: UserId,
    pub alias: Option<AliasId>,
    pub mailbox: Option<MailboxId>,
    pub message: Option<MessageId>,
    pub class: BounceClass,
    pub reply: String,
    pub kind: MessageKind,
}

fn class_name(class: BounceClass) -> &'static str {
    match class {
        BounceClass::Hard => "hard",
        BounceClass::Soft => "soft",
        BounceClass::Spam => "spam",
    }
}

impl MailPolicy {
    /// Signs `message` as `domain` (falling back to `fallback`, e.g. the
    /// service hostname, when the domain has no key) and returns the signed
    /// bytes. Unsigned when neither has a key or signing fails (logged):
    /// mail is never held back for want of a signature.
    pub(crate) fn sign(
        &self,
        domain: &smtpy_core::address::DomainName,
        fallback: Option<&smtpy_core::address::DomainName>,
        message: Vec<u8>,
        now: Timestamp,
    ) -> Vec<u8> {
        let signing = if self.signer.has_keys(domain) {
            Some(domain)
        } else {
            fallback.filter(|f| self.signer.has_keys(f))
        };
        let Some(d) = signing else {
            return message;
        };
        match self.signer.sign(d, &message, now) {
            Ok(Some(headers)) => {
                let mut out = Vec::with_capacity(headers.len() + message.len());
                out.extend_from_slice(headers.as_bytes());
                out.extend_from_slice(&message);
                out
            }
            Ok(None) => message,
            Err(e) => {
                tracing::warn!(domain = %d.as_ascii(), error = %e, "DKIM signing failed; sending unsigned");
                message
            }
        }
    }

    /// Renders a notification to an owner and returns it ready to queue
    /// (signed as the service). `None` when notifications are off or
    /// rendering fails (logged).
    pub(crate) fn notification(
        &self,
        n: &Notification,
        hostname: &str,
        owner: UserId,
        now: Timestamp,
        lifetime: Duration,
        correlation_id: &str,
    ) -> Option<QueuedMessage> {
        let (templates, from) = (self.templates.as_ref()?, self.notify_from.as_ref()?);
        let env = RenderEnv {
            from,
            service_name: &self.service_name,
            hostname,
            now,
            base_url: self.base_url.as_deref(),
        };
        let body = match templates.render(n, &env) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, kind = ?n.kind, "cannot render a notification");
                return None;
            }
        };
        let body = self.sign(from.domain(), None, body, now);
        Some(QueuedMessage {
            id: MessageId::new(),
            kind: MessageKind::Notification,
            // Nothing should come back to a notification; bounces of it go nowhere.
            reverse_path: None,
            original_sender: None,
            body: body.into(),
            recipients: vec![QueuedRecipient::new(n.to.clone())],
            owner: Some(owner),
            received_at: now,
            next_attempt_at: now,
            expires_at: now.saturating_add(lifetime),
            attempts: 0,
            held: false,
            correlation_id: correlation_id.to_owned(),
        })
    }

    /// Renders `notification` for `owner` (signed as the service, from
    /// [`notify_from`](Self::notify_from)) and queues it for delivery,
    /// expiring after `lifetime`. This is how an embedding service sends
    /// mail to people outside the mail path (mailbox verification, password
    /// reset). Wake the delivery workers afterwards to send it at once.
    ///
    /// # Errors
    ///
    /// A human-readable reason: notifications are off (no templates or no
    /// sender), the notification cannot be rendered, or the queue refused it.
    pub async fn queue_notification(
        &self,
        queue: &dyn QueueStore,
        notification: &Notification,
        hostname: &str,
        owner: UserId,
        now: Timestamp,
        lifetime: Duration,
    ) -> Result<MessageId, String> {
        if self.templates.is_none() || self.notify_from.is_none() {
            return Err("notifications are switched off".to_owned());
        }
        let correlation = format!("notify-{}", MessageId::new());
        let message = self
            .notification(notification, hostname, owner, now, lifetime, &correlation)
            .ok_or_else(|| "the notification could not be rendered".to_owned())?;
        queue.enqueue(&message).await.map_err(|e| {
            tracing::error!(error = %e, "cannot queue a notification");
            "the notification could not be queued".to_owned()
        })?;
        Ok(message.id)
    }

    /// Records a bounce against its alias and mailbox, applies the
    /// auto-disable thresholds and returns the notice for the owner (to
    /// queue), if any.
    pub(crate) async fn record_bounce(
        &self,
        store: &dyn Store,
        report: &BounceReport,
        hostname: &str,
        now: Timestamp,
        lifetime: Duration,
        correlation_id: &str,
    ) -> Option<QueuedMessage> {
        // Soft bounces are recorded as deferrals so that counting `Bounced`
        // events counts hard (and spam) bounces only.
        // Replies bouncing at a contact are recorded as failures: they say
        // nothing about the alias or the owner's mailboxes.
        let kind = if report.class == BounceClass::Soft {
            EventKind::Deferred
        } else if report.kind == MessageKind::Reply {
            EventKind::Failed
        } else {
            EventKind::Bounced
        };
        let mut event = DeliveryEvent::new(kind, now)
            .with("bounce_class", class_name(report.class))
            .with("reply", report.reply.clone());
        event.owner = Some(report.owner);
        event.alias = report.alias;
        event.mailbox = report.mailbox;
        event.message = report.message;
        let mut events = vec![event];
        if let Some(alias) = report.alias
            && let Err(e) = store
                .record_alias_activity(
                    alias,
                    CounterDelta {
                        bounced: 1,
                        ..CounterDelta::default()
                    },
                    now,
                )
                .await
        {
            tracing::warn!(error = %e, "cannot count a bounce");
        }
        // Only forwards to the owner's own mailboxes feed the thresholds: a
        // reply bouncing at a contact says nothing about the alias.
        let mut disabled = AutoDisable::default();
        if report.kind == MessageKind::Forward {
            disabled = self.apply_thresholds(store, report, now, &mut events).await;
        }
        crate::server::stamp_correlation(&mut events, correlation_id);
        if let Err(e) = store.append_events(&events).await {
            tracing::warn!(correlation = correlation_id, error = %e, "cannot record bounce events");
        }
        let owner = store.get_user(report.owner).await.ok()?;
        if !owner.settings.notify_bounces && !disabled.alias && !disabled.mailbox {
            return None;
        }
        let alias = match report.alias {
            Some(a) => store.get_alias(Access::System, a).await.ok()?.address,
            None => return None,
        };
        let mailbox = match report.mailbox {
            Some(m) => store.get_mailbox(Access::System, m).await.ok()?.address,
            // A reply bounced at a contact: the notice names the alias twice
            // rather than guess.
            None => alias.clone(),
        };
        let n = Notification::bounce(
            owner.email.clone(),
            &alias,
            &mailbox,
            class_name(report.class),
            &report.reply,
            smtpy_core::notify::AutoDisabled {
                alias: disabled.alias,
                mailbox: disabled.mailbox,
            },
        );
        self.notification(&n, hostname, owner.id, now, lifetime, correlation_id)
    }

    async fn apply_thresholds(
        &self,
        store: &dyn Store,
        report: &BounceReport,
        now: Timestamp,
        events: &mut Vec<DeliveryEvent>,
    ) -> AutoDisable {
        let since = now.saturating_sub(self.thresholds.window);
        let kinds = vec![EventKind::Bounced];
        let count =
            |filter: EventFilter| async move { store.count_events(&filter).await.unwrap_or(0) };
        let hard_now = u64::from(
            report.class == BounceClass::Hard
                || (report.class == BounceClass::Spam && self.thresholds.spam_counts_as_hard),
        );
        // The event being recorded is not in the store yet: add it.
        let counts = BounceCounts {
            alias_hard: match report.alias {
                Some(a) => {
                    count(EventFilter {
                        alias: Some(a),
                        kinds: kinds.clone(),
                        since: Some(since),
                        ..EventFilter::default()
                    })
                    .await
                        + hard_now
                }
                None => 0,
            },
            mailbox_hard: match report.mailbox {
                Some(m) => {
                    count(EventFilter {
                        mailbox: Some(m),
                        kinds: kinds.clone(),
                        since: Some(since),
                        ..EventFilter::default()
                    })
                    .await
                        + hard_now
                }
                None => 0,
            },
        };
        if hard_now == 0 {
            return AutoDisable::default();
        }
        let decision = smtpy_core::bounce::auto_disable(&self.thresholds, &counts);
        if decision.alias
            && let Some(id) = report.alias
            && let Ok(mut alias) = store.get_alias(Access::System, id).await
            && alias.enabled
        {
            alias.enabled = false;
            alias.updated_at = now;
            match store.update_alias(Access::System, &alias).await {
                Ok(_) => {
                    let mut e = DeliveryEvent::new(EventKind::AutoDisabled, now)
                        .with("what", "alias")
                        .with("reason", format!("{} hard bounces", counts.alias_hard));
                    e.owner = Some(report.owner);
                    e.alias = Some(id);
                    events.push(e);
                }
                Err(e) => tracing::warn!(error = %e, "cannot auto-disable an alias"),
            }
        }
        if decision.mailbox
            && let Some(id) = report.mailbox
            && let Ok(mut mailbox) = store.get_mailbox(Access::System, id).await
            && !mailbox.disabled
        {
            mailbox.disabled = true;
            mailbox.updated_at = now;
            match store.update_mailbox(Access::System, &mailbox).await {
                Ok(_) => {
                    let mut e = DeliveryEvent::new(EventKind::AutoDisabled, now)
                        .with("what", "mailbox")
                        .with("reason", format!("{} hard bounces", counts.mailbox_hard));
                    e.owner = Some(report.owner);
                    e.mailbox = Some(id);
                    events.push(e);
                }
                Err(e) => tracing::warn!(error = %e, "cannot auto-disable a mailbox"),
            }
        }
        decision
    }
}

/// Queues `messages` (notifications, follow-ups); failures are logged.
pub(crate) async fn enqueue_all(queue: &dyn QueueStore, messages: &[QueuedMessage]) {
    for m in messages {
        if let Err(e) = queue.enqueue(m).await {
            tracing::error!(error = %e, message = %m.id, "cannot queue a notification");
        }
    }
}
