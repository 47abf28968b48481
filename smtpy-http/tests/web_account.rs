//! The web pages before sign-in (registration, password reset) and the
//! account page (settings, password, second factor, sessions, export and
//! import), over real HTTP.
#![cfg(feature = "web")]

mod common;

use common::{base32, code_at};

use std::time::Duration;

use common::web::{Page, WebClient};
use common::{PASSWORD, TestApp};
use serde_json::{Value, json};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Alias, Domain, Mailbox};
use smtpy_core::store::{
    Access, AliasFilter, AliasStore, CredentialStore, DomainStore, MailboxStore, PageRequest,
    UserStore,
};
use smtpy_core::time::Clock;

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} in {html}"))
        + start.len();
    let rest = &html[at..];
    &rest[..rest.find(end).expect("end")]
}

async fn wait_for_mail(app: &TestApp, n: usize) {
    for _ in 0..200 {
        if app.outbox.count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} notifications, got {}", app.outbox.count());
}

/// Signs in through the form with `password`; the page after it.
async fn sign_in_with(web: &WebClient, email: &str, password: &str) -> Page {
    web.get("/login").await;
    web.submit("/login", &[("email", email), ("password", password)])
        .await
}

#[tokio::test]
async fn registration_with_an_invitation_and_refused_without_one() {
    let app = TestApp::start().await;
    let root = app.admin("root@example.test").await;
    let token = root
        .client
        .post("/api/v1/invitations", json!({"role": "user"}))
        .await
        .expect(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let web = WebClient::new(&app);

    let form = web.get("/register").await;
    assert_eq!(form.status, 200);
    assert!(form.header("set-cookie").starts_with("smtpy_csrf="));
    form.assert_contains("autocomplete=\"new-password\"");
    form.assert_contains("At least 10 characters");
    form.assert_contains("data-fragment-token");
    form.assert_contains("Registration needs an invitation");

    // Closed registration, no invitation: the API's refusal, no account.
    let refused = web
        .post(
            "/register",
            &[
                ("email", "new@example.test"),
                ("password", "a long enough password"),
                ("invitation", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    refused.assert_contains("registration needs an invitation");
    refused.assert_contains("value=\"new@example.test\"");
    let new = EmailAddress::parse("new@example.test").expect("email");
    assert!(
        app.store
            .find_user_by_email(&new)
            .await
            .expect("find")
            .is_none()
    );

    // A weak password: the field's message.
    let weak = web
        .post(
            "/register",
            &[
                ("email", "new@example.test"),
                ("password", "short"),
                ("invitation", &token),
            ],
        )
        .await;
    assert_eq!(weak.status, 422);
    weak.assert_contains("class=\"field-error\"");

    // With the invitation: the account exists, sign in next.
    let ok = web
        .post(
            "/register",
            &[
                ("email", "new@example.test"),
                ("password", "a long enough password"),
                ("invitation", &token),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.location(), "/login");
    let user = app
        .store
        .find_user_by_email(&new)
        .await
        .expect("find")
        .expect("registered");
    assert!(user.password.is_some());
    let login = web.get("/login").await;
    login.assert_contains("Your account is ready");
    let signed_in = sign_in_with(&web, "new@example.test", "a long enough password").await;
    assert_eq!(signed_in.status, 200);
    signed_in.assert_contains("new@example.test");

    // The invitation is spent.
    let other = WebClient::new(&app);
    other.get("/register").await;
    let used = other
        .post(
            "/register",
            &[
                ("email", "third@example.test"),
                ("password", "a long enough password"),
                ("invitation", &token),
            ],
        )
        .await;
    assert_eq!(used.status, 400);
    used.assert_contains("invalid, used or expired invitation");
}

#[tokio::test]
async fn open_registration_says_so_and_needs_no_invitation() {
    let mut config = common::test_config();
    config.open_registration = true;
    let app = TestApp::start_with(config, |s| s).await;
    app.user("taken@example.test").await;
    let web = WebClient::new(&app);
    let form = web.get("/register").await;
    form.assert_contains("Registration is open");
    let taken = web
        .post(
            "/register",
            &[
                ("email", "taken@example.test"),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(taken.status, 409);
    taken.assert_contains("an account with this address exists already");
    let ok = web
        .post(
            "/register",
            &[
                ("email", "open@example.test"),
                ("password", "a long enough password"),
                ("invitation", ""),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{ok:?}");
    let open = EmailAddress::parse("open@example.test").expect("email");
    assert!(
        app.store
            .find_user_by_email(&open)
            .await
            .expect("find")
            .is_some()
    );
}

#[tokio::test]
async fn password_reset_by_mail_with_the_token_in_the_fragment() {
    let mut config = common::test_config();
    config.public_url = Some("https://mail.example.test".to_owned());
    let app = TestApp::start_with(config, |s| s).await;
    let alice = app.user("alice@example.test").await;
    let web = WebClient::new(&app);

    let form = web.get("/reset-password").await;
    assert_eq!(form.status, 200);
    let sent = web
        .submit("/reset-password", &[("email", "alice@example.test")])
        .await;
    assert_eq!(sent.status, 200);
    sent.assert_contains("If an account has this address");
    // The same answer for an unknown address.
    let unknown = web
        .submit("/reset-password", &[("email", "nobody@example.test")])
        .await;
    unknown.assert_contains("If an account has this address");

    wait_for_mail(&app, 1).await;
    let link = app
        .outbox
        .last_var("alice@example.test", "reset_link")
        .expect("link");
    assert!(
        link.starts_with("https://mail.example.test/reset-password/confirm#token="),
        "{link}"
    );
    assert!(!link.contains("?token="), "{link}");
    let token = link.split("#token=").nth(1).expect("token").to_owned();

    let confirm = web.get("/reset-password/confirm").await;
    assert_eq!(confirm.status, 200);
    confirm.assert_contains("data-fragment-token");
    // A wrong token: the API's message.
    let bad = web
        .post(
            "/reset-password/confirm",
            &[("token", "not-a-token"), ("password", "brand new password")],
        )
        .await;
    assert_eq!(bad.status, 400);
    bad.assert_contains("invalid or expired token");

    let done = web
        .post(
            "/reset-password/confirm",
            &[("token", &token), ("password", "brand new password")],
        )
        .await;
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(done.location(), "/login");
    let after = web.get("/login").await;
    after.assert_contains("Your new password is set");

    // The new password signs in; the old one does not.
    let old = WebClient::new(&app);
    old.get("/login").await;
    let refused = old
        .post(
            "/login",
            &[("email", "alice@example.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, 401);
    let page = sign_in_with(&web, "alice@example.test", "brand new password").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        app.store
            .list_sessions(alice.user.id)
            .await
            .expect("sessions")
            .len(),
        1
    );
}

#[tokio::test]
async fn account_page_shows_and_saves_the_settings() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.test").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.test").await;
    let page = web.get("/app/account").await;
    assert_eq!(page.status, 200);
    page.assert_contains("<label for=\"sender_format\">");
    page.assert_contains("name=\"notify_bounces\"");
    page.assert_contains("<a href=\"/app/account\" aria-current=\"page\">");

    // A format without a placeholder: the API's message, the values kept.
    let bad = web
        .post(
            "/app/account",
            &[
                ("dmarc_reject", "quarantine"),
                ("dmarc_quarantine", "tag_subject"),
                ("subject_tag", "[SPAM?]"),
                ("sender_format", "no placeholder"),
                ("notify_bounces", "on"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    bad.assert_contains("must contain {name} or {address}");
    bad.assert_contains("value=\"no placeholder\"");

    let ok = web
        .submit(
            "/app/account",
            &[
                ("dmarc_reject", "quarantine"),
                ("dmarc_quarantine", "tag_subject"),
                ("subject_tag", "[Suspect]"),
                ("sender_format", "{name} via {address}"),
                ("notify_bounces", "on"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200);
    ok.assert_contains("Your settings are saved.");
    ok.assert_contains("value=\"[Suspect]\"");
    let user = app.store.get_user(ann.user.id).await.expect("user");
    assert_eq!(user.settings.subject_tag, "[Suspect]");
    assert_eq!(
        user.settings.sender_format.as_deref(),
        Some("{name} via {address}")
    );
    assert!(user.settings.notify_bounces);
    assert!(!user.settings.notify_quarantine);
    let me = ann.client.get("/api/v1/me").await;
    assert_eq!(me.expect(200)["settings"]["dmarc_reject"], "quarantine");
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let app = TestApp::start().await;
    app.user("ann@example.test").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.test").await;
    web.get("/app/account").await;
    let wrong = web
        .post(
            "/app/account/password",
            &[
                ("current_password", "not the password"),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403);
    wrong.assert_contains("the current password is wrong");
    let ok = web
        .submit(
            "/app/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200);
    ok.assert_contains("Your password is changed");
    let other = WebClient::new(&app);
    let page = sign_in_with(&other, "ann@example.test", "a brand new password").await;
    assert_eq!(page.status, 200);
    page.assert_contains("Signed in.");
}

#[tokio::test]
async fn second_factor_enrol_confirm_and_sign_in_asks_for_the_code() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.test").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.test").await;
    web.get("/app/account")
        .await
        .assert_contains("Set up a second factor");
    let setup = web.post("/app/account/totp", &[]).await;
    assert_eq!(setup.status, 200, "{setup:?}");
    setup.assert_contains("class=\"secret mono\"");
    setup.assert_contains("data-copy-target=\"totp-secret\"");
    setup.assert_contains("otpauth://totp/");
    // The address as a QR code, drawn inline without a style attribute.
    setup.assert_contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr\"");
    assert!(!setup.html.contains("style="));
    let secret_text = between(&setup.html, "id=\"totp-secret\">", "<").to_owned();
    let secret = base32(&secret_text);
    // Nothing stored yet.
    assert!(
        app.store
            .get_user(ann.user.id)
            .await
            .expect("user")
            .totp
            .is_none()
    );

    // A wrong code: the form again with the same secret.
    let now = app.state.clock().now();
    let right = code_at(&secret, now);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let bad = web
        .post(
            "/app/account/totp/enable",
            &[("secret", &secret_text), ("code", wrong)],
        )
        .await;
    assert_eq!(bad.status, 422);
    bad.assert_contains("wrong code for this secret");
    bad.assert_contains(&secret_text);

    let ok = web
        .submit(
            "/app/account/totp/enable",
            &[("secret", &secret_text), ("code", &right)],
        )
        .await;
    assert_eq!(ok.status, 200);
    ok.assert_contains("The second factor is on");
    assert!(
        app.store
            .get_user(ann.user.id)
            .await
            .expect("user")
            .totp
            .is_some()
    );

    // Signing in now asks for the code.
    app.clock.advance(Duration::from_secs(60));
    let other = WebClient::new(&app);
    other.get("/login").await;
    let ask = other
        .post(
            "/login",
            &[("email", "ann@example.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(ask.status, 401, "{ask:?}");
    ask.assert_contains("name=\"totp\"");
    let code = code_at(&secret, app.state.clock().now());
    let signed = other
        .submit(
            "/login",
            &[
                ("email", "ann@example.test"),
                ("password", PASSWORD),
                ("totp", &code),
            ],
        )
        .await;
    assert_eq!(signed.status, 200);

    // Turning it off needs the password or a code.
    let page = web.get("/app/account").await;
    page.assert_contains("Turn the second factor off");
    let refused = web
        .post(
            "/app/account/totp/disable",
            &[("password", "not the password"), ("code", "")],
        )
        .await;
    assert_eq!(refused.status, 403);
    refused.assert_contains("wrong password or code");
    let off = web
        .submit(
            "/app/account/totp/disable",
            &[("password", PASSWORD), ("code", "")],
        )
        .await;
    assert_eq!(off.status, 200);
    off.assert_contains("The second factor is off");
    assert!(
        app.store
            .get_user(ann.user.id)
            .await
            .expect("user")
            .totp
            .is_none()
    );
}

/// The session ids in the page's revoke forms.
fn revoke_ids(html: &str) -> Vec<String> {
    html.split("/app/account/sessions/")
        .skip(1)
        .filter_map(|s| s.split_once("/revoke\"").map(|(id, _)| id.to_owned()))
        .collect()
}

#[tokio::test]
async fn sessions_are_listed_and_can_be_ended() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.test").await;
    app.user("bob@example.test").await;
    let one = WebClient::new(&app);
    let two = WebClient::new(&app);
    let three = WebClient::new(&app);
    let bob = WebClient::new(&app);
    one.sign_in("ann@example.test").await;
    two.sign_in("ann@example.test").await;
    bob.sign_in("bob@example.test").await;

    let page = one.get("/app/account").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.html
            .matches("<span class=\"badge ok\">this session</span>")
            .count(),
        1
    );
    assert_eq!(
        page.html
            .matches("<td class=\"mono\">127.0.0.1</td>")
            .count(),
        2
    );
    let ids = revoke_ids(&page.html);
    assert_eq!(ids.len(), 1, "one other session: {ids:?}");

    // Bob cannot end Ann's session: the 404 page.
    bob.get("/app/account").await;
    let theirs = bob
        .post(&format!("/app/account/sessions/{}/revoke", ids[0]), &[])
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(two.get("/app/account").await.status, 200);

    // Ann ends it: that browser must sign in again.
    one.get("/app/account").await;
    let ended = one
        .submit(&format!("/app/account/sessions/{}/revoke", ids[0]), &[])
        .await;
    assert_eq!(ended.status, 200);
    ended.assert_contains("The session has ended.");
    assert_eq!(two.get("/app/account").await.status, 303);
    assert_eq!(one.get("/app/account").await.status, 200);

    // Sign out everywhere else.
    two.sign_in("ann@example.test").await;
    three.sign_in("ann@example.test").await;
    assert_eq!(
        app.store.list_sessions(ann.user.id).await.expect("s").len(),
        3
    );
    one.get("/app/account").await;
    let out = one.submit("/app/account/sessions/revoke-others", &[]).await;
    out.assert_contains("Signed out of 2 other sessions.");
    assert_eq!(two.get("/app/account").await.status, 303);
    assert_eq!(three.get("/app/account").await.status, 303);
    assert_eq!(
        app.store.list_sessions(ann.user.id).await.expect("s").len(),
        1
    );
}

/// Ann's data: her domain, a mailbox and the alias `shop@ann.example`.
async fn populate(app: &TestApp, owner: &smtpy_core::model::User) {
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse("ann.example").expect("domain"),
        owner.id,
        "token".into(),
        now,
    );
    d.verified_at = Some(now);
    app.store.create_domain(&d).await.expect("domain");
    let mut m = Mailbox::new(
        owner.id,
        EmailAddress::parse("ann@inbox.example").expect("mailbox"),
        now,
    );
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("mailbox");
    let alias = Alias::new(
        EmailAddress::parse("shop@ann.example").expect("alias"),
        owner.id,
        d.id,
        vec![m.id],
        now,
    );
    app.store.create_alias(&alias).await.expect("alias");
}

#[tokio::test]
async fn export_downloads_json_and_import_reports_what_it_did() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.test").await;
    let bob = app.user("bob@example.test").await;
    populate(&app, &ann.user).await;

    let web = WebClient::new(&app);
    web.sign_in("ann@example.test").await;
    let page = web.get("/app/account").await;
    page.assert_contains("href=\"/app/account/export\"");
    let export = web.get("/app/account/export").await;
    assert_eq!(export.status, 200);
    assert!(
        export
            .header("content-type")
            .starts_with("application/json")
    );
    assert_eq!(
        export.header("content-disposition"),
        "attachment; filename=\"smtpy-export.json\""
    );
    let doc: Value = serde_json::from_str(&export.html).expect("json");
    assert_eq!(doc["account"]["email"], "ann@example.test");
    assert_eq!(doc["aliases"][0]["address"], "shop@ann.example");

    // Bob imports Ann's document (pasted): the mailbox is created, the
    // alias on Ann's domain refused.
    let bobs = WebClient::new(&app);
    bobs.sign_in("bob@example.test").await;
    bobs.get("/app/account").await;
    let report = bobs
        .post("/app/account/import", &[("document", &export.html)])
        .await;
    assert_eq!(report.status, 200, "{report:?}");
    report.assert_contains("Import report");
    report.assert_contains("ann@inbox.example");
    report.assert_contains("shop@ann.example");
    report.assert_contains("<span class=\"badge ok\">created</span>");
    report.assert_contains("<span class=\"badge error\">refused</span>");
    let mailboxes = app.store.list_mailboxes(bob.user.id).await.expect("list");
    assert_eq!(mailboxes.len(), 1);
    assert_eq!(mailboxes[0].address.to_string(), "ann@inbox.example");
    let aliases = app
        .store
        .list_aliases(
            Access::Owner(bob.user.id),
            &AliasFilter::default(),
            PageRequest::default(),
        )
        .await
        .expect("aliases");
    assert!(aliases.items.is_empty());

    // A document that does not parse: the form again with the problem.
    bobs.get("/app/account").await;
    let bad = bobs
        .post(
            "/app/account/import",
            &[("document", "{\"not\": \"an export\"}")],
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
    bad.assert_contains("class=\"flash error\"");
    bad.assert_contains("{&#34;not&#34;: &#34;an export&#34;}");
    // Nothing at all.
    bobs.get("/app/account").await;
    let empty = bobs
        .post("/app/account/import", &[("document", "  ")])
        .await;
    assert_eq!(empty.status, 422);
    empty.assert_contains("choose an export file or paste a document");
    // An import larger than the general body limit (1 MiB) is read under
    // the import limit: it gets as far as parsing, not a 413.
    bobs.get("/app/account").await;
    let padded = format!(
        "{{\"not\": \"an export\", \"pad\": \"{}\"}}",
        "x".repeat(1_500_000)
    );
    let big = bobs
        .post("/app/account/import", &[("document", &padded)])
        .await;
    assert_eq!(big.status, 422, "{}", big.status);
}

#[tokio::test]
async fn import_takes_an_uploaded_file() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.test").await;
    populate(&app, &ann.user).await;
    let doc = ann.client.get("/api/v1/export").await.text;
    // Import into the same account: everything exists already.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http.get(app.url("/login")).send().await.expect("login");
    let html = login.text().await.expect("html");
    let token = between(&html, "name=\"_csrf\" value=\"", "\"").to_owned();
    let signed = http
        .post(app.url("/login"))
        .form(&[
            ("_csrf", token.as_str()),
            ("email", "ann@example.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 303);
    let page = http
        .get(app.url("/app/account"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = between(&page, "name=\"_csrf\" value=\"", "\"").to_owned();
    let boundary = "XyZzY0123";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"smtpy-export.json\"\r\nContent-Type: application/json\r\n\r\n{doc}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"document\"\r\n\r\n\r\n\
         --{boundary}--\r\n"
    );
    let resp = http
        .post(app.url("/app/account/import"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("import");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    assert!(html.contains("Import report"), "{html}");
    assert!(html.contains("shop@ann.example"), "{html}");
    assert!(
        html.contains("<span class=\"badge\">exists</span>"),
        "{html}"
    );
    // Without the token the upload is refused.
    let refused = http
        .post(app.url("/app/account/import"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"\r\n\r\n{doc}\r\n--{boundary}--\r\n"
        ))
        .send()
        .await
        .expect("import");
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn account_pages_need_a_sign_in() {
    let app = TestApp::start().await;
    let web = WebClient::new(&app);
    let r = web.get("/app/account").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=/app/account");
    assert_eq!(web.get("/app/account/export").await.status, 303);
}
