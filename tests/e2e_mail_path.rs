//! End to end: the reference server (`examples/server`) as a separate
//! process, a real SMTP client (Python `smtplib`) and a real downstream
//! server (`aiosmtpd`), all on loopback.
//!
//! Needs `python3` with `aiosmtpd` (`pip install aiosmtpd`). Without it the
//! tests print `skipped: …` and pass — except under `CI`, where they fail.
//! Every wait is bounded; every process is killed when a test ends.

#[path = "e2e/world.rs"]
mod world;

use std::process::Command;
use std::time::{Duration, Instant};

use world::*;

#[test]
fn forward_arrives_with_srs_sender_and_body_intact() {
    if !python_ready() {
        return;
    }
    // Forward mode: From kept, SRS envelope, ARC seal.
    let mut w = World::running_in("forward", &[("shop@alias.test", &["me@mail.test"])]);
    let t = w.send("bob@outside.test", &["Shop@Alias.Test"], "forward one");
    assert_eq!(code_of(&t, "rcpt Shop@Alias.Test "), "250");
    assert_eq!(code_of(&t, "data "), "250");
    let got = w.wait_delivered(1);
    assert_eq!(rcpts(&got[0]), ["me@mail.test"]);
    let from = got[0]["mail_from"].as_str().expect("mail_from");
    assert!(
        from.starts_with("SRS0=") && from.ends_with("@mx.smtpy.test"),
        "SRS envelope sender, got {from}"
    );
    let data = got[0]["data"].as_str().expect("data");
    assert!(data.contains("Subject: forward one"), "{data}");
    assert!(
        data.contains("\r\n.leading dot line\r\n") || data.contains("\n.leading dot line\n"),
        "dot line intact: {data}"
    );
    assert!(
        data.contains("\r\nReceived: from client.outside.example"),
        "our Received header: {data}"
    );
    assert!(
        data.contains("ARC-Seal: i=1;") && data.contains("From: Sender <bob@outside.test>"),
        "forward mode keeps From and seals: {data}"
    );

    // SIGTERM: the server stops cleanly.
    let server = w.server.take().expect("server");
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut child = server;
    let until = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < until, "server did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "clean exit after SIGTERM: {status:?}\n{}",
        w.log()
    );
}

#[test]
fn fan_out_to_two_mailboxes() {
    if !python_ready() {
        return;
    }
    let w = World::running(&[("news@alias.test", &["a@mail.test", "b@mail.test"])]);
    let t = w.send("carol@outside.test", &["news@alias.test"], "fan out");
    assert_eq!(code_of(&t, "data "), "250");
    w.wait_delivered(1);
    // Give a straggler the chance to show up: exactly two deliveries in all.
    std::thread::sleep(Duration::from_millis(500));
    let mut all: Vec<String> = w.delivered().iter().flat_map(rcpts).collect();
    all.sort();
    assert_eq!(all, ["a@mail.test", "b@mail.test"]);
}

#[test]
fn unknown_alias_is_550_and_foreign_domain_is_relay_denied() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    w.admin(&["domain", "add", "alias.test"]);
    w.admin(&[
        "alias",
        "add",
        "known@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    w.admin(&[
        "alias",
        "add",
        "off@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    w.admin(&["alias", "disable", "off@alias.test"]);
    w.start_sink();
    w.start_server();
    let t = w.send(
        "eve@outside.test",
        &[
            "nobody@alias.test",
            "someone@elsewhere.test",
            "off@alias.test",
            "user%elsewhere.test@alias.test",
        ],
        "refused",
    );
    assert_eq!(code_of(&t, "rcpt nobody@alias.test "), "550");
    assert!(
        t.iter()
            .any(|l| l.starts_with("rcpt nobody@alias.test 550") && l.contains("5.1.1")),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|l| l.starts_with("rcpt someone@elsewhere.test 550") && l.contains("5.7.1")),
        "{t:?}"
    );
    assert_eq!(code_of(&t, "rcpt off@alias.test "), "550", "disabled alias");
    assert_eq!(
        code_of(&t, "rcpt user%elsewhere.test@alias.test "),
        "550",
        "% hack is not relayed"
    );
    assert!(t.contains(&"refused".to_owned()), "{t:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(w.delivered().is_empty(), "nothing relayed");
}

#[test]
fn downstream_4xx_is_retried_and_delivered_once() {
    if !python_ready() {
        return;
    }
    let w = World::running(&[("grey@alias.test", &["tempfail-me@mail.test"])]);
    let t = w.send("dan@outside.test", &["grey@alias.test"], "greylisted");
    assert_eq!(code_of(&t, "data "), "250");
    let got = w.wait_delivered(1);
    assert_eq!(rcpts(&got[0]), ["tempfail-me@mail.test"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.delivered().len(), 1, "delivered exactly once");
}

#[test]
fn downstream_5xx_sends_a_dsn_without_the_mailbox() {
    if !python_ready() {
        return;
    }
    let w = World::running(&[("gone@alias.test", &["reject-Real.Person@mail.test"])]);
    let t = w.send("frank@outside.test", &["gone@alias.test"], "bounces");
    assert_eq!(code_of(&t, "data "), "250");
    // The DSN to the original sender (the owner also gets a bounce notice).
    let until = Instant::now() + WAIT;
    let dsn = loop {
        if let Some(m) = w
            .delivered()
            .into_iter()
            .find(|m| rcpts(m) == ["frank@outside.test"])
        {
            break m;
        }
        assert!(
            Instant::now() < until,
            "no DSN to the sender; log:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let dsn = &dsn;
    // aiosmtpd reports the null reverse-path as "<>".
    assert!(
        matches!(dsn["mail_from"].as_str(), Some("" | "<>")),
        "DSNs have the null sender: {:?}",
        dsn["mail_from"]
    );
    let data = dsn["data"].as_str().expect("data").to_lowercase();
    assert!(
        !data.contains("reject-real.person@mail.test"),
        "the mailbox leaked into the DSN:\n{data}"
    );
    assert!(
        !data.contains("reject-real.person"),
        "the mailbox's local part leaked:\n{data}"
    );
    assert!(
        data.contains("gone@alias.test"),
        "the DSN names the alias:\n{data}"
    );
    assert!(
        data.contains("multipart/report"),
        "RFC 3464 report:\n{data}"
    );
    std::thread::sleep(Duration::from_secs(2));
    // One DSN to the sender (no DSN about the DSN); the owner gets a bounce notice.
    let to_sender = w
        .delivered()
        .iter()
        .filter(|m| !rcpts(m).iter().any(|r| r.starts_with("operator@")))
        .count();
    assert_eq!(to_sender, 1, "one DSN, no DSN about the DSN");
}

#[test]
fn kill_9_after_250_then_restart_delivers() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    w.admin(&["domain", "add", "alias.test"]);
    w.admin(&[
        "alias",
        "add",
        "safe@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    // No sink yet: the message can only wait in the queue.
    w.start_server();
    let t = w.send("gina@outside.test", &["safe@alias.test"], "survives kill");
    assert_eq!(code_of(&t, "data "), "250");
    drop(w.server.take()); // SIGKILL right after the 250
    assert!(w.delivered().is_empty());
    w.start_sink();
    w.start_server();
    let got = w.wait_delivered(1);
    assert_eq!(rcpts(&got[0]), ["me@mail.test"]);
    assert!(
        got[0]["data"]
            .as_str()
            .unwrap_or("")
            .contains("Subject: survives kill")
    );
}

#[test]
fn bounce_to_srs_address_reaches_the_original_sender_and_forgeries_are_refused() {
    if !python_ready() {
        return;
    }
    let w = World::running_in("forward", &[("shop@alias.test", &["me@mail.test"])]);
    let t = w.send("henry@outside.test", &["shop@alias.test"], "gets a bounce");
    assert_eq!(code_of(&t, "data "), "250");
    let srs = w.wait_delivered(1)[0]["mail_from"]
        .as_str()
        .expect("mail_from")
        .to_owned();
    assert!(srs.starts_with("SRS0="), "{srs}");

    // A forged SRS address (one hash character changed) dies at RCPT.
    let mut forged: Vec<char> = srs.chars().collect();
    forged[6] = if forged[6] == 'a' { 'b' } else { 'a' };
    let forged: String = forged.into_iter().collect();
    let t = w.send("", &[&forged], "forged bounce");
    assert!(
        t.iter()
            .any(|l| l.starts_with(&format!("rcpt {forged} 550")) && l.contains("5.7.1")),
        "{t:?}"
    );
    // A non-bounce to an SRS address is refused too.
    let t = w.send("spam@outside.test", &[&srs], "not a bounce");
    assert_eq!(code_of(&t, &format!("rcpt {srs} ")), "550");

    // The real bounce (null sender) is relayed to the original sender.
    let t = w.send("", &[&srs], "the bounce");
    assert_eq!(code_of(&t, "data "), "250", "{t:?}");
    let got = w.wait_delivered(2);
    assert_eq!(rcpts(&got[1]), ["henry@outside.test"]);
    assert!(
        matches!(got[1]["mail_from"].as_str(), Some("" | "<>")),
        "relayed with the null sender"
    );
    assert!(
        got[1]["data"]
            .as_str()
            .unwrap_or("")
            .contains("Subject: the bounce")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.delivered().len(), 2, "nothing else was relayed");
}

#[test]
fn bulk_import_then_forward() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    w.admin(&["domain", "add", "alias.test"]);
    let list: String = (0..300)
        .map(|i| format!("{i}a@alias.test user{i}@dest.test\n"))
        .collect();
    let file = w.dir.path().join("aliases.txt");
    std::fs::write(&file, format!("# bulk\n\n{list}")).expect("write list");
    w.admin(&["alias", "import", file.to_str().expect("utf-8 path")]);
    // A line naming an unhosted domain fails with its line number and imports nothing more.
    std::fs::write(&file, "x@not-hosted.test me@mail.test\n").expect("write");
    let out = w
        .command()
        .args(["admin", "alias", "import"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains(":1: not-hosted.test is not hosted"));
    w.start_sink();
    w.start_server();
    let t = w.send("ivy@outside.test", &["299a@alias.test"], "bulk");
    assert_eq!(code_of(&t, "data "), "250");
    assert_eq!(rcpts(&w.wait_delivered(1)[0]), ["user299@dest.test"]);
}

#[test]
fn starttls_then_forward() {
    if !python_ready() {
        return;
    }
    let w = World::running(&[("tls@alias.test", &["me@mail.test"])]);
    let t = w.send_with(
        "kim@outside.test",
        &["tls@alias.test"],
        "over tls",
        &["starttls"],
    );
    assert_eq!(code_of(&t, "starttls "), "220", "{t:?}");
    assert!(
        t.contains(&"ehlo-after-tls starttls-offered=False".to_owned()),
        "no STARTTLS offered inside TLS: {t:?}"
    );
    assert_eq!(code_of(&t, "data "), "250", "{t:?}");
    let data = w.wait_delivered(1)[0]["data"]
        .as_str()
        .expect("data")
        .to_owned();
    assert!(
        data.contains("ESMTPS"),
        "the Received header records TLS: {data}"
    );
}
