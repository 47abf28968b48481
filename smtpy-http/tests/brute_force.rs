//! Brute-force protection over real HTTP: login budgets per client IP and
//! per account, identical answers for unknown accounts and wrong
//! passwords, and the registration, reset and verification budgets.

mod common;

use std::time::Duration;

use common::{PASSWORD, TestApp};
use serde_json::json;
use smtpy_core::store::{Access, AuditFilter, AuditStore, PageRequest};
use smtpy_http::Budget;

fn login_body(email: &str, password: &str) -> serde_json::Value {
    json!({"email": email, "password": password})
}

#[tokio::test]
async fn same_ip_gets_429_after_the_budget_even_with_the_right_password() {
    let mut config = common::test_config();
    config.limits.login_per_ip = Budget::new(3, Duration::from_secs(900));
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    let b = app.browser();
    for _ in 0..3 {
        b.post(
            "/api/v1/auth/login",
            login_body("alice@example.test", "wrong password!"),
        )
        .await
        .assert_problem(401, "unauthenticated");
    }
    let r = b
        .post(
            "/api/v1/auth/login",
            login_body("alice@example.test", PASSWORD),
        )
        .await;
    r.assert_problem(429, "rate-limited");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=900).contains(&retry), "{retry}");
    // Another client address still gets in.
    app.browser_from("127.0.0.2".parse().expect("ip"))
        .post(
            "/api/v1/auth/login",
            login_body("alice@example.test", PASSWORD),
        )
        .await
        .expect(200);
    // The budget comes back with time.
    app.clock.advance(Duration::from_secs(retry));
    b.post(
        "/api/v1/auth/login",
        login_body("alice@example.test", PASSWORD),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn one_account_from_many_ips_gets_429() {
    let mut config = common::test_config();
    config.limits.login_per_account = Budget::new(4, Duration::from_secs(900));
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    app.user("bob@example.test").await;
    // However the address is spelled, it is one account.
    let spellings = [
        "Alice@Example.test",
        "alice@EXAMPLE.TEST",
        "\"alice\"@example.test",
        " alice@example.test ",
    ];
    for (n, email) in (2..6).zip(spellings) {
        let c = app.browser_from(format!("127.0.0.{n}").parse().expect("ip"));
        c.post("/api/v1/auth/login", login_body(email, "wrong password!"))
            .await
            .assert_problem(401, "unauthenticated");
    }
    // A fresh address with the right password: the account's budget is spent.
    let c = app.browser_from("127.0.0.9".parse().expect("ip"));
    let r = c
        .post(
            "/api/v1/auth/login",
            login_body("alice@example.test", PASSWORD),
        )
        .await;
    r.assert_problem(429, "rate-limited");
    assert!(!r.header("retry-after").is_empty());
    // Other accounts are not affected.
    c.post(
        "/api/v1/auth/login",
        login_body("bob@example.test", PASSWORD),
    )
    .await
    .expect(200);
    // Denials are counted in the metrics.
    let denied = app.state.metrics().get(
        smtpy_core::metrics::RATE_LIMIT_DENIALS,
        &[("scope", "login_account")],
    );
    assert!(denied >= 1.0, "{denied}");
}

#[tokio::test]
async fn unknown_accounts_spend_the_account_budget_too() {
    let mut config = common::test_config();
    config.limits.login_per_account = Budget::new(2, Duration::from_secs(900));
    let app = TestApp::start_with(config, |s| s).await;
    for n in 2..4 {
        app.browser_from(format!("127.0.0.{n}").parse().expect("ip"))
            .post(
                "/api/v1/auth/login",
                login_body("nobody@example.test", "whatever123"),
            )
            .await
            .assert_problem(401, "unauthenticated");
    }
    app.browser_from("127.0.0.5".parse().expect("ip"))
        .post(
            "/api/v1/auth/login",
            login_body("nobody@example.test", "whatever123"),
        )
        .await
        .assert_problem(429, "rate-limited");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_answers_are_identical() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    let wrong = b
        .post(
            "/api/v1/auth/login",
            login_body("alice@example.test", "wrong password!"),
        )
        .await;
    let unknown = b
        .post(
            "/api/v1/auth/login",
            login_body("nobody@example.test", "wrong password!"),
        )
        .await;
    let malformed = b
        .post(
            "/api/v1/auth/login",
            login_body("not an address", "wrong password!"),
        )
        .await;
    wrong.assert_problem(401, "unauthenticated");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.text, unknown.text, "byte-identical bodies");
    assert_eq!(wrong.text, malformed.text);
    assert_eq!(wrong.body["detail"], "invalid email or password");
    assert_eq!(wrong.header("content-type"), unknown.header("content-type"));
    assert_eq!(wrong.header("set-cookie"), "");
    assert_eq!(unknown.header("set-cookie"), "");

    // A disabled account answers the same, even with the right password.
    let mut user = alice.user.clone();
    user.status = smtpy_core::model::UserStatus::Disabled;
    smtpy_core::store::UserStore::update_user(&*app.store, &user)
        .await
        .expect("disable");
    let disabled = b
        .post(
            "/api/v1/auth/login",
            login_body("alice@example.test", PASSWORD),
        )
        .await;
    assert_eq!(disabled.text, wrong.text);

    // Failed logins are audited, without the password.
    let events = app
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
    let failed: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.action == "session.login_failed")
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed.iter().any(|e| e.owner == Some(alice.user.id)));
    assert!(
        !format!("{failed:?}").contains("wrong password!"),
        "no password in audit details"
    );
}

#[tokio::test]
async fn registration_reset_and_verification_are_throttled_per_ip() {
    let mut config = common::test_config();
    config.open_registration = true;
    config.limits.register_per_ip = Budget::new(2, Duration::from_secs(3600));
    config.limits.reset_per_ip = Budget::new(2, Duration::from_secs(3600));
    config.limits.verify_per_ip = Budget::new(2, Duration::from_secs(3600));
    let app = TestApp::start_with(config, |s| s).await;
    let b = app.browser();
    for n in 0..2 {
        b.post(
            "/api/v1/auth/register",
            json!({"email": format!("u{n}@example.test"), "password": PASSWORD}),
        )
        .await
        .expect(201);
    }
    let r = b
        .post(
            "/api/v1/auth/register",
            json!({"email": "u9@example.test", "password": PASSWORD}),
        )
        .await;
    r.assert_problem(429, "rate-limited");
    assert!(!r.header("retry-after").is_empty());

    for _ in 0..2 {
        assert_eq!(
            b.post(
                "/api/v1/auth/password-reset",
                json!({"email": "u0@example.test"})
            )
            .await
            .status,
            202
        );
    }
    b.post(
        "/api/v1/auth/password-reset",
        json!({"email": "u0@example.test"}),
    )
    .await
    .assert_problem(429, "rate-limited");

    for _ in 0..2 {
        b.post(
            "/api/v1/auth/password-reset/confirm",
            json!({"token": "bogus", "new_password": "another password"}),
        )
        .await
        .assert_problem(400, "bad-request");
    }
    b.post(
        "/api/v1/auth/password-reset/confirm",
        json!({"token": "bogus", "new_password": "another password"}),
    )
    .await
    .assert_problem(429, "rate-limited");
}

/// Logs in through a "proxy" at 127.0.0.1 that says the client is `client`.
async fn login_via_proxy(app: &TestApp, client: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", format!("198.51.100.99, {client}"))
        .json(&login_body("alice@example.test", password))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_per_ip_budget_follows_the_real_client() {
    let mut config = common::test_config();
    config.limits.login_per_ip = Budget::new(2, Duration::from_secs(900));
    config.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    // One client behind the proxy exhausts its own budget...
    for _ in 0..2 {
        assert_eq!(
            login_via_proxy(&app, "203.0.113.1", "wrong password!").await,
            401
        );
    }
    assert_eq!(login_via_proxy(&app, "203.0.113.1", PASSWORD).await, 429);
    // ...without locking out the others behind the same proxy. The
    // client-written left part of the header (198.51.100.99) is ignored: it
    // is the same for both.
    assert_eq!(login_via_proxy(&app, "203.0.113.2", PASSWORD).await, 200);

    // Without trusting the proxy, the header is ignored: everyone behind it
    // shares the proxy's budget.
    let mut config = common::test_config();
    config.limits.login_per_ip = Budget::new(2, Duration::from_secs(900));
    let app = TestApp::start_with(config, |s| s).await;
    app.user("alice@example.test").await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(login_via_proxy(&app, client, "wrong password!").await, 401);
    }
    assert_eq!(login_via_proxy(&app, "203.0.113.3", PASSWORD).await, 429);
}
