//! Limits: line length, message size (declared and streamed), recipients,
//! errors and messages per session, and the driver's time limits.

#[path = "session_harness.rs"]
mod harness;

use harness::{Client, codes, config, peer};
use smtpy_smtp::session::{SessionConfig, TimeLimits, Timeout};

#[test]
fn defaults_are_documented_values() {
    let config = SessionConfig::default();
    assert_eq!(config.hostname, "localhost");
    assert_eq!(config.max_line_length, 1024);
    assert_eq!(config.max_message_size, 25 * 1024 * 1024);
    assert_eq!(config.max_recipients, 100);
    assert_eq!(config.max_errors, 10);
    assert_eq!(config.max_messages, 100);
    assert!(!config.check_sender);
    let limits = TimeLimits::default();
    assert_eq!(limits.command.as_secs(), 300);
    assert_eq!(limits.session.as_secs(), 1800);
    assert!(limits.greeting_delay.is_zero());
}

#[test]
fn an_overlong_command_line_is_500_and_skipped_to_its_end() {
    let mut client = Client::with(config().with_max_line_length(64), peer());
    let mut line = b"NOOP ".to_vec();
    line.resize(200, b'x');
    line.extend_from_slice(b" QUIT\r\nNOOP\r\n");
    let text = client.send(&line);
    assert_eq!(text, "500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n");
    assert!(
        !client.session.is_closed(),
        "the tail of the long line did not run"
    );
}

#[test]
fn the_line_limit_counts_the_crlf() {
    let mut client = Client::with(config().with_max_line_length(64), peer());
    let mut fits = b"NOOP ".to_vec();
    fits.resize(62, b'x');
    fits.extend_from_slice(b"\r\n");
    assert_eq!(fits.len(), 64);
    assert_eq!(client.send(&fits), "250 2.0.0 OK\r\n");
    let mut too_long = b"NOOP ".to_vec();
    too_long.resize(63, b'x');
    too_long.extend_from_slice(b"\r\n");
    assert_eq!(
        client.send_bytewise(&too_long),
        "500 5.5.6 Line too long\r\n"
    );
}

#[test]
fn the_default_line_limit_allows_long_real_commands() {
    let mut client = Client::new();
    client.ehlo();
    let local = "a".repeat(64);
    let domain = format!(
        "{}.{}.{}.example",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(50)
    );
    let command = format!("MAIL FROM:<{local}@{domain}> SIZE=99999 BODY=8BITMIME SMTPUTF8\r\n");
    assert!(command.len() > 290, "{}", command.len());
    assert_eq!(client.send(command), "250 2.1.0 Sender OK\r\n");
}

#[test]
fn a_declared_size_over_the_limit_is_refused_at_mail() {
    let mut client = Client::with(config().with_max_message_size(1000), peer());
    client.ehlo();
    assert_eq!(
        client.send("MAIL FROM:<bob@example.org> SIZE=1001\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(client.session.envelope().is_none());
    assert_eq!(
        client.send("MAIL FROM:<bob@example.org> SIZE=1000\r\n"),
        "250 2.1.0 Sender OK\r\n"
    );
}

#[test]
fn a_streamed_message_over_the_limit_is_refused_at_its_end() {
    let mut client = Client::with(config().with_max_message_size(1000), peer());
    client.start_data();
    let line = format!("{}\r\n", "x".repeat(98));
    for _ in 0..30 {
        assert_eq!(client.send(&line), "", "nothing said before the end");
    }
    assert_eq!(
        client.send(".\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(client.messages.is_empty());
    // The session goes on.
    client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n");
    assert_eq!(client.send("small\r\n.\r\n"), "250 2.0.0 Queued\r\n");
}

#[test]
fn a_message_of_exactly_the_limit_is_accepted() {
    let mut client = Client::with(config().with_max_message_size(100), peer());
    client.start_data();
    let content = format!("{}\r\n", "y".repeat(98));
    client.send(format!("{content}.\r\n"));
    assert_eq!(client.only_message().1.len(), 100);
}

#[test]
fn past_the_recipient_limit_is_452_without_asking_the_driver() {
    let mut client = Client::with(config().with_max_recipients(3), peer());
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    for n in 0..3 {
        client.send(format!("RCPT TO:<r{n}@alias.example>\r\n"));
    }
    assert_eq!(
        client.send("RCPT TO:<r3@alias.example>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
    assert_eq!(
        client.send("RCPT TO:<postmaster>\r\n"),
        "452 4.5.3 Too many recipients\r\n"
    );
    assert_eq!(client.checked.len(), 3);
    client.send("DATA\r\n");
    client.send("x\r\n.\r\n");
    assert_eq!(client.only_message().0.recipients.len(), 3);
}

#[test]
fn too_many_errors_close_the_session() {
    let mut client = Client::with(config().with_max_errors(3), peer());
    for _ in 0..3 {
        assert!(client.send("BOGUS\r\n").starts_with("500 5.5.2 "));
    }
    assert_eq!(
        client.send("BOGUS\r\nNOOP\r\n"),
        "421 4.7.0 Too many errors, closing connection\r\n"
    );
    assert!(client.close_seen && client.session.is_closed());
}

#[test]
fn every_kind_of_protocol_error_counts() {
    let mut client = Client::with(config().with_max_errors(4), peer());
    client.send("MAIL FROM:<bob@example.org>\r\n"); // 503
    client.send("EHLO\r\n"); // 501
    client.send("X\rY\r\n"); // 500 bare CR
    let mut long = vec![b'x'; 2000];
    long.extend_from_slice(b"\r\n");
    client.send(&long); // 500 line too long
    assert!(!client.session.is_closed());
    assert!(client.send("VRFY\r\n").starts_with("421 4.7.0 "));
}

#[test]
fn driver_rejections_are_not_protocol_errors() {
    let mut client = Client::with(config().with_max_errors(2), peer());
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    for n in 0..10 {
        let reply = client.send(format!("RCPT TO:<x{n}@elsewhere.example>\r\n"));
        assert!(reply.starts_with("550 5.7.1 "), "{reply}");
    }
    assert!(!client.session.is_closed());
}

#[test]
fn past_the_message_limit_mail_is_421() {
    let mut client = Client::with(config().with_max_messages(2), peer());
    client.ehlo();
    for _ in 0..2 {
        client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\nDATA\r\n");
        client.send("x\r\n.\r\n");
    }
    assert_eq!(client.messages.len(), 2);
    assert_eq!(
        client.send("MAIL FROM:<bob@example.org>\r\n"),
        "421 4.7.0 Too many messages on this connection, reconnect\r\n"
    );
    assert!(client.close_seen);
}

#[test]
fn timeouts_are_421_4_4_2_and_close() {
    for (which, text) in [
        (
            Timeout::Command,
            "421 4.4.2 Timeout exceeded, closing connection\r\n",
        ),
        (
            Timeout::Session,
            "421 4.4.2 Connection time limit exceeded\r\n",
        ),
        (
            Timeout::DataRate,
            "421 4.4.2 Data transfer too slow, closing connection\r\n",
        ),
    ] {
        let mut client = Client::new();
        client.start_data();
        assert!(client.session.is_receiving_content());
        client.send("half a message\r\n");
        let start = client.wire.len();
        client.session.timeout(which);
        client.drain();
        assert_eq!(String::from_utf8_lossy(&client.wire[start..]), text);
        assert!(client.close_seen && client.session.is_closed());
        assert!(client.messages.is_empty());
        assert_eq!(
            client.send(".\r\n"),
            "",
            "input after the timeout is ignored"
        );
        client.session.timeout(which);
        assert!(
            client.session.poll().is_none(),
            "a second timeout adds nothing"
        );
    }
}

#[test]
fn shutdown_is_421_4_3_2() {
    let mut client = Client::new();
    client.ehlo();
    client.session.shutdown();
    client.drain();
    assert!(
        client
            .transcript()
            .ends_with("421 4.3.2 Service shutting down\r\n")
    );
    assert!(client.close_seen);
}

#[test]
fn limits_hold_for_pipelined_input_too() {
    let mut client = Client::with(config().with_max_recipients(1), peer());
    let text = client.send(
        "EHLO c\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<a@alias.example>\r\n\
         RCPT TO:<b@alias.example>\r\nDATA\r\n",
    );
    assert_eq!(codes(&text), [250, 250, 250, 452, 354]);
}
