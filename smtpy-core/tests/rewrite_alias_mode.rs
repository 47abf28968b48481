//! Alias-mode rewriting: outside addresses become reverse aliases, the rest
//! of the message stays byte for byte.

use std::collections::HashMap;

use mail_parser::MessageParser;
use smtpy_core::address::EmailAddress;
use smtpy_core::rewrite::alias_mode::{
    AddressRole, AliasModePlan, ExternalAddress, ORIGINAL_FROM_HEADER, RewriteError, add_header,
    external_addresses, prefix_subject, rewrite,
};

const FORMAT: &str = "{name} via smtpy";

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect(s)
}

fn alias() -> EmailAddress {
    addr("shop@alias.example")
}

/// Ours: anything on alias.example.
fn is_ours(a: &EmailAddress) -> bool {
    a.domain().as_ascii() == "alias.example"
}

/// Reverse aliases `r--<local>@alias.example` for every outside address of
/// `message`, as a caller would create them.
fn reverse_map(message: &[u8]) -> HashMap<String, EmailAddress> {
    external_addresses(message, &is_ours)
        .into_iter()
        .map(|e| {
            let local: String = e
                .address
                .local_part()
                .as_str()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            (
                e.address.canonical(),
                addr(&format!("r--{local}@alias.example")),
            )
        })
        .collect()
}

fn rewritten(message: &[u8]) -> String {
    let alias = alias();
    let reverse = reverse_map(message);
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &reverse,
    };
    let out = rewrite(message, &plan).expect("rewrite");
    String::from_utf8(out).expect("utf-8")
}

/// The header block of `message` (up to the empty line).
fn headers(message: &str) -> &str {
    message.split("\r\n\r\n").next().expect("headers")
}

// ---------------------------------------------------------------------------
// Table: header block in, header block out (body "\r\nbody\r\n" appended)

#[test]
fn header_rewrites() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "plain From",
            "From: bob@sender.example\r\nTo: shop@alias.example\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             To: shop@alias.example\r\n",
        ),
        (
            "display name",
            "From: Bob Smith <bob@sender.example>\r\n",
            "From: \"Bob Smith via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: \"Bob Smith\" <bob@sender.example>\r\n",
        ),
        (
            "quotes and commas in the display name",
            "From: \"Doe, John \\\"JD\\\"\" <john@sender.example>\r\n",
            "From: \"Doe, John \\\"JD\\\" via smtpy\" <r--john@alias.example>\r\n\
             X-Smtpy-Original-From: \"Doe, John \\\"JD\\\"\" <john@sender.example>\r\n",
        ),
        (
            "comment as display name",
            "From: bob@sender.example (Bob)\r\n",
            "From: \"Bob via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: \"Bob\" <bob@sender.example>\r\n",
        ),
        (
            "folded From",
            "From: \"Bob\r\n Smith\"\r\n <bob@sender.example>\r\n",
            "From: \"Bob Smith via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: \"Bob Smith\" <bob@sender.example>\r\n",
        ),
        (
            "Reply-To with several addresses",
            "From: bob@sender.example\r\nReply-To: a@one.example, \"B\" <b@two.example>\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             Reply-To: \"a@one.example via smtpy\" <r--a@alias.example>,\r\n \
             \"B via smtpy\" <r--b@alias.example>\r\n",
        ),
        (
            "To and Cc mixing our alias and outside addresses",
            "From: bob@sender.example\r\n\
             To: Shop <shop@alias.example>, carol@else.example\r\n\
             Cc: other@alias.example\r\n\
             Cc: dave@else.example\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             To: \"Shop\" <shop@alias.example>,\r\n \
             \"carol@else.example via smtpy\" <r--carol@alias.example>\r\n\
             Cc: other@alias.example\r\n\
             Cc: \"dave@else.example via smtpy\" <r--dave@alias.example>\r\n",
        ),
        (
            "group syntax",
            "From: bob@sender.example\r\n\
             To: friends: a@one.example, shop@alias.example;, undisclosed-recipients:;\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             To: \"friends\": \"a@one.example via smtpy\" <r--a@alias.example>,\r\n \
             shop@alias.example;, \"undisclosed-recipients\":;\r\n",
        ),
        (
            "List-Unsubscribe mailto and https",
            "From: news@list.example\r\n\
             List-Unsubscribe: <mailto:unsub@list.example?subject=unsubscribe&cc=spy@else.example>,\r\n\
             \t<https://list.example/u?id=1>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            "From: \"news@list.example via smtpy\" <r--news@alias.example>\r\n\
             X-Smtpy-Original-From: news@list.example\r\n\
             List-Unsubscribe: <mailto:r--unsub@alias.example?subject=unsubscribe>,\r\n \
             <https://list.example/u?id=1>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ),
        (
            "List-Unsubscribe with only https is untouched",
            "From: news@list.example\r\nList-Unsubscribe:   <https://list.example/u?id=1>\r\n",
            "From: \"news@list.example via smtpy\" <r--news@alias.example>\r\n\
             X-Smtpy-Original-From: news@list.example\r\n\
             List-Unsubscribe:   <https://list.example/u?id=1>\r\n",
        ),
        (
            "an unusable mailto is dropped, an empty field removed",
            "From: news@list.example\r\nList-Unsubscribe: <mailto:not-an-address>\r\n",
            "From: \"news@list.example via smtpy\" <r--news@alias.example>\r\n\
             X-Smtpy-Original-From: news@list.example\r\n",
        ),
        (
            "Sender, Return-Path, DKIM-Signature and a forged original-from are removed",
            "Return-Path: <bounce@sender.example>\r\n\
             DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=s1;\r\n\
             \tbh=abc=; b=def\r\n\
             \tghi=\r\n\
             X-Smtpy-Original-From: trusted@bank.example\r\n\
             Sender: list@sender.example\r\n\
             From: bob@sender.example\r\n\
             dkim-signature: v=1; d=other.example\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n",
        ),
        (
            "thread fields and everything else untouched",
            "Received: from x by y;\r\n Tue, 14 Nov 2023 22:13:20 +0000\r\n\
             Message-ID: <abc@sender.example>\r\n\
             In-Reply-To:  <prev@alias.example>\r\n\
             References: <one@x.example>\r\n\t<two@y.example>  <three@z.example>\r\n\
             From: bob@sender.example\r\n\
             Subject: =?utf-8?q?Caf=C3=A9?= hello\r\n\
             X-Weird:no-space\r\n",
            "Received: from x by y;\r\n Tue, 14 Nov 2023 22:13:20 +0000\r\n\
             Message-ID: <abc@sender.example>\r\n\
             In-Reply-To:  <prev@alias.example>\r\n\
             References: <one@x.example>\r\n\t<two@y.example>  <three@z.example>\r\n\
             From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             Subject: =?utf-8?q?Caf=C3=A9?= hello\r\n\
             X-Weird:no-space\r\n",
        ),
        (
            "invalid entries of a rewritten field become names only",
            "From: bob@sender.example\r\nCc: carol@else.example, x@y.ple>, Bob <bob>\r\n",
            "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
             X-Smtpy-Original-From: bob@sender.example\r\n\
             Cc: \"carol@else.example via smtpy\" <r--carol@alias.example>, \"x@y.ple>\",\r\n \
             \"Bob <bob>\"\r\n",
        ),
        (
            "From that is one of ours is kept",
            "From: other@alias.example\r\nTo: shop@alias.example\r\n",
            "From: other@alias.example\r\n\
             X-Smtpy-Original-From: other@alias.example\r\n\
             To: shop@alias.example\r\n",
        ),
    ];
    for (name, input, expected) in cases {
        let message = format!("{input}\r\nbody\r\n");
        let out = rewritten(message.as_bytes());
        assert_eq!(out, format!("{expected}\r\nbody\r\n"), "case: {name}");
    }
}

#[test]
fn non_ascii_display_names_are_encoded() {
    for (input, original_name) in [
        (
            "From: =?utf-8?q?Andr=C3=A9?= <andre@sender.example>",
            "André",
        ),
        (
            "From: Jöran Ångström <joran@sender.example>",
            "Jöran Ångström",
        ),
        (
            "From: \"=?iso-8859-1?q?Fran=E7ois?=\" <francois@sender.example>",
            "François",
        ),
    ] {
        let message = format!("{input}\r\nSubject: x\r\n\r\nbody\r\n");
        let out = rewritten(message.as_bytes());
        let head = headers(&out);
        assert!(head.is_ascii(), "{head}");
        let from_line = head.lines().next().expect("From");
        assert!(from_line.contains("=?utf-8?b?"), "{from_line}");
        // A mail client decodes the name and finds the reverse alias.
        let parsed = MessageParser::new().parse(out.as_bytes()).expect("parse");
        let from = parsed.from().and_then(|a| a.first()).expect("from");
        assert_eq!(
            from.name(),
            Some(format!("{original_name} via smtpy").as_str())
        );
        assert!(
            from.address()
                .is_some_and(|a| a.starts_with("r--") && a.ends_with("@alias.example"))
        );
        let original = parsed
            .header(ORIGINAL_FROM_HEADER)
            .and_then(|h| h.as_text())
            .expect("original from");
        assert!(original.contains("=?utf-8?b?"), "{original}");
    }
}

#[test]
fn long_names_and_lists_are_folded() {
    let long_name = "A very long display name ".repeat(10);
    let mut to = String::from("To: ");
    for i in 0..30 {
        to.push_str(&format!("\"Person {i}\" <p{i}@else.example>, "));
    }
    to.push_str("shop@alias.example");
    let message = format!("From: \"{long_name}\" <bob@sender.example>\r\n{to}\r\n\r\nbody\r\n");
    let out = rewritten(message.as_bytes());
    for line in headers(&out).split("\r\n") {
        assert!(line.len() <= 998, "{line}");
        assert!(!line.contains('\n') && !line.contains('\r'));
    }
    let parsed = MessageParser::new().parse(out.as_bytes()).expect("parse");
    let to = parsed.to().expect("to");
    assert_eq!(to.iter().count(), 31);
    assert!(
        to.iter()
            .take(30)
            .all(|a| a.address().is_some_and(|a| a.starts_with("r--p")))
    );
    assert_eq!(
        to.iter().last().and_then(|a| a.address()),
        Some("shop@alias.example")
    );
    // The display name is cut to a bounded length.
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert!(from.name().is_some_and(|n| n.chars().count() <= 128));
}

#[test]
fn body_is_byte_for_byte() {
    let body: &[u8] = b"\r\nFrom: evil@x.example\r\nDKIM-Signature: keep me\r\n\xff\xfe binary \x00\r\n.\r\n  \r\n";
    let mut message = b"From: bob@sender.example\r\nSender: s@sender.example\r\n".to_vec();
    message.extend_from_slice(body);
    let alias = alias();
    let reverse = reverse_map(&message);
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &reverse,
    };
    let out = rewrite(&message, &plan).expect("rewrite");
    assert_eq!(&out[out.len() - body.len()..], body);
    assert!(
        !out[..out.len() - body.len()]
            .windows(7)
            .any(|w| w == b"Sender:")
    );
}

#[test]
fn addresses_missing_from_the_map_are_left_unchanged() {
    let message = b"From: Bob <bob@sender.example>\r\nCc: carol@else.example (Carol)\r\n\r\nbody";
    let alias = alias();
    let mut reverse = HashMap::new();
    reverse.insert(
        addr("bob@sender.example").canonical(),
        addr("r--bob@alias.example"),
    );
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &reverse,
    };
    let out = rewrite(message, &plan).expect("rewrite");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("\r\nCc: carol@else.example (Carol)\r\n"),
        "{out}"
    );

    // Nothing mapped at all: From kept as it was.
    let empty = HashMap::new();
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &empty,
    };
    let out = rewrite(message, &plan).expect("rewrite");
    assert_eq!(
        out,
        b"From: Bob <bob@sender.example>\r\n\
          X-Smtpy-Original-From: \"Bob\" <bob@sender.example>\r\n\
          Cc: carol@else.example (Carol)\r\n\r\nbody"
    );
}

#[test]
fn sender_format_placeholders() {
    let message = b"From: Bob <bob@sender.example>\r\n\r\n";
    let alias = alias();
    let reverse = reverse_map(message);
    for (format, expected) in [
        (
            "{name} via smtpy",
            "From: \"Bob via smtpy\" <r--bob@alias.example>\r\n",
        ),
        (
            "{name} ({address})",
            "From: \"Bob (bob@sender.example)\" <r--bob@alias.example>\r\n",
        ),
        (
            "{address}",
            "From: \"bob@sender.example\" <r--bob@alias.example>\r\n",
        ),
        ("", "From: r--bob@alias.example\r\n"),
        (
            "a\r\nBcc: x@y\r\n",
            "From: \"a Bcc: x@y\" <r--bob@alias.example>\r\n",
        ),
    ] {
        let plan = AliasModePlan {
            alias: &alias,
            sender_format: format,
            reverse: &reverse,
        };
        let out = rewrite(message, &plan).expect("rewrite");
        assert!(
            out.starts_with(expected.as_bytes()),
            "{format:?}: {}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn bare_lf_messages_keep_bare_lf() {
    let message = b"From: bob@sender.example\nSubject: hi\n\nbody\n";
    let out = rewritten(message);
    assert_eq!(
        out,
        "From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\n\
         X-Smtpy-Original-From: bob@sender.example\n\
         Subject: hi\n\nbody\n"
    );
}

#[test]
fn message_without_separator() {
    let out = rewritten(b"Subject: hi\r\nFrom: bob@sender.example");
    assert_eq!(
        out,
        "Subject: hi\r\n\
         From: \"bob@sender.example via smtpy\" <r--bob@alias.example>\r\n\
         X-Smtpy-Original-From: bob@sender.example\r\n"
    );
}

// ---------------------------------------------------------------------------
// Refusals

#[test]
fn messages_without_a_usable_sender_are_refused() {
    let alias = alias();
    let reverse = HashMap::new();
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &reverse,
    };
    let cases: &[(&[u8], RewriteError)] = &[
        (b"", RewriteError::MissingFrom),
        (
            b"Subject: hi\r\n\r\nFrom: bob@x.example\r\n",
            RewriteError::MissingFrom,
        ),
        (
            b"not a header\r\nFrom: bob@x.example\r\n\r\n",
            RewriteError::MissingFrom,
        ),
        (
            b"From: a@x.example\r\nfrom: b@y.example\r\n\r\n",
            RewriteError::DuplicateFrom { count: 2 },
        ),
        (b"From: \r\n\r\n", RewriteError::NoFromAddress),
        (b"From: undisclosed:;\r\n\r\n", RewriteError::NoFromAddress),
        (b"From: Bob <bob>\r\n\r\n", RewriteError::NoFromAddress),
        (
            b"From: \xff\xfe@\xfa.example\r\n\r\n",
            RewriteError::NoFromAddress,
        ),
        (
            b"From: bob@[192.0.2.1]\r\n\r\n",
            RewriteError::NoFromAddress,
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(
            rewrite(message, &plan).as_ref(),
            Err(expected),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn reverse_aliases_must_be_on_the_alias_domain() {
    let alias = alias();
    let mut reverse = HashMap::new();
    reverse.insert(
        addr("bob@sender.example").canonical(),
        addr("r--bob@elsewhere.example"),
    );
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: FORMAT,
        reverse: &reverse,
    };
    assert!(matches!(
        rewrite(b"From: bob@sender.example\r\n\r\n", &plan),
        Err(RewriteError::ForeignReverseAlias { .. })
    ));
}

#[test]
fn garbage_never_panics() {
    let alias = alias();
    let inputs: Vec<Vec<u8>> = vec![
        b"From: \"unterminated <a@b.example>\r\n\r\n".to_vec(),
        b"From: <<<>>>,,,;;;::: (((\r\n\r\n".to_vec(),
        b"From: a@b.example\r\nTo: (((((\r\n\r\n".to_vec(),
        b"From: a@b.example\r\nTo: \"\\\r\n\r\n".to_vec(),
        b"From: =?utf-8?b?////?= <a@b.example>\r\nCc: =?x?q?=ZZ?= <c@d.example>\r\n\r\n".to_vec(),
        b"From: a@b.example\r\nList-Unsubscribe: <mailto:%ZZ%>, <, >,<\r\n\r\n".to_vec(),
        b"From: a@b.example\r\nList-Unsubscribe: <mailto:%ff%fe@x.example>\r\n\r\n".to_vec(),
        b"\r\n\r\n\r\n".to_vec(),
        b" leading continuation\r\nFrom: a@b.example\r\n".to_vec(),
        (0u8..=255).collect(),
        [
            b"From: a@b.example\r\nTo: ".to_vec(),
            vec![b'x'; 100_000],
            b"@c.example\r\n\r\n".to_vec(),
        ]
        .concat(),
    ];
    for input in inputs {
        let reverse = reverse_map(&input);
        let plan = AliasModePlan {
            alias: &alias,
            sender_format: FORMAT,
            reverse: &reverse,
        };
        if let Ok(out) = rewrite(&input, &plan) {
            // Whatever is written is one header block followed by the body.
            assert!(!out.is_empty());
        }
        let _ = prefix_subject(&input, "[x]");
        let _ = add_header(&input, "X-A", "b");
    }
}

// ---------------------------------------------------------------------------
// external_addresses

#[test]
fn external_addresses_lists_outside_addresses_once() {
    let message = b"From: \"Bob\" <bob@sender.example>\r\n\
        Reply-To: bob@sender.example, help@sender.example\r\n\
        To: shop@alias.example, Carol <carol@else.example>\r\n\
        Cc: =?utf-8?q?D=C3=A9bora?= <debora@else.example>, CAROL@else.example\r\n\
        Bcc: secret@else.example\r\n\
        List-Unsubscribe: <mailto:unsub@list.example?subject=x>, <https://list.example/u>\r\n\
        \r\n\
        To: body@else.example\r\n";
    let found = external_addresses(message, &is_ours);
    let expected = vec![
        ExternalAddress {
            address: addr("bob@sender.example"),
            display_name: Some("Bob".into()),
            role: AddressRole::From,
        },
        ExternalAddress {
            address: addr("help@sender.example"),
            display_name: None,
            role: AddressRole::ReplyTo,
        },
        ExternalAddress {
            address: addr("carol@else.example"),
            display_name: Some("Carol".into()),
            role: AddressRole::To,
        },
        ExternalAddress {
            address: addr("debora@else.example"),
            display_name: Some("Débora".into()),
            role: AddressRole::Cc,
        },
        ExternalAddress {
            address: addr("unsub@list.example"),
            display_name: None,
            role: AddressRole::ListUnsubscribe,
        },
    ];
    assert_eq!(found, expected);
}

#[test]
fn external_addresses_and_rewrite_agree() {
    // Every address external_addresses reports is replaced by rewrite: the
    // rewritten message has no outside address left.
    let message = b"From: a@one.example\r\nReply-To: b@two.example\r\nTo: g: c@three.example;\r\n\
        Cc: shop@alias.example, d@four.example\r\n\
        List-Unsubscribe: <mailto:e@five.example>\r\n\r\n";
    assert_eq!(external_addresses(message, &is_ours).len(), 5);
    let out = rewritten(message);
    assert_eq!(external_addresses(out.as_bytes(), &is_ours), vec![]);
    let parsed = MessageParser::new().parse(out.as_bytes()).expect("parse");
    let mut seen = Vec::new();
    for list in [parsed.from(), parsed.reply_to(), parsed.to(), parsed.cc()] {
        seen.extend(
            list.expect("field")
                .iter()
                .filter_map(|a| a.address())
                .map(str::to_owned),
        );
    }
    assert_eq!(
        seen,
        [
            "r--a@alias.example",
            "r--b@alias.example",
            "r--c@alias.example",
            "shop@alias.example",
            "r--d@alias.example",
        ]
    );
}

// ---------------------------------------------------------------------------
// Subject prefix

#[test]
fn subject_prefixes() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "plain",
            "Subject: Hello\r\n",
            "[SPAM?]",
            "Subject: [SPAM?] Hello\r\n",
        ),
        (
            "encoded words kept as they are",
            "Subject: =?utf-8?q?Caf=C3=A9?= au lait\r\n",
            "[SPAM?]",
            "Subject: [SPAM?] =?utf-8?q?Caf=C3=A9?= au lait\r\n",
        ),
        (
            "folded subject",
            "Subject: Hello\r\n world\r\n",
            "[x]",
            "Subject: [x] Hello\r\n world\r\n",
        ),
        (
            "subject starting on a continuation line",
            "Subject:\r\n Hello\r\n",
            "[x]",
            "Subject: [x]\r\n Hello\r\n",
        ),
        ("empty subject", "Subject:\r\n", "[x]", "Subject: [x]\r\n"),
        (
            "missing subject",
            "From: a@b.example\r\n",
            "[x]",
            "From: a@b.example\r\nSubject: [x]\r\n",
        ),
        (
            "already prefixed",
            "Subject: [SPAM?] Hello\r\n",
            "[SPAM?]",
            "Subject: [SPAM?] Hello\r\n",
        ),
        (
            "already prefixed, encoded",
            "Subject: =?utf-8?q?=5BSPAM=3F=5D_Hello?=\r\n",
            "[SPAM?]",
            "Subject: =?utf-8?q?=5BSPAM=3F=5D_Hello?=\r\n",
        ),
        (
            "line breaks in the prefix cannot inject fields",
            "Subject: Hello\r\n",
            "[x]\r\nBcc: victim@else.example",
            "Subject: [x] Bcc: victim@else.example Hello\r\n",
        ),
        (
            "empty prefix",
            "Subject: Hello\r\n",
            " \r\n",
            "Subject: Hello\r\n",
        ),
    ];
    for (name, input, prefix, expected) in cases {
        let message = format!("{input}\r\nbody\r\n");
        let out = prefix_subject(message.as_bytes(), prefix);
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(out, format!("{expected}\r\nbody\r\n"), "case: {name}");
    }
}

#[test]
fn non_ascii_prefixes_are_encoded() {
    // What a mail client shows, for plain and encoded subjects (whitespace
    // between two encoded words is not displayed, so the space must survive).
    for (subject, shown) in [
        ("Hello", "[Ünï] Hello"),
        ("=?utf-8?q?Caf=C3=A9?=", "[Ünï] Café"),
        ("=?utf-8?q?Caf=C3=A9?= au lait", "[Ünï] Café au lait"),
    ] {
        let message = format!("Subject: {subject}\r\n\r\nbody");
        let out = prefix_subject(message.as_bytes(), "[Ünï]");
        assert!(out.is_ascii());
        assert!(out.ends_with(format!("{subject}\r\n\r\nbody").as_bytes()));
        let parsed = MessageParser::new().parse(&out[..]).expect("parse");
        assert_eq!(parsed.subject(), Some(shown));
    }
    // And on a message without a subject.
    let out = prefix_subject(b"From: a@b.example\r\n\r\n", "[Ünï]");
    let parsed = MessageParser::new().parse(&out[..]).expect("parse");
    assert_eq!(parsed.subject(), Some("[Ünï]"));
}

#[test]
fn every_subject_field_is_prefixed_and_the_body_kept() {
    let message = b"Subject: one\r\nSubject: two\r\n\r\nSubject: body\r\n";
    let out = prefix_subject(message, "[x]");
    assert_eq!(
        out,
        b"Subject: [x] one\r\nSubject: [x] two\r\n\r\nSubject: body\r\n"
    );
}

#[test]
fn very_long_subject_line_is_folded_before_the_original() {
    let long = "y".repeat(990);
    let message = format!("Subject: {long}\r\n\r\n");
    let out = prefix_subject(message.as_bytes(), "[SPAM?]");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(out, format!("Subject: [SPAM?]\r\n {long}\r\n\r\n"));
}

// ---------------------------------------------------------------------------
// add_header

#[test]
fn add_header_prepends_a_field() {
    let message = b"Subject: hi\r\n\r\nbody\r\n";
    let out = add_header(message, "X-Smtpy-Rule", "tagged by rule 7").expect("add");
    assert_eq!(
        out,
        b"X-Smtpy-Rule: tagged by rule 7\r\nSubject: hi\r\n\r\nbody\r\n"
    );
    // Bare-LF messages get a bare LF.
    let out = add_header(b"Subject: hi\n\nbody\n", "X-A", "b").expect("add");
    assert_eq!(out, b"X-A: b\nSubject: hi\n\nbody\n");
}

#[test]
fn add_header_folds_long_values() {
    let value = "word ".repeat(50);
    let value = value.trim_end();
    let out = add_header(b"\r\n", "X-Long", value).expect("add");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.split("\r\n").all(|l| l.len() <= 78), "{text}");
    // Unfolding gives the value back exactly.
    let unfolded = text.trim_end_matches("\r\n").replace("\r\n", "");
    assert_eq!(unfolded, format!("X-Long: {value}"));
}

#[test]
fn add_header_refuses_injection() {
    let message = b"Subject: hi\r\n\r\n";
    for (name, value, expected) in [
        (
            "X-A",
            "x\r\nBcc: victim@else.example",
            RewriteError::InvalidHeaderValue,
        ),
        (
            "X-A",
            "x\nBcc: victim@else.example",
            RewriteError::InvalidHeaderValue,
        ),
        (
            "X-A",
            "x\rBcc: victim@else.example",
            RewriteError::InvalidHeaderValue,
        ),
        ("X-A", "nul\0byte", RewriteError::InvalidHeaderValue),
        (
            "X-A\r\nBcc",
            "victim@else.example",
            RewriteError::InvalidHeaderName,
        ),
        ("X-A: b", "c", RewriteError::InvalidHeaderName),
        ("", "c", RewriteError::InvalidHeaderName),
        ("X A", "c", RewriteError::InvalidHeaderName),
        ("X-Ü", "c", RewriteError::InvalidHeaderName),
    ] {
        assert_eq!(
            add_header(message, name, value),
            Err(expected),
            "{name:?}: {value:?}"
        );
    }
    assert_eq!(
        add_header(message, "X-A", &"z".repeat(1000)),
        Err(RewriteError::LineTooLong)
    );
    assert!(add_header(message, "X-A", "tab\tand ünïcode").is_ok());
}

// ---------------------------------------------------------------------------
// Hostile input

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use smtpy_core::forward::header_block;

    /// Header-ish messages: known field names with values made of the
    /// characters address parsers care about, then a body.
    fn messages() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just("From"),
            Just("To"),
            Just("Cc"),
            Just("Reply-To"),
            Just("List-Unsubscribe"),
            Just("Subject"),
            Just("Sender"),
            Just("DKIM-Signature"),
            Just("X-Other"),
        ];
        let piece = prop_oneof![
            Just("bob@sender.example".to_owned()),
            Just("shop@alias.example".to_owned()),
            Just("\"Doe, J\"".to_owned()),
            Just("=?utf-8?q?Andr=C3=A9?=".to_owned()),
            Just("<mailto:u@list.example?cc=x@y.example>".to_owned()),
            Just("<https://x.example/u>".to_owned()),
            Just("\r\n ".to_owned()),
            Just("\r\n".to_owned()),
            Just("\n".to_owned()),
            "[<>\",;:()@\\\\. a-zé\u{0}\u{7f}=?]{0,12}",
        ];
        let field = (name, prop::collection::vec(piece, 0..6))
            .prop_map(|(name, pieces)| format!("{name}: {}\r\n", pieces.concat()));
        (
            prop::collection::vec(field, 0..8),
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(fields, body)| {
                let mut message = fields.concat().into_bytes();
                message.extend_from_slice(b"\r\n");
                message.extend_from_slice(&body);
                message
            })
    }

    fn check(message: &[u8]) -> Result<(), TestCaseError> {
        let alias = alias();
        let reverse = reverse_map(message);
        let plan = AliasModePlan {
            alias: &alias,
            sender_format: FORMAT,
            reverse: &reverse,
        };
        if let Ok(out) = rewrite(message, &plan) {
            let body = &message[header_block(message).len()..];
            prop_assert!(out.ends_with(body));
            prop_assert_eq!(external_addresses(&out, &is_ours), vec![]);
            for line in out[..out.len() - body.len()].split(|&b| b == b'\n') {
                prop_assert!(line.len() <= 999);
            }
        }
        let _ = prefix_subject(message, "[SPAM?]");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn structured_garbage_never_panics(message in messages()) {
            check(&message)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(message in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&message)?;
        }
    }
}
