//! `/api/v1/audit` (own events) and `/api/v1/admin/audit` (all, admins).

mod common;

use common::TestApp;
use serde_json::{Value, json};
use smtpy_core::model::{ApiScope, Role};

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().expect("items")
}

#[tokio::test]
async fn own_audit_only_and_admin_sees_all() {
    let app = TestApp::start().await;
    let a = app.user("a@users.test").await;
    let b = app.user("b@users.test").await;
    let admin = app.admin("root@users.test").await;
    for (who, name) in [(&a, "a1"), (&a, "a2"), (&b, "b1")] {
        who.post(
            "/api/v1/rules",
            json!({"name": name, "actions": [{"type": "stop"}]}),
        )
        .await
        .expect(201);
    }
    let r = a.get("/api/v1/rules").await;
    let first_rule = r.expect(200)[0]["id"].clone();
    a.delete(&format!(
        "/api/v1/rules/{}",
        first_rule.as_str().expect("id")
    ))
    .await
    .expect(204);

    // A: their own three events, oldest first, nothing of B's.
    let r = a.get("/api/v1/audit").await;
    let own = items(r.expect(200));
    let actions: Vec<&str> = own
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["rule.create", "rule.create", "rule.delete"]);
    assert!(
        own.iter()
            .all(|e| e["owner_id"] == a.user.id.to_string() && e["actor_type"] == "api_key")
    );
    assert_eq!(own[2]["target"], first_rule);

    // Filter by action prefix, and paging.
    let r = a.get("/api/v1/audit?action=rule.del").await;
    assert_eq!(items(r.expect(200)).len(), 1);
    let r = a.get("/api/v1/audit?limit=2").await;
    let page = r.expect(200);
    assert_eq!(items(page).len(), 2);
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let r = a
        .get(&format!("/api/v1/audit?limit=2&cursor={cursor}"))
        .await;
    let rest = items(r.expect(200));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["action"], "rule.delete");

    // B sees only B's.
    let r = b.get("/api/v1/audit").await;
    let theirs = items(r.expect(200));
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["owner_id"], b.user.id.to_string());

    // The admin sees everyone's.
    let r = admin.get("/api/v1/admin/audit?action=rule.").await;
    let all = items(r.expect(200));
    assert_eq!(all.len(), 4);
    let owners: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|e| e["owner_id"].as_str().expect("owner"))
        .collect();
    assert!(owners.contains(a.user.id.to_string().as_str()));
    assert!(owners.contains(b.user.id.to_string().as_str()));

    // Non-admins and keys without the scope are refused.
    a.get("/api/v1/admin/audit")
        .await
        .assert_problem(403, "forbidden");
    let no_account = app
        .account("n@users.test", Role::User, &[ApiScope::AliasesRead])
        .await;
    no_account
        .get("/api/v1/audit")
        .await
        .assert_problem(403, "forbidden");
    // An admin's key without the admin scope is not enough either.
    let weak_admin = app
        .account("w@users.test", Role::Admin, &[ApiScope::AccountRead])
        .await;
    weak_admin
        .get("/api/v1/admin/audit")
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(weak_admin.get("/api/v1/audit").await.status, 200);
}
