//! Conversations with the session: every command, its replies and the
//! transaction it builds.

#[path = "session_harness.rs"]
mod harness;

use harness::{Client, codes, config, peer, replies};
use smtpy_core::reply::Reply;
use smtpy_smtp::session::{
    Awaiting, BodyType, ForwardPath, MailParams, PeerInfo, Session, SessionConfig, Verdict,
};

#[test]
fn greeting_names_the_server() {
    let client = Client::new();
    assert_eq!(client.transcript(), "220 mx.alias.example ESMTP ready\r\n");
}

#[test]
fn ehlo_lists_every_extension_as_a_multiline_reply() {
    let mut client = Client::new();
    let reply = client.ehlo();
    assert_eq!(
        reply,
        "250-mx.alias.example\r\n\
         250-PIPELINING\r\n\
         250-SIZE 26214400\r\n\
         250-8BITMIME\r\n\
         250-SMTPUTF8\r\n\
         250-ENHANCEDSTATUSCODES\r\n\
         250-CHUNKING\r\n\
         250 STARTTLS\r\n"
    );
    assert_eq!(client.session.helo(), Some("client.example"));
}

#[test]
fn ehlo_omits_starttls_without_a_certificate_or_under_implicit_tls() {
    let plain = peer().with_tls_available(false);
    let mut client = Client::with(config().with_max_message_size(1000), plain);
    let reply = client.ehlo();
    assert!(!reply.contains("STARTTLS"), "{reply}");
    assert!(reply.contains("250-SIZE 1000\r\n"));
    assert!(reply.ends_with("250 CHUNKING\r\n"), "{reply}");

    let mut client = Client::with(config(), peer().with_implicit_tls());
    assert!(!client.ehlo().contains("STARTTLS"));
    assert!(client.session.is_tls());
}

#[test]
fn helo_is_plain_smtp_without_parameters() {
    let mut client = Client::new();
    assert_eq!(client.send("HELO client\r\n"), "250 mx.alias.example\r\n");
    let reply = client.send("MAIL FROM:<bob@example.org> SIZE=100\r\n");
    assert!(reply.starts_with("555 5.5.4 "), "{reply}");
    assert!(
        client
            .send("MAIL FROM:<bob@example.org>\r\n")
            .starts_with("250 2.1.0")
    );
    assert!(
        client
            .send("RCPT TO:<shop@alias.example>\r\n")
            .starts_with("250 2.1.5")
    );
    assert!(client.send("DATA\r\n").starts_with("354 "));
    client.send("hi\r\n.\r\n");
    let (envelope, _) = client.only_message();
    assert!(!envelope.esmtp);
    assert_eq!(envelope.protocol(), "SMTP");
}

#[test]
fn a_transaction_delivers_the_body_exactly() {
    let mut client = Client::new();
    client.ehlo();
    assert_eq!(
        client.send("MAIL FROM:<bob@example.org>\r\n"),
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        client.send("RCPT TO:<shop@alias.example>\r\n"),
        "250 2.1.5 Recipient OK\r\n"
    );
    assert_eq!(
        client.send("DATA\r\n"),
        "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
    );
    assert!(client.session.is_receiving_content());
    let reply = client.send(
        "From: Bob <bob@example.org>\r\nSubject: hi\r\n\r\nline one\r\n..leading dot\r\n\r\n.\r\n",
    );
    assert_eq!(reply, "250 2.0.0 Queued\r\n");
    let (envelope, body) = client.only_message();
    assert_eq!(
        body,
        b"From: Bob <bob@example.org>\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n\r\n"
    );
    assert_eq!(
        envelope.reverse_path.as_ref().map(|a| a.canonical()),
        Some("bob@example.org".to_owned())
    );
    assert_eq!(envelope.recipients.len(), 1);
    assert_eq!(
        envelope
            .mailboxes()
            .map(|a| a.canonical())
            .collect::<Vec<_>>(),
        ["shop@alias.example"]
    );
    assert_eq!(envelope.helo, "client.example");
    assert!(envelope.esmtp && !envelope.tls);
    assert_eq!(envelope.protocol(), "ESMTP");
    assert_eq!(client.checked, ["shop@alias.example"]);
    assert!(!client.session.is_receiving_content());
    assert!(client.session.envelope().is_none());
    assert_eq!(client.session.message_count(), 1);
}

#[test]
fn several_messages_on_one_connection() {
    let mut client = Client::new();
    client.ehlo();
    for n in 0..3 {
        client.send("MAIL FROM:<bob@example.org>\r\n");
        client.send(format!("RCPT TO:<n{n}@alias.example>\r\n"));
        client.send("DATA\r\n");
        assert_eq!(
            client.send(format!("message {n}\r\n.\r\n")),
            "250 2.0.0 Queued\r\n"
        );
    }
    assert_eq!(client.messages.len(), 3);
    assert_eq!(client.messages[2].1, b"message 2\r\n");
}

#[test]
fn the_queue_reply_is_what_the_client_gets() {
    let mut client = Client::new();
    client.message_reply = Reply::STORE_UNAVAILABLE;
    client.start_data();
    assert_eq!(
        client.send("x\r\n.\r\n"),
        "451 4.4.3 Temporary lookup failure, try again later\r\n"
    );
    // The transaction is over either way.
    assert!(
        client
            .send("RCPT TO:<a@alias.example>\r\n")
            .starts_with("503 5.5.1")
    );
}

#[test]
fn rset_clears_the_transaction_but_not_the_greeting() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    client.send("RCPT TO:<shop@alias.example>\r\n");
    assert!(client.session.envelope().is_some());
    assert_eq!(client.send("RSET\r\n"), "250 2.0.0 OK\r\n");
    assert!(client.session.envelope().is_none());
    assert!(client.send("DATA\r\n").starts_with("503 5.5.1 "));
    assert!(
        client
            .send("RCPT TO:<shop@alias.example>\r\n")
            .starts_with("503 5.5.1 ")
    );
    // Still greeted: a new transaction works.
    assert!(client.send("MAIL FROM:<>\r\n").starts_with("250 2.1.0"));
}

#[test]
fn noop_help_and_vrfy() {
    let mut client = Client::new();
    assert_eq!(client.send("NOOP\r\n"), "250 2.0.0 OK\r\n");
    assert_eq!(client.send("noop anything\r\n"), "250 2.0.0 OK\r\n");
    assert!(client.send("HELP\r\n").starts_with("214 2.0.0 "));
    assert_eq!(
        client.send("VRFY shop@alias.example\r\n"),
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert!(client.checked.is_empty(), "VRFY must not look anything up");
}

#[test]
fn quit_says_goodbye_and_closes() {
    let mut client = Client::new();
    client.ehlo();
    assert_eq!(client.send("QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
    assert!(client.close_seen);
    assert!(client.session.is_closed());
    assert_eq!(client.send("NOOP\r\n"), "");
}

#[test]
fn commands_out_of_sequence_are_503() {
    let mut client = Client::new();
    for command in [
        "MAIL FROM:<bob@example.org>\r\n",
        "RCPT TO:<shop@alias.example>\r\n",
        "DATA\r\n",
    ] {
        let reply = client.send(command);
        assert!(reply.starts_with("503 5.5.1 "), "{command}: {reply}");
    }
    client.ehlo();
    assert!(
        client
            .send("RCPT TO:<shop@alias.example>\r\n")
            .starts_with("503 5.5.1 ")
    );
    assert!(client.send("DATA\r\n").starts_with("503 5.5.1 "));
    client.send("MAIL FROM:<bob@example.org>\r\n");
    assert!(
        client
            .send("MAIL FROM:<bob@example.org>\r\n")
            .starts_with("503 5.5.1 ")
    );
}

#[test]
fn unknown_commands_are_500() {
    let mut client = Client::new();
    for command in [
        "FOO\r\n",
        "MAILX FROM:<a@b.example>\r\n",
        "\r\n",
        "LHLO x\r\n",
        "GET / HTTP/1.1\r\n",
    ] {
        assert_eq!(
            client.send(command),
            "500 5.5.2 Command unrecognized\r\n",
            "{command:?}"
        );
    }
    for command in [
        "AUTH PLAIN AAAA\r\n",
        "EXPN staff\r\n",
        "ETRN example.org\r\n",
    ] {
        assert!(
            client.send(command).starts_with("502 5.5.1 "),
            "{command:?}"
        );
    }
}

#[test]
fn syntax_errors_are_501() {
    let mut client = Client::new();
    for command in ["EHLO\r\n", "HELO\r\n", "VRFY\r\n"] {
        let reply = client.send(command);
        assert!(reply.starts_with("501 5.5.4 "), "{command:?}: {reply}");
    }
    client.ehlo();
    for command in [
        "MAIL FROM:bob@example.org\r\n",
        "MAIL bob@example.org\r\n",
        "MAIL FROM:<bob@example.org> SIZE=big\r\n",
        "DATA now\r\n",
        "RSET all\r\n",
        "STARTTLS please\r\n",
    ] {
        let reply = client.send(command);
        assert!(reply.starts_with("501 5.5.4 "), "{command:?}: {reply}");
    }
}

#[test]
fn a_bare_cr_in_a_command_is_refused_and_a_bare_lf_ends_one() {
    let mut client = Client::new();
    assert_eq!(
        client.send("NO\rOP\r\n"),
        "500 5.5.2 Bare CR in command line\r\n"
    );
    assert_eq!(client.send("NOOP\n"), "250 2.0.0 OK\r\n");
}

#[test]
fn every_reply_but_greeting_ehlo_and_354_has_an_enhanced_code() {
    let mut client = Client::new();
    client.ehlo();
    client.send("HELO x\r\n");
    client.ehlo();
    for command in [
        "NOOP\r\n",
        "HELP\r\n",
        "VRFY x\r\n",
        "FOO\r\n",
        "RCPT TO:<a@alias.example>\r\n",
        "MAIL FROM:<bob@example.org> RET=FULL\r\n",
        "MAIL FROM:<bad>\r\n",
        "MAIL FROM:<bob@example.org>\r\n",
        "RCPT TO:<unknown@alias.example>\r\n",
        "RCPT TO:<busy@alias.example>\r\n",
        "RCPT TO:<x@elsewhere.example>\r\n",
        "RCPT TO:<nodomain>\r\n",
        "RCPT TO:<postmaster>\r\n",
        "RCPT TO:<shop@alias.example>\r\n",
        "DATA\r\n",
        "body\r\n.\r\n",
        "BDAT 0\r\n",
        "RSET\r\n",
        "QUIT\r\n",
    ] {
        client.send(command);
    }
    let transcript = client.transcript();
    let mut checked = 0;
    for line in transcript.split("\r\n").filter(|line| !line.is_empty()) {
        let exempt = line.starts_with("220 mx.alias.example ")
            || line.starts_with("250-")
            || line == "250 mx.alias.example"
            || line == "250 STARTTLS"
            || line.starts_with("354 ");
        if exempt {
            continue;
        }
        let code = &line[..3];
        let enhanced = line[4..].split(' ').next().unwrap_or_default();
        let parts: Vec<&str> = enhanced.split('.').collect();
        assert_eq!(parts.len(), 3, "no enhanced code in {line:?}");
        assert_eq!(parts[0], &code[..1], "class mismatch in {line:?}");
        assert!(parts.iter().all(|p| p.parse::<u16>().is_ok()), "{line:?}");
        checked += 1;
    }
    assert!(checked >= 18, "{transcript}");
}

#[test]
fn the_null_sender_is_accepted() {
    let mut client = Client::new();
    client.ehlo();
    assert_eq!(client.send("MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
    client.send("RCPT TO:<shop@alias.example>\r\nDATA\r\n");
    client.send("bounce\r\n.\r\n");
    let (envelope, _) = client.only_message();
    assert_eq!(envelope.reverse_path, None);
}

#[test]
fn postmaster_without_domain_is_accepted_by_the_session_itself() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    assert_eq!(
        client.send("RCPT TO:<Postmaster>\r\n"),
        "250 2.1.5 Postmaster OK\r\n"
    );
    assert_eq!(
        client.send("RCPT TO:<POSTMASTER>\r\n"),
        "250 2.1.5 Postmaster OK\r\n"
    );
    assert!(client.checked.is_empty(), "the driver is not asked");
    // With a domain it is an ordinary address, for the driver to decide.
    client.send("RCPT TO:<postmaster@alias.example>\r\n");
    assert_eq!(client.checked, ["postmaster@alias.example"]);
    client.send("DATA\r\n");
    client.send("help\r\n.\r\n");
    let (envelope, _) = client.only_message();
    assert!(envelope.has_postmaster());
    assert_eq!(
        envelope.recipients.len(),
        2,
        "the duplicate postmaster is listed once"
    );
    assert_eq!(envelope.recipients[0], ForwardPath::Postmaster);
    assert!(
        matches!(&envelope.recipients[1], ForwardPath::Mailbox(a) if a.canonical() == "postmaster@alias.example")
    );
}

#[test]
fn a_malformed_forward_path_is_553_without_asking_the_driver() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    for path in [
        "nodomain",
        "",
        "a@b@alias.example",
        "a..b@alias.example",
        "x@[192.0.2.1]",
        "x@-bad-.example",
    ] {
        let reply = client.send(format!("RCPT TO:<{path}>\r\n"));
        assert_eq!(reply, "553 5.1.3 Invalid address syntax\r\n", "{path:?}");
    }
    assert!(client.checked.is_empty());
}

#[test]
fn a_malformed_reverse_path_is_553_5_1_7() {
    let mut client = Client::new();
    client.ehlo();
    for path in ["nodomain", "postmaster", "a@[192.0.2.1]"] {
        let reply = client.send(format!("MAIL FROM:<{path}>\r\n"));
        assert!(reply.starts_with("553 5.1.7 "), "{path:?}: {reply}");
    }
}

#[test]
fn source_routes_and_quoted_local_parts_are_understood() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<@relay.example:bob@example.org>\r\n");
    client.send("RCPT TO:<\"john doe\"@alias.example>\r\n");
    assert_eq!(client.checked, ["\"john doe\"@alias.example"]);
    let envelope = client.session.envelope().expect("transaction");
    assert_eq!(
        envelope.reverse_path.as_ref().map(|a| a.canonical()),
        Some("bob@example.org".to_owned())
    );
}

#[test]
fn eightbitmime_smtputf8_and_size_are_accepted() {
    let mut client = Client::new();
    client.ehlo();
    let reply = client.send("MAIL FROM:<bob@example.org> BODY=8BITMIME SMTPUTF8 SIZE=1234\r\n");
    assert_eq!(reply, "250 2.1.0 Sender OK\r\n");
    assert_eq!(
        client.send("RCPT TO:<jos\u{e9}@alias.example>\r\n"),
        "250 2.1.5 Recipient OK\r\n"
    );
    client.send("DATA\r\n");
    client.send("Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n.\r\n");
    let (envelope, body) = client.only_message();
    assert_eq!(
        envelope.params,
        MailParams {
            size: Some(1234),
            body: Some(BodyType::EightBitMime),
            smtputf8: true,
        }
    );
    assert_eq!(envelope.protocol(), "UTF8SMTP");
    assert_eq!(
        body,
        "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes()
    );

    client.send("MAIL FROM:<bob@example.org> BODY=7BIT\r\n");
    assert_eq!(
        client.session.envelope().map(|e| e.params.body),
        Some(Some(BodyType::SevenBit))
    );
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let mut client = Client::new();
    client.ehlo();
    assert!(
        client
            .send("MAIL FROM:<jos\u{e9}@example.org>\r\n")
            .starts_with("553 5.6.7 ")
    );
    client.send("MAIL FROM:<bob@example.org>\r\n");
    assert!(
        client
            .send("RCPT TO:<jos\u{e9}@alias.example>\r\n")
            .starts_with("553 5.6.7 ")
    );
}

#[test]
fn parameters_smtpy_does_not_offer_are_555() {
    let mut client = Client::new();
    client.ehlo();
    for command in [
        "MAIL FROM:<bob@example.org> BODY=BINARYMIME\r\n",
        "MAIL FROM:<bob@example.org> RET=FULL\r\n",
        "MAIL FROM:<bob@example.org> ENVID=abc\r\n",
        "MAIL FROM:<bob@example.org> REQUIRETLS\r\n",
        "MAIL FROM:<bob@example.org> FOO=BAR\r\n",
    ] {
        let reply = client.send(command);
        assert!(reply.starts_with("555 5.5.4 "), "{command:?}: {reply}");
    }
    client.send("MAIL FROM:<bob@example.org>\r\n");
    for command in [
        "RCPT TO:<shop@alias.example> NOTIFY=NEVER\r\n",
        "RCPT TO:<shop@alias.example> ORCPT=rfc822;shop@alias.example\r\n",
        "RCPT TO:<shop@alias.example> XYZ\r\n",
    ] {
        let reply = client.send(command);
        assert!(reply.starts_with("555 5.5.4 "), "{command:?}: {reply}");
    }
    assert!(client.checked.is_empty());
}

#[test]
fn recipient_verdicts_are_answered_in_order() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    let text = client.send(
        "RCPT TO:<unknown@alias.example>\r\nRCPT TO:<busy@alias.example>\r\n\
         RCPT TO:<x@elsewhere.example>\r\nRCPT TO:<shop@alias.example>\r\n\
         RCPT TO:<SHOP@alias.example>\r\n",
    );
    assert_eq!(
        replies(&text),
        [
            "550 5.1.1 No such recipient here",
            "451 4.4.3 Temporary lookup failure, try again later",
            "550 5.7.1 Relaying denied",
            "250 2.1.5 Recipient OK",
            "250 2.1.5 Recipient OK",
        ]
    );
    let envelope = client.session.envelope().expect("transaction");
    assert_eq!(envelope.recipients.len(), 1, "duplicates are listed once");
}

#[test]
fn a_positive_reply_in_a_refusal_becomes_a_temporary_failure() {
    let mut client = Client::new();
    client.policy = Box::new(|_| Verdict::Reject(Reply::RECIPIENT_OK));
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\n");
    let reply = client.send("RCPT TO:<shop@alias.example>\r\n");
    assert!(reply.starts_with("451 4.3.0 "), "{reply}");
    assert!(
        client
            .session
            .envelope()
            .is_some_and(|e| e.recipients.is_empty())
    );
}

#[test]
fn the_driver_can_check_senders() {
    let mut client = Client::with(config().with_check_sender(true), peer());
    client.sender_verdict = Verdict::Reject(Reply::new(550, (5, 7, 1), "Sender refused"));
    client.ehlo();
    assert_eq!(
        client.send("MAIL FROM:<spammer@example.org>\r\n"),
        "550 5.7.1 Sender refused\r\n"
    );
    assert_eq!(client.senders, ["spammer@example.org"]);
    assert!(client.session.envelope().is_none());
    client.sender_verdict = Verdict::Accept;
    assert_eq!(client.send("MAIL FROM:<>\r\n"), "250 2.1.0 Sender OK\r\n");
    assert_eq!(client.senders, ["spammer@example.org", ""]);
    assert!(client.session.envelope().is_some());
}

#[test]
fn answers_the_session_does_not_wait_for_are_ignored() {
    let mut session = Session::new(SessionConfig::new("mx.alias.example"), peer());
    assert!(session.poll().is_some());
    session.feed(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<shop@alias.example>\r\n");
    assert_eq!(session.awaiting(), Some(Awaiting::Recipient));
    session.message_result(Reply::new(250, (2, 0, 0), "ok"));
    session.tls_established();
    session.sender_result(Verdict::Accept);
    assert_eq!(session.awaiting(), Some(Awaiting::Recipient));
    session.recipient_result(Verdict::Accept);
    assert_eq!(session.awaiting(), None);
    session.recipient_result(Verdict::Accept);
    let mut text = Vec::new();
    while let Some(event) = session.poll() {
        if let smtpy_smtp::session::Event::Write(bytes) = event {
            text.extend_from_slice(&bytes);
        }
    }
    assert_eq!(codes(&String::from_utf8_lossy(&text)), [250, 250, 250]);
}

#[test]
fn hostname_is_sanitised() {
    let mut session = Session::new(
        SessionConfig::new("mx\r\n.example "),
        PeerInfo::new([127, 0, 0, 1].into()),
    );
    let Some(smtpy_smtp::session::Event::Write(greeting)) = session.poll() else {
        panic!("greeting expected");
    };
    assert_eq!(greeting, b"220 mx.example ESMTP ready\r\n");
}

#[test]
fn a_session_can_move_between_threads() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Session>();
}
