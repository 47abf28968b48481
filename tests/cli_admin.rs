//! The operator's `admin` and `dkim` commands, the hidden `--check-args`,
//! and the control socket that forwards store commands to a running
//! server. Needs `cargo build --example server` first.

#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/world.rs"]
mod world;

use cli::Setup;

/// Lines of `text` that contain every one of `words`.
fn rows<'a>(text: &'a str, words: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| words.iter().all(|w| l.split_whitespace().any(|x| x == *w)))
        .collect()
}

#[test]
fn check_args_prints_ok_and_touches_nothing() {
    let s = Setup::redb();
    let run = s.run(&[
        "--check-args",
        "admin",
        "user",
        "delete",
        "someone@example.org",
    ]);
    assert_eq!(run.ok(), "ok\n");
    assert!(!s.data().exists(), "--check-args created {:?}", s.data());
    let run = s.run(&[
        "--check-args",
        "backup",
        "--out",
        "x",
        "--profile",
        "production",
    ]);
    assert_eq!(run.ok(), "ok\n");
    // A command line that does not parse is still a usage error.
    s.run(&["--check-args", "admin", "user", "frobnicate"])
        .fails(2, "frobnicate");
    assert!(!s.data().exists());
}

fn admin_lifecycle(s: &Setup) {
    // Users.
    let created = s.run(&["admin", "user", "create", "--email", "bob@example.org"]);
    assert!(created.ok().contains("API key"), "{created:?}");
    s.run(&["admin", "user", "create", "--email", "bob@example.org"])
        .fails(2, "exists already");
    s.run(&["admin", "user", "create", "--email", "not an address"])
        .fails(2, "--email");
    let list = s.run(&["admin", "user", "list"]);
    assert_eq!(
        rows(list.ok(), &["bob@example.org", "user", "active"]).len(),
        1
    );
    s.run(&["admin", "user", "disable", "bob@example.org"]).ok();
    let list = s.run(&["admin", "user", "list"]);
    assert_eq!(rows(list.ok(), &["bob@example.org", "disabled"]).len(), 1);
    s.run(&["admin", "user", "enable", "bob@example.org"]).ok();
    let list = s.run(&["admin", "user", "list"]);
    assert_eq!(rows(list.ok(), &["bob@example.org", "active"]).len(), 1);
    s.run(&["admin", "user", "disable", "nobody@example.org"])
        .fails(2, "no account nobody@example.org");

    // Domains (`create`, and the old spelling `add`).
    let created = s.run(&["admin", "domain", "create", "alias.test"]);
    assert!(
        created.ok().contains("_domainkey.alias.test"),
        "{created:?}"
    );
    s.run(&["admin", "domain", "add", "other.test"]).ok();
    s.run(&["admin", "domain", "create", "not a domain!"])
        .fails(2, "not a domain!");
    let list = s.run(&["admin", "domain", "list"]);
    assert_eq!(rows(list.ok(), &["alias.test", "enabled"]).len(), 1);
    assert_eq!(rows(list.ok(), &["other.test", "enabled"]).len(), 1);
    s.run(&["admin", "domain", "disable", "alias.test"]).ok();
    let list = s.run(&["admin", "domain", "list"]);
    assert_eq!(rows(list.ok(), &["alias.test", "disabled"]).len(), 1);
    s.run(&["admin", "domain", "enable", "alias.test"]).ok();
    let list = s.run(&["admin", "domain", "list"]);
    assert_eq!(rows(list.ok(), &["alias.test", "enabled"]).len(), 1);

    // Mailboxes: the operator account owns them by default.
    s.run(&["admin", "mailbox", "create", "me@mail.test"]).ok();
    s.run(&["admin", "mailbox", "create", "me@mail.test"])
        .fails(2, "exists already");
    s.run(&[
        "admin",
        "mailbox",
        "create",
        "bob@mail.test",
        "--owner",
        "bob@example.org",
    ])
    .ok();
    s.run(&[
        "admin",
        "mailbox",
        "create",
        "x@mail.test",
        "--owner",
        "nobody@example.org",
    ])
    .fails(2, "no account");
    let list = s.run(&["admin", "mailbox", "list"]);
    assert_eq!(
        rows(
            list.ok(),
            &[
                "me@mail.test",
                "owner=operator@mx.cli.test",
                "verified",
                "enabled"
            ]
        )
        .len(),
        1,
        "{list:?}"
    );
    let bobs = s.run(&["admin", "mailbox", "list", "--owner", "bob@example.org"]);
    assert_eq!(bobs.ok().lines().count(), 1, "{bobs:?}");
    assert!(bobs.stdout.contains("bob@mail.test"));
    s.run(&["admin", "mailbox", "disable", "bob@mail.test"])
        .ok();
    let bobs = s.run(&["admin", "mailbox", "list", "--owner", "bob@example.org"]);
    assert_eq!(rows(bobs.ok(), &["bob@mail.test", "disabled"]).len(), 1);
    s.run(&["admin", "mailbox", "enable", "bob@mail.test"]).ok();
    let bobs = s.run(&["admin", "mailbox", "list", "--owner", "bob@example.org"]);
    assert_eq!(rows(bobs.ok(), &["bob@mail.test", "enabled"]).len(), 1);

    // Aliases (`create`, and the old spelling `add`).
    s.run(&[
        "admin",
        "alias",
        "create",
        "shop@alias.test",
        "--mailbox",
        "me@mail.test",
    ])
    .ok();
    s.run(&[
        "admin",
        "alias",
        "add",
        "news@alias.test",
        "--mailbox",
        "me@mail.test",
        "--mode",
        "forward",
    ])
    .ok();
    s.run(&[
        "admin",
        "alias",
        "create",
        "x@unhosted.test",
        "--mailbox",
        "me@mail.test",
    ])
    .fails(2, "unhosted.test is not hosted");
    s.run(&[
        "admin",
        "alias",
        "create",
        "shop@alias.test",
        "--mailbox",
        "me@mail.test",
    ])
    .fails(2, "already exists");
    let list = s.run(&["admin", "alias", "list"]);
    assert_eq!(
        rows(
            list.ok(),
            &["shop@alias.test", "enabled", "alias", "me@mail.test"]
        )
        .len(),
        1,
        "{list:?}"
    );
    assert_eq!(rows(list.ok(), &["news@alias.test", "forward"]).len(), 1);
    s.run(&["admin", "alias", "disable", "shop@alias.test"])
        .ok();
    let list = s.run(&["admin", "alias", "list", "--domain", "alias.test"]);
    assert_eq!(rows(list.ok(), &["shop@alias.test", "disabled"]).len(), 1);
    s.run(&["admin", "alias", "enable", "shop@alias.test"]).ok();
    let list = s.run(&["admin", "alias", "list", "--domain", "alias.test"]);
    assert_eq!(rows(list.ok(), &["shop@alias.test", "enabled"]).len(), 1);
    let other = s.run(&["admin", "alias", "list", "--domain", "other.test"]);
    assert_eq!(other.ok(), "", "no alias on other.test");

    // Deleting what is in use is refused with exit 2.
    s.run(&["admin", "domain", "delete", "alias.test"])
        .fails(2, "still used by aliases");
    s.run(&["admin", "mailbox", "delete", "me@mail.test"])
        .fails(2, "still used");
    s.run(&["admin", "domain", "delete", "other.test"]).ok();
    let list = s.run(&["admin", "domain", "list"]);
    assert!(!list.ok().contains("other.test"), "{list:?}");

    // Alias delete: gone from the list, the domain still refuses (the trash).
    s.run(&["admin", "alias", "delete", "shop@alias.test"]).ok();
    let list = s.run(&["admin", "alias", "list"]);
    assert!(!list.ok().contains("shop@alias.test"), "{list:?}");
    s.run(&["admin", "alias", "enable", "shop@alias.test"])
        .fails(2, "no alias shop@alias.test");
    s.run(&["admin", "domain", "delete", "alias.test"])
        .fails(2, "still used by aliases");

    // Import.
    let file = s.dir.path().join("aliases.txt");
    std::fs::write(
        &file,
        "# alias mailbox…\nimport1@alias.test me@mail.test\n\nimport2@alias.test new@mail.test me@mail.test\n",
    )
    .expect("write");
    let imported = s.run(&["admin", "alias", "import", file.to_str().expect("utf-8")]);
    assert!(imported.ok().contains("2 aliases imported"), "{imported:?}");
    let list = s.run(&["admin", "alias", "list", "--domain", "alias.test"]);
    assert_eq!(
        rows(
            list.ok(),
            &["import2@alias.test", "new@mail.test,me@mail.test"]
        )
        .len(),
        1,
        "{list:?}"
    );

    // Users own things; deleting one deletes them.
    s.run(&["admin", "user", "delete", "bob@example.org"]).ok();
    let list = s.run(&["admin", "user", "list"]);
    assert!(!list.ok().contains("bob@example.org"), "{list:?}");
    let list = s.run(&["admin", "mailbox", "list"]);
    assert!(!list.ok().contains("bob@mail.test"), "{list:?}");

    // DKIM.
    let dns = s.run(&["dkim", "dns", "alias.test"]);
    let dns = dns.ok();
    assert!(
        dns.contains("._domainkey.alias.test. 3600 IN TXT \"v=DKIM1;"),
        "{dns}"
    );
    assert!(
        dns.contains("alias.test. 3600 IN MX 10 mx.cli.test."),
        "{dns}"
    );
    assert!(dns.contains("\"v=spf1 include:mx.cli.test ~all\""), "{dns}");
    assert!(
        dns.contains("_dmarc.alias.test. 3600 IN TXT \"v=DMARC1;"),
        "{dns}"
    );
    let old = s.run(&["admin", "domain", "dkim-records", "alias.test"]);
    assert!(old.ok().contains("._domainkey.alias.test."), "{old:?}");
    s.run(&["dkim", "generate", "alias.test"])
        .fails(2, "already has keys");
    let rotated = s.run(&["dkim", "rotate", "alias.test"]);
    assert!(rotated.ok().contains("new selectors"), "{rotated:?}");
    let list = s.run(&["admin", "domain", "list"]);
    let line = rows(list.ok(), &["alias.test"]).join("");
    let selectors = line
        .split("dkim=")
        .nth(1)
        .map(|s| s.split(',').count())
        .unwrap_or(0);
    assert_eq!(
        selectors, 4,
        "two keys per algorithm after a rotation: {line}"
    );
    s.run(&["dkim", "dns", "unhosted.test"])
        .fails(2, "unhosted.test is not hosted");
}

/// `dkim generate` adds the algorithm a domain lacks, once.
#[test]
fn dkim_generate_adds_a_missing_algorithm() {
    let s = Setup::redb();
    let mut text = std::fs::read_to_string(&s.config).expect("config");
    text.push_str("[dkim]\nalgorithms = [\"ed25519\"]\n");
    std::fs::write(&s.config, text).expect("config");
    let created = s.run(&["admin", "domain", "create", "alias.test"]);
    assert!(created.ok().contains("k=ed25519"), "{created:?}");
    assert!(!created.stdout.contains("k=rsa"), "{created:?}");
    let generated = s.run(&["dkim", "generate", "alias.test", "--algorithm", "rsa"]);
    assert!(generated.ok().contains("new selectors"), "{generated:?}");
    let dns = s.run(&["dkim", "dns", "alias.test"]);
    assert!(dns.ok().contains("k=rsa"), "{dns:?}");
    assert!(dns.stdout.contains("k=ed25519"), "{dns:?}");
    s.run(&["dkim", "generate", "alias.test", "--algorithm", "rsa"])
        .fails(2, "already has keys");
    s.run(&["dkim", "generate", "alias.test", "--algorithm", "dsa"])
        .fails(2, "dsa");
}

/// `--data-dir` wins over the file: the store is created there.
#[test]
fn data_dir_flag_overrides_the_file() {
    let s = Setup::redb();
    let elsewhere = s.dir.path().join("elsewhere");
    let dir = elsewhere.to_str().expect("utf-8");
    s.run(&["--data-dir", dir, "admin", "domain", "create", "alias.test"])
        .ok();
    assert!(elsewhere.join("smtpy.redb").is_file());
    assert!(!s.data().join("smtpy.redb").exists());
    let list = s.run(&["admin", "domain", "list", "--data-dir", dir]);
    assert!(list.ok().contains("alias.test"), "{list:?}");
}

#[test]
fn admin_commands_on_redb() {
    admin_lifecycle(&Setup::redb());
}

#[test]
fn admin_commands_on_sqlite() {
    admin_lifecycle(&Setup::sqlite());
}

/// While the server runs on redb, store commands go through the control
/// socket: an alias created that way takes mail at once.
#[test]
fn control_socket_serves_commands_while_the_server_runs() {
    if !world::python_ready() {
        return;
    }
    let mut w = world::World::new();
    w.admin(&["domain", "add", "alias.test"]);
    w.start_sink();
    w.start_server();
    let socket = w.dir.path().join("data").join("control.sock");
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&socket).expect("the control socket exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let config = w.dir.path().join("smtpy.toml");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(cli::binary())
            .env_remove("SMTPY_DATA_DIR")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run");
        cli::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let created = run(&[
        "admin",
        "alias",
        "create",
        "live@alias.test",
        "--mailbox",
        "box@mail.test",
    ]);
    assert!(
        created.ok().contains("alias live@alias.test added"),
        "{created:?}"
    );
    let transcript = w.send(
        "someone@outside.test",
        &["live@alias.test"],
        "through the socket",
    );
    assert_eq!(
        world::code_of(&transcript, "rcpt live@alias.test "),
        "250",
        "{transcript:?}"
    );
    assert_eq!(world::code_of(&transcript, "data "), "250");
    let got = w.wait_delivered(1);
    assert_eq!(world::rcpts(&got[0]), vec!["box@mail.test".to_owned()]);

    let list = run(&["admin", "alias", "list"]);
    assert_eq!(rows(list.ok(), &["live@alias.test", "enabled"]).len(), 1);
    // The running server sees changes made through the socket at once.
    run(&["admin", "alias", "disable", "live@alias.test"]).ok();
    let refused = w.send(
        "someone@outside.test",
        &["live@alias.test"],
        "after disable",
    );
    assert!(
        world::code_of(&refused, "rcpt live@alias.test ").starts_with('5'),
        "{refused:?}"
    );
    run(&["admin", "alias", "enable", "live@alias.test"]).ok();
    // Errors come back with their exit code.
    run(&[
        "admin",
        "alias",
        "create",
        "x@unhosted.test",
        "--mailbox",
        "a@b.test",
    ])
    .fails(2, "not hosted");
    run(&["restore", "--from", "nothing.redb"]).fails(2, "stop the server first");
    run(&["migrate", "down", "--to", "1"]).fails(2, "cannot be downgraded");
    let status = run(&["migrate", "status"]);
    assert!(status.ok().contains("schema version"), "{status:?}");
    assert!(w.log().contains("control command"), "the server ran them");

    // A server killed without cleanup leaves the socket; the next start
    // replaces it.
    w.server = None;
    assert!(socket.exists());
    run(&["admin", "alias", "list"]).ok();
    w.start_server();
    let list = run(&["admin", "alias", "list"]);
    assert_eq!(rows(list.ok(), &["live@alias.test"]).len(), 1);
}

/// `admin domain disable` sticks on a domain its owner verified through the
/// API: mail to its aliases is refused exactly like mail to a domain that
/// is not hosted, the owner's `verify` is `409` (so neither the owner nor
/// the DNS re-check, which applies the same rule, can turn it back on), and
/// `admin domain enable` makes it take mail again.
#[test]
fn an_admins_domain_disable_sticks_while_the_server_runs() {
    if !world::python_ready() {
        return;
    }
    let mut w = world::World::new();
    let key = w.create_user_key("owner@example.org", false);
    w.start_sink();
    w.start_server();
    let owner = w.http_with_key(&key);

    // The owner adds the domain and proves control of it in DNS.
    let created = owner.post(
        "/api/v1/domains",
        &serde_json::json!({"name": "owned.test"}),
    );
    let created = created.expect(201).clone();
    let id = created["domain"]["id"]
        .as_str()
        .expect("domain id")
        .to_owned();
    let verification = created["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["purpose"] == "verification")
        .unwrap_or_else(|| panic!("no verification record in {created}"))
        .clone();
    let name = verification["name"].as_str().expect("name");
    let value = verification["value"].as_str().expect("value");
    w.set_dns(&format!(
        "[txt]\n{} = [{}]\n[ip]\n",
        serde_json::Value::from(name.trim_end_matches('.')),
        serde_json::Value::from(value.trim_matches('"'))
    ));
    let verify = |expect: u16| {
        owner
            .request("POST", &format!("/api/v1/domains/{id}/verify"), None)
            .expect(expect)
            .clone()
    };
    assert_eq!(verify(200)["verified"], true);

    // An alias on it (through the control socket) takes mail.
    w.admin_output(&[
        "alias",
        "create",
        "shop@owned.test",
        "--mailbox",
        "box@mail.test",
    ]);
    let rcpt_code = |subject: &str| {
        let t = w.send("someone@outside.test", &["shop@owned.test"], subject);
        world::code_of(&t, "rcpt shop@owned.test ")
    };
    assert_eq!(rcpt_code("before"), "250");
    w.wait_delivered(1);
    let unhosted = w.send("someone@outside.test", &["shop@unhosted.test"], "x");
    let unhosted = world::code_of(&unhosted, "rcpt shop@unhosted.test ");
    assert!(unhosted.starts_with('5'), "{unhosted}");

    w.admin_output(&["domain", "disable", "owned.test"]);
    let list = w.admin_output(&["domain", "list"]);
    assert_eq!(rows(&list, &["owned.test", "disabled"]).len(), 1, "{list}");
    assert_eq!(
        rcpt_code("while disabled"),
        unhosted,
        "refused like a domain that is not hosted"
    );
    // The owner cannot verify it back (the record is still published).
    let refused = verify(409);
    assert_eq!(refused["detail"], "an administrator disabled this domain");
    let shown = owner.get(&format!("/api/v1/domains/{id}"));
    let shown = shown.expect(200);
    assert_eq!(shown["domain"]["disabled"], true, "{shown}");
    assert_eq!(shown["domain"]["verified"], true, "verification kept");
    assert_eq!(rcpt_code("still disabled"), unhosted);
    assert_eq!(w.delivered().len(), 1, "nothing delivered while disabled");

    w.admin_output(&["domain", "enable", "owned.test"]);
    let list = w.admin_output(&["domain", "list"]);
    assert_eq!(rows(&list, &["owned.test", "enabled"]).len(), 1, "{list}");
    assert_eq!(rcpt_code("enabled again"), "250");
    w.wait_delivered(2);
    assert_eq!(verify(200)["domain"]["disabled"], false);
}
