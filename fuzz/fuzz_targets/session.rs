//! Arbitrary bytes into the SMTP session state machine, split into reads of
//! a size chosen by the first input byte, with every action answered by a
//! fixed verdict. The session must never panic, must only ever write
//! well-formed reply lines, and must close after a timeout.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use smtpy_core::reply::Reply;
use smtpy_smtp::session::{Action, Event, PeerInfo, Session, SessionConfig, Timeout, Verdict};

fuzz_target!(|data: &[u8]| {
    let (read_size, input) = match data.split_first() {
        Some((&first, rest)) => (usize::from(first).max(1), rest),
        None => (1, data),
    };
    let config = SessionConfig::new("mx.fuzz.example")
        .with_max_message_size(64 * 1024)
        .with_max_line_length(512)
        .with_check_sender(read_size % 2 == 0);
    let peer = PeerInfo::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).with_tls_available(true);
    let mut session = Session::new(config, peer);
    drive(&mut session);
    for read in input.chunks(read_size) {
        session.feed(read);
        drive(&mut session);
    }
    session.timeout(Timeout::Command);
    drive(&mut session);
    assert!(session.is_closed());
    assert!(session.poll().is_none());
});

/// Writes are checked; actions get fixed answers.
fn drive(session: &mut Session) {
    let mut closed = false;
    while let Some(event) = session.poll() {
        assert!(!closed, "an event after Close");
        match event {
            Event::Write(bytes) => check_replies(&bytes),
            Event::Action(Action::CheckSender { .. }) => session.sender_result(Verdict::Accept),
            Event::Action(Action::CheckRecipient { forward_path, .. }) => {
                let verdict = match forward_path.local_part().as_str().len() % 3 {
                    0 => Verdict::Accept,
                    1 => Verdict::Reject(Reply::UNKNOWN_RECIPIENT),
                    _ => Verdict::TempFail(Reply::STORE_UNAVAILABLE),
                };
                session.recipient_result(verdict);
            }
            Event::Action(Action::Message { body, .. }) => {
                assert!(body.len() <= 64 * 1024, "body over the limit");
                session.message_result(Reply::new(250, (2, 0, 0), "Queued"));
            }
            Event::Action(Action::StartTls) => session.tls_established(),
            Event::Action(Action::Close) => closed = true,
            _ => {}
        }
    }
}

/// Every write is complete `ddd[ -]text CRLF` lines.
fn check_replies(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"));
    for line in bytes[..bytes.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() >= 4);
        assert!(line[..3].iter().all(u8::is_ascii_digit));
        assert!(line[3] == b' ' || line[3] == b'-');
        assert!(!line.contains(&b'\r'));
    }
}
