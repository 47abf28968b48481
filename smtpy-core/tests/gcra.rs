//! Tests for the GCRA rate limiter.

use std::time::Duration;

use proptest::prelude::*;
use smtpy_core::gcra::{Decision, Quota, QuotaError, decide};

/// Unix milliseconds for an arbitrary but realistic "now".
const NOW: i64 = 1_700_000_000_000;

fn quota(count: u32, period_ms: u64, burst: u32) -> Quota {
    Quota::new(count, Duration::from_millis(period_ms), burst).expect("valid quota")
}

/// Run `n` cost-1 requests at `now`, threading the state; returns the
/// decisions and the final state.
fn run_at(q: &Quota, mut tat: Option<i64>, now: i64, n: u32) -> (Vec<Decision>, Option<i64>) {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = decide(q, tat, now, 1);
        tat = Some(d.new_tat_ms);
        out.push(d);
    }
    (out, tat)
}

#[test]
fn constructors_and_accessors() {
    let q = Quota::per_minute(30).expect("quota");
    assert_eq!(q.count(), 30);
    assert_eq!(q.burst(), 30);
    assert_eq!(q.period(), Duration::from_secs(60));
    assert_eq!(q.emission_interval_ms(), 2_000);

    assert_eq!(
        Quota::per_second(10).expect("q").emission_interval_ms(),
        100
    );
    assert_eq!(
        Quota::per_hour(100).expect("q").emission_interval_ms(),
        36_000
    );
    assert_eq!(
        Quota::per_day(1000).expect("q").emission_interval_ms(),
        86_400
    );
    assert_eq!(
        Quota::per_second(1000).expect("q").emission_interval_ms(),
        1
    );

    let q = Quota::per_hour(10)
        .and_then(|q| q.with_burst(3))
        .expect("q");
    assert_eq!((q.count(), q.burst()), (10, 3));
    assert_eq!(q.period(), Duration::from_secs(3600));
}

#[test]
fn interval_rounds_up_so_rate_is_never_exceeded() {
    // 3 per second: 333.33 ms, rounded up to 334.
    assert_eq!(Quota::per_second(3).expect("q").emission_interval_ms(), 334);
    // 600 per second: 1.67 ms, rounded up to 2 (500 per second enforced).
    assert_eq!(Quota::per_second(600).expect("q").emission_interval_ms(), 2);
    // A sub-millisecond remainder in the period is rounded up too.
    let q = Quota::new(1, Duration::from_micros(1_500), 1).expect("q");
    assert_eq!(q.period(), Duration::from_millis(2));
    let q = Quota::new(1, Duration::from_nanos(1), 1).expect("q");
    assert_eq!(q.emission_interval_ms(), 1);
}

#[test]
fn invalid_quotas() {
    let cases: &[(u32, Duration, u32, QuotaError)] = &[
        (0, Duration::from_secs(1), 1, QuotaError::ZeroCount),
        (1, Duration::from_secs(1), 0, QuotaError::ZeroBurst),
        (1, Duration::ZERO, 1, QuotaError::ZeroPeriod),
        (
            1001,
            Duration::from_secs(1),
            1,
            QuotaError::RateTooHigh {
                count: 1001,
                period_ms: 1000,
            },
        ),
        (1, Duration::MAX, 1, QuotaError::PeriodTooLong),
    ];
    for (count, period, burst, expected) in cases {
        assert_eq!(
            Quota::new(*count, *period, *burst),
            Err(*expected),
            "{count} per {period:?} burst {burst}"
        );
    }
    assert_eq!(Quota::per_second(0), Err(QuotaError::ZeroCount));
    assert!(matches!(
        Quota::per_second(1001),
        Err(QuotaError::RateTooHigh { .. })
    ));
    assert!(Quota::per_day(86_400_000).is_ok());
    assert!(Quota::per_day(86_400_001).is_err());
    assert_eq!(
        Quota::per_minute(5).and_then(|q| q.with_burst(0)),
        Err(QuotaError::ZeroBurst)
    );
}

#[test]
fn serde_round_trip_validates() {
    let q = Quota::per_hour(100)
        .and_then(|q| q.with_burst(5))
        .expect("q");
    let json = serde_json::to_string(&q).expect("serialize");
    let back: Quota = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, q);
    for bad in [
        r#"{"count":0,"period_ms":1000,"burst":1}"#,
        r#"{"count":1,"period_ms":0,"burst":1}"#,
        r#"{"count":1,"period_ms":1000,"burst":0}"#,
        r#"{"count":2000,"period_ms":1000,"burst":1}"#,
    ] {
        assert!(serde_json::from_str::<Quota>(bad).is_err(), "{bad}");
    }
}

#[test]
fn fresh_state_allows_exactly_burst() {
    let table = [
        (1, 1_000, 1),
        (10, 1_000, 10),
        (10, 60_000, 3),
        (100, 3_600_000, 100),
        (5, 1_000, 20),
        (1000, 1000, 1000),
    ];
    for (count, period_ms, burst) in table {
        let q = quota(count, period_ms, burst);
        let (decisions, _) = run_at(&q, None, NOW, burst + 5);
        let allowed = decisions.iter().filter(|d| d.allowed).count();
        assert_eq!(allowed, burst as usize, "{q:?}");
        for (i, d) in decisions.iter().enumerate() {
            assert_eq!(d.allowed, i < burst as usize, "{q:?} event {i}");
            let expected_remaining = (burst as usize).saturating_sub(i + 1) as u32;
            assert_eq!(d.remaining, expected_remaining, "{q:?} event {i}");
            if d.allowed {
                assert_eq!(d.retry_after_ms, 0);
            } else {
                assert!(d.retry_after_ms > 0);
            }
        }
    }
}

#[test]
fn after_waiting_one_interval_one_more_passes() {
    let q = quota(10, 60_000, 4);
    let t = q.emission_interval_ms() as i64;
    let (_, tat) = run_at(&q, None, NOW, 4);
    assert!(!decide(&q, tat, NOW, 1).allowed);
    assert!(!decide(&q, tat, NOW + t - 1, 1).allowed);
    let d = decide(&q, tat, NOW + t, 1);
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(!decide(&q, Some(d.new_tat_ms), NOW + t, 1).allowed);
    // After a long idle period the full burst is available again.
    let (later, _) = run_at(&q, Some(d.new_tat_ms), NOW + 100 * t, 5);
    assert_eq!(later.iter().filter(|d| d.allowed).count(), 4);
}

#[test]
fn denied_keeps_state_and_retry_after_is_exact() {
    let q = quota(2, 1_000, 2);
    let (_, tat) = run_at(&q, None, NOW, 2);
    let denied = decide(&q, tat, NOW + 10, 1);
    assert!(!denied.allowed);
    assert_eq!(Some(denied.new_tat_ms), tat);
    assert_eq!(denied.retry_after_ms, 490);
    assert_eq!(denied.remaining, 0);
    let retry_at = NOW + 10 + denied.retry_after_ms as i64;
    assert!(!decide(&q, tat, retry_at - 1, 1).allowed);
    assert!(decide(&q, tat, retry_at, 1).allowed);

    // A denied request on a fresh key stores the equivalent of "no state".
    let big = decide(&q, None, NOW, 3);
    assert!(!big.allowed);
    assert_eq!(big.new_tat_ms, NOW);
}

#[test]
fn cost_counts_cells() {
    let q = quota(10, 1_000, 10);
    let d = decide(&q, None, NOW, 7);
    assert!(d.allowed);
    assert_eq!(d.remaining, 3);
    let d2 = decide(&q, Some(d.new_tat_ms), NOW, 4);
    assert!(!d2.allowed);
    assert_eq!(d2.remaining, 3);
    assert_eq!(d2.retry_after_ms, 100);
    let d3 = decide(&q, Some(d.new_tat_ms), NOW, 3);
    assert!(d3.allowed);
    assert_eq!(d3.remaining, 0);
}

#[test]
fn cost_zero_is_a_peek() {
    let q = quota(10, 1_000, 3);
    let peek = decide(&q, None, NOW, 0);
    assert!(peek.allowed);
    assert_eq!(peek.remaining, 3);
    assert_eq!(peek.new_tat_ms, NOW);

    let (_, tat) = run_at(&q, None, NOW, 2);
    let peek = decide(&q, tat, NOW, 0);
    assert!(peek.allowed);
    assert_eq!(peek.remaining, 1);
    assert_eq!(Some(peek.new_tat_ms), tat);

    // An old state is returned as is, not moved forward.
    let peek = decide(&q, Some(NOW - 1_000_000), NOW, 0);
    assert_eq!(peek.new_tat_ms, NOW - 1_000_000);
    assert_eq!(peek.remaining, 3);
}

#[test]
fn cost_above_burst_is_never_allowed() {
    let q = quota(10, 1_000, 3);
    for tat in [None, Some(i64::MIN), Some(NOW - 1_000_000), Some(NOW)] {
        let d = decide(&q, tat, NOW, 4);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, Decision::RETRY_NEVER);
        assert_eq!(d.new_tat_ms, tat.unwrap_or(NOW));
    }
}

#[test]
fn extreme_inputs_do_not_panic() {
    let quotas = [
        quota(1, u64::MAX, u32::MAX),
        quota(u32::MAX, u64::MAX, u32::MAX),
        quota(1, 1, 1),
        quota(1000, 1000, u32::MAX),
    ];
    let times = [
        i64::MIN,
        i64::MIN + 1,
        -1,
        0,
        1,
        NOW,
        i64::MAX - 1,
        i64::MAX,
    ];
    let costs = [0, 1, 2, u32::MAX - 1, u32::MAX];
    for q in &quotas {
        for &now in &times {
            for tat in std::iter::once(None).chain(times.iter().copied().map(Some)) {
                for &cost in &costs {
                    let d = decide(q, tat, now, cost);
                    if d.allowed {
                        assert_eq!(d.retry_after_ms, 0);
                    } else {
                        assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
                    }
                }
            }
        }
    }
}

#[test]
fn unrepresentable_tat_is_denied_not_wrapped() {
    let q = quota(1, 1_000, 1);
    let d = decide(&q, None, i64::MAX - 10, 1);
    assert!(!d.allowed);
    assert_eq!(d.retry_after_ms, Decision::RETRY_NEVER);
    assert_eq!(d.new_tat_ms, i64::MAX - 10);
}

fn arb_quota() -> impl Strategy<Value = Quota> {
    (1u32..=50, 1u64..=100_000, 1u32..=20).prop_filter_map("valid quota", |(c, p, b)| {
        Quota::new(c, Duration::from_millis(p), b).ok()
    })
}

proptest! {
    #[test]
    fn fresh_state_burst_property(q in arb_quota(), now in -1_000_000_000_000i64..4_000_000_000_000) {
        let (decisions, _) = run_at(&q, None, now, q.burst() + 3);
        let allowed = decisions.iter().take_while(|d| d.allowed).count();
        prop_assert_eq!(allowed, q.burst() as usize);
        prop_assert!(decisions.iter().skip(allowed).all(|d| !d.allowed));
    }

    /// Over any window of W ms, allowed cells <= burst + W / T, and also
    /// <= burst + W * count / period (the requested rate).
    #[test]
    fn window_bound(
        q in arb_quota(),
        start in 0i64..4_000_000_000_000,
        arrivals in proptest::collection::vec((0u64..5_000, 0u32..4), 1..200),
    ) {
        let t = u128::from(q.emission_interval_ms());
        let burst = u128::from(q.burst());
        let count = u128::from(q.count());
        let period = q.period().as_millis();
        let mut tat = None;
        let mut now = start;
        let mut allowed: Vec<(i64, u32)> = Vec::new();
        for (gap, cost) in arrivals {
            now += gap as i64;
            let d = decide(&q, tat, now, cost);
            if d.allowed {
                tat = Some(d.new_tat_ms);
                if cost > 0 {
                    allowed.push((now, cost));
                }
            } else {
                prop_assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
            }
        }
        for i in 0..allowed.len() {
            let mut cells: u128 = 0;
            for &(at, cost) in &allowed[i..] {
                cells += u128::from(cost);
                let w = (at - allowed[i].0) as u128;
                prop_assert!(cells * t <= w + burst * t, "{} cells in {} ms, T={}", cells, w, t);
                prop_assert!(cells * period <= burst * period + w * count);
            }
        }
    }

    /// A denied request is allowed after exactly `retry_after_ms` (and not
    /// one millisecond earlier), and denial never changes state.
    #[test]
    fn retry_after_is_sufficient_and_tight(
        q in arb_quota(),
        start in 0i64..4_000_000_000_000,
        arrivals in proptest::collection::vec((0u64..500, 1u32..4), 1..100),
    ) {
        let mut tat = None;
        let mut now = start;
        for (gap, cost) in arrivals {
            now += gap as i64;
            let d = decide(&q, tat, now, cost);
            if d.allowed {
                tat = Some(d.new_tat_ms);
                continue;
            }
            prop_assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
            if cost > q.burst() {
                prop_assert_eq!(d.retry_after_ms, Decision::RETRY_NEVER);
                continue;
            }
            prop_assert!(d.retry_after_ms > 0);
            let at = now + d.retry_after_ms as i64;
            prop_assert!(decide(&q, tat, at, cost).allowed);
            prop_assert!(!decide(&q, tat, at - 1, cost).allowed);
        }
    }

    #[test]
    fn arbitrary_inputs_never_panic(
        count in any::<u32>(),
        period_ms in any::<u64>(),
        burst in any::<u32>(),
        tat in any::<Option<i64>>(),
        now in any::<i64>(),
        cost in any::<u32>(),
    ) {
        let Ok(q) = Quota::new(count, Duration::from_millis(period_ms), burst) else {
            return Ok(());
        };
        prop_assert!(q.emission_interval_ms() >= 1);
        let d = decide(&q, tat, now, cost);
        if d.allowed {
            prop_assert_eq!(d.retry_after_ms, 0);
            prop_assert!(d.remaining <= q.burst());
            prop_assert!(cost == 0 || d.remaining < q.burst());
            prop_assert!(cost <= q.burst());
        } else {
            prop_assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
            prop_assert!(d.retry_after_ms > 0);
        }
        if cost == 0 {
            prop_assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
        }
    }

    #[test]
    fn cost_above_burst_always_denied(
        q in arb_quota(),
        extra in 1u32..1000,
        tat in any::<Option<i64>>(),
        now in any::<i64>(),
    ) {
        let cost = q.burst().saturating_add(extra);
        let d = decide(&q, tat, now, cost);
        prop_assert!(!d.allowed);
        prop_assert_eq!(d.retry_after_ms, Decision::RETRY_NEVER);
        prop_assert_eq!(d.new_tat_ms, tat.unwrap_or(now));
    }
}
