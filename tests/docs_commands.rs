//! The documentation cannot drift from the code: every reference-server
//! command line, every API call and every configuration key written in
//! README.md and docs/**/*.md is checked against the real thing.
//!
//! - `cargo run --example server -- ARGS` and `server ARGS` in shell blocks:
//!   `server --check-args ARGS` must print `ok` (clap accepts the line);
//! - `curl … /api/v1/PATH` in shell blocks and `METHOD /api/v1/PATH` in
//!   `http` blocks: the method and path must be an operation of
//!   `smtpy_http::openapi()` (`{id}` segments match anything);
//! - the configuration table of docs/operator-guide.md: each key is accepted
//!   by the loader (`check-config` with the key in a file) and its
//!   environment name follows `SMTPY_<SECTION>__<KEY>`; every `SMTPY_*` name
//!   in the docs is in that table or in the code;
//! - every web page named in backticks (`/login`, `/app/…`, `/admin/…`)
//!   is a route of the web interface.
//!
//! The server binary is built by `cargo test` (or `cargo build --example server`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
        .join("server");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --example server` (or `cargo test`, which builds it)",
        bin.display()
    );
    bin
}

/// The server with no `SMTPY_*` variable of the caller's environment.
fn server() -> Command {
    let mut c = Command::new(server_binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("SMTPY_") {
            c.env_remove(k);
        }
    }
    c
}

/// README.md and every Markdown file under docs/, with their text.
fn documents() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read docs/")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut paths = vec![Path::new(ROOT).join("README.md")];
    walk(&Path::new(ROOT).join("docs"), &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read a document");
            let name = p.strip_prefix(ROOT).unwrap_or(&p).display().to_string();
            (name, text)
        })
        .collect()
}

/// A fenced code block: its language and its lines with their line numbers.
struct Block {
    lang: String,
    lines: Vec<(usize, String)>,
}

fn code_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => {
                    current = Some(Block {
                        lang: info.trim().to_lowercase(),
                        lines: Vec::new(),
                    });
                }
            }
        } else if let Some(b) = &mut current {
            b.lines.push((i + 1, line.to_owned()));
        }
    }
    blocks
}

fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell" | "console" | "")
}

/// The commands of a shell block: continuation lines joined, here-document
/// bodies skipped, each line split into words (quotes removed) and into
/// commands at `|`, `;`, `&` and `&&`; redirections and comments dropped.
fn shell_commands(block: &Block) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut heredoc: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in &block.lines {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let (start, mut joined) = match pending.take() {
            Some((start, text)) => (start, text + " " + line.trim_start()),
            None => (*n, line.clone()),
        };
        if joined.ends_with('\\') {
            joined.pop();
            pending = Some((start, joined));
            continue;
        }
        if let Some(at) = joined.find("<<") {
            let tag: String = joined[at + 2..]
                .trim_start_matches('-')
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !tag.is_empty() {
                heredoc = Some(tag);
            }
        }
        for command in split_commands(&joined) {
            out.push((start, command));
        }
    }
    out
}

fn split_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut skip_next_word = false;
    let finish =
        |word: &mut String, in_word: &mut bool, words: &mut Vec<String>, skip: &mut bool| {
            if *in_word {
                if *skip {
                    *skip = false;
                } else {
                    words.push(std::mem::take(word));
                }
                word.clear();
                *in_word = false;
            }
        };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    word.push(e);
                }
            }
            '#' if !in_word => break,
            ' ' | '\t' => finish(&mut word, &mut in_word, &mut words, &mut skip_next_word),
            '|' | ';' | '&' => {
                finish(&mut word, &mut in_word, &mut words, &mut skip_next_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            '>' | '<' => {
                // A redirection: drop it, its file descriptor (`2>`) and its target.
                if in_word && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                finish(&mut word, &mut in_word, &mut words, &mut skip_next_word);
                while chars
                    .peek()
                    .is_some_and(|n| matches!(n, '>' | '<' | '&' | '-'))
                {
                    chars.next();
                }
                skip_next_word = true;
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut words, &mut skip_next_word);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// The server arguments of a command, if it runs the reference server.
fn server_args(words: &[String]) -> Option<Vec<String>> {
    // Leading `NAME=value` assignments (environment for the command).
    let words: Vec<&String> = words
        .iter()
        .skip_while(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
        })
        .collect();
    let first = words.first()?;
    if first.as_str() == "cargo" {
        let run = words.get(1).is_some_and(|w| w.as_str() == "run");
        let example = words
            .windows(2)
            .any(|w| w[0].as_str() == "--example" && w[1].as_str() == "server");
        if !(run && example) {
            return None;
        }
        let args = match words.iter().position(|w| w.as_str() == "--") {
            Some(i) => words[i + 1..].iter().map(|w| (*w).clone()).collect(),
            None => Vec::new(),
        };
        return Some(args);
    }
    if first.as_str() == "server" || first.ends_with("/examples/server") {
        return Some(words[1..].iter().map(|w| (*w).clone()).collect());
    }
    None
}

/// `(method, path)` of a curl command that calls the API.
fn curl_call(words: &[String]) -> Option<(String, String)> {
    if words.first().map(String::as_str) != Some("curl") {
        return None;
    }
    let url = words.iter().find(|w| w.contains("/api/v1/"))?;
    let mut method: Option<String> = None;
    let mut has_data = false;
    for (i, w) in words.iter().enumerate() {
        match w.as_str() {
            "-X" | "--request" => method = words.get(i + 1).cloned(),
            "-d" | "--data" | "--data-raw" | "--data-binary" | "--json" | "-F" | "--form" => {
                has_data = true;
            }
            "-I" | "--head" => method = Some("HEAD".into()),
            _ if w.starts_with("-X") && w.len() > 2 => method = Some(w[2..].to_owned()),
            _ => {}
        }
    }
    let method = method.unwrap_or_else(|| if has_data { "POST" } else { "GET" }.into());
    Some((method.to_uppercase(), api_path(url)))
}

/// `/api/v1/...` of a URL, without query or fragment.
fn api_path(url: &str) -> String {
    let at = url.find("/api/v1/").unwrap_or(0);
    let path = &url[at..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].trim_end_matches('/').to_owned()
}

/// The operations of the OpenAPI document: path template → methods.
fn operations() -> BTreeMap<String, BTreeSet<String>> {
    let doc = serde_json::to_value(smtpy_http::openapi()).expect("serialise the OpenAPI document");
    let paths = doc
        .get("paths")
        .and_then(|p| p.as_object())
        .expect("paths in the OpenAPI document");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| {
                            matches!(
                                k.as_str(),
                                "get" | "put" | "post" | "delete" | "patch" | "head"
                            )
                        })
                        .map(|k| k.to_uppercase())
                        .collect()
                })
                .unwrap_or_default();
            (path.clone(), methods)
        })
        .collect()
}

/// Whether a documented path matches a template of the document. A
/// template segment `{x}` matches any segment; a documented segment that is
/// a placeholder (`{id}`, `$ID`, `<id>`, `…`) matches only a template segment.
fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            let placeholder = p.starts_with('{')
                || p.contains('$')
                || p.starts_with('<')
                || p.contains('…')
                || p.contains("...");
            if t.starts_with('{') {
                !p.is_empty()
            } else {
                !placeholder && t == p
            }
        })
}

#[test]
fn every_server_command_in_the_docs_parses() {
    let mut checked = BTreeMap::<Vec<String>, Vec<String>>::new();
    for (name, text) in documents() {
        for block in code_blocks(&text).iter().filter(|b| is_shell(&b.lang)) {
            for (line, words) in shell_commands(block) {
                if let Some(args) = server_args(&words) {
                    checked
                        .entry(args)
                        .or_default()
                        .push(format!("{name}:{line}"));
                }
            }
        }
    }
    assert!(
        checked.len() >= 20,
        "found only {} server command lines in the docs: {checked:?}",
        checked.len()
    );
    let mut failures = Vec::new();
    for (args, places) in &checked {
        let out: Output = server()
            .arg("--check-args")
            .args(args)
            .output()
            .expect("run the server");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout.trim() != "ok" {
            failures.push(format!(
                "{} — `server {}`: exit {:?}, stdout {:?}, stderr: {}",
                places.join(", "),
                args.join(" "),
                out.status.code(),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documented server command lines are refused by the CLI:\n{}",
        failures.len(),
        checked.len(),
        failures.join("\n")
    );
}

/// `[[bench]]` / `[[example]]` names of the root package.
fn targets(kind: &str) -> BTreeSet<String> {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("TOML");
    manifest
        .get(kind)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value after `flag` in `words`.
fn flag_value<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| w == flag)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

#[test]
fn every_cargo_target_and_script_in_the_docs_exists() {
    // What CI does not run itself (benches, fuzzing, the Postfix load
    // comparison) must at least name a real target or a script that parses.
    let (benches, examples) = (targets("bench"), targets("example"));
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, text) in documents() {
        for block in code_blocks(&text).iter().filter(|b| is_shell(&b.lang)) {
            for (line, words) in shell_commands(block) {
                // Skip `VAR=value` prefixes.
                let words: Vec<String> = words
                    .iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .cloned()
                    .collect();
                let place = format!("{name}:{line}");
                let Some(first) = words.first() else { continue };
                if first == "cargo" {
                    if let Some(b) = flag_value(&words, "--bench") {
                        checked += 1;
                        if !benches.contains(b) {
                            failures.push(format!("{place}: no [[bench]] {b}"));
                        }
                    }
                    if let Some(e) = flag_value(&words, "--example") {
                        checked += 1;
                        if !examples.contains(e) {
                            failures.push(format!("{place}: no [[example]] {e}"));
                        }
                    }
                    if let Some(t) = flag_value(&words, "--test") {
                        checked += 1;
                        let exists =
                            Path::new(ROOT)
                                .join("tests")
                                .join(format!("{t}.rs"))
                                .exists()
                                || std::fs::read_dir(ROOT).into_iter().flatten().flatten().any(
                                    |d| d.path().join("tests").join(format!("{t}.rs")).exists(),
                                );
                        if !exists {
                            failures.push(format!("{place}: no test target {t}"));
                        }
                    }
                    if words.iter().any(|w| w == "fuzz")
                        && let Some(i) = words.iter().position(|w| w == "run")
                        && let Some(target) = words.get(i + 1)
                    {
                        checked += 1;
                        let f = Path::new(ROOT)
                            .join("fuzz/fuzz_targets")
                            .join(format!("{target}.rs"));
                        if !f.exists() {
                            failures.push(format!("{place}: no fuzz target {target}"));
                        }
                    }
                    continue;
                }
                let script = match first.as_str() {
                    "bash" | "sh" => words.get(1).cloned(),
                    w if w.ends_with(".sh") => Some(w.to_owned()),
                    _ => None,
                };
                let Some(script) = script.filter(|s| s.ends_with(".sh")) else {
                    continue;
                };
                // Paths relative to the repository root (the docs' convention).
                let path = Path::new(ROOT).join(script.trim_start_matches("./"));
                if script.contains("peers/") {
                    continue; // the shared Postfix scripts live outside the repository
                }
                checked += 1;
                if !path.exists() {
                    failures.push(format!("{place}: no script {script}"));
                    continue;
                }
                let syntax = Command::new("bash")
                    .arg("-n")
                    .arg(&path)
                    .output()
                    .expect("bash");
                if !syntax.status.success() {
                    failures.push(format!(
                        "{place}: {script} does not parse: {}",
                        String::from_utf8_lossy(&syntax.stderr)
                    ));
                }
            }
        }
    }
    assert!(
        checked >= 5,
        "found only {checked} cargo targets and scripts in the docs"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_api_call_in_the_docs_exists() {
    let ops = operations();
    assert!(ops.len() > 30, "the OpenAPI document has paths: {ops:?}");
    let mut calls = Vec::new();
    for (name, text) in documents() {
        for block in code_blocks(&text) {
            if is_shell(&block.lang) {
                for (line, words) in shell_commands(&block) {
                    if let Some((method, path)) = curl_call(&words) {
                        calls.push((format!("{name}:{line}"), method, path));
                    }
                }
            } else if block.lang == "http" {
                for (line, text) in &block.lines {
                    let mut parts = text.split_whitespace();
                    if let (Some(method), Some(target)) = (parts.next(), parts.next())
                        && matches!(method, "GET" | "POST" | "PUT" | "PATCH" | "DELETE")
                        && target.starts_with("/api/v1/")
                    {
                        calls.push((
                            format!("{name}:{line}"),
                            method.to_owned(),
                            api_path(target),
                        ));
                    }
                }
            }
        }
    }
    assert!(
        calls.len() >= 30,
        "found only {} API calls in the docs: {calls:?}",
        calls.len()
    );
    let failures: Vec<String> = calls
        .iter()
        .filter(|(_, method, path)| {
            !ops.iter()
                .any(|(template, methods)| path_matches(template, path) && methods.contains(method))
        })
        .map(|(place, method, path)| format!("{place}: {method} {path}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} documented API calls are not operations of the OpenAPI document:\n{}",
        failures.len(),
        calls.len(),
        failures.join("\n")
    );
}

/// A row of the operator guide's configuration table.
#[derive(Debug)]
struct Key {
    section: Option<String>,
    key: String,
    default: String,
    env: String,
    line: usize,
}

fn unticked(cell: &str) -> String {
    cell.trim().trim_matches('`').trim().to_owned()
}

/// The table whose header names `section`, `key`, `default` and `environment`.
fn config_table() -> Vec<Key> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/operator-guide.md"))
        .expect("read docs/operator-guide.md");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| {
            let l = l.to_lowercase();
            l.starts_with("| section") && l.contains("| key") && l.contains("environment")
        })
        .expect("docs/operator-guide.md has a configuration table (| section | key | default | environment | …)");
    let mut keys = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(header + 2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        assert!(
            cells.len() >= 4,
            "docs/operator-guide.md:{}: a configuration row needs section | key | default | environment: {line}",
            i + 1
        );
        let section = unticked(cells[0]);
        let section = section
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .map(str::to_owned);
        keys.push(Key {
            section,
            key: unticked(cells[1]),
            default: unticked(cells[2]),
            env: unticked(cells[3]),
            line: i + 1,
        });
    }
    keys
}

/// A TOML value for the key: its documented default when that is a TOML
/// value, else a string (the loader may refuse the value, never the key).
fn sample_value(default: &str) -> String {
    let probe = format!("v = {default}");
    if !default.is_empty() && probe.parse::<toml::Table>().is_ok() {
        default.to_owned()
    } else {
        "\"x\"".to_owned()
    }
}

#[test]
fn every_documented_configuration_key_is_accepted() {
    let keys = config_table();
    assert!(
        keys.len() >= 60,
        "the configuration table lists {} keys",
        keys.len()
    );
    let mut failures = Vec::new();
    for k in &keys {
        let expected_env = match &k.section {
            Some(s) => format!("SMTPY_{}__{}", s.to_uppercase(), k.key.to_uppercase()),
            None => format!("SMTPY_{}", k.key.to_uppercase()),
        };
        if k.env != expected_env {
            failures.push(format!(
                "operator-guide.md:{}: `{}` should be set by {expected_env}, the table says {:?}",
                k.line, k.key, k.env
            ));
        }
        let value = sample_value(&k.default);
        let toml = match &k.section {
            Some(s) => format!("[{s}]\n{} = {value}\n", k.key),
            None => format!("{} = {value}\n", k.key),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("smtpy.toml");
        std::fs::write(&path, &toml).expect("write config");
        let from_file = server()
            .current_dir(dir.path())
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .expect("run check-config");
        let from_env = server()
            .current_dir(dir.path())
            .env(&expected_env, value.trim_matches('"'))
            .arg("check-config")
            .output()
            .expect("run check-config");
        for (how, out) in [
            ("in the file", &from_file),
            ("in the environment", &from_env),
        ] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let refused_key = stderr.contains("unknown field") || stderr.contains("unknown key");
            let crashed = !matches!(out.status.code(), Some(0 | 2));
            if refused_key || crashed {
                failures.push(format!(
                    "operator-guide.md:{}: {} {how} ({toml:?}): exit {:?}: {}",
                    k.line,
                    expected_env,
                    out.status.code(),
                    stderr.trim()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems with documented configuration keys:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_smtpy_variable_in_the_docs_exists() {
    let table: BTreeSet<String> = config_table().into_iter().map(|k| k.env).collect();
    // Names the code reads or the tests and tools use.
    let mut sources = String::new();
    for dir in [
        "examples",
        "tests",
        "benches",
        ".ci",
        "smtpy-http/src",
        "smtpy-core/src",
    ] {
        let mut stack = vec![Path::new(ROOT).join(dir)];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&p) {
                    stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
                }
            } else if p.file_name().is_some_and(|n| n != "docs_commands.rs")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                sources.push_str(&text);
            }
        }
    }
    let mut unknown = Vec::new();
    for (name, text) in documents() {
        for (i, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("SMTPY_") {
                let var: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + var.len().max(6)..];
                if var.len() <= "SMTPY_".len() || var.ends_with('_') {
                    continue; // `SMTPY_<SECTION>__<KEY>`, `SMTPY_*`
                }
                if !table.contains(&var) && !sources.contains(&var) {
                    unknown.push(format!("{name}:{}: {var}", i + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "environment variables named in the docs that neither the configuration table nor the code knows:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_readme_walkthrough_is_marked_for_ci() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("README has <!-- walkthrough:start -->");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("README has <!-- walkthrough:end -->");
    assert!(start < end, "the markers are in order");
    let block = &readme[start..end];
    for needed in [
        "server --config smtpy.toml serve",
        "swaks",
        "admin alias create",
    ] {
        assert!(block.contains(needed), "the walk-through runs `{needed}`");
    }
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains(".ci/walkthrough.sh"),
        ".ci/run runs the walk-through"
    );
}

#[test]
fn the_shell_splitter_understands_the_docs_idioms() {
    let block = Block {
        lang: "sh".into(),
        lines: vec![
            (1, "cat > x.toml <<'EOF'".into()),
            (2, "server = \"not a command\"".into()),
            (3, "EOF".into()),
            (4, "server --config smtpy.toml admin alias create a@b.example \\".into()),
            (5, "  --mailbox 'm@c.example'   # a comment".into()),
            (6, "curl -s -X PATCH -H \"Authorization: Bearer $KEY\" \"$API/api/v1/aliases/$ID?x=1\" | jq .".into()),
            (7, "SMTPY_PROFILE=production cargo run --example server -- check-config 2> err.log".into()),
        ],
    };
    let commands = shell_commands(&block);
    let servers: Vec<Vec<String>> = commands
        .iter()
        .filter_map(|(_, w)| server_args(w))
        .collect();
    assert_eq!(
        servers,
        vec![
            vec![
                "--config",
                "smtpy.toml",
                "admin",
                "alias",
                "create",
                "a@b.example",
                "--mailbox",
                "m@c.example"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
            vec!["check-config".to_owned()],
        ]
    );
    let calls: Vec<(String, String)> = commands.iter().filter_map(|(_, w)| curl_call(w)).collect();
    assert_eq!(
        calls,
        vec![("PATCH".to_owned(), "/api/v1/aliases/$ID".to_owned())]
    );
    assert!(path_matches("/api/v1/aliases/{id}", "/api/v1/aliases/$ID"));
    assert!(!path_matches("/api/v1/aliases/{id}", "/api/v1/aliases"));
    assert!(!path_matches(
        "/api/v1/aliases/bulk",
        "/api/v1/aliases/{id}"
    ));
}

/// The web pages the docs name (`/login`, `/app/…`, `/admin/…`, … in
/// backticks; `<id>`-style placeholders stand for any id).
fn documented_pages() -> BTreeSet<(String, String)> {
    const PREFIXES: [&str; 6] = [
        "/app",
        "/admin",
        "/login",
        "/logout",
        "/register",
        "/reset-password",
    ];
    let mut out = BTreeSet::new();
    for (name, text) in documents() {
        for (i, span) in text.split('`').enumerate() {
            // Odd pieces are inside backticks.
            if i % 2 == 0 || span.contains(' ') {
                continue;
            }
            let path = span
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .trim_end_matches('…')
                .trim_end_matches('/');
            if PREFIXES
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/")))
            {
                out.insert((name.clone(), path.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_web_page_in_the_docs_exists() {
    use tower::ServiceExt as _;
    let pages = documented_pages();
    assert!(
        pages.iter().any(|(_, p)| p == "/app/aliases"),
        "the scan finds the documented pages: {pages:?}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state = smtpy_http::ApiState::new(
        std::sync::Arc::new(smtpy_core::memory::MemoryStore::new()),
        smtpy_http::HttpConfig::default(),
    );
    let router = smtpy_http::router(state);
    let id = "0190b5e4-0000-7000-8000-000000000000";
    let mut missing = Vec::new();
    for (doc, path) in &pages {
        let concrete: Vec<String> = path
            .split('/')
            .map(|seg| {
                if seg.starts_with(['<', '{', '$']) || seg == "…" || seg == "..." {
                    id.to_owned()
                } else {
                    seg.to_owned()
                }
            })
            .collect();
        let uri = if path.ends_with("/…") || path.ends_with("/...") {
            // `/app/…` names an area: its first page must exist.
            concrete[..concrete.len() - 1].join("/")
        } else {
            concrete.join("/")
        };
        let request = axum::http::Request::get(&uri)
            .body(axum::body::Body::empty())
            .expect("request");
        let status = runtime
            .block_on(router.clone().oneshot(request))
            .expect("response")
            .status();
        // Signed out, a page redirects to the sign-in form (or shows itself);
        // a form-only path answers 405. Only an unknown path is a 404.
        if status == 404 {
            missing.push(format!("{doc}: {path} ({uri})"));
        }
    }
    assert!(
        missing.is_empty(),
        "pages named in the docs that do not exist: {missing:#?}"
    );
}
