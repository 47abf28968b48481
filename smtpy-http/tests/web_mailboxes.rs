//! The mailbox pages: list with the verification state, add, resend the
//! verification mail, delete, the verification form, and another
//! account's mailbox being a 404 page.
#![cfg(feature = "web")]

mod common;

use common::TestApp;
use common::web::WebClient;
use smtpy_core::ids::MailboxId;
use smtpy_core::store::{Access, MailboxStore};

#[tokio::test]
async fn add_verify_and_delete_a_mailbox() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;

    let list = web.get("/app/mailboxes").await;
    assert_eq!(list.status, 200);
    list.assert_contains("<label for=\"address\">Address</label>");
    list.assert_contains("No mailboxes yet");

    let page = web
        .submit("/app/mailboxes", &[("address", "me@outside.test")])
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains("Mailbox me@outside.test added");
    page.assert_contains("waiting for the link");
    page.assert_contains("Resend verification mail");
    let stored = app.store.list_mailboxes(ann.user.id).await.expect("list");
    assert_eq!(stored.len(), 1);
    let id = stored[0].id;
    assert!(stored[0].verified_at.is_none());
    assert_eq!(app.outbox.count(), 1);

    // Resend: a second mail, the first code no longer works.
    let first = app
        .outbox
        .last_var("me@outside.test", "verification_code")
        .expect("code");
    let page = web
        .submit(&format!("/app/mailboxes/{id}/resend"), &[])
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains("A new verification mail is on its way to me@outside.test");
    assert_eq!(app.outbox.count(), 2);
    let code = app
        .outbox
        .last_var("me@outside.test", "verification_code")
        .expect("code");
    assert_ne!(first, code);

    // The verification form: the field is filled from the fragment.
    let form = web.get("/app/mailboxes/verify").await;
    assert_eq!(form.status, 200);
    form.assert_contains("data-fragment-token");
    form.assert_contains("<label for=\"token\">");
    let bad = web
        .post("/app/mailboxes/verify", &[("token", &first)])
        .await;
    assert_eq!(bad.status, 400);
    bad.assert_contains("unknown or already used verification token");
    let ok = web
        .submit("/app/mailboxes/verify", &[("token", &code)])
        .await;
    assert_eq!(ok.status, 200);
    ok.assert_contains("Mailbox me@outside.test verified");
    ok.assert_contains("badge ok\">verified");
    assert!(!ok.html.contains("Resend verification mail"));
    let m = app.store.get_mailbox(Access::System, id).await.expect("m");
    assert!(m.verified_at.is_some());

    // Delete.
    let page = web
        .submit(&format!("/app/mailboxes/{id}/delete"), &[])
        .await;
    assert_eq!(page.status, 200);
    page.assert_contains("Mailbox deleted.");
    assert!(
        app.store
            .list_mailboxes(ann.user.id)
            .await
            .expect("l")
            .is_empty()
    );
}

#[tokio::test]
async fn a_refused_address_shows_the_form_again_with_the_api_message() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/mailboxes").await;

    let r = web
        .post("/app/mailboxes", &[("address", "not an address")])
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("class=\"field-error\"");
    r.assert_contains("value=\"not an address\"");

    web.submit("/app/mailboxes", &[("address", "me@outside.test")])
        .await;
    let r = web
        .post("/app/mailboxes", &[("address", "me@outside.test")])
        .await;
    assert_eq!(r.status, 409);
    r.assert_contains("you already have this mailbox");
    assert_eq!(
        app.store
            .list_mailboxes(ann.user.id)
            .await
            .expect("l")
            .len(),
        1
    );

    // Resending for a verified mailbox: back to the list with the message.
    let id = app.store.list_mailboxes(ann.user.id).await.expect("l")[0].id;
    let mut m = app.store.get_mailbox(Access::System, id).await.expect("m");
    m.verified_at = Some(m.created_at);
    app.store
        .update_mailbox(Access::System, &m)
        .await
        .expect("verified");
    let r = web
        .submit(&format!("/app/mailboxes/{id}/resend"), &[])
        .await;
    assert_eq!(r.status, 200);
    r.assert_contains("the mailbox is already verified");
}

#[tokio::test]
async fn another_accounts_mailbox_is_a_404_page() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let body = bob
        .post(
            "/api/v1/mailboxes",
            serde_json::json!({"address": "bob@outside.test"}),
        )
        .await;
    let bob_id: MailboxId = body.expect(201)["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");

    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    let list = web.get("/app/mailboxes").await;
    assert!(!list.html.contains("bob@outside.test"));
    for action in ["resend", "delete"] {
        let r = web
            .post(&format!("/app/mailboxes/{bob_id}/{action}"), &[])
            .await;
        assert_eq!(r.status, 404, "{action}");
        r.assert_contains("mailbox not found");
    }
    assert!(
        app.store.get_mailbox(Access::System, bob_id).await.is_ok(),
        "bob's mailbox is still there"
    );
    assert_eq!(app.outbox.count(), 1, "no mail for bob's mailbox");
    // Signed out, the pages send the browser to the sign-in form.
    let anon = WebClient::new(&app);
    assert_eq!(anon.get("/app/mailboxes").await.status, 303);
}
