//! The embedding examples run and do what their documentation says: the
//! mail reaches the custom transport, and a custom store passes the whole
//! backend conformance suite.
//!
//! `cargo test` (without `--test`) builds the examples; with `--test examples`
//! alone, run `cargo build --examples` first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
        .join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --examples` (or `cargo test`, which builds them)",
        bin.display()
    );
    bin
}

fn run(name: &str) -> (String, String) {
    let out = Command::new(example(name)).output().expect("run example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn embedded_delivers_the_message_to_the_custom_transport() {
    let (out, _) = run("embedded");
    assert!(
        out.contains("250 2.0.0 Queued as"),
        "the SMTP front end queued the message:\n{out}"
    );
    assert!(
        out.contains(r#"delivered to [EmailAddress("me@mail.example")]"#),
        "the forward went to the alias's mailbox:\n{out}"
    );
    assert!(
        out.contains("Subject: hi") && out.contains("X-Smtpy-Loop: mx.example"),
        "the forwarded bytes carry the message and the loop marker:\n{out}"
    );
    assert!(
        out.contains("mail arrived at the custom transport"),
        "{out}"
    );
}

/// The test names listed in `smtpy_core::conformance_suite!`.
fn suite_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/smtpy-core/src/testing/mod.rs");
    let text = std::fs::read_to_string(path).expect("read the suite");
    let start = text
        .find("macro_rules! conformance_suite")
        .expect("the suite macro");
    let list = &text[start..];
    let list = &list[list.find("$factory;").expect("the name list") + "$factory;".len()..];
    let list = &list[..list.find('}').expect("end of the name list")];
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn custom_store_passes_the_whole_conformance_suite() {
    let names = suite_names();
    assert!(names.len() > 50, "parsed the suite's list: {names:?}");
    let (out, err) = run("custom_store");
    let expected = format!(
        "conformance suite on mystore: {} passed, 0 failed",
        names.len()
    );
    assert!(
        out.contains(&expected),
        "want {expected:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    // The example lists the tests itself: keep the list complete.
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/custom_store.rs"
    ))
    .expect("read the example");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !source.contains(&format!("    {n},")))
        .collect();
    assert!(
        missing.is_empty(),
        "examples/custom_store.rs does not run these conformance tests: {missing:?}"
    );
}
