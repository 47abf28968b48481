//! PIPELINING (RFC 2920) and its synchronisation points: the greeting
//! (early talkers), DATA's 354, and STARTTLS (RFC 3207, CVE-2011-0411).

#[path = "session_harness.rs"]
mod harness;

use harness::{Client, QUEUED, codes, config, peer, replies};
use smtpy_core::reply::Reply;
use smtpy_smtp::session::{Action, Awaiting, Event, Session, Verdict};

#[test]
fn a_whole_envelope_in_one_write_is_answered_in_order() {
    let mut client = Client::new();
    let text = client.send(
        "EHLO client.example\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<unknown@alias.example>\r\n\
         RCPT TO:<shop@alias.example>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n",
    );
    assert_eq!(
        replies(&text),
        [
            "250 STARTTLS",
            "250 2.1.0 Sender OK",
            "550 5.1.1 No such recipient here",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Postmaster OK",
            "354 Start mail input; end with <CRLF>.<CRLF>",
        ]
    );
    assert_eq!(
        client.send("hello\r\n.\r\nQUIT\r\n"),
        "250 2.0.0 Queued\r\n221 2.0.0 Bye\r\n"
    );
    assert_eq!(client.only_message().1, b"hello\r\n");
}

#[test]
fn data_is_refused_when_every_recipient_was_rejected() {
    let mut client = Client::new();
    let text = client.send(
        "EHLO client.example\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<unknown@alias.example>\r\n\
         RCPT TO:<x@elsewhere.example>\r\nDATA\r\n",
    );
    assert_eq!(codes(&text), [250, 250, 550, 550, 554]);
    assert!(
        text.ends_with("554 5.5.1 No valid recipients\r\n"),
        "{text}"
    );
    assert!(!client.session.is_receiving_content());
    // The transaction is still open; RSET and a new one work.
    assert_eq!(client.send("RSET\r\n"), "250 2.0.0 OK\r\n");
    assert!(client.messages.is_empty());
}

#[test]
fn data_waits_until_every_recipient_is_decided() {
    let mut client = Client::new();
    client.answer = false;
    client.send(
        "EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\n\
         RCPT TO:<unknown@alias.example>\r\nDATA\r\n",
    );
    assert_eq!(client.session.awaiting(), Some(Awaiting::Recipient));
    assert_eq!(client.checked, ["shop@alias.example"]);
    assert!(!client.transcript().contains("354"));

    client.session.recipient_result(Verdict::Accept);
    client.drain();
    assert_eq!(
        client.checked,
        ["shop@alias.example", "unknown@alias.example"]
    );
    assert!(
        !client.transcript().contains("354"),
        "second RCPT still open"
    );

    client
        .session
        .recipient_result(Verdict::Reject(Reply::UNKNOWN_RECIPIENT));
    client.drain();
    let text = client.transcript();
    assert!(text.ends_with("250 2.1.5 Recipient OK\r\n550 5.1.1 No such recipient here\r\n354 Start mail input; end with <CRLF>.<CRLF>\r\n"), "{text}");
}

#[test]
fn replies_before_an_action_are_written_before_it() {
    let mut session = Session::new(config(), peer());
    let _greeting = session.poll();
    session.feed(b"EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\n");
    let Some(Event::Write(first)) = session.poll() else {
        panic!("replies first");
    };
    assert!(first.ends_with(b"250 2.1.0 Sender OK\r\n"));
    assert!(matches!(
        session.poll(),
        Some(Event::Action(Action::CheckRecipient { .. }))
    ));
    assert_eq!(session.poll(), None);
}

#[test]
fn content_pipelined_behind_data_is_refused_and_never_read_as_commands() {
    let mut client = Client::new();
    let text = client.send(
        "EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n\
         Subject: blind\r\n\r\nhi\r\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@alias.example>\r\n",
    );
    assert!(
        text.ends_with(
            "250 2.1.5 Recipient OK\r\n554 5.5.0 Synchronization error: input sent before the reply to DATA\r\n"
        ),
        "{text}"
    );
    assert!(!text.contains("354 Start"));
    assert!(client.close_seen);
    assert!(client.messages.is_empty());
    assert_eq!(client.checked, ["shop@alias.example"]);
}

#[test]
fn data_with_nothing_after_it_then_content_in_the_next_write_is_fine() {
    let mut client = Client::new();
    client
        .send("EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n");
    assert_eq!(client.send("x\r\n.\r\n"), "250 2.0.0 Queued\r\n");
}

#[test]
fn content_fed_before_the_354_was_written_is_refused() {
    let mut session = Session::new(config(), peer());
    let _greeting = session.poll();
    session.feed(b"EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<postmaster>\r\nDATA\r\n");
    // The driver reads again before writing the 354.
    session.feed(b"Subject: too early\r\n\r\n.\r\n");
    let mut text = Vec::new();
    let mut closed = false;
    while let Some(event) = session.poll() {
        match event {
            Event::Write(bytes) => text.extend_from_slice(&bytes),
            Event::Action(Action::Close) => closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(!text.contains("354 Start"), "{text}");
    assert!(text.ends_with("250 2.1.5 Postmaster OK\r\n554 5.5.0 Synchronization error: input sent before the reply to DATA\r\n"), "{text}");
    assert!(closed && session.is_closed());
}

#[test]
fn an_early_talker_gets_554_instead_of_the_greeting() {
    let mut client = Client::unpolled(config(), peer());
    // The driver pauses before the greeting and reads meanwhile.
    client.session.feed(b"EHLO spambot\r\n");
    client.drain();
    assert_eq!(
        client.transcript(),
        "554 5.5.0 Protocol violation: client sent data before the greeting\r\n"
    );
    assert!(client.close_seen);
}

#[test]
fn a_patient_client_gets_the_greeting_after_the_pause() {
    let mut client = Client::unpolled(config(), peer());
    client.session.feed(b"");
    client.drain();
    assert!(client.transcript().starts_with("220 "));
    assert!(client.ehlo().starts_with("250-"));
}

#[test]
fn plaintext_after_starttls_is_discarded_and_the_session_starts_over() {
    let mut client = Client::new();
    client.auto_tls = false;
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    let text = client
        .send("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\nRCPT TO:<shop@alias.example>\r\n");
    assert_eq!(text, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(client.starttls_requests, 1);
    assert_eq!(client.session.awaiting(), Some(Awaiting::Tls));
    // Plaintext fed before the handshake completes is dropped too.
    assert_eq!(client.send("RCPT TO:<shop@alias.example>\r\n"), "");

    client.session.tls_established();
    client.drain();
    assert!(client.session.is_tls());
    assert!(client.checked.is_empty(), "injected commands never ran");
    assert!(client.session.envelope().is_none(), "transaction reset");
    assert_eq!(client.session.helo(), None);
    assert!(
        client
            .send("MAIL FROM:<bob@example.org>\r\n")
            .starts_with("503 5.5.1 ")
    );

    let ehlo = client.ehlo();
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.ends_with("250 CHUNKING\r\n"));
    assert!(client.send("STARTTLS\r\n").starts_with("503 5.5.1 "));

    client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n");
    client.send("secret\r\n.\r\n");
    let (envelope, _) = client.only_message();
    assert!(envelope.tls);
    assert_eq!(envelope.protocol(), "ESMTPS");
}

#[test]
fn starttls_needs_a_certificate_and_a_greeting() {
    let mut client = Client::with(config(), peer().with_tls_available(false));
    client.ehlo();
    assert!(client.send("STARTTLS\r\n").starts_with("502 5.5.1 "));
    let mut client = Client::new();
    assert!(client.send("STARTTLS\r\n").starts_with("503 5.5.1 "));
    assert_eq!(client.starttls_requests, 0);
}

#[test]
fn commands_pipelined_after_the_message_wait_for_the_queue() {
    let mut client = Client::new();
    client.start_data();
    client.answer = false;
    let text = client.send("body\r\n.\r\nRSET\r\nQUIT\r\n");
    assert_eq!(text, "");
    assert_eq!(client.session.awaiting(), Some(Awaiting::Message));
    client.session.message_result(QUEUED);
    client.drain();
    assert!(
        client
            .transcript()
            .ends_with("250 2.0.0 Queued\r\n250 2.0.0 OK\r\n221 2.0.0 Bye\r\n")
    );
    assert!(client.close_seen);
}

#[test]
fn bdat_may_be_pipelined_behind_the_envelope() {
    let mut client = Client::new();
    let text = client.send(
        "EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nBDAT 5 LAST\r\nhello",
    );
    assert_eq!(codes(&text), [250, 250, 250, 250]);
    assert_eq!(client.only_message().1, b"hello");
}

#[test]
fn a_driver_that_keeps_reading_while_busy_is_bounded() {
    let mut client = Client::with(config().with_max_buffered_input(64 * 1024), peer());
    client.answer = false;
    client.send("EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\n");
    assert_eq!(client.session.awaiting(), Some(Awaiting::Recipient));
    let noise = vec![b'x'; 16 * 1024];
    for _ in 0..5 {
        client.send(&noise);
    }
    assert!(
        client
            .transcript()
            .ends_with("421 4.7.0 Too much pipelined input, closing connection\r\n")
    );
    assert!(client.close_seen);
}

#[test]
fn commands_pipelined_behind_a_refused_data_are_not_run() {
    let mut client = Client::new();
    let text = client.send(
        "EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<unknown@alias.example>\r\nDATA\r\n\
         RSET\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@alias.example>\r\n",
    );
    assert!(
        text.ends_with("550 5.1.1 No such recipient here\r\n554 5.5.0 Synchronization error: input sent before the reply to DATA\r\n"),
        "{text}"
    );
    assert!(client.close_seen);
    assert_eq!(client.checked, ["unknown@alias.example"]);
}

#[test]
fn input_fed_before_a_refused_data_reply_was_written_is_refused() {
    let mut session = Session::new(config(), peer());
    let _greeting = session.poll();
    session.feed(b"EHLO c\r\nDATA\r\n");
    session.feed(b"MAIL FROM:<bob@example.org>\r\n");
    let mut text = Vec::new();
    while let Some(event) = session.poll() {
        if let Event::Write(bytes) = event {
            text.extend_from_slice(&bytes);
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(!text.contains("503"), "{text}");
    assert!(
        text.ends_with("554 5.5.0 Synchronization error: input sent before the reply to DATA\r\n"),
        "{text}"
    );
    assert!(session.is_closed());
}
