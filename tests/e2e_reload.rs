//! `SIGHUP` reloads what can change while the server runs — `[limits]`, the
//! `[tls]` certificate, `[log] level`, `[features]` — without dropping a
//! connection, refuses a configuration that does not validate (the running
//! one stays), and names the changed settings that need a restart.
//!
//! Needs `python3` with `aiosmtpd`; skipped otherwise (failed under `CI`).

#[path = "e2e/world.rs"]
mod world;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use world::*;

fn write_cert(dir: &std::path::Path, name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![format!("{name}.example")]).expect("cert");
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert.cert.pem()).expect("write");
    std::fs::write(&k, cert.signing_key.serialize_pem()).expect("write");
    (c.display().to_string(), k.display().to_string())
}

fn probe(port: u16) -> String {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/tls_probe.py"
        ))
        .args([&port.to_string(), "once"])
        .output()
        .expect("probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn hup(w: &World) {
    let pid = w.server.as_ref().expect("server").0.id();
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits until the server log contains `needle` `n` times.
fn wait_log(w: &World, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = w.log();
        if log.matches(needle).count() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} x{n} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sections(first_cert: &(String, String), limit: u32, extra: &str) -> String {
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n[limits]\nip_messages_per_hour = {limit}\n{extra}",
        first_cert.0, first_cert.1
    )
}

#[test]
fn sighup_reloads_limits_and_certificate_without_dropping_connections() {
    if !python_ready() {
        return;
    }
    let mut w = World::new();
    let config = w.dir.path().join("smtpy.toml");
    let base = std::fs::read_to_string(&config).expect("config");
    // Loopback is exempt from limits by default; this test wants them.
    let base = base.replace("[smtp]\n", "[smtp]\nlimit_exempt = []\n");
    let one = write_cert(w.dir.path(), "one");
    let two = write_cert(w.dir.path(), "two");
    std::fs::write(&config, format!("{base}{}", sections(&one, 1000, ""))).expect("config");
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

    let before = probe(w.smtp_port);
    assert!(before.starts_with("cert "), "{before}");
    // A connection opened before the reload, past STARTTLS.
    let mut held = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/e2e/tls_probe.py"
        ))
        .args([&w.smtp_port.to_string(), "hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("held connection");
    let mut held_out = BufReader::new(held.stdout.take().expect("stdout"));
    let mut line = String::new();
    held_out.read_line(&mut line).expect("held cert");
    assert_eq!(
        line.trim(),
        before,
        "the same certificate before the reload"
    );

    // New certificate files, a limit of 1 per hour, a changed restart-only key.
    std::fs::copy(&two.0, &one.0).expect("copy cert");
    std::fs::copy(&two.1, &one.1).expect("copy key");
    std::fs::write(
        &config,
        format!(
            "{base}{}",
            sections(
                &one,
                1,
                "[bounces]\nalias_hard = 9\n[log]\nlevel = \"info,server=debug\"\n"
            )
        ),
    )
    .expect("config");
    hup(&w);
    let log = wait_log(&w, "configuration reloaded", 1);
    assert!(log.contains("tls certificate"), "{log}");
    assert!(log.contains("limits"), "{log}");
    assert!(log.contains("log.level = info,server=debug"), "{log}");
    assert!(
        log.contains("take effect only after a restart") && log.contains("bounces"),
        "{log}"
    );

    // New connections get the new certificate …
    let after = probe(w.smtp_port);
    assert_ne!(after, before, "the reloaded certificate is served");
    // … the held connection is still alive and delivers its message.
    writeln!(held.stdin.as_mut().expect("stdin")).expect("go");
    let mut rest = String::new();
    for _ in 0..2 {
        held_out.read_line(&mut rest).expect("held reply");
    }
    assert!(rest.contains("rcpt 250"), "{rest}");
    assert!(rest.contains("data 250"), "{rest}");
    assert!(held.wait().expect("held exit").success());
    // The first message of the hour used the budget; under 1 per hour the
    // next one is refused (the limit was 1000 before the reload).
    let t = w.send("bob@outside.test", &["shop@alias.test"], "over the limit");
    assert!(
        t.iter()
            .any(|l| l.starts_with("mail 450") || l.starts_with("rcpt shop@alias.test 450")),
        "rate limited after the reload: {t:?}"
    );

    // A configuration that does not validate is refused; the server keeps running.
    let broken = base.replace("[smtp]\n", "[smtp]\nmax_recipients = 0\n");
    std::fs::write(&config, format!("{broken}{}", sections(&one, 1, ""))).expect("config");
    hup(&w);
    let log = wait_log(&w, "reload refused", 1);
    assert!(log.contains("smtp.max_recipients"), "{log}");
    assert_eq!(probe(w.smtp_port), after, "still serving, same certificate");
    assert_eq!(w.wait_delivered(1).len(), 1);
}
