//! The web interface's sign-in, sign-out, CSRF guard and page headers,
//! over real HTTP.
#![cfg(feature = "web")]

mod common;

use common::TestApp;
use common::web::WebClient;

#[tokio::test]
async fn sign_in_and_out_through_the_forms() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);

    // Not signed in: a page sends the browser to the sign-in form and back.
    let r = web.get("/app/aliases?q=x").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=/app/aliases%3Fq%3Dx");

    let login = web.get("/login?next=/app/aliases").await;
    assert_eq!(login.status, 200);
    assert!(login.header("set-cookie").starts_with("smtpy_csrf="));
    assert!(login.header("set-cookie").contains("SameSite=Strict"));
    login.assert_contains("<label for=\"email\">Email</label>");

    // A wrong password: the form again, with the API's message, no session.
    let bad = web
        .post(
            "/login",
            &[("email", "ann@example.com"), ("password", "nope")],
        )
        .await;
    assert_eq!(bad.status, 401);
    bad.assert_contains("invalid email or password");
    bad.assert_contains("value=\"ann@example.com\"");

    let ok = web
        .post(
            "/login",
            &[
                ("email", "ann@example.com"),
                ("password", common::PASSWORD),
                ("next", "/app/aliases"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.location(), "/app/aliases");
    assert!(ok.headers.get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .is_ok_and(|c| c.starts_with("smtpy_session=") && c.contains("HttpOnly"))
    }));

    // Signed in, /login goes on to the app.
    let again = web.get("/login").await;
    assert_eq!(again.status, 303);

    // Sign out needs the session's token; then pages need a sign-in again.
    let page = web.get_follow("/app/aliases").await;
    let token = page.csrf().expect("a page of the app carries the token");
    let out = web.post_raw("/logout", &[("_csrf", &token)], &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/login");
    assert_eq!(web.get("/app/aliases").await.status, 303);
}

#[tokio::test]
async fn a_next_parameter_cannot_leave_the_site() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.get("/login").await;
    let r = web
        .post(
            "/login",
            &[
                ("email", "ann@example.com"),
                ("password", common::PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/app/aliases");
}

#[tokio::test]
async fn forms_without_the_right_token_are_refused() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.get("/login").await;

    // No token at all.
    let r = web
        .post_raw(
            "/login",
            &[("email", "ann@example.com"), ("password", common::PASSWORD)],
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    r.assert_contains("Form refused");
    assert!(r.header("set-cookie").is_empty(), "no session: {r:?}");

    // A made-up token.
    let r = web
        .post_raw(
            "/login",
            &[
                ("_csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("email", "ann@example.com"),
                ("password", common::PASSWORD),
            ],
            &[],
        )
        .await;
    assert_eq!(r.status, 403);

    // The right token from another site.
    let token = web.csrf.lock().expect("csrf").clone().expect("token");
    let r = web
        .post_raw(
            "/login",
            &[
                ("_csrf", &token),
                ("email", "ann@example.com"),
                ("password", common::PASSWORD),
            ],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = web
        .post_raw(
            "/login",
            &[
                ("_csrf", &token),
                ("email", "ann@example.com"),
                ("password", common::PASSWORD),
            ],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 403);

    // Signed in: the pre-session token does not do for the session's forms.
    web.sign_in("ann@example.com").await;
    let r = web.post_raw("/logout", &[("_csrf", &token)], &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = web.post_raw("/logout", &[], &[]).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn pages_send_a_strict_policy_and_are_not_stored() {
    let app = TestApp::start().await;
    let web = WebClient::new(&app);
    let login = web.get("/login").await;
    let csp = login.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.header("cache-control"), "no-store");
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert_eq!(login.header("referrer-policy"), "same-origin");
    // No inline script or style in the markup itself.
    assert!(!login.html.contains("<script>"));
    assert!(!login.html.contains("style="));
    assert!(!login.html.contains(" onclick"));

    let css = web.get("/static/app.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
    let js = web.get("/static/app.js").await;
    assert!(js.header("content-type").starts_with("text/javascript"));
    assert!(js.html.contains("data-copy"));

    // An unknown page is an HTML 404 with the same policy; the API's stay JSON.
    let missing = web.get("/app/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-type").starts_with("text/html"));
    assert!(
        missing
            .header("content-security-policy")
            .contains("script-src 'self'")
    );
    let api = reqwest::get(app.url("/api/v1/nothing")).await.expect("GET");
    assert_eq!(
        api.headers()["content-type"].to_str().expect("ct"),
        "application/problem+json"
    );
}

#[tokio::test]
async fn the_interface_can_be_switched_off() {
    let mut config = common::test_config();
    config.web = false;
    let app = TestApp::start_with(config, |s| s).await;
    let web = WebClient::new(&app);
    assert_eq!(web.get("/login").await.status, 404);
    assert_eq!(web.get("/static/app.js").await.status, 404);
    // The API is still there.
    let r = reqwest::get(app.url("/healthz")).await.expect("GET");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hostile_form_bodies_get_clear_errors() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.get("/login").await;
    let token = web.csrf.lock().expect("csrf").clone().expect("token");

    // Larger than the body limit: 413, not a hang or a crash.
    let big = "x".repeat(2 * 1024 * 1024);
    let r = web
        .post_raw("/login", &[("_csrf", &token), ("email", &big)], &[])
        .await;
    assert_eq!(r.status, 413, "{}", r.status);

    // A body that is not a form: refused (no token can be found in it).
    let client = reqwest::Client::new();
    let r = client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body("{\"email\":\"a\"}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);

    // The right token with a malformed field set: a 400 page, no session.
    let r = web
        .post_raw("/login", &[("_csrf", &token), ("email", "only")], &[])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    r.assert_contains("the form could not be read");
    assert!(!r.header("set-cookie").contains("smtpy_session="));
}
