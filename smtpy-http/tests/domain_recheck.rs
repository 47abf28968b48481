//! `jobs::recheck_domains`: re-checks stale domains only and stores the
//! results.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{Value, json};
use smtpy_core::ids::DomainId;
use smtpy_core::model::{CheckStatus, Domain};
use smtpy_core::store::{Access, AuditFilter, AuditStore, DomainStore, PageRequest};
use smtpy_core::time::Clock as _;
use smtpy_http::ApiState;
use smtpy_http::jobs::recheck_domains;

const HOUR: Duration = Duration::from_secs(3600);

async fn create(actor: &common::Actor, name: &str) -> (DomainId, Value) {
    let r = actor.post("/api/v1/domains", json!({ "name": name })).await;
    let body = r.expect(201).clone();
    let id = body["domain"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    (id, body["records"].clone())
}

fn publish(app: &TestApp, records: &Value, skip: &[&str]) {
    for r in records.as_array().expect("records") {
        if skip.contains(&r["purpose"].as_str().unwrap_or("")) {
            continue;
        }
        let (name, value) = (
            r["name"].as_str().expect("name"),
            r["value"].as_str().expect("value"),
        );
        if r["type"] == "MX" {
            app.dns.add_mx(name, 10, value);
        } else {
            app.dns.add_txt(name, value);
        }
    }
}

async fn domain(app: &TestApp, id: DomainId) -> Domain {
    app.store
        .get_domain(Access::System, id)
        .await
        .expect("domain")
}

#[tokio::test]
async fn only_stale_and_never_checked_domains_are_rechecked() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let (stale, stale_records) = create(&a, "stale.example").await;
    let (fresh, fresh_records) = create(&a, "fresh.example").await;
    let (never, never_records) = create(&a, "never.example").await;

    // `stale` is checked now with everything right...
    publish(&app, &stale_records, &[]);
    a.post_empty(&format!("/api/v1/domains/{stale}/verify"))
        .await
        .expect(200);
    let t0 = app.clock.now();
    assert_eq!(domain(&app, stale).await.checks.spf.status, CheckStatus::Ok);

    // ... `fresh` two hours later with SPF missing.
    app.clock.advance(2 * HOUR);
    publish(&app, &fresh_records, &["spf"]);
    a.post_empty(&format!("/api/v1/domains/{fresh}/verify"))
        .await
        .expect(200);
    let t1 = app.clock.now();
    let fresh_before = domain(&app, fresh).await;
    assert_eq!(fresh_before.checks.spf.status, CheckStatus::Missing);

    // Then DNS changes: `stale` gets a second SPF record (broken), `fresh`
    // gets its SPF (but is not due), `never` publishes everything.
    app.dns
        .add_txt("stale.example", "v=spf1 include:other.example -all");
    app.dns
        .add_txt("fresh.example", "v=spf1 include:mx.smtpy.test ~all");
    publish(&app, &never_records, &[]);
    app.clock.advance(Duration::from_secs(60));
    let now = app.clock.now();

    let n = recheck_domains(&app.state, HOUR).await.expect("job");
    assert_eq!(n, 2, "stale and never-checked domains");

    let s = domain(&app, stale).await;
    assert_eq!(s.checks.last_checked_at, Some(now));
    assert_eq!(s.checks.spf.status, CheckStatus::Wrong);
    assert!(s.checks.spf.detail.contains("2 SPF records"));
    assert_eq!(s.checks.mx.status, CheckStatus::Ok);
    assert_eq!(s.verified_at, Some(t0), "stays verified");

    let f = domain(&app, fresh).await;
    assert_eq!(f.checks, fresh_before.checks, "not due: untouched");
    assert_eq!(f.checks.last_checked_at, Some(t1));
    assert_eq!(f.revision, fresh_before.revision);

    let v = domain(&app, never).await;
    assert_eq!(v.checks.last_checked_at, Some(now));
    assert_eq!(v.checks.dkim.status, CheckStatus::Ok);
    assert_eq!(v.verified_at, Some(now), "verified by the job");
    let audit = app
        .store
        .list_audit(
            Access::Owner(a.user.id),
            &AuditFilter {
                action: Some("domain.verify".to_owned()),
                ..AuditFilter::default()
            },
            PageRequest::first(10),
        )
        .await
        .expect("audit");
    assert!(
        audit
            .items
            .iter()
            .any(|e| e.target.as_deref() == Some(never.to_string().as_str())
                && e.actor == smtpy_core::model::Actor::System)
    );

    // Straight away, nothing is due.
    assert_eq!(recheck_domains(&app.state, HOUR).await.expect("job"), 0);
    // With a zero age everything is.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        recheck_domains(&app.state, Duration::ZERO)
            .await
            .expect("job"),
        3
    );
}

#[tokio::test]
async fn pages_through_many_domains_of_every_owner() {
    let app = TestApp::start().await;
    let now = app.clock.now();
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = app.user(&format!("u{i}@x.test")).await;
        for j in 0..70 {
            let d = Domain::new(
                smtpy_core::address::DomainName::parse(&format!("d{i}-{j}.example")).expect("name"),
                u.user.id,
                format!("tok{i}{j}"),
                now,
            );
            app.store.create_domain(&d).await.expect("domain");
            ids.push(d.id);
        }
    }
    app.clock.advance(Duration::from_secs(1));
    let n = recheck_domains(&app.state, HOUR).await.expect("job");
    assert_eq!(n, 210);
    for id in ids {
        let d = domain(&app, id).await;
        assert!(d.checks.last_checked_at.is_some());
        assert_eq!(d.checks.mx.status, CheckStatus::Missing);
    }
}

#[tokio::test]
async fn without_dns_nothing_is_checked() {
    let app = TestApp::start_with(common::test_config(), |s: ApiState| {
        ApiState::new(s.store().clone(), s.config().clone())
            .with_clock(s.clock().clone())
            .with_keyring(s.keyring().expect("keyring").clone())
    })
    .await;
    let a = app.user("a@x.test").await;
    let (id, _) = create(&a, "quiet.example").await;
    assert_eq!(recheck_domains(&app.state, HOUR).await.expect("job"), 0);
    assert!(domain(&app, id).await.checks.last_checked_at.is_none());
}

/// Marks a domain disabled the way `server admin domain disable` does:
/// straight in the store, `verified_at` untouched.
async fn admin_disable(app: &TestApp, id: DomainId) -> Domain {
    let mut d = domain(app, id).await;
    d.disabled = true;
    app.store
        .update_domain(Access::System, &d)
        .await
        .expect("disable")
}

/// An administrator's disable sticks: the owner's verify is `409`, the
/// re-check job stores the checks but never verifies the domain, the API
/// shows `disabled`, and the owner cannot clear it with `PATCH`.
#[tokio::test]
async fn a_disabled_domain_is_never_reverified() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let (pending, pending_records) = create(&a, "pending.example").await;
    let (verified, verified_records) = create(&a, "verified.example").await;
    publish(&app, &verified_records, &[]);
    a.post_empty(&format!("/api/v1/domains/{verified}/verify"))
        .await
        .expect(200);
    let t0 = app.clock.now();
    // Both disabled; then the owner of `pending` publishes its records.
    admin_disable(&app, pending).await;
    let disabled_verified = admin_disable(&app, verified).await;
    assert_eq!(disabled_verified.verified_at, Some(t0), "kept by disable");
    publish(&app, &pending_records, &[]);
    app.clock.advance(2 * HOUR);

    for id in [pending, verified] {
        let r = a.post_empty(&format!("/api/v1/domains/{id}/verify")).await;
        r.assert_problem(409, "conflict");
        assert_eq!(r.body["detail"], "an administrator disabled this domain");
    }
    assert!(
        domain(&app, pending).await.checks.last_checked_at.is_none(),
        "a refused verify looks nothing up"
    );

    let now = app.clock.now();
    assert_eq!(recheck_domains(&app.state, HOUR).await.expect("job"), 2);
    let p = domain(&app, pending).await;
    assert_eq!(p.checks.last_checked_at, Some(now), "checks stored");
    assert_eq!(p.checks.mx.status, CheckStatus::Ok);
    assert_eq!(p.verified_at, None, "not verified by the job");
    assert!(p.disabled);
    let v = domain(&app, verified).await;
    assert_eq!(v.verified_at, Some(t0));
    assert!(v.disabled, "still disabled after the job");

    let got = a.get(&format!("/api/v1/domains/{pending}")).await;
    let body = got.expect(200);
    assert_eq!(body["domain"]["disabled"], true);
    assert_eq!(body["domain"]["verified"], false);
    let listed = a.get("/api/v1/domains").await;
    let items = listed.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    for item in &items {
        assert_eq!(item["disabled"], true, "{item}");
    }
    assert_eq!(items.len(), 2);

    // `disabled` is not part of the owner's PATCH body.
    a.patch(
        &format!("/api/v1/domains/{pending}"),
        json!({ "disabled": false }),
    )
    .await
    .assert_problem(422, "validation");
    assert!(domain(&app, pending).await.disabled);
    // Any change the owner may make keeps it disabled.
    let r = a
        .patch(
            &format!("/api/v1/domains/{verified}"),
            json!({ "catch_all": false }),
        )
        .await;
    assert_eq!(r.expect(200)["domain"]["disabled"], true);
    assert!(domain(&app, verified).await.disabled);

    // Enabled again by the administrator: the owner verifies as before.
    let mut p = domain(&app, pending).await;
    p.disabled = false;
    app.store
        .update_domain(Access::System, &p)
        .await
        .expect("enable");
    let r = a
        .post_empty(&format!("/api/v1/domains/{pending}/verify"))
        .await;
    let body = r.expect(200);
    assert_eq!(body["verified"], true);
    assert_eq!(body["domain"]["disabled"], false);
}
