//! What happens at MAIL, RCPT and at the end of DATA: route each recipient
//! through core and the [`MailPolicy`], then turn an accepted message into
//! durable queue entries.
//!
//! End of DATA, in order: loop check → forged `Authentication-Results`
//! removed → SPF/DKIM/DMARC/ARC → per alias: DMARC policy, rules, alias-mode
//! rewriting (or SRS + ARC in forward mode), DKIM signature → replies:
//! owner authentication, scrubbing, signature → bounces: classification,
//! thresholds, notices → enqueue (one durable write per message) → 250.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smtpy_core::Store;
use smtpy_core::address::EmailAddress;
use smtpy_core::auth::{AuthInput, AuthVerdict, DmarcAction};
use smtpy_core::features::Features;
use smtpy_core::forward;
use smtpy_core::ids::{MessageId, UserId};
use smtpy_core::limits::Denial;
use smtpy_core::metrics::{MESSAGES_ACCEPTED, MESSAGES_REJECTED, Metrics, RATE_LIMIT_DENIALS};
use smtpy_core::model::{
    Alias, AliasMode, BlockReply, Contact, CounterDelta, DeliveryEvent, EventFilter, EventKind,
    Mailbox, MessageKind, QueuedMessage, QueuedRecipient, UsageRecord,
};
use smtpy_core::notify::{DmarcOutcome, MessageSummary, Notification, QuarantineReason};
use smtpy_core::reply::Reply;
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::rewrite::{alias_mode, scrub};
use smtpy_core::routing::{FORGED_ADDRESS, NOT_THE_OWNER, Refusal, Route, Router};
use smtpy_core::rules::{EnvelopeFacts, MessageFacts, ParsedMessage, RuleSet};
use smtpy_core::srs::Srs;
use smtpy_core::store::{Access, PageRequest, QueueStore};
use smtpy_core::time::{Clock, Timestamp};
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::Network;
use crate::policy::{BounceReport, MailPolicy, enqueue_all};
use crate::session::{Envelope, ForwardPath};

/// The detail key of a delivery event naming the message's correlation id.
pub(crate) const CORRELATION_DETAIL: &str = "correlation";

tokio::task_local! {
    /// The correlation id of the message being decided.
    static CORRELATION: String;
}

/// Runs `fut` on behalf of the message `correlation_id`: the delivery events
/// it records carry `details["correlation"]`, and its log lines the span
/// field `correlation`.
pub(crate) async fn in_message<F: Future>(correlation_id: &str, fut: F) -> F::Output {
    let span = tracing::info_span!("message", correlation = %correlation_id);
    CORRELATION
        .scope(correlation_id.to_owned(), fut.instrument(span))
        .await
}

/// Sets `details["correlation"]` on `events` that have none.
pub(crate) fn stamp_correlation(events: &mut [DeliveryEvent], correlation_id: &str) {
    for e in events {
        e.details
            .entry(CORRELATION_DETAIL.to_owned())
            .or_insert_with(|| correlation_id.to_owned());
    }
}

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
    pub(crate) policy: Arc<MailPolicy>,
    pub(crate) limit_exempt: Vec<Network>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) features: Features,
}

/// `554 5.4.6`: a mail loop (too many `Received:` or our own marker).
const LOOP: Reply = Reply::new(554, (5, 4, 6), "Mail loop detected");
/// `451 4.3.0`: the queue could not make the message durable.
const QUEUE_FAILED: Reply = Reply::new(
    451,
    (4, 3, 0),
    "Cannot queue the message now, try again later",
);
/// `550 5.7.1`: the recipient blocks this sender (a rule, a blocklist or a
/// blocked contact).
pub const SENDER_BLOCKED: Reply = Reply::new(
    550,
    (5, 7, 1),
    "The recipient does not accept mail from this sender",
);
/// `550 5.7.1`: a reply through a reverse alias that could not be
/// authenticated as coming from the alias owner's mailbox.
pub const REPLY_NOT_AUTHENTICATED: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Reply refused: it must come from your verified mailbox and pass DKIM or SPF for that mailbox's domain",
);
/// `550 5.7.1`: a reply that would reveal the owner's mailbox even after scrubbing.
pub const REPLY_WOULD_LEAK: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Reply refused: it would reveal your mailbox address (check attachments and signatures)",
);

/// `550 5.7.1`: a message to reverse aliases of two different aliases.
pub const ONE_ALIAS_PER_REPLY: Reply = Reply::new(
    550,
    (5, 7, 1),
    "A message can go out through one alias at a time: send one message per alias",
);

/// `550 5.7.1`: a reply through a reverse alias while the `replies` feature
/// flag is off.
pub const REPLIES_DISABLED: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Replies through aliases are disabled on this server",
);

/// What became of one alias's copy of a message.
enum Disposition {
    Queue(Box<QueuedMessage>),
    Dropped,
    Refused(Reply),
}

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
            policy: Arc::new(MailPolicy::default()),
            limit_exempt: ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| Network::parse(n))
                .collect(),
            metrics: Arc::new(Metrics::new()),
            features: Features::default(),
        }
    }

    /// Reads the runtime feature flags from `features` (default: a private
    /// handle with [`FeatureFlags::default`](smtpy_core::features::FeatureFlags)).
    /// `replies` off refuses mail to reverse aliases with
    /// [`REPLIES_DISABLED`]; `auto_create` off stops catch-all domains from
    /// creating aliases (the recipient is then unknown). Flags are read per
    /// recipient, so a change applies to the next `RCPT TO`.
    #[must_use]
    pub fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }
    /// Records messages accepted and refused (by reason) and rate-limit
    /// denials in `metrics` (default: a private set nobody reads).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }
    /// The metrics this acceptor records to.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
    /// Authentication, rules, limits, rewriting and signing (default: none).
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<MailPolicy>) -> Self {
        self.policy = policy;
        self
    }
    /// Client networks exempt from the per-IP message limit (default loopback).
    #[must_use]
    pub fn with_limit_exempt(mut self, networks: Vec<Network>) -> Self {
        self.limit_exempt = networks;
        self
    }

    /// The `MAIL FROM` decision: per-IP and per-sender-domain rate limits
    /// (`450 4.7.1`, temporary). Always accepts without limits configured.
    ///
    /// # Errors
    /// The reply refusing the sender.
    pub async fn check_sender(
        &self,
        peer: IpAddr,
        sender: Option<&EmailAddress>,
    ) -> Result<(), Reply> {
        let Some(limits) = &self.policy.limits else {
            return Ok(());
        };
        if !self.limit_exempt.iter().any(|n| n.contains(peer)) {
            limits.ip_message(peer).await.map_err(|d| self.denied(&d))?;
            if let Some(sender) = sender {
                limits
                    .sender_domain(sender.domain())
                    .await
                    .map_err(|d| self.denied(&d))?;
            }
        }
        Ok(())
    }

    /// Counts a rate-limit denial (by scope) and the refusal it causes;
    /// returns its reply.
    fn denied(&self, d: &Denial) -> Reply {
        self.metrics
            .inc(RATE_LIMIT_DENIALS, &[("scope", d.scope.as_str())]);
        self.count_rejected(&d.reply);
        d.reply.clone()
    }

    /// Counts one refused recipient or message under the reason its reply
    /// stands for.
    fn count_rejected(&self, reply: &Reply) {
        self.count_reason(reject_reason(reply));
    }

    fn count_reason(&self, reason: &'static str) {
        self.metrics.inc(MESSAGES_REJECTED, &[("reason", reason)]);
    }

    /// The route for one recipient (RCPT time): routing, blocked contacts,
    /// sender-only rules (a block is a `550` before DATA) and the per-alias
    /// and per-user limits.
    pub async fn route(
        &self,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
    ) -> Result<Route, Refusal> {
        let routed = self.route_inner(rcpt, sender).await;
        if let Err(refusal) = &routed {
            match reject_reason(&refusal.reply) {
                // Counted where the limit refused.
                RATE_LIMITED | LIMITER_FAILED => {}
                // An alias that exists but does not take mail (disabled,
                // expired, its owner suspended) answers like an unknown
                // one; the metric tells them apart (refusals only).
                UNKNOWN_ALIAS => match self.store.find_alias_by_address(rcpt).await {
                    Ok(Some(_)) => self.count_reason("disabled_alias"),
                    _ => self.count_reason(UNKNOWN_ALIAS),
                },
                reason => self.count_reason(reason),
            }
        }
        routed
    }

    async fn route_inner(
        &self,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
    ) -> Result<Route, Refusal> {
        let now = self.clock.now();
        let flags = self.features.get();
        let route = Router::new(&*self.store, self.srs.as_deref())
            .with_reverse(self.policy.reverse.as_ref())
            .with_bounces(self.policy.bounces.as_ref())
            .with_auto_create(flags.auto_create)
            .route(rcpt, sender, now)
            .await?;
        if matches!(route, Route::Reply { .. }) && !flags.replies {
            return Err(REPLIES_DISABLED.into());
        }
        match &route {
            Route::Forward { alias, .. } => self.rcpt_forward_policy(alias, sender, now).await?,
            Route::Reply { alias, .. } => {
                if let Some(limits) = &self.policy.limits {
                    let owner = self
                        .store
                        .get_user(alias.owner)
                        .await
                        .map_err(temp_refusal)?;
                    if !owner.is_admin()
                        && let Err(d) = limits.user_reply(&owner).await
                    {
                        self.metrics
                            .inc(RATE_LIMIT_DENIALS, &[("scope", d.scope.as_str())]);
                        self.count_rejected(&d.reply);
                        self.log_event(
                            self.event(EventKind::RateLimited, now, Some(alias), sender)
                                .with("reply", d.reply.to_string()),
                        )
                        .await;
                        return Err(d.reply.into());
                    }
                }
            }
            _ => {}
        }
        Ok(route)
    }

    async fn rcpt_forward_policy(
        &self,
        alias: &Alias,
        sender: Option<&EmailAddress>,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        // A contact the owner blocked.
        if let Some(sender) = sender
            && let Ok(Some(contact)) = self.store.find_contact(alias.id, sender).await
            && contact.blocked
        {
            self.count_blocked(alias, now, &sender.to_string(), "contact blocked")
                .await;
            return Err(SENDER_BLOCKED.into());
        }
        // Sender-only rules, before DATA.
        let rules = RuleSet::compile(
            self.store
                .rules_for_alias(alias)
                .await
                .map_err(temp_refusal)?,
        );
        if let Some(blocked) = rules.evaluate_envelope(&EnvelopeFacts {
            sender,
            alias: &alias.address,
        }) && blocked.reply == BlockReply::Reject
        {
            let who = sender.map_or_else(String::new, ToString::to_string);
            self.count_blocked(alias, now, &who, &format!("rule {}", blocked.rule))
                .await;
            return Err(SENDER_BLOCKED.into());
        }
        if let Some(limits) = &self.policy.limits {
            let owner = self
                .store
                .get_user(alias.owner)
                .await
                .map_err(temp_refusal)?;
            // Per-user quotas are for accounts, not for the operator's own
            // (admin) aliases; the per-alias limit applies to everyone.
            let checked = match limits.alias_message(alias).await {
                Ok(()) if owner.is_admin() => Ok(()),
                Ok(()) => limits.user_forward(&owner).await,
                Err(d) => Err(d),
            };
            if let Err(d) = checked {
                self.metrics
                    .inc(RATE_LIMIT_DENIALS, &[("scope", d.scope.as_str())]);
                self.count_rejected(&d.reply);
                self.log_event(
                    self.event(EventKind::RateLimited, now, Some(alias), sender)
                        .with("reply", d.reply.to_string()),
                )
                .await;
                return Err(d.reply.into());
            }
        }
        Ok(())
    }

    async fn count_blocked(&self, alias: &Alias, now: Timestamp, sender: &str, why: &str) {
        self.bump_blocked(alias, now).await;
        let mut e = self
            .event(EventKind::Blocked, now, Some(alias), None)
            .with("reason", why);
        if !sender.is_empty() {
            e.sender = Some(sender.to_owned());
        }
        self.log_event(e).await;
    }

    async fn bump_blocked(&self, alias: &Alias, now: Timestamp) {
        if let Err(e) = self
            .store
            .record_alias_activity(
                alias.id,
                CounterDelta {
                    blocked: 1,
                    ..CounterDelta::default()
                },
                now,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot count a blocked message");
        }
    }

    fn event(
        &self,
        kind: EventKind,
        now: Timestamp,
        alias: Option<&Alias>,
        sender: Option<&EmailAddress>,
    ) -> DeliveryEvent {
        let mut e = DeliveryEvent::new(kind, now);
        if let Some(a) = alias {
            e.owner = Some(a.owner);
            e.alias = Some(a.id);
        }
        e.sender = sender.map(ToString::to_string);
        e
    }

    async fn log_event(&self, event: DeliveryEvent) {
        self.log_events(vec![event]).await;
    }

    async fn log_events(&self, mut events: Vec<DeliveryEvent>) {
        if events.is_empty() {
            return;
        }
        if let Ok(id) = CORRELATION.try_with(Clone::clone) {
            stamp_correlation(&mut events, &id);
        }
        if let Err(e) = self.store.append_events(&events).await {
            tracing::warn!(error = %e, "cannot record delivery events");
        }
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
        let reply = in_message(
            correlation_id,
            self.accept_inner(envelope, routes, body, peer, correlation_id),
        )
        .await;
        if reply.is_positive() {
            self.metrics.inc(MESSAGES_ACCEPTED, &[]);
        } else {
            self.count_rejected(&reply);
        }
        reply
    }

    async fn accept_inner(
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

        // Sort the recipients by what they are.
        let mut forwards: Vec<(&Alias, &[Mailbox])> = Vec::new();
        let mut replies: Vec<(&Alias, &Contact, &Mailbox)> = Vec::new();
        let mut bounce_relays: Vec<EmailAddress> = Vec::new();
        let mut bounces: Vec<MessageId> = Vec::new();
        let mut postmaster = false;
        for path in &envelope.recipients {
            let route = match path {
                ForwardPath::Postmaster => {
                    postmaster = true;
                    continue;
                }
                ForwardPath::Mailbox(a) => routes.get(&a.canonical()),
            };
            match route {
                Some(Route::Forward { alias, mailboxes })
                    if !forwards.iter().any(|(a, _)| a.id == alias.id) =>
                {
                    forwards.push((alias, mailboxes));
                }
                Some(Route::Reply {
                    alias,
                    contact,
                    mailbox,
                }) => replies.push((alias, contact, mailbox)),
                Some(Route::BounceRelay { original }) => bounce_relays.push(original.clone()),
                Some(Route::Bounce { message }) => bounces.push(*message),
                Some(Route::Postmaster) => postmaster = true,
                // Discarded (a disabled alias set to discard) or unknown: nothing to queue.
                _ => {}
            }
        }

        // Authentication: once per message, for everything that needs it.
        let authserv = self.hostname.as_str();
        let body = match &self.policy.authenticator {
            Some(_) => smtpy_core::auth::strip_forged_results(&body, authserv).into_owned(),
            None => body,
        };
        let verdict = match &self.policy.authenticator {
            Some(auth) if !forwards.is_empty() || !replies.is_empty() || !bounces.is_empty() => {
                Some(
                    auth.authenticate(&AuthInput {
                        message: &body,
                        peer,
                        helo: &envelope.helo,
                        mail_from: envelope.reverse_path.as_ref(),
                        authserv_id: authserv,
                    })
                    .await,
                )
            }
            _ => None,
        };
        let ctx = Ctx {
            envelope,
            body: &body,
            peer,
            id,
            now,
            verdict: verdict.as_ref(),
            correlation_id,
        };

        let mut messages: Vec<QueuedMessage> = Vec::with_capacity(2);
        let mut follow_ups: Vec<QueuedMessage> = Vec::new();
        let mut events: Vec<DeliveryEvent> = Vec::new();
        let mut refusals: Vec<Reply> = Vec::new();
        let mut fresh_id = {
            let mut first = true;
            move || {
                if std::mem::take(&mut first) {
                    id
                } else {
                    MessageId::new()
                }
            }
        };

        // Bounces come first: they may turn into forwards (auto-replies).
        let mut bounce_forwards: Vec<(Alias, Vec<Mailbox>)> = Vec::new();
        for message in bounces {
            match self.handle_bounce(&ctx, message, &mut follow_ups).await {
                Ok(Some(forward)) => bounce_forwards.push(forward),
                Ok(None) => {}
                Err(reply) => return reply,
            }
        }
        for (alias, mailboxes) in &bounce_forwards {
            if !forwards.iter().any(|(a, _)| a.id == alias.id) {
                forwards.push((alias, mailboxes));
            }
        }

        for (alias, mailboxes) in &forwards {
            match self
                .forward_one(
                    &ctx,
                    alias,
                    mailboxes,
                    fresh_id(),
                    &mut events,
                    &mut follow_ups,
                )
                .await
            {
                Ok(Disposition::Queue(m)) => messages.push(*m),
                Ok(Disposition::Dropped) => {}
                Ok(Disposition::Refused(r)) => refusals.push(r),
                Err(reply) => return reply,
            }
        }

        if !replies.is_empty() {
            match self.reply(&ctx, &replies, fresh_id(), &mut events).await {
                Ok(m) => messages.push(m),
                Err(reply) => return reply,
            }
        }

        if !bounce_relays.is_empty() {
            messages.push(
                self.message(
                    fresh_id(),
                    MessageKind::BounceRelay,
                    None,
                    None,
                    forward::prepend_headers(&body, &self.received(&ctx, None)),
                    forward::dedup_recipients(bounce_relays)
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
            let (to, held) = match (&self.postmaster, &self.local_postmaster) {
                (Some(a), _) => (a.clone(), false),
                (None, Some(local)) => (local.clone(), true),
                (None, None) => return QUEUE_FAILED,
            };
            messages.push(self.message(
                fresh_id(),
                MessageKind::Forward,
                envelope.reverse_path.clone(),
                envelope.reverse_path.clone(),
                forward::prepend_headers(&body, &self.received(&ctx, None)),
                vec![QueuedRecipient::new(to)],
                None,
                correlation_id,
                held,
            ));
        }

        // Every recipient refused at DATA (DMARC reject, a rule): say so.
        if messages.is_empty()
            && let Some(first) = refusals.first()
            && refusals.len() == forwards.len()
            && replies.is_empty()
            && !postmaster
        {
            self.log_events(events).await;
            return first.clone();
        }

        for m in &messages {
            if let Err(e) = self.queue.enqueue(m).await {
                tracing::error!(correlation = correlation_id, error = %e, "enqueue failed");
                return QUEUE_FAILED;
            }
        }
        // Copies refused at DATA while others were queued (the client saw 250).
        for r in &refusals {
            self.count_rejected(r);
        }
        // Accounting and notices after the message is durable: losing them
        // (logged) never loses mail.
        self.account(&messages, now).await;
        self.log_events(events).await;
        enqueue_all(&*self.queue, &follow_ups).await;
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
        Reply::with_text(250, (2, 0, 0), format!("Queued as {id}"))
    }

    /// Usage and counters of what was queued.
    async fn account(&self, messages: &[QueuedMessage], now: Timestamp) {
        for m in messages {
            let (Some(owner), Some(alias)) = (m.owner, m.recipients.iter().find_map(|r| r.alias))
            else {
                continue;
            };
            let delta = match m.kind {
                MessageKind::Reply => CounterDelta {
                    replied: 1,
                    ..CounterDelta::default()
                },
                _ if m.held => continue,
                _ => CounterDelta {
                    forwarded: 1,
                    ..CounterDelta::default()
                },
            };
            if let Err(e) = self.store.record_alias_activity(alias, delta, now).await {
                tracing::warn!(error = %e, "cannot update alias counters");
            }
            let usage = UsageRecord {
                user: owner,
                alias: Some(alias),
                at: now,
                messages: 1,
                bytes: m.body.len() as u64,
            };
            if let Err(e) = self.store.record_usage(&usage).await {
                tracing::warn!(error = %e, "cannot record usage");
            }
        }
    }

    fn received(&self, ctx: &Ctx<'_>, for_alias: Option<&EmailAddress>) -> Vec<String> {
        for_alias
            .or(self.local_postmaster.as_ref())
            .map(|alias| {
                forward::received_header(
                    &self.hostname,
                    &ctx.envelope.helo,
                    ctx.peer,
                    ctx.envelope.protocol(),
                    &ctx.id.to_string(),
                    alias,
                    ctx.now,
                )
            })
            .into_iter()
            .collect()
    }

    /// Trace and authentication headers for a copy going to an owner.
    fn trace_headers(&self, ctx: &Ctx<'_>, alias: &EmailAddress) -> Vec<String> {
        let mut headers = self.received(ctx, Some(alias));
        if let Some(v) = ctx.verdict {
            headers.push(
                v.authentication_results(&self.hostname)
                    .trim_end()
                    .to_owned(),
            );
        }
        headers.push(forward::loop_marker_header(&self.hostname));
        headers
    }

    #[allow(clippy::too_many_lines)]
    async fn forward_one(
        &self,
        ctx: &Ctx<'_>,
        alias: &Alias,
        mailboxes: &[Mailbox],
        id: MessageId,
        events: &mut Vec<DeliveryEvent>,
        follow_ups: &mut Vec<QueuedMessage>,
    ) -> Result<Disposition, Reply> {
        let owner = self
            .store
            .get_user(alias.owner)
            .await
            .map_err(|_| Reply::STORE_UNAVAILABLE)?;
        let sender = ctx.envelope.reverse_path.as_ref();
        let mut accepted = self.event(EventKind::Accepted, ctx.now, Some(alias), sender);
        accepted.message = Some(id);
        if let Some(v) = ctx.verdict {
            accepted = accepted
                .with("spf", v.spf_mail_from.to_string())
                .with("dkim", v.dkim_summary().to_string())
                .with("dmarc", v.dmarc.to_string())
                .with("arc", v.arc.to_string());
        }
        let mut held = false;
        let mut why_held: Option<String> = None;
        let mut quarantine_reason = QuarantineReason::Dmarc;
        let mut subject_prefixes: Vec<String> = Vec::new();

        let parsed = ParsedMessage::parse(ctx.body);
        // DMARC, by the owner's policy.
        if let Some(v) = ctx.verdict {
            match v.dmarc_action(&owner.settings) {
                DmarcAction::Accept => {}
                DmarcAction::Reject => {
                    let reply = smtpy_core::auth::DMARC_REJECTED;
                    let mut e = accepted.clone();
                    e.kind = EventKind::Refused;
                    events.push(e.with("reply", reply.to_string()));
                    self.bump_blocked(alias, ctx.now).await;
                    if let Some(n) =
                        self.dmarc_notice(ctx, &owner, alias, &parsed, DmarcOutcome::Rejected)
                    {
                        follow_ups.push(n);
                    }
                    return Ok(Disposition::Refused(reply));
                }
                DmarcAction::Quarantine => {
                    held = true;
                    why_held = Some("DMARC policy of the sender's domain".into());
                    quarantine_reason = QuarantineReason::Dmarc;
                }
                DmarcAction::TagSubject => {
                    subject_prefixes.push(owner.settings.subject_tag.clone());
                    if let Some(n) =
                        self.dmarc_notice(ctx, &owner, alias, &parsed, DmarcOutcome::Tagged)
                    {
                        follow_ups.push(n);
                    }
                }
            }
        }

        // Rules, in priority order.
        let rule_list = self
            .store
            .rules_for_alias(alias)
            .await
            .map_err(|_| Reply::STORE_UNAVAILABLE)?;
        let rules_by_id: HashMap<smtpy_core::ids::RuleId, String> =
            rule_list.iter().map(|r| (r.id, r.name.clone())).collect();
        let rules = RuleSet::compile(rule_list);
        let (spf, dkim, dmarc) = match ctx.verdict {
            Some(v) => (
                Some(v.spf_mail_from.to_string()),
                Some(v.dkim_summary().to_string()),
                Some(v.dmarc.to_string()),
            ),
            None => (None, None, None),
        };
        let facts = MessageFacts::new(
            EnvelopeFacts {
                sender,
                alias: &alias.address,
            },
            &parsed,
            ctx.body.len() as u64,
        )
        .with_auth(spf.as_deref(), dkim.as_deref(), dmarc.as_deref());
        let outcome = rules.evaluate(&facts);
        if let Some(blocked) = &outcome.blocked {
            self.count_blocked(
                alias,
                ctx.now,
                &sender.map_or_else(String::new, ToString::to_string),
                &format!("rule {}", blocked.rule),
            )
            .await;
            return Ok(match blocked.reply {
                BlockReply::Reject => Disposition::Refused(SENDER_BLOCKED),
                BlockReply::Silent => Disposition::Dropped,
            });
        }
        if let Some(rule) = outcome.quarantine {
            if !held {
                quarantine_reason = QuarantineReason::Rule {
                    name: rules_by_id
                        .get(&rule)
                        .cloned()
                        .unwrap_or_else(|| rule.to_string()),
                };
            }
            held = true;
            why_held = Some(format!("rule {rule}"));
        }
        subject_prefixes.extend(outcome.subject_prefixes.iter().cloned());
        let mut targets: Vec<Mailbox> = mailboxes.to_vec();
        if let Some(ids) = &outcome.forward_to {
            let mut chosen = Vec::new();
            for mid in ids {
                if let Ok(m) = self
                    .store
                    .get_mailbox(Access::Owner(alias.owner), *mid)
                    .await
                    && m.can_receive()
                {
                    chosen.push(m);
                }
            }
            if !chosen.is_empty() {
                targets = chosen;
            }
        }

        // The copy the mailboxes get.
        let mut message = ctx.body.to_vec();
        let reverse_path;
        match alias.mode {
            AliasMode::Alias => {
                message = self
                    .alias_mode(ctx, alias, &owner.settings, message)
                    .await?;
                reverse_path = match &self.policy.bounces {
                    Some(b) => Some(b.encode(id, ctx.now)),
                    None => self.srs_sender(ctx),
                };
            }
            _ => {
                reverse_path = self.srs_sender(ctx);
            }
        }
        for prefix in &subject_prefixes {
            message = alias_mode::prefix_subject(&message, prefix);
        }
        for (name, value) in &outcome.add_headers {
            match alias_mode::add_header(&message, name, value) {
                Ok(m) => message = m,
                Err(e) => tracing::warn!(error = %e, "rule header not added"),
            }
        }
        let mut message =
            forward::prepend_headers(&message, &self.trace_headers(ctx, &alias.address));
        if alias.mode != AliasMode::Alias
            && let (Some(key), Some(v)) = (&self.policy.arc_key, ctx.verdict)
            && let Some(auth) = &self.policy.authenticator
        {
            match auth.arc_seal(&message, v, key, &self.hostname).await {
                Ok(seal) => {
                    let mut sealed = Vec::with_capacity(seal.len() + message.len());
                    sealed.extend_from_slice(seal.as_bytes());
                    sealed.extend_from_slice(&message);
                    message = sealed;
                }
                Err(e) => tracing::warn!(error = %e, "ARC sealing failed; forwarding unsealed"),
            }
        }
        let hostname_domain = smtpy_core::address::DomainName::parse(&self.hostname).ok();
        let message = self.policy.sign(
            alias.address.domain(),
            hostname_domain.as_ref(),
            message,
            ctx.now,
        );

        let recipients: Vec<QueuedRecipient> = targets
            .iter()
            .map(|m| {
                let mut r = QueuedRecipient::new(m.address.clone());
                r.alias = Some(alias.id);
                r.original = Some(alias.address.clone());
                r
            })
            .collect();
        let mut mailbox_events: Vec<DeliveryEvent> = targets
            .iter()
            .map(|m| {
                let mut e = accepted.clone();
                e.id = smtpy_core::ids::EventId::new();
                e.mailbox = Some(m.id);
                // Owner-visible only; lets a bounce find its mailbox.
                e.with("mailbox_address", m.address.to_string())
            })
            .collect();
        if held {
            for e in &mut mailbox_events {
                e.kind = EventKind::Quarantined;
                e.details
                    .insert("reason".into(), why_held.clone().unwrap_or_default());
            }
            if owner.settings.notify_quarantine
                && let Some(n) = self.policy.notification(
                    &Notification::quarantine(
                        owner.email.clone(),
                        &alias.address,
                        &summary(sender, &parsed),
                        &quarantine_reason,
                        None,
                    ),
                    &self.hostname,
                    owner.id,
                    ctx.now,
                    self.lifetime,
                    ctx.correlation_id,
                )
            {
                follow_ups.push(n);
            }
        }
        events.extend(mailbox_events);
        Ok(Disposition::Queue(Box::new(self.message(
            id,
            MessageKind::Forward,
            reverse_path,
            ctx.envelope.reverse_path.clone(),
            message,
            recipients,
            Some(alias.owner),
            ctx.correlation_id,
            held,
        ))))
    }

    fn dmarc_notice(
        &self,
        ctx: &Ctx<'_>,
        owner: &smtpy_core::model::User,
        alias: &Alias,
        parsed: &ParsedMessage,
        outcome: DmarcOutcome,
    ) -> Option<QueuedMessage> {
        ctx.verdict?;
        let n = Notification::dmarc_failure(
            owner.email.clone(),
            &alias.address,
            &summary(ctx.envelope.reverse_path.as_ref(), parsed),
            outcome,
        );
        self.policy.notification(
            &n,
            &self.hostname,
            owner.id,
            ctx.now,
            self.lifetime,
            ctx.correlation_id,
        )
    }

    fn srs_sender(&self, ctx: &Ctx<'_>) -> Option<EmailAddress> {
        match (&ctx.envelope.reverse_path, &self.srs) {
            (Some(sender), Some(srs)) => match srs.forward(sender, ctx.now) {
                Ok(rewritten) => Some(rewritten),
                Err(e) => {
                    tracing::warn!(correlation = ctx.correlation_id, error = %e, "SRS rewrite failed; forwarding with the original sender");
                    Some(sender.clone())
                }
            },
            (sender, _) => sender.clone(),
        }
    }

    /// Alias mode: every outside address in From, Reply-To, To, Cc and a
    /// mailto `List-Unsubscribe` becomes a reverse alias (contacts created
    /// on first sight).
    async fn alias_mode(
        &self,
        ctx: &Ctx<'_>,
        alias: &Alias,
        settings: &smtpy_core::model::UserSettings,
        message: Vec<u8>,
    ) -> Result<Vec<u8>, Reply> {
        let Some(reverse) = &self.policy.reverse else {
            return Ok(message);
        };
        let alias_domain = alias.address.domain().clone();
        let is_ours = |a: &EmailAddress| {
            a.domain() == &alias_domain || ReverseAliases::looks_like(a.local_part().as_str())
        };
        let external = alias_mode::external_addresses(&message, &is_ours);
        let mut map: HashMap<String, EmailAddress> = HashMap::with_capacity(external.len());
        for ext in external {
            let key = ext.address.canonical();
            if map.contains_key(&key) {
                continue;
            }
            let contact = self
                .contact_for(
                    reverse,
                    alias,
                    &ext.address,
                    ext.display_name.clone(),
                    ctx.now,
                )
                .await?;
            if let Ok(addr) = ReverseAliases::address(&contact.reverse_key, &alias_domain) {
                map.insert(key, addr);
            }
        }
        let format = settings
            .sender_format
            .as_deref()
            .unwrap_or(&self.policy.sender_format);
        alias_mode::rewrite(
            &message,
            &alias_mode::AliasModePlan {
                alias: &alias.address,
                sender_format: format,
                reverse: &map,
            },
        )
        .or_else(|e| {
            // A message whose headers cannot be rewritten is forwarded as is
            // rather than lost; the owner still gets it.
            tracing::warn!(error = %e, "alias-mode rewrite failed; forwarding unchanged");
            Ok(message)
        })
    }

    /// The alias's contact for `address`, created with a fresh reverse alias
    /// when there is none.
    async fn contact_for(
        &self,
        reverse: &ReverseAliases,
        alias: &Alias,
        address: &EmailAddress,
        display_name: Option<String>,
        now: Timestamp,
    ) -> Result<Contact, Reply> {
        if let Some(c) = self
            .store
            .find_contact(alias.id, address)
            .await
            .map_err(|_| Reply::STORE_UNAVAILABLE)?
        {
            return Ok(c);
        }
        let token = reverse
            .mint(alias.address.domain())
            .map_err(|_| Reply::STORE_UNAVAILABLE)?;
        let contact = Contact::new(alias, address.clone(), display_name, token, now);
        match self.store.create_contact(&contact).await {
            Ok(()) => Ok(contact),
            // Created concurrently: use that one.
            Err(smtpy_core::StoreError::AlreadyExists { .. }) => self
                .store
                .find_contact(alias.id, address)
                .await
                .ok()
                .flatten()
                .ok_or(Reply::STORE_UNAVAILABLE),
            Err(_) => Err(Reply::STORE_UNAVAILABLE),
        }
    }

    /// A reply (or new mail) from the owner through reverse aliases.
    async fn reply(
        &self,
        ctx: &Ctx<'_>,
        replies: &[(&Alias, &Contact, &Mailbox)],
        id: MessageId,
        events: &mut Vec<DeliveryEvent>,
    ) -> Result<QueuedMessage, Reply> {
        let (alias, first_contact, mailbox) = replies[0];
        // The flag may have been switched off since RCPT TO.
        if !self.features.get().replies {
            return Err(REPLIES_DISABLED);
        }
        // One alias per message: contacts of two aliases in one message would
        // learn that both belong to one person. Refused, never dropped.
        if replies.iter().any(|(a, _, _)| a.id != alias.id) {
            return Err(ONE_ALIAS_PER_REPLY);
        }
        // Only the owner, authenticated for their mailbox's domain.
        let Some(v) = ctx.verdict else {
            return Err(REPLY_NOT_AUTHENTICATED);
        };
        let domain = mailbox.address.domain();
        if !(v.dkim_aligned_pass(domain) || v.spf_aligned_pass(domain)) {
            let mut e = self.event(
                EventKind::Refused,
                ctx.now,
                Some(alias),
                ctx.envelope.reverse_path.as_ref(),
            );
            e.mailbox = Some(mailbox.id);
            self.log_event(
                e.with("reason", "reply not authenticated")
                    .with("spf", v.spf_mail_from.to_string())
                    .with("dkim", v.dkim_summary().to_string()),
            )
            .await;
            return Err(REPLY_NOT_AUTHENTICATED);
        }
        // Every mailbox of the owner → the alias; every reverse alias → its contact.
        let mailboxes = self
            .store
            .list_mailboxes(alias.owner)
            .await
            .map_err(|_| Reply::STORE_UNAVAILABLE)?;
        let mut replacements: Vec<(String, String)> = mailboxes
            .iter()
            .map(|m| (m.address.to_string(), alias.address.to_string()))
            .collect();
        for (a, c, _) in replies {
            if let Ok(ra) = ReverseAliases::address(&c.reverse_key, a.address.domain()) {
                replacements.push((ra.to_string(), c.address.to_string()));
            }
        }
        let scrubbed = scrub::scrub_reply(
            ctx.body,
            &scrub::ReplyPlan {
                from: &alias.address,
                to: &first_contact.address,
                to_display: first_contact.display_name.as_deref(),
                replacements: &replacements,
            },
        )
        .map_err(|e| {
            tracing::info!(error = %e, "reply could not be scrubbed");
            REPLY_WOULD_LEAK
        })?;
        for m in &mailboxes {
            if scrub::leaks(&scrubbed, &m.address.to_string()) {
                return Err(REPLY_WOULD_LEAK);
            }
        }
        // No Received line: it would name the owner's provider. Replies
        // carry only our loop marker.
        let message =
            forward::prepend_headers(&scrubbed, &[forward::loop_marker_header(&self.hostname)]);
        let message = self
            .policy
            .sign(alias.address.domain(), None, message, ctx.now);
        let reverse_path = match &self.policy.bounces {
            Some(b) => Some(b.encode(id, ctx.now)),
            None => Some(alias.address.clone()),
        };
        let mut recipients = Vec::new();
        for (_, c, _) in replies {
            if recipients
                .iter()
                .any(|r: &QueuedRecipient| r.address.canonical() == c.address.canonical())
            {
                continue;
            }
            let mut r = QueuedRecipient::new(c.address.clone());
            r.alias = Some(alias.id);
            recipients.push(r);
            let mut e = self.event(EventKind::Replied, ctx.now, Some(alias), None);
            e.message = Some(id);
            e.mailbox = Some(mailbox.id);
            events.push(e.with("contact", c.address.to_string()));
        }
        Ok(self.message(
            id,
            MessageKind::Reply,
            reverse_path,
            Some(alias.address.clone()),
            message,
            recipients,
            Some(alias.owner),
            ctx.correlation_id,
            false,
        ))
    }

    /// Mail to a bounce address: a DSN is recorded (and may disable an
    /// alias or mailbox); anything else (an auto-reply, a human answering
    /// the Return-Path) goes to the alias's owner like mail to the alias.
    async fn handle_bounce(
        &self,
        ctx: &Ctx<'_>,
        message: MessageId,
        follow_ups: &mut Vec<QueuedMessage>,
    ) -> Result<Option<(Alias, Vec<Mailbox>)>, Reply> {
        let page = self
            .store
            .list_events(
                Access::System,
                &EventFilter {
                    message: Some(message),
                    ..EventFilter::default()
                },
                PageRequest::first(100),
            )
            .await
            .map_err(|_| Reply::STORE_UNAVAILABLE)?;
        let Some(first) = page.items.iter().find(|e| e.owner.is_some()) else {
            // Nothing known about it any more (events purged): accept and drop.
            return Ok(None);
        };
        let owner = first.owner;
        let alias_id = first.alias;
        // Bounce events tell the story of the bounced message: its id.
        let correlation = page
            .items
            .iter()
            .find_map(|e| e.details.get(CORRELATION_DETAIL))
            .map_or(ctx.correlation_id, String::as_str);
        let kind = if page.items.iter().any(|e| e.kind == EventKind::Replied) {
            MessageKind::Reply
        } else {
            MessageKind::Forward
        };
        let parsed = if smtpy_core::bounce::is_auto_reply(ctx.body) {
            None
        } else {
            smtpy_core::bounce::parse_bounce(ctx.body)
        };
        if let Some(parsed) = parsed {
            let Some(owner) = owner else { return Ok(None) };
            for r in &parsed.recipients {
                // Which mailbox: the one the DSN names, or the only one.
                let mailbox = page
                    .items
                    .iter()
                    .filter(|e| e.mailbox.is_some())
                    .find(|e| {
                        r.address.as_deref().is_some_and(|a| {
                            e.details
                                .get("mailbox_address")
                                .is_some_and(|m| m.eq_ignore_ascii_case(a))
                        })
                    })
                    .or_else(|| {
                        let with_mailbox: Vec<_> =
                            page.items.iter().filter(|e| e.mailbox.is_some()).collect();
                        (with_mailbox.len() == 1).then(|| with_mailbox[0])
                    })
                    .and_then(|e| e.mailbox);
                let report = BounceReport {
                    owner,
                    alias: alias_id,
                    mailbox,
                    message: Some(message),
                    class: r.class,
                    reply: r
                        .diagnostic
                        .clone()
                        .or_else(|| r.status.clone())
                        .unwrap_or_default(),
                    kind,
                };
                if let Some(n) = self
                    .policy
                    .record_bounce(
                        &*self.store,
                        &report,
                        &self.hostname,
                        ctx.now,
                        self.lifetime,
                        correlation,
                    )
                    .await
                {
                    follow_ups.push(n);
                }
            }
            return Ok(None);
        }
        // Not a bounce: route it to the owner through the alias.
        let Some(alias_id) = alias_id else {
            return Ok(None);
        };
        let Ok(alias) = self.store.get_alias(Access::System, alias_id).await else {
            return Ok(None);
        };
        match Router::new(&*self.store, None)
            .route(&alias.address, ctx.envelope.reverse_path.as_ref(), ctx.now)
            .await
        {
            Ok(Route::Forward { alias, mailboxes }) => Ok(Some((alias, mailboxes))),
            _ => Ok(None),
        }
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
        owner: Option<UserId>,
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

/// One message being accepted.
struct Ctx<'a> {
    envelope: &'a Envelope,
    body: &'a [u8],
    peer: IpAddr,
    id: MessageId,
    now: Timestamp,
    verdict: Option<&'a AuthVerdict>,
    correlation_id: &'a str,
}

fn temp_refusal(e: smtpy_core::StoreError) -> Refusal {
    Refusal {
        reply: Reply::STORE_UNAVAILABLE,
        cause: Some(e),
    }
}

/// What a notice says about a message: its sender and subject.
fn summary(sender: Option<&EmailAddress>, parsed: &ParsedMessage) -> MessageSummary {
    let address = parsed
        .header_from
        .clone()
        .or_else(|| sender.map(ToString::to_string))
        .unwrap_or_else(|| "<>".to_owned());
    MessageSummary::new(&address, None, parsed.subject.as_deref())
}

/// `smtpy_messages_rejected_total{reason="unknown_alias"}`.
const UNKNOWN_ALIAS: &str = "unknown_alias";
/// A rate limit or quota refused.
const RATE_LIMITED: &str = "rate_limited";
/// The rate limiter could not decide (`451 4.3.0`).
const LIMITER_FAILED: &str = "rate_limiter_unavailable";

/// The stable `reason` label of a refusal, from the reply given.
///
/// | reason | reply |
/// | --- | --- |
/// | `unknown_alias` | `550 5.1.1` no such alias (`disabled_alias` when it exists but takes no mail) |
/// | `relay_denied` | `550 5.7.1` the domain is not hosted |
/// | `no_mailbox` | `550 5.2.1` the alias has no deliverable mailbox |
/// | `forged_address` | `550 5.7.1` a reverse alias or bounce address with a bad signature |
/// | `bad_bounce_address` | `550 5.7.1` a forged or expired SRS address |
/// | `not_the_owner` | `550 5.7.1` a reverse alias used by someone else than the owner |
/// | `blocked_rule` | `550 5.7.1` a rule or a blocked contact |
/// | `dmarc` | `550 5.7.1` the sender's DMARC policy says reject |
/// | `auth_reply` | `550 5.7.1` a reply not authenticated for the owner's mailbox |
/// | `reply_would_leak` | `550 5.7.1` a reply that would reveal the mailbox |
/// | `one_alias_per_reply` | `550 5.7.1` a reply through two aliases |
/// | `rate_limited` | `450 4.7.1` / `452 4.4.5` a rate limit or quota |
/// | `rate_limiter_unavailable` | `451 4.3.0` the limiter failed |
/// | `store_unavailable` | `451 4.4.3` the store failed |
/// | `queue_unavailable` | `451 4.3.0` the message could not be queued |
/// | `loop` | `554 5.4.6` a mail loop |
/// | `too_big` | `552 5.3.4` over the size limit (counted by the connection) |
/// | `other` | anything else |
pub(crate) fn reject_reason(reply: &Reply) -> &'static str {
    let known: [(&Reply, &'static str); 14] = [
        (&Reply::UNKNOWN_RECIPIENT, UNKNOWN_ALIAS),
        (&Reply::RELAY_DENIED, "relay_denied"),
        (&Reply::BAD_BOUNCE_ADDRESS, "bad_bounce_address"),
        (&Reply::STORE_UNAVAILABLE, "store_unavailable"),
        (&Reply::BAD_ADDRESS, "bad_address"),
        (&FORGED_ADDRESS, "forged_address"),
        (&NOT_THE_OWNER, "not_the_owner"),
        (&SENDER_BLOCKED, "blocked_rule"),
        (&smtpy_core::auth::DMARC_REJECTED, "dmarc"),
        (&REPLY_NOT_AUTHENTICATED, "auth_reply"),
        (&REPLY_WOULD_LEAK, "reply_would_leak"),
        (&ONE_ALIAS_PER_REPLY, "one_alias_per_reply"),
        (&LOOP, "loop"),
        (&QUEUE_FAILED, "queue_unavailable"),
    ];
    if let Some((_, reason)) = known.iter().find(|(r, _)| *r == reply) {
        return reason;
    }
    match (reply.code, reply.enhanced) {
        (450, (4, 7, 1)) | (452, (4, 4, 5)) => RATE_LIMITED,
        (451, (4, 3, 0)) => LIMITER_FAILED,
        (550, (5, 2, 1)) => "no_mailbox",
        (552, (5, 3, 4)) => "too_big",
        _ => "other",
    }
}
