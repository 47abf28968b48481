//! SMTP smuggling: only CR LF `.` CR LF ends DATA. Every bare-CR / bare-LF
//! variant of the end-of-data sequence is content; the commands smuggled
//! behind it end up inside the body and are never executed. The body
//! handed over never contains a bare CR or LF.

#[path = "session_harness.rs"]
mod harness;

use harness::{Client, codes, has_bare_cr_or_lf};

const SMUGGLED: &[u8] = b"MAIL FROM:<ceo@bank.example>\r\n\
RCPT TO:<victim@alias.example>\r\n\
DATA\r\n\
From: ceo@bank.example\r\n\
Subject: wire the money\r\n\
\r\n\
Urgent.\r\n";

/// Sends a message whose content holds `variant` followed by a smuggled
/// transaction, then the real end of data, either in one write or byte by
/// byte, and checks that exactly one message arrived holding everything.
fn assert_not_an_end(variant: &[u8], bytewise: bool) {
    let mut client = Client::new();
    client.start_data();
    let mut content = b"Subject: harmless\r\n\r\nhello".to_vec();
    content.extend_from_slice(variant);
    content.extend_from_slice(SMUGGLED);
    content.extend_from_slice(b"\r\n.\r\n");
    let text = if bytewise {
        client.send_bytewise(&content)
    } else {
        client.send(&content)
    };

    assert_eq!(
        codes(&text),
        [250],
        "one reply, for the one message: {text:?}"
    );
    assert_eq!(
        client.checked,
        ["shop@alias.example"],
        "no smuggled RCPT ran"
    );
    let (envelope, body) = client.only_message();
    assert_eq!(envelope.recipients.len(), 1);
    let body_text = String::from_utf8_lossy(body);
    assert!(
        body.starts_with(b"Subject: harmless\r\n\r\nhello"),
        "{body_text:?}"
    );
    assert!(
        body_text.contains("MAIL FROM:<ceo@bank.example>\r\n"),
        "{body_text:?}"
    );
    assert!(
        body_text.contains("RCPT TO:<victim@alias.example>\r\n"),
        "{body_text:?}"
    );
    assert!(
        body.ends_with(b"Subject: wire the money\r\n\r\nUrgent.\r\n\r\n"),
        "{body_text:?}"
    );
    assert!(!has_bare_cr_or_lf(body), "{body_text:?}");
    assert!(!client.session.is_closed());
    assert_eq!(client.session.message_count(), 1);
}

macro_rules! smuggling_variants {
    ($($name:ident => $variant:expr,)*) => {
        mod in_one_write {
            $(#[test] fn $name() { super::assert_not_an_end($variant, false); })*
        }
        mod byte_by_byte {
            $(#[test] fn $name() { super::assert_not_an_end($variant, true); })*
        }
    };
}

smuggling_variants! {
    lf_dot_lf => b"\n.\n",
    lf_dot_crlf => b"\n.\r\n",
    cr_dot_lf => b"\r.\n",
    cr_dot_crlf => b"\r.\r\n",
    cr_dot_cr => b"\r.\r",
    lf_dot_cr => b"\n.\r",
    crlf_dot_lf => b"\r\n.\n",
    crlf_dot_cr => b"\r\n.\r",
    crlf_nul_dot_crlf => b"\r\n\x00.\r\n",
    crlf_dot_cr_crlf => b"\r\n.\r\r\n",
    cr_crlf_dot_cr_crlf => b"\r\r\n.\r\r\n",
}

#[test]
fn the_proper_sequence_ends_data_even_split_across_writes() {
    let mut client = Client::new();
    client.start_data();
    assert_eq!(client.send("hello\r"), "");
    assert_eq!(client.send("\n."), "");
    assert_eq!(client.send("\r"), "");
    assert_eq!(
        client.send("\nNOOP\r\n"),
        "250 2.0.0 Queued\r\n250 2.0.0 OK\r\n"
    );
    assert_eq!(client.only_message().1, b"hello\r\n");
}

#[test]
fn a_lone_dot_line_at_the_start_is_an_empty_message() {
    let mut client = Client::new();
    client.start_data();
    assert_eq!(client.send(".\r\n"), "250 2.0.0 Queued\r\n");
    assert_eq!(client.only_message().1, b"");
}

#[test]
fn dot_stuffing_is_removed_at_real_line_starts_only() {
    let mut client = Client::new();
    client.start_data();
    client.send("..first\r\nmid.dle\r\n...\r\n.x\r\nbare\n..kept\r\n.\r\n");
    assert_eq!(
        client.only_message().1,
        b".first\r\nmid.dle\r\n..\r\nx\r\nbare\r\n..kept\r\n"
    );
}

#[test]
fn bare_cr_and_bare_lf_are_normalised_to_crlf() {
    let mut client = Client::new();
    client.start_data();
    client.send("a\rb\nc\r\r\nd\n\ne\r\n.\r\n");
    let (_, body) = client.only_message();
    assert_eq!(body, b"a\r\nb\r\nc\r\n\r\nd\r\n\r\ne\r\n");
    assert!(!has_bare_cr_or_lf(body));
}

#[test]
fn a_smuggled_end_in_bdat_content_is_just_content() {
    let mut client = Client::new();
    client.ehlo();
    client.send("MAIL FROM:<bob@example.org>\r\nRCPT TO:<shop@alias.example>\r\n");
    let chunk = b"hi\r\n.\r\nMAIL FROM:<ceo@bank.example>\r\n";
    let mut command = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
    command.extend_from_slice(chunk);
    assert_eq!(codes(&client.send(&command)), [250]);
    assert_eq!(client.only_message().1, chunk);
    assert_eq!(client.checked, ["shop@alias.example"]);
}
