//! Contacts over real HTTP: `POST/GET /aliases/{id}/contacts`,
//! `GET/PATCH/DELETE /contacts/{id}`, the reverse alias they mint (checked
//! with the same keys and routed like the SMTP side does), block/unblock,
//! and authorization negatives.

mod common;

use std::sync::Arc;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::ids::ContactId;
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{ApiScope, Contact, Domain, Mailbox, Role, User};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::routing::{Route, Router};
use smtpy_core::store::{
    Access, AuditFilter, AuditStore, ContactStore, CredentialStore, DomainStore, MailboxStore,
    PageRequest, Store, UserStore,
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

async fn add_mailbox(app: &TestApp, owner: &User, address: &str) -> Mailbox {
    let now = app.clock.now();
    let mut m = Mailbox::new(owner.id, EmailAddress::parse(address).expect("addr"), now);
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("create mailbox");
    m
}

struct World {
    app: TestApp,
    a: Actor,
    b: Actor,
    mb_a: Mailbox,
    alias_a: String,
    alias_b: String,
}

async fn world() -> World {
    let app = TestApp::start().await;
    let a = app.user("alice@users.test").await;
    let b = app.user("bob@users.test").await;
    add_domain(&app, &a.user, "alice.test").await;
    add_domain(&app, &b.user, "bob.test").await;
    let mb_a = add_mailbox(&app, &a.user, "alice@inbox.test").await;
    add_mailbox(&app, &b.user, "bob@inbox.test").await;
    let alias_a = a
        .post("/api/v1/aliases", json!({"address": "shop@alice.test"}))
        .await
        .expect(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let alias_b = b
        .post("/api/v1/aliases", json!({"address": "news@bob.test"}))
        .await
        .expect(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    World {
        app,
        a,
        b,
        mb_a,
        alias_a,
        alias_b,
    }
}

fn contact_id(v: &Value) -> ContactId {
    v["id"].as_str().expect("id").parse().expect("contact id")
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.store
        .list_audit(
            Access::System,
            &AuditFilter::default(),
            PageRequest::first(500),
        )
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn create_mints_a_reverse_alias_the_mail_path_routes() {
    let w = world().await;
    let path = format!("/api/v1/aliases/{}/contacts", w.alias_a);
    let r =
        w.a.post(
            &path,
            json!({"address": "Friend@Outside.test", "display_name": "A Friend"}),
        )
        .await;
    let v = r.expect(201).clone();
    assert_eq!(v["address"], "Friend@outside.test");
    assert_eq!(v["alias_id"], w.alias_a);
    assert_eq!(v["alias"], "shop@alice.test");
    assert_eq!(v["display_name"], "A Friend");
    assert_eq!(v["blocked"], false);
    let reverse = EmailAddress::parse(v["reverse_alias"].as_str().expect("reverse")).expect("addr");
    assert_eq!(reverse.domain().as_ascii(), "alice.test");
    let token = reverse.local_part().as_str();

    // It verifies with the same keys the SMTP side holds.
    let keys = w.app.state.reverse().expect("reverse keys");
    keys.verify(token, reverse.domain()).expect("verifies");
    // The row is stored under the lookup key the mail path uses.
    let row = w
        .app
        .store
        .get_contact(Access::System, contact_id(&v))
        .await
        .expect("contact row");
    assert_eq!(row.reverse_key, ReverseAliases::lookup_key(token));
    assert_eq!(row.owner, w.a.user.id);
    assert_eq!(row.alias.to_string(), w.alias_a);
    let found = w
        .app
        .store
        .find_contact_by_reverse_key(&ReverseAliases::lookup_key(&token.to_ascii_uppercase()))
        .await
        .expect("lookup")
        .expect("found by key");
    assert_eq!(found.id, row.id);

    // The router sends the owner's mail to that address on to the contact.
    let router = Router::new(w.app.store.as_ref(), None).with_reverse(Some(keys));
    match router
        .route(&reverse, Some(&w.mb_a.address), w.app.clock.now())
        .await
    {
        Ok(Route::Reply { contact, alias, .. }) => {
            assert_eq!(contact.id, row.id);
            assert_eq!(alias.address.to_string(), "shop@alice.test");
        }
        other => panic!("not a reply route: {other:?}"),
    }

    // The same address again (any case): the existing contact, 200.
    let r =
        w.a.post(&path, json!({"address": "friend@OUTSIDE.test"}))
            .await;
    let again = r.expect(200);
    assert_eq!(again["id"], v["id"]);
    assert_eq!(again["reverse_alias"], v["reverse_alias"]);
    assert!(
        audit_actions(&w.app)
            .await
            .iter()
            .any(|a| a == "contact.create")
    );
}

#[tokio::test]
async fn list_get_block_unblock_rename_delete() {
    let w = world().await;
    let path = format!("/api/v1/aliases/{}/contacts", w.alias_a);
    let mut ids = Vec::new();
    for i in 0..5 {
        let r =
            w.a.post(&path, json!({"address": format!("c{i}@outside.test")}))
                .await;
        ids.push(r.expect(201)["id"].as_str().expect("id").to_owned());
    }
    // Paged list: every contact once, oldest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}?limit=2"),
            Some(c) => format!("{path}?limit=2&cursor={c}"),
        };
        let body = w.a.get(&url).await.expect(200).clone();
        for c in body["items"].as_array().expect("items") {
            seen.push(c["id"].as_str().expect("id").to_owned());
            assert!(c["reverse_alias"].as_str().expect("ra").starts_with("r--"));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let one = format!("/api/v1/contacts/{}", ids[0]);
    let r = w.a.get(&one).await;
    assert_eq!(r.expect(200)["address"], "c0@outside.test");

    // Block.
    let r =
        w.a.patch(&one, json!({"blocked": true, "revision": 0}))
            .await;
    assert_eq!(r.expect(200)["blocked"], true);
    let id: ContactId = ids[0].parse().expect("id");
    assert!(
        w.app
            .store
            .get_contact(Access::System, id)
            .await
            .expect("row")
            .blocked
    );
    // Stale revision.
    w.a.patch(&one, json!({"blocked": false, "revision": 0}))
        .await
        .assert_problem(409, "conflict");
    // Unblock and rename; then clear the name.
    let r =
        w.a.patch(&one, json!({"blocked": false, "display_name": "Carl"}))
            .await;
    let body = r.expect(200);
    assert_eq!(body["blocked"], false);
    assert_eq!(body["display_name"], "Carl");
    let row: Contact = w
        .app
        .store
        .get_contact(Access::System, id)
        .await
        .expect("row");
    assert!(!row.blocked);
    assert_eq!(row.display_name.as_deref(), Some("Carl"));
    let r = w.a.patch(&one, json!({"display_name": null})).await;
    assert!(r.expect(200)["display_name"].is_null());
    // Validation.
    for body in [
        json!({"display_name": "a\r\nBcc: x@y.test"}),
        json!({"display_name": "n".repeat(129)}),
        json!({"blocked": "yes"}),
        json!({"address": "other@outside.test"}),
    ] {
        w.a.patch(&one, body)
            .await
            .assert_problem(422, "validation");
    }

    let actions = audit_actions(&w.app).await;
    for a in ["contact.block", "contact.unblock"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }

    // Delete: gone from the store, its reverse alias no longer resolves.
    w.a.delete(&one).await.expect(204);
    assert!(w.app.store.get_contact(Access::System, id).await.is_err());
    assert!(
        w.app
            .store
            .find_contact_by_reverse_key(&row.reverse_key)
            .await
            .expect("lookup")
            .is_none()
    );
    w.a.get(&one).await.assert_problem(404, "not-found");
    w.a.delete(&one).await.assert_problem(404, "not-found");
    assert!(
        audit_actions(&w.app)
            .await
            .iter()
            .any(|a| a == "contact.delete")
    );
}

#[tokio::test]
async fn create_validation() {
    let w = world().await;
    let path = format!("/api/v1/aliases/{}/contacts", w.alias_a);
    for (body, field) in [
        (json!({"address": "not an address"}), "address"),
        (
            json!({"address": format!("{}@outside.test", "x".repeat(250))}),
            "address",
        ),
        (json!({"address": "r--abc@outside.test"}), "address"),
        (json!({"address": "bounce=x@outside.test"}), "address"),
        (json!({"address": "SHOP@alice.test"}), "address"),
        (
            json!({"address": "x@outside.test", "display_name": "a\nb"}),
            "display_name",
        ),
        (
            json!({"address": "x@outside.test", "display_name": "n".repeat(129)}),
            "display_name",
        ),
    ] {
        let r = w.a.post(&path, body.clone()).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}");
    }
    w.a.post(&path, json!({"address": "x@outside.test", "blocked": true}))
        .await
        .assert_problem(422, "validation");
    w.a.post(&path, json!({}))
        .await
        .assert_problem(422, "validation");
    // Unknown alias.
    w.a.post(
        &format!(
            "/api/v1/aliases/{}/contacts",
            smtpy_core::ids::AliasId::new()
        ),
        json!({"address": "x@outside.test"}),
    )
    .await
    .assert_problem(404, "not-found");
    // A deleted alias takes no new contacts.
    w.a.delete(&format!("/api/v1/aliases/{}", w.alias_a))
        .await
        .expect(204);
    w.a.post(&path, json!({"address": "x@outside.test"}))
        .await
        .assert_problem(409, "conflict");
    let page = w
        .app
        .store
        .list_contacts(Access::System, None, PageRequest::first(10))
        .await
        .expect("contacts");
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn another_user_cannot_see_or_change_a_contact() {
    let w = world().await;
    let r =
        w.a.post(
            &format!("/api/v1/aliases/{}/contacts", w.alias_a),
            json!({"address": "friend@outside.test"}),
        )
        .await;
    let v = r.expect(201).clone();
    let one = format!("/api/v1/contacts/{}", v["id"].as_str().expect("id"));

    w.b.get(&one).await.assert_problem(404, "not-found");
    w.b.patch(&one, json!({"blocked": true}))
        .await
        .assert_problem(404, "not-found");
    w.b.delete(&one).await.assert_problem(404, "not-found");
    w.b.get(&format!("/api/v1/aliases/{}/contacts", w.alias_a))
        .await
        .assert_problem(404, "not-found");
    w.b.post(
        &format!("/api/v1/aliases/{}/contacts", w.alias_a),
        json!({"address": "friend@outside.test"}),
    )
    .await
    .assert_problem(404, "not-found");
    // B's own alias lists only B's contacts (none).
    let body =
        w.b.get(&format!("/api/v1/aliases/{}/contacts", w.alias_b))
            .await
            .expect(200)
            .clone();
    assert!(body["items"].as_array().expect("items").is_empty());

    let row = w
        .app
        .store
        .get_contact(Access::System, contact_id(&v))
        .await
        .expect("still there");
    assert!(!row.blocked);
    assert_eq!(row.revision, 0);

    // A read-only key reads, but cannot write.
    let reader = w
        .app
        .account("reader@users.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    reader.get(&one).await.assert_problem(404, "not-found");
    let key = smtpy_http::auth::mint_api_key(
        w.a.user.id,
        "ro",
        vec![ApiScope::AliasesRead],
        None,
        w.app.clock.now(),
    )
    .expect("key");
    w.app.store.create_api_key(&key.key).await.expect("key");
    let ro = common::Client::new(&w.app.base, Some(key.token), None);
    ro.get(&one).await.expect(200);
    ro.patch(&one, json!({"blocked": true}))
        .await
        .assert_problem(403, "forbidden");
    ro.delete(&one).await.assert_problem(403, "forbidden");
    ro.post(
        &format!("/api/v1/aliases/{}/contacts", w.alias_a),
        json!({"address": "new@outside.test"}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert!(
        !w.app
            .store
            .get_contact(Access::System, contact_id(&v))
            .await
            .expect("row")
            .blocked
    );
}

#[tokio::test]
async fn without_reverse_keys_creation_is_503() {
    // A server whose state has no reverse-alias minter.
    let store = Arc::new(MemoryStore::new());
    let state = smtpy_http::ApiState::new(store.clone() as Arc<dyn Store>, common::test_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = smtpy_http::router(state.clone());
    let task = tokio::spawn(async move {
        let _ = smtpy_http::serve(listener, router, std::future::pending()).await;
    });

    let now = state.clock().now();
    let user = User::new(
        EmailAddress::parse("solo@users.test").expect("e"),
        Role::User,
        now,
    );
    store.create_user(&user).await.expect("user");
    let key = smtpy_http::auth::mint_api_key(
        user.id,
        "k",
        vec![ApiScope::AliasesRead, ApiScope::AliasesWrite],
        None,
        now,
    )
    .expect("key");
    store.create_api_key(&key.key).await.expect("key");
    let mut d = Domain::new(
        DomainName::parse("solo.test").expect("d"),
        user.id,
        "t".into(),
        now,
    );
    d.verified_at = Some(now);
    store.create_domain(&d).await.expect("domain");
    let mut m = Mailbox::new(
        user.id,
        EmailAddress::parse("solo@inbox.test").expect("m"),
        now,
    );
    m.verified_at = Some(now);
    store.create_mailbox(&m).await.expect("mailbox");

    let client = common::Client::new(&base, Some(key.token), None);
    let alias = client
        .post("/api/v1/aliases", json!({"address": "x@solo.test"}))
        .await
        .expect(201)
        .clone();
    client
        .post(
            &format!(
                "/api/v1/aliases/{}/contacts",
                alias["id"].as_str().expect("id")
            ),
            json!({"address": "friend@outside.test"}),
        )
        .await
        .assert_problem(503, "unavailable");
    let page = store
        .list_contacts(Access::System, None, PageRequest::first(10))
        .await
        .expect("contacts");
    assert!(page.items.is_empty());
    task.abort();
}
