//! The end-to-end harness shared by `tests/e2e_*.rs`: the reference server
//! as a process, a Python `smtplib` client and an `aiosmtpd` sink.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(30);
/// The server's `hostname` in every world's configuration.
pub const HOSTNAME: &str = "mx.smtpy.test";
/// What `sink.py` greets with.
pub const SINK_HOSTNAME: &str = "sink.e2e.test";

pub fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!(
            "CI: python3 with aiosmtpd is required for the end-to-end tests (pip install aiosmtpd)"
        );
    }
    if !ok {
        eprintln!("skipped: python3 with aiosmtpd not available (pip install aiosmtpd)");
    }
    ok
}

/// A loopback port no other `World` in this process has been given.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux), so an outgoing connection never takes one between this call and
/// the bind, and each is handed out once per process, so two worlds running
/// in parallel never share one (asking the kernel for port 0 twice can
/// return the same port). Processes start at different offsets.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 40) * 300;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// `target/<profile>/examples/server`, built by `cargo test` with the tests.
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join("server");
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    bin
}

pub fn wait_for_port(port: u16) {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {WAIT:?}");
}

/// Waits until `port` greets with `220 <hostname>`: the process this world
/// started, not something else that happens to listen there. Panics early,
/// with `log`, when `child` has exited.
pub fn wait_for_greeting(child: &mut Child, port: u16, hostname: &str, log: Option<&Path>) {
    use std::io::{BufRead, BufReader};
    let until = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("the process for port {port} exited ({status}) before listening:\n{log}");
        }
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok() {
                if line.starts_with(&format!("220 {hostname}")) {
                    return;
                }
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("127.0.0.1:{port} did not greet as {hostname} after {WAIT:?} (last greeting: {last:?})");
}

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One server, its sink, and their files.
pub struct World {
    pub dir: tempfile::TempDir,
    pub smtp_port: u16,
    pub sink_port: u16,
    /// Where the API listens (`[http] listen`).
    pub http_port: u16,
    pub server: Option<Proc>,
    pub sink: Option<Proc>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let smtp_port = free_port();
        let sink_port = free_port();
        let http_port = free_port();
        std::fs::create_dir_all(dir.path().join("sink")).expect("sink dir");
        let config = format!(
            r#"hostname = "{HOSTNAME}"
data_dir = "{data}"
[smtp]
listen = ["127.0.0.1:{smtp_port}"]
[store]
url = "redb://{data}/smtpy.redb"
[delivery]
relay = "smtp://127.0.0.1:{sink_port}"
retry = ["1s"]
lease = "2s"
[auth]
dns_records_file = "{dns}"
[http]
listen = "127.0.0.1:{http_port}"
"#,
            data = dir.path().join("data").display(),
            dns = dir.path().join("dns.toml").display()
        );
        std::fs::write(dir.path().join("smtpy.toml"), config).expect("config");
        // Authentication answers from this file only: no test touches real DNS.
        std::fs::write(dir.path().join("dns.toml"), "[txt]\n[ip]\n").expect("dns");
        World {
            dir,
            smtp_port,
            sink_port,
            http_port,
            server: None,
            sink: None,
        }
    }

    /// Appends TOML (new sections) to the server's configuration.
    pub fn add_config(&self, toml: &str) {
        let path = self.dir.path().join("smtpy.toml");
        let mut text = std::fs::read_to_string(&path).expect("config");
        text.push_str(toml);
        std::fs::write(path, text).expect("config");
    }

    /// Replaces the DNS records (TOML: `[txt]`, `[ip]` and `[mx]` tables of
    /// name → list of values). Authentication sees them at the next server
    /// start; the API (domain checks) re-reads the file when it changes.
    pub fn set_dns(&self, toml: &str) {
        std::fs::write(self.dir.path().join("dns.toml"), toml).expect("dns");
    }

    /// Runs an admin command and returns its standard output.
    pub fn admin_output(&self, args: &[&str]) -> String {
        let out = self
            .command()
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

    /// Sends a prepared message (raw bytes) with smtplib; returns the transcript.
    pub fn send_raw(&self, from: &str, to: &[&str], message: &str) -> Vec<String> {
        let path = self.dir.path().join(format!("msg-{}.eml", uuid_like()));
        std::fs::write(&path, message).expect("message file");
        let out = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/e2e/send_raw.py"
            ))
            .args([&self.smtp_port.to_string(), from, &to.join(",")])
            .arg(&path)
            .output()
            .expect("run client");
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(server_binary());
        c.arg("--config").arg(self.dir.path().join("smtpy.toml"));
        // Keep the developer's SMTPY_* settings out of the test server.
        for (k, _) in std::env::vars() {
            if k.starts_with("SMTPY_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "info");
        c
    }

    pub fn admin(&self, args: &[&str]) {
        let out = self
            .command()
            .arg("admin")
            .args(args)
            .output()
            .expect("run admin");
        assert!(
            out.status.success(),
            "admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server");
        let mut child = child;
        wait_for_greeting(
            &mut child,
            self.smtp_port,
            HOSTNAME,
            Some(&self.dir.path().join("server.log")),
        );
        self.server = Some(Proc(child));
        self.wait_for_http();
    }

    /// [`start_server`](Self::start_server) with extra environment
    /// variables (e.g. `SMTPY_LOG__FORMAT=json`).
    pub fn start_server_with_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let mut child = self
            .command()
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start server");
        wait_for_greeting(
            &mut child,
            self.smtp_port,
            HOSTNAME,
            Some(&self.dir.path().join("server.log")),
        );
        self.server = Some(Proc(child));
        self.wait_for_http();
    }

    /// Stops the server with SIGTERM (a clean shutdown), waits for it to
    /// exit, and starts it again on the same files.
    pub fn restart_server(&mut self) {
        if let Some(mut p) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.0.id().to_string()])
                .status();
            let until = Instant::now() + WAIT;
            while Instant::now() < until {
                if let Ok(Some(_)) = p.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.start_server();
    }

    /// Waits until the API answers `GET /healthz` with 200.
    pub fn wait_for_http(&self) {
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            if let Ok(r) = self.http().try_request("GET", "/healthz", None)
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the API on 127.0.0.1:{} did not answer /healthz after {WAIT:?}; server log:\n{}",
            self.http_port,
            self.log()
        );
    }

    /// An API client without credentials.
    pub fn http(&self) -> Http {
        Http::new(self.http_port)
    }

    /// An API client with the bearer key `key`.
    pub fn http_with_key(&self, key: &str) -> Http {
        let mut h = Http::new(self.http_port);
        h.bearer = Some(key.to_owned());
        h
    }

    /// `admin user create --email <email> [--admin]`: returns the one-time
    /// API key it prints. (Before `start_server` on a redb store.)
    pub fn create_user_key(&self, email: &str, admin: bool) -> String {
        let mut args = vec!["user", "create", "--email", email];
        if admin {
            args.push("--admin");
        }
        let out = self.admin_output(&args);
        out.lines()
            .find(|l| l.starts_with("smtpy_"))
            .unwrap_or_else(|| panic!("no API key in {out:?}"))
            .to_owned()
    }

    pub fn start_sink(&mut self) {
        let child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/sink.py"))
            .args(["--port", &self.sink_port.to_string(), "--lifetime", "120"])
            .arg("--dir")
            .arg(self.dir.path().join("sink"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sink");
        let mut child = child;
        wait_for_greeting(&mut child, self.sink_port, SINK_HOSTNAME, None);
        self.sink = Some(Proc(child));
    }

    /// Sends one message with smtplib; returns its transcript lines.
    pub fn send(&self, from: &str, to: &[&str], subject: &str) -> Vec<String> {
        self.send_with(from, to, subject, &[])
    }

    pub fn send_with(&self, from: &str, to: &[&str], subject: &str, extra: &[&str]) -> Vec<String> {
        let out = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/send.py"))
            .args([&self.smtp_port.to_string(), from, &to.join(","), subject])
            .args(extra)
            .output()
            .expect("run client");
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Messages the sink stored, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("sink"))
            .expect("sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
            })
            .collect()
    }

    pub fn wait_delivered(&self, n: usize) -> Vec<Value> {
        let until = Instant::now() + WAIT;
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < until,
                "{} of {n} messages at the sink after {WAIT:?}; server log:\n{}",
                got.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A world with alias.test hosted and `aliases` (address, mailboxes)
    /// created, then the sink and the server running. (A redb store belongs
    /// to one process: the admin commands run before the server starts.)
    pub fn running(aliases: &[(&str, &[&str])]) -> World {
        World::running_in("alias", aliases)
    }

    /// [`running`](Self::running) with the aliases in `mode` (`alias` or
    /// `forward`: From kept, SRS envelope).
    pub fn running_in(mode: &str, aliases: &[(&str, &[&str])]) -> World {
        let mut w = World::new();
        w.admin(&["domain", "add", "alias.test"]);
        for (alias, boxes) in aliases {
            let mut args = vec!["alias", "add", alias, "--mode", mode];
            for b in *boxes {
                args.extend(["--mailbox", b]);
            }
            w.admin(&args);
        }
        w.start_sink();
        w.start_server();
        w
    }
}

pub fn rcpts(m: &Value) -> Vec<String> {
    m["rcpt_tos"]
        .as_array()
        .expect("rcpt_tos")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_lowercase())
        .collect()
}

pub fn code_of(transcript: &[String], prefix: &str) -> String {
    transcript
        .iter()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l[prefix.len()..].split_whitespace().next())
        .unwrap_or_else(|| panic!("no {prefix:?} line in {transcript:?}"))
        .to_owned()
}

/// A unique-enough name part for temporary files.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResp {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    pub text: String,
}

impl HttpResp {
    /// The first value of header `name` ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    /// Asserts `status` (with the whole response in the message) and
    /// returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:#?}");
        &self.body
    }

    /// Asserts a 2xx status and returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!((200..300).contains(&self.status), "{self:#?}");
        &self.body
    }
}

/// A tiny HTTP/1.1 client for the API (one connection per request, no
/// TLS): a bearer key, or a session cookie and its CSRF token.
#[derive(Debug, Clone)]
pub struct Http {
    pub port: u16,
    pub bearer: Option<String>,
    /// `name=value` of the session cookie.
    pub cookie: Option<String>,
    /// Sent as `X-CSRF-Token` on unsafe methods.
    pub csrf: Option<String>,
}

impl Http {
    pub fn new(port: u16) -> Http {
        Http {
            port,
            bearer: None,
            cookie: None,
            csrf: None,
        }
    }

    /// Sends a request (`body` as JSON); panics on I/O errors.
    #[track_caller]
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResp {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> HttpResp {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> HttpResp {
        self.request("POST", path, Some(body))
    }

    /// `POST /api/v1/auth/login`: keeps the session cookie and CSRF token.
    pub fn login(&mut self, email: &str, password: &str) -> HttpResp {
        let r = self.post(
            "/api/v1/auth/login",
            &serde_json::json!({"email": email, "password": password}),
        );
        if (200..300).contains(&r.status) {
            let set = r
                .headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.as_str())
                .find(|v| v.contains("smtpy_session="))
                .unwrap_or_else(|| panic!("no session cookie: {r:#?}"));
            self.cookie = set.split(';').next().map(str::to_owned);
            self.csrf = r.body["csrf_token"].as_str().map(str::to_owned);
        }
        r
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<HttpResp> {
        use std::io::{Read, Write};
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nAccept: */*\r\n",
            self.port
        );
        if let Some(key) = &self.bearer {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        if let Some(cookie) = &self.cookie {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if !matches!(method, "GET" | "HEAD" | "OPTIONS")
            && let Some(csrf) = &self.csrf
        {
            head.push_str(&format!("X-CSRF-Token: {csrf}\r\n"));
        }
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP response: {}", String::from_utf8_lossy(&raw)),
            )
        })
    }
}

fn parse_response(raw: &[u8]) -> Option<HttpResp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    Some(HttpResp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Decodes quoted-printable soft line breaks and `=XX` escapes.
pub fn unqp(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The confirmation code of the verification mail.
pub fn verification_code(data: &str) -> String {
    let text = unqp(data);
    let at = text
        .find("confirmation code: ")
        .unwrap_or_else(|| panic!("no confirmation code in {text}"));
    text[at + "confirmation code: ".len()..]
        .split_whitespace()
        .next()
        .expect("a code")
        .trim_end_matches('.')
        .to_owned()
}

/// A TXT value as published: zone-file quoted strings (`"v=DKIM1; " "p=…"`)
/// are joined; an unquoted value is taken as it is.
pub fn unquote_txt(value: &str) -> String {
    if !value.trim_start().starts_with('"') {
        return value.to_owned();
    }
    value
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

/// The records file publishing `records` (`{name, type, value}`): TXT and
/// MX; others (CNAME) cannot be served by the file and are skipped.
pub fn dns_file(records: &[Value]) -> String {
    let mut txt: Vec<(String, String)> = Vec::new();
    let mut mx: Vec<(String, String)> = Vec::new();
    for r in records {
        let name = r["name"]
            .as_str()
            .expect("record name")
            .trim_end_matches('.')
            .to_owned();
        let value = r["value"].as_str().expect("record value").to_owned();
        match r["type"].as_str().map(str::to_ascii_uppercase).as_deref() {
            Some("TXT") => txt.push((name, unquote_txt(&value))),
            Some("MX") => {
                let value = value.trim_end_matches('.').to_owned();
                let value = if value.starts_with(|c: char| c.is_ascii_digit()) {
                    value
                } else {
                    let priority = r["priority"].as_u64().unwrap_or(10);
                    format!("{priority} {value}")
                };
                mx.push((name, value));
            }
            _ => {}
        }
    }
    let table = |entries: &[(String, String)]| {
        let mut names: Vec<&String> = entries.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let values: Vec<String> = entries
                    .iter()
                    .filter(|(k, _)| k == n)
                    .map(|(_, v)| Value::String(v.clone()).to_string())
                    .collect();
                format!("{} = [{}]\n", Value::String(n.clone()), values.join(", "))
            })
            .collect::<String>()
    };
    format!("[txt]\n{}[ip]\n[mx]\n{}", table(&txt), table(&mx))
}

/// Polls `check` until it returns `Some` (30 s).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not after {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
