//! [`EventStore`](crate::store::EventStore): the per-message delivery event log.
//!
//! Events name owners, aliases, mailboxes and messages that need not exist
//! (the log is history), so these tests use fresh ids: every test's events
//! are told apart from other tests' by those ids, even on a shared store.

use super::expect;
use super::fixtures::{new_event, t};
use crate::ids::{AliasId, MailboxId, MessageId, UserId};
use crate::model::{DeliveryEvent, EventFilter, EventKind};
use crate::store::{Access, PageRequest, Store};
use crate::time::Timestamp;

/// Every kind of event there is.
const ALL_KINDS: [EventKind; 12] = [
    EventKind::Accepted,
    EventKind::Refused,
    EventKind::Blocked,
    EventKind::Quarantined,
    EventKind::RateLimited,
    EventKind::Delivered,
    EventKind::Deferred,
    EventKind::Failed,
    EventKind::Bounced,
    EventKind::Replied,
    EventKind::Notified,
    EventKind::AutoDisabled,
];

/// Every event visible to `access` passing `filter`, paging `limit` at a
/// time; checks the newest-first order and the page sizes on the way.
pub(crate) async fn list_all(
    store: &dyn Store,
    access: Access,
    filter: &EventFilter,
    limit: u32,
) -> Vec<DeliveryEvent> {
    let mut seen: Vec<DeliveryEvent> = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = store
            .list_events(access, filter, page)
            .await
            .expect("list_events");
        let max = limit.max(1) as usize;
        assert!(got.items.len() <= max, "a page holds at most `limit` rows");
        if got.next.is_some() {
            assert_eq!(got.items.len(), max, "only the last page may be short");
        }
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, limit),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id > w[1].id),
        "list_events is newest first (strictly decreasing ids)"
    );
    seen
}

/// `events` newest first: by descending id.
fn newest_first(events: &[&DeliveryEvent]) -> Vec<DeliveryEvent> {
    let mut v: Vec<DeliveryEvent> = events.iter().map(|e| (*e).clone()).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.id));
    v
}

/// Appends `events` one batch at a time, panicking on refusal.
async fn append(store: &dyn Store, events: &[&DeliveryEvent]) {
    let batch: Vec<DeliveryEvent> = events.iter().map(|e| (*e).clone()).collect();
    store
        .append_events(&batch)
        .await
        .expect("append_events of fresh events");
}

/// Only this alias's events.
fn of_alias(alias: AliasId) -> EventFilter {
    EventFilter {
        alias: Some(alias),
        ..EventFilter::default()
    }
}

/// Events with every field set (and of every kind) read back equal, newest
/// first; an empty batch is fine; a taken id is `AlreadyExists`.
pub async fn event_append_list_round_trip(store: &dyn Store) {
    let owner = UserId::new();
    let mut full = new_event(EventKind::Quarantined, Some(owner), t(5))
        .with("dmarc", "fail")
        .with("spf", "softfail")
        .with("ünïcode key", "välue ✓")
        .with("empty", "")
        .with("reply", "550 5.7.1 \"quoted\" \\ backslash\nnew line");
    full.alias = Some(AliasId::new());
    full.mailbox = Some(MailboxId::new());
    full.message = Some(MessageId::new());
    full.sender = Some("Bob.Sender+tag@Outside.Example".into());
    let mut bare = DeliveryEvent::new(EventKind::Refused, t(6));
    bare.owner = Some(owner);
    store
        .append_events(&[full.clone(), bare.clone()])
        .await
        .expect("append_events");
    store
        .append_events(&[])
        .await
        .expect("an empty batch is fine");

    let mine = list_all(store, Access::Owner(owner), &EventFilter::default(), 50).await;
    assert_eq!(
        mine,
        newest_first(&[&full, &bare]),
        "events read back as written, newest first"
    );
    let by_message = EventFilter {
        message: full.message,
        ..EventFilter::default()
    };
    assert_eq!(
        list_all(store, Access::System, &by_message, 50).await,
        vec![full.clone()]
    );

    // Every kind round-trips.
    let kinds_owner = UserId::new();
    let every_kind: Vec<DeliveryEvent> = ALL_KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| new_event(*kind, Some(kinds_owner), t(i as i64)))
        .collect();
    store
        .append_events(&every_kind)
        .await
        .expect("append_events of every kind");
    let refs: Vec<&DeliveryEvent> = every_kind.iter().collect();
    assert_eq!(
        list_all(
            store,
            Access::Owner(kinds_owner),
            &EventFilter::default(),
            50
        )
        .await,
        newest_first(&refs)
    );
    for kind in ALL_KINDS {
        let only = EventFilter {
            kinds: vec![kind],
            ..EventFilter::default()
        };
        let got = list_all(store, Access::Owner(kinds_owner), &only, 50).await;
        assert_eq!(
            got.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![kind],
            "kind {kind:?} filters exactly"
        );
    }

    let mut dup = new_event(EventKind::Delivered, None, t(7));
    dup.id = full.id;
    expect::already_exists(store.append_events(&[dup]).await, "event id taken");
    assert_eq!(
        list_all(store, Access::System, &by_message, 50).await,
        vec![full],
        "a refused duplicate overwrites nothing"
    );
}

/// Paging 4 at a time while new events arrive between pages returns each
/// event that existed at the start exactly once, newest first; the new ones
/// are never on a later page but head the next listing.
pub async fn event_list_newest_first_pagination_under_inserts(store: &dyn Store) {
    let owner = UserId::new();
    let me = Access::Owner(owner);
    let all = EventFilter::default();
    let mut events = Vec::new();
    for i in 0..9 {
        // `at` deliberately out of id order: the order is by id.
        events.push(new_event(EventKind::Delivered, Some(owner), t(100 - i)));
    }
    let (first, rest) = events.split_at(5);
    store
        .append_events(first)
        .await
        .expect("append_events of a batch");
    for e in rest {
        append(store, &[e]).await;
    }
    let refs: Vec<&DeliveryEvent> = events.iter().collect();
    let expected = newest_first(&refs);

    let mut inserted = Vec::new();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = store
            .list_events(me, &all, page)
            .await
            .expect("list_events");
        sizes.push(got.items.len());
        seen.extend(got.items);
        // Newer events arrive between pages.
        for _ in 0..2 {
            let e = new_event(EventKind::Accepted, Some(owner), t(50));
            append(store, &[&e]).await;
            inserted.push(e);
        }
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 4),
            None => break,
        }
    }
    assert_eq!(sizes, vec![4, 4, 1]);
    assert_eq!(
        seen, expected,
        "each event once, newest first, none of the new ones"
    );

    let mut everything: Vec<&DeliveryEvent> = events.iter().collect();
    everything.extend(inserted.iter());
    let now = list_all(store, me, &all, 5).await;
    assert_eq!(now, newest_first(&everything));
    assert_eq!(
        now[..inserted.len()],
        newest_first(&inserted.iter().collect::<Vec<_>>())[..],
        "the new events come first"
    );
    assert_eq!(
        list_all(store, me, &all, 0).await,
        now,
        "limit 0 pages one by one"
    );
    assert_eq!(
        list_all(store, me, &all, 10_000).await,
        now,
        "limit clamped"
    );
}

/// The events of [`scenario`].
struct Scenario {
    owner: UserId,
    alias: [AliasId; 2],
    mailbox: [MailboxId; 2],
    message: [MessageId; 2],
    /// `e[0]`… in creation (id) order; see [`scenario`].
    e: Vec<DeliveryEvent>,
}

/// One owner's six events over two aliases, two mailboxes, two messages:
///
/// | event | kind | alias | mailbox | message | at |
/// | --- | --- | --- | --- | --- | --- |
/// | e0 | Accepted | a0 | — | g0 | t(10) |
/// | e1 | Delivered | a0 | m0 | g0 | t(20) |
/// | e2 | Bounced | a0 | m0 | g0 | t(30) |
/// | e3 | Delivered | a1 | m1 | g1 | t(15) |
/// | e4 | Deferred | a1 | m0 | g1 | t(25) |
/// | e5 | Refused | — | — | — | t(40) |
async fn scenario(store: &dyn Store) -> Scenario {
    let owner = UserId::new();
    let alias = [AliasId::new(), AliasId::new()];
    let mailbox = [MailboxId::new(), MailboxId::new()];
    let message = [MessageId::new(), MessageId::new()];
    // kind, alias, mailbox, message (indexes into the arrays above), at.
    type Row = (EventKind, Option<usize>, Option<usize>, Option<usize>, i64);
    let rows: [Row; 6] = [
        (EventKind::Accepted, Some(0), None, Some(0), 10),
        (EventKind::Delivered, Some(0), Some(0), Some(0), 20),
        (EventKind::Bounced, Some(0), Some(0), Some(0), 30),
        (EventKind::Delivered, Some(1), Some(1), Some(1), 15),
        (EventKind::Deferred, Some(1), Some(0), Some(1), 25),
        (EventKind::Refused, None, None, None, 40),
    ];
    let e: Vec<DeliveryEvent> = rows
        .iter()
        .map(|&(kind, a, m, g, at)| {
            let mut ev = new_event(kind, Some(owner), t(at));
            ev.alias = a.map(|i| alias[i]);
            ev.mailbox = m.map(|i| mailbox[i]);
            ev.message = g.map(|i| message[i]);
            ev
        })
        .collect();
    store
        .append_events(&e)
        .await
        .expect("append_events of the scenario");
    Scenario {
        owner,
        alias,
        mailbox,
        message,
        e,
    }
}

/// Asserts that `filter` lists exactly `expected` (newest first) for the
/// scenario's owner, and — when `system` — for `System` too, and that it
/// agrees with [`EventFilter::matches`].
async fn check_filter(
    store: &dyn Store,
    s: &Scenario,
    filter: &EventFilter,
    expected: &[usize],
    system: bool,
) {
    let want = newest_first(&expected.iter().map(|&i| &s.e[i]).collect::<Vec<_>>());
    let reference: Vec<&DeliveryEvent> = s.e.iter().filter(|e| filter.matches(e)).collect();
    assert_eq!(
        newest_first(&reference),
        want,
        "the test's expectation for {filter:?} must match EventFilter::matches"
    );
    for limit in [50, 1] {
        assert_eq!(
            list_all(store, Access::Owner(s.owner), filter, limit).await,
            want,
            "owner list with {filter:?} (limit {limit})"
        );
    }
    if system {
        assert_eq!(
            list_all(store, Access::System, filter, 2).await,
            want,
            "System list with {filter:?}"
        );
    }
}

/// Each filter field on its own: alias, mailbox, message, kinds, since.
pub async fn event_filter_each_field(store: &dyn Store) {
    let s = scenario(store).await;
    let f = EventFilter::default;
    check_filter(store, &s, &f(), &[0, 1, 2, 3, 4, 5], false).await;
    for (alias, expected) in [(s.alias[0], &[0, 1, 2][..]), (s.alias[1], &[3, 4][..])] {
        let filter = EventFilter {
            alias: Some(alias),
            ..f()
        };
        check_filter(store, &s, &filter, expected, true).await;
    }
    for (mailbox, expected) in [(s.mailbox[0], &[1, 2, 4][..]), (s.mailbox[1], &[3][..])] {
        let filter = EventFilter {
            mailbox: Some(mailbox),
            ..f()
        };
        check_filter(store, &s, &filter, expected, true).await;
    }
    for (message, expected) in [(s.message[0], &[0, 1, 2][..]), (s.message[1], &[3, 4][..])] {
        let filter = EventFilter {
            message: Some(message),
            ..f()
        };
        check_filter(store, &s, &filter, expected, true).await;
    }
    let unknown = EventFilter {
        alias: Some(AliasId::new()),
        ..f()
    };
    check_filter(store, &s, &unknown, &[], true).await;

    let kinds = |kinds: &[EventKind]| EventFilter {
        kinds: kinds.to_vec(),
        ..f()
    };
    check_filter(store, &s, &kinds(&[EventKind::Delivered]), &[1, 3], false).await;
    check_filter(
        store,
        &s,
        &kinds(&[EventKind::Bounced, EventKind::Deferred]),
        &[2, 4],
        false,
    )
    .await;
    check_filter(
        store,
        &s,
        &kinds(&[EventKind::Refused, EventKind::Refused]),
        &[5],
        false,
    )
    .await;
    check_filter(store, &s, &kinds(&[EventKind::Replied]), &[], false).await;
    check_filter(store, &s, &kinds(&ALL_KINDS), &[0, 1, 2, 3, 4, 5], false).await;

    // `since` is by `at`, inclusive, not by id: e3 is newer than e2 by id
    // but older by `at`.
    let since = |secs| EventFilter {
        since: Some(t(secs)),
        ..f()
    };
    check_filter(store, &s, &since(25), &[2, 4, 5], false).await;
    check_filter(store, &s, &since(26), &[2, 5], false).await;
    check_filter(store, &s, &since(15), &[1, 2, 3, 4, 5], false).await;
    check_filter(store, &s, &since(10), &[0, 1, 2, 3, 4, 5], false).await;
    check_filter(store, &s, &since(41), &[], false).await;
}

/// Filter fields combined: every set field must match.
pub async fn event_filter_combined(store: &dyn Store) {
    let s = scenario(store).await;
    let f = EventFilter::default;
    let cases: Vec<(EventFilter, &[usize])> = vec![
        (
            EventFilter {
                alias: Some(s.alias[0]),
                kinds: vec![EventKind::Delivered, EventKind::Bounced],
                ..f()
            },
            &[1, 2],
        ),
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                since: Some(t(21)),
                ..f()
            },
            &[2, 4],
        ),
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                kinds: vec![EventKind::Bounced],
                since: Some(t(0)),
                ..f()
            },
            &[2],
        ),
        (
            EventFilter {
                alias: Some(s.alias[0]),
                mailbox: Some(s.mailbox[0]),
                message: Some(s.message[0]),
                kinds: vec![EventKind::Bounced, EventKind::Delivered],
                since: Some(t(30)),
            },
            &[2],
        ),
        (
            EventFilter {
                alias: Some(s.alias[1]),
                mailbox: Some(s.mailbox[0]),
                ..f()
            },
            &[4],
        ),
        (
            EventFilter {
                alias: Some(s.alias[0]),
                message: Some(s.message[1]),
                ..f()
            },
            &[],
        ),
        (
            EventFilter {
                message: Some(s.message[1]),
                kinds: vec![EventKind::Delivered, EventKind::Deferred],
                ..f()
            },
            &[3, 4],
        ),
        (
            EventFilter {
                kinds: vec![EventKind::Delivered, EventKind::Refused],
                since: Some(t(16)),
                ..f()
            },
            &[1, 5],
        ),
    ];
    for (filter, expected) in &cases {
        let scoped = filter.alias.is_some() || filter.mailbox.is_some() || filter.message.is_some();
        check_filter(store, &s, filter, expected, scoped).await;
    }
}

/// An owner sees only events whose `owner` is them: another owner's events
/// (and events without an owner) are absent — an empty page, not an error,
/// whatever the filter names. `System` sees them all.
pub async fn event_owner_scoping(store: &dyn Store) {
    let (a, b, nobody) = (UserId::new(), UserId::new(), UserId::new());
    let (alias_a, alias_b) = (AliasId::new(), AliasId::new());
    let message = MessageId::new();
    let mut of_a = new_event(EventKind::Delivered, Some(a), t(1));
    of_a.alias = Some(alias_a);
    of_a.message = Some(message);
    let mut unowned = new_event(EventKind::Refused, None, t(2));
    unowned.alias = Some(alias_a);
    unowned.message = Some(message);
    let mut of_b = new_event(EventKind::Bounced, Some(b), t(3));
    of_b.alias = Some(alias_b);
    of_b.message = Some(message);
    append(store, &[&of_a, &unowned, &of_b]).await;

    let all = EventFilter::default();
    assert_eq!(
        list_all(store, Access::Owner(a), &all, 50).await,
        vec![of_a.clone()]
    );
    assert_eq!(
        list_all(store, Access::Owner(b), &all, 50).await,
        vec![of_b.clone()]
    );
    let page = store
        .list_events(Access::Owner(a), &of_alias(alias_b), PageRequest::default())
        .await
        .expect("another owner's alias: an empty page, not an error");
    assert!(page.items.is_empty() && page.next.is_none(), "{page:?}");
    let page = store
        .list_events(Access::Owner(nobody), &all, PageRequest::default())
        .await
        .expect("an owner without events");
    assert!(page.items.is_empty() && page.next.is_none(), "{page:?}");
    assert_eq!(
        list_all(store, Access::Owner(a), &of_alias(alias_a), 50).await,
        vec![of_a.clone()],
        "an unowned event on the owner's alias stays hidden from the owner"
    );
    let by_message = EventFilter {
        message: Some(message),
        ..EventFilter::default()
    };
    assert_eq!(
        list_all(store, Access::Owner(b), &by_message, 1).await,
        vec![of_b.clone()]
    );
    assert_eq!(
        list_all(store, Access::System, &by_message, 1).await,
        newest_first(&[&of_a, &unowned, &of_b]),
        "System sees every owner's events and unowned ones"
    );
}

/// `count_events` counts exactly what `list_events` lists under `System`.
pub async fn event_count(store: &dyn Store) {
    let s = scenario(store).await;
    let f = EventFilter::default;
    let filters = [
        (
            EventFilter {
                alias: Some(s.alias[0]),
                ..f()
            },
            3,
        ),
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                ..f()
            },
            3,
        ),
        (
            EventFilter {
                message: Some(s.message[1]),
                ..f()
            },
            2,
        ),
        // The bounce threshold question.
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                kinds: vec![EventKind::Bounced],
                since: Some(t(0)),
                ..f()
            },
            1,
        ),
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                kinds: vec![EventKind::Bounced],
                since: Some(t(31)),
                ..f()
            },
            0,
        ),
        (
            EventFilter {
                mailbox: Some(s.mailbox[0]),
                kinds: vec![EventKind::Delivered, EventKind::Deferred],
                ..f()
            },
            2,
        ),
        (
            EventFilter {
                alias: Some(s.alias[1]),
                mailbox: Some(s.mailbox[0]),
                message: Some(s.message[1]),
                since: Some(t(25)),
                ..f()
            },
            1,
        ),
        (
            EventFilter {
                alias: Some(AliasId::new()),
                ..f()
            },
            0,
        ),
    ];
    for (filter, n) in &filters {
        assert_eq!(
            store.count_events(filter).await.expect("count_events"),
            *n,
            "count_events({filter:?})"
        );
        assert_eq!(
            list_all(store, Access::System, filter, 50).await.len() as u64,
            *n
        );
    }

    // Unscoped filters count every owner's events: compare before and after
    // (other tests may add events to a shared store meanwhile).
    let kinds = EventFilter {
        kinds: vec![EventKind::AutoDisabled],
        ..f()
    };
    let before = store.count_events(&kinds).await.expect("count_events");
    let everything = store.count_events(&f()).await.expect("count_events");
    let owner = UserId::new();
    let extra = [
        new_event(EventKind::AutoDisabled, Some(owner), t(1)),
        new_event(EventKind::AutoDisabled, None, t(2)),
        new_event(EventKind::Notified, Some(owner), t(3)),
    ];
    store.append_events(&extra).await.expect("append_events");
    let after = store.count_events(&kinds).await.expect("count_events");
    assert!(after >= before + 2, "{before} before, {after} after");
    let everything_after = store.count_events(&f()).await.expect("count_events");
    assert!(everything_after >= everything + 3);
}

/// `purge_events(older_than)` deletes the events at or before the cut-off
/// (by `at`), counts them, and leaves the rest — and the indexes — right.
pub async fn event_purge(store: &dyn Store) {
    // Long before every other test's events (see the module docs of `testing`).
    let era = Timestamp::from_unix_secs(800_000_000);
    let at = |secs: i64| Timestamp::from_unix_secs(800_000_000 + secs);
    let owner = UserId::new();
    let (alias, mailbox, message) = (AliasId::new(), MailboxId::new(), MessageId::new());
    let make = |kind, when| {
        let mut e = new_event(kind, Some(owner), when);
        e.alias = Some(alias);
        e.mailbox = Some(mailbox);
        e.message = Some(message);
        e
    };
    let before = make(EventKind::Bounced, at(-10));
    let on_cutoff = make(EventKind::Bounced, era);
    let after = make(EventKind::Bounced, at(10));
    let recent = make(EventKind::Delivered, t(0));
    append(store, &[&recent, &after, &on_cutoff, &before]).await;

    assert_eq!(
        store
            .purge_events(at(-11))
            .await
            .expect("purge_events before everything"),
        0
    );
    assert_eq!(
        store.purge_events(era).await.expect("purge_events"),
        2,
        "the events at and before the cut-off"
    );
    let filters = [
        of_alias(alias),
        EventFilter {
            mailbox: Some(mailbox),
            ..EventFilter::default()
        },
        EventFilter {
            message: Some(message),
            ..EventFilter::default()
        },
        EventFilter::default(),
    ];
    for filter in &filters {
        assert_eq!(
            list_all(store, Access::Owner(owner), filter, 50).await,
            newest_first(&[&after, &recent]),
            "kept events with {filter:?}"
        );
    }
    let bounced = EventFilter {
        mailbox: Some(mailbox),
        kinds: vec![EventKind::Bounced],
        ..EventFilter::default()
    };
    assert_eq!(store.count_events(&bounced).await.expect("count"), 1);

    assert_eq!(store.purge_events(at(10)).await.expect("purge_events"), 1);
    assert_eq!(
        store.purge_events(at(10)).await.expect("purge_events"),
        0,
        "nothing left to purge"
    );
    assert_eq!(store.count_events(&bounced).await.expect("count"), 0);
    assert_eq!(
        list_all(store, Access::Owner(owner), &of_alias(alias), 50).await,
        vec![recent.clone()]
    );
    // A purged id is free again (the log keeps nothing of it).
    append(store, &[&before]).await;
    assert_eq!(store.count_events(&bounced).await.expect("count"), 1);
    assert_eq!(store.purge_events(era).await.expect("purge_events"), 1);
}

/// A batch is all or nothing: an id already stored or twice in the batch
/// refuses the whole batch with `AlreadyExists`.
pub async fn event_append_is_atomic(store: &dyn Store) {
    let owner = UserId::new();
    let alias = AliasId::new();
    let make = |kind, secs| {
        let mut e = new_event(kind, Some(owner), t(secs));
        e.alias = Some(alias);
        e
    };
    let stored = make(EventKind::Accepted, 1);
    append(store, &[&stored]).await;

    let first = make(EventKind::Delivered, 2);
    let mut taken = make(EventKind::Failed, 3);
    taken.id = stored.id;
    let last = make(EventKind::Delivered, 4);
    expect::already_exists(
        store
            .append_events(&[first.clone(), taken, last.clone()])
            .await,
        "a batch with a stored id",
    );
    assert_eq!(
        list_all(store, Access::System, &of_alias(alias), 50).await,
        vec![stored.clone()],
        "nothing of the refused batch is stored"
    );

    let twice = make(EventKind::Deferred, 5);
    let mut again = twice.clone();
    again.kind = EventKind::Failed;
    expect::already_exists(
        store
            .append_events(&[first.clone(), twice.clone(), again])
            .await,
        "a batch with one id twice",
    );
    assert_eq!(
        list_all(store, Access::System, &of_alias(alias), 50).await,
        vec![stored.clone()],
        "nothing of the refused batch is stored"
    );
    assert_eq!(
        store
            .count_events(&of_alias(alias))
            .await
            .expect("count_events"),
        1
    );

    store
        .append_events(&[first.clone(), twice.clone(), last.clone()])
        .await
        .expect("the batch without the duplicates");
    assert_eq!(
        list_all(store, Access::System, &of_alias(alias), 50).await,
        newest_first(&[&stored, &first, &twice, &last])
    );
}
