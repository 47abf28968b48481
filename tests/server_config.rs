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

/// `check-config`'s output, which is the effective configuration as TOML.
fn effective(o: &Output) -> toml::Table {
    assert!(o.status.success(), "{}", stderr(o));
    let out = String::from_utf8_lossy(&o.stdout);
    out.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("check-config prints TOML: {e}\n{out}"))
}

/// The value at a dotted key (`http.listen`).
fn get<'a>(t: &'a toml::Table, key: &str) -> &'a toml::Value {
    let mut parts = key.split('.');
    let first = parts.next().expect("key");
    let mut v = t.get(first).unwrap_or_else(|| panic!("no {key} in {t:#?}"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no {key} in {t:#?}"));
    }
    v
}

fn text<'a>(t: &'a toml::Table, key: &str) -> &'a str {
    get(t, key)
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string"))
}

#[test]
fn defaults_need_no_file() {
    let t = effective(&check(None, &[]));
    assert_eq!(get(&t, "smtp.listen").as_array().map(Vec::len), Some(1));
    assert_eq!(get(&t, "smtp.listen")[0].as_str(), Some("127.0.0.1:2525"));
    assert_eq!(text(&t, "store.url"), "redb://smtpy-data/smtpy.redb");
    assert_eq!(text(&t, "http.listen"), "127.0.0.1:8080");
    assert_eq!(text(&t, "profile"), "development");
    assert_eq!(get(&t, "features.registration").as_bool(), Some(false));
    assert_eq!(
        text(&t, "http.bootstrap_token"),
        "(not set)",
        "no default credentials"
    );
    assert_eq!(text(&t, "secrets.key"), "generated smtpy-data/secret.key");
    assert_eq!(text(&t, "log.format"), "pretty");
}

#[test]
fn http_settings_come_from_the_file_and_the_environment() {
    let token = "a-bootstrap-token-of-enough-length-0123456789";
    let o = check(
        Some(
            "[http]\nlisten = \"127.0.0.1:9090\"\npublic_url = \"https://mail.example.org/\"\ntls = true\nopen_registration = true\ncors_origins = [\"https://app.example.org\"]\n",
        ),
        &[
            ("SMTPY_HTTP__ENABLED", "false"),
            ("SMTPY_HTTP_BOOTSTRAP_TOKEN", token),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let t = effective(&o);
    assert_eq!(get(&t, "http.enabled").as_bool(), Some(false));
    assert_eq!(text(&t, "http.listen"), "127.0.0.1:9090");
    assert_eq!(
        text(&t, "http.public_url"),
        "https://mail.example.org",
        "trailing slash dropped"
    );
    assert_eq!(get(&t, "http.tls").as_bool(), Some(true));
    assert_eq!(
        get(&t, "features.registration").as_bool(),
        Some(true),
        "[http] open_registration still switches registration on"
    );
    assert_eq!(
        get(&t, "http.cors_origins")[0].as_str(),
        Some("https://app.example.org")
    );
    assert_eq!(text(&t, "http.bootstrap_token"), "set (<redacted>)");
    assert!(!out.contains(token), "the token itself is never printed");
}

#[test]
fn admin_user_create_prints_a_one_time_key_and_refuses_a_second_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("smtpy.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    )
    .expect("write");
    let run = |args: &[&str]| {
        let mut c = server();
        c.arg("--config").arg(&config).arg("admin").args(args);
        c.output().expect("run server")
    };
    let o = run(&["user", "create", "--email", "root@example.org", "--admin"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let key = out
        .lines()
        .find(|l| l.starts_with("smtpy_"))
        .unwrap_or_else(|| panic!("no key printed: {out}"));
    assert_eq!(key.len(), "smtpy_".len() + 43, "256-bit key: {key}");
    assert!(out.contains("(admin)"), "{out}");

    let o = run(&["user", "create", "--email", "root@example.org"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));

    let short = dir.path().join("pw");
    std::fs::write(&short, "short\n").expect("write");
    let o = run(&[
        "user",
        "create",
        "--email",
        "other@example.org",
        "--password-file",
        short.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--password-file"), "{}", stderr(&o));
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
    let t = effective(&o);
    assert_eq!(get(&t, "smtp.max_recipients").as_integer(), Some(42));
    assert_eq!(get(&t, "smtp.listen")[1].as_str(), Some("127.0.0.1:2601"));
    assert_eq!(
        text(&t, "hostname"),
        "mx.file.test",
        "file values stay where not overridden"
    );
    assert_eq!(
        get(&t, "delivery.retry")[1].as_str(),
        Some("5m"),
        "durations parsed"
    );
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
        ("[dkim]\nalgorithms = [\"dsa\"]\n", &[], "dkim.algorithms"),
        ("[dkim]\ngrace = \"a week\"\n", &[], "dkim.grace"),
        (
            "[dkim]\ndelegate_to = \"not a domain\"\n",
            &[],
            "dkim.delegate_to",
        ),
        (
            "[limits]\nalias_messages_per_hour = 0\n",
            &[],
            "limits.alias_messages_per_hour",
        ),
        ("[bounces]\nmailbox_hard = 0\n", &[], "bounces.mailbox_hard"),
        ("[notify]\nfrom = \"nobody\"\n", &[], "notify.from"),
        (
            "[aliases]\nsender_format = \"a\\nb\"\n",
            &[],
            "aliases.sender_format",
        ),
        ("[auth]\nunknown = true\n", &[], "unknown field `unknown`"),
        (
            "",
            &[("SMTPY_SMTP__MAX_MESSAGE_SIZE", "12")],
            "smtp.max_message_size",
        ),
        ("[http]\nlisten = \"localhost\"\n", &[], "http.listen"),
        (
            "[http]\npublic_url = \"mail.example.org/x\"\n",
            &[],
            "http.public_url",
        ),
        ("[http]\ncors_origins = [\"*\"]\n", &[], "http.cors_origins"),
        (
            "[http]\nready_queue_backlog = 0\n",
            &[],
            "http.ready_queue_backlog",
        ),
        (
            "[http]\nbootstrap_token_file = \"/nonexistent/token\"\n",
            &[],
            "http.bootstrap_token_file",
        ),
        (
            "",
            &[("SMTPY_HTTP_BOOTSTRAP_TOKEN", "short")],
            "SMTPY_HTTP_BOOTSTRAP_TOKEN",
        ),
        ("[http]\nlisten_on = 1\n", &[], "unknown field `listen_on`"),
        (
            "[http]\napi_key_requests_per_minute = 0\n",
            &[],
            "http.api_key_requests_per_minute",
        ),
        ("", &[("SMTPY_HTTP__TLS", "\"maybe\"")], "tls"),
        (
            "[http]\ntrusted_proxies = [\"proxy.example\"]\n",
            &[],
            "http.trusted_proxies",
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

#[test]
fn reserved_local_parts_cannot_become_aliases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("smtpy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[auth]\nenabled = false\n[dkim]\nalgorithms = [\"ed25519\"]\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let run = |args: &[&str]| {
        let mut c = server();
        c.arg("--config").arg(&config).arg("admin").args(args);
        c.output().expect("run server")
    };
    let o = run(&["domain", "add", "alias.test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("._domainkey.alias.test. 3600 IN TXT \"v=DKIM1; k=ed25519; p="),
        "domain add prints the DKIM record: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    for reserved in ["r--abc@alias.test", "bounce=x@alias.test"] {
        let o = run(&["alias", "add", reserved, "--mailbox", "me@mail.test"]);
        assert_eq!(o.status.code(), Some(2), "{reserved}: {}", stderr(&o));
        assert!(stderr(&o).contains("reserved"), "{}", stderr(&o));
    }
    let o = run(&[
        "alias",
        "add",
        "shop@alias.test",
        "--mailbox",
        "me@mail.test",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn production_refuses_insecure_settings_naming_each_key() {
    let o = check(
        Some(
            "profile = \"production\"\n[http]\nlisten = \"0.0.0.0:8080\"\n[features]\nregistration = true\n[limits]\nenabled = false\n[auth]\ndns_records_file = \"dns.toml\"\n",
        ),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for key in [
        "tls.cert_file",
        "srs.secret_file",
        "secrets.key_file",
        "features.registration",
        "http.listen",
        "auth.dns_records_file",
    ] {
        assert!(err.contains(key), "{key} named: {err}");
    }
    assert!(err.contains("refuses 6 settings"), "{err}");
}

#[test]
fn production_starts_with_operator_secrets_and_never_prints_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "unused by check-config").expect("write");
    std::fs::write(&key, "unused by check-config").expect("write");
    let secret = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy0wMTIzNDU2Nzg5MA==";
    let srs = "c3JzLXNlY3JldC1vZi0zMi1ieXRlcy0wMTIzNDU2Nzg5MA==";
    let relay_password = "relay-password-never-printed";
    let o = check(
        Some(&format!(
            "profile = \"production\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n[delivery]\nrelay = \"smtp+starttls://smtp.example.net:587\"\nrelay_username = \"smtpy\"\n",
            cert.display().to_string(),
            key.display().to_string()
        )),
        &[
            ("SMTPY_SECRET_KEY", secret),
            ("SMTPY_SRS_SECRET", srs),
            ("SMTPY_RELAY_PASSWORD", relay_password),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let t = effective(&o);
    assert_eq!(text(&t, "profile"), "production");
    assert_eq!(
        text(&t, "secrets.key"),
        "environment SMTPY_SECRET_KEY (<redacted>)"
    );
    assert_eq!(
        text(&t, "srs.secret"),
        "environment SMTPY_SRS_SECRET (<redacted>)"
    );
    assert_eq!(
        text(&t, "delivery.relay_password"),
        "environment SMTPY_RELAY_PASSWORD (<redacted>)"
    );
    for s in [secret, srs, relay_password] {
        assert!(!out.contains(s), "a secret was printed: {out}");
    }
}

#[test]
fn a_store_password_is_masked_and_new_sections_are_validated() {
    let t = effective(&check(
        Some(
            "[store]\nurl = \"postgres://smtpy:hunter2-secret@db.internal/mail\"\n[log]\nformat = \"json\"\nlevel = \"warn,smtpy_smtp=debug\"\n[features]\nreplies = false\n[jobs]\nevent_retention = \"14d\"\n",
        ),
        &[],
    ));
    assert_eq!(
        text(&t, "store.url"),
        "postgres://smtpy:***@db.internal/mail"
    );
    assert_eq!(text(&t, "log.format"), "json");
    assert_eq!(text(&t, "log.level"), "warn,smtpy_smtp=debug");
    assert_eq!(get(&t, "features.replies").as_bool(), Some(false));
    assert_eq!(text(&t, "jobs.event_retention"), "14d");

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("profile = \"staging\"\n", &[], "profile"),
        ("", &[("SMTPY_PROFILE", "prod-ish")], "profile"),
        ("[log]\nformat = \"xml\"\n", &[], "log.format"),
        ("[log]\nlevel = \"=[\"\n", &[], "log.level"),
        (
            "[jobs]\nevent_retention = \"10s\"\n",
            &[],
            "jobs.event_retention",
        ),
        (
            "[jobs]\ndns_recheck_interval = \"often\"\n",
            &[],
            "jobs.dns_recheck_interval",
        ),
        (
            "[features]\nunknown_flag = true\n",
            &[],
            "unknown field `unknown_flag`",
        ),
        (
            "[features]\nregistration = false\n[http]\nopen_registration = true\n",
            &[],
            "features.registration",
        ),
        (
            "[secrets]\nkey_file = \"k\"\n",
            &[("SMTPY_SECRET_KEY", "x")],
            "secrets.key_file",
        ),
        (
            "[delivery]\nrelay_username = \"u\"\n",
            &[],
            "delivery.relay_username",
        ),
    ];
    for (config, env, key) in cases {
        let o = check(Some(config), env);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{config:?} {env:?}: {}",
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(key),
            "{config:?} must name {key}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn flags_win_over_the_environment_and_the_file() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("smtpy.toml");
        std::fs::write(&path, "data_dir = \"from-file\"\n[log]\nlevel = \"warn\"\n")
            .expect("write");
        server()
            .arg("--config")
            .arg(&path)
            .args(args)
            .arg("check-config")
            .envs(env.iter().copied())
            .output()
            .expect("run server")
    };
    let o = run(
        &[
            "--data-dir",
            "from-flag",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
        &[
            ("SMTPY_DATA_DIR", "from-env"),
            ("SMTPY_LOG__FORMAT", "pretty"),
        ],
    );
    let t = effective(&o);
    assert_eq!(text(&t, "data_dir"), "from-flag");
    assert_eq!(text(&t, "log.format"), "json");
    assert_eq!(text(&t, "log.level"), "debug");
    assert_eq!(text(&t, "store.url"), "redb://from-flag/smtpy.redb");

    // --profile production refuses the development defaults …
    let o = run(&["--profile", "production"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("tls.cert_file"), "{}", stderr(&o));
    // … and wins over SMTPY_PROFILE.
    let o = run(
        &["--profile", "development"],
        &[("SMTPY_PROFILE", "production")],
    );
    assert_eq!(text(&effective(&o), "profile"), "development");
    // A bad flag value is a usage error naming the flag.
    let o = run(&["--log-format", "xml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--log-format"), "{}", stderr(&o));
}
