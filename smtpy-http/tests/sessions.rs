//! Sessions over real HTTP: cookie flags, rotation on login, idle timeout,
//! absolute lifetime, renewal, logout, CSRF protection, the session list.

mod common;

use std::time::Duration;

use common::{Client, PASSWORD, Resp, TestApp};
use serde_json::json;
use smtpy_core::model::SecretHash;
use smtpy_core::store::CredentialStore;

async fn login(c: &Client, email: &str, password: &str) -> Resp {
    let r = c
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await;
    if r.status == 200 {
        *c.csrf.lock().expect("csrf") = r.body["csrf_token"].as_str().map(str::to_owned);
    }
    r
}

/// The value the response's `Set-Cookie` gives `name`.
fn set_cookie_value(r: &Resp, name: &str) -> String {
    let header = r.header("set-cookie");
    let prefix = format!("{name}=");
    header
        .split(';')
        .next()
        .and_then(|p| p.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} cookie in {header:?}"))
        .to_owned()
}

/// A request carrying only the given session cookie (no jar).
async fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .header("cookie", format!("smtpy_session={cookie}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if !extra.iter().any(|(k, _)| *k == "content-type") {
        req = req
            .header("content-type", "application/json")
            .body("{\"notify_bounces\":false}");
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn cookie_is_httponly_lax_and_not_secure_without_tls() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let r = login(&b, "alice@example.test", PASSWORD).await;
    let body = r.expect(200);
    assert_eq!(body["user"]["email"], "alice@example.test");
    assert!(body["csrf_token"].as_str().is_some_and(|t| t.len() >= 43));
    let cookie = r.header("set-cookie");
    assert!(cookie.starts_with("smtpy_session="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // The session works and the row holds only the hash of the cookie.
    let value = set_cookie_value(&r, "smtpy_session");
    assert_eq!(
        b.get("/api/v1/me").await.expect(200)["id"],
        alice.user.id.to_string()
    );
    let rows = app
        .store
        .list_sessions(alice.user.id)
        .await
        .expect("sessions");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id_hash, SecretHash::of(value.as_bytes()));
    assert!(!format!("{:?}", rows[0]).contains(&value));
    // The login time is recorded.
    assert!(b.get("/api/v1/me").await.body["last_login_at"].is_i64());
}

#[tokio::test]
async fn cookie_is_host_prefixed_and_secure_under_tls() {
    let mut config = common::test_config();
    config.tls = true;
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    let r = app
        .browser()
        .post(
            "/api/v1/auth/login",
            json!({"email": "alice@example.test", "password": PASSWORD}),
        )
        .await;
    r.expect(200);
    let cookie = r.header("set-cookie");
    assert!(cookie.starts_with("__Host-smtpy_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Domain="), "{cookie}");
}

#[tokio::test]
async fn login_rotates_the_session() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let first = set_cookie_value(
        &login(&b, "alice@example.test", PASSWORD).await,
        "smtpy_session",
    );
    // Logging in again from the same browser replaces the session.
    let second = set_cookie_value(
        &login(&b, "alice@example.test", PASSWORD).await,
        "smtpy_session",
    );
    assert_ne!(first, second);
    let old = with_cookie(&app, reqwest::Method::GET, "/api/v1/me", &first, &[]).await;
    assert_eq!(old.status(), 401);
    let new = with_cookie(&app, reqwest::Method::GET, "/api/v1/me", &second, &[]).await;
    assert_eq!(new.status(), 200);
    let rows = app
        .store
        .list_sessions(alice.user.id)
        .await
        .expect("sessions");
    assert_eq!(rows.len(), 1, "the old session row is gone");
    assert_eq!(rows[0].id_hash, SecretHash::of(second.as_bytes()));
}

#[tokio::test]
async fn idle_timeout_ends_the_session() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    login(&b, "alice@example.test", PASSWORD).await.expect(200);
    let idle = Duration::from_secs(2 * 3600);
    // Activity keeps it alive past the idle time.
    app.clock.advance(idle - Duration::from_secs(600));
    b.get("/api/v1/me").await.expect(200);
    app.clock.advance(idle - Duration::from_secs(600));
    b.get("/api/v1/me").await.expect(200);
    // Idle for longer than the limit: over.
    app.clock.advance(idle + Duration::from_secs(1));
    b.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    assert!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("sessions")
            .is_empty()
    );
}

#[tokio::test]
async fn absolute_lifetime_ends_an_active_session() {
    let mut config = common::test_config();
    config.session_lifetime = Duration::from_secs(3 * 3600);
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    let b = app.browser();
    let r = login(&b, "alice@example.test", PASSWORD).await;
    let expires = r.expect(200)["expires_at"].as_i64().expect("expires_at");
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(1800));
        b.get("/api/v1/me").await.expect(200);
    }
    app.clock.advance(Duration::from_secs(1800));
    b.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    assert!(expires > 0);
}

#[tokio::test]
async fn logout_kills_the_session_and_clears_the_cookie() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let value = set_cookie_value(
        &login(&b, "alice@example.test", PASSWORD).await,
        "smtpy_session",
    );
    let r = b.post_empty("/api/v1/auth/logout").await;
    assert_eq!(r.status, 204, "{r:?}");
    let cleared = r.header("set-cookie");
    assert!(
        cleared.starts_with("smtpy_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let again = with_cookie(&app, reqwest::Method::GET, "/api/v1/me", &value, &[]).await;
    assert_eq!(again.status(), 401);
    assert!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("sessions")
            .is_empty()
    );
    // An API key has no session to end.
    alice
        .post_empty("/api/v1/auth/logout")
        .await
        .assert_problem(400, "bad-request");
}

#[tokio::test]
async fn cookie_changes_need_the_csrf_token_and_our_origin() {
    let app = TestApp::start().await;
    app.user("alice@example.test").await;
    let b = app.browser();
    let r = login(&b, "alice@example.test", PASSWORD).await;
    let csrf = r.body["csrf_token"].as_str().expect("csrf").to_owned();
    let value = set_cookie_value(&r, "smtpy_session");

    // No token.
    let none = with_cookie(&app, reqwest::Method::PATCH, "/api/v1/me", &value, &[]).await;
    assert_eq!(none.status(), 403);
    let body: serde_json::Value = none.json().await.expect("json");
    assert_eq!(body["type"], "urn:smtpy:problem:csrf");
    // Right token, foreign origin.
    let foreign = with_cookie(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/me",
        &value,
        &[("x-csrf-token", &csrf), ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(foreign.status(), 403);
    let body: serde_json::Value = foreign.json().await.expect("json");
    assert_eq!(body["type"], "urn:smtpy:problem:csrf");
    // Cross-site fetch metadata.
    let cross = with_cookie(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/me",
        &value,
        &[("x-csrf-token", &csrf), ("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(cross.status(), 403);
    // Wrong token.
    let wrong = with_cookie(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/me",
        &value,
        &[("x-csrf-token", "not-the-token")],
    )
    .await;
    assert_eq!(wrong.status(), 403);
    // Nothing changed so far.
    assert_eq!(
        b.get("/api/v1/me").await.body["settings"]["notify_bounces"],
        true
    );
    // Right token, our origin.
    let origin = app.base.clone();
    let ok = with_cookie(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/me",
        &value,
        &[("x-csrf-token", &csrf), ("origin", &origin)],
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        b.get("/api/v1/me").await.body["settings"]["notify_bounces"],
        false
    );
}

#[tokio::test]
async fn session_endpoint_gives_the_csrf_token_and_expiry() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let r = login(&b, "alice@example.test", PASSWORD).await;
    let login_body = r.expect(200).clone();
    let s = b.get("/api/v1/auth/session").await;
    let body = s.expect(200);
    assert_eq!(body["csrf_token"], login_body["csrf_token"]);
    assert_eq!(body["expires_at"], login_body["expires_at"]);
    assert_eq!(body["user"]["email"], "alice@example.test");
    let idle = body["idle_expires_at"].as_i64().expect("idle");
    assert!(idle < body["expires_at"].as_i64().expect("exp"));
    assert!(!s.text.contains("hash"));
    // Not for API keys; not without credentials.
    alice
        .get("/api/v1/auth/session")
        .await
        .assert_problem(400, "bad-request");
    app.browser()
        .get("/api/v1/auth/session")
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn renewal_rotates_the_cookie_and_keeps_the_absolute_expiry() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let r = login(&b, "alice@example.test", PASSWORD).await;
    let old_value = set_cookie_value(&r, "smtpy_session");
    let old_csrf = r.body["csrf_token"].clone();
    let expires = r.body["expires_at"].clone();
    app.clock.advance(Duration::from_secs(600));
    let renewed = b.post_empty("/api/v1/auth/session/renew").await;
    let body = renewed.expect(200).clone();
    assert_eq!(body["expires_at"], expires);
    assert_ne!(body["csrf_token"], old_csrf);
    let new_value = set_cookie_value(&renewed, "smtpy_session");
    assert_ne!(new_value, old_value);
    let old = with_cookie(&app, reqwest::Method::GET, "/api/v1/me", &old_value, &[]).await;
    assert_eq!(old.status(), 401);
    *b.csrf.lock().expect("csrf") = body["csrf_token"].as_str().map(str::to_owned);
    b.patch("/api/v1/me", json!({"notify_quarantine": false}))
        .await
        .expect(200);
    let rows = app
        .store
        .list_sessions(alice.user.id)
        .await
        .expect("sessions");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id_hash, SecretHash::of(new_value.as_bytes()));
    assert_eq!(Some(rows[0].expires_at.as_unix_millis()), expires.as_i64());
    // Renewing needs the CSRF token like any change.
    *b.csrf.lock().expect("csrf") = None;
    b.post_empty("/api/v1/auth/session/renew")
        .await
        .assert_problem(403, "csrf");
}

#[tokio::test]
async fn session_list_marks_the_current_one_and_others_can_be_ended() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let bob = app.user("bob@example.test").await;
    let one = app.browser();
    let two = app.browser_from("127.0.0.2".parse().expect("ip"));
    let bobs = app.browser();
    login(&one, "alice@example.test", PASSWORD)
        .await
        .expect(200);
    login(&two, "alice@example.test", PASSWORD)
        .await
        .expect(200);
    login(&bobs, "bob@example.test", PASSWORD).await.expect(200);
    let list = one.get("/api/v1/me/sessions").await;
    let items = list.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2, "only alice's sessions: {items:?}");
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(items.iter().any(|s| s["ip"] == "127.0.0.2"));
    assert!(!list.text.contains("hash") && !list.text.contains("csrf"));
    // Log out everywhere else.
    let r = one.delete("/api/v1/me/sessions").await;
    assert_eq!(r.expect(200)["ended"], 1);
    one.get("/api/v1/me").await.expect(200);
    two.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    bobs.get("/api/v1/me").await.expect(200);
    assert_eq!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("s")
            .len(),
        1
    );
    assert_eq!(
        app.store.list_sessions(bob.user.id).await.expect("s").len(),
        1
    );
    // With an API key, every session ends.
    alice.delete("/api/v1/me/sessions").await.expect(200);
    one.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn one_session_can_be_ended_by_its_id_and_only_by_its_owner() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    app.user("bob@example.test").await;
    let one = app.browser();
    let two = app.browser_from("127.0.0.2".parse().expect("ip"));
    let bobs = app.browser();
    login(&one, "alice@example.test", PASSWORD)
        .await
        .expect(200);
    login(&two, "alice@example.test", PASSWORD)
        .await
        .expect(200);
    login(&bobs, "bob@example.test", PASSWORD).await.expect(200);
    let items = one.get("/api/v1/me/sessions").await.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    let other = items
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    let id = other["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);
    // Bob cannot end Alice's session, nor can anyone name an unknown one.
    bobs.delete(&format!("/api/v1/me/sessions/{id}"))
        .await
        .assert_problem(404, "not-found");
    one.delete("/api/v1/me/sessions/00000000000000000000000000000000")
        .await
        .assert_problem(404, "not-found");
    two.get("/api/v1/me").await.expect(200);
    // Alice ends it: that client is signed out, hers goes on.
    let r = one.delete(&format!("/api/v1/me/sessions/{id}")).await;
    assert_eq!(r.status, 204, "{r:?}");
    two.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    one.get("/api/v1/me").await.expect(200);
    assert_eq!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("s")
            .len(),
        1
    );
    one.delete(&format!("/api/v1/me/sessions/{id}"))
        .await
        .assert_problem(404, "not-found");
}
