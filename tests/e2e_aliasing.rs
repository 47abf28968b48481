//! End to end, aliasing: alias-mode forwards signed for the alias domain
//! (checked by an independent DKIM verifier), replies through reverse
//! aliases (owner only, scrubbed), DMARC policy, bounces to signed bounce
//! addresses, rate limits and backscatter suppression — the reference
//! server as a process, Python clients and an `aiosmtpd` sink on loopback.
//!
//! Authentication reads DNS from a records file written by each test, so
//! nothing touches the network. Needs `python3` with `aiosmtpd`, `dkimpy`
//! and `PyNaCl`; without them the tests print `skipped: …` — except under
//! `CI`, where they fail.

#[path = "e2e/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use world::*;

const OWNER_MAILBOX: &str = "me@mail.test";

fn tools_ready() -> bool {
    if !python_ready() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("CI: python3 with dkimpy and PyNaCl is required (pip install dkimpy PyNaCl)");
    }
    if !ok {
        eprintln!("skipped: python3 dkimpy/PyNaCl not available (pip install dkimpy PyNaCl)");
    }
    ok
}

/// DNS the tests share: the owner's mailbox domain authorises loopback
/// (so replies pass SPF, aligned), a strict domain authorises nobody, a
/// bank publishes `p=reject` and authorises nobody.
const DNS: &str = r#"[txt]
"mail.test" = ["v=spf1 ip4:127.0.0.1 -all"]
"strict.test" = ["v=spf1 -all"]
"bank.test" = ["v=spf1 -all"]
"_dmarc.bank.test" = ["v=DMARC1; p=reject"]
[ip]
"#;

/// A world with alias.test hosted, `aliases` created, DNS set, `extra`
/// configuration applied, and the sink and server running.
fn world(aliases: &[(&str, &[&str])], extra: &str) -> World {
    let mut w = World::new();
    w.set_dns(DNS);
    w.add_config(extra);
    w.admin(&["domain", "add", "alias.test"]);
    for (alias, boxes) in aliases {
        let mut args = vec!["alias", "add", alias];
        for b in *boxes {
            args.extend(["--mailbox", b]);
        }
        w.admin(&args);
    }
    w.start_sink();
    w.start_server();
    w
}

/// The DKIM TXT records of alias.test as the admin command prints them.
fn dkim_records(w: &World) -> BTreeMap<String, String> {
    // Printed by `domain add` before the server started (a redb store
    // belongs to the running server).
    let out = std::fs::read_to_string(w.dir.path().join("dkim-records.txt")).unwrap_or_default();
    let mut records = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(5, ' ');
        let (Some(name), Some(_ttl), Some("IN"), Some("TXT"), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let value: String = rest
            .split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        records.insert(name.trim_end_matches('.').to_owned(), value);
    }
    records
}

/// Runs the independent verifier (dkimpy) on `message`; returns its output
/// and whether every signature passed.
fn dkimpy_verify(message: &str, records: &BTreeMap<String, String>) -> (bool, String) {
    use std::io::Write;
    let json = serde_json::to_string(records).expect("json");
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/dkim_verify.py"
        ))
        .arg(json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("verifier");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("verifier output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let head = data.split("\r\n\r\n").next().unwrap_or(data);
    head.split("\r\n")
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim())
}

fn angle_address(value: &str) -> String {
    let start = value.rfind('<').map_or(0, |i| i + 1);
    let end = value[start..].find('>').map_or(value.len(), |i| start + i);
    value[start..end].trim().to_owned()
}

fn data(m: &Value) -> String {
    m["data"].as_str().unwrap_or("").to_owned()
}

fn to_rcpt(messages: &[Value], rcpt: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| {
            m["rcpt_tos"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r.as_str() == Some(rcpt)))
        })
        .cloned()
        .collect()
}

fn wait_for(w: &World, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let until = Instant::now() + WAIT;
    loop {
        let got = w.delivered();
        if pred(&got) {
            return got;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; sink has {} messages; log:\n{}",
            got.len(),
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message_from(from_header: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from_header}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@outside.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        uuid_like(),
    )
}

/// Forward one message from bob@outside.test to shop@alias.test; returns
/// what the owner's mailbox got.
fn forward_one(w: &World) -> Value {
    let msg = message_from(
        "Bob Sender <bob@outside.test>",
        "shop@alias.test",
        "hello",
        "Hi, this is Bob.",
    );
    let t = w.send_raw("bob@outside.test", &["shop@alias.test"], &msg);
    assert!(t.iter().any(|l| l.starts_with("data 250")), "{t:?}");
    let got = wait_for(w, "the forward", |m| !to_rcpt(m, OWNER_MAILBOX).is_empty());
    to_rcpt(&got, OWNER_MAILBOX).remove(0)
}

fn world_with_records(aliases: &[(&str, &[&str])], extra: &str) -> World {
    let mut w = World::new();
    w.set_dns(DNS);
    w.add_config(extra);
    let out = w.admin_output(&["domain", "add", "alias.test"]);
    std::fs::write(w.dir.path().join("dkim-records.txt"), &out).expect("records");
    for (alias, boxes) in aliases {
        let mut args = vec!["alias", "add", alias];
        for b in *boxes {
            args.extend(["--mailbox", b]);
        }
        w.admin(&args);
    }
    w.start_sink();
    w.start_server();
    w
}

#[test]
fn alias_mode_forward_rewrites_from_and_verifies_with_dkimpy() {
    if !tools_ready() {
        return;
    }
    let w = world_with_records(&[("shop@alias.test", &[OWNER_MAILBOX])], "");
    let m = forward_one(&w);
    let d = data(&m);
    let from = header(&d, "From").expect("From");
    let reverse = angle_address(from);
    assert!(
        reverse.ends_with("@alias.test"),
        "From is a reverse alias on the alias domain: {from}"
    );
    assert!(from.contains("via smtpy"), "display format: {from}");
    assert!(
        header(&d, "X-Smtpy-Original-From").is_some_and(|v| v.contains("bob@outside.test")),
        "the owner still sees who wrote: {d}"
    );
    // The envelope sender is our signed bounce address, not the sender.
    let mail_from = m["mail_from"].as_str().unwrap_or("");
    assert!(
        mail_from.ends_with("@mx.smtpy.test"),
        "bounce address: {mail_from}"
    );
    assert!(!mail_from.contains("bob"), "{mail_from}");
    // Authentication-Results with our authserv-id.
    assert!(
        header(&d, "Authentication-Results").is_some_and(|v| v.starts_with("mx.smtpy.test")),
        "{d}"
    );
    // Both signatures (Ed25519 and RSA) verify with dkimpy, with d=alias.test.
    let records = dkim_records(&w);
    assert!(
        records.len() >= 2,
        "records printed by domain add: {records:?}"
    );
    let (ok, out) = dkimpy_verify(&d, &records);
    assert!(ok, "dkimpy: {out}\n{d}");
    assert!(
        out.contains("d=alias.test") && out.contains("ed25519") && out.contains("rsa"),
        "{out}"
    );
    // And a tampered copy fails.
    let (ok, _) = dkimpy_verify(&d.replace("this is Bob", "this is Eve"), &records);
    assert!(!ok, "tampered message must fail");
}

#[test]
fn owner_reply_reaches_the_contact_scrubbed_and_signed() {
    if !tools_ready() {
        return;
    }
    let w = world_with_records(&[("shop@alias.test", &[OWNER_MAILBOX])], "");
    let forwarded = forward_one(&w);
    let reverse = angle_address(header(&data(&forwarded), "From").expect("From"));

    let reply = format!(
        "From: Me Myself <{OWNER_MAILBOX}>\r\nTo: \"Bob Sender via smtpy\" <{reverse}>\r\nSubject: Re: hello\r\nMessage-ID: <reply-1@mail.test>\r\nIn-Reply-To: <x@outside.test>\r\nDate: Wed, 25 Nov 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThanks Bob!\r\n\r\n-- \r\nMe, {OWNER_MAILBOX}\r\n\r\nOn Tue, Bob Sender via smtpy <{reverse}> wrote:\r\n> Hi, this is Bob.\r\n"
    );
    let t = w.send_raw(OWNER_MAILBOX, &[&reverse], &reply);
    assert!(
        t.iter().any(|l| l.starts_with("data 250")),
        "{t:?}\n{}",
        w.log()
    );
    let got = wait_for(&w, "the reply", |m| {
        !to_rcpt(m, "bob@outside.test").is_empty()
    });
    let out = to_rcpt(&got, "bob@outside.test").remove(0);
    let d = data(&out);
    assert!(
        angle_address(header(&d, "From").expect("From")).eq_ignore_ascii_case("shop@alias.test"),
        "{d}"
    );
    assert!(
        !d.to_lowercase().contains(OWNER_MAILBOX),
        "mailbox leaked:\n{d}"
    );
    assert!(
        !d.to_lowercase().contains(&reverse.to_lowercase()),
        "reverse alias leaked:\n{d}"
    );
    assert!(d.contains("Thanks Bob!"), "{d}");
    let mail_from = out["mail_from"].as_str().unwrap_or("");
    assert!(
        !mail_from.contains("mail.test"),
        "envelope leaks the mailbox: {mail_from}"
    );
    let (ok, v) = dkimpy_verify(&d, &dkim_records(&w));
    assert!(ok, "dkimpy on the reply: {v}\n{d}");

    // Anyone else writing to the reverse alias: 550 5.7.1 at RCPT.
    let t = w.send_raw("eve@evil.test", &[&reverse], &reply);
    assert!(
        t.iter().any(|l| l.contains(" 550 ") && l.contains("5.7.1")),
        "{t:?}"
    );
    // A forged reverse alias (one character changed): 550 5.7.1.
    let mut forged = reverse.clone().into_bytes();
    let i = forged.iter().position(|&b| b == b'@').expect("@") - 2;
    forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).expect("utf8");
    let t = w.send_raw(OWNER_MAILBOX, &[&forged], &reply);
    assert!(
        t.iter().any(|l| l.contains(" 550 ") && l.contains("5.7.1")),
        "{t:?}"
    );
}

#[test]
fn reply_that_fails_spf_and_dkim_for_the_mailbox_domain_is_refused() {
    if !tools_ready() {
        return;
    }
    // The owner's second mailbox is on a domain whose SPF authorises nobody.
    let w = world_with_records(
        &[("shop@alias.test", &[OWNER_MAILBOX, "me@strict.test"])],
        "",
    );
    let forwarded = forward_one(&w);
    let reverse = angle_address(header(&data(&forwarded), "From").expect("From"));
    let reply = format!(
        "From: me@strict.test\r\nTo: {reverse}\r\nSubject: Re\r\nMessage-ID: <r2@strict.test>\r\n\r\nhi\r\n"
    );
    let t = w.send_raw("me@strict.test", &[&reverse], &reply);
    assert!(
        t.iter()
            .any(|l| l.starts_with("data 550") && l.contains("5.7.1")),
        "{t:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(to_rcpt(&w.delivered(), "bob@outside.test").is_empty());
}

#[test]
fn dmarc_reject_failure_is_refused_at_data() {
    if !tools_ready() {
        return;
    }
    let w = world(&[("shop@alias.test", &[OWNER_MAILBOX])], "");
    let msg = message_from("x@bank.test", "shop@alias.test", "pay now", "phish");
    let t = w.send_raw("x@bank.test", &["shop@alias.test"], &msg);
    assert!(
        t.iter()
            .any(|l| l.starts_with("data 550") && l.contains("5.7.1") && l.contains("DMARC")),
        "{t:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        to_rcpt(&w.delivered(), OWNER_MAILBOX).is_empty(),
        "nothing forwarded"
    );
}

#[test]
fn dsn_to_the_bounce_address_disables_the_alias_and_notifies_the_owner() {
    if !tools_ready() {
        return;
    }
    let w = world(
        &[("shop@alias.test", &[OWNER_MAILBOX])],
        "[bounces]\nalias_hard = 1\nmailbox_hard = 1\n",
    );
    let forwarded = forward_one(&w);
    let bounce_address = forwarded["mail_from"]
        .as_str()
        .expect("mail_from")
        .to_owned();
    let dsn = format!(
        "From: MAILER-DAEMON@mail.test\r\nTo: {bounce_address}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.test\r\n\r\nFinal-Recipient: rfc822; {OWNER_MAILBOX}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--b1--\r\n"
    );
    let t = w.send_raw("", &[&bounce_address], &dsn);
    assert!(
        t.iter().any(|l| l.starts_with("data 250")),
        "{t:?}\n{}",
        w.log()
    );
    // The owner hears about it.
    wait_for(&w, "the bounce notice", |m| {
        m.iter().any(|x| {
            data(x).to_lowercase().contains("bounce")
                && !to_rcpt(std::slice::from_ref(x), "operator@mx.smtpy.test").is_empty()
        })
    });
    // The alias is now disabled: mail to it is refused at RCPT.
    let msg = message_from("bob@outside.test", "shop@alias.test", "again", "x");
    let t = w.send_raw("bob@outside.test", &["shop@alias.test"], &msg);
    assert!(
        t.iter().any(|l| l.starts_with("rcpt shop@alias.test 550")),
        "{t:?}"
    );
    // A forged bounce address is refused without a lookup.
    let mut forged = bounce_address.clone().into_bytes();
    forged[3] = if forged[3] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).expect("utf8");
    let t = w.send_raw("", &[&forged], &dsn);
    assert!(
        t.iter().any(|l| l.contains(" 550 ") && l.contains("5.7.1")),
        "{t:?}"
    );
}

#[test]
fn alias_rate_limit_answers_450_temporarily() {
    if !tools_ready() {
        return;
    }
    let w = world(
        &[("shop@alias.test", &[OWNER_MAILBOX])],
        "[limits]\nalias_messages_per_hour = 2\n",
    );
    let mut codes = Vec::new();
    for i in 0..3 {
        let msg = message_from("bob@outside.test", "shop@alias.test", &format!("n{i}"), "x");
        let t = w.send_raw("bob@outside.test", &["shop@alias.test"], &msg);
        codes.push(
            t.iter()
                .find(|l| l.starts_with("rcpt "))
                .cloned()
                .unwrap_or_default(),
        );
    }
    assert!(
        codes[0].contains(" 250 ") && codes[1].contains(" 250 "),
        "{codes:?}"
    );
    assert!(
        codes[2].contains(" 450 ") && codes[2].contains("4.7.1"),
        "{codes:?}"
    );
}

#[test]
fn spam_rejection_of_an_unauthenticated_sender_sends_no_dsn() {
    if !tools_ready() {
        return;
    }
    let w = world(&[("shop@alias.test", &["spam-box@mail.test"])], "");
    let msg = message_from("bob@outside.test", "shop@alias.test", "buy", "cheap");
    let t = w.send_raw("bob@outside.test", &["shop@alias.test"], &msg);
    assert!(t.iter().any(|l| l.starts_with("data 250")), "{t:?}");
    // The owner is told about the rejection…
    wait_for(&w, "the bounce notice", |m| {
        !to_rcpt(m, "operator@mx.smtpy.test").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    // …but the unauthenticated sender gets no DSN (it would be backscatter).
    assert!(
        to_rcpt(&w.delivered(), "bob@outside.test").is_empty(),
        "backscatter DSN sent"
    );
}
