//! The alias pages over real HTTP: the list (creation, search, filters,
//! pages, toggles, bulk actions, delete and restore) and the alias page
//! (settings, contacts, chart, delivery events), scoped to the owner.
#![cfg(feature = "web")]

mod common;

use common::web::{Page, WebClient};
use common::{Actor, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::ids::AliasId;
use smtpy_core::model::{
    Alias, AliasMode, DeliveryEvent, Domain, EventKind, Mailbox, UsageRecord, User,
};
use smtpy_core::store::{
    Access, AliasStore, ContactStore, DomainStore, EventStore, MailboxStore, UsageStore,
};
use smtpy_core::time::Clock;

// ---------------------------------------------------------------------------
// Fixtures

async fn add_domain(app: &TestApp, owner: &User, name: &str, verified: bool) -> Domain {
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse(name).expect("domain"),
        owner.id,
        format!("token-{name}"),
        now,
    );
    d.verified_at = verified.then_some(now);
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

/// Ann (signed in on the web) with a verified domain and mailbox, and Bob
/// (API only) with his own.
struct World {
    app: TestApp,
    ann: Actor,
    bob: Actor,
    web: WebClient,
    mailbox: Mailbox,
}

async fn world() -> World {
    let app = TestApp::start().await;
    let ann = app.user("ann@users.test").await;
    let bob = app.user("bob@users.test").await;
    add_domain(&app, &ann.user, "ann.test", true).await;
    add_domain(&app, &ann.user, "pending.test", false).await;
    let mailbox = add_mailbox(&app, &ann.user, "ann@inbox.test").await;
    add_domain(&app, &bob.user, "bob.test", true).await;
    add_mailbox(&app, &bob.user, "bob@inbox.test").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@users.test").await;
    World {
        app,
        ann,
        bob,
        web,
        mailbox,
    }
}

/// Creates an alias through the API.
async fn api_alias(actor: &Actor, body: Value) -> Value {
    actor
        .post("/api/v1/aliases", body)
        .await
        .expect(201)
        .clone()
}

async fn stored(app: &TestApp, id: &str) -> Alias {
    app.store
        .get_alias(Access::System, id.parse::<AliasId>().expect("alias id"))
        .await
        .expect("stored alias")
}

async fn find(app: &TestApp, address: &str) -> Option<Alias> {
    app.store
        .find_alias_by_address(&EmailAddress::parse(address).expect("addr"))
        .await
        .expect("find")
}

/// The rows of a list page: the addresses linked from it.
fn addresses(page: &Page) -> Vec<String> {
    page.html
        .split("<a class=\"mono\" href=\"/app/aliases/")
        .skip(1)
        .filter_map(|s| s.split('>').nth(1))
        .filter_map(|s| s.split('<').next())
        .map(str::to_owned)
        .collect()
}

/// The first `href` after `marker`, unescaped.
fn href_before(page: &Page, text: &str) -> String {
    let at = page.html.find(text).expect("link text");
    let head = &page.html[..at];
    let start = head.rfind("href=\"").expect("href") + 6;
    let rest = &page.html[start..];
    rest[..rest.find('"').expect("quote")]
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

// ---------------------------------------------------------------------------
// Creation

#[tokio::test]
async fn creates_custom_and_generated_aliases_through_the_forms() {
    let w = world().await;
    let list = w.web.get("/app/aliases").await;
    assert_eq!(list.status, 200);
    list.assert_contains("<label for=\"new-address\">Address</label>");
    // The generator offers the usable domain, not the unverified one.
    list.assert_contains("<option value=\"ann.test\"");
    assert!(!list.html.contains("<option value=\"pending.test\""));

    let r = w
        .web
        .post(
            "/app/aliases",
            &[
                ("address", "shop@ann.test"),
                ("note", "the shoe shop"),
                ("category", "shopping"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let row = find(&w.app, "shop@ann.test").await.expect("created");
    assert_eq!(r.location(), format!("/app/aliases/{}", row.id));
    assert_eq!(row.note.as_deref(), Some("the shoe shop"));
    assert_eq!(row.category.as_deref(), Some("shopping"));
    assert_eq!(row.mailboxes, vec![w.mailbox.id]);
    let page = w.web.get_follow(r.location()).await;
    assert_eq!(page.status, 200);
    page.assert_contains("Created the alias shop@ann.test");
    page.assert_contains("data-copy-target=\"alias-address\"");
    page.assert_contains("<span id=\"alias-address\" class=\"mono secret\">shop@ann.test</span>");

    let r = w
        .web
        .submit(
            "/app/aliases",
            &[
                ("generator", "chars"),
                ("domain", "ann.test"),
                ("note", "random"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    r.assert_contains("Created the alias ");
    let all = w
        .app
        .store
        .list_aliases(
            Access::Owner(w.ann.user.id),
            &Default::default(),
            smtpy_core::store::PageRequest::first(10),
        )
        .await
        .expect("list")
        .items;
    assert_eq!(all.len(), 2);
    let generated = all
        .iter()
        .find(|a| a.note.as_deref() == Some("random"))
        .expect("generated");
    assert_eq!(generated.address.domain().as_ascii(), "ann.test");
    assert_eq!(generated.address.local_part().as_str().len(), 12);
    r.assert_contains(&generated.address.to_string());
}

#[tokio::test]
async fn creation_errors_show_the_apis_message_next_to_the_form() {
    let w = world().await;
    api_alias(&w.ann, json!({"address": "taken@ann.test"})).await;
    w.web.get("/app/aliases").await;

    let r = w
        .web
        .post(
            "/app/aliases",
            &[("address", "taken@ann.test"), ("note", "again")],
        )
        .await;
    assert_eq!(r.status, 409);
    r.assert_contains("Conflict: alias already exists");
    // The form keeps what was typed.
    r.assert_contains("value=\"taken@ann.test\"");
    r.assert_contains("value=\"again\"");

    // An unverified domain: the API's field message beside the input.
    let r = w
        .web
        .post("/app/aliases", &[("address", "x@pending.test")])
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("not one of your verified domains or a shared domain");
    r.assert_contains("<p class=\"field-error\">");
    assert!(find(&w.app, "x@pending.test").await.is_none());

    // Someone else's domain looks the same.
    let r = w
        .web
        .post(
            "/app/aliases",
            &[("generator", "words"), ("domain", "bob.test")],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("not one of your verified domains or a shared domain");
}

// ---------------------------------------------------------------------------
// The list

#[tokio::test]
async fn search_and_filters_narrow_the_rows() {
    let w = world().await;
    api_alias(&w.ann, json!({"address": "shop@ann.test", "note": "shoes"})).await;
    api_alias(
        &w.ann,
        json!({"address": "bank@ann.test", "mode": "forward"}),
    )
    .await;
    let news = api_alias(
        &w.ann,
        json!({"address": "news@ann.test", "category": "lists"}),
    )
    .await;
    w.ann
        .patch(
            &format!("/api/v1/aliases/{}", news["id"].as_str().expect("id")),
            json!({"enabled": false}),
        )
        .await
        .expect(200);
    // Bob's aliases never show.
    api_alias(&w.bob, json!({"address": "shop@bob.test"})).await;

    let all = w.web.get("/app/aliases").await;
    assert_eq!(all.status, 200);
    assert_eq!(
        addresses(&all),
        vec!["shop@ann.test", "bank@ann.test", "news@ann.test"]
    );
    all.assert_contains("data-copy=\"shop@ann.test\"");
    all.assert_contains("action=\"/app/aliases/bulk\"");
    all.assert_contains("data-select-all=\"ids\"");

    let q = w.web.get("/app/aliases?q=sho").await;
    assert_eq!(addresses(&q), vec!["shop@ann.test"]);
    q.assert_contains("value=\"sho\"");

    let disabled = w.web.get("/app/aliases?enabled=false").await;
    assert_eq!(addresses(&disabled), vec!["news@ann.test"]);
    disabled.assert_contains("<span data-state-text>disabled</span>");

    let fwd = w.web.get("/app/aliases?mode=forward").await;
    assert_eq!(addresses(&fwd), vec!["bank@ann.test"]);
    let cat = w.web.get("/app/aliases?category=lists&q=").await;
    assert_eq!(addresses(&cat), vec!["news@ann.test"]);
    let mb = w
        .web
        .get(&format!("/app/aliases?mailbox={}", w.mailbox.id))
        .await;
    assert_eq!(addresses(&mb).len(), 3);

    // A bad filter value is the API's message, not a crash.
    let bad = w.web.get("/app/aliases?q=a%01b").await;
    assert_eq!(bad.status, 422);
    bad.assert_contains("q: must not contain control characters");
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let w = world().await;
    for name in ["a1", "a2", "a3"] {
        api_alias(&w.ann, json!({"address": format!("{name}@ann.test")})).await;
    }
    let first = w.web.get("/app/aliases?limit=2").await;
    assert_eq!(addresses(&first), vec!["a1@ann.test", "a2@ann.test"]);
    assert!(!first.html.contains(">First page<"));
    let next = href_before(&first, ">Next page<");
    assert!(next.starts_with("/app/aliases?limit=2&cursor="), "{next}");
    let second = w.web.get(&next).await;
    assert_eq!(second.status, 200);
    assert_eq!(addresses(&second), vec!["a3@ann.test"]);
    assert!(!second.html.contains(">Next page<"));
    assert_eq!(href_before(&second, ">First page<"), "/app/aliases?limit=2");
}

#[tokio::test]
async fn toggle_answers_a_redirect_or_json() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "shop@ann.test"})).await;
    let id = a["id"].as_str().expect("id");
    let list = w.web.get("/app/aliases?q=shop").await;
    list.assert_contains(&format!(
        "<form data-inline method=\"post\" action=\"/app/aliases/{id}/toggle\">"
    ));

    // Without script: a redirect back to the list it came from, with a flash.
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}/toggle"),
            &[("back", "/app/aliases?q=shop")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/app/aliases?q=shop");
    assert!(!stored(&w.app, id).await.enabled);
    let page = w.web.get(r.location()).await;
    page.assert_contains("Disabled shop@ann.test");
    page.assert_contains("<tr data-state=\"disabled\">");

    // With script: JSON for app.js.
    let token = w.web.csrf.lock().expect("csrf").clone().expect("token");
    let r = w
        .web
        .post_raw(
            &format!("/app/aliases/{id}/toggle"),
            &[("_csrf", &token)],
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_str(&r.html).expect("json");
    assert_eq!(body["ok"], true);
    assert_eq!(body["state"], "enabled");
    assert_eq!(body["label"], "Disable");
    assert_eq!(body["pressed"], true);
    assert!(stored(&w.app, id).await.enabled);

    // Bob's alias: the JSON answer is the API's 404; nothing changes.
    let theirs = api_alias(&w.bob, json!({"address": "x@bob.test"})).await;
    let tid = theirs["id"].as_str().expect("id");
    let r = w
        .web
        .post_raw(
            &format!("/app/aliases/{tid}/toggle"),
            &[("_csrf", &token)],
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 404);
    let body: Value = serde_json::from_str(&r.html).expect("json");
    assert_eq!(body["ok"], false);
    assert_eq!(body["message"], "Not found: alias not found");
    assert!(stored(&w.app, tid).await.enabled);
}

#[tokio::test]
async fn bulk_disables_the_checked_aliases() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "a@ann.test"})).await;
    let b = api_alias(&w.ann, json!({"address": "b@ann.test"})).await;
    let c = api_alias(&w.ann, json!({"address": "c@ann.test"})).await;
    let theirs = api_alias(&w.bob, json!({"address": "x@bob.test"})).await;
    w.web.get("/app/aliases").await;
    let (ia, ib, ic, ix) = (
        a["id"].as_str().expect("id"),
        b["id"].as_str().expect("id"),
        c["id"].as_str().expect("id"),
        theirs["id"].as_str().expect("id"),
    );
    let r = w
        .web
        .post(
            "/app/aliases/bulk",
            &[
                ("back", "/app/aliases"),
                ("action", "disable"),
                ("ids", ia),
                ("ids", ib),
                ("ids", ix),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/app/aliases");
    assert!(!stored(&w.app, ia).await.enabled);
    assert!(!stored(&w.app, ib).await.enabled);
    assert!(stored(&w.app, ic).await.enabled);
    assert!(stored(&w.app, ix).await.enabled, "another user's alias");
    let page = w.web.get("/app/aliases").await;
    page.assert_contains("Disabled 2 of 3 selected aliases. 1 not found.");

    // Nothing checked: the API's message as a flash.
    let r = w
        .web
        .submit("/app/aliases/bulk", &[("action", "enable")])
        .await;
    r.assert_contains("must name at least one alias");

    // Move to a mailbox.
    let other = add_mailbox(&w.app, &w.ann.user, "other@inbox.test").await;
    let r = w
        .web
        .submit(
            "/app/aliases/bulk",
            &[
                ("action", "move"),
                ("mailbox", &other.id.to_string()),
                ("ids", ic),
            ],
        )
        .await;
    r.assert_contains("Moved 1 of 1 selected alias.");
    assert_eq!(stored(&w.app, ic).await.mailboxes, vec![other.id]);
}

#[tokio::test]
async fn delete_and_restore() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "gone@ann.test"})).await;
    let id = a["id"].as_str().expect("id");
    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    page.assert_contains(&format!(
        "action=\"/app/aliases/{id}/delete\" data-confirm=\"Delete gone@ann.test?"
    ));
    let r = w.web.post(&format!("/app/aliases/{id}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    assert!(stored(&w.app, id).await.deleted_at.is_some());
    let list = w.web.get(r.location()).await;
    list.assert_contains("Deleted gone@ann.test");
    assert!(addresses(&list).is_empty());

    let trash = w.web.get("/app/aliases?deleted=deleted").await;
    assert_eq!(addresses(&trash), vec!["gone@ann.test"]);
    trash.assert_contains(&format!("action=\"/app/aliases/{id}/restore\""));
    trash.assert_contains(">Restore</button>");
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}/restore"),
            &[("back", "/app/aliases?deleted=deleted")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/app/aliases?deleted=deleted");
    assert!(stored(&w.app, id).await.deleted_at.is_none());
    let trash = w.web.get(r.location()).await;
    trash.assert_contains("Restored gone@ann.test.");
    assert!(addresses(&trash).is_empty());
}

// ---------------------------------------------------------------------------
// The alias page

#[tokio::test]
async fn the_alias_page_edits_the_settings() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "shop@ann.test", "note": "old"})).await;
    let id = a["id"].as_str().expect("id");
    let second = add_mailbox(&w.app, &w.ann.user, "second@inbox.test").await;
    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    assert_eq!(page.status, 200);
    page.assert_contains("<label for=\"edit-expires\">");
    page.assert_contains("type=\"date\"");
    page.assert_contains(&format!("value=\"{}\" checked", w.mailbox.id));
    page.assert_contains(&format!("/app/rules?alias={id}"));

    let (m1, m2) = (w.mailbox.id.to_string(), second.id.to_string());
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}"),
            &[
                ("revision", "0"),
                ("enabled", "on"),
                ("mailboxes", &m1),
                ("mailboxes", &m2),
                ("mode", "forward"),
                ("messages_per_hour", "5"),
                ("expires", "2999-12-31"),
                ("note", "new note"),
                ("category", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let row = stored(&w.app, id).await;
    assert_eq!(row.mode, AliasMode::Forward);
    assert_eq!(row.note.as_deref(), Some("new note"));
    assert_eq!(row.limits.messages_per_hour, Some(5));
    assert_eq!(row.mailboxes, vec![w.mailbox.id, second.id]);
    assert!(row.expires_at.is_some());
    let page = w.web.get(r.location()).await;
    page.assert_contains("Saved the settings of shop@ann.test.");
    page.assert_contains("value=\"2999-12-31\"");
    page.assert_contains("value=\"new note\"");

    // An invalid value: the form again with the API's message and what
    // was typed; nothing stored.
    let rev = row.revision.to_string();
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}"),
            &[
                ("revision", &rev),
                ("enabled", "on"),
                ("mailboxes", &m1),
                ("mode", "forward"),
                ("messages_per_hour", "0"),
                ("note", "typed"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("must be at least 1");
    r.assert_contains("value=\"typed\"");
    assert_eq!(stored(&w.app, id).await.note.as_deref(), Some("new note"));

    // A stale revision is the API's conflict.
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}"),
            &[("revision", "0"), ("mailboxes", &m1), ("mode", "alias")],
        )
        .await;
    assert_eq!(r.status, 409);
    r.assert_contains("revision mismatch");

    // An alias that expired (or got a limit the owner may not set) can
    // still be edited: unchanged fields are not sent again.
    let mut row = stored(&w.app, id).await;
    row.expires_at = Some(smtpy_core::time::Timestamp::from_unix_millis(
        w.app.clock.now().as_unix_millis() - 86_400_000,
    ));
    row.limits.messages_per_hour = Some(100_000);
    let row = w
        .app
        .store
        .update_alias(Access::System, &row)
        .await
        .expect("update");
    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    page.assert_contains("<span class=\"badge error\">expired</span>");
    let marker = "name=\"expires\" type=\"date\" value=\"";
    let at = page.html.find(marker).expect("expiry input") + marker.len();
    let shown = page.html[at..at + 10].to_owned();
    let rev = row.revision.to_string();
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}"),
            &[
                ("revision", &rev),
                ("enabled", "on"),
                ("mailboxes", &m1),
                ("mailboxes", &m2),
                ("mode", "forward"),
                ("messages_per_hour", "100000"),
                ("expires", &shown),
                ("note", "still editable"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let after = stored(&w.app, id).await;
    assert_eq!(after.note.as_deref(), Some("still editable"));
    assert_eq!(after.expires_at, row.expires_at);
    assert_eq!(after.limits.messages_per_hour, Some(100_000));
}

#[tokio::test]
async fn writing_to_a_new_contact_shows_the_reverse_address() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "shop@ann.test"})).await;
    let id = a["id"].as_str().expect("id");
    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    page.assert_contains("Write to a new address from this alias");

    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}/contacts"),
            &[("address", "friend@example.org")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let alias_id: AliasId = id.parse().expect("id");
    let contact = w
        .app
        .store
        .find_contact(
            alias_id,
            &EmailAddress::parse("friend@example.org").expect("addr"),
        )
        .await
        .expect("find")
        .expect("contact stored");
    assert!(
        r.location()
            .starts_with(&format!("/app/aliases/{id}?contact={}", contact.id))
    );
    let page = w.web.get(r.location()).await;
    assert_eq!(page.status, 200);
    page.assert_contains("send your mail to");
    page.assert_contains("it leaves as shop@ann.test");
    page.assert_contains("<span id=\"new-reverse\" class=\"mono\">r--");
    page.assert_contains("@ann.test</span>");
    page.assert_contains("data-copy-target=\"new-reverse\"");

    // Block it, then delete it.
    let r = w
        .web
        .submit(&format!("/app/contacts/{}/block", contact.id), &[])
        .await;
    r.assert_contains("Blocked friend@example.org");
    let row = w
        .app
        .store
        .get_contact(Access::System, contact.id)
        .await
        .expect("contact");
    assert!(row.blocked);
    let r = w
        .web
        .submit(&format!("/app/contacts/{}/delete", contact.id), &[])
        .await;
    r.assert_contains("Deleted the contact friend@example.org");
    assert!(
        w.app
            .store
            .get_contact(Access::System, contact.id)
            .await
            .is_err()
    );

    // An invalid address: the API's message beside the form.
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}/contacts"),
            &[("address", "shop@ann.test")],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("an alias cannot be its own contact");
    r.assert_contains("value=\"shop@ann.test\"");
}

#[tokio::test]
async fn the_alias_page_shows_the_chart_and_the_events() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "shop@ann.test"})).await;
    let id: AliasId = a["id"].as_str().expect("id").parse().expect("id");
    let now = w.app.clock.now();
    w.app
        .store
        .record_usage(&UsageRecord {
            user: w.ann.user.id,
            alias: Some(id),
            at: now,
            messages: 3,
            bytes: 3000,
        })
        .await
        .expect("usage");
    let mut delivered = DeliveryEvent::new(EventKind::Delivered, now)
        .with("reply", "250 2.0.0 OK queued")
        .with("correlation", "corr-delivered-1");
    delivered.owner = Some(w.ann.user.id);
    delivered.alias = Some(id);
    delivered.sender = Some("news@shop.example".into());
    let mut blocked = DeliveryEvent::new(EventKind::Blocked, now)
        .with("reason", "contact blocked")
        .with("correlation", "corr-blocked-2");
    blocked.owner = Some(w.ann.user.id);
    blocked.alias = Some(id);
    blocked.sender = Some("spam@junk.example".into());
    // A rule of Ann's on this alias, and a message it blocked; Bob's rule
    // never shows.
    let rule = w
        .ann
        .post(
            "/api/v1/rules",
            json!({
                "name": "no shop spam",
                "alias_id": id.to_string(),
                "conditions": [{"field": "from", "operator": "is", "value": "@spam.example"}],
                "actions": [{"type": "block", "reply": "reject"}]
            }),
        )
        .await
        .expect(201)
        .clone();
    w.bob
        .post(
            "/api/v1/rules",
            json!({
                "name": "bobs own rule",
                "conditions": [{"field": "from", "operator": "is", "value": "@x.example"}],
                "actions": [{"type": "quarantine"}]
            }),
        )
        .await
        .expect(201);
    let mut by_rule = DeliveryEvent::new(EventKind::Blocked, now).with(
        "reason",
        format!("rule {}", rule["id"].as_str().expect("rule id")),
    );
    by_rule.owner = Some(w.ann.user.id);
    by_rule.alias = Some(id);
    w.app
        .store
        .append_events(&[delivered, blocked, by_rule])
        .await
        .expect("events");

    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    assert_eq!(page.status, 200);
    page.assert_contains("<svg class=\"chart\"");
    page.assert_contains("role=\"img\"");
    page.assert_contains("aria-label=\"Mail per day from ");
    page.assert_contains("3 forwarded or replied, 2 blocked");
    page.assert_contains("<rect class=\"bar-forwarded\"");
    page.assert_contains("<rect class=\"bar-blocked\"");
    page.assert_contains("<summary>Numbers</summary>");
    assert!(!page.html.contains("style="));

    page.assert_contains("Delivered to your mailbox");
    page.assert_contains("server said: 250 2.0.0 OK queued");
    page.assert_contains("corr-delivered-1");
    page.assert_contains("news@shop.example");
    page.assert_contains("Blocked: you blocked this sender");
    page.assert_contains("corr-blocked-2");
    page.assert_contains("Blocked by your rule “no shop spam”");

    // The rules section lists the rule, with the way to the rules editor.
    page.assert_contains("<td>no shop spam</td>");
    assert!(!page.html.contains("bobs own rule"));
    page.assert_contains(&format!("href=\"/app/rules?alias={id}\""));
}

#[tokio::test]
async fn another_accounts_alias_is_a_404_page() {
    let w = world().await;
    let theirs = api_alias(&w.bob, json!({"address": "x@bob.test"})).await;
    let id = theirs["id"].as_str().expect("id");
    let page = w.web.get(&format!("/app/aliases/{id}")).await;
    assert_eq!(page.status, 404);
    page.assert_contains("alias not found");
    // Inside the signed-in layout.
    page.assert_contains("ann@users.test");
    assert_eq!(w.web.get("/app/aliases/not-an-id").await.status, 404);

    // Changes are refused the same way, and nothing changes.
    w.web.get("/app/aliases").await;
    let r = w
        .web
        .post(&format!("/app/aliases/{id}"), &[("note", "mine now")])
        .await;
    assert_eq!(r.status, 404);
    let r = w.web.post(&format!("/app/aliases/{id}/delete"), &[]).await;
    assert_eq!(r.status, 404);
    let r = w
        .web
        .post(
            &format!("/app/aliases/{id}/contacts"),
            &[("address", "a@example.org")],
        )
        .await;
    assert_eq!(r.status, 404);
    let row = stored(&w.app, id).await;
    assert!(row.note.is_none() && row.deleted_at.is_none());

    // Bob's contacts too.
    let contact = w
        .bob
        .post(
            &format!("/api/v1/aliases/{id}/contacts"),
            json!({"address": "friend@example.org"}),
        )
        .await
        .expect(201)
        .clone();
    let cid = contact["id"].as_str().expect("contact id");
    for action in ["block", "delete"] {
        let r = w
            .web
            .post(&format!("/app/contacts/{cid}/{action}"), &[])
            .await;
        assert_eq!(r.status, 404, "{action}");
    }
    let row = w
        .app
        .store
        .get_contact(Access::System, cid.parse().expect("id"))
        .await
        .expect("still there");
    assert!(!row.blocked);
}

#[tokio::test]
async fn a_post_without_the_token_is_refused() {
    let w = world().await;
    let a = api_alias(&w.ann, json!({"address": "shop@ann.test"})).await;
    let id = a["id"].as_str().expect("id");
    let r = w
        .web
        .post_raw("/app/aliases", &[("address", "new@ann.test")], &[])
        .await;
    assert_eq!(r.status, 403);
    assert!(find(&w.app, "new@ann.test").await.is_none());
    let r = w
        .web
        .post_raw(&format!("/app/aliases/{id}/toggle"), &[], &[])
        .await;
    assert_eq!(r.status, 403);
    assert!(stored(&w.app, id).await.enabled);
}
