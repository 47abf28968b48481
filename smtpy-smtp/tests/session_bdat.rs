//! CHUNKING (RFC 3030): BDAT chunks, LAST, refusals that still consume the
//! chunk's octets, and line ending normalisation across chunks.

#[path = "session_harness.rs"]
mod harness;

use harness::{Client, codes, config, has_bare_cr_or_lf, peer};

fn envelope(client: &mut Client) {
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\n");
}

/// `BDAT <len> [LAST]` followed by `content`.
fn bdat(last: bool, content: &[u8]) -> Vec<u8> {
    let size = content.len();
    let mut command = format!("BDAT {size}{}\r\n", if last { " LAST" } else { "" }).into_bytes();
    command.extend_from_slice(content);
    command
}

#[test]
fn chunks_make_one_message() {
    let mut client = Client::new();
    envelope(&mut client);
    assert_eq!(
        client.send(bdat(false, b"Hello, ")),
        "250 2.0.0 7 octets received\r\n"
    );
    assert!(client.messages.is_empty());
    assert_eq!(
        client.send(bdat(true, b"world\r\n!")),
        "250 2.0.0 Queued\r\n"
    );
    assert_eq!(client.only_message().1, b"Hello, world\r\n!");
}

#[test]
fn bdat_0_last_ends_the_message() {
    let mut client = Client::new();
    envelope(&mut client);
    client.send(bdat(false, b"abc\n"));
    assert_eq!(client.send("BDAT 0 LAST\r\n"), "250 2.0.0 Queued\r\n");
    assert_eq!(client.only_message().1, b"abc\r\n");
}

#[test]
fn bdat_0_last_alone_is_an_empty_message() {
    let mut client = Client::new();
    envelope(&mut client);
    assert_eq!(client.send("BDAT 0 LAST\r\n"), "250 2.0.0 Queued\r\n");
    assert_eq!(client.only_message().1, b"");
}

#[test]
fn content_is_not_dot_stuffed_but_line_endings_are_normalised_across_chunks() {
    let mut client = Client::new();
    envelope(&mut client);
    client.send(bdat(false, b"..a\nb\x00\xff\r"));
    client.send(bdat(true, b"\nc\rd\r"));
    let (_, body) = client.only_message();
    assert_eq!(body, b"..a\r\nb\x00\xff\r\nc\r\nd\r\n");
    assert!(!has_bare_cr_or_lf(body));
}

#[test]
fn a_chunk_can_arrive_in_pieces() {
    let mut client = Client::new();
    envelope(&mut client);
    let text = client.send_bytewise(bdat(true, b"hello\r\nQUIT"));
    assert_eq!(codes(&text), [250]);
    assert_eq!(client.only_message().1, b"hello\r\nQUIT");
    assert!(
        !client.session.is_closed(),
        "QUIT inside the chunk is content"
    );
    assert!(!client.session.is_receiving_content());
}

#[test]
fn a_refused_chunk_is_still_consumed() {
    let mut client = Client::new();
    client.ehlo();
    // No transaction: 503, and the chunk's QUIT is not a command.
    let text = client.send(bdat(false, b"QUIT\r\n"));
    assert!(text.starts_with("503 5.5.1 "), "{text}");
    assert!(!client.session.is_closed());
    // No valid recipients: 554 after the octets.
    client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<unknown@alias.example>\r\n");
    let text = client.send(bdat(true, b"RSET\r\n"));
    assert_eq!(text, "554 5.5.1 No valid recipients\r\n");
    assert!(
        client.session.envelope().is_some(),
        "RSET inside the chunk did not run"
    );
    assert!(client.messages.is_empty());
}

#[test]
fn bdat_before_ehlo_is_refused_after_its_octets() {
    let mut client = Client::new();
    let mut input = bdat(true, b"QUIT\r\n");
    input.extend_from_slice(b"NOOP\r\n");
    let text = client.send(input);
    assert_eq!(codes(&text), [503, 250]);
}

#[test]
fn chunks_past_the_size_limit_fail_the_transaction() {
    let mut client = Client::with(config().with_max_message_size(10), peer());
    envelope(&mut client);
    assert_eq!(
        client.send(bdat(false, b"123456")),
        "250 2.0.0 6 octets received\r\n"
    );
    let text = client.send(bdat(false, b"RSET\r\n"));
    assert_eq!(
        text,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    // The transaction is gone: the next chunk is out of sequence, still consumed.
    let text = client.send(bdat(true, b"QUIT\r\n"));
    assert!(text.starts_with("503 5.5.1 "), "{text}");
    assert!(!client.session.is_closed());
    assert!(client.messages.is_empty());
}

#[test]
fn normalisation_growth_past_the_limit_is_caught() {
    let mut client = Client::with(config().with_max_message_size(10), peer());
    envelope(&mut client);
    // 8 octets on the wire, 16 once every LF became CR LF.
    let text = client.send(bdat(true, b"\n\n\n\n\n\n\n\n"));
    assert!(text.starts_with("552 5.3.4 "), "{text}");
    assert!(client.messages.is_empty());
}

#[test]
fn a_malformed_bdat_closes_the_session() {
    for command in ["BDAT\r\n", "BDAT x\r\n", "BDAT 12 LATER\r\n", "bdat -1\r\n"] {
        let mut client = Client::new();
        envelope(&mut client);
        let text = client.send(command);
        assert!(text.starts_with("501 5.5.4 "), "{command:?}: {text}");
        assert!(client.close_seen, "{command:?}");
    }
}

#[test]
fn data_and_bdat_do_not_mix() {
    let mut client = Client::new();
    envelope(&mut client);
    client.send(bdat(false, b"abc"));
    assert!(client.send("DATA\r\n").starts_with("503 5.5.1 "));
    assert!(
        client
            .send("RCPT TO:<other@alias.example>\r\n")
            .starts_with("503 5.5.1 ")
    );
    assert!(client.send(bdat(true, b"def")).starts_with("250 "));
    assert_eq!(client.only_message().1, b"abcdef");
}

#[test]
fn rset_between_chunks_abandons_the_message() {
    let mut client = Client::new();
    envelope(&mut client);
    client.send(bdat(false, b"abc"));
    assert_eq!(client.send("RSET\r\n"), "250 2.0.0 OK\r\n");
    assert!(client.send(bdat(true, b"def")).starts_with("503 5.5.1 "));
    assert!(client.messages.is_empty());
}
