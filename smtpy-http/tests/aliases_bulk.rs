//! `POST /api/v1/aliases/bulk` over real HTTP: enable, disable, delete and
//! move on a mix of the caller's and other users' ids.

mod common;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::ids::AliasId;
use smtpy_core::model::{Alias, ApiScope, Domain, Mailbox, Role, User};
use smtpy_core::store::{
    Access, AliasStore, AuditFilter, AuditStore, DomainStore, MailboxStore, PageRequest,
};
use smtpy_core::time::Clock;

async fn add_domain(app: &TestApp, owner: &User, name: &str) -> Domain {
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse(name).expect("domain"),
        owner.id,
        "t".into(),
        now,
    );
    d.verified_at = Some(now);
    app.store.create_domain(&d).await.expect("create domain");
    d
}

async fn add_mailbox(app: &TestApp, owner: &User, address: &str, verified: bool) -> Mailbox {
    let now = app.clock.now();
    let mut m = Mailbox::new(owner.id, EmailAddress::parse(address).expect("addr"), now);
    m.verified_at = verified.then_some(now);
    app.store.create_mailbox(&m).await.expect("create mailbox");
    m
}

struct World {
    app: TestApp,
    a: Actor,
    b: Actor,
    mb_a: Mailbox,
    mb_a2: Mailbox,
    mb_b: Mailbox,
    own: Vec<String>,
    foreign: Vec<String>,
}

async fn world() -> World {
    let app = TestApp::start().await;
    let a = app.user("alice@users.test").await;
    let b = app.user("bob@users.test").await;
    add_domain(&app, &a.user, "alice.test").await;
    add_domain(&app, &b.user, "bob.test").await;
    let mb_a = add_mailbox(&app, &a.user, "alice@inbox.test", true).await;
    let mb_a2 = add_mailbox(&app, &a.user, "alice2@inbox.test", true).await;
    let mb_b = add_mailbox(&app, &b.user, "bob@inbox.test", true).await;
    let mut own = Vec::new();
    for i in 0..3 {
        let r = a
            .post(
                "/api/v1/aliases",
                json!({"address": format!("a{i}@alice.test")}),
            )
            .await;
        own.push(r.expect(201)["id"].as_str().expect("id").to_owned());
    }
    let mut foreign = Vec::new();
    for i in 0..2 {
        let r = b
            .post(
                "/api/v1/aliases",
                json!({"address": format!("b{i}@bob.test")}),
            )
            .await;
        foreign.push(r.expect(201)["id"].as_str().expect("id").to_owned());
    }
    World {
        app,
        a,
        b,
        mb_a,
        mb_a2,
        mb_b,
        own,
        foreign,
    }
}

async fn row(app: &TestApp, id: &str) -> Alias {
    app.store
        .get_alias(Access::System, id.parse::<AliasId>().expect("id"))
        .await
        .expect("alias")
}

fn statuses(body: &Value) -> Vec<(String, String)> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_owned(),
                r["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn disable_on_a_mix_of_own_and_foreign_ids() {
    let w = world().await;
    let missing = AliasId::new().to_string();
    let mut ids: Vec<String> = w.own.clone();
    ids.extend(w.foreign.iter().cloned());
    ids.push(missing.clone());
    ids.push("not-an-id".to_owned());
    let r =
        w.a.post(
            "/api/v1/aliases/bulk",
            json!({"ids": ids, "action": "disable"}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["changed"], 3);
    let got = statuses(body);
    let mut want: Vec<(String, String)> = w
        .own
        .iter()
        .map(|i| (i.clone(), "changed".to_owned()))
        .collect();
    want.extend(
        w.foreign
            .iter()
            .map(|i| (i.clone(), "not_found".to_owned())),
    );
    want.push((missing, "not_found".to_owned()));
    want.push(("not-an-id".to_owned(), "not_found".to_owned()));
    assert_eq!(got, want);

    for id in &w.own {
        let a = row(&w.app, id).await;
        assert!(!a.enabled);
        assert_eq!(a.revision, 1);
    }
    // B's aliases were never touched.
    for id in &w.foreign {
        let b = row(&w.app, id).await;
        assert!(b.enabled);
        assert_eq!(b.revision, 0);
        assert!(b.deleted_at.is_none());
    }

    // Again: nothing changes.
    let r =
        w.a.post(
            "/api/v1/aliases/bulk",
            json!({"ids": w.own, "action": "disable"}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["changed"], 0);
    assert!(statuses(body).iter().all(|(_, s)| s == "unchanged"));

    // Enable one back.
    let r =
        w.a.post(
            "/api/v1/aliases/bulk",
            json!({"ids": [w.own[0]], "action": "enable"}),
        )
        .await;
    assert_eq!(r.expect(200)["changed"], 1);
    assert!(row(&w.app, &w.own[0]).await.enabled);
    assert!(!row(&w.app, &w.own[1]).await.enabled);

    let audit = w
        .app
        .store
        .list_audit(
            Access::Owner(w.a.user.id),
            &AuditFilter::default(),
            PageRequest::first(100),
        )
        .await
        .expect("audit");
    let disable = audit
        .items
        .iter()
        .find(|e| e.action == "alias.bulk_disable")
        .expect("audit event");
    assert_eq!(disable.details["changed"], "3");
    assert_eq!(disable.details["matched"], "3");
    assert_eq!(disable.details["requested"], "7");
}

#[tokio::test]
async fn delete_only_deletes_own_aliases() {
    let w = world().await;
    let mut ids = w.own[..2].to_vec();
    ids.push(w.foreign[0].clone());
    let r =
        w.a.post(
            "/api/v1/aliases/bulk",
            json!({"ids": ids, "action": "delete"}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["changed"], 2);
    for id in &w.own[..2] {
        let a = row(&w.app, id).await;
        assert!(a.deleted_at.is_some());
        assert!(
            w.app
                .store
                .find_alias_by_address(&a.address)
                .await
                .expect("lookup")
                .is_none(),
            "a deleted alias no longer routes"
        );
    }
    assert!(row(&w.app, &w.own[2]).await.deleted_at.is_none());
    assert!(row(&w.app, &w.foreign[0]).await.deleted_at.is_none());
    assert!(
        w.app
            .store
            .find_alias_by_address(&EmailAddress::parse("b0@bob.test").expect("a"))
            .await
            .expect("lookup")
            .is_some()
    );
}

#[tokio::test]
async fn move_replaces_mailboxes_of_own_aliases_only() {
    let w = world().await;
    let mut ids = w.own.clone();
    ids.push(w.foreign[1].clone());
    // Duplicates are reported each time and applied once.
    ids.push(w.own[0].clone());
    let r = w
        .a
        .post(
            "/api/v1/aliases/bulk",
            json!({"ids": ids, "action": "move", "mailboxes": [w.mb_a2.id.to_string(), w.mb_a.id.to_string()]}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["changed"], 3);
    assert_eq!(statuses(body)[3].1, "not_found");
    assert_eq!(statuses(body)[4].1, "changed");
    for id in &w.own {
        assert_eq!(row(&w.app, id).await.mailboxes, vec![w.mb_a2.id, w.mb_a.id]);
    }
    assert_eq!(row(&w.app, &w.foreign[1]).await.mailboxes, vec![w.mb_b.id]);

    // Moving to B's mailbox or an unverified one is refused; nothing changes.
    let unverified = add_mailbox(&w.app, &w.a.user, "u@inbox.test", false).await;
    for mb in [w.mb_b.id, unverified.id] {
        let r =
            w.a.post(
                "/api/v1/aliases/bulk",
                json!({"ids": w.own, "action": "move", "mailboxes": [mb.to_string()]}),
            )
            .await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "mailboxes/0");
    }
    assert_eq!(
        row(&w.app, &w.own[0]).await.mailboxes,
        vec![w.mb_a2.id, w.mb_a.id]
    );
    // B moving A's aliases to B's mailbox: all not_found, untouched.
    let r =
        w.b.post(
            "/api/v1/aliases/bulk",
            json!({"ids": w.own, "action": "move", "mailboxes": [w.mb_b.id.to_string()]}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["changed"], 0);
    assert!(statuses(body).iter().all(|(_, s)| s == "not_found"));
    assert_eq!(
        row(&w.app, &w.own[0]).await.mailboxes,
        vec![w.mb_a2.id, w.mb_a.id]
    );
}

#[tokio::test]
async fn bulk_validation_and_scopes() {
    let w = world().await;
    let cases = [
        (json!({"ids": [], "action": "enable"}), "ids"),
        (json!({"ids": [w.own[0]], "action": "move"}), "mailboxes"),
        (
            json!({"ids": [w.own[0]], "action": "enable", "mailboxes": [w.mb_a.id.to_string()]}),
            "mailboxes",
        ),
        (
            json!({"ids": ["x".repeat(65)], "action": "enable"}),
            "ids/0",
        ),
    ];
    for (body, field) in cases {
        let r = w.a.post("/api/v1/aliases/bulk", body.clone()).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}");
    }
    let too_many: Vec<String> = (0..501).map(|_| AliasId::new().to_string()).collect();
    let r =
        w.a.post(
            "/api/v1/aliases/bulk",
            json!({"ids": too_many, "action": "enable"}),
        )
        .await;
    r.assert_problem(422, "validation");
    w.a.post(
        "/api/v1/aliases/bulk",
        json!({"ids": [w.own[0]], "action": "purge"}),
    )
    .await
    .assert_problem(422, "validation");
    w.a.post(
        "/api/v1/aliases/bulk",
        json!({"ids": [w.own[0]], "action": "enable", "extra": 1}),
    )
    .await
    .assert_problem(422, "validation");

    let reader = w
        .app
        .account("reader@users.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    reader
        .post(
            "/api/v1/aliases/bulk",
            json!({"ids": [w.own[0]], "action": "disable"}),
        )
        .await
        .assert_problem(403, "forbidden");
    assert!(row(&w.app, &w.own[0]).await.enabled);
    let _ = &w.b;
}
