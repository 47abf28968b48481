//! [`RateLimitStore`](crate::store::RateLimitStore): GCRA state shared by every instance.

use std::time::Duration;

use super::fixtures::{self, T0, unique};
use crate::gcra::{Decision, Quota, decide};
use crate::store::Store;
use crate::time::Timestamp;

/// `T0` plus `ms` milliseconds.
fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0.as_unix_millis() + ms)
}

/// A quota of `count` per `period_secs` with `burst`.
fn quota(count: u32, period_secs: u64, burst: u32) -> Quota {
    Quota::new(count, Duration::from_secs(period_secs), burst).expect("valid test quota")
}

/// Every decision equals [`decide`] applied to the state the store should hold.
pub async fn rate_limit_matches_gcra_decide(store: &dyn Store) {
    let quota = quota(10, 60, 3); // one every 6 s, three at once
    let key = unique("rl-decide");
    let steps: [(i64, u32); 16] = [
        (0, 1),
        (0, 1),
        (0, 1),
        (0, 1),     // over the burst
        (100, 0),   // peek
        (5_999, 1), // just too early
        (6_000, 1), // one cell back
        (6_000, 1),
        (12_000, 2), // two cells back, spent at once
        (12_000, 0),
        (12_001, 4), // more than the burst: never
        (100_000, 3),
        (100_000, 1),
        (99_000, 1), // a clock behind the stored state
        (118_000, 1),
        (1_000_000, 0),
    ];
    let mut tat: Option<i64> = None;
    for (i, (offset, cost)) in steps.into_iter().enumerate() {
        let now = at_ms(offset);
        let want = decide(&quota, tat, now.as_unix_millis(), cost);
        let got = store
            .check_rate(&key, &quota, now, cost)
            .await
            .expect("check_rate");
        assert_eq!(
            got, want,
            "step {i}: check_rate({offset} ms, cost {cost}) must equal gcra::decide"
        );
        if want.allowed {
            tat = Some(want.new_tat_ms);
        }
    }
}

/// A fresh key allows exactly the burst, then one more per emission interval.
pub async fn rate_limit_burst_then_denied_then_allowed(store: &dyn Store) {
    let quota = quota(60, 60, 5); // one per second, five at once
    let key = unique("rl-burst");
    let check = |now: Timestamp| {
        let key = key.clone();
        async move {
            store
                .check_rate(&key, &quota, now, 1)
                .await
                .expect("check_rate")
        }
    };
    for remaining in (0..5).rev() {
        let d = check(at_ms(0)).await;
        assert!(d.allowed, "within the burst");
        assert_eq!(d.remaining, remaining);
    }
    let denied = check(at_ms(0)).await;
    assert!(!denied.allowed, "the burst is spent");
    assert_eq!(denied.retry_after_ms, 1_000);
    assert!(
        !check(at_ms(999)).await.allowed,
        "one millisecond too early"
    );
    let again: Decision = check(at_ms(1_000)).await;
    assert!(again.allowed, "allowed again after the emission interval");
    assert!(!check(at_ms(1_000)).await.allowed, "and only once");
    assert!(
        check(at_ms(10_000)).await.allowed,
        "capacity refills over time"
    );
}

/// Spending one key's capacity leaves other keys untouched.
pub async fn rate_limit_keys_are_independent(store: &dyn Store) {
    let quota = quota(1, 3_600, 2);
    let (a, b) = (unique("rl-a"), unique("rl-b"));
    for _ in 0..2 {
        assert!(
            store
                .check_rate(&a, &quota, T0, 1)
                .await
                .expect("check_rate")
                .allowed
        );
    }
    assert!(
        !store
            .check_rate(&a, &quota, T0, 1)
            .await
            .expect("check_rate")
            .allowed
    );
    for _ in 0..2 {
        assert!(
            store
                .check_rate(&b, &quota, T0, 1)
                .await
                .expect("check_rate")
                .allowed,
            "key b is fresh"
        );
    }
    assert!(
        !store
            .check_rate(&b, &quota, T0, 1)
            .await
            .expect("check_rate")
            .allowed
    );
    assert!(
        !store
            .check_rate(&a, &quota, T0, 1)
            .await
            .expect("check_rate")
            .allowed,
        "key a stays spent"
    );
}

/// 32 concurrent calls on a fresh key with a burst of 10: exactly 10 are allowed.
pub async fn rate_limit_concurrent_spends_burst_exactly(store: &dyn Store) {
    let quota = quota(10, 3_600, 10);
    let key = unique("rl-race");
    let results = fixtures::concurrently(32, |_| {
        let key = key.clone();
        async move { store.check_rate(&key, &quota, T0, 1).await }
    })
    .await;
    let mut allowed = 0;
    for r in results {
        if r.expect("check_rate").allowed {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 10,
        "concurrent calls must never spend the same capacity twice"
    );
    assert!(
        !store
            .check_rate(&key, &quota, T0, 1)
            .await
            .expect("check_rate")
            .allowed
    );
}

/// `purge_rate_limits` drops state whose TAT is at or before the cut-off, and only that.
pub async fn rate_limit_purge(store: &dyn Store) {
    // Long before every other test's rate-limit state (T0).
    let era = |secs: i64| Timestamp::from_unix_secs(800_000_000 + secs);
    let quota = quota(1, 1, 1); // one per second, one at once
    let (old, edge, recent) = (unique("rl-old"), unique("rl-edge"), unique("rl-recent"));
    for (key, now) in [(&old, era(0)), (&edge, era(49)), (&recent, era(100))] {
        assert!(
            store
                .check_rate(key, &quota, now, 1)
                .await
                .expect("check_rate")
                .allowed
        );
    }
    // TATs: old = era(1), edge = era(50), recent = era(101).
    let purged = store
        .purge_rate_limits(era(50))
        .await
        .expect("purge_rate_limits");
    assert!(
        purged >= 2,
        "two states at or before the cut-off, purged {purged}"
    );
    assert_eq!(
        store
            .purge_rate_limits(era(50))
            .await
            .expect("purge_rate_limits"),
        0,
        "nothing left"
    );
    assert!(
        !store
            .check_rate(&recent, &quota, era(100), 1)
            .await
            .expect("check_rate")
            .allowed,
        "state after the cut-off is kept"
    );
    assert!(
        store
            .purge_rate_limits(era(101))
            .await
            .expect("purge_rate_limits")
            >= 1
    );
    assert!(
        store
            .check_rate(&recent, &quota, era(100), 1)
            .await
            .expect("check_rate")
            .allowed,
        "purged state behaves as fresh"
    );
}
