//! `/api/v1/rules`: CRUD, reorder, validation with the engine's limits,
//! `explain`, and user A never reaching user B's rules or aliases.

mod common;

use common::fixture;

use common::TestApp;
use serde_json::{Value, json};
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::RuleId;
use smtpy_core::model::{ApiScope, Role, RuleAction, RuleScope};
use smtpy_core::store::{Access, AliasStore, DomainStore, RuleStore};

fn rule_id(v: &Value) -> RuleId {
    v["id"].as_str().expect("id").parse().expect("rule id")
}

#[tokio::test]
async fn rules_crud_reorder_and_scoping() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let fx = fixture(&app, &a, "a.example").await;

    // A user-wide rule with a condition and an alias-scoped one.
    let r1 = a
        .post(
            "/api/v1/rules",
            json!({
                "name": "no shop spam",
                "conditions": [{"field": "from", "operator": "is", "value": "@spam.example"}],
                "actions": [{"type": "block", "reply": "reject"}]
            }),
        )
        .await;
    let r1 = r1.expect(201).clone();
    assert_eq!(r1["scope"], "user");
    assert_eq!(r1["priority"], 0);
    assert_eq!(r1["actions"][0]["type"], "block");
    let r2 = a
        .post(
            "/api/v1/rules",
            json!({
                "name": "tag news",
                "alias_id": fx.alias.id.to_string(),
                "match_mode": "any",
                "conditions": [
                    {"field": "header", "header": "List-Id", "operator": "contains", "value": "news"},
                    {"field": "subject", "operator": "matches_regex", "value": "^(sale|offer)"}
                ],
                "actions": [
                    {"type": "prefix_subject", "prefix": "[news]"},
                    {"type": "forward_to", "mailboxes": [fx.mailbox.id.to_string()]}
                ]
            }),
        )
        .await;
    let r2 = r2.expect(201).clone();
    assert_eq!(r2["scope"], "alias");
    assert_eq!(r2["alias_id"], fx.alias.id.to_string());
    assert_eq!(r2["priority"], 1, "appended after the existing rules");
    let (id1, id2) = (rule_id(&r1), rule_id(&r2));
    let stored = app
        .store
        .get_rule(Access::System, id2)
        .await
        .expect("stored rule");
    assert_eq!(stored.scope, RuleScope::Alias(fx.alias.id));
    assert_eq!(
        stored.actions[1],
        RuleAction::ForwardTo(vec![fx.mailbox.id])
    );

    // List and read.
    let list = a.get("/api/v1/rules").await;
    let names: Vec<&str> = list
        .expect(200)
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["no shop spam", "tag news"]);
    let got = a.get(&format!("/api/v1/rules/{id2}")).await;
    assert_eq!(got.expect(200)["conditions"][0]["header"], "List-Id");

    // Update.
    let patched = a
        .patch(
            &format!("/api/v1/rules/{id1}"),
            json!({"name": "renamed", "enabled": false, "revision": r1["revision"]}),
        )
        .await;
    assert_eq!(patched.expect(200)["name"], "renamed");
    let stored = app.store.get_rule(Access::System, id1).await.expect("rule");
    assert_eq!(stored.name, "renamed");
    assert!(!stored.enabled);
    // A stale revision is a conflict.
    a.patch(
        &format!("/api/v1/rules/{id1}"),
        json!({"name": "again", "revision": 0}),
    )
    .await
    .assert_problem(409, "conflict");

    // Reorder: the full list, reversed.
    let re = a
        .post(
            "/api/v1/rules/reorder",
            json!({"ids": [id2.to_string(), id1.to_string()]}),
        )
        .await;
    assert_eq!(re.expect(200)[0]["id"], id2.to_string());
    let rules = app.store.list_rules(a.user.id).await.expect("rules");
    assert_eq!(rules.iter().map(|r| r.id).collect::<Vec<_>>(), [id2, id1]);
    assert_eq!((rules[0].priority, rules[1].priority), (0, 1));
    // A partial list is refused.
    a.post("/api/v1/rules/reorder", json!({"ids": [id1.to_string()]}))
        .await
        .assert_problem(422, "validation");

    // User B: 404 on A's rule, alias and mailbox; cannot reorder A's rules.
    let b = app.user("b@users.test").await;
    b.get(&format!("/api/v1/rules/{id1}"))
        .await
        .assert_problem(404, "not-found");
    b.patch(&format!("/api/v1/rules/{id1}"), json!({"name": "mine"}))
        .await
        .assert_problem(404, "not-found");
    b.delete(&format!("/api/v1/rules/{id1}"))
        .await
        .assert_problem(404, "not-found");
    b.post(
        "/api/v1/rules",
        json!({"name": "x", "alias_id": fx.alias.id.to_string(), "actions": [{"type": "stop"}]}),
    )
    .await
    .assert_problem(404, "not-found");
    b.post(
        "/api/v1/rules",
        json!({"name": "x", "domain_id": fx.domain.id.to_string(), "actions": [{"type": "stop"}]}),
    )
    .await
    .assert_problem(404, "not-found");
    b.post(
        "/api/v1/rules",
        json!({"name": "x", "actions": [{"type": "forward_to", "mailboxes": [fx.mailbox.id.to_string()]}]}),
    )
    .await
    .assert_problem(404, "not-found");
    b.post(
        "/api/v1/rules/reorder",
        json!({"ids": [id2.to_string(), id1.to_string()]}),
    )
    .await
    .assert_problem(422, "validation");
    let listed = b.get("/api/v1/rules").await;
    assert_eq!(listed.expect(200), &json!([]));
    assert_eq!(
        app.store.list_rules(b.user.id).await.expect("rules").len(),
        0
    );
    assert_eq!(
        app.store
            .get_rule(Access::System, id1)
            .await
            .expect("kept")
            .name,
        "renamed"
    );

    // Delete.
    assert_eq!(a.delete(&format!("/api/v1/rules/{id1}")).await.status, 204);
    assert!(app.store.get_rule(Access::System, id1).await.is_err());
    a.get(&format!("/api/v1/rules/{id1}"))
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test]
async fn rules_are_validated_with_the_engine_limits() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let bad = |conditions: Value| json!({"name": "bad", "conditions": conditions, "actions": [{"type": "stop"}]});
    let r = a
        .post(
            "/api/v1/rules",
            bad(json!([{"field": "subject", "operator": "matches_regex", "value": "(unclosed"}])),
        )
        .await;
    r.assert_problem(422, "validation");
    assert!(
        r.body["detail"]
            .as_str()
            .expect("detail")
            .contains("invalid regular expression"),
        "{r:?}"
    );
    let long_regex = "a".repeat(513);
    a.post(
        "/api/v1/rules",
        bad(json!([{"field": "subject", "operator": "matches_regex", "value": long_regex}])),
    )
    .await
    .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules",
        bad(json!([{"field": "size", "operator": "contains", "value": "1"}])),
    )
    .await
    .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules",
        bad(json!([{"field": "from", "operator": "is", "value": "x".repeat(999)}])),
    )
    .await
    .assert_problem(422, "validation");
    let many: Vec<Value> = (0..33)
        .map(|_| json!({"field": "subject", "operator": "is", "value": "x"}))
        .collect();
    a.post("/api/v1/rules", bad(json!(many)))
        .await
        .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules",
        json!({"name": "inject", "actions": [{"type": "add_header", "name": "X-Tag", "value": "a\r\nBcc: x@evil.test"}]}),
    )
    .await
    .assert_problem(422, "validation");
    a.post("/api/v1/rules", json!({"name": "none", "actions": []}))
        .await
        .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules",
        json!({"name": "x", "actions": [{"type": "stop"}], "surprise": 1}),
    )
    .await
    .assert_problem(422, "validation");
    assert!(
        app.store
            .list_rules(a.user.id)
            .await
            .expect("rules")
            .is_empty()
    );

    // Updates are validated the same way.
    let ok = a
        .post(
            "/api/v1/rules",
            json!({"name": "ok", "actions": [{"type": "stop"}]}),
        )
        .await;
    let id = rule_id(ok.expect(201));
    a.patch(
        &format!("/api/v1/rules/{id}"),
        json!({"conditions": [{"field": "subject", "operator": "matches_regex", "value": "["}]}),
    )
    .await
    .assert_problem(422, "validation");
    let stored = app.store.get_rule(Access::System, id).await.expect("rule");
    assert!(
        stored.conditions.is_empty(),
        "unchanged after a refused update"
    );

    // Scopes: a read-only key cannot write.
    let reader = app
        .account("reader@users.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    reader
        .post(
            "/api/v1/rules",
            json!({"name": "x", "actions": [{"type": "stop"}]}),
        )
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(reader.get("/api/v1/rules").await.status, 200);
}

#[tokio::test]
async fn explain_reports_the_block_and_rewrites_without_side_effects() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let fx = fixture(&app, &a, "a.example").await;
    let block = a
        .post(
            "/api/v1/rules",
            json!({
                "name": "no spam",
                "conditions": [{"field": "from", "operator": "is", "value": "@spam.example"}],
                "actions": [{"type": "block", "reply": "reject"}]
            }),
        )
        .await;
    let block_id = block.expect(201)["id"].clone();
    let tag = a
        .post(
            "/api/v1/rules",
            json!({
                "name": "tag offers",
                "conditions": [{"field": "subject", "operator": "contains", "value": "offer"}],
                "actions": [{"type": "prefix_subject", "prefix": "[sale]"},
                            {"type": "add_header", "name": "X-Tag", "value": "sale"}]
            }),
        )
        .await;
    let tag_id = tag.expect(201)["id"].clone();

    // A blocked sender: refused at RCPT with 550 5.7.1 by the blocking rule.
    let r = a
        .post(
            "/api/v1/rules/explain",
            json!({"alias": "shop@a.example", "mail_from": "x@mx.spam.example",
                   "headers": {"Subject": "hello"}}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["reply"]["code"], 550);
    assert_eq!(body["reply"]["enhanced"], "5.7.1");
    assert_eq!(body["stage"], "rcpt");
    assert_eq!(body["deciding_rule"], block_id);
    assert_eq!(body["alias_id"], fx.alias.id.to_string());

    // A friend's offer: accepted, tagged, forwarded to the mailbox.
    let r = a
        .post(
            "/api/v1/rules/explain",
            json!({"alias": "shop@a.example", "mail_from": "ann@friends.example",
                   "headers": "From: Ann <ann@friends.example>\r\nSubject: An OFFER\r\n"}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["reply"]["code"], 250);
    assert_eq!(body["stage"], "data");
    assert_eq!(body["matched_rules"], json!([tag_id]));
    assert_eq!(body["mailboxes"], json!([fx.mailbox.id.to_string()]));
    assert_eq!(
        body["rewritten_headers"],
        json!([{"name": "Subject", "value": "[sale] An OFFER"}, {"name": "X-Tag", "value": "sale"}])
    );
    // Nothing moved.
    let alias = app
        .store
        .get_alias(Access::System, fx.alias.id)
        .await
        .expect("alias");
    assert_eq!(alias.counters, fx.alias.counters);

    // Bad input.
    a.post("/api/v1/rules/explain", json!({"alias": "not an address"}))
        .await
        .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules/explain",
        json!({"alias": "shop@a.example", "headers": {"Bad:Name": "x"}}),
    )
    .await
    .assert_problem(422, "validation");
    a.post(
        "/api/v1/rules/explain",
        json!({"alias": "shop@a.example", "headers": "x".repeat(64 * 1024 + 1)}),
    )
    .await
    .assert_problem(422, "validation");

    // B may not explain A's alias, nor an address on A's domain.
    let b = app.user("b@users.test").await;
    b.post(
        "/api/v1/rules/explain",
        json!({"alias": "shop@a.example", "mail_from": "x@mx.spam.example"}),
    )
    .await
    .assert_problem(404, "not-found");
    b.post("/api/v1/rules/explain", json!({"alias": "other@a.example"}))
        .await
        .assert_problem(404, "not-found");
    b.post(
        "/api/v1/rules/explain",
        json!({"alias": "x@nowhere.example"}),
    )
    .await
    .assert_problem(404, "not-found");
}

#[tokio::test]
async fn explain_on_a_catch_all_creates_no_alias() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let fx = fixture(&app, &a, "catch.example").await;
    let mut domain = fx.domain.clone();
    domain.catch_all.enabled = true;
    domain.default_mailboxes = vec![fx.mailbox.id];
    app.store
        .update_domain(Access::System, &domain)
        .await
        .expect("catch-all on");

    let r = a
        .post(
            "/api/v1/rules/explain",
            json!({"alias": "anything@catch.example", "mail_from": "ann@friends.example",
                   "headers": {"Subject": "hi"}}),
        )
        .await;
    let body = r.expect(200);
    assert_eq!(body["would_create_alias"], true);
    assert_eq!(body["alias_address"], "anything@catch.example");
    assert!(body.get("alias_id").is_none());
    assert_eq!(body["reply"]["code"], 250);
    let address = EmailAddress::parse("anything@catch.example").expect("address");
    assert!(
        app.store
            .find_alias_by_address(&address)
            .await
            .expect("lookup")
            .is_none(),
        "explain must not create the alias"
    );
}

#[tokio::test]
async fn the_regex_budget_of_all_rules_is_enforced() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let regex_rule = |n: usize| {
        let conditions: Vec<Value> = (0..n)
            .map(|i| json!({"field": "subject", "operator": "matches_regex", "value": format!("^w{i}")}))
            .collect();
        json!({"name": "regexes", "match_mode": "any", "conditions": conditions,
               "actions": [{"type": "stop"}]})
    };
    // 32 + 32 = 64: the engine's limit, accepted.
    a.post("/api/v1/rules", regex_rule(32)).await.expect(201);
    let second = a.post("/api/v1/rules", regex_rule(32)).await;
    let second_id = rule_id(second.expect(201));
    // One more would be skipped by the engine: refused.
    let r = a.post("/api/v1/rules", regex_rule(1)).await;
    r.assert_problem(422, "validation");
    assert!(r.body["detail"].as_str().expect("detail").contains("64"));
    assert_eq!(
        app.store.list_rules(a.user.id).await.expect("rules").len(),
        2
    );
    // Disabling one frees its budget.
    a.patch(
        &format!("/api/v1/rules/{second_id}"),
        json!({"enabled": false}),
    )
    .await
    .expect(200);
    a.post("/api/v1/rules", regex_rule(1)).await.expect(201);
    // Re-enabling it would go over again.
    a.patch(
        &format!("/api/v1/rules/{second_id}"),
        json!({"enabled": true}),
    )
    .await
    .assert_problem(422, "validation");
    let stored = app
        .store
        .get_rule(Access::System, second_id)
        .await
        .expect("rule");
    assert!(!stored.enabled);
}

#[tokio::test]
async fn the_openapi_document_lists_these_endpoints() {
    let app = TestApp::start().await;
    let doc = app.browser().get("/api/v1/openapi.json").await.body;
    for (path, method) in [
        ("/api/v1/rules", "get"),
        ("/api/v1/rules", "post"),
        ("/api/v1/rules/{id}", "patch"),
        ("/api/v1/rules/{id}", "delete"),
        ("/api/v1/rules/reorder", "post"),
        ("/api/v1/rules/explain", "post"),
        ("/api/v1/stats", "get"),
        ("/api/v1/aliases/{id}/stats", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/aliases/{id}/events", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/admin/audit", "get"),
        ("/api/v1/admin/queue", "get"),
        ("/api/v1/admin/queue/stats", "get"),
        ("/api/v1/admin/queue/{id}", "delete"),
        ("/api/v1/admin/queue/{id}/retry", "post"),
        ("/api/v1/admin/queue/{id}/release", "post"),
        ("/api/v1/quarantine/{id}/release", "post"),
        ("/api/v1/export", "get"),
        ("/api/v1/import", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(op["responses"]["404"].is_object(), "{method} {path}");
    }
}
