//! Several reference servers on one PostgreSQL database: a fresh schema per
//! test, one data directory and one pair of SMTP/HTTP ports per instance, and
//! one shared `sink.py`. Used by `tests/e2e_scale_out.rs`; include it next to
//! `world.rs`:
//!
//! ```ignore
//! #[path = "e2e/world.rs"]
//! mod world;
//! #[path = "e2e/cluster.rs"]
//! mod cluster;
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::world::{HOSTNAME, Proc, SINK_HOSTNAME, free_port, server_binary, wait_for_greeting};

/// Environment variable with the PostgreSQL URL for tests.
pub const POSTGRES_URL_VAR: &str = "SMTPY_TEST_POSTGRES_URL";

/// The PostgreSQL URL to test against, or `None` (with the standard notice)
/// to skip. Panics when `CI` is set and the variable is not: CI must run
/// these tests.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{POSTGRES_URL_VAR} is not set, but CI is: the scale-out tests must run in CI \
             (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
        ),
        _ => {
            eprintln!("skipped: {POSTGRES_URL_VAR} is not set");
            None
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {POSTGRES_URL_VAR}={url} is not usable: {e}"))
}

/// A fresh PostgreSQL schema, dropped (with everything in it) on drop.
///
/// Named `smtpy_t_<unix secs>_<random>` like the store tests' schemas, so
/// their sweeper also removes leftovers of killed runs.
pub struct Schema {
    /// The server URL the schema lives on (no schema option).
    pub server_url: String,
    /// The schema's name.
    pub name: String,
}

impl Schema {
    /// Creates a new schema on the server at `url`.
    pub fn create(url: &str) -> Schema {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!(
            "smtpy_t_{secs}_{:x}{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        runtime().block_on(async {
            let pool = pg_pool(url).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("cannot create schema {name}: {e}"));
            pool.close().await;
        });
        Schema {
            server_url: url.to_owned(),
            name,
        }
    }

    /// The `store.url` that keeps smtpy's tables in this schema
    /// (`options[search_path]=<schema>` on the connection URL).
    pub fn store_url(&self) -> String {
        let sep = if self.server_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}options[search_path]={}", self.server_url, self.name)
    }

    /// Runs one `SELECT count(*)` (the query must name tables unqualified:
    /// it runs with `search_path` set to this schema).
    pub fn count(&self, sql: &str) -> i64 {
        let url = self.store_url();
        runtime().block_on(async {
            let pool = pg_pool(&url).await;
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            pool.close().await;
            n
        })
    }

    /// Rows in the queue (leased or not).
    pub fn queued(&self) -> i64 {
        self.count("SELECT count(*) FROM queue")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.server_url.clone(), self.name.clone());
        runtime().block_on(async move {
            if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&url)
                .await
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                )))
                .execute(&pool)
                .await;
                pool.close().await;
            }
        });
    }
}

/// One server instance of a [`Cluster`].
pub struct Node {
    /// Holds `smtpy.toml`, `server.log` and `data/`.
    pub dir: PathBuf,
    pub smtp_port: u16,
    pub http_port: u16,
    pub server: Option<Proc>,
}

impl Node {
    /// The instance's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The instance's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// Server instances sharing one PostgreSQL schema and one sink.
///
/// Field order matters: the servers stop (drop) before the schema is dropped.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub sink: Option<Proc>,
    pub sink_port: u16,
    pub schema: Schema,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` instances configured on a fresh schema of the PostgreSQL server
    /// at `pg_url`, relaying to one sink. `delivery` holds extra
    /// `[delivery]` keys (e.g. `lease = "3s"`); `extra` is TOML appended to
    /// every instance's configuration (new sections only).
    pub fn new(pg_url: &str, n: usize, delivery: &str, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Schema::create(pg_url);
        let sink_port = free_port();
        std::fs::create_dir_all(dir.path().join("sink")).expect("sink dir");
        std::fs::write(dir.path().join("dns.toml"), "[txt]\n[ip]\n").expect("dns");
        let store_url = schema.store_url();
        let nodes = (0..n)
            .map(|i| {
                let node_dir = dir.path().join(format!("node{}", i + 1));
                std::fs::create_dir_all(node_dir.join("data")).expect("node dir");
                let smtp_port = free_port();
                let http_port = free_port();
                let config = format!(
                    r#"hostname = "{HOSTNAME}"
data_dir = "{data}"
[smtp]
listen = ["127.0.0.1:{smtp_port}"]
[store]
url = "{store_url}"
[delivery]
relay = "smtp://127.0.0.1:{sink_port}"
retry = ["1s"]
{delivery}
[auth]
dns_records_file = "{dns}"
[http]
listen = "127.0.0.1:{http_port}"
{extra}
"#,
                    data = node_dir.join("data").display(),
                    dns = dir.path().join("dns.toml").display(),
                );
                std::fs::write(node_dir.join("smtpy.toml"), config).expect("config");
                Node {
                    dir: node_dir,
                    smtp_port,
                    http_port,
                    server: None,
                }
            })
            .collect();
        Cluster {
            nodes,
            sink: None,
            sink_port,
            schema,
            dir,
        }
    }

    /// The server binary with node `i`'s configuration, `RUST_LOG` set to
    /// `info`, and the developer's `SMTPY_*` variables removed.
    pub fn command(&self, i: usize) -> Command {
        let mut c = Command::new(server_binary());
        c.arg("--config").arg(self.nodes[i].dir.join("smtpy.toml"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SMTPY_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "info");
        c
    }

    /// Runs an admin command through node `i` (SQL stores: it opens the
    /// database directly, servers running or not); returns its stdout.
    pub fn admin(&self, i: usize, args: &[&str]) -> String {
        let out = self
            .command(i)
            .arg("admin")
            .args(args)
            .output()
            .expect("run admin");
        assert!(
            out.status.success(),
            "admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies node `from`'s key files (`*.key`, `dkim/`) into node `to`'s
    /// data directory: instances of one deployment share their secrets
    /// (DKIM keys sealed in the database, SRS, API tokens).
    pub fn share_secrets(&self, from: usize, to: usize) {
        fn copy_keys(src: &Path, dst: &Path) {
            let Ok(entries) = std::fs::read_dir(src) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let target = dst.join(entry.file_name());
                if path.is_dir() && entry.file_name() == "dkim" {
                    std::fs::create_dir_all(&target).expect("dkim dir");
                    for key in std::fs::read_dir(&path).expect("dkim dir").flatten() {
                        std::fs::copy(key.path(), target.join(key.file_name())).expect("copy");
                    }
                } else if path.extension().is_some_and(|x| x == "key") {
                    std::fs::copy(&path, &target).expect("copy key");
                }
            }
        }
        copy_keys(&self.nodes[from].data_dir(), &self.nodes[to].data_dir());
    }

    /// Starts the shared sink; `data_delay` seconds pass between a message's
    /// data and its `250` (0 for none).
    pub fn start_sink(&mut self, data_delay: f64) {
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/sink.py"))
            .args(["--port", &self.sink_port.to_string(), "--lifetime", "300"])
            .args(["--data-delay", &data_delay.to_string()])
            .arg("--dir")
            .arg(self.dir.path().join("sink"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sink");
        wait_for_greeting(&mut child, self.sink_port, SINK_HOSTNAME, None);
        self.sink = Some(Proc(child));
    }

    /// Starts node `i` (`serve`) and waits for its SMTP greeting and `/healthz`.
    pub fn start_node(&mut self, i: usize) {
        let log_path = self.nodes[i].dir.join("server.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut child = self
            .command(i)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server");
        wait_for_greeting(
            &mut child,
            self.nodes[i].smtp_port,
            HOSTNAME,
            Some(&log_path),
        );
        self.nodes[i].server = Some(Proc(child));
        let until = std::time::Instant::now() + crate::world::WAIT;
        while std::time::Instant::now() < until {
            if let Ok(r) = crate::world::Http::new(self.nodes[i].http_port)
                .try_request("GET", "/healthz", None)
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "node {} API did not answer /healthz:\n{}",
            i + 1,
            self.nodes[i].log()
        );
    }

    /// `kill -9` of node `i` (no shutdown, no lease released), then reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].server.take() {
            p.0.kill().expect("SIGKILL");
            let status = p.0.wait().expect("wait");
            assert!(!status.success(), "node {} was killed: {status}", i + 1);
        }
    }

    /// Starts sending `count` messages through node `i` over one connection
    /// (markers `<prefix>-<first>` …); [`sent`] waits for it and returns
    /// (marker, reply code) per message.
    pub fn send_many(
        &self,
        i: usize,
        from: &str,
        to: &str,
        prefix: &str,
        first: usize,
        count: usize,
    ) -> std::process::Child {
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/e2e/send_many.py"
            ))
            .args([
                &self.nodes[i].smtp_port.to_string(),
                from,
                to,
                prefix,
                &first.to_string(),
                &count.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run send_many.py")
    }

    /// Messages the shared sink stored, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("sink"))
            .expect("sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
            .collect()
    }

    /// Every node's log, labelled (for failure messages).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} log ---\n{}", i + 1, n.log()))
            .collect()
    }
}

/// The replies of a finished `send_many.py`: (marker, code) per message.
pub fn sent(child: std::process::Child) -> Vec<(String, u16)> {
    let out = child.wait_with_output().expect("send_many.py");
    assert!(
        out.status.success(),
        "send_many.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("sent ")?.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect()
}

impl Cluster {
    /// Messages whose DATA the sink was waiting on (`--data-delay`) when
    /// their sender's connection dropped: noted, not stored.
    pub fn aborted(&self) -> Vec<Value> {
        std::fs::read_dir(self.dir.path().join("sink"))
            .expect("sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "aborted"))
            .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
            .collect()
    }
}

/// The `Subject:` of a stored message (the marker `send_many.py` puts there).
pub fn subject(m: &Value) -> String {
    m["data"]
        .as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim()
        .to_owned()
}
