//! The rules editor and the explain tester: create, edit, enable/disable
//! (also in place, as JSON), move, delete, the alias filter, validation
//! errors from the API next to the form, and another account's rule being
//! a 404 page.
#![cfg(feature = "web")]

mod common;

use common::fixture;

use common::TestApp;
use common::web::WebClient;
use smtpy_core::address::EmailAddress;
use smtpy_core::model::{
    BlockReply, ConditionField, ForwardingRule, Mailbox, MatchMode, Operator, RuleAction, RuleScope,
};
use smtpy_core::store::{Access, MailboxStore, RuleStore};
use smtpy_core::time::Clock as _;

/// The fields of an empty rule form (the match mode left to its default,
/// `all`) plus `extra`.
fn rule_form<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("priority", ""), ("enabled", "on")];
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn create_edit_toggle_move_and_delete_rules() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let fx = fixture(&app, &ann, "ann.example").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;

    let list = web.get("/app/rules").await;
    assert_eq!(list.status, 200);
    list.assert_contains("No rules");
    list.assert_contains("<label for=\"rule-name\">Name</label>");
    list.assert_contains(&format!("value=\"alias:{}\"", fx.alias.id));
    list.assert_contains(&format!("value=\"{}\"", fx.mailbox.id));

    // A user-wide rule: two conditions (one empty row left out), two actions.
    let mbox = fx.mailbox.id.to_string();
    let created = web
        .submit(
            "/app/rules",
            &rule_form(&[
                ("name", "newsletters"),
                ("scope", "user"),
                ("match_mode", "any"),
                ("c_field", "header"),
                ("c_header", "List-Id"),
                ("c_operator", "contains"),
                ("c_value", "news"),
                ("c_field", "subject"),
                ("c_header", ""),
                ("c_operator", "starts_with"),
                ("c_value", "[news]"),
                ("c_field", "from"),
                ("c_header", ""),
                ("c_operator", "contains"),
                ("c_value", ""),
                ("a_type", "prefix_subject"),
                ("a_mailbox", ""),
                ("a_text", "[N]"),
                ("a_value", ""),
                ("a_type", "forward_to"),
                ("a_mailbox", &mbox),
                ("a_text", ""),
                ("a_value", ""),
                ("a_type", ""),
                ("a_mailbox", ""),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    assert_eq!(created.status, 200, "{created:?}");
    created.assert_contains("Rule “newsletters” created.");
    created.assert_contains("header List-Id contains “news”");
    created.assert_contains("forward to inbox@real-ann.example");
    let rules = app.store.list_rules(ann.user.id).await.expect("rules");
    assert_eq!(rules.len(), 1);
    let r1 = &rules[0];
    assert_eq!(r1.scope, RuleScope::User);
    assert_eq!(r1.match_mode, MatchMode::Any);
    assert_eq!(r1.conditions.len(), 2);
    assert_eq!(
        r1.conditions[0].field,
        ConditionField::Header("List-Id".into())
    );
    assert_eq!(r1.conditions[1].operator, Operator::StartsWith);
    assert_eq!(
        r1.actions,
        vec![
            RuleAction::PrefixSubject("[N]".into()),
            RuleAction::ForwardTo(vec![fx.mailbox.id])
        ]
    );
    let r1_id = r1.id;

    // An alias-scoped rule.
    let scope = format!("alias:{}", fx.alias.id);
    web.submit(
        "/app/rules",
        &rule_form(&[
            ("name", "spam"),
            ("scope", &scope),
            ("c_field", "from"),
            ("c_header", ""),
            ("c_operator", "ends_with"),
            ("c_value", "@spam.example"),
            ("a_type", "block_reject"),
            ("a_mailbox", ""),
            ("a_text", ""),
            ("a_value", ""),
        ]),
    )
    .await;
    let rules = app.store.list_rules(ann.user.id).await.expect("rules");
    assert_eq!(rules.len(), 2);
    let r2 = rules.iter().find(|r| r.name == "spam").expect("spam");
    assert_eq!(r2.scope, RuleScope::Alias(fx.alias.id));
    assert_eq!(r2.actions, vec![RuleAction::Block(BlockReply::Reject)]);
    let r2_id = r2.id;

    // The edit form shows the rule; saving changes it.
    let edit = web.get(&format!("/app/rules/{r1_id}")).await;
    assert_eq!(edit.status, 200);
    edit.assert_contains("value=\"newsletters\"");
    edit.assert_contains("value=\"List-Id\"");
    edit.assert_contains("<option value=\"any\" selected>");
    edit.assert_contains("name=\"revision\"");
    let saved = web
        .submit(
            &format!("/app/rules/{r1_id}"),
            &rule_form(&[
                ("name", "lists"),
                ("revision", &r1.revision.to_string()),
                ("c_field", "header"),
                ("c_header", "List-Id"),
                ("c_operator", "is"),
                ("c_value", "x"),
                ("a_type", "quarantine"),
                ("a_mailbox", ""),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    assert_eq!(saved.status, 200, "{saved:?}");
    saved.assert_contains("Rule “lists” saved.");
    let r1 = app.store.get_rule(Access::System, r1_id).await.expect("r1");
    assert_eq!(r1.name, "lists");
    assert_eq!(r1.match_mode, MatchMode::All);
    assert_eq!(r1.conditions.len(), 1);
    assert_eq!(r1.actions, vec![RuleAction::Quarantine]);

    // Disable in place (JSON for app.js), enable again with a plain form.
    let token = web.csrf.lock().expect("csrf").clone().expect("token");
    let j = web
        .post_raw(
            &format!("/app/rules/{r1_id}/toggle"),
            &[("_csrf", &token)],
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(j.status, 200);
    let body: serde_json::Value = serde_json::from_str(&j.html).expect("json");
    assert_eq!(body["ok"], true);
    assert_eq!(body["state"], "disabled");
    assert_eq!(body["label"], "Enable");
    assert_eq!(body["pressed"], false);
    assert!(
        !app.store
            .get_rule(Access::System, r1_id)
            .await
            .expect("r")
            .enabled
    );
    let page = web.submit(&format!("/app/rules/{r1_id}/toggle"), &[]).await;
    page.assert_contains("Rule “lists” enabled.");
    assert!(
        app.store
            .get_rule(Access::System, r1_id)
            .await
            .expect("r")
            .enabled
    );

    // Move the second rule up: it runs first now.
    let page = web
        .submit(&format!("/app/rules/{r2_id}/move"), &[("direction", "up")])
        .await;
    page.assert_contains("Rule “spam” moved up.");
    let order: Vec<_> = app
        .store
        .list_rules(ann.user.id)
        .await
        .expect("rules")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(order, vec![r2_id, r1_id]);

    // The alias filter: both rules apply to shop@, none to another alias.
    let filtered = web.get(&format!("/app/rules?alias={}", fx.alias.id)).await;
    filtered.assert_contains("Rules for shop@ann.example");
    filtered.assert_contains("spam");
    filtered.assert_contains("lists");

    // Delete.
    let page = web.submit(&format!("/app/rules/{r2_id}/delete"), &[]).await;
    page.assert_contains("Rule “spam” deleted.");
    assert!(app.store.get_rule(Access::System, r2_id).await.is_err());
}

#[tokio::test]
async fn a_rule_forwarding_to_two_mailboxes_survives_an_edit() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let fx = fixture(&app, &ann, "ann.example").await;
    let mut other = Mailbox::new(
        ann.user.id,
        EmailAddress::parse("second@outside.test").expect("address"),
        app.clock.now(),
    );
    other.verified_at = Some(app.clock.now());
    app.store.create_mailbox(&other).await.expect("mailbox");
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/rules").await;
    let (m1, m2) = (fx.mailbox.id.to_string(), other.id.to_string());
    let page = web
        .submit(
            "/app/rules",
            &rule_form(&[
                ("name", "both"),
                ("scope", "user"),
                ("a_type", "forward_to"),
                ("a_mailbox", &m1),
                ("a_text", ""),
                ("a_value", ""),
                ("a_type", "forward_to"),
                ("a_mailbox", &m2),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    page.assert_contains("forward to inbox@real-ann.example, second@outside.test");
    let rule = app.store.list_rules(ann.user.id).await.expect("r")[0].clone();
    let both = vec![RuleAction::ForwardTo(vec![fx.mailbox.id, other.id])];
    assert_eq!(rule.actions, both);

    // The edit form shows one row per mailbox; saving it keeps both.
    let edit = web.get(&format!("/app/rules/{}", rule.id)).await;
    edit.assert_contains(&format!("<option value=\"{m1}\" selected>"));
    edit.assert_contains(&format!("<option value=\"{m2}\" selected>"));
    web.submit(
        &format!("/app/rules/{}", rule.id),
        &rule_form(&[
            ("name", "both, renamed"),
            ("a_type", "forward_to"),
            ("a_mailbox", &m1),
            ("a_text", ""),
            ("a_value", ""),
            ("a_type", "forward_to"),
            ("a_mailbox", &m2),
            ("a_text", ""),
            ("a_value", ""),
        ]),
    )
    .await;
    let after = app
        .store
        .get_rule(Access::System, rule.id)
        .await
        .expect("r");
    assert_eq!(after.name, "both, renamed");
    assert_eq!(after.actions, both);
}

#[tokio::test]
async fn invalid_rules_show_the_api_message_next_to_the_form() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let fx = fixture(&app, &ann, "ann.example").await;
    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    web.get("/app/rules").await;

    // A header condition without a header name.
    let r = web
        .post(
            "/app/rules",
            &rule_form(&[
                ("name", "bad"),
                ("scope", "user"),
                ("c_field", "header"),
                ("c_header", ""),
                ("c_operator", "is"),
                ("c_value", "x"),
                ("a_type", "stop"),
                ("a_mailbox", ""),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("required when field is header");
    r.assert_contains("class=\"field-error\"");
    // The form keeps what was typed.
    r.assert_contains("value=\"bad\"");

    // A regular expression the engine cannot compile.
    let r = web
        .post(
            "/app/rules",
            &rule_form(&[
                ("name", "regex"),
                ("scope", "user"),
                ("c_field", "subject"),
                ("c_header", ""),
                ("c_operator", "matches_regex"),
                ("c_value", "(unclosed"),
                ("a_type", "stop"),
                ("a_mailbox", ""),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    r.assert_contains("invalid regular expression");
    r.assert_contains("unclosed group");
    r.assert_contains("value=\"(unclosed\"");
    assert!(
        app.store
            .list_rules(ann.user.id)
            .await
            .expect("r")
            .is_empty()
    );

    // Editing with an invalid value: refused, the rule unchanged.
    web.submit(
        "/app/rules",
        &rule_form(&[
            ("name", "ok"),
            ("scope", "user"),
            ("a_type", "stop"),
            ("a_mailbox", ""),
            ("a_text", ""),
            ("a_value", ""),
        ]),
    )
    .await;
    let id = app.store.list_rules(ann.user.id).await.expect("r")[0].id;
    web.get(&format!("/app/rules/{id}")).await;
    let r = web
        .post(
            &format!("/app/rules/{id}"),
            &rule_form(&[
                ("name", ""),
                ("a_type", "stop"),
                ("a_mailbox", ""),
                ("a_text", ""),
                ("a_value", ""),
            ]),
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("must be at least 1 characters");
    let rule = app.store.get_rule(Access::System, id).await.expect("rule");
    assert_eq!(rule.name, "ok");
    let _ = fx;
}

#[tokio::test]
async fn the_explain_tester_shows_each_rule_and_the_verdict() {
    let app = TestApp::start().await;
    let ann = app.user("ann@example.com").await;
    let fx = fixture(&app, &ann, "ann.example").await;
    let mut block = ForwardingRule::new(
        ann.user.id,
        RuleScope::User,
        "no spam".into(),
        0,
        vec![RuleAction::Block(BlockReply::Reject)],
        app.clock.now(),
    );
    block.conditions = vec![smtpy_core::model::Condition {
        field: ConditionField::From,
        operator: Operator::EndsWith,
        value: "@spam.example".into(),
    }];
    app.store.create_rule(&block).await.expect("rule");

    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    let page = web.get("/app/rules").await;
    page.assert_contains("action=\"/app/rules/explain\"");

    // A message from the blocked sender: the rule matched and decided.
    let r = web
        .post(
            "/app/rules/explain",
            &[
                ("alias", "shop@ann.example"),
                ("mail_from", "x@spam.example"),
                ("subject", "buy now"),
                ("headers", ""),
                ("size", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_contains("matched, decided");
    r.assert_contains("550 5.7.1");
    r.assert_contains("Refused at RCPT TO");
    r.assert_contains("From (sender) ends with “@spam.example”");
    assert!(!r.html.contains("No rule matched"));

    // A friend's message: no rule matched, forwarded to the mailbox.
    let r = web
        .post(
            "/app/rules/explain",
            &[
                ("alias", "shop@ann.example"),
                ("mail_from", "ann@friends.example"),
                ("subject", "hello"),
                ("headers", "X-Note: hi"),
                ("size", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    r.assert_contains("No rule matched");
    r.assert_contains("did not match");
    r.assert_contains("Accepted and forwarded.");
    r.assert_contains(&fx.mailbox.address.to_string());
    r.assert_contains("value=\"ann@friends.example\"");

    // Not an address: the API's message beside the tester.
    let r = web
        .post(
            "/app/rules/explain",
            &[("alias", "not an address"), ("mail_from", "")],
        )
        .await;
    assert_eq!(r.status, 422);
    r.assert_contains("not an email address");
}

#[tokio::test]
async fn another_accounts_rule_is_a_404_page() {
    let app = TestApp::start().await;
    app.user("ann@example.com").await;
    let bob = app.user("bob@example.com").await;
    let fx = fixture(&app, &bob, "bob.example").await;
    let rule = ForwardingRule::new(
        bob.user.id,
        RuleScope::User,
        "bob's".into(),
        0,
        vec![RuleAction::Stop],
        app.clock.now(),
    );
    app.store.create_rule(&rule).await.expect("rule");

    let web = WebClient::new(&app);
    web.sign_in("ann@example.com").await;
    let list = web.get("/app/rules").await;
    assert!(!list.html.contains("bob&#39;s"));
    assert!(!list.html.contains("shop@bob.example"));
    let r = web.get(&format!("/app/rules/{}", rule.id)).await;
    assert_eq!(r.status, 404);
    r.assert_contains("not found");
    assert_eq!(web.get("/app/rules/not-an-id").await.status, 404);
    for path in [
        format!("/app/rules/{}", rule.id),
        format!("/app/rules/{}/toggle", rule.id),
        format!("/app/rules/{}/move", rule.id),
        format!("/app/rules/{}/delete", rule.id),
    ] {
        let r = web
            .post(&path, &[("name", "mine now"), ("direction", "up")])
            .await;
        assert_eq!(r.status, 404, "{path}");
    }
    let stored = app
        .store
        .get_rule(Access::System, rule.id)
        .await
        .expect("r");
    assert_eq!(stored.name, "bob's");
    assert!(stored.enabled);
    // Bob's alias is not Ann's to filter by or to explain.
    let r = web.get(&format!("/app/rules?alias={}", fx.alias.id)).await;
    assert_eq!(r.status, 404);
    let r = web
        .post("/app/rules/explain", &[("alias", "shop@bob.example")])
        .await;
    assert_eq!(r.status, 404);
    r.assert_contains("alias not found");
}
