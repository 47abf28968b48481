//! `/api/v1/export` and `/api/v1/import`: a user's data out and back in,
//! idempotently, within the import body limit.

mod common;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{
    Alias, ApiScope, Contact, DmarcRejectAction, Domain, Mailbox, Role, RuleAction, RuleScope, User,
};
use smtpy_core::store::{
    Access, AliasFilter, AliasStore, AuditFilter, AuditStore, ContactStore, DomainStore,
    MailboxStore, PageRequest, RuleStore, UserStore,
};
use smtpy_core::time::Clock;

async fn own_domain(app: &TestApp, owner: &User, name: &str) -> Domain {
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse(name).expect("domain"),
        owner.id,
        "token".into(),
        now,
    );
    d.verified_at = Some(now);
    app.store.create_domain(&d).await.expect("domain");
    d
}

/// A's data on the first app: a domain, a mailbox, two aliases (one
/// deleted), a contact, two rules, non-default settings.
async fn populate(app: &TestApp, a: &Actor) {
    let now = app.clock.now();
    let d = own_domain(app, &a.user, "a.example").await;
    let mut m = Mailbox::new(
        a.user.id,
        EmailAddress::parse("me@inbox.example").expect("mailbox"),
        now,
    );
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("mailbox");
    let mut shop = Alias::new(
        EmailAddress::parse("shop@a.example").expect("alias"),
        a.user.id,
        d.id,
        vec![m.id],
        now,
    );
    shop.note = Some("the shoe shop".into());
    shop.labels = vec!["shopping".into()];
    app.store.create_alias(&shop).await.expect("alias");
    let old = Alias::new(
        EmailAddress::parse("old@a.example").expect("alias"),
        a.user.id,
        d.id,
        vec![m.id],
        now,
    );
    app.store.create_alias(&old).await.expect("alias");
    let old_key = app
        .state
        .reverse()
        .expect("reverse")
        .mint(old.address.domain())
        .expect("mint");
    let old_contact = Contact::new(
        &old,
        EmailAddress::parse("carol@friends.example").expect("contact"),
        None,
        old_key,
        now,
    );
    app.store
        .create_contact(&old_contact)
        .await
        .expect("contact");
    app.store
        .delete_alias(Access::System, old.id, now)
        .await
        .expect("trash");
    let key = app
        .state
        .reverse()
        .expect("reverse")
        .mint(shop.address.domain())
        .expect("mint");
    let mut c = Contact::new(
        &shop,
        EmailAddress::parse("bob@friends.example").expect("contact"),
        Some("Bob".into()),
        key,
        now,
    );
    c.blocked = true;
    app.store.create_contact(&c).await.expect("contact");
    a.post(
        "/api/v1/rules",
        json!({"name": "to inbox", "alias_id": shop.id.to_string(),
               "conditions": [{"field": "subject", "operator": "matches_regex", "value": "^order"}],
               "actions": [{"type": "forward_to", "mailboxes": [m.id.to_string()]}]}),
    )
    .await
    .expect(201);
    a.post(
        "/api/v1/rules",
        json!({"name": "block spam", "domain_id": d.id.to_string(),
               "conditions": [{"field": "from", "operator": "ends_with", "value": "@spam.example"}],
               "actions": [{"type": "block", "reply": "silent"}]}),
    )
    .await
    .expect(201);
    let mut user = app.store.get_user(a.user.id).await.expect("user");
    user.settings.dmarc_reject = DmarcRejectAction::Quarantine;
    user.settings.subject_tag = "[?]".into();
    app.store.update_user(&user).await.expect("settings");
}

fn count(report: &Value, kind: &str, status: &str) -> usize {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == kind && i["status"] == status)
        .count()
}

#[tokio::test]
async fn export_then_import_into_a_fresh_account_and_again() {
    let app1 = TestApp::start().await;
    let a = app1.user("a@users.test").await;
    populate(&app1, &a).await;

    let r = a.get("/api/v1/export").await;
    let doc = r.expect(200).clone();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["account"]["email"], "a@users.test");
    assert_eq!(doc["settings"]["dmarc_reject"], "quarantine");
    assert_eq!(doc["domains"][0]["name"], "a.example");
    assert_eq!(doc["mailboxes"][0]["address"], "me@inbox.example");
    assert_eq!(doc["aliases"].as_array().expect("aliases").len(), 2);
    let contacts = doc["contacts"].as_array().expect("contacts");
    let bob = contacts
        .iter()
        .find(|c| c["address"] == "bob@friends.example")
        .expect("bob");
    assert_eq!(bob["alias"], "shop@a.example");
    assert_eq!(bob["blocked"], true);
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        doc["rules"][0]["actions"][0]["mailboxes"],
        json!(["me@inbox.example"])
    );
    assert_eq!(doc["rules"][1]["scope"], "domain");
    assert_eq!(doc["rules"][1]["target"], "a.example");
    for secret in [
        "password",
        "secret",
        "private",
        "token",
        "hash",
        "reverse_key",
        "r--",
    ] {
        assert!(!r.text.contains(secret), "export contains {secret:?}");
    }

    // A fresh app, a fresh account that already added its domain.
    let app2 = TestApp::start().await;
    let a2 = app2.user("a2@users.test").await;
    own_domain(&app2, &a2.user, "a.example").await;
    let r = a2.post("/api/v1/import", doc.clone()).await;
    let report = r.expect(200).clone();
    assert_eq!(count(&report, "settings", "updated"), 1);
    assert_eq!(count(&report, "domain", "exists"), 1);
    assert_eq!(count(&report, "mailbox", "created"), 1);
    assert_eq!(count(&report, "alias", "created"), 1);
    assert_eq!(count(&report, "alias", "skipped"), 1, "the trashed alias");
    assert_eq!(count(&report, "contact", "created"), 1);
    assert_eq!(
        count(&report, "contact", "skipped"),
        1,
        "of the trashed alias"
    );
    assert_eq!(count(&report, "rule", "created"), 2);
    assert_eq!(report["created"], 6);

    // The rows are there, owned by a2.
    let store = &app2.store;
    let aliases = store
        .list_aliases(
            Access::Owner(a2.user.id),
            &AliasFilter::default(),
            PageRequest::first(10),
        )
        .await
        .expect("aliases");
    assert_eq!(aliases.items.len(), 1);
    let shop = &aliases.items[0];
    assert_eq!(shop.address.to_string(), "shop@a.example");
    assert_eq!(shop.note.as_deref(), Some("the shoe shop"));
    assert_eq!(shop.labels, ["shopping"]);
    let mailboxes = store.list_mailboxes(a2.user.id).await.expect("mailboxes");
    assert_eq!(mailboxes.len(), 1);
    assert!(mailboxes[0].verified_at.is_none(), "imported unverified");
    assert_eq!(shop.mailboxes, [mailboxes[0].id]);
    let contacts = store
        .list_contacts(
            Access::Owner(a2.user.id),
            Some(shop.id),
            PageRequest::first(10),
        )
        .await
        .expect("contacts");
    assert_eq!(contacts.items.len(), 1);
    assert_eq!(contacts.items[0].address.to_string(), "bob@friends.example");
    assert!(contacts.items[0].blocked);
    assert!(contacts.items[0].reverse_key.starts_with("r--"));
    let rules = store.list_rules(a2.user.id).await.expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].scope, RuleScope::Alias(shop.id));
    assert_eq!(
        rules[0].actions,
        [RuleAction::ForwardTo(vec![mailboxes[0].id])]
    );
    assert!(matches!(rules[1].scope, RuleScope::Domain(_)));
    let user = store.get_user(a2.user.id).await.expect("user");
    assert_eq!(user.settings.dmarc_reject, DmarcRejectAction::Quarantine);
    assert_eq!(
        user.email.to_string(),
        "a2@users.test",
        "never changes the account"
    );

    // Importing the same document again creates nothing.
    let r = a2.post("/api/v1/import", doc.clone()).await;
    let again = r.expect(200);
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(count(again, "alias", "exists"), 1);
    assert_eq!(count(again, "rule", "exists"), 2);
    assert_eq!(count(again, "contact", "exists"), 1);
    assert_eq!(store.list_rules(a2.user.id).await.expect("rules").len(), 2);
    assert_eq!(store.list_mailboxes(a2.user.id).await.expect("m").len(), 1);

    // Both directions are audited.
    let audit = app2
        .store
        .list_audit(
            Access::Owner(a2.user.id),
            &AuditFilter::default(),
            PageRequest::first(50),
        )
        .await
        .expect("audit");
    assert_eq!(
        audit
            .items
            .iter()
            .filter(|e| e.action == "account.import")
            .count(),
        2
    );
    let audit = app1
        .store
        .list_audit(
            Access::Owner(a.user.id),
            &AuditFilter::default(),
            PageRequest::first(50),
        )
        .await
        .expect("audit");
    assert!(audit.items.iter().any(|e| e.action == "account.export"));
}

#[tokio::test]
async fn import_refuses_foreign_domains_and_reserved_names() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let b = app.user("b@users.test").await;
    own_domain(&app, &a.user, "a.example").await;
    own_domain(&app, &b.user, "b.example").await;
    let alias = |address: &str| {
        json!({"address": address, "mailboxes": ["me@inbox.example"], "enabled": true,
               "mode": "alias", "disabled_reply": "reject", "note": null, "category": null,
               "labels": [], "expires_at": null, "messages_per_hour": null,
               "max_message_size": null, "deleted": false, "created_at": 0})
    };
    let doc = json!({
        "format_version": 1, "exported_at": 0,
        "account": {"email": "x@users.test", "role": "admin", "created_at": 0},
        "settings": {"dmarc_reject": "reject", "dmarc_quarantine": "quarantine",
                     "subject_tag": "[SPAM?]", "sender_format": null, "forwards_per_day": null,
                     "replies_per_day": null, "aliases_per_hour": null,
                     "notify_bounces": true, "notify_quarantine": true},
        "domains": [{"name": "b.example", "verified": true, "catch_all": false,
                     "auto_create_pattern": null, "default_mailboxes": []}],
        "mailboxes": [{"address": "me@inbox.example", "verified": true, "disabled": false},
                      {"address": "loop@a.example", "verified": true, "disabled": false}],
        "aliases": [alias("mine@a.example"), alias("theirs@b.example"),
                    alias("postmaster@a.example"), alias("r--abc@a.example"),
                    alias("x@unknown.example")],
        "contacts": [{"alias": "theirs@b.example", "address": "c@d.example",
                      "display_name": null, "blocked": false}],
        "rules": [{"name": "r", "scope": "domain", "target": "b.example", "priority": 0,
                   "enabled": true, "match_mode": "all", "conditions": [],
                   "actions": [{"type": "stop"}]}]
    });
    let r = a.post("/api/v1/import", doc).await;
    let report = r.expect(200).clone();
    assert_eq!(count(&report, "domain", "refused"), 1);
    assert_eq!(count(&report, "mailbox", "created"), 1);
    assert_eq!(count(&report, "mailbox", "refused"), 1, "hosted domain");
    assert_eq!(count(&report, "alias", "created"), 1);
    assert_eq!(count(&report, "alias", "refused"), 4);
    assert_eq!(count(&report, "contact", "refused"), 1);
    assert_eq!(count(&report, "rule", "refused"), 1);
    assert_eq!(
        app.store
            .find_user_by_email(&EmailAddress::parse("a@users.test").expect("e"))
            .await
            .expect("u")
            .expect("a")
            .role,
        Role::User,
        "the role is never imported"
    );
    for address in [
        "theirs@b.example",
        "postmaster@a.example",
        "x@unknown.example",
    ] {
        let found = app
            .store
            .find_alias_by_address(&EmailAddress::parse(address).expect("address"))
            .await
            .expect("lookup");
        assert!(found.is_none(), "{address} must not exist");
    }
    assert!(
        app.store
            .list_rules(a.user.id)
            .await
            .expect("rules")
            .is_empty()
    );

    // Validation and scopes.
    let r = a.post("/api/v1/import", json!({"format_version": 2})).await;
    r.assert_problem(422, "validation");
    let reader = app
        .account("r@users.test", Role::User, &[ApiScope::AccountRead])
        .await;
    assert_eq!(reader.get("/api/v1/export").await.status, 200);
    let r = reader.get("/api/v1/export").await;
    let own = r.expect(200).clone();
    reader
        .post("/api/v1/import", own)
        .await
        .assert_problem(403, "forbidden");
    let writer = app
        .account("w@users.test", Role::User, &[ApiScope::AccountWrite])
        .await;
    writer
        .get("/api/v1/export")
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn import_body_limit_is_its_own() {
    let mut config = common::test_config();
    config.body_limit = 2048;
    config.import_body_limit = 16 * 1024;
    let app = TestApp::start_with(config, |s| s).await;
    let a = app.user("a@users.test").await;
    let r = a.get("/api/v1/export").await;
    let mut doc = r.expect(200).clone();

    // Bigger than the general limit, within the import limit: accepted.
    doc["rules"] = json!((0..20)
        .map(|i| json!({"name": format!("rule number {i:03} with a longish name"),
                        "scope": "user", "target": null, "priority": i, "enabled": true,
                        "match_mode": "all",
                        "conditions": [{"field": "subject", "operator": "contains", "value": format!("word{i}")}],
                        "actions": [{"type": "stop"}]}))
        .collect::<Vec<_>>());
    let body = serde_json::to_vec(&doc).expect("json");
    assert!(
        body.len() > 2048 && body.len() < 16 * 1024,
        "{}",
        body.len()
    );
    let r = a
        .send_raw(
            reqwest::Method::POST,
            "/api/v1/import",
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.expect(200)["created"], 20, "{}", r.text);

    // Over the import limit: 413 problem, nothing created.
    let mut big = doc.clone();
    big["rules"] = json!([]);
    big["mailboxes"] = json!((0..400)
        .map(|i| json!({"address": format!("mailbox-{i}@inbox.example"), "verified": false, "disabled": false}))
        .collect::<Vec<_>>());
    let body = serde_json::to_vec(&big).expect("json");
    assert!(body.len() > 16 * 1024);
    let r = a
        .send_raw(
            reqwest::Method::POST,
            "/api/v1/import",
            "application/json",
            body,
        )
        .await;
    r.assert_problem(413, "too-large");
    assert!(
        app.store
            .list_mailboxes(a.user.id)
            .await
            .expect("m")
            .is_empty()
    );

    // Not JSON: 415.
    a.send_raw(
        reqwest::Method::POST,
        "/api/v1/import",
        "text/plain",
        b"{}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported-media-type");
    // Unknown fields are refused.
    let mut odd = doc.clone();
    odd["surprise"] = json!(true);
    a.post("/api/v1/import", odd)
        .await
        .assert_problem(422, "validation");
}

#[tokio::test]
async fn an_owner_import_cannot_lift_quotas_or_alias_limits() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    own_domain(&app, &a.user, "a.example").await;
    let alias = |address: &str, per_hour: Value| {
        json!({"address": address, "mailboxes": ["me@inbox.example"], "enabled": true,
               "mode": "alias", "disabled_reply": "reject", "note": null, "category": null,
               "labels": [], "expires_at": null, "messages_per_hour": per_hour,
               "max_message_size": null, "deleted": false, "created_at": 0})
    };
    let doc = json!({
        "format_version": 1, "exported_at": 0,
        "account": {"email": "a@users.test", "role": "user", "created_at": 0},
        "settings": {"dmarc_reject": "reject", "dmarc_quarantine": "quarantine",
                     "subject_tag": "[x]", "sender_format": null, "forwards_per_day": 1000000,
                     "replies_per_day": 0, "aliases_per_hour": 0,
                     "notify_bounces": true, "notify_quarantine": true},
        "domains": [],
        "mailboxes": [{"address": "me@inbox.example", "verified": true, "disabled": false}],
        "aliases": [alias("unlimited@a.example", json!(0)),
                    alias("huge@a.example", json!(1000000)),
                    alias("fine@a.example", json!(5))],
        "contacts": [],
        "rules": []
    });
    let r = a.post("/api/v1/import", doc).await;
    let report = r.expect(200).clone();
    assert_eq!(count(&report, "alias", "created"), 1, "{report}");
    assert_eq!(count(&report, "alias", "refused"), 2, "{report}");
    let user = app
        .store
        .find_user_by_email(&EmailAddress::parse("a@users.test").expect("e"))
        .await
        .expect("u")
        .expect("a");
    assert_eq!(user.settings.subject_tag, "[x]", "ordinary settings import");
    assert_eq!(user.settings.forwards_per_day, None);
    assert_eq!(user.settings.replies_per_day, None);
    assert_eq!(user.settings.aliases_per_hour, None);
    for refused in ["unlimited@a.example", "huge@a.example"] {
        let found = app
            .store
            .find_alias_by_address(&EmailAddress::parse(refused).expect("address"))
            .await
            .expect("lookup");
        assert!(found.is_none(), "{refused} must not exist");
    }
    let fine = app
        .store
        .find_alias_by_address(&EmailAddress::parse("fine@a.example").expect("address"))
        .await
        .expect("lookup")
        .expect("fine exists");
    assert_eq!(fine.limits.messages_per_hour, Some(5));
}
