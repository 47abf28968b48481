//! Delivery status notifications: RFC 3464 structure, and the rule that a
//! DSN never reveals a mailbox address.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use proptest::prelude::*;
use smtpy_core::address::EmailAddress;
use smtpy_core::dsn::{DsnAction, DsnRecipient, DsnRequest, build_dsn, dsn_allowed};
use smtpy_core::model::{MessageKind, RemoteReply};
use smtpy_core::time::Timestamp;

const MAILBOX: &str = "real.person@mail.example";
const ALIAS: &str = "shop@alias.example";

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect(s)
}

fn arrival() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_600)
}

fn reply(code: u16, enhanced: &str, text: &str) -> RemoteReply {
    RemoteReply {
        code,
        enhanced: Some(enhanced.to_owned()),
        text: text.to_owned(),
    }
}

/// The headers of the copy we forwarded: the remote's trace fields name the
/// mailbox in several spellings.
const FORWARDED_HEADERS: &str = "Received: from mx.alias.example (mx.alias.example [203.0.113.9])\r\n\
\tby mail.example with ESMTPS id 77\r\n\
\tfor <Real.Person@Mail.Example>; Tue, 14 Nov 2023 22:13:21 +0000\r\n\
Delivered-To: REAL.PERSON@MAIL.EXAMPLE\r\n\
X-Original-To: \"real.person\"@mail.example\r\n\
Received: from client.example ([192.0.2.1])\r\n\
\tby mx.alias.example with ESMTP id 0BX7\r\n\
\tfor <shop@alias.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n\
From: Bob <bob@sender.example>\r\n\
To: shop@alias.example\r\n\
Subject: Order 1234\r\n\
Message-ID: <order-1234@sender.example>\r\n";

fn request() -> DsnRequest {
    DsnRequest {
        reporting_mta: "mx.alias.example".into(),
        original_envelope_id: Some("QQ314159".into()),
        arrival_date: arrival(),
        recipients: vec![DsnRecipient {
            final_recipient: addr(ALIAS),
            action: DsnAction::Failed,
            status: "5.1.1".into(),
            diagnostic: Some(reply(
                550,
                "5.1.1",
                "<Real.Person@Mail.Example>: user unknown",
            )),
        }],
        original_headers: FORWARDED_HEADERS.as_bytes().to_vec(),
        to: addr("bob@sender.example"),
        from_postmaster: addr("postmaster@alias.example"),
        secret_addresses: vec![addr(MAILBOX)],
    }
}

fn parse(dsn: &[u8]) -> Message<'_> {
    MessageParser::default().parse(dsn).expect("DSN parses")
}

/// The decoded body of part `i` as text.
fn part_text(message: &Message<'_>, i: usize) -> String {
    match &message.parts[i].body {
        PartType::Text(t) | PartType::Html(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("unexpected part {other:?}"),
    }
}

fn content_type(message: &Message<'_>, i: usize) -> String {
    let ct = message.parts[i].content_type().expect("content type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
}

/// Every spelling of `secret` that must not appear, lower-cased.
fn forms(secret: &EmailAddress) -> Vec<String> {
    vec![
        secret.canonical(),
        secret.to_string().to_lowercase(),
        format!(
            "{}@{}",
            secret.local_part().as_str().to_lowercase(),
            secret.domain().as_unicode()
        ),
    ]
}

/// Asserts that no form of `secret` appears in the raw DSN or in any decoded
/// part, in any case.
fn assert_no_leak(dsn: &[u8], secret: &EmailAddress) {
    let raw = String::from_utf8_lossy(dsn).to_lowercase();
    let message = parse(dsn);
    let mut decoded = String::new();
    for i in 1..message.parts.len() {
        decoded.push_str(&part_text(&message, i).to_lowercase());
        decoded.push('\n');
    }
    for form in forms(secret) {
        assert!(!raw.contains(&form), "{form} leaked in raw bytes:\n{raw}");
        assert!(
            !decoded.contains(&form),
            "{form} leaked in a part:\n{decoded}"
        );
    }
}

// ---------------------------------------------------------------------------
// Structure

#[test]
fn dsn_has_the_rfc3464_structure() {
    let dsn = build_dsn(&request(), now());
    let message = parse(&dsn);

    assert_eq!(
        message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("postmaster@alias.example")
    );
    assert_eq!(
        message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("bob@sender.example")
    );
    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(
        message.date().map(|d| d.to_timestamp()),
        Some(1_700_000_600)
    );
    let id = message.message_id().expect("message id");
    assert!(id.ends_with("@mx.alias.example"), "{id}");
    assert_eq!(
        message.header_raw("MIME-Version").map(str::trim),
        Some("1.0")
    );

    assert_eq!(content_type(&message, 0), "multipart/report");
    assert_eq!(
        message.parts[0]
            .content_type()
            .and_then(|c| c.attribute("report-type")),
        Some("delivery-status")
    );
    assert_eq!(message.parts.len(), 4);
    assert_eq!(content_type(&message, 1), "text/plain");
    assert_eq!(content_type(&message, 2), "message/delivery-status");
    assert_eq!(content_type(&message, 3), "text/rfc822-headers");

    let human = part_text(&message, 1);
    assert!(human.contains("could not\r\nbe delivered"), "{human}");
    assert!(
        human.contains("<shop@alias.example>: delivery failed (5.1.1)"),
        "{human}"
    );

    let status = part_text(&message, 2);
    let expected = "Reporting-MTA: dns; mx.alias.example\r\n\
Original-Envelope-Id: QQ314159\r\n\
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
\r\n\
Final-Recipient: rfc822; shop@alias.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <shop@alias.example>: user unknown\r\n\
Last-Attempt-Date: Tue, 14 Nov 2023 22:23:20 +0000\r\n";
    assert_eq!(status, expected);

    let headers = part_text(&message, 3);
    assert!(headers.contains("Subject: Order 1234\r\n"), "{headers}");
    assert!(
        headers.contains("Message-ID: <order-1234@sender.example>\r\n"),
        "{headers}"
    );
    assert!(
        headers.contains("\tfor <shop@alias.example>; Tue, 14 Nov 2023 22:13:21 +0000\r\n"),
        "{headers}"
    );
}

#[test]
fn every_line_ends_with_crlf() {
    let mut req = request();
    // Bare LF and bare CR in the original headers are normalised.
    req.original_headers = b"From: bob@sender.example\nSubject: x\rX-A: y".to_vec();
    let dsn = build_dsn(&req, now());
    for (i, &b) in dsn.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(dsn.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(dsn.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    let message = parse(&dsn);
    assert_eq!(
        part_text(&message, 3),
        "From: bob@sender.example\r\nSubject: x\r\nX-A: y\r\n"
    );
}

#[test]
fn only_the_header_block_is_returned() {
    let mut req = request();
    req.original_headers =
        b"From: bob@sender.example\r\nSubject: secret plans\r\n\r\nThe body must not be returned.\r\n"
            .to_vec();
    let dsn = build_dsn(&req, now());
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("Subject: secret plans"));
    assert!(!text.contains("The body must not be returned"));
}

#[test]
fn delayed_dsn_and_several_recipients() {
    let mut req = request();
    req.recipients = vec![
        DsnRecipient {
            final_recipient: addr("shop@alias.example"),
            action: DsnAction::Delayed,
            status: "4.4.1".into(),
            diagnostic: Some(reply(421, "4.4.1", "connection timed out")),
        },
        DsnRecipient {
            final_recipient: addr("news@alias.example"),
            action: DsnAction::Delayed,
            status: "not a status".into(),
            diagnostic: None,
        },
    ];
    let dsn = build_dsn(&req, now());
    let message = parse(&dsn);
    assert_eq!(message.subject(), Some("Delivery delayed"));
    let status = part_text(&message, 2);
    let blocks: Vec<&str> = status.split("\r\n\r\n").collect();
    assert_eq!(blocks.len(), 3, "{status}");
    assert!(blocks[1].contains("Final-Recipient: rfc822; shop@alias.example\r\nAction: delayed\r\nStatus: 4.4.1\r\nDiagnostic-Code: smtp; 421 4.4.1 connection timed out\r\n"));
    assert!(
        blocks[2].contains(
            "Final-Recipient: rfc822; news@alias.example\r\nAction: delayed\r\nStatus: 4.0.0\r\n"
        ),
        "{status}"
    );
    assert!(!blocks[2].contains("Diagnostic-Code"));
    assert!(part_text(&message, 1).contains("will be retried"));

    // One failure among delays: the subject reports the failure.
    req.recipients[1].action = DsnAction::Failed;
    let message_bytes = build_dsn(&req, now());
    assert_eq!(
        parse(&message_bytes).subject(),
        Some("Undelivered Mail Returned to Sender")
    );
}

#[test]
fn diagnostics_are_flattened_folded_and_7bit() {
    let mut req = request();
    let long_text = format!(
        "The email account that you tried to reach does not exist.\nPlease try double-checking the recipient's email address for typos. Ünïcödé {} end",
        "word ".repeat(400)
    );
    req.recipients[0].diagnostic = Some(reply(550, "5.1.1", &long_text));
    let dsn = build_dsn(&req, now());
    let message = parse(&dsn);
    let status = part_text(&message, 2);
    assert!(status.is_ascii());
    for line in status.split("\r\n") {
        assert!(line.len() <= 998, "line of {} octets", line.len());
    }
    let unfolded = status.replace("\r\n ", " ");
    assert!(
        unfolded.contains("does not exist. Please try"),
        "multi-line joined"
    );
    assert!(unfolded.contains("?n?c?d?"), "non-ASCII replaced");
    assert!(unfolded.contains(" ...\r\n"), "cut at a word boundary");
    let diagnostic_line = unfolded
        .lines()
        .find(|l| l.starts_with("Diagnostic-Code:"))
        .expect("diagnostic");
    assert!(diagnostic_line.len() < 2048 + 40);
}

#[test]
fn non_ascii_final_recipients_use_the_utf8_address_type() {
    let mut req = request();
    req.recipients[0].final_recipient = addr("bücher@alias.example");
    let dsn = build_dsn(&req, now());
    let status = part_text(&parse(&dsn), 2);
    assert!(
        status.contains("Final-Recipient: utf-8; b\\x{FC}cher@alias.example\r\n"),
        "{status}"
    );
}

// ---------------------------------------------------------------------------
// No leak

#[test]
fn the_mailbox_never_appears_even_when_quoted_by_the_remote() {
    let dsn = build_dsn(&request(), now());
    assert_no_leak(&dsn, &addr(MAILBOX));
    // The alias is named instead, in every place the mailbox was.
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("Final-Recipient: rfc822; shop@alias.example"));
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 <shop@alias.example>: user unknown"));
    assert!(text.contains("Delivered-To: shop@alias.example\r\n"));
    assert!(text.contains("X-Original-To: shop@alias.example\r\n"));
}

#[test]
fn several_mailboxes_and_idn_spellings_are_scrubbed() {
    let mut req = request();
    let idn = addr("Jöran@Bücher.Example");
    req.secret_addresses.push(addr("other@backup.example"));
    req.secret_addresses.push(idn.clone());
    req.recipients[0].diagnostic = Some(reply(
        550,
        "5.1.1",
        "mailboxes JÖRAN@BÜCHER.EXAMPLE, jöran@xn--bcher-kva.example and OTHER@Backup.Example are full",
    ));
    req.original_headers = format!(
        "{FORWARDED_HEADERS}Delivered-To: jöran@BÜCHER.example\r\nX-Backup: <Other@backup.EXAMPLE>\r\nX-Note: Grüße\r\n"
    )
    .into_bytes();
    let dsn = build_dsn(&req, now());
    assert_no_leak(&dsn, &addr(MAILBOX));
    assert_no_leak(&dsn, &addr("other@backup.example"));
    assert_no_leak(&dsn, &idn);
    // The header part had 8-bit text, so it was encoded; decoded, it names
    // the alias.
    let headers = part_text(&parse(&dsn), 3);
    assert!(
        headers.contains("Delivered-To: shop@alias.example\r\nX-Backup: <shop@alias.example>\r\n"),
        "{headers}"
    );
}

#[test]
fn envelope_id_and_reporting_mta_are_scrubbed_too() {
    let mut req = request();
    req.original_envelope_id = Some("id-for-real.person@mail.example".into());
    req.reporting_mta = "mx.alias.example\r\nX-Injected: yes".into();
    let dsn = build_dsn(&req, now());
    assert_no_leak(&dsn, &addr(MAILBOX));
    let text = String::from_utf8_lossy(&dsn);
    assert!(!text.contains("X-Injected"), "{text}");
    assert!(text.contains("Original-Envelope-Id: id-for-shop@alias.example\r\n"));
}

#[test]
fn the_dsn_recipient_is_not_scrubbed_from_its_own_to() {
    // The owner wrote to their own alias from a mailbox: the DSN goes back to
    // that mailbox, which is not a leak.
    let mut req = request();
    req.to = addr(MAILBOX);
    let dsn = build_dsn(&req, now());
    let message = parse(&dsn);
    assert_eq!(
        message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some(MAILBOX)
    );
}

#[test]
fn no_recipients_still_builds_a_valid_message() {
    let mut req = request();
    req.recipients.clear();
    let dsn = build_dsn(&req, now());
    let message = parse(&dsn);
    assert_eq!(message.parts.len(), 4);
    // With no alias to name, secrets are replaced by the postmaster address.
    assert_no_leak(&dsn, &addr(MAILBOX));
    assert!(part_text(&message, 3).contains("Delivered-To: postmaster@alias.example"));
}

// ---------------------------------------------------------------------------
// When a DSN may be sent

#[test]
fn never_a_dsn_to_the_null_sender_or_about_a_dsn() {
    let sender = addr("bob@sender.example");
    assert!(dsn_allowed(Some(&sender), MessageKind::Forward));
    assert!(dsn_allowed(Some(&sender), MessageKind::Reply));
    assert!(dsn_allowed(Some(&sender), MessageKind::Notification));
    assert!(!dsn_allowed(None, MessageKind::Forward));
    assert!(!dsn_allowed(None, MessageKind::Reply));
    assert!(!dsn_allowed(Some(&sender), MessageKind::Dsn));
    assert!(!dsn_allowed(Some(&sender), MessageKind::BounceRelay));
    assert!(!dsn_allowed(None, MessageKind::Dsn));
}

// ---------------------------------------------------------------------------
// Properties

/// Flips the case of the characters selected by `mask`.
fn mangle(text: &str, mask: &[bool]) -> String {
    text.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &up)| {
            if up {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn secrets_never_leak_whatever_their_case_or_surroundings(
        local in "[a-z0-9][a-z0-9._+-]{0,15}[a-z0-9]",
        domain in "[a-z0-9]{1,10}\\.(example|test|org)",
        mask in proptest::collection::vec(any::<bool>(), 1..8),
        before in "[ -~]{0,20}",
        after in "[ -~]{0,20}",
    ) {
        let secret_text = format!("{local}@{domain}");
        let Ok(secret) = EmailAddress::parse(&secret_text) else { return Ok(()); };
        // Our own fixed addresses (postmaster, alias, DSN recipient) must not
        // contain the secret either.
        prop_assume!(domain != "alias.example" && domain != "sender.example");
        // The alias must not itself contain the secret.
        prop_assume!(!ALIAS.contains(&secret.canonical()));
        let mangled = mangle(&secret_text, &mask);
        let mut req = request();
        req.secret_addresses = vec![secret.clone()];
        req.recipients[0].diagnostic = Some(reply(550, "5.1.1", &format!("{before}{mangled}{after}")));
        req.original_headers = format!("X-Test: {before}<{mangled}>{after}\r\nDelivered-To: {mangled}\r\n").into_bytes();
        let dsn = build_dsn(&req, now());
        assert_no_leak(&dsn, &secret);
    }
}
