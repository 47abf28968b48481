//! `queue list|show|retry|delete|purge` against a running server (redb:
//! through its control socket) whose downstream is down, so mail stays
//! queued. Needs `cargo build --example server` and python3 with aiosmtpd.

#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/world.rs"]
mod world;

use std::time::Duration;

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

fn ids(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn queue_commands_act_on_queued_mail() {
    if !world::python_ready() {
        return;
    }
    let mut w = World::new();
    w.admin(&["domain", "add", "alias.test"]);
    w.admin(&["alias", "add", "a@alias.test", "--mailbox", "box@mail.test"]);
    // No sink: every delivery attempt fails temporarily.
    w.start_server();
    for n in 0..3 {
        let t = w.send("s@outside.test", &["a@alias.test"], &format!("queued {n}"));
        assert_eq!(world::code_of(&t, "data "), "250", "{t:?}");
    }
    let list = run(&w, &["queue", "list"]);
    let queued = ids(list.ok());
    assert_eq!(queued.len(), 3, "{list:?}");
    for line in list.stdout.lines() {
        assert!(line.contains(" queued "), "{line}");
        assert!(line.contains("rcpts=1/1"), "{line}");
    }
    assert_eq!(run(&w, &["queue", "list", "--held"]).ok(), "");

    let show = run(&w, &["queue", "show", &queued[0]]);
    let text = show.ok();
    assert!(text.contains(&format!("id: {}", queued[0])), "{text}");
    assert!(text.contains("recipient: box@mail.test pending"), "{text}");
    assert!(!text.contains("Hello through smtpy"), "no body: {text}");

    let retried = run(&w, &["queue", "retry", &queued[0]]);
    assert!(retried.ok().contains("is due now"), "{retried:?}");
    run(&w, &["queue", "retry"]).fails(2, "--all");
    let all = run(&w, &["queue", "retry", "--all"]);
    assert!(all.ok().contains("3 messages are due now"), "{all:?}");

    let deleted = run(&w, &["queue", "delete", &queued[0]]);
    assert!(
        deleted
            .ok()
            .contains(&format!("deleted message {}", queued[0])),
        "{deleted:?}"
    );
    let left = ids(run(&w, &["queue", "list"]).ok());
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&queued[0]));
    run(&w, &["queue", "show", &queued[0]]).fails(2, "no message");
    run(&w, &["queue", "delete", "not-an-id"]).fails(2, "not a message id");

    let none = run(&w, &["queue", "purge", "--older-than", "1h"]);
    assert!(none.ok().contains("0 messages purged"), "{none:?}");
    run(&w, &["queue", "purge", "--older-than", "soon"]).fails(2, "--older-than");
    assert_eq!(ids(run(&w, &["queue", "list"]).ok()).len(), 2);
    let purged = run(&w, &["queue", "purge"]);
    assert!(purged.ok().contains("2 messages purged"), "{purged:?}");
    assert_eq!(run(&w, &["queue", "list"]).ok(), "");

    // One more, then the downstream comes up: only it is delivered.
    let t = w.send("s@outside.test", &["a@alias.test"], "survivor");
    assert_eq!(world::code_of(&t, "data "), "250", "{t:?}");
    w.start_sink();
    let retried = run(&w, &["queue", "retry", "--all"]);
    assert!(retried.ok().contains("due now"), "{retried:?}");
    let got = w.wait_delivered(1);
    std::thread::sleep(Duration::from_secs(2));
    let got_later = w.delivered();
    assert_eq!(
        got_later.len(),
        1,
        "deleted and purged mail is never delivered"
    );
    assert!(
        got[0]["data"]
            .as_str()
            .unwrap_or_default()
            .contains("Subject: survivor"),
        "{:?}",
        got[0]
    );
}
