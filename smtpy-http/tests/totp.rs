//! TOTP second factor over real HTTP, with codes computed here from the
//! secret at the test clock's time.

mod common;

use common::{base32, code_at};

use std::time::Duration;

use common::{Client, PASSWORD, Resp, TestApp};
use serde_json::json;
use smtpy_core::store::{Access, AuditFilter, AuditStore, PageRequest, UserStore};
use smtpy_core::time::Timestamp;

fn now(app: &TestApp) -> Timestamp {
    app.state.clock().now()
}

async fn login(c: &Client, email: &str, password: &str, totp: Option<&str>) -> Resp {
    let mut body = json!({"email": email, "password": password});
    if let Some(t) = totp {
        body["totp"] = json!(t);
    }
    c.post("/api/v1/auth/login", body).await
}

/// Sets up and enables TOTP for the actor; returns the raw secret.
async fn enrol(app: &TestApp, actor: &Client) -> Vec<u8> {
    let setup = actor.post_empty("/api/v1/me/totp/setup").await;
    let secret_text = setup.expect(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let secret = base32(&secret_text);
    let r = actor
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": secret_text, "code": code_at(&secret, now(app))}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    // The enabling code is spent; move on to fresh steps.
    app.clock.advance(Duration::from_secs(60));
    secret
}

#[tokio::test]
async fn setup_gives_a_secret_and_an_otpauth_uri_and_stores_nothing() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let r = alice.post_empty("/api/v1/me/totp/setup").await;
    let body = r.expect(200);
    let secret = body["secret"].as_str().expect("secret");
    assert_eq!(base32(secret).len(), 20, "160-bit secret");
    let uri = body["otpauth_uri"].as_str().expect("uri");
    assert!(
        uri.starts_with("otpauth://totp/smtpy:alice@example.test?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")));
    assert!(uri.contains("issuer=smtpy") && uri.contains("digits=6") && uri.contains("period=30"));
    let row = app.store.get_user(alice.user.id).await.expect("row");
    assert!(row.totp.is_none());
    assert_eq!(alice.get("/api/v1/me").await.body["totp_enabled"], false);
}

#[tokio::test]
async fn enabling_needs_a_right_code() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let setup = alice.post_empty("/api/v1/me/totp/setup").await;
    let secret_text = setup.body["secret"].as_str().expect("secret").to_owned();
    let secret = base32(&secret_text);
    let right = code_at(&secret, now(&app));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    alice
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": secret_text, "code": wrong}),
        )
        .await
        .assert_problem(422, "validation");
    alice
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": "not base32 at all!", "code": right}),
        )
        .await
        .assert_problem(422, "validation");
    assert!(
        app.store
            .get_user(alice.user.id)
            .await
            .expect("row")
            .totp
            .is_none()
    );
    let r = alice
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": secret_text, "code": right}),
        )
        .await;
    assert_eq!(r.status, 204);
    let row = app.store.get_user(alice.user.id).await.expect("row");
    let sealed = row.totp.expect("sealed secret stored");
    // Stored sealed, not in clear.
    let stored = sealed.to_bytes();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert_eq!(alice.get("/api/v1/me").await.body["totp_enabled"], true);
    // Enabling twice conflicts.
    alice
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": secret_text, "code": code_at(&secret, now(&app))}),
        )
        .await
        .assert_problem(409, "conflict");
}

#[tokio::test]
async fn login_requires_the_code_after_enabling() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let secret = enrol(&app, &alice).await;
    let b = app.browser();
    // No code.
    let r = login(&b, "alice@example.test", PASSWORD, None).await;
    r.assert_problem(401, "second-factor-required");
    assert_eq!(r.header("set-cookie"), "");
    // Wrong code.
    let right = code_at(&secret, now(&app));
    let wrong = if right == "123456" {
        "654321"
    } else {
        "123456"
    };
    login(&b, "alice@example.test", PASSWORD, Some(wrong))
        .await
        .assert_problem(401, "second-factor-required");
    // A code from long ago.
    let old = code_at(&secret, now(&app).saturating_sub(Duration::from_secs(300)));
    if old != right {
        login(&b, "alice@example.test", PASSWORD, Some(&old))
            .await
            .assert_problem(401, "second-factor-required");
    }
    // Wrong password with the right code: the plain failure.
    login(&b, "alice@example.test", "wrong password!", Some(&right))
        .await
        .assert_problem(401, "unauthenticated");
    // Right code (and the previous step's code, for clock skew).
    login(&b, "alice@example.test", PASSWORD, Some(&right))
        .await
        .expect(200);
    let prev = code_at(&secret, now(&app).saturating_sub(Duration::from_secs(30)));
    login(&app.browser(), "alice@example.test", PASSWORD, Some(&prev))
        .await
        .expect(200);
    // A code is accepted once: replaying it fails.
    login(&app.browser(), "alice@example.test", PASSWORD, Some(&right))
        .await
        .assert_problem(401, "second-factor-required");
    // Later, with the clock moved on.
    app.clock.advance(Duration::from_secs(3600));
    login(
        &app.browser(),
        "alice@example.test",
        PASSWORD,
        Some(&code_at(&secret, now(&app))),
    )
    .await
    .expect(200);
    let log = app
        .store
        .list_audit(
            Access::System,
            &AuditFilter::default(),
            PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .expect("audit");
    assert!(log.items.iter().any(|e| e.action == "user.totp_enabled"));
    assert!(log.items.iter().any(|e| e.action == "session.login_failed"
        && e.details.get("reason").map(String::as_str) == Some("second_factor")));
}

async fn send(c: &Client, body: serde_json::Value) -> Resp {
    c.send(reqwest::Method::DELETE, "/api/v1/me/totp", Some(&body))
        .await
}

#[tokio::test]
async fn disabling_needs_the_password_or_a_code() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let bob = app.user("bob@example.test").await;
    let secret = enrol(&app, &alice).await;
    send(&alice, json!({"password": "not the password"}))
        .await
        .assert_problem(403, "forbidden");
    send(&alice, json!({}))
        .await
        .assert_problem(422, "validation");
    // Bob has no second factor to remove.
    send(&bob, json!({"password": PASSWORD}))
        .await
        .assert_problem(404, "not-found");
    assert!(
        app.store
            .get_user(alice.user.id)
            .await
            .expect("row")
            .totp
            .is_some()
    );
    let r = send(&alice, json!({"password": PASSWORD})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(
        app.store
            .get_user(alice.user.id)
            .await
            .expect("row")
            .totp
            .is_none()
    );
    login(&app.browser(), "alice@example.test", PASSWORD, None)
        .await
        .expect(200);
    // With a code instead of the password.
    let secret2 = enrol(&app, &alice).await;
    assert_ne!(secret, secret2);
    let r = send(&alice, json!({"code": code_at(&secret2, now(&app))})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert!(
        app.store
            .get_user(alice.user.id)
            .await
            .expect("row")
            .totp
            .is_none()
    );
}

#[tokio::test]
async fn code_checks_are_throttled() {
    let mut config = common::test_config();
    config.limits.verify_per_ip = smtpy_http::Budget::new(2, Duration::from_secs(3600));
    let app = TestApp::start_with(config, |s| s).await;
    let alice = app.user("alice@example.test").await;
    let setup = alice.post_empty("/api/v1/me/totp/setup").await;
    let secret = setup.body["secret"].as_str().expect("secret").to_owned();
    for _ in 0..2 {
        alice
            .post(
                "/api/v1/me/totp/enable",
                json!({"secret": secret, "code": "000000x"}),
            )
            .await;
    }
    let r = alice
        .post(
            "/api/v1/me/totp/enable",
            json!({"secret": secret, "code": code_at(&base32(&secret), now(&app))}),
        )
        .await;
    r.assert_problem(429, "rate-limited");
    assert!(
        app.store
            .get_user(alice.user.id)
            .await
            .expect("row")
            .totp
            .is_none()
    );
}
