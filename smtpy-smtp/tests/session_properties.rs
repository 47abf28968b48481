//! Properties over arbitrary input: the session never panics, always writes
//! well-formed replies, and how the input is split into reads does not
//! change what it does.
//!
//! Split independence is checked two ways. Fed without polling in between
//! (so no reply is written while input arrives), any split gives the same
//! outputs, synchronisation points included. Polled after every read — a
//! real driver — the split can legitimately matter at the points where the
//! client must wait for a reply (DATA's 354, STARTTLS), so that property
//! uses streams without them.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use smtpy_core::reply::Reply;
use smtpy_smtp::session::{Action, Event, PeerInfo, Session, SessionConfig, Verdict};

/// What came out, with consecutive writes merged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Bytes(Vec<u8>),
    Action(String),
}

fn session() -> Session {
    let config = SessionConfig::new("mx.prop.example")
        .with_max_message_size(2048)
        .with_max_line_length(128)
        .with_max_errors(40)
        .with_max_recipients(4)
        .with_check_sender(true);
    let peer = PeerInfo::new(IpAddr::V4(Ipv4Addr::LOCALHOST)).with_tls_available(true);
    Session::new(config, peer)
}

/// Polls everything, answering actions deterministically.
fn drain(session: &mut Session, out: &mut Vec<Out>) {
    while let Some(event) = session.poll() {
        assert!(
            !matches!(out.last(), Some(Out::Action(a)) if a == "Close"),
            "nothing may follow Close"
        );
        match event {
            Event::Write(bytes) => {
                assert!(!bytes.is_empty(), "empty write");
                if let Some(Out::Bytes(last)) = out.last_mut() {
                    last.extend_from_slice(&bytes);
                } else {
                    out.push(Out::Bytes(bytes));
                }
            }
            Event::Action(action) => {
                out.push(Out::Action(format!("{action:?}")));
                match action {
                    Action::CheckSender { .. } => session.sender_result(Verdict::Accept),
                    Action::CheckRecipient { forward_path, .. } => {
                        let even = forward_path.local_part().as_str().len() % 2 == 0;
                        session.recipient_result(if even {
                            Verdict::Reject(Reply::UNKNOWN_RECIPIENT)
                        } else {
                            Verdict::Accept
                        });
                    }
                    Action::Message { .. } => {
                        session.message_result(Reply::new(250, (2, 0, 0), "Queued"));
                    }
                    Action::StartTls => session.tls_established(),
                    _ => {}
                }
            }
            _ => panic!("unexpected event"),
        }
    }
}

/// `input` cut at the given points (taken modulo its length).
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points {
        pieces.push(&input[start..point]);
        start = point;
    }
    pieces.push(&input[start..]);
    pieces
}

/// Greeting written, then every piece fed without polling, then drained.
fn run_unpolled(pieces: &[&[u8]]) -> Vec<Out> {
    let mut session = session();
    let mut out = Vec::new();
    drain(&mut session, &mut out);
    for piece in pieces {
        session.feed(piece);
    }
    drain(&mut session, &mut out);
    out
}

/// Drained after every piece, like a driver reading a socket.
fn run_interleaved(pieces: &[&[u8]]) -> Vec<Out> {
    let mut session = session();
    let mut out = Vec::new();
    drain(&mut session, &mut out);
    for piece in pieces {
        session.feed(piece);
        drain(&mut session, &mut out);
    }
    session.timeout(smtpy_smtp::session::Timeout::Command);
    drain(&mut session, &mut out);
    assert!(session.is_closed());
    out
}

/// Every write is a sequence of `ddd SP|- text CRLF` lines.
fn assert_well_formed(out: &[Out]) {
    for item in out {
        let Out::Bytes(bytes) = item else { continue };
        assert!(
            bytes.ends_with(b"\r\n"),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        let text = String::from_utf8_lossy(bytes);
        for line in text.strip_suffix("\r\n").unwrap_or(&text).split("\r\n") {
            let b = line.as_bytes();
            assert!(b.len() >= 4, "{line:?}");
            assert!(b[..3].iter().all(u8::is_ascii_digit), "{line:?}");
            assert!(b[3] == b' ' || b[3] == b'-', "{line:?}");
            assert!(!line.contains('\r') && !line.contains('\n'), "{line:?}");
        }
    }
}

const FRAGMENTS: &[&[u8]] = &[
    b"EHLO c.example\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<>\r\n",
    b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<a@b.example> SIZE=999999\r\n",
    b"RCPT TO:<x@alias.example>\r\n",
    b"RCPT TO:<yy@alias.example>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"RCPT TO:<bad>\r\n",
    b"BDAT 5\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT x\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"QUIT\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"\r",
    b"\n",
    b".",
    b"hello",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// Fragments that make the client wait for a reply.
const SYNC_FRAGMENTS: &[&[u8]] = &[b"DATA\r\n", b"STARTTLS\r\n"];

fn stream(with_sync: bool) -> impl Strategy<Value = Vec<u8>> {
    let mut vocabulary: Vec<&'static [u8]> = FRAGMENTS.to_vec();
    if with_sync {
        vocabulary.extend_from_slice(SYNC_FRAGMENTS);
        // Make DATA likely enough that messages really get sent.
        vocabulary.extend_from_slice(&[b"DATA\r\n", b"DATA\r\n"]);
    }
    prop::collection::vec(prop::sample::select(vocabulary), 0..60).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_split_anywhere_give_the_same_outputs(
        input in prop::collection::vec(any::<u8>(), 0..1500),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let whole = run_unpolled(&[&input]);
        assert_well_formed(&whole);
        prop_assert_eq!(&whole, &run_unpolled(&split(&input, &cuts)));
        assert_well_formed(&run_interleaved(&split(&input, &cuts)));
    }

    #[test]
    fn smtp_streams_split_anywhere_give_the_same_outputs(
        input in stream(true),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let whole = run_unpolled(&[&input]);
        assert_well_formed(&whole);
        prop_assert_eq!(&whole, &run_unpolled(&split(&input, &cuts)));
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&whole, &run_unpolled(&bytewise));
        assert_well_formed(&run_interleaved(&split(&input, &cuts)));
    }

    #[test]
    fn without_sync_points_reads_polled_one_by_one_give_the_same_outputs(
        input in stream(false),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let whole = run_interleaved(&[&input]);
        assert_well_formed(&whole);
        prop_assert_eq!(&whole, &run_interleaved(&split(&input, &cuts)));
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&whole, &run_interleaved(&bytewise));
    }
}

#[test]
fn the_stream_vocabulary_reaches_deep_states() {
    // A sanity check that the generated conversations are not all refused at
    // the first command: a fixed stream built from the vocabulary delivers.
    let input = [
        FRAGMENTS[0],
        FRAGMENTS[2],
        FRAGMENTS[6],
        FRAGMENTS[11],
        b"abc",
        FRAGMENTS[2],
        FRAGMENTS[8],
    ]
    .concat();
    let out = run_interleaved(&[&input]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Out::Action(a) if a.starts_with("Message")))
    );
}

#[test]
fn a_refused_data_is_a_synchronisation_point_too() {
    // Found by the properties above: a read ending right after a refused
    // DATA must not behave differently from input pipelined behind it.
    let input = b"EHLO c.example\r\nDATA\r\nEHLO c.example\r\n";
    let whole = run_unpolled(&[input]);
    assert_eq!(whole, run_unpolled(&split(input, &[22])));
    assert!(matches!(whole.last(), Some(Out::Action(a)) if a == "Close"));
}
