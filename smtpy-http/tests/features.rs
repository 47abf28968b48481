//! Feature flags over real HTTP: `GET/PATCH /api/v1/admin/features`, the
//! flags taking effect (open registration, owner-created contacts), the
//! audit row, authorization and bad bodies; `GET /api/v1/admin/jobs`.

mod common;

use common::TestApp;
use serde_json::json;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::features::{FEATURES_SETTING, FeatureFlags, Features};
use smtpy_core::model::{Domain, Mailbox};
use smtpy_core::store::{
    Access, AuditFilter, AuditStore, ControlStore, DomainStore, JobRun, MailboxStore, PageRequest,
};
use smtpy_core::time::Clock;

const PASSWORD: &str = "correct horse battery staple";

async fn register(app: &TestApp, email: &str) -> common::Resp {
    app.browser()
        .post(
            "/api/v1/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
}

#[tokio::test]
async fn admin_reads_and_switches_flags_and_registration_follows() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let flags = root.get("/api/v1/admin/features").await;
    assert_eq!(
        flags.expect(200),
        &json!({"registration": false, "replies": true, "send_from_alias": true, "auto_create": true})
    );
    register(&app, "early@example.test")
        .await
        .assert_problem(403, "disabled");

    let changed = root
        .patch("/api/v1/admin/features", json!({"registration": true}))
        .await;
    assert_eq!(
        changed.expect(200),
        &json!({"registration": true, "replies": true, "send_from_alias": true, "auto_create": true})
    );
    register(&app, "open@example.test").await.expect(201);

    // Stored for the other instances, with its version.
    let stored = app
        .store
        .get_setting(FEATURES_SETTING)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.version, 1);
    let other = Features::default();
    other.load(&*app.store).await.expect("load");
    assert!(other.get().registration);

    // Audited with what changed.
    let audit = app
        .store
        .list_audit(
            Access::System,
            &AuditFilter {
                action: Some("features.update".into()),
                since: None,
            },
            PageRequest::first(10),
        )
        .await
        .expect("audit");
    assert_eq!(audit.items.len(), 1);
    assert_eq!(
        audit.items[0]
            .details
            .get("registration")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        audit.items[0].details.get("replies"),
        None,
        "unchanged flags are not listed"
    );

    root.patch("/api/v1/admin/features", json!({"registration": false}))
        .await
        .expect(200);
    register(&app, "late@example.test")
        .await
        .assert_problem(403, "disabled");
}

#[tokio::test]
async fn config_open_registration_is_the_initial_value() {
    let mut config = common::test_config();
    config.open_registration = true;
    let app = TestApp::start_with(config, |s| s).await;
    let root = app.admin("root@example.test").await;
    assert_eq!(
        root.get("/api/v1/admin/features").await.expect(200)["registration"],
        true
    );
    register(&app, "open@example.test").await.expect(201);
}

#[tokio::test]
async fn a_flag_changed_in_the_store_reaches_the_api_after_refresh() {
    let features = Features::new(FeatureFlags::default());
    let app = TestApp::start_with(common::test_config(), {
        let f = features.clone();
        move |s| s.with_features(f)
    })
    .await;
    // Another instance wrote the flags.
    Features::default()
        .update(&*app.store, &json!({"registration": true}), app.clock.now())
        .await
        .expect("update");
    register(&app, "a@example.test")
        .await
        .assert_problem(403, "disabled");
    assert!(
        features
            .refresh_if_changed(&*app.store)
            .await
            .expect("refresh")
    );
    register(&app, "b@example.test").await.expect(201);
}

#[tokio::test]
async fn contact_creation_follows_send_from_alias() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let alice = app.user("alice@users.test").await;
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse("alice.test").expect("d"),
        alice.user.id,
        "t".into(),
        now,
    );
    d.verified_at = Some(now);
    app.store.create_domain(&d).await.expect("domain");
    let mut m = Mailbox::new(
        alice.user.id,
        EmailAddress::parse("alice@inbox.test").expect("a"),
        now,
    );
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("mailbox");
    let alias = alice
        .post("/api/v1/aliases", json!({"address": "shop@alice.test"}))
        .await
        .expect(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/api/v1/aliases/{alias}/contacts");

    root.patch("/api/v1/admin/features", json!({"send_from_alias": false}))
        .await
        .expect(200);
    let refused = alice
        .post(&path, json!({"address": "friend@outside.test"}))
        .await;
    refused.assert_problem(403, "disabled");
    assert!(
        refused.body["detail"]
            .as_str()
            .expect("detail")
            .contains("send_from_alias"),
        "{refused:?}"
    );
    let page = alice.get(&path).await;
    assert_eq!(page.expect(200)["items"], json!([]), "nothing created");

    root.patch("/api/v1/admin/features", json!({"send_from_alias": true}))
        .await
        .expect(200);
    alice
        .post(&path, json!({"address": "friend@outside.test"}))
        .await
        .expect(201);
}

#[tokio::test]
async fn non_admins_get_403_and_bad_bodies_400_changing_nothing() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let alice = app.user("alice@example.test").await;
    alice
        .get("/api/v1/admin/features")
        .await
        .assert_problem(403, "forbidden");
    alice
        .patch("/api/v1/admin/features", json!({"registration": true}))
        .await
        .assert_problem(403, "forbidden");
    alice
        .get("/api/v1/admin/jobs")
        .await
        .assert_problem(403, "forbidden");
    for bad in [
        json!({"unknown_flag": true}),
        json!({"replies": "no"}),
        json!({"replies": null}),
        json!([true]),
    ] {
        let r = root.patch("/api/v1/admin/features", bad.clone()).await;
        r.assert_problem(400, "bad-request");
        assert!(
            !r.body["detail"].as_str().unwrap_or("").is_empty(),
            "{bad}: {r:?}"
        );
    }
    let unknown = root
        .patch("/api/v1/admin/features", json!({"unknown_flag": true}))
        .await;
    assert!(
        unknown.body["detail"]
            .as_str()
            .expect("detail")
            .contains("unknown_flag"),
        "names the key: {unknown:?}"
    );
    let raw = root
        .send_raw(
            reqwest::Method::PATCH,
            "/api/v1/admin/features",
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(raw.status.as_u16(), 400, "{raw:?}");
    assert_eq!(
        app.store.get_setting(FEATURES_SETTING).await.expect("get"),
        None,
        "nothing stored"
    );
    assert_eq!(
        root.get("/api/v1/admin/features").await.expect(200)["registration"],
        false
    );
}

#[tokio::test]
async fn jobs_lists_leases_and_last_runs() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    assert_eq!(root.get("/api/v1/admin/jobs").await.expect(200), &json!([]));
    let now = app.clock.now();
    let until = now.saturating_add(std::time::Duration::from_secs(60));
    app.store
        .acquire_job_lease("purge-deleted-aliases", "host-1", now, until)
        .await
        .expect("lease");
    app.store
        .record_job_run(
            "purge-deleted-aliases",
            &JobRun {
                at: now,
                ok: true,
                detail: "purged 2 deleted aliases".into(),
            },
        )
        .await
        .expect("record");
    let jobs = root.get("/api/v1/admin/jobs").await;
    assert_eq!(
        jobs.expect(200),
        &json!([{
            "job": "purge-deleted-aliases",
            "holder": "host-1",
            "lease_until": until.as_unix_millis(),
            "last_run_at": now.as_unix_millis(),
            "last_ok": true,
            "last_detail": "purged 2 deleted aliases",
            "last_success_at": now.as_unix_millis(),
        }])
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_admin_routes() {
    let app = TestApp::start().await;
    let doc = app.browser().get("/api/v1/openapi.json").await;
    let doc = doc.expect(200);
    let features = &doc["paths"]["/api/v1/admin/features"];
    assert!(features["get"].is_object(), "{features}");
    assert!(features["patch"]["requestBody"].is_object(), "{features}");
    assert!(doc["paths"]["/api/v1/admin/jobs"]["get"].is_object());
    assert!(doc["components"]["schemas"]["FeaturesView"].is_object());
}
