//! Account endpoints over real HTTP: password change, password reset by
//! mail, bootstrap of the first admin, the owner's settings.

mod common;

use std::time::Duration;

use common::{Client, PASSWORD, Resp, TestApp};
use serde_json::json;
use smtpy_core::model::SecretHash;
use smtpy_core::store::{Access, AuditFilter, AuditStore, CredentialStore, PageRequest, UserStore};

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

/// Waits until the outbox holds `n` notifications (reset mails are queued
/// in the background).
async fn wait_for_mail(app: &TestApp, n: usize) {
    for _ in 0..200 {
        if app.outbox.count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} notifications, got {}", app.outbox.count());
}

async fn events(app: &TestApp) -> Vec<smtpy_core::model::AuditEvent> {
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
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let here = app.browser();
    let there = app.browser_from("127.0.0.2".parse().expect("ip"));
    login(&here, "alice@example.test", PASSWORD)
        .await
        .expect(200);
    login(&there, "alice@example.test", PASSWORD)
        .await
        .expect(200);

    here.post(
        "/api/v1/auth/password",
        json!({"current_password": "not my password", "new_password": "a brand new secret"}),
    )
    .await
    .assert_problem(403, "forbidden");
    here.post(
        "/api/v1/auth/password",
        json!({"current_password": PASSWORD, "new_password": "short"}),
    )
    .await
    .assert_problem(422, "validation");
    there.get("/api/v1/me").await.expect(200);

    let r = here
        .post(
            "/api/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    here.get("/api/v1/me").await.expect(200);
    there
        .get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("s")
            .len(),
        1
    );
    login(&app.browser(), "alice@example.test", PASSWORD)
        .await
        .assert_problem(401, "unauthenticated");
    login(&app.browser(), "alice@example.test", "a brand new secret")
        .await
        .expect(200);
    let log = events(&app).await;
    let changed = log
        .iter()
        .find(|e| e.action == "user.password_changed")
        .expect("audited");
    assert_eq!(changed.owner, Some(alice.user.id));
    assert!(!format!("{log:?}").contains("a brand new secret"));

    // With an API key, every session ends.
    let r = alice
        .post(
            "/api/v1/auth/password",
            json!({"current_password": "a brand new secret", "new_password": "yet another secret"}),
        )
        .await;
    assert_eq!(r.status, 204);
    here.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn password_reset_token_works_once_and_expires() {
    let mut config = common::test_config();
    config.public_url = Some("https://mail.example.test".to_owned());
    let app = TestApp::start_with(config, |s| s).await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    login(&b, "alice@example.test", PASSWORD).await.expect(200);

    // Unknown address: the same 202, nothing sent.
    let unknown = app
        .browser()
        .post(
            "/api/v1/auth/password-reset",
            json!({"email": "nobody@example.test"}),
        )
        .await;
    let known = app
        .browser()
        .post(
            "/api/v1/auth/password-reset",
            json!({"email": "alice@example.test"}),
        )
        .await;
    assert_eq!(unknown.status, 202);
    assert_eq!(known.status, 202);
    assert_eq!(unknown.text, known.text);
    wait_for_mail(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(app.outbox.count(), 1, "nothing for the unknown address");
    let token = app
        .outbox
        .last_var("alice@example.test", "reset_code")
        .expect("mail sent");
    let link = app
        .outbox
        .last_var("alice@example.test", "reset_link")
        .expect("link");
    // The token travels in the fragment, never in the query string.
    assert_eq!(
        link,
        format!("https://mail.example.test/reset-password/confirm#token={token}")
    );
    assert!(!link.contains("?token="), "{link}");

    let confirm = |token: String, pw: &str| {
        let b = app.browser();
        let body = json!({"token": token, "new_password": pw});
        async move { b.post("/api/v1/auth/password-reset/confirm", body).await }
    };
    confirm(token.clone(), "short")
        .await
        .assert_problem(422, "validation");
    let r = confirm(token.clone(), "reset and renewed").await;
    assert_eq!(r.status, 204, "{r:?}");
    // Every session ended; the new password works, the old does not.
    b.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    assert!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("s")
            .is_empty()
    );
    login(&app.browser(), "alice@example.test", "reset and renewed")
        .await
        .expect(200);
    login(&app.browser(), "alice@example.test", PASSWORD)
        .await
        .assert_problem(401, "unauthenticated");
    // Once only.
    let again = confirm(token.clone(), "third password here").await;
    again.assert_problem(400, "bad-request");
    assert_eq!(again.body["detail"], "invalid or expired token");

    // Expiry.
    app.browser()
        .post(
            "/api/v1/auth/password-reset",
            json!({"email": "alice@example.test"}),
        )
        .await;
    wait_for_mail(&app, 2).await;
    let late = app
        .outbox
        .last_var("alice@example.test", "reset_code")
        .expect("mail");
    assert_ne!(late, token);
    app.clock.advance(Duration::from_secs(3601));
    confirm(late, "too late for this")
        .await
        .assert_problem(400, "bad-request");

    // Tampering.
    app.browser()
        .post(
            "/api/v1/auth/password-reset",
            json!({"email": "alice@example.test"}),
        )
        .await;
    wait_for_mail(&app, 3).await;
    let fresh = app
        .outbox
        .last_var("alice@example.test", "reset_code")
        .expect("mail");
    let mut chars: Vec<char> = fresh.chars().collect();
    // A character inside the MAC.
    chars[60] = if chars[60] == 'A' { 'B' } else { 'A' };
    confirm(chars.into_iter().collect(), "tampered token try")
        .await
        .assert_problem(400, "bad-request");
    confirm("garbage".into(), "garbage token try")
        .await
        .assert_problem(400, "bad-request");
    assert_eq!(confirm(fresh, "the real fresh one").await.status, 204);
    let log = events(&app).await;
    assert!(log.iter().any(|e| e.action == "user.password_reset"));
    assert!(!format!("{log:?}").contains("reset and renewed"));
}

#[tokio::test]
async fn bootstrap_creates_the_first_admin_once() {
    // Without a configured token: disabled.
    let app = TestApp::start().await;
    app.browser()
        .post(
            "/api/v1/bootstrap",
            json!({"token": "anything", "email": "root@example.test"}),
        )
        .await
        .assert_problem(403, "disabled");

    let mut config = common::test_config();
    config.bootstrap_token_hash = Some(SecretHash::of(b"let me in, first time"));
    let app = TestApp::start_with(config, |s| s).await;
    let bad = app
        .browser()
        .post(
            "/api/v1/bootstrap",
            json!({"token": "wrong", "email": "root@example.test"}),
        )
        .await;
    bad.assert_problem(403, "disabled");
    assert_eq!(app.store.count_users().await.expect("count"), 0);

    let r = app
        .browser()
        .post(
            "/api/v1/bootstrap",
            json!({"token": "let me in, first time", "email": "root@example.test", "password": PASSWORD}),
        )
        .await;
    let body = r.expect(201).clone();
    assert_eq!(body["user"]["role"], "admin");
    let token = body["api_key"]["token"].as_str().expect("token").to_owned();
    assert!(
        body["api_key"]["scopes"]
            .as_array()
            .expect("scopes")
            .contains(&json!("admin"))
    );
    let admin = Client::new(&app.base, Some(token), None);
    admin.get("/api/v1/users").await.expect(200);
    login(&app.browser(), "root@example.test", PASSWORD)
        .await
        .expect(200);

    // Already bootstrapped: the same answer as a bad token.
    let again = app
        .browser()
        .post(
            "/api/v1/bootstrap",
            json!({"token": "let me in, first time", "email": "root2@example.test"}),
        )
        .await;
    again.assert_problem(403, "disabled");
    assert_eq!(again.text, bad.text);
    assert_eq!(app.store.count_users().await.expect("count"), 1);
    let log = events(&app).await;
    assert!(log.iter().any(|e| e.action == "user.bootstrap"));
    assert!(!format!("{log:?}").contains("let me in"));
}

#[tokio::test]
async fn bootstrap_is_refused_when_an_admin_exists() {
    let mut config = common::test_config();
    config.bootstrap_token_hash = Some(SecretHash::of(b"token"));
    let app = TestApp::start_with(config, |s| s).await;
    app.user("plain@example.test").await;
    app.admin("root@example.test").await;
    app.browser()
        .post(
            "/api/v1/bootstrap",
            json!({"token": "token", "email": "root2@example.test"}),
        )
        .await
        .assert_problem(403, "disabled");
    assert_eq!(app.store.count_users().await.expect("count"), 2);
}

#[tokio::test]
async fn owners_change_their_settings_but_not_their_quotas() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let bob = app.user("bob@example.test").await;
    let me = alice.get("/api/v1/me").await;
    let s = &me.expect(200)["settings"];
    assert_eq!(s["dmarc_reject"], "reject");
    assert_eq!(s["subject_tag"], "[SPAM?]");
    assert!(!me.text.contains("argon2"));

    let r = alice
        .patch(
            "/api/v1/me",
            json!({
                "dmarc_reject": "quarantine",
                "dmarc_quarantine": "tag_subject",
                "subject_tag": "[suspect]",
                "sender_format": "{name} via alias",
                "notify_bounces": false,
                "notify_quarantine": false
            }),
        )
        .await;
    let s = r.expect(200)["settings"].clone();
    assert_eq!(s["dmarc_reject"], "quarantine");
    assert_eq!(s["dmarc_quarantine"], "tag_subject");
    assert_eq!(s["sender_format"], "{name} via alias");
    let row = app.store.get_user(alice.user.id).await.expect("row");
    assert_eq!(row.settings.subject_tag, "[suspect]");
    assert!(!row.settings.notify_bounces && !row.settings.notify_quarantine);
    assert_eq!(
        row.settings.sender_format.as_deref(),
        Some("{name} via alias")
    );
    // Bob is untouched.
    let bob_row = app.store.get_user(bob.user.id).await.expect("row");
    assert_eq!(bob_row.settings.subject_tag, "[SPAM?]");
    // "" goes back to the operator's format.
    let r = alice
        .patch("/api/v1/me", json!({"sender_format": ""}))
        .await;
    assert!(r.expect(200)["settings"]["sender_format"].is_null());

    for (body, field) in [
        (json!({"subject_tag": "x".repeat(65)}), Some("subject_tag")),
        (json!({"subject_tag": "a\r\nBcc: x"}), Some("subject_tag")),
        (
            json!({"sender_format": "no placeholder"}),
            Some("sender_format"),
        ),
        (
            json!({"sender_format": format!("{{name}}{}", "x".repeat(125))}),
            Some("sender_format"),
        ),
        (json!({"forwards_per_day": 100000}), None),
        (json!({"aliases_per_hour": 1000}), None),
        (json!({"dmarc_reject": "ignore"}), None),
    ] {
        let r = alice.patch("/api/v1/me", body).await;
        r.assert_problem(422, "validation");
        if let Some(f) = field {
            assert_eq!(r.body["errors"][0]["field"], f, "{r:?}");
        }
    }
    let row = app.store.get_user(alice.user.id).await.expect("row");
    assert_eq!(row.settings.forwards_per_day, None);
    assert_eq!(row.settings.aliases_per_hour, None);
    assert!(
        events(&app)
            .await
            .iter()
            .any(|e| e.action == "user.settings_changed" && e.owner == Some(alice.user.id))
    );
}

#[tokio::test]
async fn the_document_lists_the_account_endpoints() {
    let app = TestApp::start().await;
    let doc = app.browser().get("/api/v1/openapi.json").await.body;
    let paths = &doc["paths"];
    for (path, method, status) in [
        ("/api/v1/auth/register", "post", "201"),
        ("/api/v1/auth/login", "post", "200"),
        ("/api/v1/auth/logout", "post", "204"),
        ("/api/v1/auth/session", "get", "200"),
        ("/api/v1/auth/session/renew", "post", "200"),
        ("/api/v1/auth/password", "post", "204"),
        ("/api/v1/auth/password-reset", "post", "202"),
        ("/api/v1/auth/password-reset/confirm", "post", "204"),
        ("/api/v1/bootstrap", "post", "201"),
        ("/api/v1/me", "patch", "200"),
        ("/api/v1/me/sessions", "delete", "200"),
        ("/api/v1/me/sessions/{id}", "delete", "204"),
        ("/api/v1/me/totp/setup", "post", "200"),
        ("/api/v1/me/totp/enable", "post", "204"),
        ("/api/v1/me/totp", "delete", "204"),
        ("/api/v1/api-keys", "post", "201"),
        ("/api/v1/api-keys/{id}", "delete", "204"),
        ("/api/v1/users", "get", "200"),
        ("/api/v1/users/{id}", "patch", "200"),
        ("/api/v1/invitations", "post", "201"),
        ("/api/v1/invitations/{id}", "delete", "204"),
    ] {
        let op = &paths[path][method];
        assert!(op["responses"][status].is_object(), "{method} {path}: {op}");
        assert_eq!(
            op["responses"]["429"]["$ref"], "#/components/responses/Problem",
            "{method} {path}"
        );
    }
    // Public endpoints say so; the others need credentials.
    assert_eq!(paths["/api/v1/auth/login"]["post"]["security"], json!([{}]));
    assert!(paths["/api/v1/users"]["get"]["security"].is_null());
    // Input bounds are in the schemas.
    let create = &doc["components"]["schemas"]["CreateKey"];
    assert_eq!(create["properties"]["name"]["maxLength"], 64);
    assert_eq!(create["additionalProperties"], false);
}
