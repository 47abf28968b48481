//! Owner isolation across every resource: user A builds one of everything
//! through the API; user B (a full-scope key of their own) can neither read
//! nor change any of it, and none of it shows in B's lists.

mod common;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::ids::AliasId;
use smtpy_core::model::{DeliveryEvent, EventKind};
use smtpy_core::store::{AliasStore, EventStore, MailboxStore, RuleStore};
use smtpy_core::time::Clock;

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Publishes the records of a `POST /domains` answer in the test DNS.
fn publish(app: &TestApp, records: &Value) {
    for r in records.as_array().expect("records") {
        let (name, value) = (
            r["name"].as_str().expect("name"),
            r["value"].as_str().expect("value"),
        );
        match r["type"].as_str().expect("type") {
            "TXT" => app.dns.add_txt(name, value),
            "MX" => app.dns.add_mx(name, 10, value),
            other => panic!("unexpected record type {other}"),
        }
    }
}

struct Owned {
    domain: String,
    mailbox: String,
    alias: String,
    contact: String,
    rule: String,
    key: String,
}

/// A's resources, all made through the API.
async fn build(app: &TestApp, a: &Actor) -> Owned {
    let d = a
        .post("/api/v1/domains", json!({"name": "a-only.test"}))
        .await;
    let d = d.expect(201).clone();
    publish(app, &d["records"]);
    let domain = id(&d["domain"]);
    let v = a
        .post_empty(&format!("/api/v1/domains/{domain}/verify"))
        .await;
    v.expect(200);

    let m = a
        .post("/api/v1/mailboxes", json!({"address": "a@inbox.test"}))
        .await;
    let mailbox = id(m.expect(201));
    let token = app
        .outbox
        .last_var("a@inbox.test", "verification_code")
        .expect("verification mail");
    a.post("/api/v1/mailboxes/verify", json!({"token": token}))
        .await
        .expect(200);

    let al = a
        .post(
            "/api/v1/aliases",
            json!({"address": "shop@a-only.test", "mailboxes": [mailbox]}),
        )
        .await;
    let alias = id(al.expect(201));
    let c = a
        .post(
            &format!("/api/v1/aliases/{alias}/contacts"),
            json!({"address": "friend@elsewhere.test"}),
        )
        .await;
    assert!(c.status == 201, "{c:?}");
    let contact = id(&c.body);
    let r = a
        .post(
            "/api/v1/rules",
            json!({"name": "stop", "alias_id": alias, "actions": [{"type": "stop"}]}),
        )
        .await;
    let rule = id(r.expect(201));
    let k = a
        .post(
            "/api/v1/api-keys",
            json!({"name": "second", "scopes": ["aliases:read"]}),
        )
        .await;
    let key = id(k.expect(201));
    let mut e = DeliveryEvent::new(EventKind::Accepted, app.clock.now());
    e.owner = Some(a.user.id);
    e.alias = Some(alias.parse::<AliasId>().expect("alias id"));
    app.store.append_events(&[e]).await.expect("event");
    Owned {
        domain,
        mailbox,
        alias,
        contact,
        rule,
        key,
    }
}

#[tokio::test]
async fn user_b_can_neither_read_nor_change_anything_of_user_a() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let b = app.user("b@users.test").await;
    let o = build(&app, &a).await;

    let reads = [
        format!("/api/v1/domains/{}", o.domain),
        format!("/api/v1/domains/{}/records", o.domain),
        format!("/api/v1/mailboxes/{}", o.mailbox),
        format!("/api/v1/aliases/{}", o.alias),
        format!("/api/v1/aliases/{}/contacts", o.alias),
        format!("/api/v1/aliases/{}/events", o.alias),
        format!("/api/v1/aliases/{}/stats", o.alias),
        format!("/api/v1/contacts/{}", o.contact),
        format!("/api/v1/rules/{}", o.rule),
    ];
    for path in &reads {
        b.get(path).await.assert_problem(404, "not-found");
    }

    let changes: Vec<(&str, String, Value)> = vec![
        (
            "PATCH",
            format!("/api/v1/domains/{}", o.domain),
            json!({"catch_all": true}),
        ),
        (
            "POST",
            format!("/api/v1/domains/{}/verify", o.domain),
            json!(null),
        ),
        (
            "DELETE",
            format!("/api/v1/domains/{}", o.domain),
            json!(null),
        ),
        (
            "POST",
            format!("/api/v1/mailboxes/{}/resend", o.mailbox),
            json!(null),
        ),
        (
            "DELETE",
            format!("/api/v1/mailboxes/{}", o.mailbox),
            json!(null),
        ),
        (
            "PATCH",
            format!("/api/v1/aliases/{}", o.alias),
            json!({"enabled": false}),
        ),
        (
            "DELETE",
            format!("/api/v1/aliases/{}", o.alias),
            json!(null),
        ),
        (
            "POST",
            format!("/api/v1/aliases/{}/restore", o.alias),
            json!(null),
        ),
        (
            "POST",
            format!("/api/v1/aliases/{}/contacts", o.alias),
            json!({"address": "spy@elsewhere.test"}),
        ),
        (
            "PATCH",
            format!("/api/v1/contacts/{}", o.contact),
            json!({"blocked": true}),
        ),
        (
            "DELETE",
            format!("/api/v1/contacts/{}", o.contact),
            json!(null),
        ),
        (
            "PATCH",
            format!("/api/v1/rules/{}", o.rule),
            json!({"enabled": false}),
        ),
        ("DELETE", format!("/api/v1/rules/{}", o.rule), json!(null)),
        ("DELETE", format!("/api/v1/api-keys/{}", o.key), json!(null)),
    ];
    for (method, path, body) in &changes {
        let body = (!body.is_null()).then_some(body);
        let r = b.send(method.parse().expect("method"), path, body).await;
        r.assert_problem(404, "not-found");
    }
    // B's bulk action and explain cannot reach A's alias either.
    let bulk = b
        .post(
            "/api/v1/aliases/bulk",
            json!({"ids": [o.alias], "action": "disable"}),
        )
        .await;
    assert_eq!(bulk.expect(200)["changed"], 0, "{bulk:?}");
    b.post(
        "/api/v1/rules/explain",
        json!({"alias": "shop@a-only.test", "mail_from": "x@y.test", "headers": {}}),
    )
    .await
    .assert_problem(404, "not-found");

    // Nothing of A's in any of B's lists.
    for list in [
        "/api/v1/domains",
        "/api/v1/mailboxes",
        "/api/v1/aliases",
        "/api/v1/rules",
        "/api/v1/api-keys",
        "/api/v1/events",
        "/api/v1/audit",
        "/api/v1/export",
    ] {
        let r = b.get(list).await;
        assert_eq!(r.status, 200, "{list}: {r:?}");
        for secret in [&o.domain, &o.mailbox, &o.alias, &o.contact, &o.rule, &o.key] {
            assert!(
                !r.text.contains(secret.as_str()),
                "{list} shows A's {secret}"
            );
        }
        assert!(!r.text.contains("a-only.test"), "{list} shows A's domain");
        assert!(!r.text.contains("a@inbox.test"), "{list} shows A's mailbox");
    }

    // A's rows are untouched in the store.
    let alias = app
        .store
        .get_alias(
            smtpy_core::store::Access::System,
            o.alias.parse().expect("alias id"),
        )
        .await
        .expect("alias");
    assert!(alias.enabled && alias.deleted_at.is_none());
    assert_eq!(
        app.store.list_rules(a.user.id).await.expect("rules").len(),
        1
    );
    assert_eq!(
        app.store
            .list_mailboxes(a.user.id)
            .await
            .expect("mailboxes")
            .len(),
        1
    );
    let keys = a.get("/api/v1/api-keys").await;
    assert!(keys.text.contains(&o.key));
}
