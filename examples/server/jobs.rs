//! The reference server's background jobs: the store-only jobs of
//! `smtpy_core::jobs` plus the two that need the server's parts — the DNS
//! re-check of hosted domains (through the API's checker) and DKIM
//! rotation. Each runs under a lease, so with several instances on one
//! PostgreSQL database each job runs once per interval; runs are visible at
//! `/metrics` (`smtpy_job_*`) and at `GET /api/v1/admin/jobs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use smtpy::core::Store;
use smtpy::core::address::DomainName;
use smtpy::core::dkim::{self, RotationPolicy, SelectorNaming};
use smtpy::core::ids::DomainId;
use smtpy::core::jobs::{
    EventRetention, ExpireAliases, Job, JobError, PurgeDeletedAliases, Scheduler,
    SessionAndTokenCleanup, UsageRollup,
};
use smtpy::core::metrics::Metrics;
use smtpy::core::model::DkimKeyState;
use smtpy::core::secret::Keyring;
use smtpy::core::store::{Access, PageRequest};
use smtpy::core::time::{Clock, Timestamp};

use crate::config::Config;

/// `dns-recheck`: hosted domains whose last check is older than the
/// interval are checked again (verification, MX, SPF, DKIM, DMARC).
pub struct DnsRecheck {
    state: smtpy_http::ApiState,
    interval: Duration,
}

#[async_trait]
impl Job for DnsRecheck {
    fn name(&self) -> &'static str {
        smtpy::core::jobs::DNS_RECHECK
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self, _now: Timestamp) -> Result<String, JobError> {
        smtpy_http::jobs::recheck_domains(&self.state, self.interval)
            .await
            .map(|n| format!("{n} domains re-checked"))
            .map_err(|p| JobError::Failed(p.detail))
    }
}

/// `dkim-rotation`: moves rotations along (pending keys start signing after
/// `[dkim] publish_delay`, old ones retire after `[dkim] grace`) and, with
/// `[dkim] rotate_every`, starts a rotation for domains whose signing keys
/// are that old.
pub struct DkimRotation {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    policy: RotationPolicy,
    rotate_every: Option<Duration>,
    algorithms: Vec<smtpy::core::model::DkimAlgorithm>,
    naming: SelectorNaming,
}

#[async_trait]
impl Job for DkimRotation {
    fn name(&self) -> &'static str {
        smtpy::core::jobs::DKIM_ROTATION
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn run(&self, now: Timestamp) -> Result<String, JobError> {
        let (mut advanced, mut started) = (0u64, 0u64);
        let mut page = PageRequest::first(500);
        loop {
            let domains = self
                .store
                .list_domains(Access::System, page)
                .await
                .map_err(|e| JobError::Failed(e.to_string()))?;
            for d in &domains.items {
                let mut d = d.clone();
                let mut changed = !dkim::advance(&mut d, now, &self.policy).is_empty();
                advanced += u64::from(changed);
                if let Some(every) = self.rotate_every {
                    let due = d.dkim_keys.iter().any(|k| {
                        k.state == DkimKeyState::Active && k.created_at.saturating_add(every) <= now
                    });
                    let pending = d.dkim_keys.iter().any(|k| k.state == DkimKeyState::Pending);
                    if due && !pending {
                        match dkim::start_rotation(
                            &mut d,
                            &self.algorithms,
                            now,
                            &self.keyring,
                            &self.naming,
                        ) {
                            Ok(_) => {
                                started += 1;
                                changed = true;
                            }
                            Err(e) => {
                                tracing::warn!(domain = %d.name, error = %e, "cannot start a DKIM rotation");
                            }
                        }
                    }
                }
                if changed {
                    self.store
                        .update_domain(Access::System, &d)
                        .await
                        .map_err(|e| JobError::Failed(format!("{}: {e}", d.name)))?;
                }
            }
            match domains.next {
                Some(cursor) => page = PageRequest::after(cursor, 500),
                None => break,
            }
        }
        Ok(format!(
            "{advanced} domains advanced, {started} rotations started"
        ))
    }
}

/// Keeps the signer's keys in step with the store on every instance (not
/// a leased job: each instance signs with its own copy). Domains whose
/// revision changed since the last look — created, rotated, given new keys
/// by the API, the command line or another instance — are loaded again;
/// deleted ones are forgotten.
pub struct KeySync {
    store: Arc<dyn Store>,
    policy: Arc<smtpy_smtp::policy::MailPolicy>,
    keyring: Arc<Keyring>,
    seen: tokio::sync::Mutex<std::collections::HashMap<DomainId, (DomainName, u64)>>,
}

impl KeySync {
    /// Nothing seen yet: the first [`sync`](Self::sync) loads every domain.
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<smtpy_smtp::policy::MailPolicy>,
        keyring: Arc<Keyring>,
    ) -> Self {
        Self {
            store,
            policy,
            keyring,
            seen: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Loads the keys of changed domains; returns how many were loaded.
    pub async fn sync(&self) -> usize {
        let mut seen = self.seen.lock().await;
        let mut now_present = std::collections::HashSet::new();
        let mut loaded = 0;
        let mut page = PageRequest::first(500);
        loop {
            let domains = match self.store.list_domains(Access::System, page).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list domains to reload DKIM keys");
                    return loaded;
                }
            };
            for d in &domains.items {
                now_present.insert(d.id);
                if seen.get(&d.id).is_some_and(|(_, rev)| *rev == d.revision) {
                    continue;
                }
                // Recorded either way: a domain whose keys cannot be opened
                // is logged once per revision, not every few seconds.
                seen.insert(d.id, (d.name.clone(), d.revision));
                match self.policy.signer.load_domain(d, &self.keyring) {
                    Ok(_) => loaded += 1,
                    Err(e) => {
                        tracing::error!(domain = %d.name, error = %e, "cannot load DKIM keys; the domain signs with its previous keys, or the service key");
                    }
                }
            }
            match domains.next {
                Some(cursor) => page = PageRequest::after(cursor, 500),
                None => break,
            }
        }
        seen.retain(|id, (name, _)| {
            let keep = now_present.contains(id);
            if !keep {
                self.policy.signer.remove_domain(name);
            }
            keep
        });
        loaded
    }
}

/// The scheduler with every job of the reference server.
pub fn scheduler(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    keyring: &Arc<Keyring>,
    api: Option<smtpy_http::ApiState>,
) -> Scheduler {
    let holder = format!(
        "{}:{}:{}",
        config.hostname,
        std::process::id(),
        uuid_suffix()
    );
    let mut s = Scheduler::new(
        Arc::clone(store),
        Arc::clone(clock),
        holder,
        Arc::clone(metrics),
    );
    let j = &config.jobs;
    s.add(PurgeDeletedAliases::new(
        Arc::clone(store),
        j.deleted_alias_retention,
    ))
    .add(SessionAndTokenCleanup::new(Arc::clone(store)))
    .add(ExpireAliases::new(Arc::clone(store)))
    .add(UsageRollup::new(Arc::clone(store), j.usage_daily_retention))
    .add(EventRetention::new(Arc::clone(store), j.event_retention))
    .add(DkimRotation {
        store: Arc::clone(store),
        keyring: Arc::clone(keyring),
        policy: RotationPolicy {
            publish_delay: config.dkim_publish_delay,
            grace: config.dkim_grace,
        },
        rotate_every: config.dkim_rotate_every,
        algorithms: config.dkim_algorithms.clone(),
        naming: SelectorNaming::for_mode(&crate::policy::publish_mode(config)),
    });
    if let Some(state) = api {
        s.add(DnsRecheck {
            state,
            interval: j.dns_recheck_interval,
        });
    }
    s
}

/// A few random hex digits: two processes with one pid (containers) still
/// hold leases under different names.
fn uuid_suffix() -> String {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
