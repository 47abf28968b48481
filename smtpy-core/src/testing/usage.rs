//! [`UsageStore`](crate::store::UsageStore): daily usage counters.

use super::expect;
use super::fixtures::{self, T0};
use crate::ids::{AliasId, UserId};
use crate::model::{DailyUsage, UsageRecord, UsageSubject};
use crate::store::{Access, Store};
use crate::time::{Day, Timestamp};

/// The day `n` days after `day`.
fn plus(day: Day, n: i32) -> Day {
    Day::from_days_since_epoch(day.days_since_epoch() + n)
}

/// A usage row.
fn row(day: Day, messages: u64, bytes: u64) -> DailyUsage {
    DailyUsage {
        day,
        messages,
        bytes,
    }
}

/// A usage record.
fn record(user: UserId, alias: Option<AliasId>, at: Timestamp, messages: u64) -> UsageRecord {
    UsageRecord {
        user,
        alias,
        at,
        messages,
        bytes: messages * 100,
    }
}

/// Records add to the user's and the alias's counter of their UTC day;
/// ranges are inclusive, ascending, and skip days without usage.
pub async fn usage_records_sum_per_day(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let second = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let (other, _, _, their_alias) = fixtures::owner_with_alias(store).await;
    let d0 = T0.day();
    let d1 = d0.next();
    let last_ms_of_d0 = Timestamp::from_unix_millis(d1.start().as_unix_millis() - 1);
    let records = [
        record(owner.id, Some(alias.id), d0.start(), 1),
        record(owner.id, Some(alias.id), last_ms_of_d0, 2),
        record(owner.id, Some(alias.id), d1.start(), 4),
        record(
            owner.id,
            None,
            Timestamp::from_unix_millis(d0.start().as_unix_millis() + 7_200_000),
            8,
        ),
        record(owner.id, Some(second.id), plus(d0, 3).start(), 16),
        record(other.id, Some(their_alias.id), d0.start(), 32),
    ];
    for r in &records {
        store.record_usage(r).await.expect("record_usage");
    }
    let (to, me) = (plus(d0, 3), Access::Owner(owner.id));
    let usage = |access, subject, from, to| async move {
        store.usage(access, subject, from, to).await.expect("usage")
    };
    for access in [me, Access::System] {
        assert_eq!(
            usage(access, UsageSubject::Alias(alias.id), d0, to).await,
            vec![row(d0, 3, 300), row(d1, 4, 400)],
            "alias counters per UTC day"
        );
        assert_eq!(
            usage(access, UsageSubject::User(owner.id), d0, to).await,
            vec![
                row(d0, 11, 1100),
                row(d1, 4, 400),
                row(plus(d0, 3), 16, 1600)
            ],
            "user counters include every alias and alias-less traffic"
        );
        assert_eq!(
            usage(access, UsageSubject::Alias(second.id), d0, to).await,
            vec![row(to, 16, 1600)]
        );
    }
    let user = UsageSubject::User(owner.id);
    assert_eq!(
        usage(me, user, d1, to).await,
        vec![row(d1, 4, 400), row(to, 16, 1600)],
        "inclusive range"
    );
    assert_eq!(
        usage(me, user, d1, d1).await,
        vec![row(d1, 4, 400)],
        "one-day range"
    );
    assert!(
        usage(me, user, plus(d0, 2), plus(d0, 2)).await.is_empty(),
        "a day without usage"
    );
    assert!(
        usage(me, user, plus(d0, -5), plus(d0, -1)).await.is_empty(),
        "before any usage"
    );
    assert_eq!(
        usage(Access::System, UsageSubject::User(other.id), d0, to).await,
        vec![row(d0, 32, 3200)],
        "another user's usage is separate"
    );
}

/// An owner asking for another user's (or an unknown) subject gets `NotFound`.
pub async fn usage_owner_scoping(store: &dyn Store) {
    let (a, _, _, alias) = fixtures::owner_with_alias(store).await;
    let b = fixtures::user(store).await;
    let day = T0.day();
    store
        .record_usage(&record(a.id, Some(alias.id), T0, 1))
        .await
        .expect("record_usage");
    let as_b = Access::Owner(b.id);
    expect::not_found(
        store
            .usage(as_b, UsageSubject::Alias(alias.id), day, day)
            .await,
        "another user's alias",
    );
    expect::not_found(
        store.usage(as_b, UsageSubject::User(a.id), day, day).await,
        "another user",
    );
    expect::not_found(
        store
            .usage(
                Access::Owner(a.id),
                UsageSubject::Alias(AliasId::new()),
                day,
                day,
            )
            .await,
        "an unknown alias",
    );
    assert!(
        store
            .usage(as_b, UsageSubject::User(b.id), day, day)
            .await
            .expect("own usage")
            .is_empty()
    );
    assert_eq!(
        store
            .usage(Access::Owner(a.id), UsageSubject::Alias(alias.id), day, day)
            .await
            .expect("usage"),
        vec![row(day, 1, 100)]
    );
}
