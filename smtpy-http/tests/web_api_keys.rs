//! The API keys pages: list, create (the token shown once), revoke, and
//! another account's key being a 404 page.
#![cfg(feature = "web")]

mod common;

use common::TestApp;
use common::web::WebClient;
use smtpy_core::model::ApiScope;
use smtpy_core::store::CredentialStore;

/// The token shown in the `.secret` box of a page.
fn secret_of(html: &str) -> String {
    let at = html.find("id=\"token\">").expect("a token box");
    let rest = &html[at + "id=\"token\">".len()..];
    rest.split('<').next().expect("token").to_owned()
}

#[tokio::test]
async fn create_shows_the_token_once_and_the_key_works() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;

    let list = web.get("/app/api-keys").await;
    assert_eq!(list.status, 200);
    list.assert_contains("<label for=\"name\">Name</label>");
    list.assert_contains("value=\"aliases:read\"");
    // Not an admin: no admin scope offered.
    assert!(!list.html.contains("value=\"admin\""));

    let created = web
        .post(
            "/app/api-keys",
            &[
                ("name", "backup script"),
                ("scopes", "aliases:read"),
                ("scopes", "domains:read"),
                ("expires", "2999-01-31"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    created.assert_contains("class=\"secret mono\"");
    created.assert_contains("not be shown again");
    created.assert_contains("data-copy-target=\"token\"");
    let token = secret_of(&created.html);
    assert!(token.len() > 20, "{token}");

    // Stored with the scopes and the expiry (start of that day, UTC).
    let keys = app.store.list_api_keys(ann.user.id).await.expect("keys");
    let key = keys
        .iter()
        .find(|k| k.name == "backup script")
        .expect("the new key");
    assert_eq!(
        key.scopes,
        vec![ApiScope::AliasesRead, ApiScope::DomainsRead]
    );
    assert_eq!(
        key.expires_at.map(|t| t.as_unix_millis()),
        Some(32_474_736_000_000)
    );
    assert!(token.starts_with(&key.prefix));

    // The token works against the API.
    let api = common::Client::new(&app.base, Some(token.clone()), None);
    assert_eq!(api.get("/api/v1/domains").await.status, 200);

    // The list shows the key (name, prefix, scopes) but never the token.
    let list = web.get("/app/api-keys").await;
    list.assert_contains("backup script");
    list.assert_contains(&key.prefix);
    list.assert_contains("aliases:read domains:read");
    list.assert_contains("2999-01-31 00:00 UTC");
    assert!(!list.html.contains(&token), "the token is shown only once");
}

#[tokio::test]
async fn a_refused_key_shows_the_form_again_with_the_api_message() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/api-keys").await;

    // No scope at all.
    let r = web.post("/app/api-keys", &[("name", "nothing")]).await;
    assert_eq!(r.status, 422);
    r.assert_contains("must have at least 1 item");
    r.assert_contains("value=\"nothing\"");

    // An expiry in the past.
    let r = web
        .post(
            "/app/api-keys",
            &[
                ("name", "old"),
                ("scopes", "aliases:read"),
                ("expires", "2001-01-01"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("must be in the future");
    // The ticked scope stays ticked.
    r.assert_contains("value=\"aliases:read\" checked");

    // The admin scope, for a user.
    let r = web
        .post("/app/api-keys", &[("name", "adm"), ("scopes", "admin")])
        .await;
    assert_eq!(r.status, 403);
    r.assert_contains("only admins may create keys with the admin scope");

    let keys = app.store.list_api_keys(ann.user.id).await.expect("keys");
    assert_eq!(keys.len(), 1, "only the test harness's key: {keys:?}");
}

#[tokio::test]
async fn revoke_removes_the_key_and_another_accounts_key_is_a_404() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;

    let ann_key = app.store.list_api_keys(ann.user.id).await.expect("keys")[0].clone();
    let bob_key = app.store.list_api_keys(bob.user.id).await.expect("keys")[0].clone();

    let list = web.get("/app/api-keys").await;
    list.assert_contains(&format!("/app/api-keys/{}/revoke", ann_key.id));
    list.assert_contains("data-confirm=");

    // Bob's key: the 404 page, and it still works.
    let r = web
        .post(&format!("/app/api-keys/{}/revoke", bob_key.id), &[])
        .await;
    assert_eq!(r.status, 404);
    r.assert_contains("API key not found");
    assert_eq!(bob.get("/api/v1/domains").await.status, 200);
    // A malformed id too.
    let r = web.post("/app/api-keys/not-an-id/revoke", &[]).await;
    assert_eq!(r.status, 404);

    let done = web
        .submit(&format!("/app/api-keys/{}/revoke", ann_key.id), &[])
        .await;
    assert_eq!(done.status, 200);
    done.assert_contains("API key revoked");
    assert!(
        app.store
            .list_api_keys(ann.user.id)
            .await
            .expect("keys")
            .is_empty()
    );
    assert_eq!(ann.get("/api/v1/domains").await.status, 401);
}
