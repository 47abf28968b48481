//! Rate limits and quotas on the mail path.
//!
//! Every limit is a [GCRA](crate::gcra) quota on a namespaced key. A
//! [`RateLimiter`] holds the per-key state: [`LocalLimiter`] in process
//! memory (one node), [`StoreLimiter`] in the shared
//! [`RateLimitStore`] (several nodes behind one store). [`Limits`] combines a
//! limiter with the operator's [`LimitPolicy`] and the per-alias and per-user
//! overrides, answers each check with `Ok(())` or a [`Denial`] carrying the
//! SMTP reply, and counts denials per [`LimitScope`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::net::IpAddr;
//! use std::sync::Arc;
//! use smtpy_core::gcra::Quota;
//! use smtpy_core::limits::{LimitPolicy, LimitScope, Limits, LocalLimiter};
//! use smtpy_core::time::{ManualClock, Timestamp};
//!
//! let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
//! let policy = LimitPolicy {
//!     ip_messages: Some(Quota::per_minute(2)?),
//!     ..LimitPolicy::default()
//! };
//! let limits = Limits::new(Arc::new(LocalLimiter::new(clock)), policy);
//! let ip: IpAddr = "192.0.2.7".parse()?;
//! limits.ip_message(ip).await?;
//! limits.ip_message(ip).await?;
//! let denial = limits.ip_message(ip).await.unwrap_err();
//! assert_eq!(denial.scope, LimitScope::Ip);
//! assert_eq!(denial.reply.code, 450);
//! assert_eq!(denial.retry_after.as_secs(), 30);
//! assert_eq!(limits.denials().ip, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Replies
//!
//! | scope | kind | reply |
//! | --- | --- | --- |
//! | [`Ip`](LimitScope::Ip), [`Alias`](LimitScope::Alias), [`SenderDomain`](LimitScope::SenderDomain) | rate limit (per hour) | `450 4.7.1 … rate limit exceeded, try again in N s` |
//! | [`UserForwards`](LimitScope::UserForwards), [`UserReplies`](LimitScope::UserReplies), [`UserNewAliases`](LimitScope::UserNewAliases) | quota of an account | `452 4.4.5 … quota reached, try again in N s` |
//! | any, when the limiter fails | — | `451 4.3.0` |
//!
//! Every denial is temporary: the client keeps the message and retries, so
//! nothing is lost.
//!
//! **A failing limiter denies, temporarily.** When the rate-limit store
//! cannot be reached the check answers `451 4.3.0` rather than letting the
//! message through. Failing open would make the limits disappear exactly
//! when the store is overloaded — the moment a flood is most likely — while a
//! temporary refusal costs legitimate senders only a retry (their queues hold
//! the message for days), and a store outage blocks the mail path anyway
//! (alias lookups answer `451 4.4.3` too).
//!
//! # Keys
//!
//! | scope | key |
//! | --- | --- |
//! | client IP | `ip:192.0.2.7`, IPv6 per /64: `ip:2001:db8:1:2::/64` (IPv4-mapped IPv6 counts as IPv4) |
//! | alias | `alias:<alias id>` |
//! | forwards of a user | `user-fwd:<user id>` |
//! | replies of a user | `user-reply:<user id>` |
//! | aliases created by a user | `user-alias:<user id>` |
//! | envelope sender domain | `sender-domain:<A-label domain>` |
//!
//! # Zero
//!
//! A count of `0`, in the [`LimitPolicy`] or in an override
//! ([`AliasLimits::messages_per_hour`](crate::model::AliasLimits::messages_per_hour),
//! [`UserSettings`](crate::model::UserSettings)), means **no limit**, as
//! elsewhere in the configuration. An override replaces the default in both
//! directions, so owners must not be allowed to edit their own overrides
//! freely (the API caps or reserves them to administrators).
//!
//! Counts are turned into quotas with a burst equal to the count: a whole
//! period's allowance may be used at once, after which it refills
//! continuously (one event per `period / count`). Counts faster than one
//! event per millisecond are clamped to that rate.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::address::DomainName;
use crate::error::StoreError;
use crate::gcra::{self, Decision, Quota};
use crate::model::{Alias, User};
use crate::reply::Reply;
use crate::store::RateLimitStore;
use crate::time::Clock;

/// Milliseconds in one hour.
const HOUR_MS: u64 = 3_600_000;
/// Milliseconds in one day.
const DAY_MS: u64 = 24 * HOUR_MS;

/// How long a client is told to wait when the limiter itself failed.
pub const LIMITER_ERROR_RETRY: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Limiters

/// Where GCRA state lives: [`check`](RateLimiter::check) spends `cost` cells
/// of `quota` for `key` at the limiter's current time, atomically.
///
/// Implementations: [`LocalLimiter`] (one process), [`StoreLimiter`] (shared
/// store, several processes). Both give the same decisions as
/// [`gcra::decide`] over the key's history.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Spends `cost` cells of `quota` for `key` now, if they conform; `cost`
    /// 0 only peeks. The state changes only when the decision allows a
    /// positive cost.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the state cannot be read or written (never for
    /// [`LocalLimiter`]).
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision, StoreError>;
}

/// Default [`LocalLimiter::max_keys`]: about 20 MB of state at most.
pub const DEFAULT_MAX_KEYS: usize = 200_000;

/// Number of independently locked shards of a [`LocalLimiter`].
const SHARDS: usize = 16;

/// A shard drops its expired keys after this many new keys (besides doing so
/// whenever it is full), so memory follows the live keys in steady state.
const SWEEP_EVERY: u32 = 1024;

/// When a shard is full of live keys, this fraction (1/n) of them, those
/// closest to expiry, is forgotten at once, so evictions cost O(1) amortised.
const EVICT_FRACTION: usize = 16;

/// In-process rate limiter for a single node.
///
/// The state (one theoretical arrival time per key) sits in
/// 16 shards, each a `Mutex<HashMap>`, so concurrent checks on different keys
/// rarely contend and checks on one key are serialised (never over-admit).
/// Time comes from the injected [`Clock`].
///
/// # Memory
///
/// Bounded by [`max_keys`](Self::max_keys) keys (default
/// [`DEFAULT_MAX_KEYS`]), split evenly over the shards:
///
/// * a key whose arrival time has passed behaves exactly like an unknown key,
///   so it is dropped: whenever its shard is full, and every 1024 new keys
///   of the shard;
/// * **at the cap**, when a shard is full of live keys, the sixteenth of them
///   closest to expiry (lowest arrival time, so the least owed) are
///   forgotten. A forgotten key starts afresh at its next check, with its
///   full burst. Under a flood of distinct keys the limiter thus errs towards
///   admitting keys it was tracking, never towards refusing a client it has
///   not seen, and it never grows past the cap.
///
/// Denied checks never insert a key, so refused traffic costs no memory.
pub struct LocalLimiter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    per_shard: usize,
}

/// One shard: key → theoretical arrival time (unix ms).
#[derive(Default)]
struct Shard {
    tats: HashMap<String, i64>,
    new_keys: u32,
}

impl Shard {
    /// Drops keys whose arrival time is at or before `now_ms`.
    fn sweep(&mut self, now_ms: i64) -> usize {
        let before = self.tats.len();
        self.tats.retain(|_, tat| *tat > now_ms);
        before - self.tats.len()
    }

    /// Makes room for one more key under `cap`: expired keys first, then
    /// the live keys closest to expiry.
    fn make_room(&mut self, now_ms: i64, cap: usize) {
        if self.tats.len() < cap {
            return;
        }
        self.sweep(now_ms);
        if self.tats.len() < cap {
            return;
        }
        let mut tats: Vec<i64> = self.tats.values().copied().collect();
        if tats.is_empty() {
            return;
        }
        // Evict exactly `index + 1` keys: those below the threshold and as
        // many as needed of those equal to it.
        let index = (tats.len() / EVICT_FRACTION).min(tats.len() - 1);
        let (below, threshold, _) = tats.select_nth_unstable(index);
        let threshold = *threshold;
        let strictly_below = below.iter().filter(|t| **t < threshold).count();
        let mut ties = index + 1 - strictly_below;
        self.tats.retain(|_, tat| {
            if *tat < threshold {
                false
            } else if *tat == threshold && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            }
        });
    }
}

impl LocalLimiter {
    /// A limiter reading the time from `clock`, holding at most
    /// [`DEFAULT_MAX_KEYS`] keys.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> LocalLimiter {
        LocalLimiter::with_max_keys(clock, DEFAULT_MAX_KEYS)
    }

    /// A limiter holding at most `max_keys` keys (at least one per shard:
    /// values below 16 are raised to 16).
    #[must_use]
    pub fn with_max_keys(clock: Arc<dyn Clock>, max_keys: usize) -> LocalLimiter {
        let per_shard = (max_keys / SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        LocalLimiter {
            shards,
            hasher: RandomState::new(),
            clock,
            per_shard,
        }
    }

    /// The most keys held at once.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Keys currently held (expired ones included until swept).
    #[must_use]
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).tats.len()).sum()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key whose state has expired (it would behave as unknown
    /// anyway). Returns how many. Optional: shards also sweep themselves.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now().as_unix_millis();
        (0..SHARDS).map(|i| self.lock(i).sweep(now)).sum()
    }

    /// Locks shard `index`. A poisoned lock is recovered: every update of a
    /// shard is a single map operation, so its state is always consistent.
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        let shard = &self.shards[index % SHARDS];
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The decision for `key` now, with the state updated.
    fn decide_now(&self, key: &str, quota: &Quota, cost: u32) -> Decision {
        let now = self.clock.now().as_unix_millis();
        // The remainder is below SHARDS, so the cast never truncates.
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        let mut shard = self.lock(index);
        let decision = gcra::decide(quota, shard.tats.get(key).copied(), now, cost);
        if decision.allowed && cost > 0 {
            if let Some(tat) = shard.tats.get_mut(key) {
                *tat = decision.new_tat_ms;
            } else {
                shard.new_keys += 1;
                if shard.new_keys >= SWEEP_EVERY {
                    shard.new_keys = 0;
                    shard.sweep(now);
                }
                shard.make_room(now, self.per_shard);
                shard.tats.insert(key.to_owned(), decision.new_tat_ms);
            }
        }
        decision
    }
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("clock", &self.clock)
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision, StoreError> {
        Ok(self.decide_now(key, quota, cost))
    }
}

/// Rate limiter over the shared [`RateLimitStore`]: every node using the
/// store sees the same state, and the store makes each check atomic.
///
/// The time is read from the injected [`Clock`]; nodes' clocks should agree
/// to within a fraction of the shortest emission interval.
#[derive(Clone)]
pub struct StoreLimiter {
    store: Arc<dyn RateLimitStore>,
    clock: Arc<dyn Clock>,
}

impl StoreLimiter {
    /// A limiter keeping its state in `store`, reading the time from `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn RateLimitStore>, clock: Arc<dyn Clock>) -> StoreLimiter {
        StoreLimiter { store, clock }
    }
}

impl fmt::Debug for StoreLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLimiter")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for StoreLimiter {
    async fn check(&self, key: &str, quota: &Quota, cost: u32) -> Result<Decision, StoreError> {
        self.store
            .check_rate(key, quota, self.clock.now(), cost)
            .await
    }
}

// ---------------------------------------------------------------------------
// Policy

/// The operator's limits. Every field has a default, so a configuration
/// names only what it changes; unknown fields are refused.
///
/// | field | default | `None` / `0` |
/// | --- | --- | --- |
/// | `ip_messages` | 600 per hour, burst 100 | no limit |
/// | `alias_messages_per_hour` | 100 | no limit |
/// | `user_forwards_per_day` | 1000 | no limit |
/// | `user_replies_per_day` | 200 | no limit |
/// | `user_aliases_per_hour` | 30 | no limit |
/// | `sender_domain_messages` | 1000 per hour, burst 200 | no limit |
///
/// Quotas are written `{ count, period_ms, burst }` (see [`Quota`]).
///
/// ```
/// use smtpy_core::limits::LimitPolicy;
/// let policy: LimitPolicy = serde_json::from_str(
///     r#"{ "alias_messages_per_hour": 20, "ip_messages": { "count": 60, "period_ms": 60000, "burst": 10 } }"#,
/// )?;
/// assert_eq!(policy.alias_messages_per_hour, 20);
/// assert_eq!(policy.ip_messages.map(|q| q.burst()), Some(10));
/// assert_eq!(policy.user_forwards_per_day, LimitPolicy::default().user_forwards_per_day);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitPolicy {
    /// Messages per client IP address (IPv6: per /64). Loopback and exempt
    /// networks are the caller's business: it does not call
    /// [`Limits::ip_message`] for them.
    pub ip_messages: Option<Quota>,
    /// Messages per alias per hour, unless the alias's
    /// [`limits.messages_per_hour`](crate::model::AliasLimits::messages_per_hour)
    /// says otherwise.
    pub alias_messages_per_hour: u32,
    /// Forwards per user per day, unless
    /// [`UserSettings::forwards_per_day`](crate::model::UserSettings::forwards_per_day)
    /// says otherwise.
    pub user_forwards_per_day: u32,
    /// Replies (and new mail sent through aliases) per user per day, unless
    /// [`UserSettings::replies_per_day`](crate::model::UserSettings::replies_per_day)
    /// says otherwise.
    pub user_replies_per_day: u32,
    /// Aliases a user may create per hour, unless
    /// [`UserSettings::aliases_per_hour`](crate::model::UserSettings::aliases_per_hour)
    /// says otherwise.
    pub user_aliases_per_hour: u32,
    /// Messages per envelope sender domain.
    pub sender_domain_messages: Option<Quota>,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            ip_messages: Quota::new(600, Duration::from_millis(HOUR_MS), 100).ok(),
            alias_messages_per_hour: 100,
            user_forwards_per_day: 1000,
            user_replies_per_day: 200,
            user_aliases_per_hour: 30,
            sender_domain_messages: Quota::new(1000, Duration::from_millis(HOUR_MS), 200).ok(),
        }
    }
}

/// `count` events per `period_ms`, burst `count`; `None` for 0 (no limit).
/// Counts faster than one per millisecond are clamped to that rate.
fn count_quota(count: u32, period_ms: u64) -> Option<Quota> {
    if count == 0 {
        return None;
    }
    let rate = u64::from(count).min(period_ms);
    let rate = u32::try_from(rate).unwrap_or(u32::MAX);
    Quota::new(rate, Duration::from_millis(period_ms), count).ok()
}

// ---------------------------------------------------------------------------
// Denials

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Messages per client IP address.
    Ip,
    /// Messages per alias.
    Alias,
    /// Forwards per user (quota).
    UserForwards,
    /// Replies per user (quota).
    UserReplies,
    /// Aliases created per user (quota).
    UserNewAliases,
    /// Messages per envelope sender domain.
    SenderDomain,
}

impl LimitScope {
    /// Every scope.
    pub const ALL: [LimitScope; 6] = [
        LimitScope::Ip,
        LimitScope::Alias,
        LimitScope::UserForwards,
        LimitScope::UserReplies,
        LimitScope::UserNewAliases,
        LimitScope::SenderDomain,
    ];

    /// A short name for logs and metrics (`ip`, `alias`, `user_forwards`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Ip => "ip",
            LimitScope::Alias => "alias",
            LimitScope::UserForwards => "user_forwards",
            LimitScope::UserReplies => "user_replies",
            LimitScope::UserNewAliases => "user_new_aliases",
            LimitScope::SenderDomain => "sender_domain",
        }
    }

    /// Whether this is an account quota (`452 4.4.5`) rather than a rate
    /// limit on traffic (`450 4.7.1`).
    #[must_use]
    pub fn is_quota(self) -> bool {
        matches!(
            self,
            LimitScope::UserForwards | LimitScope::UserReplies | LimitScope::UserNewAliases
        )
    }

    /// Position in [`LimitScope::ALL`].
    fn index(self) -> usize {
        match self {
            LimitScope::Ip => 0,
            LimitScope::Alias => 1,
            LimitScope::UserForwards => 2,
            LimitScope::UserReplies => 3,
            LimitScope::UserNewAliases => 4,
            LimitScope::SenderDomain => 5,
        }
    }

    /// The beginning of the reply text.
    fn what(self) -> &'static str {
        match self {
            LimitScope::Ip => "Per-IP rate limit exceeded",
            LimitScope::Alias => "Recipient rate limit exceeded",
            LimitScope::SenderDomain => "Sender domain rate limit exceeded",
            LimitScope::UserForwards => "Recipient's daily forwarding quota reached",
            LimitScope::UserReplies => "Daily sending quota reached",
            LimitScope::UserNewAliases => "Hourly alias creation quota reached",
        }
    }
}

impl fmt::Display for LimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused check: which limit, how long to wait, and the SMTP reply to
/// give (always temporary, `4xx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The limit that refused.
    pub scope: LimitScope,
    /// How long until the same request would be allowed (assuming no other
    /// traffic); [`LIMITER_ERROR_RETRY`] when the limiter failed.
    pub retry_after: Duration,
    /// `450 4.7.1` for rate limits, `452 4.4.5` for quotas, `451 4.3.0`
    /// when the limiter failed.
    pub reply: Reply,
}

impl Denial {
    /// The denial for an exhausted limit.
    fn limited(scope: LimitScope, retry_after: Duration) -> Denial {
        let secs = retry_after.as_millis().div_ceil(1000).max(1);
        let text = format!("{}, try again in {secs} s", scope.what());
        let reply = if scope.is_quota() {
            Reply::with_text(452, (4, 4, 5), text)
        } else {
            Reply::with_text(450, (4, 7, 1), text)
        };
        Denial {
            scope,
            retry_after,
            reply,
        }
    }

    /// The denial when the limiter could not decide.
    fn unavailable(scope: LimitScope) -> Denial {
        Denial {
            scope,
            retry_after: LIMITER_ERROR_RETRY,
            reply: Reply::new(
                451,
                (4, 3, 0),
                "Temporary failure checking rate limits, try again later",
            ),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} limit: {}", self.scope, self.reply)
    }
}

impl std::error::Error for Denial {}

/// Denials since [`Limits::new`], per scope. A denial because the limiter
/// failed counts in its scope and in `limiter_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DenialCounts {
    /// [`LimitScope::Ip`].
    pub ip: u64,
    /// [`LimitScope::Alias`].
    pub alias: u64,
    /// [`LimitScope::UserForwards`].
    pub user_forwards: u64,
    /// [`LimitScope::UserReplies`].
    pub user_replies: u64,
    /// [`LimitScope::UserNewAliases`].
    pub user_new_aliases: u64,
    /// [`LimitScope::SenderDomain`].
    pub sender_domain: u64,
    /// Denials because the limiter returned an error (`451 4.3.0`).
    pub limiter_errors: u64,
}

impl DenialCounts {
    /// The count for one scope.
    #[must_use]
    pub fn get(&self, scope: LimitScope) -> u64 {
        match scope {
            LimitScope::Ip => self.ip,
            LimitScope::Alias => self.alias,
            LimitScope::UserForwards => self.user_forwards,
            LimitScope::UserReplies => self.user_replies,
            LimitScope::UserNewAliases => self.user_new_aliases,
            LimitScope::SenderDomain => self.sender_domain,
        }
    }

    /// All denials, every scope.
    #[must_use]
    pub fn total(&self) -> u64 {
        LimitScope::ALL.iter().map(|s| self.get(*s)).sum()
    }
}

// ---------------------------------------------------------------------------
// Limits

/// The limits of the mail path: a [`RateLimiter`], the operator's
/// [`LimitPolicy`] with per-alias and per-user overrides, and denial
/// counters. Share it (`Arc<Limits>`) between sessions.
///
/// Each method spends one unit of its limit when it returns `Ok(())`; a
/// denied or failed check spends nothing. Call it when the event is about to
/// happen (e.g. per accepted recipient), not speculatively.
pub struct Limits {
    limiter: Arc<dyn RateLimiter>,
    policy: std::sync::RwLock<LimitPolicy>,
    denials: [AtomicU64; 6],
    limiter_errors: AtomicU64,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("limiter", &self.limiter)
            .field("policy", &self.policy())
            .field("denials", &self.denials())
            .finish()
    }
}

impl Limits {
    /// Limits enforced with `limiter` under `policy`.
    #[must_use]
    pub fn new(limiter: Arc<dyn RateLimiter>, policy: LimitPolicy) -> Self {
        Limits {
            limiter,
            policy: std::sync::RwLock::new(policy),
            denials: Default::default(),
            limiter_errors: AtomicU64::new(0),
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> LimitPolicy {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the policy (say on a configuration reload). Checks started
    /// afterwards use it; the limiter's state (what was spent) is kept, so a
    /// lowered limit applies at once to keys that already spent more.
    pub fn set_policy(&self, policy: LimitPolicy) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    /// One message from client `ip` (`ip:<address>`, IPv6 per /64), under
    /// [`LimitPolicy::ip_messages`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `450 4.7.1` over the limit, `451 4.3.0` if the limiter failed.
    pub async fn ip_message(&self, ip: IpAddr) -> Result<(), Denial> {
        match self.policy().ip_messages {
            Some(quota) => self.spend(LimitScope::Ip, &ip_key(ip), &quota).await,
            None => Ok(()),
        }
    }

    /// One message to `alias`, under its `limits.messages_per_hour` or else
    /// [`LimitPolicy::alias_messages_per_hour`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `450 4.7.1` over the limit, `451 4.3.0` if the limiter failed.
    pub async fn alias_message(&self, alias: &Alias) -> Result<(), Denial> {
        let count = alias
            .limits
            .messages_per_hour
            .unwrap_or(self.policy().alias_messages_per_hour);
        let key = format!("alias:{}", alias.id);
        self.spend_count(LimitScope::Alias, &key, count, HOUR_MS)
            .await
    }

    /// One forward to a mailbox of `user`, under
    /// [`UserSettings::forwards_per_day`](crate::model::UserSettings::forwards_per_day)
    /// or else [`LimitPolicy::user_forwards_per_day`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `452 4.4.5` over the quota, `451 4.3.0` if the limiter failed.
    pub async fn user_forward(&self, user: &User) -> Result<(), Denial> {
        let count = user
            .settings
            .forwards_per_day
            .unwrap_or(self.policy().user_forwards_per_day);
        let key = format!("user-fwd:{}", user.id);
        self.spend_count(LimitScope::UserForwards, &key, count, DAY_MS)
            .await
    }

    /// One reply (or new message) sent by `user` through an alias, under
    /// [`UserSettings::replies_per_day`](crate::model::UserSettings::replies_per_day)
    /// or else [`LimitPolicy::user_replies_per_day`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `452 4.4.5` over the quota, `451 4.3.0` if the limiter failed.
    pub async fn user_reply(&self, user: &User) -> Result<(), Denial> {
        let count = user
            .settings
            .replies_per_day
            .unwrap_or(self.policy().user_replies_per_day);
        let key = format!("user-reply:{}", user.id);
        self.spend_count(LimitScope::UserReplies, &key, count, DAY_MS)
            .await
    }

    /// One alias created by `user`, under
    /// [`UserSettings::aliases_per_hour`](crate::model::UserSettings::aliases_per_hour)
    /// or else [`LimitPolicy::user_aliases_per_hour`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `452 4.4.5` over the quota, `451 4.3.0` if the limiter failed.
    pub async fn user_new_alias(&self, user: &User) -> Result<(), Denial> {
        let count = user
            .settings
            .aliases_per_hour
            .unwrap_or(self.policy().user_aliases_per_hour);
        let key = format!("user-alias:{}", user.id);
        self.spend_count(LimitScope::UserNewAliases, &key, count, HOUR_MS)
            .await
    }

    /// One message from the envelope sender domain `domain`, under
    /// [`LimitPolicy::sender_domain_messages`].
    ///
    /// # Errors
    ///
    /// [`Denial`] `450 4.7.1` over the limit, `451 4.3.0` if the limiter failed.
    pub async fn sender_domain(&self, domain: &DomainName) -> Result<(), Denial> {
        match self.policy().sender_domain_messages {
            Some(quota) => {
                let key = format!("sender-domain:{}", domain.as_ascii());
                self.spend(LimitScope::SenderDomain, &key, &quota).await
            }
            None => Ok(()),
        }
    }

    /// Denials so far, per scope.
    #[must_use]
    pub fn denials(&self) -> DenialCounts {
        let get = |scope: LimitScope| self.denials[scope.index()].load(Ordering::Relaxed);
        DenialCounts {
            ip: get(LimitScope::Ip),
            alias: get(LimitScope::Alias),
            user_forwards: get(LimitScope::UserForwards),
            user_replies: get(LimitScope::UserReplies),
            user_new_aliases: get(LimitScope::UserNewAliases),
            sender_domain: get(LimitScope::SenderDomain),
            limiter_errors: self.limiter_errors.load(Ordering::Relaxed),
        }
    }

    /// Spends one unit of a count-per-period limit (0: no limit).
    async fn spend_count(
        &self,
        scope: LimitScope,
        key: &str,
        count: u32,
        period_ms: u64,
    ) -> Result<(), Denial> {
        match count_quota(count, period_ms) {
            Some(quota) => self.spend(scope, key, &quota).await,
            None => Ok(()),
        }
    }

    /// Spends one unit of `quota` for `key`, counting denials.
    async fn spend(&self, scope: LimitScope, key: &str, quota: &Quota) -> Result<(), Denial> {
        let denial = match self.limiter.check(key, quota, 1).await {
            Ok(decision) if decision.allowed => return Ok(()),
            Ok(decision) => Denial::limited(scope, retry_after(&decision, quota)),
            Err(_) => {
                self.limiter_errors.fetch_add(1, Ordering::Relaxed);
                Denial::unavailable(scope)
            }
        };
        self.denials[scope.index()].fetch_add(1, Ordering::Relaxed);
        Err(denial)
    }
}

/// The wait a denial reports: the decision's, at most one period (a cost
/// that can never pass cannot happen with cost 1; the cap keeps the reply
/// sensible anyway).
fn retry_after(decision: &Decision, quota: &Quota) -> Duration {
    Duration::from_millis(decision.retry_after_ms).min(quota.period())
}

/// The rate-limit key of a client address: `ip:<IPv4>`, or the /64 network
/// of an IPv6 address (`ip:2001:db8:1:2::/64`), since one IPv6 host
/// commonly holds a whole /64. IPv4-mapped IPv6 addresses count as IPv4.
///
/// ```
/// use smtpy_core::limits::ip_key;
/// assert_eq!(ip_key("192.0.2.7".parse()?), "ip:192.0.2.7");
/// assert_eq!(ip_key("2001:db8:1:2:aaaa::1".parse()?), "ip:2001:db8:1:2::/64");
/// assert_eq!(ip_key("::ffff:192.0.2.7".parse()?), "ip:192.0.2.7");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[must_use]
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            let net = Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0);
            format!("ip:{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{ManualClock, Timestamp};

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)))
    }

    #[test]
    fn default_policy_has_every_quota() {
        let policy = LimitPolicy::default();
        let ip = policy.ip_messages.expect("ip quota");
        assert_eq!((ip.count(), ip.burst()), (600, 100));
        assert_eq!(ip.period(), Duration::from_secs(3600));
        let domain = policy.sender_domain_messages.expect("domain quota");
        assert_eq!((domain.count(), domain.burst()), (1000, 200));
    }

    #[test]
    fn count_quota_zero_is_no_limit_and_huge_counts_clamp() {
        assert_eq!(count_quota(0, HOUR_MS), None);
        let q = count_quota(u32::MAX, HOUR_MS).expect("clamped");
        assert_eq!(q.emission_interval_ms(), 1);
        assert_eq!(q.burst(), u32::MAX);
        let q = count_quota(24, DAY_MS).expect("quota");
        assert_eq!(q.emission_interval_ms(), HOUR_MS);
        assert_eq!(q.burst(), 24);
    }

    #[test]
    fn ipv6_keys_cover_a_slash_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
    }

    #[test]
    fn full_shard_sweeps_expired_keys_before_evicting_live_ones() {
        let mut shard = Shard::default();
        for i in 0..8 {
            shard.tats.insert(format!("old{i}"), 100);
            shard.tats.insert(format!("live{i}"), 10_000 + i);
        }
        shard.make_room(1_000, 16);
        assert_eq!(shard.tats.len(), 8, "the expired half is dropped");
        assert!(shard.tats.keys().all(|k| k.starts_with("live")));
        shard.make_room(1_000, 8);
        assert_eq!(shard.tats.len(), 7, "one live key (the lowest) is evicted");
        assert!(!shard.tats.contains_key("live0"));
    }

    #[test]
    fn eviction_among_equal_states_removes_only_a_fraction() {
        let mut shard = Shard::default();
        for i in 0..64 {
            shard.tats.insert(format!("k{i}"), 5_000);
        }
        shard.make_room(1_000, 64);
        assert_eq!(shard.tats.len(), 64 - 64 / EVICT_FRACTION - 1);
    }

    #[test]
    fn denied_requests_insert_nothing() {
        let limiter = LocalLimiter::new(clock());
        let quota = Quota::per_hour(1).expect("quota");
        // A cost above the burst is always denied.
        for i in 0..100 {
            let d = limiter.decide_now(&format!("k{i}"), &quota, 2);
            assert!(!d.allowed);
        }
        assert!(limiter.is_empty());
    }

    #[test]
    fn purge_expired_drops_caught_up_keys() {
        let clock = clock();
        let limiter = LocalLimiter::new(clock.clone());
        let quota = Quota::per_second(10).expect("quota");
        for i in 0..50 {
            assert!(limiter.decide_now(&format!("k{i}"), &quota, 1).allowed);
        }
        assert_eq!(limiter.len(), 50);
        assert_eq!(limiter.purge_expired(), 0);
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.purge_expired(), 50);
        assert!(limiter.is_empty());
    }
}
