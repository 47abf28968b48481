//! Operations endpoints over real HTTP: `/healthz`, `/readyz` (store, SMTP
//! listener, queue backlog) and `/metrics` (Prometheus text format).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestApp;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::MessageId;
use smtpy_core::memory::MemoryStore;
use smtpy_core::metrics::{MESSAGES_ACCEPTED, Metrics, SMTP_SESSIONS};
use smtpy_core::model::{MessageKind, QueuedMessage, QueuedRecipient};
use smtpy_core::store::QueueStore;
use smtpy_core::time::{Clock, Timestamp};
use smtpy_http::Readiness;

fn message(received_at: Timestamp) -> QueuedMessage {
    QueuedMessage {
        id: MessageId::new(),
        kind: MessageKind::Forward,
        reverse_path: None,
        original_sender: None,
        body: b"Subject: t\r\n\r\nhello\r\n".to_vec().into(),
        recipients: vec![QueuedRecipient::new(
            EmailAddress::parse("me@mail.test").expect("address"),
        )],
        owner: None,
        received_at,
        next_attempt_at: received_at,
        expires_at: received_at.saturating_add(Duration::from_secs(86_400)),
        attempts: 0,
        held: false,
        correlation_id: "c".to_owned(),
    }
}

#[tokio::test]
async fn healthz_answers_ok_without_credentials() {
    let app = TestApp::start().await;
    let r = app.browser().get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "ok\n");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn readyz_is_200_with_every_check_when_all_is_well() {
    let app = TestApp::start().await;
    let r = app.browser().get("/readyz").await;
    let body = r.expect(200);
    assert_eq!(body["status"], "ready");
    for check in ["store", "smtp", "queue"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
        assert!(body["checks"][check]["detail"].is_string(), "{body}");
    }
    assert_eq!(
        body["checks"]["smtp"]["detail"], "no SMTP listener expected",
        "no listener was announced"
    );
    assert_eq!(body["checks"]["queue"]["detail"], "no mail queue attached");
}

#[tokio::test]
async fn readyz_waits_for_the_smtp_listener_when_one_is_expected() {
    let readiness = Readiness::new().expecting_smtp();
    let app = TestApp::start_with(common::test_config(), {
        let readiness = readiness.clone();
        move |s| s.with_readiness(readiness)
    })
    .await;
    let r = app.browser().get("/readyz").await;
    let body = r.expect(503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["smtp"]["ok"], false);
    assert!(
        body["checks"]["smtp"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not accepting")),
        "{body}"
    );
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert_eq!(body["checks"]["queue"]["ok"], true);

    readiness.set_smtp_listening(true);
    let body = app.browser().get("/readyz").await.expect(200).clone();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["smtp"]["ok"], true);

    readiness.set_smtp_listening(false);
    app.browser().get("/readyz").await.expect(503);
}

#[tokio::test]
async fn readyz_fails_when_the_queue_backlog_passes_the_threshold() {
    let mut config = common::test_config();
    config.ready_queue_backlog = 1;
    let queue = Arc::new(MemoryStore::new());
    let app = TestApp::start_with(config, {
        let queue = queue.clone();
        move |s| s.with_queue(queue)
    })
    .await;
    let now = app.clock.now();
    queue.enqueue(&message(now)).await.expect("enqueue");
    app.browser().get("/readyz").await.expect(200);

    queue.enqueue(&message(now)).await.expect("enqueue");
    let r = app.browser().get("/readyz").await;
    let body = r.expect(503);
    assert_eq!(body["checks"]["queue"]["ok"], false);
    assert!(
        body["checks"]["queue"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2 messages") && d.contains("threshold of 1")),
        "{body}"
    );
    assert_eq!(body["checks"]["store"]["ok"], true);
}

#[tokio::test]
async fn metrics_render_prometheus_text_with_fresh_queue_gauges() {
    let queue = Arc::new(MemoryStore::new());
    let app = TestApp::start_with(common::test_config(), {
        let queue = queue.clone();
        move |s| s.with_queue(queue)
    })
    .await;
    let now = app.clock.now();
    queue.enqueue(&message(now)).await.expect("enqueue");
    queue.enqueue(&message(now)).await.expect("enqueue");
    app.clock.advance(Duration::from_secs(90));

    let r = app.browser().get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        r.header("content-type")
    );
    let text = &r.text;
    assert!(text.contains("# TYPE smtpy_queue_depth gauge\n"), "{text}");
    assert!(text.contains("\nsmtpy_queue_depth 2\n"), "{text}");
    assert!(
        text.contains("\nsmtpy_queue_oldest_age_seconds 90\n"),
        "{text}"
    );
    for family in [
        "smtpy_messages_accepted_total",
        "smtpy_messages_rejected_total",
        "smtpy_deliveries_total",
        "smtpy_delivery_latency_seconds",
        "smtpy_smtp_sessions_total",
        "smtpy_smtp_sessions_active",
        "smtpy_http_requests_total",
        "smtpy_rate_limit_denials_total",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
    }

    // The previous scrape was counted by route and status.
    let text = app.browser().get("/metrics").await.text;
    assert!(
        text.contains(
            "smtpy_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1\n"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_what_the_rest_of_the_service_records() {
    let shared = Arc::new(Metrics::new());
    let app = TestApp::start_with(common::test_config(), {
        let shared = shared.clone();
        move |s| s.with_metrics(shared)
    })
    .await;
    shared.inc(MESSAGES_ACCEPTED, &[]);
    shared.inc(SMTP_SESSIONS, &[]);
    shared.inc(SMTP_SESSIONS, &[]);
    let text = app.browser().get("/metrics").await.text;
    assert!(
        text.contains("\nsmtpy_messages_accepted_total 1\n"),
        "{text}"
    );
    assert!(text.contains("\nsmtpy_smtp_sessions_total 2\n"), "{text}");
    assert_eq!(app.state.metrics().get(SMTP_SESSIONS, &[]), 2.0);
}
