//! End to end over the HTTP API: the reference server as a process, its
//! API on loopback, a Python `smtplib` client and an `aiosmtpd` sink.
//!
//! * the API is up once the server runs: `/healthz`, `/readyz` (200 with
//!   every check), `/metrics` (SMTP sessions counted), `/api/v1/me` with the
//!   key `admin user create` printed;
//! * `/readyz` is 503 naming the store when the store is down;
//! * the whole path: a user, a domain (its records published, verified), a
//!   mailbox (verified with the code from the mail at the sink), an alias —
//!   all through the API — then mail through the alias with a real SMTP
//!   client, seen at the sink, and the alias counters, the events and the
//!   metrics showing it.
//!
//! DNS answers come from the records file the test writes (nothing touches
//! the network). The mail-path test needs `python3` with `aiosmtpd`;
//! without it it prints `skipped: …` — except under `CI`, where it fails.

#[path = "e2e/world.rs"]
mod world;

use serde_json::{Value, json};
use world::*;

const OWNER: &str = "owner@example.org";
const OWNER_PASSWORD: &str = "a long enough password 42";
const OWNER_MAILBOX: &str = "me@mail.test";
const DOMAIN: &str = "owner-domain.test";

/// The value of the series `name` (labels included, e.g.
/// `smtpy_deliveries_total{outcome="delivered"}`) in a Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_api_serves_health_readiness_metrics_and_the_first_admin() {
    let mut w = World::new();
    // No default credentials: the first admin comes from the command line.
    let key = w.create_user_key("root@example.org", true);
    w.start_server();

    let health = w.http().get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.text, "ok\n");

    let ready = w.http().get("/readyz");
    let body = ready.expect(200);
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["store", "smtp", "queue"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    assert_eq!(
        body["checks"]["smtp"]["detail"], "the SMTP listener accepts connections",
        "the server announced its listener: {body}"
    );

    // Unauthenticated requests are refused; the printed key works.
    assert_eq!(w.http().get("/api/v1/me").status, 401);
    let me = w.http_with_key(&key).get("/api/v1/me");
    let me = me.expect(200);
    assert_eq!(me["email"], "root@example.org");
    assert_eq!(me["role"], "admin");

    // The harness opened SMTP sessions to wait for the greeting.
    let metrics = w.http().get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{metrics:#?}"
    );
    assert!(
        metric(&metrics.text, "smtpy_smtp_sessions_total") >= 1.0,
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("smtpy_queue_depth 0\n"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains(
            "smtpy_http_requests_total{method=\"GET\",route=\"/api/v1/me\",status=\"200\"} 1\n"
        ),
        "{}",
        metrics.text
    );

    let doc = w.http().get("/api/v1/openapi.json");
    assert_eq!(doc.expect(200)["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_the_store_when_it_is_down() {
    let sql = smtpy_store_sql::SqlStore::connect("sqlite::memory:")
        .await
        .expect("sqlite");
    sql.close().await; // every call now fails with StoreError::Unavailable
    let state =
        smtpy_http::ApiState::new(std::sync::Arc::new(sql), smtpy_http::HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(smtpy_http::serve(
        listener,
        smtpy_http::router(state),
        std::future::pending(),
    ));
    let r = tokio::task::spawn_blocking(move || Http::new(port).get("/readyz"))
        .await
        .expect("request");
    server.abort();
    let body = r.expect(503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["store"]["ok"], false, "{body}");
    assert_eq!(
        body["checks"]["store"]["detail"],
        "the store does not answer"
    );
    assert_eq!(body["checks"]["smtp"]["ok"], true, "no listener expected");
}

#[test]
fn the_records_file_helpers_publish_what_the_api_lists() {
    assert_eq!(unquote_txt("v=spf1 -all"), "v=spf1 -all");
    assert_eq!(unquote_txt("\"v=DKIM1; \" \"p=abc\""), "v=DKIM1; p=abc");
    let file = dns_file(&[
        json!({"name": "d.test.", "type": "MX", "value": "mx.smtpy.test.", "priority": 20}),
        json!({"name": "e.test", "type": "MX", "value": "5 mx.smtpy.test"}),
        json!({"name": "d.test", "type": "TXT", "value": "v=spf1 include:mx.smtpy.test ~all"}),
        json!({"name": "_dmarc.d.test", "type": "TXT", "value": "v=DMARC1; p=none"}),
        json!({"name": "s._domainkey.d.test", "type": "CNAME", "value": "x.example."}),
    ]);
    let parsed: toml::Table = file.parse().expect("TOML");
    assert_eq!(parsed["mx"]["d.test"][0].as_str(), Some("20 mx.smtpy.test"));
    assert_eq!(parsed["mx"]["e.test"][0].as_str(), Some("5 mx.smtpy.test"));
    assert_eq!(
        parsed["txt"]["_dmarc.d.test"][0].as_str(),
        Some("v=DMARC1; p=none")
    );
    assert!(parsed["txt"].get("s._domainkey.d.test").is_none());
    let code = verification_code(
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nTo confirm, enter this confirmation code: AB=\r\nCD-12=3D\r\n",
    );
    assert_eq!(code, "ABCD-12=");
}

#[test]
fn user_domain_mailbox_alias_through_the_api_then_mail_flows_and_is_counted() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    let admin_key = w.create_user_key("root@example.org", true);
    w.start_sink();
    w.start_server();
    let admin = w.http_with_key(&admin_key);

    // The admin creates the user.
    let user = admin.post(
        "/api/v1/users",
        &json!({"email": OWNER, "password": OWNER_PASSWORD, "role": "user"}),
    );
    let user = user.ok().clone();
    assert_eq!(user["email"], OWNER, "{user}");
    assert!(user["id"].is_string(), "{user}");

    // The user logs in and makes a key for their program.
    let mut browser = w.http();
    browser.login(OWNER, OWNER_PASSWORD).ok();
    assert!(browser.csrf.is_some(), "the login answers a CSRF token");
    let key = browser.post(
        "/api/v1/api-keys",
        &json!({
            "name": "e2e",
            "scopes": ["aliases:read", "aliases:write", "domains:read", "domains:write", "account:read", "account:write"]
        }),
    );
    let token = key.ok()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {key:#?}"))
        .to_owned();
    let owner = w.http_with_key(&token);
    assert_eq!(owner.get("/api/v1/me").expect(200)["email"], OWNER);

    // A domain: publish its records, verify it.
    let domain = owner.post("/api/v1/domains", &json!({"name": DOMAIN}));
    let domain = domain.ok().clone();
    // The domain itself, at the top or under `domain`.
    let domain_id = domain["id"]
        .as_str()
        .or_else(|| domain["domain"]["id"].as_str())
        .unwrap_or_else(|| panic!("no domain id in {domain}"))
        .to_owned();
    let records = domain["records"].as_array().expect("records").clone();
    assert!(!records.is_empty(), "{domain}");
    w.set_dns(&dns_file(&records));
    let verified = owner.request("POST", &format!("/api/v1/domains/{domain_id}/verify"), None);
    assert_eq!(verified.status, 200, "{verified:#?}");

    // A mailbox: the verification mail arrives at the sink.
    let mailbox = owner.post("/api/v1/mailboxes", &json!({"address": OWNER_MAILBOX}));
    let mailbox_id = mailbox.ok()["id"].as_str().expect("mailbox id").to_owned();
    let verification = eventually("the verification mail at the sink", || {
        w.delivered()
            .into_iter()
            .find(|m| rcpts(m).contains(&OWNER_MAILBOX.to_owned()))
    });
    let code = verification_code(verification["data"].as_str().expect("data"));
    owner
        .post("/api/v1/mailboxes/verify", &json!({"token": code}))
        .ok();

    // An alias on the domain, to the mailbox.
    let alias_address = format!("shop@{DOMAIN}");
    let alias = owner.post(
        "/api/v1/aliases",
        &json!({"address": alias_address, "mailboxes": [mailbox_id]}),
    );
    let alias_id = alias.ok()["id"].as_str().expect("alias id").to_owned();

    // Mail through the alias with a real SMTP client reaches the sink.
    let before = w.delivered().len();
    let transcript = w.send("bob@outside.example", &[&alias_address], "through the api");
    assert_eq!(code_of(&transcript, "data "), "250", "{transcript:?}");
    let delivered = w.wait_delivered(before + 1);
    let forward = delivered
        .iter()
        .skip(before)
        .find(|m| rcpts(m).contains(&OWNER_MAILBOX.to_owned()))
        .unwrap_or_else(|| panic!("no forward to the mailbox: {delivered:?}"));
    assert!(
        forward["data"]
            .as_str()
            .is_some_and(|d| d.contains("Subject: through the api")),
        "{forward}"
    );

    // The API shows the counters and the event.
    let alias = owner.get(&format!("/api/v1/aliases/{alias_id}"));
    assert_eq!(alias.expect(200)["counters"]["forwarded"], 1, "{alias:#?}");
    let events = eventually("a delivered event for the alias", || {
        let page = owner.get("/api/v1/events");
        let items = page.expect(200)["items"].as_array()?.clone();
        let mine: Vec<Value> = items
            .into_iter()
            .filter(|e| e.to_string().contains(&alias_id))
            .collect();
        mine.iter()
            .any(|e| e.to_string().contains("\"delivered\""))
            .then_some(mine)
    });
    assert!(
        events
            .iter()
            .any(|e| e.to_string().contains("\"accepted\"")),
        "{events:?}"
    );

    // And /metrics counts the accepted message and both deliveries
    // (verification mail and forward).
    let text = w.http().get("/metrics").text;
    assert!(
        metric(&text, "smtpy_messages_accepted_total") >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "smtpy_deliveries_total{outcome=\"delivered\"}") >= 2.0,
        "{text}"
    );
    assert!(
        metric(&text, "smtpy_delivery_latency_seconds_count") >= 2.0,
        "{text}"
    );
}
