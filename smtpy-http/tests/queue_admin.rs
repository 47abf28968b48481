//! `/api/v1/admin/queue` (administrators) and
//! `/api/v1/quarantine/{id}/release` (owners).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{MessageId, UserId};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{
    Alias, DeliveryEvent, EventKind, MessageKind, QueuedMessage, QueuedRecipient,
};
use smtpy_core::store::{Access, AuditFilter, AuditStore, EventStore, PageRequest, QueueStore};
use smtpy_core::time::{Clock, Timestamp};

fn message(
    now: Timestamp,
    owner: Option<UserId>,
    alias: Option<&Alias>,
    held: bool,
) -> QueuedMessage {
    let mut r = QueuedRecipient::new(EmailAddress::parse("inbox@real.example").expect("rcpt"));
    if let Some(a) = alias {
        r.alias = Some(a.id);
        r.original = Some(a.address.clone());
    }
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: Some(EmailAddress::parse("srs@bounce.example").expect("srs")),
        original_sender: Some(EmailAddress::parse("ann@outside.example").expect("sender")),
        body: Arc::from(&b"Subject: secret body\r\n\r\nDo not show\r\n"[..]),
        recipients: vec![r],
        owner,
        received_at: now,
        next_attempt_at: now.saturating_add(Duration::from_secs(3600)),
        expires_at: now.saturating_add(Duration::from_secs(5 * 86_400)),
        attempts: 2,
        held,
        correlation_id: "corr-1".into(),
    }
}

async fn app_with_queue() -> (TestApp, Arc<MemoryStore>) {
    let queue = Arc::new(MemoryStore::new());
    let q = queue.clone();
    let app = TestApp::start_with(common::test_config(), move |s| s.with_queue(q)).await;
    (app, queue)
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn admin_lists_releases_retries_and_deletes() {
    let (app, queue) = app_with_queue().await;
    let admin = app.admin("root@users.test").await;
    let now = app.clock.now();
    let held = message(now, None, None, true);
    let normal = message(now, None, None, false);
    queue.enqueue(&held).await.expect("enqueue");
    queue.enqueue(&normal).await.expect("enqueue");

    // List, all and held only.
    let r = admin.get("/api/v1/admin/queue").await;
    assert_eq!(
        ids(r.expect(200)),
        [held.id.to_string(), normal.id.to_string()]
    );
    let r = admin.get("/api/v1/admin/queue?held=true").await;
    assert_eq!(ids(r.expect(200)), [held.id.to_string()]);
    let r = admin.get("/api/v1/admin/queue?held=false&limit=1").await;
    assert_eq!(ids(r.expect(200)), [normal.id.to_string()]);

    // Metadata, never the body.
    let r = admin.get(&format!("/api/v1/admin/queue/{}", held.id)).await;
    let m = r.expect(200);
    assert_eq!(m["held"], true);
    assert_eq!(m["kind"], "forward");
    assert_eq!(m["attempts"], 2);
    assert_eq!(m["size"], held.body.len());
    assert_eq!(m["sender"], "ann@outside.example");
    assert_eq!(m["recipients"][0]["state"], "pending");
    assert_eq!(m["recipients"][0]["address"], "inbox@real.example");
    assert!(!r.text.contains("Do not show") && !r.text.contains("secret body"));

    // Stats.
    let r = admin.get("/api/v1/admin/queue/stats").await;
    let s = r.expect(200);
    assert_eq!(
        (s["depth"].clone(), s["held"].clone()),
        (json!(2), json!(1))
    );

    // Release: held=false in the store.
    let r = admin
        .post_empty(&format!("/api/v1/admin/queue/{}/release", held.id))
        .await;
    assert_eq!(r.expect(200)["held"], false);
    assert!(!queue.get_queued(held.id).await.expect("queued").held);

    // Retry: due now.
    app.clock.advance(Duration::from_secs(10));
    let r = admin
        .post_empty(&format!("/api/v1/admin/queue/{}/retry", normal.id))
        .await;
    r.expect(200);
    assert_eq!(
        queue
            .get_queued(normal.id)
            .await
            .expect("queued")
            .next_attempt_at,
        app.clock.now()
    );

    // Delete: a message that is not held needs force.
    admin
        .delete(&format!("/api/v1/admin/queue/{}", normal.id))
        .await
        .assert_problem(409, "conflict");
    assert!(queue.get_queued(normal.id).await.is_ok());
    let r = admin
        .delete(&format!("/api/v1/admin/queue/{}?force=true", normal.id))
        .await;
    assert_eq!(r.status, 204);
    assert!(queue.get_queued(normal.id).await.is_err());
    let again_held = message(now, None, None, true);
    queue.enqueue(&again_held).await.expect("enqueue");
    let r = admin
        .delete(&format!("/api/v1/admin/queue/{}", again_held.id))
        .await;
    assert_eq!(r.status, 204);
    assert!(queue.get_queued(again_held.id).await.is_err());
    admin
        .get(&format!("/api/v1/admin/queue/{}", again_held.id))
        .await
        .assert_problem(404, "not-found");

    // Every action is audited.
    let page = app
        .store
        .list_audit(
            Access::System,
            &AuditFilter::default(),
            PageRequest::first(50),
        )
        .await
        .expect("audit");
    let actions: Vec<&str> = page.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "queue.release",
            "queue.retry",
            "queue.delete",
            "queue.delete"
        ]
    );
}

#[tokio::test]
async fn non_admins_get_403_on_every_queue_endpoint() {
    let (app, queue) = app_with_queue().await;
    let user = app.user("a@users.test").await;
    let m = message(app.clock.now(), Some(user.user.id), None, true);
    queue.enqueue(&m).await.expect("enqueue");
    let id = m.id;
    for r in [
        user.get("/api/v1/admin/queue").await,
        user.get("/api/v1/admin/queue/stats").await,
        user.get(&format!("/api/v1/admin/queue/{id}")).await,
        user.post_empty(&format!("/api/v1/admin/queue/{id}/retry"))
            .await,
        user.post_empty(&format!("/api/v1/admin/queue/{id}/release"))
            .await,
        user.delete(&format!("/api/v1/admin/queue/{id}")).await,
        user.delete(&format!("/api/v1/admin/queue/{id}?force=true"))
            .await,
    ] {
        r.assert_problem(403, "forbidden");
    }
    let stored = queue.get_queued(id).await.expect("still queued");
    assert!(stored.held);
}

#[tokio::test]
async fn without_a_queue_the_endpoints_answer_503() {
    let app = TestApp::start().await;
    let admin = app.admin("root@users.test").await;
    admin
        .get("/api/v1/admin/queue")
        .await
        .assert_problem(503, "unavailable");
    admin
        .get("/api/v1/admin/queue/stats")
        .await
        .assert_problem(503, "unavailable");
}

#[tokio::test]
async fn owners_release_only_their_own_quarantined_mail() {
    let (app, queue) = app_with_queue().await;
    let a = app.user("a@users.test").await;
    let b = app.user("b@users.test").await;
    let alias = common::fixture(&app, &a, "a.example").await.alias;
    let now = app.clock.now();
    let quarantined = message(now, Some(a.user.id), Some(&alias), true);
    queue.enqueue(&quarantined).await.expect("enqueue");
    let mut e = DeliveryEvent::new(EventKind::Quarantined, now).with("reason", "rule");
    e.owner = Some(a.user.id);
    e.alias = Some(alias.id);
    e.message = Some(quarantined.id);
    app.store.append_events(&[e]).await.expect("event");
    // Held by an operator, not quarantined: no quarantined event.
    let operator_held = message(now, Some(a.user.id), Some(&alias), true);
    queue.enqueue(&operator_held).await.expect("enqueue");

    // B cannot release A's message.
    b.post_empty(&format!("/api/v1/quarantine/{}/release", quarantined.id))
        .await
        .assert_problem(404, "not-found");
    assert!(queue.get_queued(quarantined.id).await.expect("queued").held);
    // A cannot release what the mail path did not quarantine.
    a.post_empty(&format!("/api/v1/quarantine/{}/release", operator_held.id))
        .await
        .assert_problem(404, "not-found");
    assert!(
        queue
            .get_queued(operator_held.id)
            .await
            .expect("queued")
            .held
    );
    // A releases their own.
    let r = a
        .post_empty(&format!("/api/v1/quarantine/{}/release", quarantined.id))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(!queue.get_queued(quarantined.id).await.expect("queued").held);
    // Released once: no longer held, so a second release is a 404.
    a.post_empty(&format!("/api/v1/quarantine/{}/release", quarantined.id))
        .await
        .assert_problem(404, "not-found");
    let page = app
        .store
        .list_audit(
            Access::Owner(a.user.id),
            &AuditFilter::default(),
            PageRequest::first(10),
        )
        .await
        .expect("audit");
    assert!(page.items.iter().any(|e| e.action == "quarantine.release"
        && e.target.as_deref() == Some(quarantined.id.to_string().as_str())));
}
