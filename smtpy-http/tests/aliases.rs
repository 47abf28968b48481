//! `/api/v1/aliases` over real HTTP: creation (custom and generated),
//! listing with filters, search and cursor pagination, read, update, soft
//! delete and restore, authorization negatives and the new-alias rate limit.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::ids::AliasId;
use smtpy_core::limits::{LimitPolicy, Limits, LocalLimiter};
use smtpy_core::model::{AliasMode, ApiScope, Domain, Mailbox, Role, User};
use smtpy_core::routing::{Route, Router};
use smtpy_core::store::{
    AliasStore, AuditFilter, AuditStore, DomainStore, MailboxStore, PageRequest,
};
use smtpy_core::time::Clock;

// ---------------------------------------------------------------------------
// Fixtures (set up through the store: the domain and mailbox endpoints are
// another module's)

async fn add_domain(
    app: &TestApp,
    owner: &User,
    name: &str,
    verified: bool,
    shared: bool,
) -> Domain {
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse(name).expect("domain"),
        owner.id,
        format!("token-{name}"),
        now,
    );
    d.shared = shared;
    d.verified_at = verified.then_some(now);
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

/// Two users, each with a verified domain and a verified mailbox.
struct World {
    app: TestApp,
    a: Actor,
    b: Actor,
    dom_a: Domain,
    mb_a: Mailbox,
    dom_b: Domain,
    mb_b: Mailbox,
}

async fn world_with(app: TestApp) -> World {
    let a = app.user("alice@users.test").await;
    let b = app.user("bob@users.test").await;
    let dom_a = add_domain(&app, &a.user, "alice.test", true, false).await;
    let dom_b = add_domain(&app, &b.user, "bob.test", true, false).await;
    let mb_a = add_mailbox(&app, &a.user, "alice@inbox.test", true).await;
    let mb_b = add_mailbox(&app, &b.user, "bob@inbox.test", true).await;
    World {
        app,
        a,
        b,
        dom_a,
        mb_a,
        dom_b,
        mb_b,
    }
}

async fn world() -> World {
    world_with(TestApp::start().await).await
}

async fn create(actor: &Actor, body: Value) -> Value {
    let r = actor.post("/api/v1/aliases", body).await;
    r.expect(201).clone()
}

fn id_of(v: &Value) -> AliasId {
    v["id"].as_str().expect("id").parse().expect("alias id")
}

async fn stored(app: &TestApp, v: &Value) -> smtpy_core::model::Alias {
    app.store
        .get_alias(smtpy_core::store::Access::System, id_of(v))
        .await
        .expect("stored alias")
}

async fn audit_actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.store
        .list_audit(
            smtpy_core::store::Access::System,
            &AuditFilter::default(),
            PageRequest::first(500),
        )
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| (e.action, e.target))
        .collect()
}

// ---------------------------------------------------------------------------
// Creation

#[tokio::test]
async fn create_custom_alias() {
    let w = world().await;
    let r =
        w.a.post(
            "/api/v1/aliases",
            json!({
                "address": "Shop@alice.test",
                "mailboxes": [w.mb_a.id.to_string()],
                "mode": "forward",
                "note": "the shoe shop\nsecond line",
                "category": "shopping",
                "messages_per_hour": 10
            }),
        )
        .await;
    let v = r.expect(201);
    assert_eq!(v["address"], "Shop@alice.test");
    assert_eq!(v["domain"], "alice.test");
    assert_eq!(v["domain_id"], w.dom_a.id.to_string());
    assert_eq!(v["enabled"], true);
    assert_eq!(v["active"], true);
    assert_eq!(v["mode"], "forward");
    assert_eq!(v["mailboxes"], json!([w.mb_a.id.to_string()]));
    assert_eq!(v["note"], "the shoe shop\nsecond line");
    assert_eq!(v["category"], "shopping");
    assert_eq!(v["messages_per_hour"], 10);
    assert_eq!(v["counters"]["forwarded"], 0);
    assert!(v["counters"]["last_used_at"].is_null());
    assert!(v["deleted_at"].is_null());
    assert!(v["expires_at"].is_null());
    assert_eq!(v["revision"], 0);
    assert!(v["created_at"].as_i64().is_some());

    let row = w
        .app
        .store
        .find_alias_by_address(&EmailAddress::parse("shop@ALICE.test").expect("addr"))
        .await
        .expect("lookup")
        .expect("alias routes");
    assert_eq!(row.id, id_of(v));
    assert_eq!(row.owner, w.a.user.id);
    assert_eq!(row.mode, AliasMode::Forward);
    assert_eq!(row.limits.messages_per_hour, Some(10));
    assert!(
        audit_actions(&w.app)
            .await
            .contains(&("alias.create".to_owned(), Some(row.id.to_string())))
    );
}

#[tokio::test]
async fn create_with_each_generator() {
    let w = world().await;
    // words, default domain (the caller's verified domain), default mailbox.
    for _ in 0..5 {
        let v = create(&w.a, json!({"generator": "words"})).await;
        let address = v["address"].as_str().expect("address");
        let (local, domain) = address.split_once('@').expect("@");
        assert_eq!(domain, "alice.test");
        let sep = if local.contains('.') { '.' } else { '_' };
        let parts: Vec<&str> = local.split(sep).collect();
        assert!((3..=4).contains(&parts.len()), "{local}");
        let (digits, words) = parts.split_last().expect("parts");
        assert!(
            (2..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
            "{local}"
        );
        assert!(
            words
                .iter()
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
            "{local}"
        );
        assert_eq!(v["mailboxes"], json!([w.mb_a.id.to_string()]));
        let row = stored(&w.app, &v).await;
        assert_eq!(row.domain, w.dom_a.id);
    }
    // chars, domain by name.
    let v = create(&w.a, json!({"generator": "chars", "domain": "alice.test"})).await;
    let local = v["address"]
        .as_str()
        .expect("a")
        .split('@')
        .next()
        .expect("l");
    assert_eq!(local.len(), 12);
    assert!(
        local
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    // uuid, domain by id.
    let v = create(
        &w.a,
        json!({"generator": "uuid", "domain": w.dom_a.id.to_string()}),
    )
    .await;
    let local = v["address"]
        .as_str()
        .expect("a")
        .split('@')
        .next()
        .expect("l");
    let u = uuid::Uuid::parse_str(local).expect("uuid local part");
    assert_eq!(u.get_version_num(), 4);
    stored(&w.app, &v).await;
}

#[tokio::test]
async fn generated_alias_uses_the_domain_default_mailboxes() {
    let w = world().await;
    let second = add_mailbox(&w.app, &w.a.user, "alice2@inbox.test", true).await;
    let mut d = w.dom_a.clone();
    d.default_mailboxes = vec![second.id];
    w.app
        .store
        .update_domain(smtpy_core::store::Access::System, &d)
        .await
        .expect("update domain");
    let v = create(&w.a, json!({"generator": "chars"})).await;
    assert_eq!(v["mailboxes"], json!([second.id.to_string()]));
}

#[tokio::test]
async fn reserved_local_parts_are_refused() {
    let w = world().await;
    for address in [
        "r--abc@alice.test",
        "R--ABC@alice.test",
        "bounce=x@alice.test",
        "BOUNCE=1@alice.test",
    ] {
        let r =
            w.a.post("/api/v1/aliases", json!({"address": address}))
                .await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "address", "{address}");
        assert!(
            w.app
                .store
                .find_alias_by_address(&EmailAddress::parse(address).expect("addr"))
                .await
                .expect("lookup")
                .is_none()
        );
    }
}

#[tokio::test]
async fn foreign_and_unverified_domains_are_refused_shared_ones_accepted() {
    let w = world().await;
    // B's domain, by address, by name and by id.
    let r =
        w.a.post("/api/v1/aliases", json!({"address": "x@bob.test"}))
            .await;
    r.assert_problem(422, "validation");
    assert_eq!(r.body["errors"][0]["field"], "address");
    for domain in ["bob.test".to_owned(), w.dom_b.id.to_string()] {
        let r =
            w.a.post(
                "/api/v1/aliases",
                json!({"generator": "chars", "domain": domain}),
            )
            .await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], "domain");
    }
    // A domain nobody hosts answers the same.
    let r =
        w.a.post("/api/v1/aliases", json!({"address": "x@nowhere.test"}))
            .await;
    r.assert_problem(422, "validation");
    // A's own unverified domain.
    add_domain(&w.app, &w.a.user, "pending.test", false, false).await;
    let r =
        w.a.post("/api/v1/aliases", json!({"address": "x@pending.test"}))
            .await;
    r.assert_problem(422, "validation");
    // Nothing was created for A.
    let page = w
        .app
        .store
        .list_aliases(
            w.a.user.access_owner(),
            &Default::default(),
            PageRequest::first(10),
        )
        .await
        .expect("list");
    assert!(page.items.is_empty());

    // A shared domain of an admin is open to A.
    let admin = w.app.admin("root@users.test").await;
    add_domain(&w.app, &admin.user, "shared.test", true, true).await;
    let v = create(&w.a, json!({"address": "mine@shared.test"})).await;
    let row = stored(&w.app, &v).await;
    assert_eq!(row.owner, w.a.user.id);
    // ...and its owner's default mailboxes are never used for A.
    assert_eq!(row.mailboxes, vec![w.mb_a.id]);
    let v = create(&w.a, json!({"generator": "words", "domain": "shared.test"})).await;
    assert!(v["address"].as_str().expect("a").ends_with("@shared.test"));

    // A domain an administrator disabled takes no new aliases, shared or own.
    for name in ["shared.test", "alice.test"] {
        let mut d = w
            .app
            .store
            .find_domain_by_name(&DomainName::parse(name).expect("name"))
            .await
            .expect("find")
            .expect("domain");
        d.disabled = true;
        w.app
            .store
            .update_domain(smtpy_core::store::Access::System, &d)
            .await
            .expect("disable");
        let r =
            w.a.post("/api/v1/aliases", json!({"address": format!("new@{name}")}))
                .await;
        r.assert_problem(422, "validation");
        let r =
            w.a.post(
                "/api/v1/aliases",
                json!({"generator": "chars", "domain": name}),
            )
            .await;
        r.assert_problem(422, "validation");
    }
}

trait OwnerAccess {
    fn access_owner(&self) -> smtpy_core::store::Access;
}
impl OwnerAccess for User {
    fn access_owner(&self) -> smtpy_core::store::Access {
        smtpy_core::store::Access::Owner(self.id)
    }
}

#[tokio::test]
async fn mailbox_checks() {
    let w = world().await;
    let unverified = add_mailbox(&w.app, &w.a.user, "new@inbox.test", false).await;
    let cases = [
        (json!([unverified.id.to_string()]), "mailboxes/0"),
        (
            json!([w.mb_a.id.to_string(), w.mb_b.id.to_string()]),
            "mailboxes/1",
        ),
        (json!(["not-an-id"]), "mailboxes/0"),
        (json!([]), "mailboxes"),
    ];
    for (mailboxes, field) in cases {
        let r =
            w.a.post(
                "/api/v1/aliases",
                json!({"address": "m@alice.test", "mailboxes": mailboxes}),
            )
            .await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{r:?}");
    }
    let too_many: Vec<String> = (0..21).map(|_| w.mb_a.id.to_string()).collect();
    w.a.post(
        "/api/v1/aliases",
        json!({"address": "m@alice.test", "mailboxes": too_many}),
    )
    .await
    .assert_problem(422, "validation");
    assert!(
        w.app
            .store
            .find_alias_by_address(&EmailAddress::parse("m@alice.test").expect("a"))
            .await
            .expect("lookup")
            .is_none()
    );

    // A user without any verified mailbox cannot rely on the default.
    let c = w.app.user("carol@users.test").await;
    add_domain(&w.app, &c.user, "carol.test", true, false).await;
    let r = c
        .post("/api/v1/aliases", json!({"generator": "chars"}))
        .await;
    r.assert_problem(422, "validation");
    assert_eq!(r.body["errors"][0]["field"], "mailboxes");
}

#[tokio::test]
async fn duplicates_conflict_and_purged_addresses_are_gone() {
    let w = world().await;
    let v = create(&w.a, json!({"address": "dup@alice.test"})).await;
    w.a.post("/api/v1/aliases", json!({"address": "DUP@alice.test"}))
        .await
        .assert_problem(409, "conflict");
    // Soft-deleted: still taken.
    w.a.delete(&format!(
        "/api/v1/aliases/{}",
        v["id"].as_str().expect("id")
    ))
    .await
    .expect(204);
    w.a.post("/api/v1/aliases", json!({"address": "dup@alice.test"}))
        .await
        .assert_problem(409, "conflict");
    // Purged: a tombstone, for ever.
    w.app
        .store
        .purge_deleted_aliases(w.app.clock.now())
        .await
        .expect("purge");
    w.a.post("/api/v1/aliases", json!({"address": "dup@alice.test"}))
        .await
        .assert_problem(410, "gone");
    // Someone else's existing address: the same 409.
    create(&w.b, json!({"address": "taken@bob.test"})).await;
    let admin = w.app.admin("root@users.test").await;
    add_domain(&w.app, &admin.user, "shared.test", true, true).await;
    create(&w.b, json!({"address": "same@shared.test"})).await;
    w.a.post("/api/v1/aliases", json!({"address": "same@shared.test"}))
        .await
        .assert_problem(409, "conflict");
}

#[tokio::test]
async fn create_validation() {
    let w = world().await;
    let long_note = "n".repeat(1001);
    let long_cat = "c".repeat(65);
    let past = w.app.clock.now().as_unix_millis() - 1000;
    let cases = [
        (
            json!({"address": "v@alice.test", "note": long_note}),
            "note",
        ),
        (
            json!({"address": "v@alice.test", "category": long_cat}),
            "category",
        ),
        (
            json!({"address": "v@alice.test", "category": "a\nb"}),
            "category",
        ),
        (
            json!({"address": "v@alice.test", "messages_per_hour": 0}),
            "messages_per_hour",
        ),
        (
            json!({"address": "v@alice.test", "messages_per_hour": 101}),
            "messages_per_hour",
        ),
        (
            json!({"address": "v@alice.test", "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"address": "v@alice.test", "generator": "words"}),
            "generator",
        ),
        (
            json!({"address": "v@alice.test", "domain": "alice.test"}),
            "domain",
        ),
        (json!({}), "address"),
        (json!({"address": "not an address"}), "address"),
        (json!({"address": "\"a b\"@alice.test"}), "address"),
        (json!({"address": "café@alice.test"}), "address"),
    ];
    for (body, field) in cases {
        let r = w.a.post("/api/v1/aliases", body.clone()).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field, "{body} → {r:?}");
    }
    // Unknown fields and wrong types are refused too.
    w.a.post(
        "/api/v1/aliases",
        json!({"address": "v@alice.test", "owner": "x"}),
    )
    .await
    .assert_problem(422, "validation");
    w.a.post("/api/v1/aliases", json!({"generator": "emoji"}))
        .await
        .assert_problem(422, "validation");
    assert!(
        w.app
            .store
            .find_alias_by_address(&EmailAddress::parse("v@alice.test").expect("a"))
            .await
            .expect("lookup")
            .is_none()
    );
    // The cap is the service default (100 without configured limits).
    let v = create(
        &w.a,
        json!({"address": "v@alice.test", "messages_per_hour": 100, "expires_at": past + 3_600_000}),
    )
    .await;
    assert_eq!(v["messages_per_hour"], 100);
    assert_eq!(stored(&w.app, &v).await.limits.messages_per_hour, Some(100));
    // Admins may lift the limit.
    let admin = w.app.admin("root@users.test").await;
    add_domain(&w.app, &admin.user, "root.test", true, false).await;
    add_mailbox(&w.app, &admin.user, "root@inbox.test", true).await;
    let v = create(
        &admin,
        json!({"address": "free@root.test", "messages_per_hour": 0}),
    )
    .await;
    assert_eq!(stored(&w.app, &v).await.limits.messages_per_hour, Some(0));
    // ...but not with a key lacking the admin scope.
    let key = smtpy_http::auth::mint_api_key(
        admin.user.id,
        "no-admin",
        vec![ApiScope::AliasesWrite],
        None,
        w.app.clock.now(),
    )
    .expect("key");
    smtpy_core::store::CredentialStore::create_api_key(w.app.store.as_ref(), &key.key)
        .await
        .expect("store key");
    let plain = common::Client::new(&w.app.base, Some(key.token), None);
    let r = plain
        .post(
            "/api/v1/aliases",
            json!({"address": "free2@root.test", "messages_per_hour": 0}),
        )
        .await;
    r.assert_problem(422, "validation");
    assert_eq!(r.body["errors"][0]["field"], "messages_per_hour");
}

// ---------------------------------------------------------------------------
// Listing

async fn list_all(actor: &Actor, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if query.is_empty() { "" } else { "&" };
    for _ in 0..100 {
        let path = match &cursor {
            None => format!("/api/v1/aliases?limit={limit}{sep}{query}"),
            Some(c) => format!("/api/v1/aliases?limit={limit}&cursor={c}{sep}{query}"),
        };
        let r = actor.get(&path).await;
        let body = r.expect(200);
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= limit as usize);
        out.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

fn addresses(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["address"].as_str().expect("address").to_owned())
        .collect()
}

#[tokio::test]
async fn list_paginates_without_duplicates_or_gaps() {
    let w = world().await;
    let mut made = Vec::new();
    for i in 0..7 {
        let v = create(&w.a, json!({"address": format!("p{i}@alice.test")})).await;
        made.push(v["id"].as_str().expect("id").to_owned());
    }
    // B's alias never shows up in A's list.
    create(&w.b, json!({"address": "p9@bob.test"})).await;

    let r = w.a.get("/api/v1/aliases?limit=3").await;
    let first = r.expect(200);
    assert_eq!(first["items"].as_array().expect("items").len(), 3);
    assert!(first["next_cursor"].is_string());

    let all = list_all(&w.a, "", 3).await;
    let ids: Vec<String> = all
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, made, "oldest first, every row once");

    // Default limit: one page.
    let r = w.a.get("/api/v1/aliases").await;
    assert_eq!(r.expect(200)["items"].as_array().expect("items").len(), 7);
    assert!(r.body["next_cursor"].is_null());

    let b_all = list_all(&w.b, "", 2).await;
    assert_eq!(addresses(&b_all), vec!["p9@bob.test"]);

    w.a.get("/api/v1/aliases?cursor=garbage")
        .await
        .assert_problem(400, "bad-request");
    w.a.get("/api/v1/aliases?nope=1")
        .await
        .assert_problem(400, "bad-request");
}

#[tokio::test]
async fn list_filters_and_search() {
    let w = world().await;
    let mb2 = add_mailbox(&w.app, &w.a.user, "alice2@inbox.test", true).await;
    let admin = w.app.admin("root@users.test").await;
    let shared = add_domain(&w.app, &admin.user, "shared.test", true, true).await;
    // Ten aliases: even ones on mailbox 2, in forward mode; every third
    // disabled; 0..5 category "shop"; one on the shared domain.
    for i in 0..10 {
        let mut body = json!({
            "address": format!("f{i}@alice.test"),
            "mailboxes": [if i % 2 == 0 { mb2.id.to_string() } else { w.mb_a.id.to_string() }],
            "mode": if i % 2 == 0 { "forward" } else { "alias" },
        });
        if i < 5 {
            body["category"] = json!("shop");
        }
        if i == 7 {
            body["note"] = json!("Newsletter of the Garden club");
        }
        let v = create(&w.a, body).await;
        if i % 3 == 0 {
            w.a.patch(
                &format!("/api/v1/aliases/{}", v["id"].as_str().expect("id")),
                json!({"enabled": false}),
            )
            .await
            .expect(200);
        }
    }
    let on_shared = create(&w.a, json!({"address": "OnShared@shared.test"})).await;
    let gone = create(&w.a, json!({"address": "trash@alice.test"})).await;
    w.a.delete(&format!(
        "/api/v1/aliases/{}",
        gone["id"].as_str().expect("id")
    ))
    .await
    .expect(204);

    let set = |items: Vec<Value>| -> BTreeSet<String> { addresses(&items).into_iter().collect() };
    let expect = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| (*s).to_owned()).collect() };

    // enabled
    assert_eq!(
        set(list_all(&w.a, "enabled=false", 2).await),
        expect(&[
            "f0@alice.test",
            "f3@alice.test",
            "f6@alice.test",
            "f9@alice.test"
        ])
    );
    assert_eq!(list_all(&w.a, "enabled=true", 2).await.len(), 7);
    // domain, by name and by id
    assert_eq!(
        set(list_all(&w.a, "domain=shared.test", 2).await),
        expect(&["OnShared@shared.test"])
    );
    assert_eq!(
        set(list_all(&w.a, &format!("domain={}", shared.id), 2).await),
        expect(&["OnShared@shared.test"])
    );
    assert_eq!(list_all(&w.a, "domain=alice.test", 4).await.len(), 10);
    assert!(list_all(&w.a, "domain=bob.test", 4).await.is_empty());
    assert!(list_all(&w.a, "domain=unknown.test", 4).await.is_empty());
    // mailbox (handler-side filter) across several pages
    let on_mb2 = list_all(&w.a, &format!("mailbox={}", mb2.id), 2).await;
    assert_eq!(
        set(on_mb2.clone()),
        expect(&[
            "f0@alice.test",
            "f2@alice.test",
            "f4@alice.test",
            "f6@alice.test",
            "f8@alice.test"
        ])
    );
    assert_eq!(on_mb2.len(), 5, "no duplicates");
    // mode (handler-side) combined with a store-side filter
    assert_eq!(
        set(list_all(&w.a, "mode=forward&enabled=true", 1).await),
        expect(&["f2@alice.test", "f4@alice.test", "f8@alice.test"])
    );
    assert_eq!(list_all(&w.a, "mode=alias", 3).await.len(), 6);
    // category
    assert_eq!(list_all(&w.a, "category=shop", 2).await.len(), 5);
    assert!(list_all(&w.a, "category=none", 2).await.is_empty());
    // deleted
    assert_eq!(
        set(list_all(&w.a, "deleted=deleted", 2).await),
        expect(&["trash@alice.test"])
    );
    assert_eq!(list_all(&w.a, "deleted=any", 5).await.len(), 12);
    assert_eq!(list_all(&w.a, "deleted=live", 5).await.len(), 11);
    assert_eq!(list_all(&w.a, "", 5).await.len(), 11);
    // search: address and note, case-insensitive
    assert_eq!(
        set(list_all(&w.a, "q=onshared", 2).await),
        expect(&["OnShared@shared.test"])
    );
    assert_eq!(
        set(list_all(&w.a, "q=GARDEN", 2).await),
        expect(&["f7@alice.test"])
    );
    assert_eq!(list_all(&w.a, "q=f", 3).await.len(), 10);
    assert!(list_all(&w.a, "q=zzz", 3).await.is_empty());
    // B sees none of it.
    assert!(list_all(&w.b, "q=f", 3).await.is_empty());
    assert!(list_all(&w.b, "deleted=any", 3).await.is_empty());
    assert!(
        list_all(&w.b, &format!("mailbox={}", mb2.id), 3)
            .await
            .is_empty()
    );
    // Bounds.
    let long = "q".repeat(129);
    w.a.get(&format!("/api/v1/aliases?q={long}"))
        .await
        .assert_problem(422, "validation");
    w.a.get("/api/v1/aliases?mailbox=nope")
        .await
        .assert_problem(422, "validation");
    w.a.get("/api/v1/aliases?mode=other")
        .await
        .assert_problem(400, "bad-request");
    w.a.get("/api/v1/aliases?deleted=maybe")
        .await
        .assert_problem(400, "bad-request");
    let _ = on_shared;
}

// ---------------------------------------------------------------------------
// Read, update, delete, restore

#[tokio::test]
async fn get_update_delete_restore() {
    let w = world().await;
    let mb2 = add_mailbox(&w.app, &w.a.user, "alice2@inbox.test", true).await;
    let v = create(
        &w.a,
        json!({"address": "life@alice.test", "note": "n", "category": "c", "messages_per_hour": 5}),
    )
    .await;
    let path = format!("/api/v1/aliases/{}", v["id"].as_str().expect("id"));
    let r = w.a.get(&path).await;
    assert_eq!(r.expect(200)["address"], "life@alice.test");

    // Update several fields.
    let expiry = w.app.clock.now().as_unix_millis() + 86_400_000;
    let r =
        w.a.patch(
            &path,
            json!({
                "enabled": false,
                "mailboxes": [mb2.id.to_string(), w.mb_a.id.to_string()],
                "mode": "forward",
                "note": "changed",
                "expires_at": expiry,
                "revision": 0
            }),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["active"], false);
    assert_eq!(body["mode"], "forward");
    assert_eq!(body["note"], "changed");
    assert_eq!(body["category"], "c", "absent fields stay");
    assert_eq!(body["expires_at"], expiry);
    assert_eq!(body["revision"], 1);
    let row = stored(&w.app, &v).await;
    assert!(!row.enabled);
    assert_eq!(row.mailboxes, vec![mb2.id, w.mb_a.id]);
    assert_eq!(row.mode, AliasMode::Forward);
    assert_eq!(row.revision, 1);

    // null clears.
    let r = w
        .a
        .patch(
            &path,
            json!({"note": null, "category": null, "expires_at": null, "messages_per_hour": null, "enabled": true}),
        )
        .await;
    let body = r.expect(200);
    assert!(body["note"].is_null() && body["category"].is_null());
    assert!(body["expires_at"].is_null() && body["messages_per_hour"].is_null());
    let row = stored(&w.app, &v).await;
    assert_eq!((row.note, row.category, row.expires_at), (None, None, None));
    assert_eq!(row.limits.messages_per_hour, None);

    // An empty change writes nothing.
    let r = w.a.patch(&path, json!({})).await;
    assert_eq!(r.expect(200)["revision"], 2);
    assert_eq!(stored(&w.app, &v).await.revision, 2);

    // Stale revision.
    w.a.patch(&path, json!({"enabled": false, "revision": 0}))
        .await
        .assert_problem(409, "conflict");
    // Validation as in creation.
    let unverified = add_mailbox(&w.app, &w.a.user, "u@inbox.test", false).await;
    for (body, field) in [
        (
            json!({"mailboxes": [unverified.id.to_string()]}),
            "mailboxes/0",
        ),
        (json!({"mailboxes": []}), "mailboxes"),
        (json!({"messages_per_hour": 0}), "messages_per_hour"),
        (json!({"expires_at": 5}), "expires_at"),
        (json!({"note": "x".repeat(1001)}), "note"),
    ] {
        let r = w.a.patch(&path, body).await;
        r.assert_problem(422, "validation");
        assert_eq!(r.body["errors"][0]["field"], field);
    }
    w.a.patch(&path, json!({"address": "other@alice.test"}))
        .await
        .assert_problem(422, "validation");
    assert!(
        stored(&w.app, &v).await.enabled,
        "refused changes wrote nothing"
    );

    // The alias routes before deletion...
    let addr = EmailAddress::parse("life@alice.test").expect("a");
    let sender = EmailAddress::parse("someone@outside.test").expect("s");
    let router = Router::new(w.app.store.as_ref(), None);
    assert!(matches!(
        router.route(&addr, Some(&sender), w.app.clock.now()).await,
        Ok(Route::Forward { .. })
    ));
    // ...soft delete: no longer routes, kept with deleted_at.
    w.a.delete(&path).await.expect(204);
    assert!(
        w.app
            .store
            .find_alias_by_address(&addr)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        router
            .route(&addr, Some(&sender), w.app.clock.now())
            .await
            .is_err()
    );
    let r = w.a.get(&path).await;
    assert!(r.expect(200)["deleted_at"].is_i64());
    assert!(stored(&w.app, &v).await.deleted_at.is_some());
    // Deleting twice is fine; changing a deleted alias is not.
    w.a.delete(&path).await.expect(204);
    w.a.patch(&path, json!({"enabled": false}))
        .await
        .assert_problem(409, "conflict");

    // Restore.
    let r = w.a.post_empty(&format!("{path}/restore")).await;
    let body = r.expect(200);
    assert!(body["deleted_at"].is_null());
    assert!(
        w.app
            .store
            .find_alias_by_address(&addr)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(matches!(
        router.route(&addr, Some(&sender), w.app.clock.now()).await,
        Ok(Route::Forward { .. })
    ));

    let actions: Vec<String> = audit_actions(&w.app)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in [
        "alias.create",
        "alias.update",
        "alias.delete",
        "alias.restore",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }

    // Unknown and malformed ids.
    let missing = format!("/api/v1/aliases/{}", AliasId::new());
    w.a.get(&missing).await.assert_problem(404, "not-found");
    w.a.get("/api/v1/aliases/not-a-uuid")
        .await
        .assert_problem(404, "not-found");
    w.a.post_empty(&format!("{missing}/restore"))
        .await
        .assert_problem(404, "not-found");
}

// ---------------------------------------------------------------------------
// Authorization

#[tokio::test]
async fn another_user_gets_404_on_everything() {
    let w = world().await;
    let v = create(
        &w.a,
        json!({"address": "private@alice.test", "note": "secret"}),
    )
    .await;
    let path = format!("/api/v1/aliases/{}", v["id"].as_str().expect("id"));

    w.b.get(&path).await.assert_problem(404, "not-found");
    w.b.patch(&path, json!({"enabled": false}))
        .await
        .assert_problem(404, "not-found");
    w.b.patch(&path, json!({"mailboxes": [w.mb_b.id.to_string()]}))
        .await
        .assert_problem(404, "not-found");
    w.b.delete(&path).await.assert_problem(404, "not-found");
    w.b.post_empty(&format!("{path}/restore"))
        .await
        .assert_problem(404, "not-found");
    w.b.get(&format!("{path}/contacts"))
        .await
        .assert_problem(404, "not-found");
    w.b.post(
        &format!("{path}/contacts"),
        json!({"address": "friend@outside.test"}),
    )
    .await
    .assert_problem(404, "not-found");
    // A's alias cannot be made to forward to B's mailbox either.
    w.a.patch(&path, json!({"mailboxes": [w.mb_b.id.to_string()]}))
        .await
        .assert_problem(422, "validation");

    let row = stored(&w.app, &v).await;
    assert!(row.enabled && row.deleted_at.is_none());
    assert_eq!(row.mailboxes, vec![w.mb_a.id]);
    assert_eq!(row.revision, 0);

    let page = w.b.get("/api/v1/aliases?deleted=any").await;
    assert!(
        page.expect(200)["items"]
            .as_array()
            .expect("items")
            .is_empty()
    );
    let page = w.b.get("/api/v1/aliases?q=private").await;
    assert!(
        page.expect(200)["items"]
            .as_array()
            .expect("items")
            .is_empty()
    );
    let _ = (&w.dom_a, &w.dom_b);
}

#[tokio::test]
async fn scopes_are_enforced() {
    let w = world().await;
    let v = create(&w.a, json!({"address": "scoped@alice.test"})).await;
    let path = format!("/api/v1/aliases/{}", v["id"].as_str().expect("id"));
    let reader = w
        .app
        .account("reader@users.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    // A reader of their own (empty) data: reads pass, writes are 403.
    reader.get("/api/v1/aliases").await.expect(200);
    reader
        .post("/api/v1/aliases", json!({"generator": "words"}))
        .await
        .assert_problem(403, "forbidden");
    // A read-only key of A's own account.
    let key = smtpy_http::auth::mint_api_key(
        w.a.user.id,
        "ro",
        vec![ApiScope::AliasesRead],
        None,
        w.app.clock.now(),
    )
    .expect("key");
    smtpy_core::store::CredentialStore::create_api_key(w.app.store.as_ref(), &key.key)
        .await
        .expect("store key");
    let ro = common::Client::new(&w.app.base, Some(key.token), None);
    ro.get(&path).await.expect(200);
    ro.get("/api/v1/aliases").await.expect(200);
    ro.post("/api/v1/aliases", json!({"address": "ro@alice.test"}))
        .await
        .assert_problem(403, "forbidden");
    ro.patch(&path, json!({"enabled": false}))
        .await
        .assert_problem(403, "forbidden");
    ro.delete(&path).await.assert_problem(403, "forbidden");
    ro.post_empty(&format!("{path}/restore"))
        .await
        .assert_problem(403, "forbidden");
    ro.post(
        "/api/v1/aliases/bulk",
        json!({"ids": [v["id"]], "action": "disable"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let row = stored(&w.app, &v).await;
    assert!(row.enabled && row.deleted_at.is_none());

    // A key without aliases:read cannot list.
    let nothing = w
        .app
        .account("domains@users.test", Role::User, &[ApiScope::DomainsRead])
        .await;
    nothing
        .get("/api/v1/aliases")
        .await
        .assert_problem(403, "forbidden");
    // No credentials at all.
    w.app
        .browser()
        .get("/api/v1/aliases")
        .await
        .assert_problem(401, "unauthenticated");
}

// ---------------------------------------------------------------------------
// Rate limit and configured cap

#[tokio::test]
async fn new_alias_rate_limit_answers_429_with_retry_after() {
    let policy = LimitPolicy {
        user_aliases_per_hour: 2,
        alias_messages_per_hour: 20,
        ..LimitPolicy::default()
    };
    let app = TestApp::start_with(common::test_config(), move |s| {
        let limiter = Arc::new(LocalLimiter::new(s.clock().clone()));
        s.with_limits(Arc::new(Limits::new(limiter, policy)))
    })
    .await;
    let w = world_with(app).await;
    create(&w.a, json!({"address": "first@alice.test"})).await;
    // Refusals that need no store write do not spend the quota.
    w.a.post("/api/v1/aliases", json!({"address": "first@alice.test"}))
        .await
        .assert_problem(409, "conflict");
    w.a.post("/api/v1/aliases", json!({"address": "r--x@alice.test"}))
        .await
        .assert_problem(422, "validation");
    create(&w.a, json!({"generator": "chars"})).await;
    let r =
        w.a.post("/api/v1/aliases", json!({"generator": "chars"}))
            .await;
    r.assert_problem(429, "rate-limited");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        w.app.state.metrics().get(
            smtpy_core::metrics::RATE_LIMIT_DENIALS,
            &[("scope", "alias_create")]
        ),
        1.0
    );
    // Another user has their own quota.
    create(&w.b, json!({"generator": "chars"})).await;
    // A's third alias was not created.
    let page = w.a.get("/api/v1/aliases").await;
    assert_eq!(
        page.expect(200)["items"].as_array().expect("items").len(),
        2
    );
    // Once the wait is over, creation works again.
    w.app.clock.advance(Duration::from_secs(retry));
    create(&w.a, json!({"generator": "chars"})).await;

    // The per-alias message cap is the configured default (20 here).
    w.a.post(
        "/api/v1/aliases",
        json!({"address": "cap@alice.test", "messages_per_hour": 21}),
    )
    .await
    .assert_problem(422, "validation");
}

#[tokio::test]
async fn openapi_documents_the_alias_and_contact_operations() {
    let app = TestApp::start().await;
    let doc = app.browser().get("/api/v1/openapi.json").await.body;
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/api/v1/aliases", &["get", "post"][..]),
        ("/api/v1/aliases/{id}", &["get", "patch", "delete"][..]),
        ("/api/v1/aliases/{id}/restore", &["post"][..]),
        ("/api/v1/aliases/bulk", &["post"][..]),
        ("/api/v1/aliases/{id}/contacts", &["get", "post"][..]),
        ("/api/v1/contacts/{id}", &["get", "patch", "delete"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path}");
        }
    }
    if std::env::var_os("DUMP_OPENAPI").is_some() {
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    }
    let schemas = &doc["components"]["schemas"];
    for s in [
        "AliasView",
        "CreateAlias",
        "UpdateAlias",
        "BulkRequest",
        "ContactView",
    ] {
        assert!(schemas[s].is_object(), "{s}");
    }
}
