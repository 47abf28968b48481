//! End to end: an online backup of a running server whose downstream is
//! down (so mail stays queued), taken while more mail arrives; restored
//! into a fresh data directory, a new server delivers every message the
//! backup holds — exactly once each.
//!
//! redb goes through the control socket (the server owns the file);
//! SQLite is backed up directly (`VACUUM INTO`) while the server writes.
//! Needs `cargo build --example server` and python3 with aiosmtpd.

#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/world.rs"]
mod world;

use std::path::Path;
use std::time::{Duration, Instant};

use cli::Run;
use world::World;

fn run(w: &World, args: &[&str]) -> Run {
    let out = std::process::Command::new(cli::binary())
        .arg("--config")
        .arg(w.dir.path().join("smtpy.toml"))
        .args(args)
        .output()
        .expect("run");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Switches a fresh world's store to SQLite.
fn use_sqlite(w: &World) {
    let path = w.dir.path().join("smtpy.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    let data = w.dir.path().join("data");
    let text = text.replace(
        &format!("url = \"redb://{}/smtpy.redb\"", data.display()),
        &format!("url = \"sqlite://{}/smtpy.db\"", data.display()),
    );
    assert!(text.contains("sqlite://"), "the store line moved: {text}");
    std::fs::write(path, text).expect("config");
}

/// The key files of a data directory (DKIM sealing key, SRS key, service
/// DKIM keys): a restored store needs the keys that sealed its secrets.
fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for entry in std::fs::read_dir(from).expect("data dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with("smtpy.") || name == "control.sock" {
            continue;
        }
        if path.is_dir() {
            copy_keys(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy key");
        }
    }
}

/// The number in the `queue` row of a backup report.
fn queued_rows(report: &str) -> usize {
    report
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("queue")).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no queue row in {report}"))
}

fn subjects(w: &World) -> Vec<String> {
    w.delivered()
        .iter()
        .filter_map(|m| {
            m["data"]
                .as_str()?
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

fn backup_and_restore(sqlite: bool) {
    let mut w = World::new();
    if sqlite {
        use_sqlite(&w);
    }
    w.admin(&["domain", "add", "alias.test"]);
    w.admin(&["alias", "add", "a@alias.test", "--mailbox", "box@mail.test"]);
    // No sink: delivery fails temporarily and the mail stays queued.
    w.start_server();
    const BEFORE: usize = 8;
    const DURING: usize = 8;
    for n in 0..BEFORE {
        let t = w.send("s@outside.test", &["a@alias.test"], &format!("before {n}"));
        assert_eq!(world::code_of(&t, "data "), "250", "{t:?}");
    }
    let backup = w.dir.path().join("backup.store");
    let report = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for n in 0..DURING {
                let t = w.send("s@outside.test", &["a@alias.test"], &format!("during {n}"));
                assert_eq!(world::code_of(&t, "data "), "250", "{t:?}");
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let report = run(&w, &["backup", "--out", backup.to_str().expect("utf-8")]);
        sender.join().expect("sender");
        report
    });
    let text = report.ok();
    assert!(text.contains("verified"), "{report:?}");
    let in_backup = queued_rows(text);
    assert!(
        (BEFORE..=BEFORE + DURING).contains(&in_backup),
        "{in_backup} queued messages in the backup: {text}"
    );
    if !sqlite {
        assert!(
            w.log().contains("control command"),
            "went through the server"
        );
    }
    // Everything sent is queued on the old server.
    let queued = run(&w, &["queue", "list"]);
    assert_eq!(queued.ok().lines().count(), BEFORE + DURING, "{queued:?}");
    w.server = None;

    // A fresh data directory (with the old keys), the backup restored.
    let mut fresh = World::new();
    if sqlite {
        use_sqlite(&fresh);
    }
    copy_keys(&w.dir.path().join("data"), &fresh.dir.path().join("data"));
    let broken = fresh.dir.path().join("broken.store");
    let bytes = std::fs::read(&backup).expect("backup");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).expect("write");
    run(
        &fresh,
        &["restore", "--from", broken.to_str().expect("utf-8")],
    )
    .fails(1, "restore refused");
    let restored = run(
        &fresh,
        &["restore", "--from", backup.to_str().expect("utf-8")],
    );
    assert!(restored.ok().contains("restored"), "{restored:?}");
    run(
        &fresh,
        &["restore", "--from", backup.to_str().expect("utf-8")],
    )
    .fails(2, "--force");
    fresh.start_sink();
    fresh.start_server();
    fresh.wait_delivered(in_backup);
    // Give stragglers (duplicates, mail that was not in the backup) time to show.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = subjects(&fresh);
    assert_eq!(got.len(), in_backup, "each message once: {got:?}");
    for n in 0..BEFORE {
        assert!(
            got.contains(&format!("before {n}")),
            "before {n} was queued when the backup began: {got:?}"
        );
    }
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "no duplicates: {got:?}");
    let left = run(&fresh, &["queue", "list"]);
    assert_eq!(left.ok(), "", "the restored queue drained");
}

#[test]
fn redb_backup_through_the_control_socket_restores_every_queued_message() {
    if !world::python_ready() {
        return;
    }
    backup_and_restore(false);
}

#[test]
fn sqlite_online_backup_restores_every_queued_message() {
    if !world::python_ready() {
        return;
    }
    backup_and_restore(true);
}
