//! `/api/v1/domains`: creation with the exact DNS records, verification with
//! explanations, changes, deletion and authorization negatives.

mod common;

use std::time::Duration;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::dkim::PublishMode;
use smtpy_core::ids::{DomainId, UserId};
use smtpy_core::model::{Alias, ApiScope, CheckStatus, Mailbox, Role};
use smtpy_core::store::{
    Access, AliasStore, AuditFilter, AuditStore, DomainStore, MailboxStore, PageRequest,
};
use smtpy_http::{ApiState, Budget};

async fn create(actor: &Actor, name: &str) -> Value {
    let r = actor.post("/api/v1/domains", json!({ "name": name })).await;
    r.expect(201).clone()
}

fn id_of(body: &Value) -> String {
    body["domain"]["id"].as_str().expect("id").to_owned()
}

fn domain_id(body: &Value) -> DomainId {
    id_of(body).parse().expect("uuid")
}

/// Publishes `records` (as returned by the API) in the test DNS.
fn publish(app: &TestApp, records: &Value) {
    for r in records.as_array().expect("records") {
        let name = r["name"].as_str().expect("name");
        let value = r["value"].as_str().expect("value");
        match r["type"].as_str().expect("type") {
            "TXT" => app.dns.add_txt(name, value),
            "MX" => app.dns.add_mx(
                name,
                u16::try_from(r["priority"].as_u64().expect("priority")).expect("u16"),
                value,
            ),
            other => panic!("unexpected record type {other}"),
        }
    }
}

/// Publishes only the records whose purpose is not in `skip`.
fn publish_except(app: &TestApp, records: &Value, skip: &[&str]) {
    let kept: Vec<Value> = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| !skip.contains(&r["purpose"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    publish(app, &Value::Array(kept));
}

fn result<'a>(body: &'a Value, purpose: &str) -> &'a Value {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["purpose"] == purpose)
        .unwrap_or_else(|| panic!("no {purpose} result in {body}"))
}

async fn audit_actions(app: &TestApp, owner: UserId, action: &str) -> usize {
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

/// The state of `app` rebuilt without a keyring, DNS or outbox, as chosen.
fn rebuilt(s: ApiState, keyring: bool, dns: bool) -> ApiState {
    let mut n = ApiState::new(s.store().clone(), s.config().clone()).with_clock(s.clock().clone());
    if let Some(o) = s.outbox() {
        n = n.with_outbox(o.clone());
    }
    if keyring && let Some(k) = s.keyring() {
        n = n.with_keyring(k.clone());
    }
    if dns && let Some(d) = s.dns() {
        n = n.with_dns(d.clone());
    }
    n
}

async fn verified_mailbox(app: &TestApp, owner: UserId, address: &str) -> Mailbox {
    let now = smtpy_core::time::Clock::now(&app.clock);
    let mut m = Mailbox::new(owner, EmailAddress::parse(address).expect("address"), now);
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("mailbox");
    m
}

#[tokio::test]
async fn create_returns_every_record_with_exact_values() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "Example.ORG").await;
    let d = &body["domain"];
    assert_eq!(d["name"], "example.org");
    assert_eq!(d["shared"], false);
    assert_eq!(d["mine"], true);
    assert_eq!(d["verified"], false);
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    assert_eq!(stored.owner, a.user.id);
    assert!(stored.verification_token.len() >= 32);
    assert_eq!(d["verification_token"], stored.verification_token);
    assert_eq!(stored.dkim_keys.len(), 2, "RSA and Ed25519 keys");

    let records = body["records"].as_array().expect("records");
    let purposes: Vec<&str> = records
        .iter()
        .map(|r| r["purpose"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        purposes,
        ["verification", "mx", "spf", "dkim", "dkim", "dmarc"]
    );
    let token = &stored.verification_token;
    assert_eq!(records[0]["name"], "_smtpy-verification.example.org");
    assert_eq!(records[0]["type"], "TXT");
    assert_eq!(records[0]["value"], format!("smtpy-verification={token}"));
    assert_eq!(
        records[0]["zone_line"],
        format!("_smtpy-verification.example.org. 3600 IN TXT \"smtpy-verification={token}\"")
    );
    assert_eq!(records[1]["name"], "example.org");
    assert_eq!(records[1]["type"], "MX");
    assert_eq!(records[1]["value"], "mx.smtpy.test");
    assert_eq!(records[1]["priority"], 10);
    assert_eq!(
        records[1]["zone_line"],
        "example.org. 3600 IN MX 10 mx.smtpy.test."
    );
    assert_eq!(records[2]["name"], "example.org");
    assert_eq!(records[2]["type"], "TXT");
    assert_eq!(records[2]["value"], "v=spf1 include:mx.smtpy.test ~all");
    for (r, key) in records[3..5].iter().zip(&stored.dkim_keys) {
        assert_eq!(r["type"], "TXT");
        assert_eq!(
            r["name"],
            format!("{}._domainkey.example.org", key.selector)
        );
        assert_eq!(r["value"], key.dns_record, "the stored key's record");
        assert!(
            r["zone_line"]
                .as_str()
                .is_some_and(|z| z.starts_with(&format!(
                    "{}._domainkey.example.org. 3600 IN TXT \"v=DKIM1; k=",
                    key.selector
                )))
        );
    }
    assert!(
        records[3]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("v=DKIM1; k=rsa; p="))
    );
    assert!(
        records[4]["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("v=DKIM1; k=ed25519; p="))
    );
    assert_eq!(records[5]["name"], "_dmarc.example.org");
    assert_eq!(
        records[5]["value"],
        "v=DMARC1; p=quarantine; adkim=r; aspf=r"
    );

    // No secret leaves: no private key material in the answer.
    assert!(!body.to_string().contains("private"));
    assert_eq!(audit_actions(&app, a.user.id, "domain.create").await, 1);

    // The same records are served later.
    let again = a
        .get(&format!("/api/v1/domains/{}/records", id_of(&body)))
        .await;
    assert_eq!(again.expect(200)["records"], body["records"]);
    let got = a.get(&format!("/api/v1/domains/{}", id_of(&body))).await;
    assert_eq!(got.expect(200)["records"], body["records"]);
    assert_eq!(got.body["domain"]["checks"]["mx"]["status"], "unknown");
}

#[tokio::test]
async fn international_names_are_normalised_and_bad_names_refused() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "Bücher.example").await;
    assert_eq!(body["domain"]["name"], "bücher.example");
    assert_eq!(body["domain"]["ascii_name"], "xn--bcher-kva.example");
    assert_eq!(body["records"][1]["name"], "xn--bcher-kva.example");
    // Same domain in A-label form is a duplicate.
    a.post(
        "/api/v1/domains",
        json!({ "name": "xn--bcher-kva.example" }),
    )
    .await
    .assert_problem(409, "conflict");
    for bad in [
        "",
        "no spaces.example",
        "localhost",
        "a..b",
        "mx.smtpy.test",
    ] {
        let r = a.post("/api/v1/domains", json!({ "name": bad })).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "name", "{bad}: {r:?}");
    }
    let long = format!("{}.example", "a".repeat(300));
    a.post("/api/v1/domains", json!({ "name": long }))
        .await
        .assert_problem(422, "validation");
    a.post(
        "/api/v1/domains",
        json!({ "name": "ok.example", "owner": "x" }),
    )
    .await
    .assert_problem(422, "validation");
}

#[tokio::test]
async fn duplicate_is_409_without_saying_whose() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let b = app.user("b@x.test").await;
    create(&a, "taken.example").await;
    let r = b
        .post("/api/v1/domains", json!({ "name": "TAKEN.example" }))
        .await;
    r.assert_problem(409, "conflict");
    assert!(!r.text.contains("a@x.test"));
    assert!(!r.text.contains(&a.user.id.to_string()));
    a.post("/api/v1/domains", json!({ "name": "taken.example" }))
        .await
        .assert_problem(409, "conflict");
}

#[tokio::test]
async fn shared_domains_are_for_admins_and_visible_to_all() {
    let app = TestApp::start().await;
    let admin = app.admin("root@x.test").await;
    let a = app.user("a@x.test").await;
    let r = a
        .post(
            "/api/v1/domains",
            json!({ "name": "shared.example", "shared": true }),
        )
        .await;
    r.assert_problem(403, "forbidden");
    assert!(
        app.store
            .find_domain_by_name(&DomainName::parse("shared.example").expect("name"))
            .await
            .expect("find")
            .is_none()
    );
    let s = admin
        .post(
            "/api/v1/domains",
            json!({ "name": "shared.example", "shared": true }),
        )
        .await;
    assert_eq!(s.expect(201)["domain"]["shared"], true);
    let sid = id_of(&s.body);

    // A sees it in the list, marked shared and not theirs, without secrets.
    let own = create(&a, "mine.example").await;
    let list = a.get("/api/v1/domains").await;
    let items = list.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    let shared = items
        .iter()
        .find(|d| d["id"] == sid.as_str())
        .expect("shared listed");
    assert_eq!(shared["shared"], true);
    assert_eq!(shared["mine"], false);
    assert!(shared.get("verification_token").is_none());
    assert!(shared.get("checks").is_none());
    assert!(items.iter().any(|d| d["id"] == id_of(&own).as_str()));

    // A can read it but gets no records, and cannot change, verify or delete it.
    let got = a.get(&format!("/api/v1/domains/{sid}")).await;
    assert_eq!(got.expect(200)["records"], json!([]));
    a.get(&format!("/api/v1/domains/{sid}/records"))
        .await
        .assert_problem(404, "not-found");
    a.patch(
        &format!("/api/v1/domains/{sid}"),
        json!({ "catch_all": false }),
    )
    .await
    .assert_problem(404, "not-found");
    a.post_empty(&format!("/api/v1/domains/{sid}/verify"))
        .await
        .assert_problem(404, "not-found");
    a.delete(&format!("/api/v1/domains/{sid}"))
        .await
        .assert_problem(404, "not-found");
    assert!(
        app.store
            .get_domain(Access::System, sid.parse().expect("id"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn without_a_keyring_the_domain_has_no_keys_and_says_so() {
    let app = TestApp::start_with(common::test_config(), |s| rebuilt(s, false, true)).await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "nokeys.example").await;
    assert!(
        body["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("without DKIM keys"))
    );
    let purposes: Vec<&str> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["purpose"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(purposes, ["verification", "mx", "spf", "dmarc"]);
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    assert!(stored.dkim_keys.is_empty());
}

#[tokio::test]
async fn delegated_mode_publishes_cnames_and_checks_through_them() {
    let mut config = common::test_config();
    config.dkim_mode = PublishMode::Delegated {
        service_domain: DomainName::parse("smtpy.test").expect("name"),
    };
    config.spf_include = Some("spf.smtpy.test".to_owned());
    let app = TestApp::start_with(config, |s| s).await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "deleg.example").await;
    let records = body["records"].as_array().expect("records");
    let cnames: Vec<&Value> = records.iter().filter(|r| r["type"] == "CNAME").collect();
    assert_eq!(cnames.len(), 4);
    assert_eq!(cnames[0]["name"], "smtpy1e._domainkey.deleg.example");
    assert_eq!(cnames[0]["value"], "smtpy1e.deleg.example._dkim.smtpy.test");
    assert_eq!(
        cnames[0]["zone_line"],
        "smtpy1e._domainkey.deleg.example. 3600 IN CNAME smtpy1e.deleg.example._dkim.smtpy.test."
    );
    assert_eq!(records[2]["value"], "v=spf1 include:spf.smtpy.test ~all");

    // The CNAMEs resolve to the service's TXT records: a resolver answers
    // the TXT lookup at the selector with the key.
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    let non_cname: Vec<Value> = records
        .iter()
        .filter(|r| r["type"] != "CNAME")
        .cloned()
        .collect();
    publish(&app, &Value::Array(non_cname));
    for k in &stored.dkim_keys {
        app.dns.add_txt(
            &format!("{}._domainkey.deleg.example", k.selector),
            &k.dns_record,
        );
    }
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&body)))
        .await;
    assert_eq!(v.expect(200)["verified"], true, "{v:?}");
    let dkim: Vec<&Value> = v.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["purpose"] == "dkim")
        .collect();
    assert_eq!(dkim.len(), 2);
    assert!(dkim.iter().all(|r| r["status"] == "ok"), "{v:?}");
}

#[tokio::test]
async fn verify_with_every_record_right_verifies_the_domain() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "good.example").await;
    publish(&app, &body["records"]);
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&body)))
        .await;
    v.expect(200);
    assert_eq!(v.body["verified"], true);
    let results = v.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 6);
    for r in results {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(!r["found"].as_array().expect("found").is_empty(), "{r}");
        assert!(!r["explanation"].as_str().unwrap_or("").is_empty());
    }
    assert_eq!(result(&v.body, "mx")["found"], json!(["10 mx.smtpy.test"]));
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    let now = smtpy_core::time::Clock::now(&app.clock);
    assert_eq!(stored.verified_at, Some(now));
    assert_eq!(stored.checks.last_checked_at, Some(now));
    for c in [
        &stored.checks.mx,
        &stored.checks.spf,
        &stored.checks.dkim,
        &stored.checks.dmarc,
    ] {
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
    }
    assert_eq!(v.body["domain"]["verified"], true);
    assert_eq!(v.body["domain"]["checks"]["dkim"]["status"], "ok");
    assert_eq!(audit_actions(&app, a.user.id, "domain.verify").await, 1);
    // The last results are on the domain.
    let got = a.get(&format!("/api/v1/domains/{}", id_of(&body))).await;
    assert_eq!(got.expect(200)["domain"]["checks"]["spf"]["status"], "ok");
    assert_eq!(
        got.body["domain"]["checks"]["last_checked_at"],
        now.as_unix_millis()
    );
}

#[tokio::test]
async fn verify_explains_missing_spf_and_wrong_mx() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "half.example").await;
    publish_except(&app, &body["records"], &["spf", "mx"]);
    app.dns.add_mx("half.example", 10, "other.host");
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&body)))
        .await;
    v.expect(200);
    // Ownership is proven by the verification record alone.
    assert_eq!(v.body["verified"], true);
    let spf = result(&v.body, "spf");
    assert_eq!(spf["status"], "missing");
    assert!(
        spf["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("no SPF record") && e.contains("include:mx.smtpy.test")),
        "{spf}"
    );
    let mx = result(&v.body, "mx");
    assert_eq!(mx["status"], "wrong");
    assert_eq!(mx["found"], json!(["10 other.host"]));
    assert!(
        mx["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("MX points to other.host, not mx.smtpy.test")),
        "{mx}"
    );
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    assert_eq!(stored.checks.spf.status, CheckStatus::Missing);
    assert_eq!(stored.checks.mx.status, CheckStatus::Wrong);
    assert_eq!(stored.checks.dmarc.status, CheckStatus::Ok);
}

#[tokio::test]
async fn verify_explains_two_spf_records_spf_without_us_and_a_wrong_dkim_key() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let two = create(&a, "two.example").await;
    publish_except(&app, &two["records"], &["spf"]);
    app.dns
        .add_txt("two.example", "v=spf1 include:mx.smtpy.test ~all");
    app.dns
        .add_txt("two.example", "v=spf1 include:other.example -all");
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&two)))
        .await;
    let spf = result(v.expect(200), "spf");
    assert_eq!(spf["status"], "wrong");
    assert_eq!(spf["found"].as_array().map(Vec::len), Some(2));
    assert!(
        spf["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("2 SPF records: a domain may have only one")),
        "{spf}"
    );

    // SPF without our include; one DKIM key replaced by another key.
    let other = create(&a, "other.example").await;
    publish_except(&app, &other["records"], &["spf", "dkim"]);
    app.dns
        .add_txt("other.example", "v=spf1 include:_spf.google.com ~all");
    let dkim: Vec<&Value> = other["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["purpose"] == "dkim")
        .collect();
    let rsa_name = dkim[0]["name"].as_str().expect("name");
    let ed_name = dkim[1]["name"].as_str().expect("name");
    app.dns.add_txt(
        rsa_name,
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong",
    );
    app.dns
        .add_txt(ed_name, dkim[1]["value"].as_str().expect("value"));
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&other)))
        .await;
    v.expect(200);
    let spf = result(&v.body, "spf");
    assert_eq!(spf["status"], "wrong");
    assert_eq!(
        spf["explanation"],
        "SPF record found but it does not include mx.smtpy.test; add include:mx.smtpy.test"
    );
    let results = v.body["results"].as_array().expect("results");
    let rsa = results
        .iter()
        .find(|r| r["name"] == rsa_name)
        .expect("rsa result");
    assert_eq!(rsa["status"], "wrong");
    assert!(
        rsa["explanation"]
            .as_str()
            .is_some_and(|e| e.contains(&format!(
                "DKIM TXT at {rsa_name} has a different public key"
            ))),
        "{rsa}"
    );
    let ed = results
        .iter()
        .find(|r| r["name"] == ed_name)
        .expect("ed result");
    assert_eq!(ed["status"], "ok");
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&other))
        .await
        .expect("stored");
    assert_eq!(stored.checks.dkim.status, CheckStatus::Wrong);
    assert!(stored.checks.dkim.detail.contains("different public key"));
}

#[tokio::test]
async fn verify_without_the_verification_record_leaves_the_domain_unverified() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "unproven.example").await;
    publish_except(&app, &body["records"], &["verification"]);
    app.dns.add_txt(
        "_smtpy-verification.unproven.example",
        "smtpy-verification=not-the-token",
    );
    let v = a
        .post_empty(&format!("/api/v1/domains/{}/verify", id_of(&body)))
        .await;
    assert_eq!(v.expect(200)["verified"], false);
    let ver = result(&v.body, "verification");
    assert_eq!(ver["status"], "wrong");
    assert!(
        ver["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("another token"))
    );
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    assert!(stored.verified_at.is_none());
    assert!(stored.checks.last_checked_at.is_some());
}

#[tokio::test]
async fn verify_without_dns_is_503_and_is_throttled_per_ip() {
    let app = TestApp::start_with(common::test_config(), |s| rebuilt(s, true, false)).await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "nodns.example").await;
    a.post_empty(&format!("/api/v1/domains/{}/verify", id_of(&body)))
        .await
        .assert_problem(503, "unavailable");

    let mut config = common::test_config();
    config.limits.verify_per_ip = Budget::new(2, Duration::from_secs(3600));
    let app = TestApp::start_with(config, |s| s).await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "busy.example").await;
    let path = format!("/api/v1/domains/{}/verify", id_of(&body));
    a.post_empty(&path).await.expect(200);
    a.post_empty(&path).await.expect(200);
    let r = a.post_empty(&path).await;
    r.assert_problem(429, "rate-limited");
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s > 0));
}

#[tokio::test]
async fn patch_sets_catch_all_and_default_mailboxes() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let b = app.user("b@x.test").await;
    let body = create(&a, "catch.example").await;
    let path = format!("/api/v1/domains/{}", id_of(&body));
    a.patch(&path, json!({ "catch_all": true }))
        .await
        .assert_problem(422, "validation");
    let mine = verified_mailbox(&app, a.user.id, "me@outside.test").await;
    let theirs = verified_mailbox(&app, b.user.id, "them@outside.test").await;
    let unverified = Mailbox::new(
        a.user.id,
        EmailAddress::parse("new@outside.test").expect("address"),
        smtpy_core::time::Clock::now(&app.clock),
    );
    app.store
        .create_mailbox(&unverified)
        .await
        .expect("mailbox");
    for (id, why) in [
        (theirs.id.to_string(), "no such mailbox"),
        (unverified.id.to_string(), "not verified"),
        ("not-an-id".to_owned(), "not a mailbox id"),
    ] {
        let r = a
            .patch(
                &path,
                json!({ "catch_all": true, "default_mailboxes": [id] }),
            )
            .await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "default_mailboxes/0");
        assert!(r.text.contains(why), "{r:?}");
    }
    let r = a
        .patch(
            &path,
            json!({ "catch_all": true, "default_mailboxes": [mine.id.to_string()] }),
        )
        .await;
    r.expect(200);
    assert_eq!(r.body["domain"]["catch_all"], true);
    assert_eq!(
        r.body["domain"]["default_mailboxes"],
        json!([mine.id.to_string()])
    );
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("stored");
    assert!(stored.catch_all.enabled);
    assert_eq!(stored.default_mailboxes, vec![mine.id]);
    assert_eq!(audit_actions(&app, a.user.id, "domain.update").await, 1);
    a.patch(&path, json!({ "catch_all": false, "shared": true }))
        .await
        .assert_problem(422, "validation");
    let many: Vec<String> = (0..11).map(|_| mine.id.to_string()).collect();
    a.patch(&path, json!({ "default_mailboxes": many }))
        .await
        .assert_problem(422, "validation");
}

#[tokio::test]
async fn delete_is_refused_while_aliases_exist() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "del.example").await;
    let keep = create(&a, "keep.example").await;
    let m = verified_mailbox(&app, a.user.id, "me@outside.test").await;
    let alias = Alias::new(
        EmailAddress::parse("shop@keep.example").expect("address"),
        a.user.id,
        domain_id(&keep),
        vec![m.id],
        smtpy_core::time::Clock::now(&app.clock),
    );
    app.store.create_alias(&alias).await.expect("alias");
    a.delete(&format!("/api/v1/domains/{}", id_of(&keep)))
        .await
        .assert_problem(409, "conflict");
    assert!(
        app.store
            .get_domain(Access::System, domain_id(&keep))
            .await
            .is_ok()
    );
    let r = a.delete(&format!("/api/v1/domains/{}", id_of(&body))).await;
    assert_eq!(r.status, 204);
    assert!(
        app.store
            .get_domain(Access::System, domain_id(&body))
            .await
            .is_err()
    );
    assert_eq!(audit_actions(&app, a.user.id, "domain.delete").await, 1);
    a.get(&format!("/api/v1/domains/{}", id_of(&body)))
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test]
async fn another_user_gets_404_everywhere_and_lists_stay_apart() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let b = app.user("b@x.test").await;
    let body = create(&a, "private.example").await;
    create(&b, "bees.example").await;
    let id = id_of(&body);
    let base = format!("/api/v1/domains/{id}");
    b.get(&base).await.assert_problem(404, "not-found");
    b.get(&format!("{base}/records"))
        .await
        .assert_problem(404, "not-found");
    b.patch(&base, json!({ "catch_all": false }))
        .await
        .assert_problem(404, "not-found");
    b.post_empty(&format!("{base}/verify"))
        .await
        .assert_problem(404, "not-found");
    b.delete(&base).await.assert_problem(404, "not-found");
    // A's domain is untouched.
    let stored = app
        .store
        .get_domain(Access::System, domain_id(&body))
        .await
        .expect("still there");
    assert!(stored.checks.last_checked_at.is_none());
    // Unknown ids and malformed ids are 404 too.
    b.get(&format!("/api/v1/domains/{}", DomainId::new()))
        .await
        .assert_problem(404, "not-found");
    b.get("/api/v1/domains/not-a-uuid")
        .await
        .assert_problem(404, "not-found");

    let list = b.get("/api/v1/domains").await;
    let items = list.expect(200)["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "bees.example");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    let body = create(&a, "scoped.example").await;
    let id = id_of(&body);
    let reader = app
        .account("r@x.test", Role::User, &[ApiScope::DomainsRead])
        .await;
    reader
        .post("/api/v1/domains", json!({ "name": "r.example" }))
        .await
        .assert_problem(403, "forbidden");
    reader.get("/api/v1/domains").await.expect(200);
    reader
        .get(&format!("/api/v1/domains/{id}"))
        .await
        .assert_problem(404, "not-found");
    let own_reader = app
        .account("ro@x.test", Role::User, &[ApiScope::DomainsRead])
        .await;
    let d = smtpy_core::model::Domain::new(
        DomainName::parse("ro.example").expect("name"),
        own_reader.user.id,
        "tok".into(),
        smtpy_core::time::Clock::now(&app.clock),
    );
    app.store.create_domain(&d).await.expect("domain");
    let base = format!("/api/v1/domains/{}", d.id);
    own_reader.get(&base).await.expect(200);
    own_reader
        .patch(&base, json!({ "catch_all": false }))
        .await
        .assert_problem(403, "forbidden");
    own_reader
        .post_empty(&format!("{base}/verify"))
        .await
        .assert_problem(403, "forbidden");
    own_reader
        .delete(&base)
        .await
        .assert_problem(403, "forbidden");
    assert!(app.store.get_domain(Access::System, d.id).await.is_ok());
    let nothing = app
        .account("n@x.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    nothing
        .get("/api/v1/domains")
        .await
        .assert_problem(403, "forbidden");
    nothing
        .get(&format!("/api/v1/domains/{id}"))
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn lists_are_paged_by_cursor() {
    let app = TestApp::start().await;
    let a = app.user("a@x.test").await;
    for n in ["p1.example", "p2.example", "p3.example"] {
        create(&a, n).await;
    }
    let first = a.get("/api/v1/domains?limit=2").await;
    let items = first.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = a
        .get(&format!("/api/v1/domains?limit=2&cursor={cursor}"))
        .await;
    let rest = second.expect(200)["items"].as_array().expect("items");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["name"], "p3.example");
    assert!(second.body.get("next_cursor").is_none());
    a.get("/api/v1/domains?cursor=garbage")
        .await
        .assert_problem(400, "bad-request");
}
