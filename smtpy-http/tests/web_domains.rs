//! The domain pages: list and add, the DNS records with copy buttons, the
//! verification status explained per record, "Check now", the settings,
//! delete, and another account's domain being a 404 page.
#![cfg(feature = "web")]

mod common;

use common::TestApp;
use common::web::WebClient;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Domain, Mailbox};
use smtpy_core::store::{Access, DomainStore, MailboxStore};
use smtpy_core::time::Clock as _;

async fn stored(app: &TestApp, name: &str) -> Option<Domain> {
    app.store
        .find_domain_by_name(&DomainName::parse(name).expect("name"))
        .await
        .expect("lookup")
}

#[tokio::test]
async fn add_a_domain_publish_its_records_and_check_them() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;

    let list = web.get("/app/domains").await;
    assert_eq!(list.status, 200);
    list.assert_contains("<label for=\"name\">Domain name</label>");
    list.assert_contains("No domains yet");

    let add = web.post("/app/domains", &[("name", "Ann.Example")]).await;
    assert_eq!(add.status, 303, "{add:?}");
    let d = stored(&app, "ann.example").await.expect("stored");
    assert_eq!(d.owner, ann.user.id);
    assert!(d.verified_at.is_none());
    assert_eq!(add.location(), format!("/app/domains/{}", d.id));

    let page = web.get_follow(add.location()).await;
    assert_eq!(page.status, 200);
    page.assert_contains("Domain ann.example added");
    // The records, each value with a copy button.
    let verification = format!("smtpy-verification={}", d.verification_token);
    page.assert_contains(&format!("data-copy=\"{verification}\""));
    page.assert_contains("<code>_smtpy-verification.ann.example</code>");
    page.assert_contains("<code>10 mx.smtpy.test</code>");
    page.assert_contains("data-copy=\"mx.smtpy.test\"");
    page.assert_contains("v=spf1 include:mx.smtpy.test ~all");
    page.assert_contains("_dmarc.ann.example");
    page.assert_contains("._domainkey.ann.example");
    // Not checked yet; each record says why it matters.
    page.assert_contains("not verified");
    page.assert_contains("not checked yet");
    page.assert_contains("Proves the domain is yours");
    page.assert_contains("Routes the domain&#39;s mail to this service");
    page.assert_contains(&format!("action=\"/app/domains/{}/verify\"", d.id));

    // Check now with nothing published: not verified, each record explained.
    let checked = web
        .submit(&format!("/app/domains/{}/verify", d.id), &[])
        .await;
    assert_eq!(checked.status, 200);
    checked.assert_contains("Checked: The domain is not verified yet");
    checked.assert_contains("no MX record; publish MX 10 mx.smtpy.test");
    checked.assert_contains("no DMARC record at _dmarc.ann.example");
    checked.assert_contains("the verification TXT record was not found");
    assert!(
        stored(&app, "ann.example")
            .await
            .expect("d")
            .verified_at
            .is_none()
    );

    // Publish the verification record and the MX: verified, MX correct.
    app.dns
        .add_txt("_smtpy-verification.ann.example", &verification);
    app.dns.add_mx("ann.example", 10, "mx.smtpy.test");
    let checked = web
        .submit(&format!("/app/domains/{}/verify", d.id), &[])
        .await;
    assert_eq!(checked.status, 200);
    checked.assert_contains("Checked: The domain is verified.");
    checked.assert_contains("badge ok\">verified</span> since");
    checked.assert_contains("MX points to mx.smtpy.test");
    checked.assert_contains("verification record found: the domain is yours");
    let d = stored(&app, "ann.example").await.expect("d");
    assert!(d.verified_at.is_some());

    let list = web.get("/app/domains").await;
    list.assert_contains(&format!(
        "<a href=\"/app/domains/{}\">ann.example</a>",
        d.id
    ));
    list.assert_contains("badge ok\">verified");
}

#[tokio::test]
async fn a_refused_domain_shows_the_form_again_with_the_api_message() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/domains").await;

    let r = web.post("/app/domains", &[("name", "localhost")]).await;
    assert_eq!(r.status, 422);
    r.assert_contains("must be a registered domain name with at least two labels");
    r.assert_contains("class=\"field-error\"");
    r.assert_contains("value=\"localhost\"");

    // A catch-all without a default mailbox.
    let r = web
        .post(
            "/app/domains",
            &[("name", "ann.example"), ("catch_all", "on")],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("a catch-all needs at least one default mailbox");
    assert!(stored(&app, "ann.example").await.is_none());

    web.post("/app/domains", &[("name", "ann.example")]).await;
    let r = web.post("/app/domains", &[("name", "ann.example")]).await;
    assert_eq!(r.status, 409);
    r.assert_contains("this domain is already hosted");
}

#[tokio::test]
async fn settings_and_delete() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let mut m = Mailbox::new(
        ann.user.id,
        EmailAddress::parse("inbox@outside.test").expect("address"),
        app.clock.now(),
    );
    m.verified_at = Some(app.clock.now());
    app.store.create_mailbox(&m).await.expect("mailbox");
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/domains").await;
    let add = web.post("/app/domains", &[("name", "ann.example")]).await;
    let d = stored(&app, "ann.example").await.expect("d");
    let page = web.get(add.location()).await;
    page.assert_contains(&format!("value=\"{}\"", m.id));
    page.assert_contains("inbox@outside.test");

    // Catch-all without a mailbox: refused with the API's message.
    let r = web
        .post(&format!("/app/domains/{}", d.id), &[("catch_all", "on")])
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("a catch-all needs at least one default mailbox");
    assert!(
        !stored(&app, "ann.example")
            .await
            .expect("d")
            .catch_all
            .enabled
    );

    let m_id = m.id.to_string();
    let saved = web
        .submit(
            &format!("/app/domains/{}", d.id),
            &[("catch_all", "on"), ("default_mailboxes", &m_id)],
        )
        .await;
    assert_eq!(saved.status, 200);
    saved.assert_contains("Settings saved.");
    saved.assert_contains(&format!("value=\"{m_id}\" checked"));
    let after = stored(&app, "ann.example").await.expect("d");
    assert!(after.catch_all.enabled);
    assert_eq!(after.default_mailboxes, vec![m.id]);

    // Delete.
    let del = web
        .submit(&format!("/app/domains/{}/delete", d.id), &[])
        .await;
    assert_eq!(del.status, 200);
    del.assert_contains("Domain deleted.");
    assert!(stored(&app, "ann.example").await.is_none());
    assert!(app.store.get_domain(Access::System, d.id).await.is_err());
}

#[tokio::test]
async fn another_accounts_domain_is_a_404_page() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let body = bob
        .post(
            "/api/v1/domains",
            serde_json::json!({"name": "bob.example"}),
        )
        .await;
    let bob_id = body.expect(201)["domain"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    let list = web.get("/app/domains").await;
    assert!(!list.html.contains("bob.example"));
    let r = web.get(&format!("/app/domains/{bob_id}")).await;
    assert_eq!(r.status, 404);
    r.assert_contains("domain not found");
    assert_eq!(web.get("/app/domains/not-an-id").await.status, 404);
    for path in [
        format!("/app/domains/{bob_id}"),
        format!("/app/domains/{bob_id}/verify"),
        format!("/app/domains/{bob_id}/delete"),
    ] {
        let r = web.post(&path, &[("catch_all", "on")]).await;
        assert_eq!(r.status, 404, "{path}");
        r.assert_contains("domain not found");
    }
    assert!(stored(&app, "bob.example").await.is_some());
}
