//! Conventions every endpoint shares: problem responses, security headers,
//! authentication errors, the OpenAPI document.

mod common;

use common::TestApp;
use serde_json::Value;

#[tokio::test]
async fn unknown_path_is_a_404_problem_with_security_headers() {
    let app = TestApp::start().await;
    let r = app.browser().get("/api/v1/no-such-thing").await;
    r.assert_problem(404, "not-found");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("referrer-policy"), "no-referrer");
    assert!(
        r.header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.header("cache-control"), "no-store");
    assert_eq!(
        r.header("strict-transport-security"),
        "",
        "no HSTS without TLS"
    );
}

#[tokio::test]
async fn hsts_under_tls() {
    let mut config = common::test_config();
    config.tls = true;
    let app = TestApp::start_with(config, |s| s).await;
    let r = app.browser().get("/healthz").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("strict-transport-security")
            .starts_with("max-age=")
    );
}

#[tokio::test]
async fn bad_bearer_is_401_and_no_credentials_is_401() {
    let app = TestApp::start().await;
    let c = common::Client::new(&app.base, Some("smtpy_not-a-key".into()), None);
    c.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
    let c = common::Client::new(&app.base, Some("something else".into()), None);
    c.get("/api/v1/me")
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn openapi_document_is_served_as_3_1() {
    let app = TestApp::start().await;
    let r = app.browser().get("/api/v1/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let doc: &Value = &r.body;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{doc}"
    );
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn healthz_is_ok() {
    let app = TestApp::start().await;
    let r = app.browser().get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "ok\n");
}

#[tokio::test]
async fn a_key_reaches_me_and_the_document_lists_problem_responses() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.test").await;
    let r = alice.get("/api/v1/me").await;
    assert_eq!(r.expect(200)["email"], "alice@example.test");
    let doc = app.browser().get("/api/v1/openapi.json").await.body;
    let me = &doc["paths"]["/api/v1/me"]["get"]["responses"];
    assert!(me["200"].is_object(), "{me}");
    assert_eq!(me["404"]["$ref"], "#/components/responses/Problem");
    assert_eq!(me["429"]["$ref"], "#/components/responses/Problem");
}
