//! API keys over real HTTP: creation (token shown once, only the hash
//! stored), scopes, expiry, last use, ownership, validation.

mod common;

use std::time::Duration;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::model::{ApiScope, Role, SecretHash};
use smtpy_core::store::{Access, AuditFilter, AuditStore, CredentialStore, PageRequest};

async fn create(actor: &Actor, body: Value) -> Value {
    let r = actor.post("/api/v1/api-keys", body).await;
    r.expect(201).clone()
}

async fn actions(app: &TestApp) -> Vec<String> {
    app.store
        .list_audit(
            Access::System,
            &AuditFilter::default(),
            PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn token_is_long_random_shown_once_and_stored_hashed() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let key = create(
        &alice,
        json!({"name": "backup script", "scopes": ["aliases:read", "account:read"]}),
    )
    .await;
    let token = key["token"].as_str().expect("token").to_owned();
    let random = token.strip_prefix("smtpy_").expect("prefix");
    // base64url: 6 bits per character; at least 128 bits.
    assert!(random.len() * 6 >= 128, "{token}");
    assert_eq!(key["name"], "backup script");
    assert_eq!(key["scopes"], json!(["aliases:read", "account:read"]));
    assert!(token.starts_with(key["prefix"].as_str().expect("prefix")));
    assert!(key["secret_hash"].is_null());

    // The store holds only the hash.
    let rows = app.store.list_api_keys(alice.user.id).await.expect("keys");
    let row = rows
        .iter()
        .find(|k| k.id.to_string() == key["id"])
        .expect("row");
    assert_eq!(row.secret_hash, SecretHash::of(token.as_bytes()));
    assert!(!format!("{row:?}").contains(random));

    // The list never shows the token.
    let list = alice.get("/api/v1/api-keys").await;
    let items = list.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2, "the harness key and the new one");
    assert!(!list.text.contains(&token));
    assert!(!list.text.contains(random));
    assert!(items.iter().all(|k| k["token"].is_null()));

    // It works.
    let c = common::Client::new(&app.base, Some(token), None);
    assert_eq!(
        c.get("/api/v1/me").await.expect(200)["email"],
        "alice@example.test"
    );
    assert!(actions(&app).await.contains(&"api_key.create".to_owned()));
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let key = create(&alice, json!({"name": "ro", "scopes": ["account:read"]})).await;
    let ro = common::Client::new(&app.base, key["token"].as_str().map(str::to_owned), None);
    ro.get("/api/v1/me").await.expect(200);
    ro.get("/api/v1/api-keys").await.expect(200);
    ro.patch("/api/v1/me", json!({"notify_bounces": false}))
        .await
        .assert_problem(403, "forbidden");
    ro.post(
        "/api/v1/api-keys",
        json!({"name": "x", "scopes": ["account:read"]}),
    )
    .await
    .assert_problem(403, "forbidden");
    let id = key["id"].as_str().expect("id");
    ro.delete(&format!("/api/v1/api-keys/{id}"))
        .await
        .assert_problem(403, "forbidden");
    // A key cannot mint a key with more than it has.
    let writer = app
        .account(
            "w@example.test",
            Role::User,
            &[ApiScope::AccountRead, ApiScope::AccountWrite],
        )
        .await;
    writer
        .post(
            "/api/v1/api-keys",
            json!({"name": "x", "scopes": ["aliases:write"]}),
        )
        .await
        .assert_problem(403, "forbidden");
    writer
        .post(
            "/api/v1/api-keys",
            json!({"name": "x", "scopes": ["account:read"]}),
        )
        .await
        .expect(201);
    // The admin scope is for admins only.
    alice
        .post(
            "/api/v1/api-keys",
            json!({"name": "x", "scopes": ["admin"]}),
        )
        .await
        .assert_problem(403, "forbidden");
    let root = app.admin("root@example.test").await;
    let admin_key = create(&root, json!({"name": "ops", "scopes": ["admin"]})).await;
    assert_eq!(admin_key["scopes"], json!(["admin"]));
}

#[tokio::test]
async fn expired_key_is_refused() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let now = app.state.clock().now().as_unix_millis();
    let key = create(
        &alice,
        json!({"name": "short", "scopes": ["account:read"], "expires_at": now + 60_000}),
    )
    .await;
    assert_eq!(key["expires_at"], now + 60_000);
    let c = common::Client::new(&app.base, key["token"].as_str().map(str::to_owned), None);
    c.get("/api/v1/me").await.expect(200);
    app.clock.advance(Duration::from_secs(61));
    c.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    // An expiry in the past is refused.
    alice
        .post(
            "/api/v1/api-keys",
            json!({"name": "old", "scopes": ["account:read"], "expires_at": now}),
        )
        .await
        .assert_problem(422, "validation");
}

#[tokio::test]
async fn last_used_is_recorded() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let key = create(&alice, json!({"name": "k", "scopes": ["account:read"]})).await;
    assert!(key["last_used_at"].is_null());
    let c = common::Client::new(&app.base, key["token"].as_str().map(str::to_owned), None);
    app.clock.advance(Duration::from_secs(5));
    c.get("/api/v1/me").await.expect(200);
    let list = alice.get("/api/v1/api-keys").await;
    let item = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["id"] == key["id"])
        .expect("key")
        .clone();
    assert_eq!(
        item["last_used_at"],
        app.state.clock().now().as_unix_millis()
    );
}

#[tokio::test]
async fn a_cannot_see_or_delete_bs_keys() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let bob = app.user("bob@example.test").await;
    let bobs = create(&bob, json!({"name": "bob's", "scopes": ["account:read"]})).await;
    let id = bobs["id"].as_str().expect("id");
    let list = alice.get("/api/v1/api-keys").await;
    assert!(!list.text.contains(id));
    assert!(!list.text.contains("bob's"));
    alice
        .delete(&format!("/api/v1/api-keys/{id}"))
        .await
        .assert_problem(404, "not-found");
    assert!(
        app.store
            .list_api_keys(bob.user.id)
            .await
            .expect("keys")
            .iter()
            .any(|k| k.id.to_string() == id)
    );
    // The owner can delete it, and then it stops working.
    let c = common::Client::new(&app.base, bobs["token"].as_str().map(str::to_owned), None);
    c.get("/api/v1/me").await.expect(200);
    let r = bob.delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(r.status, 204);
    c.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    bob.delete(&format!("/api/v1/api-keys/{id}"))
        .await
        .assert_problem(404, "not-found");
    bob.delete("/api/v1/api-keys/not-a-uuid")
        .await
        .assert_problem(404, "not-found");
    assert!(actions(&app).await.contains(&"api_key.delete".to_owned()));
}

#[tokio::test]
async fn input_is_validated() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    for (body, field) in [
        (json!({"name": "", "scopes": ["account:read"]}), "name"),
        (
            json!({"name": "x".repeat(65), "scopes": ["account:read"]}),
            "name",
        ),
        (json!({"name": "ok", "scopes": []}), "scopes"),
        (
            json!({"name": "ok", "scopes": vec!["account:read"; 8]}),
            "scopes",
        ),
    ] {
        let r = alice.post("/api/v1/api-keys", body).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{r:?}");
    }
    alice
        .post(
            "/api/v1/api-keys",
            json!({"name": "ok", "scopes": ["everything"]}),
        )
        .await
        .assert_problem(422, "validation");
    alice
        .post(
            "/api/v1/api-keys",
            json!({"name": "ok", "scopes": ["account:read"], "secret_hash": "x"}),
        )
        .await
        .assert_problem(422, "validation");
    // Nothing was created.
    assert_eq!(
        app.store
            .list_api_keys(alice.user.id)
            .await
            .expect("keys")
            .len(),
        1
    );
    // 64 characters is fine.
    create(
        &alice,
        json!({"name": "x".repeat(64), "scopes": ["account:read"]}),
    )
    .await;
}

#[tokio::test]
async fn list_is_paginated() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    for n in 0..3 {
        create(
            &alice,
            json!({"name": format!("k{n}"), "scopes": ["account:read"]}),
        )
        .await;
    }
    let first = alice.get("/api/v1/api-keys?limit=2").await;
    let items = first.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = alice
        .get(&format!("/api/v1/api-keys?limit=2&cursor={cursor}"))
        .await;
    let more = second.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(more.len(), 2);
    assert!(second.body["next_cursor"].is_null());
    assert!(
        items
            .iter()
            .all(|a| more.iter().all(|b| a["id"] != b["id"]))
    );
    alice
        .get("/api/v1/api-keys?cursor=nope")
        .await
        .assert_problem(400, "bad-request");
}
