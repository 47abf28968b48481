//! A small in-memory driver for the session tests, included by the
//! `session_*` test files with `#[path = "session_harness.rs"] mod harness;`.
//! Compiled on its own it is an empty test target.
#![allow(dead_code, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};

use smtpy_core::address::EmailAddress;
use smtpy_core::reply::Reply;
use smtpy_smtp::session::{Action, Envelope, Event, PeerInfo, Session, SessionConfig, Verdict};

/// Decides recipients.
pub type Policy = Box<dyn FnMut(&EmailAddress) -> Verdict>;

/// `alias.example` is ours: `unknown@` gets 550 5.1.1, `busy@` 451 4.4.3,
/// everything else there is accepted; other domains are relaying (550 5.7.1).
pub fn default_policy(address: &EmailAddress) -> Verdict {
    if address.domain().as_ascii() != "alias.example" {
        return Verdict::Reject(Reply::RELAY_DENIED);
    }
    match address.local_part().as_str() {
        "unknown" => Verdict::Reject(Reply::UNKNOWN_RECIPIENT),
        "busy" => Verdict::TempFail(Reply::STORE_UNAVAILABLE),
        _ => Verdict::Accept,
    }
}

/// A client/driver pair: feeds bytes, writes replies into `wire`, answers
/// actions like a real driver would.
pub struct Client {
    pub session: Session,
    /// Everything the session wrote.
    pub wire: Vec<u8>,
    /// Every event, with writes as text (for order checks).
    pub log: Vec<String>,
    pub messages: Vec<(Envelope, Vec<u8>)>,
    /// Raw paths of `CheckRecipient`, in order.
    pub checked: Vec<String>,
    /// Raw paths of `CheckSender`, in order.
    pub senders: Vec<String>,
    pub starttls_requests: usize,
    pub close_seen: bool,
    /// Answer `StartTls` right away with `tls_established`.
    pub auto_tls: bool,
    /// Answer actions while draining (otherwise they are only logged).
    pub answer: bool,
    pub policy: Policy,
    pub sender_verdict: Verdict,
    pub message_reply: Reply,
}

pub fn peer() -> PeerInfo {
    PeerInfo::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))).with_tls_available(true)
}

pub fn config() -> SessionConfig {
    SessionConfig::new("mx.alias.example")
}

pub const QUEUED: Reply = Reply::new(250, (2, 0, 0), "Queued");

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// Default config and peer; the greeting is already read.
    pub fn new() -> Self {
        Self::with(config(), peer())
    }

    /// The greeting is already read.
    pub fn with(config: SessionConfig, peer: PeerInfo) -> Self {
        let mut client = Self::unpolled(config, peer);
        client.drain();
        client
    }

    /// Nothing polled yet (the greeting is still inside the session).
    pub fn unpolled(config: SessionConfig, peer: PeerInfo) -> Self {
        Self {
            session: Session::new(config, peer),
            wire: Vec::new(),
            log: Vec::new(),
            messages: Vec::new(),
            checked: Vec::new(),
            senders: Vec::new(),
            starttls_requests: 0,
            close_seen: false,
            auto_tls: true,
            answer: true,
            policy: Box::new(default_policy),
            sender_verdict: Verdict::Accept,
            message_reply: QUEUED,
        }
    }

    /// Feeds `bytes`, drains, and returns what was written meanwhile.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> String {
        let start = self.wire.len();
        self.session.feed(bytes.as_ref());
        self.drain();
        String::from_utf8_lossy(&self.wire[start..]).into_owned()
    }

    /// Feeds `bytes` one octet at a time, draining after each.
    pub fn send_bytewise(&mut self, bytes: impl AsRef<[u8]>) -> String {
        let start = self.wire.len();
        for byte in bytes.as_ref() {
            self.session.feed(std::slice::from_ref(byte));
            self.drain();
        }
        String::from_utf8_lossy(&self.wire[start..]).into_owned()
    }

    /// `EHLO client.example`.
    pub fn ehlo(&mut self) -> String {
        self.send("EHLO client.example\r\n")
    }

    /// EHLO, MAIL FROM bob@example.org, RCPT TO shop@alias.example, DATA
    /// (each in its own write).
    pub fn start_data(&mut self) {
        self.ehlo();
        self.send("MAIL FROM:<bob@example.org>\r\n");
        self.send("RCPT TO:<shop@alias.example>\r\n");
        let reply = self.send("DATA\r\n");
        assert!(reply.starts_with("354 "), "{reply}");
    }

    /// Polls until the session needs input, answering actions if `answer`.
    pub fn drain(&mut self) {
        while let Some(event) = self.session.poll() {
            match event {
                Event::Write(bytes) => {
                    self.log.push(String::from_utf8_lossy(&bytes).into_owned());
                    self.wire.extend_from_slice(&bytes);
                }
                Event::Action(action) => self.act(action),
                _ => panic!("unexpected event"),
            }
        }
    }

    fn act(&mut self, action: Action) {
        self.log.push(format!("{action:?}"));
        match action {
            Action::CheckSender { raw, .. } => {
                self.senders.push(raw);
                if self.answer {
                    self.session.sender_result(self.sender_verdict.clone());
                }
            }
            Action::CheckRecipient { forward_path, raw } => {
                self.checked.push(raw);
                if self.answer {
                    let verdict = (self.policy)(&forward_path);
                    self.session.recipient_result(verdict);
                }
            }
            Action::Message { envelope, body } => {
                self.messages.push((envelope, body));
                if self.answer {
                    self.session.message_result(self.message_reply.clone());
                }
            }
            Action::StartTls => {
                self.starttls_requests += 1;
                if self.auto_tls {
                    self.session.tls_established();
                }
            }
            Action::Close => {
                assert!(!self.close_seen, "Close twice");
                self.close_seen = true;
            }
            _ => panic!("unexpected action"),
        }
    }

    /// The text written so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.wire).into_owned()
    }

    /// The single message delivered so far.
    pub fn only_message(&self) -> &(Envelope, Vec<u8>) {
        assert_eq!(self.messages.len(), 1, "expected exactly one message");
        &self.messages[0]
    }
}

/// The codes of the complete replies in `text` (a multi-line reply counts
/// once, by its last line).
pub fn codes(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter(|line| line.as_bytes().get(3) == Some(&b' '))
        .filter_map(|line| line.get(..3)?.parse().ok())
        .collect()
}

/// The final lines of the complete replies in `text`.
pub fn replies(text: &str) -> Vec<&str> {
    text.split("\r\n")
        .filter(|line| line.as_bytes().get(3) == Some(&b' '))
        .collect()
}

/// Whether `body` has a CR or LF that is not part of a CR LF pair.
pub fn has_bare_cr_or_lf(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => body.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || body[i - 1] != b'\r',
        _ => false,
    })
}
