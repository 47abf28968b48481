//! The reference server's configuration contract: TOML file, `SMTPY_*`
//! overrides, and a bad value → exit code 2 with a message naming the key.

use std::path::PathBuf;
use std::process::{Command, Output};

fn server() -> Command {
    let exe = std::env::current_exe().expect("test binary");
    let bin: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("server");
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("SMTPY_") {
            c.env_remove(k);
        }
    }
    c
}

fn check(config: Option<&str>, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = server();
    if let Some(text) = config {
        let path = dir.path().join("smtpy.toml");
        std::fs::write(&path, text).expect("write");
        c.arg("--config").arg(path);
    }
    c.arg("check-config").envs(env.iter().copied());
    c.output().expect("run server")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn defaults_need_no_file() {
    let o = check(None, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("127.0.0.1:2525"), "{out}");
    assert!(out.contains("redb://smtpy-data/smtpy.redb"), "{out}");
}

#[test]
fn environment_overrides_the_file() {
    let o = check(
        Some("hostname = \"mx.file.test\"\n[smtp]\nmax_recipients = 10\n"),
        &[
            ("SMTPY_SMTP__MAX_RECIPIENTS", "42"),
            (
                "SMTPY_SMTP__LISTEN",
                "[\"127.0.0.1:2600\", \"127.0.0.1:2601\"]",
            ),
            ("SMTPY_DELIVERY__RETRY", "[\"1s\", \"5m\"]"),
            ("SMTPY_TEST_SOMETHING_ELSE", "ignored"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("max_recipients: 42"), "{out}");
    assert!(out.contains("127.0.0.1:2601"), "{out}");
    assert!(
        out.contains("mx.file.test"),
        "file values stay where not overridden: {out}"
    );
    assert!(out.contains("300s"), "durations parsed: {out}");
}

#[test]
fn bad_values_exit_2_naming_the_key() {
    /// (config file, environment, what the message must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("[smtp]\nmax_recipients = 0\n", &[], "smtp.max_recipients"),
        (
            "[smtp]\nlisten = [\"not-an-address\"]\n",
            &[],
            "smtp.listen",
        ),
        ("[delivery]\nretry = [\"soon\"]\n", &[], "delivery.retry"),
        ("[delivery]\nexpire = \"5 days\"\n", &[], "delivery.expire"),
        ("[delivery]\nrelay = \"ftp://x:1\"\n", &[], "delivery.relay"),
        ("[store]\nurl = \"mysql://x\"\n", &[], "store.url"),
        (
            "[smtp]\nunknown_key = 1\n",
            &[],
            "unknown field `unknown_key`",
        ),
        ("hostname = \"bad host\"\n", &[], "hostname"),
        ("[tls]\ncert_file = \"c.pem\"\n", &[], "tls.cert_file"),
        ("this is not toml", &[], "not valid TOML"),
        (
            "",
            &[("SMTPY_SMTP__MAX_MESSAGE_SIZE", "12")],
            "smtp.max_message_size",
        ),
    ];
    for (config, env, key) in cases {
        let o = check(Some(config), env);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{config:?} {env:?} should be refused: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(key),
            "{config:?}: message should name {key:?}: {}",
            stderr(&o)
        );
    }
}
