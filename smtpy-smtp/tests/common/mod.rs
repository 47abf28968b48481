//! A tiny scriptable SMTP sink for the transport tests: a tokio listener
//! on loopback that answers scripted replies and records every command,
//! envelope and message (un-dot-stuffed) it receives, and how many sessions
//! were open at once.

#![allow(dead_code)] // each test file uses part of it

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use smtpy_core::address::EmailAddress;
use smtpy_core::transport::DeliveryOutcome;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Every test body runs under this bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `test` with [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test timed out")
}

pub fn address(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("valid address")
}

/// A port on 127.0.0.1 where nothing listens (connection refused).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// What the sink answers.
#[derive(Clone)]
pub struct SinkScript {
    /// The whole greeting line; a non-2xx greeting closes the session.
    pub greeting: String,
    /// EHLO lines after the first (e.g. `SIZE 100`, `SMTPUTF8`).
    pub extensions: Vec<String>,
    /// Offer STARTTLS with this configuration.
    pub starttls: Option<Arc<ServerConfig>>,
    /// TLS from the first byte with this configuration.
    pub implicit_tls: Option<Arc<ServerConfig>>,
    /// Offer AUTH with `auth_mechanisms` and accept any credentials.
    pub auth: bool,
    pub auth_mechanisms: String,
    /// Offer STARTTLS, answer 220, then close instead of a handshake.
    pub starttls_broken: bool,
    /// Never send the greeting (a hung server).
    pub silent: bool,
    pub mail_reply: String,
    /// Per recipient (lower case), else `rcpt_default`.
    pub rcpt_replies: HashMap<String, String>,
    pub rcpt_default: String,
    pub data_reply: String,
    pub final_reply: String,
    /// Waited before the final reply (keeps sessions busy).
    pub data_delay: Duration,
}

impl Default for SinkScript {
    fn default() -> Self {
        Self {
            greeting: "220 sink.test ESMTP ready".into(),
            extensions: vec!["8BITMIME".into(), "ENHANCEDSTATUSCODES".into()],
            starttls: None,
            implicit_tls: None,
            auth: false,
            auth_mechanisms: "PLAIN LOGIN".into(),
            starttls_broken: false,
            silent: false,
            mail_reply: "250 2.1.0 sender ok".into(),
            rcpt_replies: HashMap::new(),
            rcpt_default: "250 2.1.5 recipient ok".into(),
            data_reply: "354 go ahead".into(),
            final_reply: "250 2.0.0 queued as 42".into(),
            data_delay: Duration::ZERO,
        }
    }
}

impl SinkScript {
    pub fn rcpt(mut self, address: &str, reply: &str) -> Self {
        self.rcpt_replies
            .insert(address.to_ascii_lowercase(), reply.to_owned());
        self
    }
}

/// One message as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// What followed `MAIL FROM:`, e.g. `<a@b> SIZE=10`.
    pub mail_from: String,
    /// Accepted recipients, lower case, without brackets.
    pub rcpt_to: Vec<String>,
    /// The data, un-dot-stuffed, without the final `.CRLF`.
    pub data: Vec<u8>,
    /// Whether the session was encrypted.
    pub tls: bool,
}

#[derive(Debug, Default)]
pub struct SinkLog {
    /// Sessions accepted in total.
    pub connections: usize,
    /// Sessions open now, and at most at once.
    pub active: usize,
    pub max_active: usize,
    /// Every command line, in order, across sessions.
    pub commands: Vec<String>,
    pub messages: Vec<Received>,
}

pub struct Sink {
    pub addr: SocketAddr,
    log: Arc<Mutex<SinkLog>>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// A sink on 127.0.0.1 with a free port.
    pub async fn start(script: SinkScript) -> Sink {
        Self::start_at("127.0.0.1:0".parse().expect("address"), script)
            .await
            .expect("bind the sink")
    }

    /// A sink on `bind` (another loopback address, a given port).
    pub async fn start_at(bind: SocketAddr, script: SinkScript) -> io::Result<Sink> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let script = Arc::new(script);
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(session(stream, script.clone(), log.clone()));
                }
            })
        };
        Ok(Sink { addr, log, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn log(&self) -> MutexGuard<'_, SinkLog> {
        lock(&self.log)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.log().messages.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.log().commands.clone()
    }

    /// Commands starting with `prefix` (case-insensitive).
    pub fn commands_starting(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.to_ascii_uppercase();
        self.commands()
            .into_iter()
            .filter(|c| c.to_ascii_uppercase().starts_with(&prefix))
            .collect()
    }

    /// Waits (up to 5 s) until `check` holds for the log.
    pub async fn wait_for(&self, check: impl Fn(&SinkLog) -> bool) -> bool {
        for _ in 0..500 {
            if check(&self.log()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

fn lock(log: &Mutex<SinkLog>) -> MutexGuard<'_, SinkLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Io {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
}

impl Io {
    async fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Io::Plain(r) => r.read_until(b'\n', buf).await,
            Io::Tls(r) => r.read_until(b'\n', buf).await,
        }
    }

    async fn write(&mut self, text: &str) -> io::Result<()> {
        match self {
            Io::Plain(r) => {
                r.get_mut().write_all(text.as_bytes()).await?;
                r.get_mut().flush().await
            }
            Io::Tls(r) => {
                r.get_mut().write_all(text.as_bytes()).await?;
                r.get_mut().flush().await
            }
        }
    }

    async fn reply(&mut self, line: &str) -> io::Result<()> {
        self.write(&format!("{line}\r\n")).await
    }
}

async fn session(stream: TcpStream, script: Arc<SinkScript>, log: Arc<Mutex<SinkLog>>) {
    {
        let mut log = lock(&log);
        log.connections += 1;
        log.active += 1;
        log.max_active = log.max_active.max(log.active);
    }
    let _ = serve(stream, &script, &log).await;
    lock(&log).active -= 1;
}

async fn serve(stream: TcpStream, script: &SinkScript, log: &Mutex<SinkLog>) -> io::Result<()> {
    let mut tls = false;
    let mut io = match &script.implicit_tls {
        Some(config) => {
            let stream = TlsAcceptor::from(config.clone()).accept(stream).await?;
            tls = true;
            Io::Tls(Box::new(BufReader::new(stream)))
        }
        None => Io::Plain(BufReader::new(stream)),
    };
    if script.silent {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }
    io.reply(&script.greeting).await?;
    if !script.greeting.starts_with('2') {
        return Ok(());
    }
    let mut txn = Received::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        lock(log).commands.push(text.clone());
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            let mut lines = vec!["sink.test".to_owned()];
            if (script.starttls.is_some() || script.starttls_broken) && !tls {
                lines.push("STARTTLS".into());
            }
            if script.auth {
                lines.push(format!("AUTH {}", script.auth_mechanisms));
            }
            lines.extend(script.extensions.iter().cloned());
            let last = lines.len() - 1;
            let mut reply = String::new();
            for (i, l) in lines.iter().enumerate() {
                reply.push_str(&format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }));
            }
            io.write(&reply).await?;
        } else if upper.starts_with("HELO") {
            io.reply("250 sink.test").await?;
        } else if upper == "STARTTLS" && script.starttls_broken {
            io.reply("220 2.0.0 ready to start TLS").await?;
            io.write("this is not a TLS handshake\r\n").await?;
            return Ok(());
        } else if upper == "STARTTLS" {
            match (&script.starttls, tls) {
                (Some(config), false) => {
                    io.reply("220 2.0.0 ready to start TLS").await?;
                    let Io::Plain(reader) = io else {
                        return Ok(());
                    };
                    let stream = TlsAcceptor::from(config.clone())
                        .accept(reader.into_inner())
                        .await?;
                    io = Io::Tls(Box::new(BufReader::new(stream)));
                    tls = true;
                    txn = Received::default();
                }
                _ => io.reply("502 5.5.1 no STARTTLS here").await?,
            }
        } else if upper.starts_with("AUTH PLAIN") && script.auth {
            io.reply("235 2.7.0 authenticated").await?;
        } else if upper.starts_with("AUTH LOGIN") && script.auth {
            for challenge in ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"] {
                io.reply(challenge).await?;
                line.clear();
                io.read_line(&mut line).await?;
                let answer = String::from_utf8_lossy(&line).trim_end().to_owned();
                lock(log).commands.push(answer);
            }
            io.reply("235 2.7.0 authenticated").await?;
        } else if upper.starts_with("MAIL FROM:") {
            txn = Received {
                mail_from: text["MAIL FROM:".len()..].to_owned(),
                tls,
                ..Received::default()
            };
            io.reply(&script.mail_reply).await?;
        } else if upper.starts_with("RCPT TO:") {
            let arg = &text["RCPT TO:".len()..];
            let addr = arg
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let reply = script
                .rcpt_replies
                .get(&addr)
                .unwrap_or(&script.rcpt_default)
                .clone();
            if reply.starts_with('2') {
                txn.rcpt_to.push(addr);
            }
            io.reply(&reply).await?;
        } else if upper == "DATA" {
            io.reply(&script.data_reply).await?;
            if script.data_reply.starts_with("354") {
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
                    data.extend_from_slice(unstuffed);
                }
                tokio::time::sleep(script.data_delay).await;
                txn.data = data;
                lock(log).messages.push(std::mem::take(&mut txn));
                io.reply(&script.final_reply).await?;
            }
        } else if upper == "RSET" {
            txn = Received::default();
            io.reply("250 2.0.0 reset").await?;
        } else if upper == "NOOP" {
            io.reply("250 2.0.0 ok").await?;
        } else if upper == "QUIT" {
            io.reply("221 2.0.0 bye").await?;
            return Ok(());
        } else {
            io.reply("500 5.5.2 unknown command").await?;
        }
    }
}

/// A self-signed certificate for `name` and a server configuration using
/// it (ring provider).
pub fn tls_server(name: &str) -> (Arc<ServerConfig>, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server certificate");
    (Arc::new(config), cert)
}

/// Standard base64, for checking AUTH PLAIN.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Outcome classes, for compact assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Delivered,
    Temporary,
    Permanent,
}

pub fn classes(outcomes: &[DeliveryOutcome]) -> Vec<Class> {
    outcomes
        .iter()
        .map(|o| match o {
            DeliveryOutcome::Delivered(_) => Class::Delivered,
            DeliveryOutcome::Temporary(_) => Class::Temporary,
            DeliveryOutcome::Permanent(_) => Class::Permanent,
            _ => panic!("unknown outcome {o:?}"),
        })
        .collect()
}

/// The reply inside an outcome.
pub fn reply_of(outcome: &DeliveryOutcome) -> smtpy_core::model::RemoteReply {
    match outcome {
        DeliveryOutcome::Delivered(Some(reply))
        | DeliveryOutcome::Temporary(reply)
        | DeliveryOutcome::Permanent(reply) => reply.clone(),
        other => panic!("no reply in {other:?}"),
    }
}
