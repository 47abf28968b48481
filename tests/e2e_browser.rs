//! The web interface end to end in a real browser: Debian's headless
//! Chromium driven by `playwright-core` (`tests/browser/e2e.mjs`), against
//! the reference server as a process with its mail sink.
//!
//! The script signs in, adds a domain (this test publishes its records)
//! and a mailbox (this test reads the code from the verification mail at
//! the sink), creates an alias, toggles it in place, creates a contact;
//! this test then sends a mail to the alias over SMTP and the script finds
//! its event on the alias page. It also posts a form without its CSRF token
//! (refused with 403) and fails on any Content-Security-Policy violation or
//! script error in the console. It takes the screenshots the user manual
//! shows (`SMTPY_SCREENSHOT_DIR=docs/screenshots` to refresh them).
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium chromium-driver`),
//! Node.js and `npm ci --prefix tests/browser`, and python3 with aiosmtpd.
//! Without them it prints `skipped: …` — except under `CI`, where it fails.

#[path = "e2e/world.rs"]
mod world;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use world::*;

const OWNER: &str = "owner@example.org";
const PASSWORD: &str = "a long enough password 42";
const MAILBOX: &str = "me@mail.test";
const DOMAIN: &str = "browser-domain.test";
/// The whole browser run stops after this, whatever happens.
const DEADLINE: Duration = Duration::from_secs(240);

fn chromium() -> PathBuf {
    std::env::var_os("SMTPY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium, Node.js and playwright-core are here. Under `CI` a
/// missing piece fails the test; elsewhere it is skipped with a message.
fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<&str> = [
        (!chromium().exists()).then_some("chromium (apt-get install chromium chromium-driver)"),
        (!node).then_some("node"),
        (!browser_dir().join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci --prefix tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    let text = missing.join(", ");
    if std::env::var_os("CI").is_some() {
        panic!("CI: the browser test needs {text}");
    }
    eprintln!("skipped: the browser test needs {text}");
    false
}

/// Answers one question of the script (see `tests/browser/e2e.mjs`).
fn answer(w: &World, owner: &mut Http, question: &str) -> String {
    let mut words = question.split_whitespace();
    match words.next() {
        Some("publish-dns") => {
            let name = words.next().unwrap_or_default();
            let domains = owner.get("/api/v1/domains");
            let domain = domains.ok()["items"]
                .as_array()
                .and_then(|items| items.iter().find(|d| d["name"] == name))
                .unwrap_or_else(|| panic!("no domain {name} in {domains:#?}"))
                .clone();
            let id = domain["id"].as_str().expect("domain id");
            let records = owner.get(&format!("/api/v1/domains/{id}/records"));
            let records = records.ok();
            let list = records["records"]
                .as_array()
                .or_else(|| records.as_array())
                .unwrap_or_else(|| panic!("no records in {records}"))
                .clone();
            w.set_dns(&dns_file(&list));
            "ok".to_owned()
        }
        Some("mailbox-code") => {
            let address = words.next().unwrap_or_default().to_owned();
            let mail = eventually("the verification mail at the sink", || {
                w.delivered()
                    .into_iter()
                    .find(|m| rcpts(m).contains(&address))
            });
            verification_code(mail["data"].as_str().expect("data"))
        }
        Some("send") => {
            let to = words.next().unwrap_or_default().to_owned();
            let subject: Vec<&str> = words.collect();
            let subject = subject.join(" ");
            let before = w.delivered().len();
            let transcript = w.send("sender@outside.example", &[&to], &subject);
            assert_eq!(code_of(&transcript, "data "), "250", "{transcript:?}");
            let got = w.wait_delivered(before + 1);
            let forwarded = got.iter().any(|m| {
                rcpts(m).contains(&MAILBOX.to_owned())
                    && m["data"].as_str().is_some_and(|d| d.contains(&subject))
            });
            if forwarded {
                "delivered"
            } else {
                "not at the sink"
            }
            .to_owned()
        }
        other => format!("ERROR unknown question {other:?}"),
    }
}

#[test]
fn the_web_interface_in_a_real_browser() {
    if !python_ready() || !browser_ready() {
        return;
    }
    let mut w = World::new();
    let admin_key = w.create_user_key("root@example.org", true);
    w.start_sink();
    w.start_server();
    let admin = w.http_with_key(&admin_key);
    admin
        .post(
            "/api/v1/users",
            &json!({"email": OWNER, "password": PASSWORD, "role": "admin"}),
        )
        .ok();
    let mut owner = w.http();
    owner.login(OWNER, PASSWORD).ok();

    let shots = std::env::var_os("SMTPY_SCREENSHOT_DIR")
        .map_or_else(|| w.dir.path().join("screenshots"), PathBuf::from);
    let mut child = Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .current_dir(browser_dir())
        .env(
            "SMTPY_BASE_URL",
            format!("http://127.0.0.1:{}", w.http_port),
        )
        .env("SMTPY_OWNER_EMAIL", OWNER)
        .env("SMTPY_OWNER_PASSWORD", PASSWORD)
        .env("SMTPY_DOMAIN", DOMAIN)
        .env("SMTPY_MAILBOX", MAILBOX)
        .env("SMTPY_SCREENSHOT_DIR", &shots)
        .env("SMTPY_CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let until = Instant::now() + DEADLINE;
    let mut transcript: Vec<String> = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                eprintln!("browser: {line}");
                if let Some(question) = line.strip_prefix("ASK ") {
                    let reply = answer(&w, &mut owner, question);
                    writeln!(stdin, "{reply}").expect("answer the script");
                    stdin.flush().expect("flush");
                }
                transcript.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the browser run passed {DEADLINE:?}; so far:\n{}",
                    transcript.join("\n")
                );
            }
        }
    }
    let status = child.wait().expect("node exit");
    assert!(
        status.success() && transcript.last().is_some_and(|l| l == "RESULT ok"),
        "the browser run failed ({status}):\n{}\nserver log:\n{}",
        transcript.join("\n"),
        w.log()
    );

    // What the browser did is real: the alias and the contact exist, the
    // mail reached the mailbox, and the screenshots are there.
    let aliases = owner.get("/api/v1/aliases");
    let alias = aliases.ok()["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|a| a["address"] == format!("shop@{DOMAIN}"))
        })
        .unwrap_or_else(|| panic!("no alias shop@{DOMAIN}: {aliases:#?}"))
        .clone();
    assert_eq!(alias["enabled"], true, "{alias}");
    let id = alias["id"].as_str().expect("alias id");
    let contacts = owner.get(&format!("/api/v1/aliases/{id}/contacts"));
    assert!(
        contacts.ok().to_string().contains("friend@outside.example"),
        "{contacts:#?}"
    );
    for name in [
        "login",
        "domain",
        "mailboxes",
        "aliases",
        "alias",
        "account",
        "admin-health",
        "aliases-phone",
    ] {
        let png = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 2_000,
            "{} is not a screenshot",
            png.display()
        );
    }
}
