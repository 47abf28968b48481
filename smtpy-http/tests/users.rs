//! Admin endpoints over real HTTP: users and invitations, authorization
//! negatives, registration with invitations.

mod common;

use std::time::Duration;

use common::{PASSWORD, TestApp};
use serde_json::{Value, json};
use smtpy_core::model::{ApiScope, Role, SecretHash, UserStatus};
use smtpy_core::store::{Access, AuditFilter, AuditStore, CredentialStore, PageRequest, UserStore};

async fn actions(app: &TestApp) -> Vec<String> {
    app.store
        .list_audit(
            Access::System,
            &AuditFilter::default(),
            PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

async fn register(app: &TestApp, email: &str, invitation: Option<&str>) -> common::Resp {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(t) = invitation {
        body["invitation"] = Value::from(t);
    }
    app.browser().post("/api/v1/auth/register", body).await
}

#[tokio::test]
async fn non_admins_get_403_on_every_admin_endpoint() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let alice = app.user("alice@example.test").await;
    // An admin whose key lacks the admin scope is refused too.
    let narrow = app
        .account(
            "narrow@example.test",
            Role::Admin,
            &[ApiScope::AccountRead, ApiScope::AccountWrite],
        )
        .await;
    let inv = root
        .post("/api/v1/invitations", json!({"role": "user"}))
        .await
        .expect(201)
        .clone();
    let uid = root.user.id.to_string();
    let iid = inv["id"].as_str().expect("id").to_owned();
    for who in [&alice, &narrow] {
        for r in [
            who.get("/api/v1/users").await,
            who.post(
                "/api/v1/users",
                json!({"email": "new@example.test", "role": "admin"}),
            )
            .await,
            who.get(&format!("/api/v1/users/{uid}")).await,
            who.patch(
                &format!("/api/v1/users/{uid}"),
                json!({"status": "disabled"}),
            )
            .await,
            who.delete(&format!("/api/v1/users/{uid}")).await,
            who.post("/api/v1/invitations", json!({"role": "admin"}))
                .await,
            who.get("/api/v1/invitations").await,
            who.delete(&format!("/api/v1/invitations/{iid}")).await,
        ] {
            r.assert_problem(403, "forbidden");
        }
    }
    // Nothing happened.
    let root_row = app.store.get_user(root.user.id).await.expect("root");
    assert_eq!(root_row.status, UserStatus::Active);
    assert!(
        app.store
            .find_user_by_email(&"new@example.test".parse().expect("addr"))
            .await
            .expect("find")
            .is_none()
    );
    assert_eq!(
        app.store
            .list_invitations(PageRequest::default())
            .await
            .expect("inv")
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn admin_creates_lists_reads_updates_and_deletes_users() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    // With a password: the user can log in.
    let r = root
        .post(
            "/api/v1/users",
            json!({"email": "carol@example.test", "password": PASSWORD, "role": "user"}),
        )
        .await;
    let carol = r.expect(201).clone();
    assert_eq!(carol["role"], "user");
    assert_eq!(carol["has_password"], true);
    assert!(!r.text.contains("argon2"));
    app.browser()
        .post(
            "/api/v1/auth/login",
            json!({"email": "carol@example.test", "password": PASSWORD}),
        )
        .await
        .expect(200);
    // Without a password: a reset mail goes out.
    let dave = root
        .post(
            "/api/v1/users",
            json!({"email": "dave@example.test", "role": "admin"}),
        )
        .await
        .expect(201)
        .clone();
    assert_eq!(dave["role"], "admin");
    assert_eq!(dave["has_password"], false);
    assert!(
        app.outbox
            .last_var("dave@example.test", "reset_code")
            .is_some()
    );
    // Duplicate address.
    root.post(
        "/api/v1/users",
        json!({"email": "Carol@example.test", "role": "user"}),
    )
    .await
    .assert_problem(409, "conflict");
    // Validation.
    root.post("/api/v1/users", json!({"email": "nope", "role": "user"}))
        .await
        .assert_problem(422, "validation");
    root.post(
        "/api/v1/users",
        json!({"email": "e@example.test", "password": "short", "role": "user"}),
    )
    .await
    .assert_problem(422, "validation");
    root.post(
        "/api/v1/users",
        json!({"email": "e@example.test", "role": "superuser"}),
    )
    .await
    .assert_problem(422, "validation");

    // List and read.
    let list = root.get("/api/v1/users?limit=2").await;
    assert_eq!(
        list.expect(200)["items"].as_array().expect("items").len(),
        2
    );
    assert!(list.body["next_cursor"].is_string());
    let cid = carol["id"].as_str().expect("id");
    assert_eq!(
        root.get(&format!("/api/v1/users/{cid}")).await.expect(200)["email"],
        "carol@example.test"
    );
    root.get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "not-found");

    // Quotas set and reset; role change.
    let p = root
        .patch(
            &format!("/api/v1/users/{cid}"),
            json!({"forwards_per_day": 50, "aliases_per_hour": 3, "role": "admin"}),
        )
        .await;
    let body = p.expect(200);
    assert_eq!(body["settings"]["forwards_per_day"], 50);
    assert_eq!(body["settings"]["aliases_per_hour"], 3);
    assert_eq!(body["role"], "admin");
    let p = root
        .patch(
            &format!("/api/v1/users/{cid}"),
            json!({"forwards_per_day": null}),
        )
        .await;
    assert!(p.expect(200)["settings"]["forwards_per_day"].is_null());
    assert_eq!(p.body["settings"]["aliases_per_hour"], 3);
    let row = app
        .store
        .get_user(smtpy_core::ids::UserId::from_uuid(
            cid.parse().expect("uuid"),
        ))
        .await
        .expect("row");
    assert_eq!(row.settings.forwards_per_day, None);
    assert_eq!(row.settings.aliases_per_hour, Some(3));
    assert_eq!(row.role, Role::Admin);
    root.patch(&format!("/api/v1/users/{cid}"), json!({"subject_tag": "x"}))
        .await
        .assert_problem(422, "validation");

    // Delete.
    let r = root.delete(&format!("/api/v1/users/{cid}")).await;
    assert_eq!(r.status, 204);
    assert!(app.store.get_user(row.id).await.is_err());
    root.delete(&format!("/api/v1/users/{cid}"))
        .await
        .assert_problem(404, "not-found");

    let log = actions(&app).await;
    for a in ["user.create", "user.update", "user.delete"] {
        assert!(log.contains(&a.to_owned()), "{a} in {log:?}");
    }
}

#[tokio::test]
async fn disabling_a_user_locks_them_out() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let alice = app.user("alice@example.test").await;
    let b = app.browser();
    b.post(
        "/api/v1/auth/login",
        json!({"email": "alice@example.test", "password": PASSWORD}),
    )
    .await
    .expect(200);
    let id = alice.user.id;
    let r = root
        .patch(
            &format!("/api/v1/users/{id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.expect(200)["status"], "disabled");
    alice
        .get("/api/v1/me")
        .await
        .assert_problem(403, "forbidden");
    b.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    assert!(app.store.list_sessions(id).await.expect("s").is_empty());
    root.patch(&format!("/api/v1/users/{id}"), json!({"status": "active"}))
        .await
        .expect(200);
    alice.get("/api/v1/me").await.expect(200);
}

#[tokio::test]
async fn admins_cannot_delete_demote_or_disable_themselves() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let id = root.user.id;
    root.delete(&format!("/api/v1/users/{id}"))
        .await
        .assert_problem(409, "conflict");
    root.patch(&format!("/api/v1/users/{id}"), json!({"role": "user"}))
        .await
        .assert_problem(409, "conflict");
    root.patch(
        &format!("/api/v1/users/{id}"),
        json!({"status": "disabled"}),
    )
    .await
    .assert_problem(409, "conflict");
    let row = app.store.get_user(id).await.expect("row");
    assert_eq!((row.role, row.status), (Role::Admin, UserStatus::Active));
}

#[tokio::test]
async fn invitations_are_single_use_expiring_and_give_the_role() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let r = root
        .post("/api/v1/invitations", json!({"role": "admin"}))
        .await;
    let inv = r.expect(201).clone();
    let token = inv["token"].as_str().expect("token").to_owned();
    assert!(token.len() >= 43);
    assert_eq!(inv["role"], "admin");
    assert!(inv["used_at"].is_null());
    // Only the hash is stored.
    let stored = app
        .store
        .find_invitation(&SecretHash::of(token.as_bytes()))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(stored.id.to_string(), inv["id"]);
    // The list never shows the token.
    let list = root.get("/api/v1/invitations").await;
    assert_eq!(
        list.expect(200)["items"].as_array().expect("items").len(),
        1
    );
    assert!(!list.text.contains(&token));

    // First use: an admin account.
    let user = register(&app, "newbie@example.test", Some(&token)).await;
    assert_eq!(user.expect(201)["role"], "admin");
    // Second use: refused.
    register(&app, "other@example.test", Some(&token))
        .await
        .assert_problem(400, "bad-request");
    assert!(
        app.store
            .find_user_by_email(&"other@example.test".parse().expect("addr"))
            .await
            .expect("find")
            .is_none()
    );
    let list = root.get("/api/v1/invitations").await;
    assert!(list.body["items"][0]["used_at"].is_i64());
    assert_eq!(list.body["items"][0]["used_by"], user.body["id"]);

    // Expiry.
    let late = root
        .post("/api/v1/invitations", json!({}))
        .await
        .expect(201)
        .clone();
    app.clock.advance(Duration::from_secs(7 * 86_400 + 1));
    register(&app, "late@example.test", late["token"].as_str())
        .await
        .assert_problem(400, "bad-request");

    // Bound to an address.
    let bound = root
        .post(
            "/api/v1/invitations",
            json!({"email": "Bound@Example.test", "role": "user"}),
        )
        .await
        .expect(201)
        .clone();
    register(&app, "someone@example.test", bound["token"].as_str())
        .await
        .assert_problem(403, "forbidden");
    register(&app, "bound@example.test", bound["token"].as_str())
        .await
        .expect(201);

    // Deleted invitations cannot be used.
    let gone = root
        .post("/api/v1/invitations", json!({}))
        .await
        .expect(201)
        .clone();
    let gid = gone["id"].as_str().expect("id");
    assert_eq!(
        root.delete(&format!("/api/v1/invitations/{gid}"))
            .await
            .status,
        204
    );
    root.delete(&format!("/api/v1/invitations/{gid}"))
        .await
        .assert_problem(404, "not-found");
    register(&app, "gone@example.test", gone["token"].as_str())
        .await
        .assert_problem(400, "bad-request");
    register(&app, "bogus@example.test", Some("not-a-token"))
        .await
        .assert_problem(400, "bad-request");

    let log = actions(&app).await;
    for a in ["invitation.create", "invitation.delete", "user.register"] {
        assert!(log.contains(&a.to_owned()), "{a} in {log:?}");
    }
}

#[tokio::test]
async fn closed_registration_is_403_and_open_registration_works() {
    let app = TestApp::start().await;
    register(&app, "x@example.test", None)
        .await
        .assert_problem(403, "disabled");
    assert_eq!(app.store.count_users().await.expect("count"), 0);

    let mut config = common::test_config();
    config.open_registration = true;
    let app = TestApp::start_with(config, |s| s).await;
    let r = register(&app, "x@example.test", None).await;
    let body = r.expect(201);
    assert_eq!(body["role"], "user");
    assert_eq!(body["status"], "active");
    let row = app
        .store
        .find_user_by_email(&"x@example.test".parse().expect("addr"))
        .await
        .expect("find")
        .expect("row");
    assert!(
        row.password
            .as_ref()
            .is_some_and(|p| p.as_phc().starts_with("$argon2id$"))
    );
    register(&app, "X@example.test", None)
        .await
        .assert_problem(409, "conflict");
    app.browser()
        .post(
            "/api/v1/auth/register",
            json!({"email": "y@example.test", "password": "short"}),
        )
        .await
        .assert_problem(422, "validation");
    app.browser()
        .post(
            "/api/v1/auth/register",
            json!({"email": "y@example.test", "password": "p".repeat(257)}),
        )
        .await
        .assert_problem(422, "validation");
    app.browser()
        .post(
            "/api/v1/auth/register",
            json!({"email": "not an address", "password": PASSWORD}),
        )
        .await
        .assert_problem(422, "validation");
}
