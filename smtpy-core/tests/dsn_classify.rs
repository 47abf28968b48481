//! Bounce parsing and classification on hand-written samples in the formats
//! Postfix, Gmail, Exchange Online (Outlook) and Exim produce; auto-replies;
//! non-bounces; hostile input.

use std::time::{Duration, Instant};

use smtpy_core::bounce::{
    BounceClass, MAX_DIAGNOSTIC_LEN, MAX_RECIPIENTS, ParsedBounce, is_auto_reply, parse_bounce,
};

/// A sample and what parsing it must give.
struct Case {
    name: &'static str,
    bytes: &'static [u8],
    rfc3464: bool,
    class: BounceClass,
    /// (address, status) of every recipient, in order.
    recipients: &'static [(&'static str, Option<&'static str>, BounceClass)],
}

macro_rules! sample {
    ($file:literal) => {
        include_bytes!(concat!("data/dsn/", $file))
    };
}

use BounceClass::{Hard, Soft, Spam};

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "postfix hard: user unknown",
            bytes: sample!("postfix_hard_user_unknown.eml"),
            rfc3464: true,
            class: Hard,
            recipients: &[("nobody@example.net", Some("5.1.1"), Hard)],
        },
        Case {
            name: "postfix soft: delayed, mailbox full",
            bytes: sample!("postfix_soft_delayed_mailbox_full.eml"),
            rfc3464: true,
            class: Soft,
            recipients: &[("full@example.net", Some("4.2.2"), Soft)],
        },
        Case {
            name: "postfix spam: blocked using Spamhaus",
            bytes: sample!("postfix_spam_spamhaus.eml"),
            rfc3464: true,
            class: Spam,
            recipients: &[("owner@example.com", Some("5.7.1"), Spam)],
        },
        Case {
            name: "postfix: quota and unknown user in one report",
            bytes: sample!("postfix_two_recipients.eml"),
            rfc3464: true,
            class: Hard,
            recipients: &[
                ("stuffed@example.net", Some("5.2.2"), Soft),
                ("left@example.net", Some("5.1.1"), Hard),
            ],
        },
        Case {
            name: "gmail hard: no such user",
            bytes: sample!("gmail_hard_no_such_user.eml"),
            rfc3464: true,
            class: Hard,
            recipients: &[("no.such.person.4471@gmail.com", Some("5.1.1"), Hard)],
        },
        Case {
            name: "gmail soft: over quota, delayed",
            bytes: sample!("gmail_soft_over_quota_delay.eml"),
            rfc3464: true,
            class: Soft,
            recipients: &[("full.inbox.2210@gmail.com", Some("4.2.2"), Soft)],
        },
        Case {
            name: "gmail spam: 550-5.7.1 unsolicited",
            bytes: sample!("gmail_spam_unsolicited.eml"),
            rfc3464: true,
            class: Spam,
            recipients: &[("real.person.1990@gmail.com", Some("5.7.1"), Spam)],
        },
        Case {
            name: "outlook hard: 5.1.10 recipient not found (HTML only)",
            bytes: sample!("outlook_hard_recipient_not_found.eml"),
            rfc3464: true,
            class: Hard,
            recipients: &[("ghost@contoso.com", Some("5.1.10"), Hard)],
        },
        Case {
            name: "outlook spam: 5.7.520 access denied",
            bytes: sample!("outlook_spam_access_denied.eml"),
            rfc3464: true,
            class: Spam,
            recipients: &[("jo@fabrikam.example", Some("5.7.520"), Spam)],
        },
        Case {
            name: "outlook soft: 5.2.2 mailbox full",
            bytes: sample!("outlook_soft_mailbox_full.eml"),
            rfc3464: true,
            class: Soft,
            recipients: &[("busy.person@outlook.com", Some("5.2.2"), Soft)],
        },
        Case {
            name: "exim text hard: 550 5.1.1",
            bytes: sample!("exim_hard_text.eml"),
            rfc3464: false,
            class: Hard,
            recipients: &[("gone@example.org", Some("5.1.1"), Hard)],
        },
        Case {
            name: "exim text soft: delay warning, mailbox full",
            bytes: sample!("exim_soft_delay_text.eml"),
            rfc3464: false,
            class: Soft,
            recipients: &[("crowded@example.org", Some("4.2.2"), Soft)],
        },
        Case {
            name: "exim text spam: rejected as spam (the quoted copy is ignored)",
            bytes: sample!("exim_spam_text.eml"),
            rfc3464: false,
            class: Spam,
            recipients: &[("recipient@example.com", Some("5.7.1"), Spam)],
        },
    ]
}

/// LF line endings turned into CRLF (as received over SMTP).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn check(case: &Case, parsed: Option<ParsedBounce>, endings: &str) {
    let name = format!("{} ({endings})", case.name);
    let parsed = parsed.unwrap_or_else(|| panic!("{name}: not recognised as a bounce"));
    assert_eq!(parsed.rfc3464, case.rfc3464, "{name}: rfc3464");
    assert_eq!(parsed.class, case.class, "{name}: class; {parsed:#?}");
    let got: Vec<(Option<&str>, Option<&str>, BounceClass)> = parsed
        .recipients
        .iter()
        .map(|r| (r.address.as_deref(), r.status.as_deref(), r.class))
        .collect();
    let want: Vec<(Option<&str>, Option<&str>, BounceClass)> = case
        .recipients
        .iter()
        .map(|(a, s, c)| (Some(*a), *s, *c))
        .collect();
    assert_eq!(got, want, "{name}: recipients; {parsed:#?}");
    for r in &parsed.recipients {
        let diagnostic = r.diagnostic.as_deref().unwrap_or_default();
        assert!(!diagnostic.is_empty(), "{name}: diagnostic kept");
        assert!(!diagnostic.contains(['\r', '\n']), "{name}: unfolded");
        if case.rfc3464 {
            assert!(
                matches!(r.action.as_deref(), Some("failed" | "delayed")),
                "{name}: action {:?}",
                r.action
            );
        }
    }
}

#[test]
fn samples_are_classified() {
    let cases = cases();
    assert!(cases.len() >= 10);
    for case in &cases {
        check(case, parse_bounce(case.bytes), "LF");
        check(case, parse_bounce(&crlf(case.bytes)), "CRLF");
    }
}

#[test]
fn sample_details_are_read() {
    let gmail = parse_bounce(sample!("gmail_hard_no_such_user.eml")).expect("bounce");
    let r = &gmail.recipients[0];
    assert_eq!(r.action.as_deref(), Some("failed"));
    let diagnostic = r.diagnostic.as_deref().expect("diagnostic");
    assert!(
        diagnostic.starts_with("550-5.1.1 The email account"),
        "{diagnostic}"
    );
    assert!(diagnostic.contains("p=NoSuchUser"), "{diagnostic}");

    let delayed = parse_bounce(sample!("postfix_soft_delayed_mailbox_full.eml")).expect("bounce");
    assert_eq!(delayed.recipients[0].action.as_deref(), Some("delayed"));

    let outlook = parse_bounce(sample!("outlook_spam_access_denied.eml")).expect("bounce");
    let diagnostic = outlook.recipients[0].diagnostic.as_deref().expect("diag");
    assert!(
        diagnostic.starts_with("550 5.7.520 Access denied"),
        "the smtp; type is stripped: {diagnostic}"
    );

    let exim = parse_bounce(sample!("exim_hard_text.eml")).expect("bounce");
    assert_eq!(exim.recipients[0].action, None);
    assert!(
        exim.recipients[0]
            .diagnostic
            .as_deref()
            .is_some_and(|d| d.starts_with("550 5.1.1 <gone@example.org>")),
        "{:?}",
        exim.recipients[0].diagnostic
    );
}

#[test]
fn delivery_reports_are_not_bounces() {
    assert_eq!(parse_bounce(sample!("postfix_delivered_notice.eml")), None);
}

#[test]
fn normal_mail_is_neither_a_bounce_nor_an_auto_reply() {
    let normal = sample!("normal_message.eml");
    assert_eq!(
        parse_bounce(normal),
        None,
        "it quotes a 550 but is no bounce"
    );
    assert!(!is_auto_reply(normal));
    assert_eq!(parse_bounce(b""), None);
    assert_eq!(parse_bounce(b"just some text without headers"), None);
    assert!(!is_auto_reply(b""));
}

#[test]
fn auto_replies_are_recognised_and_are_not_bounces() {
    let vacation = sample!("vacation_auto_submitted.eml");
    assert!(is_auto_reply(vacation));
    assert_eq!(parse_bounce(vacation), None);
    let x_autoreply = sample!("autoreply_x_autoreply_only.eml");
    assert!(is_auto_reply(x_autoreply));
    assert_eq!(parse_bounce(x_autoreply), None);
    assert!(is_auto_reply(&crlf(x_autoreply)));
}

#[test]
fn bounces_marked_auto_replied_are_not_auto_replies() {
    // Every bounce generator marks its bounces `Auto-Submitted: auto-replied`.
    for case in cases() {
        assert!(
            String::from_utf8_lossy(case.bytes).contains("Auto-Submitted: auto-replied"),
            "{}: the sample carries the marker",
            case.name
        );
        assert!(!is_auto_reply(case.bytes), "{}", case.name);
    }
}

#[test]
fn auto_reply_markers() {
    let with = |header: &str| {
        format!("From: a@b.example\r\n{header}\r\nSubject: Re: hello\r\n\r\nbody\r\n").into_bytes()
    };
    for header in [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "auto-submitted: Auto-Notified; owner-email=\"x@b.example\"",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "X-Autoresponse: true",
        "Precedence: auto_reply",
        "X-Autogenerated: Reply",
    ] {
        assert!(is_auto_reply(&with(header)), "{header}");
    }
    for header in [
        "Auto-Submitted: no",
        "Auto-Submitted: No (a human)",
        "Precedence: bulk",
        "Precedence: list",
        "X-Autoreply: no",
        "X-Mailer: Vacation Planner 2.0",
    ] {
        assert!(!is_auto_reply(&with(header)), "{header}");
    }
    for subject in [
        "Automatic reply: Your weekly deals",
        "Auto: Your weekly deals",
        "Out of Office: Lunch?",
        "Abwesenheitsnotiz: Ihre Bestellung",
        "=?UTF-8?Q?R=C3=A9ponse_automatique=C2=A0:_Lunch=3F?=",
    ] {
        let message = format!("From: a@b.example\r\nSubject: {subject}\r\n\r\nAway.\r\n");
        assert!(is_auto_reply(message.as_bytes()), "{subject}");
    }
    let plain = b"From: a@b.example\r\nSubject: Lunch?\r\n\r\nAuto-Submitted: auto-replied\r\n";
    assert!(!is_auto_reply(plain), "a marker in the body does not count");
}

#[test]
fn text_bounce_needs_bounce_signals() {
    // Failure wording alone, from a person, is no bounce.
    let person = b"From: bob@example.org\r\nSubject: status\r\n\r\n\
        My mail could not be delivered: 550 5.1.1 user unknown.\r\n";
    assert_eq!(parse_bounce(person), None);
    // The same text from MAILER-DAEMON is.
    let daemon = b"From: MAILER-DAEMON@mx.example.org\r\nSubject: failure notice\r\n\r\n\
        Hi. This is the qmail-send program at mx.example.org.\r\n\
        I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
        This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n\
        <lost@example.org>:\r\n\
        192.0.2.40 does not like recipient.\r\n\
        Remote host said: 550 5.1.1 <lost@example.org>... No such user\r\n\
        Giving up on 192.0.2.40.\r\n\r\n\
        --- Below this line is a copy of the message.\r\n\r\n\
        Subject: spam spam spam\r\n";
    let parsed = parse_bounce(daemon).expect("qmail bounce");
    assert_eq!(parsed.class, Hard);
    assert_eq!(parsed.recipients.len(), 1);
    assert_eq!(
        parsed.recipients[0].address.as_deref(),
        Some("lost@example.org")
    );
    // A signal with wording but no code: classified by the wording.
    let wording = b"From: Mail Delivery System <postmaster@mx.example.org>\r\n\
        Subject: Undeliverable\r\n\r\n\
        Delivery to the following recipient failed permanently:\r\n\r\n\
        \x20    someone@example.org\r\n\r\n\
        The recipient's mailbox is full.\r\n";
    let parsed = parse_bounce(wording).expect("bounce by wording");
    assert!(!parsed.rfc3464);
    assert_eq!(parsed.class, Soft);
    assert_eq!(
        parsed.recipients[0].address.as_deref(),
        Some("someone@example.org")
    );
    assert_eq!(parsed.recipients[0].status, None);
}

#[test]
fn generic_status_is_refined_by_the_diagnostic() {
    let report = dsn(&[group(
        "a@example.net",
        "failed",
        "5.0.0",
        "smtp; 550 5.7.1 Message refused: listed at bl.spamcop.net",
    )]);
    let parsed = parse_bounce(&report).expect("bounce");
    assert_eq!(parsed.recipients[0].status.as_deref(), Some("5.7.1"));
    assert_eq!(parsed.class, Spam);
    // Without a status field the diagnostic's code is used.
    let report = dsn(&[
        "Final-Recipient: rfc822; b@example.net\r\nAction: failed\r\n\
        Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled\r\n"
            .to_owned(),
    ]);
    let parsed = parse_bounce(&report).expect("bounce");
    assert_eq!(parsed.recipients[0].status.as_deref(), Some("5.2.1"));
    assert_eq!(parsed.class, Hard);
}

/// One per-recipient group.
fn group(address: &str, action: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "Final-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {status}\r\n\
         Diagnostic-Code: {diagnostic}\r\n"
    )
}

/// A minimal multipart/report with these recipient groups.
fn dsn(groups: &[String]) -> Vec<u8> {
    let mut out = String::from(
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n",
    );
    for g in groups {
        out.push_str(g);
        out.push_str("\r\n");
    }
    out.push_str("--b--\r\n");
    out.into_bytes()
}

#[test]
fn recipients_and_fields_are_capped() {
    let groups: Vec<String> = (0..1000)
        .map(|i| {
            group(
                &format!("user{i}@example.net"),
                "failed",
                "5.1.1",
                &format!("smtp; 550 5.1.1 {}", "x".repeat(1200)),
            )
        })
        .collect();
    let parsed = parse_bounce(&dsn(&groups)).expect("bounce");
    assert_eq!(parsed.recipients.len(), MAX_RECIPIENTS);
    for r in &parsed.recipients {
        assert!(
            r.diagnostic
                .as_deref()
                .is_some_and(|d| d.len() <= MAX_DIAGNOSTIC_LEN)
        );
    }
}

#[test]
fn malformed_nested_messages_do_not_panic() {
    // Found by fuzzing: reaches a `debug_assert!` inside mail-parser 0.11
    // (a panic in debug builds), which `parse_bounce` contains.
    let input = b"Content-Type:multipart/:\n\tboundary=\"b.1/relay.example.com\"m\n\n\
        --b.1/relay.example.comContent-Type: message/rfc822\n-\n\n\
        Content-Type: message/rfc822\n\n\n--b.1/relay.example.com--";
    assert_eq!(parse_bounce(input), None);
    assert!(!is_auto_reply(input));
    let mut from_daemon = b"From: MAILER-DAEMON@mx.example.org\n".to_vec();
    from_daemon.extend_from_slice(input);
    let _ = parse_bounce(&from_daemon);
}

#[test]
fn hostile_input_is_safe_and_bounded() {
    // Every truncation of every sample: no panic.
    for case in cases() {
        for end in (0..case.bytes.len()).step_by(61) {
            let _ = parse_bounce(&case.bytes[..end]);
            let _ = is_auto_reply(&case.bytes[..end]);
        }
    }
    // Invalid UTF-8 in the report.
    let mut report = dsn(&[group("a@example.net", "failed", "5.1.1", "smtp; 550 x")]);
    report.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, b'\n']);
    let report = String::from_utf8_lossy(&report)
        .replace("550 x", "550 \u{fffd}\u{fffd} unknown")
        .into_bytes();
    assert!(parse_bounce(&report).is_some());
    let mut raw = dsn(&[group("a@example.net", "failed", "5.1.1", "smtp; 550 x")]);
    let at = raw.len() - 10;
    raw.splice(at..at, [0xff, 0xfe, 0x80]);
    let _ = parse_bounce(&raw);

    let started = Instant::now();
    // A huge header block.
    let mut huge = b"From: MAILER-DAEMON@mx.example.org\r\nSubject: failure notice\r\n".to_vec();
    for i in 0..200_000 {
        huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n550 5.1.1 gone@example.org unknown\r\n");
    let _ = parse_bounce(&huge);
    assert!(!is_auto_reply(&huge));
    // A huge body full of codes and addresses.
    let mut body =
        b"From: MAILER-DAEMON@mx.example.org\r\nSubject: failure notice\r\n\r\n".to_vec();
    for i in 0..300_000 {
        body.extend_from_slice(format!("550 5.1.1 <u{i}@example.org> unknown\r\n").as_bytes());
    }
    let parsed = parse_bounce(&body).expect("bounce");
    assert_eq!(parsed.recipients.len(), MAX_RECIPIENTS);
    // Deeply nested multiparts.
    let mut nested = String::from("From: MAILER-DAEMON@mx.example.org\r\n");
    for i in 0..2000 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\nundeliverable 550 5.1.1\r\n");
    let _ = parse_bounce(nested.as_bytes());
    // A single enormous line.
    let mut line = b"From: MAILER-DAEMON@x.example\r\nSubject: Undeliverable\r\n\r\n".to_vec();
    line.extend(std::iter::repeat_n(b'5', 5_000_000));
    let _ = parse_bounce(&line);
    let elapsed = started.elapsed();
    eprintln!("hostile inputs parsed in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}
