//! `/api/v1/mailboxes`: creation sends one verification mail, the token
//! verifies once, expiry, loops refused, and authorization negatives.

mod common;

use std::time::Duration;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{MailboxId, UserId};
use smtpy_core::model::{Alias, ApiScope, Domain, Role, SecretHash};
use smtpy_core::notify::NotificationKind;
use smtpy_core::store::{
    Access, AliasStore, AuditFilter, AuditStore, DomainStore, MailboxStore, PageRequest,
};
use smtpy_core::time::Clock as _;
use smtpy_http::{ApiState, Budget};

async fn create(actor: &Actor, address: &str) -> Value {
    actor
        .post("/api/v1/mailboxes", json!({ "address": address }))
        .await
        .expect(201)
        .clone()
}

fn mailbox_id(body: &Value) -> MailboxId {
    body["id"].as_str().expect("id").parse().expect("uuid")
}

fn code(app: &TestApp, to: &str) -> String {
    app.outbox
        .last_var(to, "verification_code")
        .expect("a verification mail")
}

async fn audit_count(app: &TestApp, owner: UserId, action: &str) -> usize {
    app.store
        .list_audit(
            Access::Owner(owner),
            &AuditFilter {
                action: Some(action.to_owned()),
                ..AuditFilter::default()
            },
            PageRequest::first(100),
        )
        .await
        .expect("audit")
        .items
        .len()
}

#[tokio::test]
async fn create_sends_one_mail_and_the_token_verifies_once() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "Me@Outside.test").await;
    assert_eq!(body["address"], "Me@outside.test");
    assert_eq!(body["verified"], false);
    assert_eq!(body["verification_pending"], true);
    // Exactly one mail, to that address, of the verification kind.
    {
        let sent = app.outbox.sent.lock().expect("outbox");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, a.user.id);
        assert_eq!(sent[0].1.to.to_string(), "Me@outside.test");
        assert_eq!(sent[0].1.kind, NotificationKind::MailboxVerification);
        assert_eq!(sent[0].1.vars["verification_link"], "", "no public_url");
    }
    let token = code(&app, "Me@outside.test");
    assert!(token.len() > 43);
    // Only the hash is stored, and the answer holds no token.
    let stored = app
        .store
        .get_mailbox(Access::System, mailbox_id(&body))
        .await
        .expect("stored");
    assert_eq!(
        stored.verification_token,
        Some(SecretHash::of(token.as_bytes()))
    );
    assert!(stored.verified_at.is_none());
    assert!(!body.to_string().contains(&token));
    assert_eq!(audit_count(&app, a.user.id, "mailbox.create").await, 1);

    // Verified without authentication: the token is the proof.
    let anon = app.browser();
    let r = anon
        .post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await;
    r.expect(200);
    assert_eq!(r.body["verified"], true);
    assert_eq!(r.body["verification_pending"], false);
    let stored = app
        .store
        .get_mailbox(Access::System, mailbox_id(&body))
        .await
        .expect("stored");
    assert_eq!(stored.verified_at, Some(app.clock.now()));
    assert!(stored.verification_token.is_none());
    assert_eq!(audit_count(&app, a.user.id, "mailbox.verify").await, 1);

    // Only once.
    anon.post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await
        .assert_problem(400, "bad-request");
    // Resending for a verified mailbox is a conflict.
    a.post_empty(&format!("/api/v1/mailboxes/{}/resend", mailbox_id(&body)))
        .await
        .assert_problem(409, "conflict");
    assert_eq!(app.outbox.count(), 1);
}

#[tokio::test]
async fn the_link_uses_the_public_url_and_an_authenticated_verify_works() {
    let mut config = common::test_config();
    config.public_url = Some("https://mail.example/".to_owned());
    let app = TestApp::start_with(config, |s| s).await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "me@outside.test").await;
    let token = code(&app, "me@outside.test");
    assert_eq!(
        app.outbox
            .last_var("me@outside.test", "verification_link")
            .as_deref(),
        Some(format!("https://mail.example/app/mailboxes/verify#token={token}").as_str())
    );
    let r = a
        .post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await;
    assert_eq!(r.expect(200)["id"], body["id"]);
    let events = app
        .store
        .list_audit(
            Access::Owner(a.user.id),
            &AuditFilter {
                action: Some("mailbox.verify".to_owned()),
                ..AuditFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .expect("audit");
    assert!(matches!(
        events.items[0].actor,
        smtpy_core::model::Actor::ApiKey(_)
    ));
}

#[tokio::test]
async fn failing_credentials_do_not_stop_a_verification() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "me@outside.test").await;
    let token = code(&app, "me@outside.test");
    let stale = common::Client::new(&app.base, Some("smtpy_revoked-key".into()), None);
    let r = stale
        .post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await;
    assert_eq!(r.expect(200)["id"], body["id"]);
    let stored = app
        .store
        .get_mailbox(Access::System, mailbox_id(&body))
        .await
        .expect("stored");
    assert!(stored.verified_at.is_some());
}

#[tokio::test]
async fn wrong_tampered_and_expired_tokens_are_400() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "me@outside.test").await;
    let token = code(&app, "me@outside.test");
    let anon = app.browser();
    for bad in [
        "nope".to_owned(),
        format!("{token}x"),
        "a.123".to_owned(),
        // The same random part with a later expiry: the hash no longer matches.
        {
            let (random, _) = token.rsplit_once('.').expect("dot");
            format!("{random}.{}", i64::MAX)
        },
    ] {
        anon.post("/api/v1/mailboxes/verify", json!({ "token": bad }))
            .await
            .assert_problem(400, "bad-request");
    }
    anon.post("/api/v1/mailboxes/verify", json!({ "token": "" }))
        .await
        .assert_problem(422, "validation");
    anon.post(
        "/api/v1/mailboxes/verify",
        json!({ "token": "x".repeat(129) }),
    )
    .await
    .assert_problem(422, "validation");
    anon.post(
        "/api/v1/mailboxes/verify",
        json!({ "token": token, "extra": 1 }),
    )
    .await
    .assert_problem(422, "validation");

    // 24 hours later the token has expired.
    app.clock.advance(Duration::from_secs(86_400));
    let r = anon
        .post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await;
    r.assert_problem(400, "bad-request");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired"))
    );
    let stored = app
        .store
        .get_mailbox(Access::System, mailbox_id(&body))
        .await
        .expect("stored");
    assert!(stored.verified_at.is_none());

    // A resend gives a new token that works; the old one is dead.
    let r = a
        .post_empty(&format!("/api/v1/mailboxes/{}/resend", mailbox_id(&body)))
        .await;
    r.expect(200);
    assert_eq!(app.outbox.count(), 2);
    let fresh = code(&app, "me@outside.test");
    assert_ne!(fresh, token);
    assert_eq!(audit_count(&app, a.user.id, "mailbox.resend").await, 1);
    anon.post("/api/v1/mailboxes/verify", json!({ "token": fresh }))
        .await
        .expect(200);
}

#[tokio::test]
async fn addresses_on_hosted_domains_invalid_ones_and_duplicates_are_refused() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let b = app.user("b@x.test").await;
    let d = Domain::new(
        smtpy_core::address::DomainName::parse("hosted.example").expect("name"),
        b.user.id,
        "t".into(),
        app.clock.now(),
    );
    app.store.create_domain(&d).await.expect("domain");
    for bad in ["me@hosted.example", "me@HOSTED.example", "me@mx.smtpy.test"] {
        let r = a.post("/api/v1/mailboxes", json!({ "address": bad })).await;
        r.assert_problem(422, "validation");
        assert!(r.text.contains("hosted by this service"), "{r:?}");
    }
    for bad in ["not an address", "x", "@nobody.example"] {
        let r = a.post("/api/v1/mailboxes", json!({ "address": bad })).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "address");
    }
    let long = format!("{}@outside.test", "a".repeat(250));
    a.post("/api/v1/mailboxes", json!({ "address": long }))
        .await
        .assert_problem(422, "validation");
    create(&a, "me@outside.test").await;
    a.post("/api/v1/mailboxes", json!({ "address": "ME@outside.test" }))
        .await
        .assert_problem(409, "conflict");
    // Another user may add the same outside address.
    create(&b, "me@outside.test").await;
    assert_eq!(app.outbox.count(), 2);
    assert_eq!(
        app.store
            .list_mailboxes(a.user.id)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn without_an_outbox_nothing_is_created() {
    let app = TestApp::start_with(common::test_config(), |s: ApiState| {
        ApiState::new(s.store().clone(), s.config().clone()).with_clock(s.clock().clone())
    })
    .await;
    let a = app.user("a@x.test").await;
    a.post("/api/v1/mailboxes", json!({ "address": "me@outside.test" }))
        .await
        .assert_problem(503, "unavailable");
    assert!(
        app.store
            .list_mailboxes(a.user.id)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn verification_and_mail_sending_are_throttled() {
    let mut config = common::test_config();
    config.limits.verify_per_ip = Budget::new(3, Duration::from_secs(3600));
    let app = TestApp::start_with(config, |s| s).await;
    let anon = app.browser();
    for _ in 0..3 {
        anon.post("/api/v1/mailboxes/verify", json!({ "token": "x.1" }))
            .await
            .assert_problem(400, "bad-request");
    }
    let r = anon
        .post("/api/v1/mailboxes/verify", json!({ "token": "x.1" }))
        .await;
    r.assert_problem(429, "rate-limited");
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s > 0));

    let a = app.user("a@x.test").await;
    let body = create(&a, "one@outside.test").await;
    let path = format!("/api/v1/mailboxes/{}/resend", mailbox_id(&body));
    a.post_empty(&path).await.expect(200);
    a.post_empty(&path).await.expect(200);
    a.post_empty(&path)
        .await
        .assert_problem(429, "rate-limited");
    a.post(
        "/api/v1/mailboxes",
        json!({ "address": "two@outside.test" }),
    )
    .await
    .assert_problem(429, "rate-limited");
    assert_eq!(app.outbox.count(), 3);
}

#[tokio::test]
async fn list_get_and_delete() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let one = create(&a, "one@outside.test").await;
    let two = create(&a, "two@outside.test").await;
    let three = create(&a, "three@outside.test").await;
    let page = a.get("/api/v1/mailboxes?limit=2").await;
    let items = page.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], one["id"]);
    assert_eq!(items[1]["id"], two["id"]);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let rest = a
        .get(&format!("/api/v1/mailboxes?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.expect(200)["items"][0]["id"], three["id"]);
    assert!(rest.body.get("next_cursor").is_none());
    a.get("/api/v1/mailboxes?cursor=zzz")
        .await
        .assert_problem(400, "bad-request");

    let got = a
        .get(&format!("/api/v1/mailboxes/{}", mailbox_id(&one)))
        .await;
    assert_eq!(got.expect(200)["address"], "one@outside.test");
    assert!(!got.text.contains("token\""));

    // A mailbox an alias uses cannot go.
    let token = code(&app, "one@outside.test");
    app.browser()
        .post("/api/v1/mailboxes/verify", json!({ "token": token }))
        .await
        .expect(200);
    let d = Domain::new(
        smtpy_core::address::DomainName::parse("mine.example").expect("name"),
        a.user.id,
        "t".into(),
        app.clock.now(),
    );
    app.store.create_domain(&d).await.expect("domain");
    let alias = Alias::new(
        EmailAddress::parse("shop@mine.example").expect("address"),
        a.user.id,
        d.id,
        vec![mailbox_id(&one)],
        app.clock.now(),
    );
    app.store.create_alias(&alias).await.expect("alias");
    a.delete(&format!("/api/v1/mailboxes/{}", mailbox_id(&one)))
        .await
        .assert_problem(409, "conflict");
    let r = a
        .delete(&format!("/api/v1/mailboxes/{}", mailbox_id(&two)))
        .await;
    assert_eq!(r.status, 204);
    assert!(
        app.store
            .get_mailbox(Access::System, mailbox_id(&two))
            .await
            .is_err()
    );
    assert!(
        app.store
            .get_mailbox(Access::System, mailbox_id(&one))
            .await
            .is_ok()
    );
    assert_eq!(audit_count(&app, a.user.id, "mailbox.delete").await, 1);
}

#[tokio::test]
async fn another_user_gets_404_and_lists_stay_apart() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let b = app.user("b@x.test").await;
    let mine = create(&a, "a@outside.test").await;
    create(&b, "b@outside.test").await;
    let base = format!("/api/v1/mailboxes/{}", mailbox_id(&mine));
    b.get(&base).await.assert_problem(404, "not-found");
    b.delete(&base).await.assert_problem(404, "not-found");
    b.post_empty(&format!("{base}/resend"))
        .await
        .assert_problem(404, "not-found");
    assert_eq!(app.outbox.count(), 2, "no mail sent for B's attempt");
    assert!(
        app.store
            .get_mailbox(Access::System, mailbox_id(&mine))
            .await
            .is_ok()
    );
    b.get(&format!("/api/v1/mailboxes/{}", MailboxId::new()))
        .await
        .assert_problem(404, "not-found");
    let list = b.get("/api/v1/mailboxes").await;
    let items = list.expect(200)["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["address"], "b@outside.test");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::start().await;
    let reader = app
        .account("r@x.test", Role::User, &[ApiScope::DomainsRead])
        .await;
    reader
        .post("/api/v1/mailboxes", json!({ "address": "r@outside.test" }))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(app.outbox.count(), 0);
    let m = smtpy_core::model::Mailbox::new(
        reader.user.id,
        EmailAddress::parse("r@outside.test").expect("address"),
        app.clock.now(),
    );
    app.store.create_mailbox(&m).await.expect("mailbox");
    let base = format!("/api/v1/mailboxes/{}", m.id);
    reader.get(&base).await.expect(200);
    reader.get("/api/v1/mailboxes").await.expect(200);
    reader.delete(&base).await.assert_problem(403, "forbidden");
    reader
        .post_empty(&format!("{base}/resend"))
        .await
        .assert_problem(403, "forbidden");
    assert!(app.store.get_mailbox(Access::System, m.id).await.is_ok());
    let none = app
        .account("n@x.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    none.get("/api/v1/mailboxes")
        .await
        .assert_problem(403, "forbidden");
    none.get(&base).await.assert_problem(403, "forbidden");
    // Without credentials only /mailboxes/verify answers.
    app.browser()
        .get("/api/v1/mailboxes")
        .await
        .assert_problem(401, "unauthenticated");
}
