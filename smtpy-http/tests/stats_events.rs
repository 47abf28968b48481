//! `/api/v1/stats`, `/api/v1/aliases/{id}/stats`, `/api/v1/events` and
//! `/api/v1/aliases/{id}/events`: daily series from the usage counters,
//! the delivery log newest first with cursor paging, and owners only.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};
use smtpy_core::address::EmailAddress;
use smtpy_core::model::{
    Alias, ApiScope, CounterDelta, DeliveryEvent, EventKind, Role, UsageRecord,
};
use smtpy_core::store::{AliasStore, EventStore, UsageStore};
use smtpy_core::time::{Clock, Timestamp};

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn stats_series_from_usage_records() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let alias = common::fixture(&app, &a, "a.example").await.alias;
    // 2024-03-01 .. 2024-03-03: traffic on the 1st and the 3rd.
    let mar1 = Timestamp::from_unix_millis(19_783 * DAY_MS + 3_600_000);
    for (at, messages, bytes) in [(mar1, 2, 2000), (mar1, 1, 500)] {
        app.store
            .record_usage(&UsageRecord {
                user: a.user.id,
                alias: Some(alias.id),
                at,
                messages,
                bytes,
            })
            .await
            .expect("usage");
    }
    app.store
        .record_usage(&UsageRecord {
            user: a.user.id,
            alias: None,
            at: Timestamp::from_unix_millis(mar1.as_unix_millis() + 2 * DAY_MS),
            messages: 4,
            bytes: 40,
        })
        .await
        .expect("usage");
    app.store
        .record_alias_activity(
            alias.id,
            CounterDelta {
                forwarded: 3,
                blocked: 1,
                ..CounterDelta::default()
            },
            mar1,
        )
        .await
        .expect("counters");

    let r = a.get("/api/v1/stats?from=2024-03-01&to=2024-03-03").await;
    let body = r.expect(200);
    assert_eq!(
        body["days"],
        json!([
            {"day": "2024-03-01", "messages": 3, "bytes": 2500},
            {"day": "2024-03-02", "messages": 0, "bytes": 0},
            {"day": "2024-03-03", "messages": 4, "bytes": 40},
        ])
    );
    assert_eq!(body["total_messages"], 7);
    assert!(body.get("counters").is_none());

    let r = a
        .get(&format!(
            "/api/v1/aliases/{}/stats?from=2024-02-29&to=2024-03-01",
            alias.id
        ))
        .await;
    let body = r.expect(200);
    assert_eq!(
        body["days"][0],
        json!({"day": "2024-02-29", "messages": 0, "bytes": 0})
    );
    assert_eq!(body["days"][1]["messages"], 3);
    assert_eq!(body["counters"]["forwarded"], 3);
    assert_eq!(body["counters"]["blocked"], 1);

    // Default: the last 30 days, ending today.
    let r = a.get("/api/v1/stats").await;
    let body = r.expect(200);
    assert_eq!(body["days"].as_array().expect("days").len(), 30);

    // Bounds.
    a.get("/api/v1/stats?from=2024-01-01&to=2025-01-02")
        .await
        .assert_problem(422, "validation");
    a.get("/api/v1/stats?from=2024-03-02&to=2024-03-01")
        .await
        .assert_problem(422, "validation");
    a.get("/api/v1/stats?from=2024-02-30")
        .await
        .assert_problem(422, "validation");

    // B: 404 on A's alias; B's own series is empty.
    let b = app.user("b@users.test").await;
    b.get(&format!("/api/v1/aliases/{}/stats", alias.id))
        .await
        .assert_problem(404, "not-found");
    let r = b.get("/api/v1/stats?from=2024-03-01&to=2024-03-03").await;
    assert_eq!(r.expect(200)["total_messages"], 0);

    // Scope.
    let keys_only = app
        .account("k@users.test", Role::User, &[ApiScope::AccountRead])
        .await;
    keys_only
        .get("/api/v1/stats")
        .await
        .assert_problem(403, "forbidden");
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn events_newest_first_with_cursor_and_owner_only() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let alias = common::fixture(&app, &a, "a.example").await.alias;
    let other_alias = {
        let now = app.clock.now();
        let x = Alias::new(
            EmailAddress::parse("other@a.example").expect("address"),
            a.user.id,
            alias.domain,
            alias.mailboxes.clone(),
            now,
        );
        app.store.create_alias(&x).await.expect("alias");
        x
    };
    let kinds = [
        EventKind::Accepted,
        EventKind::Delivered,
        EventKind::Accepted,
        EventKind::Deferred,
        EventKind::Failed,
    ];
    let mut written = Vec::new();
    for kind in kinds {
        app.clock.advance(Duration::from_secs(1));
        let mut e = DeliveryEvent::new(kind, app.clock.now()).with("reply", "250 2.0.0 OK");
        e.owner = Some(a.user.id);
        e.alias = Some(alias.id);
        e.sender = Some("ann@friends.example".into());
        app.store.append_events(&[e.clone()]).await.expect("event");
        written.push(e);
    }
    let mut elsewhere = DeliveryEvent::new(EventKind::Refused, app.clock.now());
    elsewhere.owner = Some(a.user.id);
    elsewhere.alias = Some(other_alias.id);
    app.store
        .append_events(&[elsewhere.clone()])
        .await
        .expect("event");
    let newest_first: Vec<String> = written.iter().rev().map(|e| e.id.to_string()).collect();

    // Paging through the alias's events, two at a time.
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/aliases/{}/events?limit=2", alias.id);
    for _ in 0..5 {
        let r = a.get(&path).await;
        let body = r.expect(200).clone();
        seen.extend(ids(&body));
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/aliases/{}/events?limit=2&cursor={c}", alias.id),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let first = a
        .get(&format!("/api/v1/aliases/{}/events?limit=1", alias.id))
        .await;
    let first = first.expect(200);
    assert_eq!(first["items"][0]["kind"], "failed");
    assert_eq!(first["items"][0]["details"]["reply"], "250 2.0.0 OK");
    assert_eq!(first["items"][0]["alias_id"], alias.id.to_string());

    // All of A's events, and the filters.
    let all = a.get("/api/v1/events").await;
    let all = all.expect(200);
    assert_eq!(all["items"].as_array().expect("items").len(), 6);
    assert_eq!(all["items"][0]["id"], elsewhere.id.to_string());
    let accepted = a.get("/api/v1/events?kind=accepted").await;
    assert_eq!(
        ids(accepted.expect(200)),
        [written[2].id.to_string(), written[0].id.to_string()]
    );
    let two = a.get("/api/v1/events?kind=delivered,failed").await;
    assert_eq!(ids(two.expect(200)).len(), 2);
    let by_alias = a
        .get(&format!("/api/v1/events?alias={}", other_alias.id))
        .await;
    assert_eq!(ids(by_alias.expect(200)), [elsewhere.id.to_string()]);
    let window = a
        .get(&format!(
            "/api/v1/events?alias={}&since={}&until={}",
            alias.id,
            written[1].at.as_unix_millis(),
            written[3].at.as_unix_millis()
        ))
        .await;
    assert_eq!(
        ids(window.expect(200)),
        [written[2].id.to_string(), written[1].id.to_string()]
    );
    a.get("/api/v1/events?kind=exploded")
        .await
        .assert_problem(422, "validation");
    a.get("/api/v1/events?cursor=nonsense")
        .await
        .assert_problem(400, "bad-request");

    // B sees none of it.
    let b = app.user("b@users.test").await;
    let r = b.get("/api/v1/events").await;
    assert_eq!(r.expect(200)["items"], json!([]));
    b.get(&format!("/api/v1/aliases/{}/events", alias.id))
        .await
        .assert_problem(404, "not-found");
    b.get(&format!("/api/v1/events?alias={}", alias.id))
        .await
        .assert_problem(404, "not-found");
    let keys_only = app
        .account("k@users.test", Role::User, &[ApiScope::AccountRead])
        .await;
    keys_only
        .get("/api/v1/events")
        .await
        .assert_problem(403, "forbidden");
}
