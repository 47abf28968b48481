//! The admin pages (users, invitations, health, queue, audit log, feature
//! flags, configuration), over real HTTP.
#![cfg(feature = "web")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestApp;
use common::web::WebClient;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::MessageId;
use smtpy_core::memory::MemoryStore;
use smtpy_core::metrics::{DELIVERIES, JOB_LAST_SUCCESS, MESSAGES_ACCEPTED, MESSAGES_REJECTED};
use smtpy_core::model::{
    MessageKind, QueuedMessage, QueuedRecipient, RemoteReply, SecretHash, UserStatus,
};
use smtpy_core::store::{
    ControlStore, CredentialStore, JobRun, PageRequest, QueueStore, UserStore,
};
use smtpy_core::time::{Clock, Timestamp};

const PAGES: &[&str] = &[
    "/admin/users",
    "/admin/health",
    "/admin/queue",
    "/admin/audit",
    "/admin/features",
    "/admin/config",
];

/// A browser signed in as a new admin.
async fn admin_browser(app: &TestApp, email: &str) -> WebClient {
    app.admin(email).await;
    let web = WebClient::new(app);
    web.sign_in(email).await;
    web
}

#[tokio::test]
async fn normal_users_get_a_403_page_on_every_admin_page_and_form() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    for path in PAGES {
        let r = web.get(path).await;
        assert_eq!(r.status, 403, "{path}");
        r.assert_contains("Forbidden");
    }
    // Forms too: the flags stay as they are.
    web.get_follow("/app/aliases").await;
    let r = web
        .post("/admin/features", &[("registration", "true")])
        .await;
    assert_eq!(r.status, 403);
    assert!(!app.state.features().get().registration);
    let bob = app.user("bob@example.com").await;
    let r = web
        .post(&format!("/admin/users/{}/disable", bob.user.id), &[])
        .await;
    assert_eq!(r.status, 403);
    let stored = app.store.get_user(bob.user.id).await.expect("bob");
    assert_eq!(stored.status, UserStatus::Active);

    // Not signed in: to the sign-in page, and back afterwards.
    let anonymous = WebClient::new(&app);
    let r = anonymous.get("/admin/health").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=/admin/health");
}

#[tokio::test]
async fn users_are_listed_disabled_and_enabled() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    let bob = app.user("bob@example.com").await;

    let list = web.get("/admin/users").await;
    assert_eq!(list.status, 200);
    list.assert_contains("root@example.com");
    list.assert_contains("bob@example.com");
    list.assert_contains("Last sign-in</th>");
    list.assert_contains(&format!("action=\"/admin/users/{}/disable\"", bob.user.id));
    list.assert_contains("data-confirm=\"Disable bob@example.com?");

    let done = web
        .submit(&format!("/admin/users/{}/disable", bob.user.id), &[])
        .await;
    assert_eq!(done.status, 200);
    done.assert_contains("Disabled bob@example.com");
    done.assert_contains(&format!("action=\"/admin/users/{}/enable\"", bob.user.id));
    let stored = app.store.get_user(bob.user.id).await.expect("bob");
    assert_eq!(stored.status, UserStatus::Disabled);

    let done = web
        .submit(&format!("/admin/users/{}/enable", bob.user.id), &[])
        .await;
    done.assert_contains("Enabled bob@example.com");
    let stored = app.store.get_user(bob.user.id).await.expect("bob");
    assert_eq!(stored.status, UserStatus::Active);

    // The API's rules: an admin cannot disable themselves.
    let root = app
        .store
        .find_user_by_email(&EmailAddress::parse("root@example.com").expect("email"))
        .await
        .expect("find")
        .expect("root");
    let r = web
        .submit(&format!("/admin/users/{}/disable", root.id), &[])
        .await;
    r.assert_contains("you cannot disable your own account");
    assert_eq!(
        app.store.get_user(root.id).await.expect("root").status,
        UserStatus::Active
    );

    // An unknown account.
    let r = web
        .submit(
            "/admin/users/00000000-0000-0000-0000-000000000000/disable",
            &[],
        )
        .await;
    r.assert_contains("user not found");
}

#[tokio::test]
async fn an_invitation_shows_its_token_once_with_a_fragment_link() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    web.get("/admin/users").await;

    // The API's validation, shown next to the form.
    let bad = web
        .post(
            "/admin/users/invite",
            &[("email", "not an address"), ("role", "user")],
        )
        .await;
    assert_eq!(bad.status, 422);
    bad.assert_contains("value=\"not an address\"");
    bad.assert_contains("class=\"field-error\"");
    let none = app
        .store
        .list_invitations(PageRequest::first(10))
        .await
        .expect("list");
    assert!(none.items.is_empty());

    let r = web
        .post(
            "/admin/users/invite",
            &[("email", "new@example.com"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.assert_contains("new@example.com");
    r.assert_contains("class=\"secret mono\" id=\"invite-token\"");
    r.assert_contains("data-copy-target=\"invite-token\"");
    let base = app.url("/register#token=");
    let at = r.html.find(&base).expect("the registration link");
    let token: String = r.html[at + base.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 32, "{token}");
    assert!(!r.html.contains("?token="), "never in a query");
    let inv = app
        .store
        .find_invitation(&SecretHash::of(token.as_bytes()))
        .await
        .expect("find")
        .expect("the invitation exists");
    assert_eq!(
        inv.email.map(|e| e.to_string()).as_deref(),
        Some("new@example.com")
    );
    assert_eq!(inv.role, smtpy_core::model::Role::Admin);

    // Listed as open, the token never shown again.
    let list = web.get("/admin/users").await;
    list.assert_contains("new@example.com");
    list.assert_contains(">open</span>");
    assert!(!list.html.contains(&token));

    // Revoked.
    let done = web
        .submit(&format!("/admin/users/invitations/{}/revoke", inv.id), &[])
        .await;
    done.assert_contains("Invitation revoked");
    assert!(
        app.store
            .find_invitation(&SecretHash::of(token.as_bytes()))
            .await
            .expect("find")
            .is_none()
    );
}

#[tokio::test]
async fn health_shows_the_checks_metrics_and_jobs() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    let m = app.state.metrics();
    m.add(MESSAGES_ACCEPTED, &[], 4217);
    m.add(DELIVERIES, &[("outcome", "bounced")], 313);
    m.add(MESSAGES_REJECTED, &[("reason", "unknown_alias")], 5);
    m.add(MESSAGES_REJECTED, &[("reason", "dmarc")], 6);

    let r = web.get("/admin/health").await;
    assert_eq!(r.status, 200);
    r.assert_contains("the store answers");
    r.assert_contains("no mail queue attached");
    r.assert_contains(">ready</span>");
    r.assert_contains("<td class=\"num\">4217</td>");
    r.assert_contains("<td class=\"num\">313</td>");
    r.assert_contains("<td class=\"num\">11</td>");
    r.assert_contains("No background job has run");

    // A job that ran: its last outcome and the last success here.
    let now = app.clock.now();
    app.store
        .acquire_job_lease(
            "purge-events",
            "node-7",
            now,
            now.saturating_add(Duration::from_secs(60)),
        )
        .await
        .expect("lease");
    app.store
        .record_job_run(
            "purge-events",
            &JobRun {
                at: now,
                ok: false,
                detail: "store timed out".into(),
            },
        )
        .await
        .expect("record");
    m.set(
        JOB_LAST_SUCCESS,
        &[("job", "purge-events")],
        1_700_000_000.0,
    );
    let r = web.get("/admin/health").await;
    r.assert_contains("<td class=\"mono\">purge-events</td>");
    r.assert_contains("node-7");
    r.assert_contains(">failed</span>");
    r.assert_contains("store timed out");
    r.assert_contains("2023-11-14 22:13 UTC");
}

fn message(now: Timestamp, held: bool) -> QueuedMessage {
    let mut r = QueuedRecipient::new(EmailAddress::parse("inbox@real.example").expect("rcpt"));
    r.attempts = 2;
    r.last_reply = Some(RemoteReply {
        code: 451,
        enhanced: None,
        text: "try later".into(),
    });
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: Some(EmailAddress::parse("srs@bounce.example").expect("srs")),
        original_sender: Some(EmailAddress::parse("ann@outside.example").expect("sender")),
        body: Arc::from(&b"Subject: secret subject\r\n\r\nDo not show\r\n"[..]),
        recipients: vec![r],
        owner: None,
        received_at: now,
        next_attempt_at: now.saturating_add(Duration::from_secs(3600)),
        expires_at: now.saturating_add(Duration::from_secs(5 * 86_400)),
        attempts: 2,
        held,
        correlation_id: "corr-1".into(),
    }
}

#[tokio::test]
async fn the_queue_is_listed_inspected_retried_released_and_deleted() {
    let queue = Arc::new(MemoryStore::new());
    let q = queue.clone();
    let app = TestApp::start_with(common::test_config(), move |s| s.with_queue(q)).await;
    let web = admin_browser(&app, "root@example.com").await;
    let now = app.clock.now();
    let held = message(now, true);
    let normal = message(now, false);
    queue.enqueue(&held).await.expect("enqueue");
    queue.enqueue(&normal).await.expect("enqueue");

    let list = web.get("/admin/queue").await;
    assert_eq!(list.status, 200);
    list.assert_contains(&held.id.to_string());
    list.assert_contains(&normal.id.to_string());
    list.assert_contains("ann@outside.example");
    list.assert_contains("inbox@real.example");
    list.assert_contains("451 try later");
    let only_held = web.get("/admin/queue?held=true").await;
    only_held.assert_contains(&held.id.to_string());
    assert!(!only_held.html.contains(&normal.id.to_string()));

    // Inspect: metadata, never the body.
    let one = web.get(&format!("/admin/queue/{}", normal.id)).await;
    assert_eq!(one.status, 200);
    one.assert_contains("srs@bounce.example");
    one.assert_contains("corr-1");
    one.assert_contains("451 try later");
    assert!(!one.html.contains("Do not show"));
    assert!(!one.html.contains("secret subject"));

    // Retry makes it due now.
    let done = web
        .submit(&format!("/admin/queue/{}/retry", normal.id), &[])
        .await;
    done.assert_contains("Due now");
    let m = queue.get_queued(normal.id).await.expect("still queued");
    assert!(m.next_attempt_at <= app.clock.now());

    // Deleting a message that is not held needs the explicit box.
    let refused = web
        .submit(&format!("/admin/queue/{}/delete", normal.id), &[])
        .await;
    refused.assert_contains("not held");
    assert!(queue.get_queued(normal.id).await.is_ok());
    let done = web
        .submit(
            &format!("/admin/queue/{}/delete", normal.id),
            &[("force", "true")],
        )
        .await;
    done.assert_contains("Deleted message");
    assert!(queue.get_queued(normal.id).await.is_err());

    // Release the held one.
    let done = web
        .submit(&format!("/admin/queue/{}/release", held.id), &[])
        .await;
    done.assert_contains("Released");
    assert!(!queue.get_queued(held.id).await.expect("queued").held);

    // A message that is not there: the 404 page.
    let gone = web.get(&format!("/admin/queue/{}", normal.id)).await;
    assert_eq!(gone.status, 404);
    gone.assert_contains("queued message not found");
    let junk = web.get("/admin/queue/not-an-id").await;
    assert_eq!(junk.status, 404);
}

#[tokio::test]
async fn the_queue_page_says_when_no_queue_is_attached() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    let r = web.get("/admin/queue").await;
    assert_eq!(r.status, 503);
    r.assert_contains("This service has no mail queue attached");
    let r = web
        .get("/admin/queue/00000000-0000-0000-0000-000000000001")
        .await;
    assert_eq!(r.status, 503);
    r.assert_contains("no mail queue attached");
}

#[tokio::test]
async fn the_audit_log_shows_what_admins_did() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    let bob = app.user("bob@example.com").await;
    web.get("/admin/users").await;
    web.submit(&format!("/admin/users/{}/disable", bob.user.id), &[])
        .await;

    let r = web.get("/admin/audit").await;
    assert_eq!(r.status, 200);
    r.assert_contains("user.update");
    r.assert_contains("root@example.com");
    r.assert_contains(&bob.user.id.to_string());
    r.assert_contains("status=disabled");

    // Filters: the action prefix and a date.
    let r = web.get("/admin/audit?action=features.").await;
    assert!(!r.html.contains("user.update"));
    r.assert_contains("No audit events match these filters");
    let r = web.get("/admin/audit?since=2000-01-01").await;
    r.assert_contains("user.update");
    r.assert_contains("value=\"2000-01-01\"");
    let r = web.get("/admin/audit?since=2999-01-01").await;
    assert!(!r.html.contains("user.update"));
    let r = web.get("/admin/audit?since=yesterday").await;
    assert_eq!(r.status, 422);
    r.assert_contains("not a date");
}

#[tokio::test]
async fn the_feature_flags_form_sends_every_flag() {
    let app = TestApp::start().await;
    let web = admin_browser(&app, "root@example.com").await;
    let before = app.state.features().get();
    assert!(!before.registration);
    assert!(before.replies);

    let page = web.get("/admin/features").await;
    assert_eq!(page.status, 200);
    page.assert_contains("<label class=\"inline\" for=\"flag-registration\">");
    page.assert_contains(
        "name=\"replies\" value=\"true\" aria-describedby=\"help-replies\" checked",
    );

    // Registration checked, replies unchecked (absent), the rest checked.
    let done = web
        .submit(
            "/admin/features",
            &[
                ("registration", "true"),
                ("send_from_alias", "true"),
                ("auto_create", "true"),
            ],
        )
        .await;
    assert_eq!(done.status, 200);
    done.assert_contains("Feature flags saved");
    let after = app.state.features().get();
    assert!(after.registration);
    assert!(!after.replies);
    assert!(after.send_from_alias);
    assert!(after.auto_create);
    done.assert_contains(
        "name=\"registration\" value=\"true\" aria-describedby=\"help-registration\" checked",
    );

    let audit = web.get("/admin/audit?action=features.").await;
    audit.assert_contains("features.update");
}

#[tokio::test]
async fn the_configuration_page_shows_the_provided_text_to_admins_only() {
    let app = TestApp::start_with(common::test_config(), |s| {
        s.with_config_view(Arc::new(|| {
            "[store]\nurl = \"postgres://smtpy:***@db/smtpy\" # <b>\n".to_owned()
        }))
    })
    .await;
    let web = admin_browser(&app, "root@example.com").await;
    let r = web.get("/admin/config").await;
    assert_eq!(r.status, 200);
    r.assert_contains("<pre class=\"mono\" id=\"config-text\">[store]");
    r.assert_contains("postgres://smtpy:***@db/smtpy");
    r.assert_contains("&#60;b&#62;");
    assert!(!r.html.contains("<b>"));

    app.user("ann@example.com").await;
    let user = WebClient::new(&app);
    user.sign_in("ann@example.com").await;
    let r = user.get("/admin/config").await;
    assert_eq!(r.status, 403);
    assert!(!r.html.contains("postgres://"));

    // Without a provider.
    let bare = TestApp::start().await;
    let web = admin_browser(&bare, "root@example.com").await;
    let r = web.get("/admin/config").await;
    assert_eq!(r.status, 200);
    r.assert_contains("not provided by the embedding service");
}
