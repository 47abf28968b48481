//! [`AuditStore`](crate::store::AuditStore): the append-only audit log.

use super::expect;
use super::fixtures::{self, new_audit_event, t, unique};
use crate::ids::ApiKeyId;
use crate::model::{Actor, AuditEvent};
use crate::store::{Access, AuditFilter, PageRequest, Store};

/// Every event visible to `access` passing `filter`, paging `limit` at a time.
async fn list_all(
    store: &dyn Store,
    access: Access,
    filter: &AuditFilter,
    limit: u32,
) -> Vec<AuditEvent> {
    let mut seen: Vec<AuditEvent> = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = store
            .list_audit(access, filter, page)
            .await
            .expect("list_audit");
        assert!(
            got.items.len() <= limit.max(1) as usize,
            "a page holds at most `limit` rows"
        );
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, limit),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "list_audit in id order"
    );
    seen
}

/// Only `action`.
fn action(action: &str) -> AuditFilter {
    AuditFilter {
        action: Some(action.to_owned()),
        since: None,
    }
}

/// Events with every field set read back equal; a taken id is `AlreadyExists`.
pub async fn audit_append_list_round_trip(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let name = unique("test.round_trip");
    let mut event = new_audit_event(Some(&user), &name, t(1));
    event.actor = Actor::ApiKey(ApiKeyId::new());
    event.target = Some("shop@alias.example".into());
    event.ip = Some("192.0.2.7".into());
    event
        .details
        .insert("reason".into(), "too many failures".into());
    event.details.insert("ünïcode key".into(), "välue".into());
    store.append_audit(&event).await.expect("append_audit");
    let mut system_event = new_audit_event(None, &name, t(2));
    system_event.details.insert("job".into(), "purge".into());
    store
        .append_audit(&system_event)
        .await
        .expect("append_audit");

    let all = list_all(store, Access::System, &action(&name), 50).await;
    assert_eq!(
        all,
        vec![event.clone(), system_event],
        "events read back as written, by id"
    );
    assert_eq!(
        list_all(store, Access::Owner(user.id), &action(&name), 50).await,
        vec![event.clone()]
    );

    let mut dup = new_audit_event(None, &name, t(3));
    dup.id = event.id;
    expect::already_exists(store.append_audit(&dup).await, "audit id taken");
    assert_eq!(
        list_all(store, Access::System, &action(&name), 50)
            .await
            .len(),
        2
    );
}

/// An owner sees only events whose `owner` is them; `System` sees all.
pub async fn audit_owner_scoping(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let name = unique("test.scope");
    let of_a = new_audit_event(Some(&a), &name, t(1));
    let mut about_a_by_b = new_audit_event(Some(&a), &name, t(2));
    about_a_by_b.actor = Actor::User(b.id);
    let of_b = new_audit_event(Some(&b), &name, t(3));
    let of_nobody = new_audit_event(None, &name, t(4));
    for e in [&of_a, &about_a_by_b, &of_b, &of_nobody] {
        store.append_audit(e).await.expect("append_audit");
    }
    assert_eq!(
        list_all(store, Access::Owner(a.id), &action(&name), 50).await,
        vec![of_a.clone(), about_a_by_b.clone()]
    );
    assert_eq!(
        list_all(store, Access::Owner(b.id), &action(&name), 50).await,
        vec![of_b.clone()]
    );
    assert_eq!(
        list_all(store, Access::System, &action(&name), 50).await,
        vec![of_a, about_a_by_b, of_b, of_nobody]
    );
    let everything_of_a = list_all(store, Access::Owner(a.id), &AuditFilter::default(), 50).await;
    assert!(
        everything_of_a.iter().all(|e| e.owner == Some(a.id)),
        "an owner sees only their events"
    );
    assert_eq!(everything_of_a.len(), 2);
}

/// `action` matches exactly and `since` keeps events at or after the instant (by `at`, not id).
pub async fn audit_filter_action_and_since(store: &dyn Store) {
    let name = unique("test.filter");
    let other_name = unique("test.other");
    let at30 = new_audit_event(None, &name, t(30));
    let at10 = new_audit_event(None, &name, t(10));
    let at20 = new_audit_event(None, &name, t(20));
    let other = new_audit_event(None, &other_name, t(25));
    for e in [&at30, &at10, &at20, &other] {
        store.append_audit(e).await.expect("append_audit");
    }
    let since = |s| AuditFilter {
        action: Some(name.clone()),
        since: Some(s),
    };
    assert_eq!(
        list_all(store, Access::System, &since(t(20)), 50).await,
        vec![at30.clone(), at20.clone()]
    );
    assert_eq!(
        list_all(store, Access::System, &since(t(10)), 50).await,
        vec![at30.clone(), at10, at20]
    );
    assert_eq!(
        list_all(store, Access::System, &since(t(21)), 50).await,
        vec![at30]
    );
    assert!(
        list_all(store, Access::System, &since(t(31)), 50)
            .await
            .is_empty()
    );
    assert_eq!(
        list_all(store, Access::System, &action(&other_name), 50).await,
        vec![other]
    );
    let prefix = name.split('-').next().unwrap_or_default().to_owned();
    assert!(
        list_all(store, Access::System, &action(&prefix), 50)
            .await
            .iter()
            .all(|e| e.action == prefix),
        "action matches exactly, not by prefix"
    );
}

/// Paging through 9 events 4 at a time returns each once, in id order.
pub async fn audit_pagination(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let name = unique("test.page");
    let mut events = Vec::new();
    for i in 0..9 {
        let e = new_audit_event(Some(&user), &name, t(i));
        store.append_audit(&e).await.expect("append_audit");
        events.push(e);
    }
    events.sort_by_key(|e| e.id);
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let got = store
            .list_audit(Access::Owner(user.id), &action(&name), page)
            .await
            .expect("list_audit");
        sizes.push(got.items.len());
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 4),
            None => break,
        }
    }
    assert_eq!(sizes, vec![4, 4, 1]);
    assert_eq!(seen, events);
    assert_eq!(
        list_all(store, Access::System, &action(&name), 0).await,
        events,
        "limit 0 pages one by one"
    );
}
