//! Rate limits and quotas: GCRA bursts and refills on a manual clock,
//! overrides, denial replies and counters, the in-process and the
//! store-backed limiters side by side, bounded memory, concurrency.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use smtpy_core::StoreError;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::gcra::{Decision, Quota, decide};
use smtpy_core::ids::{DomainId, UserId};
use smtpy_core::limits::{
    LIMITER_ERROR_RETRY, LimitPolicy, LimitScope, Limits, LocalLimiter, RateLimiter, StoreLimiter,
    ip_key,
};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{Alias, Role, User};
use smtpy_core::time::{Clock, ManualClock, Timestamp};

fn t0() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

/// Both limiters, each on its own manual clock at `t0`, with a name for
/// assertion messages.
fn limiters() -> Vec<(&'static str, Arc<dyn RateLimiter>, ManualClock)> {
    let local_clock = ManualClock::new(t0());
    let local: Arc<dyn RateLimiter> = Arc::new(LocalLimiter::new(Arc::new(local_clock.clone())));
    let store_clock = ManualClock::new(t0());
    let store: Arc<dyn RateLimiter> = Arc::new(StoreLimiter::new(
        Arc::new(MemoryStore::new()),
        Arc::new(store_clock.clone()),
    ));
    vec![("local", local, local_clock), ("store", store, store_clock)]
}

fn policy() -> LimitPolicy {
    LimitPolicy {
        ip_messages: Some(Quota::per_minute(3).expect("quota")),
        alias_messages_per_hour: 2,
        user_forwards_per_day: 3,
        user_replies_per_day: 2,
        user_aliases_per_hour: 4,
        sender_domain_messages: Some(Quota::per_hour(2).expect("quota")),
    }
}

fn alias(messages_per_hour: Option<u32>) -> Alias {
    let mut alias = Alias::new(
        EmailAddress::parse("shop@alias.example").expect("address"),
        UserId::new(),
        DomainId::new(),
        Vec::new(),
        t0(),
    );
    alias.limits.messages_per_hour = messages_per_hour;
    alias
}

fn user() -> User {
    User::new(
        EmailAddress::parse("owner@example.org").expect("address"),
        Role::User,
        t0(),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// Runs `n` checks of one limit and returns how many passed.
async fn passes<F, Fut>(n: usize, mut check: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), smtpy_core::limits::Denial>>,
{
    let mut ok = 0;
    for _ in 0..n {
        if check().await.is_ok() {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn burst_then_denial_then_refill_after_the_emission_interval() {
    for (name, limiter, clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let client = ip("192.0.2.7");
        // 3 per minute: a burst of 3, then one every 20 s.
        for i in 0..3 {
            assert_eq!(
                limits.ip_message(client).await,
                Ok(()),
                "{name}: burst #{i}"
            );
        }
        let denial = limits.ip_message(client).await.expect_err("over the burst");
        assert_eq!(denial.scope, LimitScope::Ip, "{name}");
        assert_eq!(denial.retry_after, Duration::from_secs(20), "{name}");
        assert_eq!(denial.reply.code, 450, "{name}");
        assert_eq!(denial.reply.enhanced, (4, 7, 1), "{name}");
        assert!(denial.reply.is_temporary(), "{name}");
        assert!(
            denial.reply.text.contains("rate limit") && denial.reply.text.contains("20 s"),
            "{name}: {}",
            denial.reply
        );

        clock.advance(Duration::from_millis(19_999));
        let denial = limits.ip_message(client).await.expect_err("1 ms early");
        assert_eq!(denial.retry_after, Duration::from_millis(1), "{name}");
        assert!(denial.reply.text.contains("try again in 1 s"), "{name}");

        clock.advance(Duration::from_millis(1));
        assert_eq!(limits.ip_message(client).await, Ok(()), "{name}: refilled");
        assert!(
            limits.ip_message(client).await.is_err(),
            "{name}: one cell only"
        );

        // Another client is not affected.
        assert_eq!(limits.ip_message(ip("192.0.2.8")).await, Ok(()), "{name}");
        // After a full minute of silence the whole burst is back.
        clock.advance(Duration::from_secs(60));
        assert_eq!(passes(5, || limits.ip_message(client)).await, 3, "{name}");
        assert_eq!(limits.denials().ip, 5, "{name}");
    }
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_slash_64() {
    for (name, limiter, _clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff:ffff:ffff:ffff");
        let other = ip("2001:db8:1:3::1");
        assert_eq!(ip_key(a), "ip:2001:db8:1:2::/64");
        assert_eq!(passes(2, || limits.ip_message(a)).await, 2, "{name}");
        assert_eq!(
            passes(2, || limits.ip_message(b)).await,
            1,
            "{name}: same /64"
        );
        assert_eq!(passes(4, || limits.ip_message(other)).await, 3, "{name}");
        // IPv4 and its IPv4-mapped IPv6 form are one client.
        assert_eq!(passes(2, || limits.ip_message(ip("192.0.2.1"))).await, 2);
        assert_eq!(
            passes(2, || limits.ip_message(ip("::ffff:192.0.2.1"))).await,
            1,
            "{name}: mapped"
        );
    }
}

#[tokio::test]
async fn alias_override_replaces_the_default() {
    for (name, limiter, clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let default = alias(None);
        let raised = alias(Some(5));
        let lowered = alias(Some(1));
        let unlimited = alias(Some(0));
        assert_eq!(
            passes(10, || limits.alias_message(&default)).await,
            2,
            "{name}"
        );
        assert_eq!(
            passes(10, || limits.alias_message(&raised)).await,
            5,
            "{name}"
        );
        assert_eq!(
            passes(10, || limits.alias_message(&lowered)).await,
            1,
            "{name}"
        );
        assert_eq!(passes(500, || limits.alias_message(&unlimited)).await, 500);

        let denial = limits
            .alias_message(&default)
            .await
            .expect_err("still limited");
        assert_eq!((denial.reply.code, denial.reply.enhanced), (450, (4, 7, 1)));
        // 2 per hour: one every 30 minutes.
        assert_eq!(denial.retry_after, Duration::from_secs(1800), "{name}");
        clock.advance(Duration::from_secs(1800));
        assert_eq!(limits.alias_message(&default).await, Ok(()), "{name}");
        assert_eq!(limits.denials().alias, 8 + 5 + 9 + 1, "{name}");
    }
}

#[tokio::test]
async fn user_settings_override_the_quotas() {
    for (name, limiter, clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let plain = user();
        let mut custom = user();
        custom.settings.forwards_per_day = Some(1);
        custom.settings.replies_per_day = Some(4);
        custom.settings.aliases_per_hour = Some(0);

        assert_eq!(
            passes(10, || limits.user_forward(&plain)).await,
            3,
            "{name}"
        );
        assert_eq!(
            passes(10, || limits.user_forward(&custom)).await,
            1,
            "{name}"
        );
        assert_eq!(passes(10, || limits.user_reply(&plain)).await, 2, "{name}");
        assert_eq!(passes(10, || limits.user_reply(&custom)).await, 4, "{name}");
        assert_eq!(
            passes(10, || limits.user_new_alias(&plain)).await,
            4,
            "{name}"
        );
        assert_eq!(passes(100, || limits.user_new_alias(&custom)).await, 100);

        let denial = limits.user_forward(&plain).await.expect_err("quota");
        assert_eq!(denial.scope, LimitScope::UserForwards);
        assert_eq!((denial.reply.code, denial.reply.enhanced), (452, (4, 4, 5)));
        assert!(denial.reply.text.contains("quota"), "{}", denial.reply);
        // 3 per day: one every 8 hours.
        assert_eq!(denial.retry_after, Duration::from_secs(8 * 3600), "{name}");
        let denial = limits.user_new_alias(&plain).await.expect_err("quota");
        assert_eq!(denial.scope, LimitScope::UserNewAliases);
        assert_eq!(denial.reply.code, 452);

        // Quotas are separate per user and per kind.
        clock.advance(Duration::from_secs(8 * 3600));
        assert_eq!(limits.user_forward(&plain).await, Ok(()), "{name}");
        assert!(limits.user_forward(&plain).await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn sender_domains_are_limited_case_insensitively() {
    for (name, limiter, _clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let lower = DomainName::parse("sender.example").expect("domain");
        let upper = DomainName::parse("SENDER.Example").expect("domain");
        assert_eq!(limits.sender_domain(&lower).await, Ok(()));
        assert_eq!(limits.sender_domain(&upper).await, Ok(()));
        let denial = limits.sender_domain(&lower).await.expect_err("limited");
        assert_eq!(denial.scope, LimitScope::SenderDomain, "{name}");
        assert_eq!((denial.reply.code, denial.reply.enhanced), (450, (4, 7, 1)));
        let other = DomainName::parse("other.example").expect("domain");
        assert_eq!(limits.sender_domain(&other).await, Ok(()), "{name}");
    }
}

#[tokio::test]
async fn absent_quotas_do_not_limit() {
    for (name, limiter, _clock) in limiters() {
        let limits = Limits::new(
            limiter,
            LimitPolicy {
                ip_messages: None,
                alias_messages_per_hour: 0,
                user_forwards_per_day: 0,
                user_replies_per_day: 0,
                user_aliases_per_hour: 0,
                sender_domain_messages: None,
            },
        );
        let (a, u) = (alias(None), user());
        let d = DomainName::parse("sender.example").expect("domain");
        let c = ip("192.0.2.7");
        assert_eq!(passes(300, || limits.ip_message(c)).await, 300, "{name}");
        assert_eq!(passes(300, || limits.alias_message(&a)).await, 300);
        assert_eq!(passes(300, || limits.user_forward(&u)).await, 300);
        assert_eq!(passes(300, || limits.user_reply(&u)).await, 300);
        assert_eq!(passes(300, || limits.user_new_alias(&u)).await, 300);
        assert_eq!(passes(300, || limits.sender_domain(&d)).await, 300);
        assert_eq!(limits.denials().total(), 0, "{name}");
    }
}

#[tokio::test]
async fn every_denial_is_counted_in_its_scope() {
    for (name, limiter, _clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let (a, u) = (alias(None), user());
        let d = DomainName::parse("sender.example").expect("domain");
        let c = ip("198.51.100.1");
        // Allowed: ip 3, alias 2, forwards 3, replies 2, aliases 4, domain 2.
        passes(10, || limits.ip_message(c)).await;
        passes(11, || limits.alias_message(&a)).await;
        passes(12, || limits.user_forward(&u)).await;
        passes(13, || limits.user_reply(&u)).await;
        passes(14, || limits.user_new_alias(&u)).await;
        passes(15, || limits.sender_domain(&d)).await;
        let counts = limits.denials();
        assert_eq!(counts.ip, 7, "{name}");
        assert_eq!(counts.alias, 9, "{name}");
        assert_eq!(counts.user_forwards, 9, "{name}");
        assert_eq!(counts.user_replies, 11, "{name}");
        assert_eq!(counts.user_new_aliases, 10, "{name}");
        assert_eq!(counts.sender_domain, 13, "{name}");
        assert_eq!(counts.limiter_errors, 0, "{name}");
        assert_eq!(counts.total(), 7 + 9 + 9 + 11 + 10 + 13, "{name}");
        for scope in LimitScope::ALL {
            assert!(counts.get(scope) > 0, "{name}: {scope}");
        }
    }
}

/// A limiter whose store is down.
#[derive(Debug)]
struct Broken;

#[async_trait]
impl RateLimiter for Broken {
    async fn check(&self, _key: &str, _quota: &Quota, _cost: u32) -> Result<Decision, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
}

#[tokio::test]
async fn a_failing_limiter_denies_temporarily_and_is_counted() {
    let limits = Limits::new(Arc::new(Broken), policy());
    let denial = limits
        .ip_message(ip("192.0.2.7"))
        .await
        .expect_err("fail closed");
    assert_eq!(denial.scope, LimitScope::Ip);
    assert_eq!((denial.reply.code, denial.reply.enhanced), (451, (4, 3, 0)));
    assert!(denial.reply.is_temporary());
    assert_eq!(denial.retry_after, LIMITER_ERROR_RETRY);
    let denial = limits.user_forward(&user()).await.expect_err("fail closed");
    assert_eq!(denial.reply.code, 451);
    assert_eq!(denial.scope, LimitScope::UserForwards);
    let counts = limits.denials();
    assert_eq!((counts.ip, counts.user_forwards), (1, 1));
    assert_eq!(counts.limiter_errors, 2);
    // A disabled limit never reaches the limiter.
    let mut open = policy();
    open.ip_messages = None;
    let limits = Limits::new(Arc::new(Broken), open);
    assert_eq!(limits.ip_message(ip("192.0.2.7")).await, Ok(()));
}

/// One scenario, run against any limiter: returns every decision.
async fn scenario(limiter: &dyn RateLimiter, clock: &ManualClock) -> Vec<Decision> {
    let fast = Quota::new(10, Duration::from_secs(60), 3).expect("quota"); // one per 6 s
    let slow = Quota::per_hour(2).expect("quota");
    // (key, quota, advance before, cost)
    let steps: &[(&str, &Quota, u64, u32)] = &[
        ("a", &fast, 0, 1),
        ("a", &fast, 0, 1),
        ("b", &slow, 0, 1),
        ("a", &fast, 0, 1),
        ("a", &fast, 0, 1), // over the burst
        ("a", &fast, 100, 0),
        ("b", &slow, 0, 1),
        ("b", &slow, 0, 1), // over
        ("a", &fast, 5_899, 1),
        ("a", &fast, 1, 1),
        ("a", &fast, 0, 2),
        ("a", &fast, 12_000, 2),
        ("a", &fast, 0, 4), // above the burst: never
        ("b", &slow, 1_800_000, 1),
        ("b", &slow, 0, 1),
        ("a", &fast, 1_000_000, 3),
        ("c", &fast, 0, 0),
        ("c", &fast, 0, 3),
        ("c", &fast, 0, 1),
    ];
    let mut out = Vec::new();
    for (key, quota, advance, cost) in steps {
        clock.advance(Duration::from_millis(*advance));
        out.push(limiter.check(key, quota, *cost).await.expect("check"));
    }
    out
}

#[tokio::test]
async fn local_and_store_limiters_decide_alike() {
    let mut results = Vec::new();
    for (name, limiter, clock) in limiters() {
        results.push((name, scenario(limiter.as_ref(), &clock).await));
    }
    let (local, store) = (&results[0].1, &results[1].1);
    assert_eq!(local, store, "LocalLimiter and StoreLimiter disagree");
    // And both follow the algorithm: spot-check the verdicts.
    let allowed: Vec<bool> = local.iter().map(|d| d.allowed).collect();
    assert_eq!(
        allowed,
        [
            true, true, true, true, false, true, true, false, false, true, false, true, false,
            true, false, true, true, true, false
        ]
    );
    assert_eq!(local[12].retry_after_ms, Decision::RETRY_NEVER);
    // The first decision equals gcra::decide on an empty state.
    let fast = Quota::new(10, Duration::from_secs(60), 3).expect("quota");
    assert_eq!(local[0], decide(&fast, None, t0().as_unix_millis(), 1));
}

#[tokio::test]
async fn local_limiter_memory_is_bounded_under_100k_distinct_keys() {
    let clock = ManualClock::new(t0());
    let limiter = LocalLimiter::with_max_keys(Arc::new(clock.clone()), 10_000);
    assert_eq!(limiter.max_keys(), 10_000);
    let quota = Quota::per_day(5).expect("quota");

    // An exhausted key: its state lies far in the future.
    for _ in 0..5 {
        assert!(
            limiter
                .check("hot", &quota, 1)
                .await
                .expect("check")
                .allowed
        );
    }
    assert!(
        !limiter
            .check("hot", &quota, 1)
            .await
            .expect("check")
            .allowed
    );

    let started = Instant::now();
    let mut most = 0;
    for i in 0..100_000u32 {
        let d = limiter
            .check(&format!("flood-{i}"), &quota, 1)
            .await
            .expect("check");
        assert!(d.allowed, "a new key always gets its burst");
        if i % 1000 == 0 {
            most = most.max(limiter.len());
        }
    }
    let elapsed = started.elapsed();
    most = most.max(limiter.len());
    assert!(most <= 10_000, "held {most} keys");
    assert!(limiter.len() > 5_000, "the cap is used, not emptied");
    // Eviction forgets the keys closest to expiry, never the exhausted one.
    assert!(
        !limiter
            .check("hot", &quota, 1)
            .await
            .expect("check")
            .allowed,
        "a flood of new keys must not reset an exhausted key"
    );
    eprintln!("100k distinct keys under a 10k cap: {elapsed:?}, peak {most} keys");

    // Once every state has expired, the keys go away.
    clock.advance(Duration::from_secs(2 * 86_400));
    limiter.purge_expired();
    assert!(limiter.is_empty(), "{} keys left", limiter.len());
}

#[tokio::test]
async fn local_limiter_sweeps_expired_keys_by_itself() {
    let clock = ManualClock::new(t0());
    let limiter = LocalLimiter::with_max_keys(Arc::new(clock.clone()), 1_000_000);
    let quota = Quota::per_second(100).expect("quota");
    for i in 0..100_000u32 {
        // Each key's state expires 10 ms later; time moves 1 ms per key.
        clock.advance(Duration::from_millis(1));
        limiter
            .check(&format!("k{i}"), &quota, 1)
            .await
            .expect("check");
    }
    // Far below the cap: shards drop expired keys as they go.
    assert!(limiter.len() < 20_000, "{} keys held", limiter.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_never_over_admit() {
    for (name, limiter, _clock) in limiters() {
        let quota = Quota::new(50, Duration::from_secs(3600), 50).expect("quota");
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut allowed = 0u32;
                for _ in 0..10 {
                    if limiter
                        .check("shared", &quota, 1)
                        .await
                        .expect("check")
                        .allowed
                    {
                        allowed += 1;
                    }
                    tokio::task::yield_now().await;
                }
                allowed
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("task");
        }
        assert_eq!(total, 50, "{name}: 320 concurrent checks, burst 50");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limits_count_every_denial() {
    let clock = ManualClock::new(t0());
    let limits = Arc::new(Limits::new(
        Arc::new(LocalLimiter::new(Arc::new(clock.clone()))),
        policy(),
    ));
    let alias = Arc::new(alias(Some(20)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (limits, alias) = (limits.clone(), alias.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u32;
            for _ in 0..25 {
                if limits.alias_message(&alias).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.expect("task");
    }
    assert_eq!(ok, 20);
    assert_eq!(limits.denials().alias, 200 - 20);
    assert_eq!(clock.now(), t0());
}

#[test]
fn policy_deserialises_with_defaults() {
    let policy: LimitPolicy = serde_json::from_str("{}").expect("empty policy");
    assert_eq!(policy, LimitPolicy::default());
    let policy: LimitPolicy =
        serde_json::from_str(r#"{ "ip_messages": null, "user_replies_per_day": 7 }"#)
            .expect("policy");
    assert_eq!(policy.ip_messages, None);
    assert_eq!(policy.user_replies_per_day, 7);
    assert!(serde_json::from_str::<LimitPolicy>(r#"{ "ip_mesages": null }"#).is_err());
    assert!(
        serde_json::from_str::<LimitPolicy>(
            r#"{ "ip_messages": { "count": 0, "period_ms": 1000, "burst": 1 } }"#
        )
        .is_err(),
        "quotas are validated"
    );
}

#[tokio::test]
async fn a_new_policy_applies_to_the_next_check_and_keeps_what_was_spent() {
    for (name, limiter, _clock) in limiters() {
        let limits = Limits::new(limiter, policy());
        let a = alias(None);
        // 2 per hour: two pass, the third is denied.
        assert_eq!(passes(3, || limits.alias_message(&a)).await, 2, "{name}");
        // Raised to 5 per hour: a fresh alias gets the new burst.
        limits.set_policy(LimitPolicy {
            alias_messages_per_hour: 5,
            ..policy()
        });
        assert_eq!(limits.policy().alias_messages_per_hour, 5, "{name}");
        let b = alias(None);
        assert_eq!(passes(6, || limits.alias_message(&b)).await, 5, "{name}");
        // Lowered to 1 per hour: what `a` spent still counts, so it is denied at once.
        limits.set_policy(LimitPolicy {
            alias_messages_per_hour: 1,
            ..policy()
        });
        assert!(limits.alias_message(&a).await.is_err(), "{name}");
    }
}
