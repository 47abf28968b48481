//! The reference server runs its background jobs under leases and shows
//! them at `/metrics` and `GET /api/v1/admin/jobs`; feature flags switched
//! by an admin through the API take effect on the mail path at once.
//!
//! Needs `python3` with `aiosmtpd`; skipped otherwise (failed under `CI`).

#[path = "e2e/world.rs"]
mod world;

use std::time::{Duration, Instant};

use serde_json::json;
use world::*;

const JOBS: [&str; 7] = [
    "purge-deleted-aliases",
    "session-cleanup",
    "expire-aliases",
    "usage-rollup",
    "event-retention",
    "dkim-rotation",
    "dns-recheck",
];

#[test]
fn jobs_run_at_start_and_are_visible_to_operators() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    let key = w.create_user_key("root@example.org", true);
    w.admin(&["domain", "add", "alias.test"]);
    w.start_sink();
    w.start_server();
    let admin = w.http_with_key(&key);
    // Every job is due at start; each records a run.
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        let r = admin.get("/api/v1/admin/jobs");
        let list = r.ok().as_array().cloned().unwrap_or_default();
        let done = JOBS.iter().all(|name| {
            list.iter()
                .any(|j| j["job"] == *name && j["last_ok"] == json!(true))
        });
        if done {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "not every job ran: {list:#?}\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for j in &jobs {
        assert!(
            j["holder"]
                .as_str()
                .is_some_and(|h| h.starts_with("mx.smtpy.test:")),
            "the lease names this instance: {j}"
        );
        assert!(j["last_success_at"].as_i64().is_some(), "{j}");
    }
    let metrics = w.http().get("/metrics").text;
    for name in JOBS {
        assert!(
            metrics.contains(&format!(
                "smtpy_job_runs_total{{job=\"{name}\",outcome=\"ok\"}} 1"
            )),
            "{name} counted once:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "smtpy_job_last_success_timestamp_seconds{{job=\"{name}\"}}"
            )),
            "{name}:\n{metrics}"
        );
    }
    // Operators without the admin scope see nothing.
    let user = w.create_user_key("user@example.org", false);
    assert_eq!(w.http_with_key(&user).get("/api/v1/admin/jobs").status, 403);
}

#[test]
fn an_admin_switches_replies_off_and_on_through_the_api() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    let key = w.create_user_key("root@example.org", true);
    w.admin(&["domain", "add", "alias.test"]);
    w.admin(&[
        "alias",
        "add",
        "shop@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    w.start_sink();
    w.start_server();
    let admin = w.http_with_key(&key);
    assert_eq!(
        admin.get("/api/v1/admin/features").ok()["replies"],
        json!(true)
    );

    // A forward gives the sender a reverse alias.
    let t = w.send("bob@outside.test", &["shop@alias.test"], "hello");
    assert_eq!(code_of(&t, "data "), "250");
    let got = w.wait_delivered(1);
    let data = got[0]["data"].as_str().expect("data");
    let from = data
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("from:"))
        .expect("From");
    let start = from.rfind('<').expect("<") + 1;
    let reverse = &from[start..from[start..].find('>').expect(">") + start];

    // Replies off: the reverse alias is refused at RCPT with the flag's reply.
    let r = admin.request(
        "PATCH",
        "/api/v1/admin/features",
        Some(&json!({ "replies": false })),
    );
    assert_eq!(r.ok()["replies"], json!(false), "{}", r.text);
    let t = w.send("me@mail.test", &[reverse], "reply while off");
    assert!(
        t.iter()
            .any(|l| l.contains(" 550 ") && l.contains("Replies through aliases are disabled")),
        "{t:?}"
    );
    // An unknown flag is a 400 problem, not a silent no-op.
    let r = admin.request(
        "PATCH",
        "/api/v1/admin/features",
        Some(&json!({ "teleport": true })),
    );
    assert_eq!(r.status, 400, "{}", r.text);

    // Replies on again: the flag's refusal is gone (this unauthenticated
    // reply is refused for another reason, authentication).
    let r = admin.request(
        "PATCH",
        "/api/v1/admin/features",
        Some(&json!({ "replies": true })),
    );
    assert_eq!(r.ok()["replies"], json!(true));
    let t = w.send("me@mail.test", &[reverse], "reply while on");
    assert!(
        !t.iter()
            .any(|l| l.contains("Replies through aliases are disabled")),
        "{t:?}"
    );
    // The stored choice survives a restart and wins over [features].
    admin.request(
        "PATCH",
        "/api/v1/admin/features",
        Some(&json!({ "replies": false })),
    );
    w.restart_server();
    let admin = w.http_with_key(&key);
    assert_eq!(
        admin.get("/api/v1/admin/features").ok()["replies"],
        json!(false)
    );
    assert!(
        w.log()
            .contains("feature flags stored by an administrator are in force")
    );
}

#[test]
fn a_domain_added_while_the_server_runs_signs_its_first_mail() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    w.start_sink();
    w.start_server();
    // Through the control socket: the server's signer has the new keys by
    // the time the command answers.
    w.admin(&["domain", "create", "alias.test"]);
    w.admin(&[
        "alias",
        "create",
        "shop@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    let t = w.send("bob@outside.test", &["shop@alias.test"], "first mail");
    assert_eq!(code_of(&t, "data "), "250", "{t:?}");
    let got = w.wait_delivered(1);
    let data = got[0]["data"].as_str().expect("data");
    // Unfold the header lines, then look at each DKIM-Signature.
    let head = data
        .split("\r\n\r\n")
        .next()
        .unwrap_or(data)
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    let domains: Vec<&str> = head
        .split("\r\n")
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .filter_map(|l| l.split("; ").find_map(|t| t.trim().strip_prefix("d=")))
        .collect();
    assert!(
        domains.contains(&"alias.test"),
        "signed for the alias domain at once, got d= {domains:?}:\n{head}"
    );
}
