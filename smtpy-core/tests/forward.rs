//! The forwarding transformation: header block scanning and loop detection,
//! the Received trace field, prepending, RFC 5322 dates, recipient dedup.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mail_parser::{Host, MessageParser};
use proptest::prelude::*;
use smtpy_core::address::EmailAddress;
use smtpy_core::forward::{
    LOOP_MARKER_HEADER, LoopError, MAX_RECEIVED, count_received, dedup_recipients,
    format_rfc5322_date, has_loop_marker, header_block, header_fields, loop_check,
    loop_marker_header, prepend_headers, received_header,
};
use smtpy_core::time::Timestamp;

const HOST: &str = "mx.alias.example";

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect(s)
}

fn with_received(n: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..n {
        m.extend_from_slice(
            format!(
                "Received: from h{i}.example by x.example; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(b"Subject: hi\r\n\r\nbody\r\n");
    m
}

// ---------------------------------------------------------------------------
// Header block scanning

#[test]
fn counts_received_fields_in_the_header_block() {
    assert_eq!(count_received(&with_received(0)), 0);
    assert_eq!(count_received(&with_received(3)), 3);
    let mixed_case = b"received: from a\r\nRECEIVED: from b\r\nReCeIvEd: from c\r\nReceived-SPF: pass\r\nX-Received: x\r\n\r\n";
    assert_eq!(count_received(mixed_case), 3);
}

#[test]
fn folded_received_fields_count_once() {
    let m = b"Received: from a.example (a.example [192.0.2.1])\r\n\tby mx.example with ESMTP id 1\r\n\tfor <x@example.com>;\r\n Tue, 14 Nov 2023 22:13:20 +0000\r\nReceived: from b\r\n  Received: continuation, not a field\r\nSubject: x\r\n\r\n";
    assert_eq!(count_received(m), 2);
    let fields: Vec<_> = header_fields(m).collect();
    assert_eq!(fields.len(), 3);
    assert_eq!(fields[0].name, b"Received");
    assert!(fields[0].value.ends_with(b"+0000"));
    assert_eq!(
        fields[1].unfolded_value(),
        b"from b  Received: continuation, not a field"
    );
}

#[test]
fn received_in_the_body_is_not_counted() {
    let m = b"Received: from a\r\nSubject: forwarded\r\n\r\nReceived: from quoted in body\r\nReceived: again\r\n";
    assert_eq!(count_received(m), 1);
    // Bare LF line endings too.
    let m = b"Received: from a\nSubject: x\n\nReceived: from body\n";
    assert_eq!(count_received(m), 1);
}

#[test]
fn message_without_separator() {
    // Headers only, no empty line: everything is header block.
    let m = b"Received: from a\r\nReceived: from b\r\nSubject: x\r\n";
    assert_eq!(count_received(m), 2);
    assert_eq!(header_block(m), &m[..]);
    // No final line break at all.
    assert_eq!(count_received(b"Received: from a\r\nReceived: from b"), 2);
    // A line that is not a field ends the header block.
    let m = b"Received: from a\r\nthis is body text\r\nReceived: from b\r\n";
    assert_eq!(count_received(m), 1);
    assert_eq!(header_block(m), b"Received: from a\r\n");
    // A message that starts with body text has no header fields.
    assert_eq!(
        count_received(b"hello world: and more\r\nReceived: x\r\n"),
        0
    );
    assert_eq!(count_received(b" Received: x\r\n"), 0);
    assert_eq!(count_received(b""), 0);
    assert_eq!(count_received(b"\r\nReceived: x\r\n"), 0);
}

#[test]
fn obsolete_space_before_colon_is_accepted() {
    assert_eq!(
        count_received(b"Received : from a\r\nReceived\t: from b\r\n\r\n"),
        2
    );
}

#[test]
fn header_block_stops_before_the_empty_line() {
    let m = b"A: 1\r\nB: 2\r\n continued\r\n\r\nbody: not a header\r\n";
    assert_eq!(header_block(m), b"A: 1\r\nB: 2\r\n continued\r\n");
    let names: Vec<&[u8]> = header_fields(m).map(|f| f.name).collect();
    assert_eq!(names, vec![&b"A"[..], &b"B"[..]]);
}

// ---------------------------------------------------------------------------
// Loop detection

#[test]
fn too_many_hops_is_a_loop() {
    assert_eq!(MAX_RECEIVED, 50);
    assert_eq!(loop_check(&with_received(MAX_RECEIVED - 1), HOST), Ok(()));
    assert_eq!(
        loop_check(&with_received(MAX_RECEIVED), HOST),
        Err(LoopError::TooManyHops {
            count: MAX_RECEIVED
        })
    );
    assert!(loop_check(&with_received(200), HOST).is_err());
}

#[test]
fn our_marker_is_a_loop_anothers_is_not() {
    let ours = format!("{LOOP_MARKER_HEADER}: {HOST}\r\nSubject: x\r\n\r\nbody\r\n");
    assert!(has_loop_marker(ours.as_bytes(), LOOP_MARKER_HEADER, HOST));
    assert_eq!(
        loop_check(ours.as_bytes(), HOST),
        Err(LoopError::MarkerFound)
    );
    // Case-insensitive name and host, folded value.
    let folded = b"x-smtpy-loop:\r\n  MX.Alias.Example  \r\n\r\n";
    assert!(has_loop_marker(folded, LOOP_MARKER_HEADER, HOST));
    assert_eq!(loop_check(folded, HOST), Err(LoopError::MarkerFound));
    // Another host's marker is not a loop.
    let other = b"X-Smtpy-Loop: mx.other.example\r\n\r\n";
    assert!(!has_loop_marker(other, LOOP_MARKER_HEADER, HOST));
    assert_eq!(loop_check(other, HOST), Ok(()));
    // A marker quoted in the body is not a loop.
    let body = format!("Subject: x\r\n\r\n{LOOP_MARKER_HEADER}: {HOST}\r\n");
    assert_eq!(loop_check(body.as_bytes(), HOST), Ok(()));
    // Any marker name can be checked.
    assert!(has_loop_marker(
        b"X-Loop: mx.alias.example\r\n\r\n",
        "x-loop",
        HOST
    ));
}

#[test]
fn forwarding_adds_a_marker_that_the_next_pass_detects() {
    let original = b"Subject: hi\r\n\r\nbody\r\n";
    let forwarded = prepend_headers(original, &[loop_marker_header(HOST)]);
    assert_eq!(loop_check(original, HOST), Ok(()));
    assert_eq!(loop_check(&forwarded, HOST), Err(LoopError::MarkerFound));
    assert_eq!(
        loop_marker_header("mx\r\nBcc: x"),
        "X-Smtpy-Loop: mx__Bcc:_x"
    );
}

// ---------------------------------------------------------------------------
// Building

#[test]
fn prepend_keeps_the_original_bytes_identical() {
    let original: Vec<u8> =
        b"From: a@b.example\r\nSubject: \xff binary \r\n\r\nline1\r\n.\r\n\x00tail without newline"
            .to_vec();
    let copy = original.clone();
    let headers = vec![
        "X-First: 1".to_owned(),
        "X-Second: 2\r\n\tfolded".to_owned(),
        "X-Third: already terminated\r\n".to_owned(),
    ];
    let out = prepend_headers(&original, &headers);
    assert_eq!(original, copy, "input untouched");
    let prefix = b"X-First: 1\r\nX-Second: 2\r\n\tfolded\r\nX-Third: already terminated\r\n";
    assert_eq!(&out[..prefix.len()], prefix);
    assert_eq!(
        &out[prefix.len()..],
        &original[..],
        "original bytes follow unchanged"
    );
    assert_eq!(out.capacity(), out.len(), "one exact allocation");
    assert_eq!(prepend_headers(&original, &[]), original);
}

#[test]
fn received_header_has_the_rfc5321_form() {
    let alias = addr("Shop@Alias.Example");
    let h = received_header(
        HOST,
        "client.example",
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        "ESMTPS",
        "0BX7",
        &alias,
        Timestamp::from_unix_secs(1_700_000_000),
    );
    assert_eq!(
        h,
        "Received: from client.example ([192.0.2.1])\r\n\tby mx.alias.example with ESMTPS id 0BX7\r\n\tfor <Shop@alias.example>; Tue, 14 Nov 2023 22:13:20 +0000"
    );

    // mail-parser understands it.
    let message = prepend_headers(b"Subject: x\r\n\r\nbody\r\n", &[h]);
    let parsed = MessageParser::default().parse(&message).expect("parse");
    let received = parsed.received().expect("received");
    assert_eq!(received.from, Some(Host::Name("client.example".into())));
    assert_eq!(
        received.from_ip,
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(received.by, Some(Host::Name(HOST.into())));
    assert_eq!(received.id.as_deref(), Some("0BX7"));
    assert_eq!(received.for_.as_deref(), Some("Shop@alias.example"));
    assert_eq!(
        received.date.as_ref().map(|d| d.to_timestamp()),
        Some(1_700_000_000)
    );
}

#[test]
fn received_header_ipv6_and_mapped_addresses() {
    let alias = addr("shop@bücher.example");
    let v6 = received_header(
        HOST,
        "[IPv6:2001:db8::1]",
        IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().expect("ip")),
        "UTF8SMTP",
        "",
        &alias,
        Timestamp::EPOCH,
    );
    assert_eq!(
        v6,
        "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby mx.alias.example with UTF8SMTP\r\n\tfor <shop@xn--bcher-kva.example>; Thu, 1 Jan 1970 00:00:00 +0000"
    );
    let mapped = received_header(
        HOST,
        "c",
        IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()),
        "ESMTP",
        "x",
        &alias,
        Timestamp::EPOCH,
    );
    assert!(mapped.contains("from c ([198.51.100.7])"), "{mapped}");
}

#[test]
fn received_header_cannot_be_injected_into() {
    let alias = addr("shop@alias.example");
    let evil = format!(
        "evil\r\nBcc: victim@example.com\r\n\r\n(x); {}",
        "a".repeat(5000)
    );
    let h = received_header(
        &evil,
        &evil,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "ESMTP\r\nX: y",
        "id\r\n;x",
        &alias,
        Timestamp::from_unix_secs(1_700_000_000),
    );
    let lines: Vec<&str> = h.split("\r\n").collect();
    assert_eq!(lines.len(), 3, "only our own folds: {h:?}");
    assert!(lines[1].starts_with('\t') && lines[2].starts_with('\t'));
    assert!(!h.contains('\n') || h.matches('\n').count() == 2);
    for line in &lines {
        assert!(line.len() < 998, "{}", line.len());
    }
    assert!(lines[0].starts_with("Received: from evil__Bcc:_victim@example.com_____x___aaa"));
    assert!(lines[1].contains(" with ESMTPXy id idx"), "{}", lines[1]);
    assert_eq!(count_received(&prepend_headers(b"\r\nbody", &[h])), 1);

    let empty = received_header(
        "",
        "",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "",
        "",
        &alias,
        Timestamp::EPOCH,
    );
    assert!(
        empty.starts_with(
            "Received: from unknown ([127.0.0.1])\r\n\tby unknown\r\n\tfor <shop@alias.example>; "
        ),
        "{empty}"
    );
}

// ---------------------------------------------------------------------------
// Dates

#[test]
fn rfc5322_dates_for_known_instants() {
    let cases: &[(i64, &str)] = &[
        (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
        (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 +0000"),
        (1_000_000_000, "Sun, 9 Sep 2001 01:46:40 +0000"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
        (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 +0000"),
        (-1, "Wed, 31 Dec 1969 23:59:59 +0000"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 +0000"),
        (4_107_542_400, "Mon, 1 Mar 2100 00:00:00 +0000"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 +0000"),
    ];
    for &(secs, expected) in cases {
        assert_eq!(
            format_rfc5322_date(Timestamp::from_unix_secs(secs)),
            expected,
            "{secs}"
        );
    }
    // Milliseconds are dropped, not rounded.
    assert_eq!(
        format_rfc5322_date(Timestamp::from_unix_millis(1_700_000_000_999)),
        "Tue, 14 Nov 2023 22:13:20 +0000"
    );
    // Out-of-range instants are clamped to years 0000..=9999.
    assert_eq!(
        format_rfc5322_date(Timestamp::from_unix_millis(i64::MAX)),
        "Fri, 31 Dec 9999 23:59:59 +0000"
    );
    assert!(
        format_rfc5322_date(Timestamp::from_unix_millis(i64::MIN))
            .contains(" Jan 0000 00:00:00 +0000")
    );
}

proptest! {
    #[test]
    fn dates_parse_back_with_mail_parser(secs in 0i64..253_402_300_799) {
        let date = format_rfc5322_date(Timestamp::from_unix_secs(secs));
        let message = format!("Date: {date}\r\n\r\n");
        let parsed = MessageParser::default().parse(message.as_bytes()).expect("parse");
        prop_assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(secs), "{}", date);
    }

    #[test]
    fn scanning_never_panics_and_stays_in_the_header_block(
        head in proptest::collection::vec("[A-Za-z-]{1,12}(: [ -~]{0,20})?( \r\n\t[ -~]{0,10})?", 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut m = Vec::new();
        for h in &head {
            m.extend_from_slice(h.as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
        let before = count_received(&m);
        m.extend_from_slice(&body);
        prop_assert_eq!(count_received(&m), before);
        prop_assert!(header_block(&m).len() <= m.len());
        let _ = loop_check(&body, HOST);
        let _ = count_received(&body);
    }
}

// ---------------------------------------------------------------------------
// Recipients

#[test]
fn dedup_by_canonical_form_keeps_order() {
    let input = vec![
        addr("B@example.com"),
        addr("a@example.com"),
        addr("b@EXAMPLE.com"),
        addr("\"a\"@example.com"),
        addr("x@bücher.example"),
        addr("X@xn--bcher-kva.example"),
        addr("c@example.com"),
    ];
    let out = dedup_recipients(input);
    let shown: Vec<String> = out.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "B@example.com",
            "a@example.com",
            "x@bücher.example",
            "c@example.com"
        ]
    );
    assert!(dedup_recipients(Vec::new()).is_empty());
}
