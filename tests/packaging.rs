//! The packaging files agree with the code: the `Dockerfile` builds and
//! starts the server example the way the operator contract says (binary,
//! ports, data directory, non-root user, a working health check), the
//! systemd unit starts an existing subcommand with the hardening it
//! promises, and `docs/deployment.md` describes both.
//!
//! No Docker engine or systemd runs here: the files are checked against
//! the server binary instead (`check-config` with the image's environment,
//! the health check's own command against a running server,
//! `systemd-analyze verify` when it is installed).

#[path = "e2e/world.rs"]
mod world;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use world::{World, server_binary};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Dockerfile instructions: (KEYWORD, arguments), continuation lines
/// joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// `text` with every run of whitespace made one space.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The instructions of the last stage (the image that runs).
fn runtime_stage(all: &[(String, String)]) -> &[(String, String)] {
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    &all[last_from..]
}

fn args_of<'a>(all: &'a [(String, String)], keyword: &str) -> Vec<&'a str> {
    all.iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, a)| a.as_str())
        .collect()
}

/// `ENV` assignments (`K=V`, values optionally in single or double quotes).
fn env_of(all: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for args in args_of(all, "ENV") {
        let mut chars = args.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() {
                break;
            }
            let mut value = String::new();
            match chars.peek().copied() {
                Some(q @ ('\'' | '"')) => {
                    chars.next();
                    value.extend(chars.by_ref().take_while(|c| *c != q));
                }
                _ => {
                    while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                        value.push(c);
                    }
                }
            }
            vars.push((key.trim().to_owned(), value));
        }
    }
    vars
}

/// The port of every `host:port` in `text`.
fn ports_in(text: &str) -> BTreeSet<u16> {
    text.split(|c: char| c == '"' || c == ',' || c == '[' || c == ']' || c.is_whitespace())
        .filter_map(|s| s.rsplit_once(':'))
        .filter_map(|(_, p)| p.parse().ok())
        .collect()
}

fn server_help() -> String {
    let out = Command::new(server_binary())
        .arg("--help")
        .output()
        .expect("server --help");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `name` is a subcommand `server --help` lists.
fn is_subcommand(name: &str) -> bool {
    server_help()
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// Checks a server command line without running it: with the hidden
/// `--check-args` flag where the binary has it (prints `ok`), else the
/// subcommand must be one `--help` lists.
fn assert_command_line(args: &[&str]) {
    let probe = Command::new(server_binary())
        .arg("--check-args")
        .output()
        .expect("server --check-args");
    if probe.status.success() && String::from_utf8_lossy(&probe.stdout).trim() == "ok" {
        let out = Command::new(server_binary())
            .args(args)
            .arg("--check-args")
            .output()
            .expect("server");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
            "server {args:?} --check-args: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let mut rest = args.iter();
    let sub = loop {
        match rest.next() {
            Some(a) if *a == "--config" || *a == "--profile" || *a == "--data-dir" => {
                rest.next();
            }
            Some(a) if a.starts_with("--") => {}
            Some(a) => break *a,
            None => break "serve",
        }
    };
    assert!(
        is_subcommand(sub),
        "{sub:?} is not a subcommand:\n{}",
        server_help()
    );
}

#[test]
fn the_dockerfile_builds_the_server_example_and_runs_it_unprivileged() {
    let all = instructions(&read("Dockerfile"));
    let froms = args_of(&all, "FROM");
    let cargo: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let msrv = cargo["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    assert_eq!(
        froms.first().copied(),
        Some(format!("rust:{msrv}-slim-bookworm AS build").as_str()),
        "the builder uses the workspace's Rust"
    );
    assert_eq!(froms.last().copied(), Some("debian:bookworm-slim"));

    // The example the Cargo manifest names, built in release mode.
    let example = cargo["example"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["path"].as_str() == Some("examples/server/main.rs"))
        })
        .and_then(|e| e["name"].as_str())
        .expect("[[example]] for examples/server/main.rs");
    let build = words(&args_of(&all, "RUN").join(" "));
    assert!(
        build.contains("cargo build --release") && build.contains(&format!("--example {example}")),
        "{build}"
    );
    assert!(
        build.contains(&format!("target/release/examples/{example} /out/smtpy")),
        "{build}"
    );

    let run = runtime_stage(&all);
    // The entry point is the binary copied from the build stage.
    let copied: Vec<&str> = args_of(run, "COPY")
        .into_iter()
        .filter(|a| a.starts_with("--from=build /out/smtpy "))
        .filter_map(|a| a.split_whitespace().last())
        .collect();
    let entry: Vec<String> =
        serde_json::from_str(args_of(run, "ENTRYPOINT")[0]).expect("ENTRYPOINT as a JSON array");
    assert_eq!(
        copied,
        [entry[0].as_str()],
        "ENTRYPOINT runs the copied binary"
    );
    let cmd: Vec<String> = serde_json::from_str(args_of(run, "CMD")[0]).expect("CMD JSON");
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert_eq!(cmd, ["serve"]);
    assert_command_line(&cmd);

    // Only CA certificates on top of the base image.
    let runtime_runs = words(&args_of(run, "RUN").join(" "));
    assert!(
        runtime_runs.contains("apt-get install -y --no-install-recommends ca-certificates &&"),
        "{runtime_runs}"
    );

    // Non-root, with the user created in the image.
    let user = args_of(run, "USER");
    assert_eq!(user, ["smtpy"]);
    assert!(runtime_runs.contains("useradd --system"), "{runtime_runs}");

    // Data, ports and where the server listens agree.
    let env = env_of(run);
    let var = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no ENV {k} in {env:?}"))
    };
    assert_eq!(var("SMTPY_DATA_DIR"), "/var/lib/smtpy");
    assert_eq!(args_of(run, "VOLUME"), ["[\"/var/lib/smtpy\"]"]);
    let exposed: BTreeSet<u16> = args_of(run, "EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.parse().expect("a port"))
        .collect();
    assert_eq!(exposed, BTreeSet::from([25, 587, 8080]));
    let mut listening = ports_in(&var("SMTPY_SMTP__LISTEN"));
    listening.extend(ports_in(&var("SMTPY_HTTP__LISTEN")));
    assert_eq!(listening, exposed, "the image listens where it EXPOSEs");

    let health = args_of(run, "HEALTHCHECK").join(" ");
    assert!(
        health.contains("/healthz") && health.contains("SMTPY_HTTP__LISTEN"),
        "{health}"
    );
}

#[test]
fn the_images_environment_is_a_valid_configuration() {
    let all = instructions(&read("Dockerfile"));
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = Command::new(server_binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("SMTPY_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env_of(runtime_stage(&all)) {
        c.env(k, v);
    }
    // The volume's place, here a temporary directory.
    c.env("SMTPY_DATA_DIR", data.path());
    let out = c.arg("check-config").output().expect("check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config with the image's ENV: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for addr in ["0.0.0.0:25", "0.0.0.0:587", "0.0.0.0:8080"] {
        assert!(stdout.contains(addr), "{addr} not in:\n{stdout}");
    }
}

#[test]
fn the_health_check_command_passes_on_a_running_server_and_fails_without_one() {
    let all = instructions(&read("Dockerfile"));
    let health = args_of(runtime_stage(&all), "HEALTHCHECK").join(" ");
    let json = &health[health.find("CMD [").expect("HEALTHCHECK CMD [...]") + 4..];
    let argv: Vec<String> = serde_json::from_str(json).expect("HEALTHCHECK CMD as JSON");
    let check = |http_listen: &str| {
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("SMTPY_HTTP__LISTEN", http_listen)
            .output()
            .expect("run the health check")
            .status
    };

    let mut w = World::new();
    w.start_server();
    let up = check(&format!("0.0.0.0:{}", w.http_port));
    assert!(up.success(), "healthy server reported as {up}");
    drop(w.server.take());
    let down = check(&format!("0.0.0.0:{}", w.http_port));
    assert!(!down.success(), "a stopped server reported as healthy");
}

/// `Key=Value` lines of a systemd unit (all values of repeated keys).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn the_systemd_unit_starts_a_real_subcommand_hardened() {
    let unit = read("packaging/smtpy.service");
    let one = |key: &str| {
        let v = unit_values(&unit, key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    };
    assert_eq!(one("Type"), "simple", "no sd_notify in the server");
    assert_eq!(one("User"), "smtpy");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NoNewPrivileges"), "true");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ReadWritePaths"), "/var/lib/smtpy");
    assert_eq!(one("PrivateTmp"), "true");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("StateDirectory"), "smtpy", "creates /var/lib/smtpy");

    // The binary the Dockerfile installs, with arguments the CLI takes.
    let exec = one("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/smtpy"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args.last(), Some(&"serve"), "{exec}");
    assert_command_line(&args);

    // systemd's own parser, where it is installed (with a binary that exists).
    let verifier = Command::new("systemd-analyze").arg("--version").output();
    if verifier.is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("smtpy.service");
        let local = unit.replace(
            "/usr/local/bin/smtpy",
            &server_binary().display().to_string(),
        );
        std::fs::write(&path, local).expect("unit");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze verify");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("systemd-analyze not installed: the unit's syntax was not verified by systemd");
    }
}

#[test]
fn the_build_context_leaves_out_build_output_and_secrets() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target/", ".git/", "*.key"] {
        assert!(rules.contains(&must), "{must} not ignored: {rules:?}");
    }
}

#[test]
fn the_deployment_guide_describes_both_files_and_what_was_not_run() {
    let doc = read("docs/deployment.md");
    for needle in [
        "Dockerfile",
        "packaging/smtpy.service",
        "docker build",
        "systemctl",
        "kill -9",
        "lease",
        "Neither file has been run",
    ] {
        assert!(
            doc.contains(needle),
            "docs/deployment.md does not mention {needle:?}"
        );
    }
}
