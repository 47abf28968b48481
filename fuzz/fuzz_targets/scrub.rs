//! Arbitrary bytes as a reply to scrub and as a message to check for leaks:
//! neither may panic. Whatever `scrub_reply` accepts must come out CRLF-only,
//! with lines of at most 998 octets, From the alias and To the contact, and
//! must reveal neither the mailbox nor the reverse alias.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpy_core::address::EmailAddress;
use smtpy_core::forward::header_fields;
use smtpy_core::rewrite::scrub::{MAX_LINE_LEN, ReplyPlan, leaks, scrub_reply};

const MAILBOX: &str = "me@mail.example";
const REVERSE: &str = "ra_x1@alias.example";

fuzz_target!(|data: &[u8]| {
    let (Ok(alias), Ok(contact)) = (
        EmailAddress::parse("shop@alias.example"),
        EmailAddress::parse("bob@outside.example"),
    ) else {
        return;
    };
    let replacements = [
        (MAILBOX.to_owned(), "shop@alias.example".to_owned()),
        (REVERSE.to_owned(), "bob@outside.example".to_owned()),
    ];
    let plan = ReplyPlan {
        from: &alias,
        to: &contact,
        to_display: Some("Bob"),
        replacements: &replacements,
    };
    let _ = leaks(data, MAILBOX);
    let Ok(out) = scrub_reply(data, &plan) else {
        return;
    };
    assert!(!leaks(&out, MAILBOX), "mailbox leaks");
    assert!(!leaks(&out, REVERSE), "reverse alias leaks");
    assert!(out.ends_with(b"\r\n"));
    for (i, &b) in out.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && out[i - 1] == b'\r', "bare LF"),
            b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR"),
            _ => {}
        }
    }
    for line in out.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_LINE_LEN + 1, "line too long");
    }
    let from: Vec<Vec<u8>> = header_fields(&out)
        .filter(|f| f.is("From"))
        .map(|f| f.unfolded_value())
        .collect();
    assert_eq!(from, vec![b"shop@alias.example".to_vec()]);
    let to: Vec<Vec<u8>> = header_fields(&out)
        .filter(|f| f.is("To"))
        .map(|f| f.unfolded_value())
        .collect();
    assert_eq!(to, vec![b"\"Bob\" <bob@outside.example>".to_vec()]);
});
