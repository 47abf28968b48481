//! Reply scrubbing and the leak check (`smtpy_core::rewrite::scrub`).
//!
//! Replies are written the way real clients produce them (Gmail, Outlook,
//! Apple Mail, webmail); after scrubbing, neither the owner's mailbox nor
//! the reverse alias may be visible anywhere, the text must still read
//! right, and what is not rewritten must stay byte for byte. The second half
//! shows that `leaks` finds each hiding place, so these tests can fail.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{MessageParser, PartType};
use proptest::prelude::*;
use smtpy_core::address::EmailAddress;
use smtpy_core::forward::header_fields;
use smtpy_core::rewrite::scrub::{MAX_LINE_LEN, ReplyPlan, ScrubError, leaks, scrub_reply};

const MAILBOX: &str = "me@mail.example";
const REVERSE: &str = "ra_k3j2h1@alias.example";
const ALIAS: &str = "shop@alias.example";
const CONTACT: &str = "bob@outside.example";
const REVERSE_2: &str = "ra_carol77@alias.example";
const CONTACT_2: &str = "carol@elsewhere.example";

fn address(s: &str) -> EmailAddress {
    match EmailAddress::parse(s) {
        Ok(a) => a,
        Err(e) => panic!("{s}: {e}"),
    }
}

fn replacements() -> Vec<(String, String)> {
    vec![
        (MAILBOX.into(), ALIAS.into()),
        (REVERSE.into(), CONTACT.into()),
        (REVERSE_2.into(), CONTACT_2.into()),
    ]
}

/// The message with CRLF line breaks, as clients submit it.
fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn try_scrub(message: &[u8]) -> Result<Vec<u8>, ScrubError> {
    let (from, to) = (address(ALIAS), address(CONTACT));
    let replacements = replacements();
    let plan = ReplyPlan {
        from: &from,
        to: &to,
        to_display: Some("Bob"),
        replacements: &replacements,
    };
    scrub_reply(message, &plan)
}

/// Scrubs and checks what must hold for every reply that goes out.
fn scrub(message: &[u8]) -> Vec<u8> {
    let out = match try_scrub(message) {
        Ok(out) => out,
        Err(e) => panic!("scrub failed: {e}"),
    };
    assert_invariants(&out);
    for needle in [MAILBOX, REVERSE, REVERSE_2] {
        assert!(!leaks(&out, needle), "{needle} leaks in:\n{}", lossy(&out));
    }
    assert_eq!(header(&out, "From").as_deref(), Some(ALIAS));
    assert_eq!(
        header(&out, "To").as_deref(),
        Some(format!("\"Bob\" <{CONTACT}>").as_str())
    );
    out
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// CRLF only, lines within the limit, a final CRLF.
fn assert_invariants(out: &[u8]) {
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in out.split(|&b| b == b'\n') {
        assert!(
            line.len() <= MAX_LINE_LEN + 1,
            "line of {} octets",
            line.len()
        );
    }
    assert!(out.ends_with(b"\r\n"));
}

/// The unfolded raw value of the first top-level field called `name`.
fn header(message: &[u8], name: &str) -> Option<String> {
    header_fields(message)
        .find(|f| f.is(name))
        .map(|f| lossy(&f.unfolded_value()))
}

fn count_fields(message: &[u8], name: &str) -> usize {
    header_fields(message).filter(|f| f.is(name)).count()
}

/// The raw field (name to final CRLF) called `name`, as bytes of `message`.
fn raw_field(message: &[u8], name: &str) -> Vec<u8> {
    let text = lossy(message);
    let start = text
        .find(&format!("\r\n{name}:"))
        .map(|i| i + 2)
        .or_else(|| text.starts_with(&format!("{name}:")).then_some(0))
        .unwrap_or_else(|| panic!("no {name}"));
    let mut end = start;
    loop {
        let next = text[end..].find("\r\n").map_or(text.len(), |i| end + i + 2);
        end = next;
        if !text[end..].starts_with([' ', '\t']) {
            break;
        }
    }
    message[start..end].to_vec()
}

/// Every decoded text and HTML body of `message`, attached messages
/// included, as mail-parser reads it.
fn bodies(message: &[u8]) -> Vec<String> {
    fn collect(m: &mail_parser::Message<'_>, out: &mut Vec<String>) {
        for part in &m.parts {
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => out.push(t.to_string()),
                PartType::Message(nested) => collect(nested, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Some(m) = MessageParser::default().parse(message) {
        collect(&m, &mut out);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Replies as clients write them

const GMAIL: &str = "MIME-Version: 1.0
References: <CAB1234567890abcdef@mail.gmail.com>
In-Reply-To: <CAB1234567890abcdef@mail.gmail.com>
From: Me Myself <me@mail.example>
Date: Tue, 3 Mar 2026 10:15:02 +0100
Message-ID: <CAF+xyz0=QwErTy9@mail.gmail.com>
Subject: Re: Your order #1234
To: Bob via smtpy <ra_k3j2h1@alias.example>
Content-Type: multipart/alternative; boundary=\"000000000000a1b2c3d4e5f6\"
X-Received: by 2002:a05:6402:1234:b0:5a1:2b3c:4d5e with SMTP id
 a1-20020a056402123400b005a12b3c4d5emr1234567edb.12.1709457302123;
 Tue, 03 Mar 2026 01:15:02 -0800 (PST)
X-Gm-Message-State: AOJu0YwXyZ1234567890abcdefghij
X-Google-Smtp-Source: AGHT+IE1234567890abcdefghijklmnop
Received: from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])
        by mx.alias.example for <ra_k3j2h1@alias.example>;
        Tue, 03 Mar 2026 01:15:02 -0800 (PST)
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=mail.example; s=20230601;
        h=to:subject:message-id:date:from:in-reply-to:references:mime-version;
        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=abcdef
Return-Path: <me@mail.example>
X-Smtpy-Loop: mx.alias.example

--000000000000a1b2c3d4e5f6
Content-Type: text/plain; charset=\"UTF-8\"
Content-Transfer-Encoding: quoted-printable

Sounds good, thanks!

--=20
Me Myself
me@mail.example | +1 555 0100

On Tue, Mar 3, 2026 at 9:00=E2=80=AFAM Bob via smtpy <ra_k3j2h1@alias.exampl=
e> wrote:

> Hello, is the order ready?
>

--000000000000a1b2c3d4e5f6
Content-Type: text/html; charset=\"UTF-8\"
Content-Transfer-Encoding: quoted-printable

<div dir=3D\"ltr\">Sounds good, thanks!<br clear=3D\"all\"><div><br></div><sp=
an class=3D\"gmail_signature_prefix\">-- </span><br><div dir=3D\"ltr\" class=3D=
\"gmail_signature\"><div dir=3D\"ltr\">Me Myself<br><a href=3D\"mailto:me@mail=
.example\" target=3D\"_blank\">me@mail.example</a> | +1 555 0100</div></div></=
div><br><div class=3D\"gmail_quote\"><div dir=3D\"ltr\" class=3D\"gmail_attr\">On=
 Tue, Mar 3, 2026 at 9:00=E2=80=AFAM Bob via smtpy &lt;<a href=3D\"mailto:ra_k=
3j2h1@alias.example\">ra_k3j2h1@alias.example</a>&gt; wrote:<br></div><blockq=
uote class=3D\"gmail_quote\" style=3D\"margin:0px 0px 0px 0.8ex;border-left:1px=
 solid rgb(204,204,204);padding-left:1ex\">Hello, is the order ready?</blockq=
uote></div>

--000000000000a1b2c3d4e5f6--
";

#[test]
fn gmail_multipart_alternative() {
    let input = crlf(GMAIL);
    assert!(leaks(&input, MAILBOX));
    assert!(leaks(&input, REVERSE));
    let out = scrub(&input);

    for removed in [
        "X-Received",
        "X-Gm-Message-State",
        "X-Google-Smtp-Source",
        "Received",
        "DKIM-Signature",
        "Return-Path",
        "X-Smtpy-Loop",
    ] {
        assert_eq!(count_fields(&out, removed), 0, "{removed} kept");
    }
    // Threading and untouched fields stay byte for byte.
    for kept in [
        "MIME-Version",
        "References",
        "In-Reply-To",
        "Date",
        "Message-ID",
        "Subject",
        "Content-Type",
    ] {
        assert_eq!(raw_field(&out, kept), raw_field(&input, kept), "{kept}");
    }
    assert_eq!(count_fields(&out, "From"), 1);
    assert_eq!(count_fields(&out, "To"), 1);

    let bodies = bodies(&out);
    assert_eq!(bodies.len(), 2);
    let text = &bodies[0];
    assert!(
        text.contains("Me Myself\r\nshop@alias.example | +1 555 0100"),
        "{text}"
    );
    assert!(
        text.contains("Bob via smtpy <bob@outside.example> wrote:"),
        "{text}"
    );
    assert!(text.contains("> Hello, is the order ready?"));
    let html = &bodies[1];
    assert!(
        html.contains(
            "<a href=\"mailto:shop@alias.example\" target=\"_blank\">shop@alias.example</a>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "&lt;<a href=\"mailto:bob@outside.example\">bob@outside.example</a>&gt; wrote:"
        )
    );
    // Boundaries untouched; both parts now say quoted-printable UTF-8.
    assert_eq!(lossy(&out).matches("--000000000000a1b2c3d4e5f6").count(), 3);
    assert_eq!(
        lossy(&out)
            .matches("Content-Type: text/plain; charset=utf-8\r\n")
            .count(),
        1
    );
}

const OUTLOOK: &str = "From: \"Myself, Me\" <me@mail.example>
To: \"Bob via smtpy\" <ra_k3j2h1@alias.example>
CC: \"Carol via smtpy\" <ra_carol77@alias.example>
Subject: RE: Your order #1234
Thread-Topic: Your order #1234
Thread-Index: AQHabc123def456ghi789jklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU
 VWXYZ0123456789
Date: Tue, 3 Mar 2026 09:30:11 +0000
Message-ID:
 <AM0PR01MB1234ABCD5678EF90@AM0PR01MB1234.eurprd01.prod.outlook.com>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
X-MS-Exchange-Organization-AuthSource: AM0PR01MB1234.eurprd01.prod.outlook.com
X-MS-Exchange-Organization-Network-Message-Id: 1a2b3c4d-0000-4000-8000-123456789abc
X-Microsoft-Antispam: BCL:0;
X-MS-Office365-Filtering-Correlation-Id: 1a2b3c4d-0000-4000-8000-123456789abc
X-Originating-IP: [203.0.113.7]
ARC-Seal: i=1; a=rsa-sha256; s=arcselector9901; d=microsoft.com; cv=none; b=abc
ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=none
Authentication-Results: dkim=none (message not signed) header.d=none;
 dmarc=none action=none header.from=mail.example;
Disposition-Notification-To: \"Myself, Me\" <me@mail.example>
Content-Type: multipart/alternative;
\tboundary=\"_000_AM0PR01MB1234ABCD5678EF90AM0PR01MB1234eurp_\"
MIME-Version: 1.0

--_000_AM0PR01MB1234ABCD5678EF90AM0PR01MB1234eurp_
Content-Type: text/plain; charset=\"us-ascii\"
Content-Transfer-Encoding: quoted-printable

Hi Bob,

Yes, it ships tomorrow.

Me | ME@MAIL.EXAMPLE

From: Bob via smtpy <RA_K3J2H1@ALIAS.EXAMPLE>
Sent: Tuesday, March 3, 2026 9:00 AM
To: shop@alias.example
Cc: Carol via smtpy <ra_carol77@alias.example>
Subject: Your order #1234

Hello, is the order ready?

--_000_AM0PR01MB1234ABCD5678EF90AM0PR01MB1234eurp_
Content-Type: text/html; charset=\"us-ascii\"
Content-Transfer-Encoding: quoted-printable

<html xmlns:v=3D\"urn:schemas-microsoft-com:vml\" xmlns:o=3D\"urn:schemas-micr=
osoft-com:office:office\">
<head>
<meta http-equiv=3D\"Content-Type\" content=3D\"text/html; charset=3Dus-ascii\">
</head>
<body lang=3D\"EN-US\">
<div class=3D\"WordSection1\">
<p class=3D\"MsoNormal\">Hi Bob,<o:p></o:p></p>
<p class=3D\"MsoNormal\">Yes, it ships tomorrow.<o:p></o:p></p>
<p class=3D\"MsoNormal\">Me | <a href=3D\"mailto:me&#64;mail.example\">me&#64;m=
ail.example</a><o:p></o:p></p>
<div style=3D\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in=
 0in\">
<p class=3D\"MsoNormal\"><b>From:</b> Bob via smtpy &lt;<a href=3D\"mailto:RA_K3=
J2H1%40alias.example\">ra_k3j2h1&#x40;alias.example</a>&gt;<br>
<b>Sent:</b> Tuesday, March 3, 2026 9:00 AM<br>
<b>Cc:</b> Carol via smtpy &lt;ra_carol77&commat;alias.example&gt;<br>
<b>Subject:</b> Your order #1234<o:p></o:p></p>
</div>
<p class=3D\"MsoNormal\">Hello, is the order ready?<o:p></o:p></p>
</div>
</body>
</html>

--_000_AM0PR01MB1234ABCD5678EF90AM0PR01MB1234eurp_--
";

#[test]
fn outlook_html_with_mailto_and_entities() {
    let input = crlf(OUTLOOK);
    let out = scrub(&input);
    assert!(!leaks(&out, REVERSE_2));

    for removed in [
        "X-MS-Has-Attach",
        "X-MS-TNEF-Correlator",
        "X-MS-Exchange-Organization-AuthSource",
        "X-MS-Exchange-Organization-Network-Message-Id",
        "X-Microsoft-Antispam",
        "X-MS-Office365-Filtering-Correlation-Id",
        "X-Originating-IP",
        "ARC-Seal",
        "ARC-Authentication-Results",
        "Authentication-Results",
    ] {
        assert_eq!(count_fields(&out, removed), 0, "{removed} kept");
    }
    // Folded fields that do not change stay byte for byte.
    for kept in ["Thread-Index", "Message-ID", "Thread-Topic", "Content-Type"] {
        assert_eq!(raw_field(&out, kept), raw_field(&input, kept), "{kept}");
    }
    // The read receipt goes to the alias (and on to the owner).
    assert_eq!(
        header(&out, "Disposition-Notification-To").as_deref(),
        Some(ALIAS)
    );
    assert_eq!(
        header(&out, "CC").as_deref(),
        Some(format!("\"Carol via smtpy\" <{CONTACT_2}>").as_str())
    );

    let bodies = bodies(&out);
    let text = &bodies[0];
    assert!(text.contains("Me | shop@alias.example"), "{text}");
    assert!(text.contains("From: Bob via smtpy <bob@outside.example>"));
    assert!(text.contains("Cc: Carol via smtpy <carol@elsewhere.example>"));
    let html = &bodies[1];
    assert!(
        html.contains("<a href=\"mailto:shop@alias.example\">shop@alias.example</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"mailto:bob@outside.example\">bob@outside.example</a>"));
    assert!(html.contains("&lt;carol@elsewhere.example&gt;"));
    // The HTML is UTF-8 now, and its <meta> says so.
    assert!(
        html.contains("content=\"text/html; charset=utf-8\""),
        "{html}"
    );
    assert_eq!(
        lossy(&out)
            .matches("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable")
            .count(),
        2
    );
}

const APPLE: &str = "From: Me Myself <me@mail.example>
Content-Type: text/plain;
\tcharset=us-ascii
Content-Transfer-Encoding: quoted-printable
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))
Subject: Re: Your order
Date: Tue, 3 Mar 2026 10:02:41 +0100
References: <20260303090000.ABC123@alias.example>
To: Bob via smtpy <ra_k3j2h1@alias.example>
In-Reply-To: <20260303090000.ABC123@alias.example>
Message-Id: <8A1B2C3D-0000-4000-8000-123456789ABC@mail.example>
X-Mailer: Apple Mail (2.3774.600.62)

Yes, that is fine. This line is long enough that Apple Mail wraps it: me@m=
ail.example is where to reach me.

> On 3 Mar 2026, at 09:00, Bob via smtpy <ra_k3j2h1@alias.exa=
mple> wrote:
>=20
> Hello, is the order ready?
";

#[test]
fn apple_quoted_printable_soft_break_inside_the_address() {
    let input = crlf(APPLE);
    let body_start = lossy(&input).find("\r\n\r\n").unwrap_or(0);
    assert!(
        !lossy(&input[body_start..]).contains(MAILBOX),
        "the address is split in the raw body"
    );
    assert!(leaks(&input, MAILBOX));
    let out = scrub(&input);
    // X-Mailer is kept; a Message-ID on the mailbox's domain is fine.
    for kept in [
        "X-Mailer",
        "Message-Id",
        "Mime-Version",
        "References",
        "Subject",
    ] {
        assert_eq!(raw_field(&out, kept), raw_field(&input, kept), "{kept}");
    }
    assert_eq!(
        header(&out, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let text = &bodies(&out)[0];
    assert!(
        text.contains("Apple Mail wraps it: shop@alias.example is where to reach me."),
        "{text}"
    );
    assert!(text.contains("> On 3 Mar 2026, at 09:00, Bob via smtpy <bob@outside.example> wrote:"));
}

#[test]
fn base64_html_and_untouched_attachment() {
    let html = "<html><body><p>Invoice attached.</p><p>--<br>Me &lt;<a href=\"mailto:Me@Mail.Example\">Me@Mail.Example</a>&gt;</p>\
                <blockquote>ra_k3j2h1@alias.example wrote: hi</blockquote></body></html>";
    let png: Vec<u8> = (0u8..=255).cycle().take(3000).collect();
    let png_b64 = BASE64.encode(&png);
    let png_lines: Vec<&str> = png_b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let html_b64 = BASE64.encode(html);
    let html_lines: Vec<&str> = html_b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let message = format!(
        "From: me@mail.example\nTo: ra_k3j2h1@alias.example\nSubject: invoice\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=_mixed_42\"\n\n\
         This is a multi-part message in MIME format.\n\n--=_mixed_42\n\
         Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n\
         --=_mixed_42\nContent-Type: image/png; name=\"logo.png\"\n\
         Content-Disposition: attachment; filename=\"logo.png\"\nContent-Transfer-Encoding: base64\n\n{}\n\
         --=_mixed_42--\n",
        html_lines.join("\n"),
        png_lines.join("\n"),
    );
    let input = crlf(&message);
    assert!(leaks(&input, MAILBOX));
    let out = scrub(&input);
    let html_out = &bodies(&out)[0];
    assert!(
        html_out.contains("<a href=\"mailto:shop@alias.example\">shop@alias.example</a>"),
        "{html_out}"
    );
    assert!(html_out.contains("bob@outside.example wrote: hi"));
    // The image part, its headers and the preamble are byte for byte the same.
    let image_part = crlf(&format!(
        "--=_mixed_42\nContent-Type: image/png; name=\"logo.png\"\n\
         Content-Disposition: attachment; filename=\"logo.png\"\nContent-Transfer-Encoding: base64\n\n{}\n--=_mixed_42--\n",
        png_lines.join("\n")
    ));
    assert!(contains(&out, &image_part));
    assert!(contains(
        &out,
        b"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--=_mixed_42\r\n"
    ));
    let parsed = MessageParser::default().parse(&out[..]);
    let attachment = parsed
        .as_ref()
        .and_then(|m| m.attachment(0))
        .map(|a| a.contents().to_vec());
    assert_eq!(attachment, Some(png));
}

const ENCODED_WORDS: &str = "From: =?UTF-8?Q?Me_M=C3=BCller?= <me@mail.example>
To: =?UTF-8?B?Qm9iIHZpYSBzbXRweQ==?= <ra_k3j2h1@alias.example>
Cc: =?utf-8?q?Carol_=E2=80=94_via_smtpy?= <ra_carol77@alias.example>,
 \"me@mail.example\" <ME@mail.example>
Reply-To: =?utf-8?b?TcO8bGxlciA8bWVAbWFpbC5leGFtcGxlPg==?= <me@mail.example>
Subject: =?UTF-8?Q?R=C3=A9ponse_=C3=A0_me=40mail=2Eexample_?=
 =?UTF-8?Q?(urgent)?=
Comments: =?utf-8?q?write_to_m?= =?utf-8?q?e=40mail.example?=
Keywords: =?utf-8?q?unrelated?=
Message-ID: <1709457302.me@mail.example>
Content-Type: text/plain; charset=utf-8

Danke!
";

#[test]
fn encoded_words_in_subject_and_addresses() {
    let input = crlf(ENCODED_WORDS);
    let out = scrub(&input);
    let parsed = MessageParser::default().parse(&out[..]);
    let Some(parsed) = parsed else {
        panic!("output does not parse")
    };
    assert_eq!(
        parsed.subject(),
        Some("Réponse à shop@alias.example (urgent)")
    );
    let cc: Vec<(Option<String>, Option<String>)> = parsed
        .cc()
        .map(|a| {
            a.iter()
                .map(|x| (x.name().map(str::to_owned), x.address().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        cc,
        vec![
            (
                Some("Carol — via smtpy".to_owned()),
                Some(CONTACT_2.to_owned())
            ),
            (Some(ALIAS.to_owned()), Some(ALIAS.to_owned())),
        ]
    );
    let reply_to = parsed
        .reply_to()
        .and_then(|a| a.first())
        .map(|a| (a.name().map(str::to_owned), a.address().map(str::to_owned)));
    assert_eq!(
        reply_to,
        Some((Some(format!("Müller <{ALIAS}>")), Some(ALIAS.to_owned())))
    );
    let comments = header(&out, "Comments").unwrap_or_default();
    assert!(leaks(&input, MAILBOX));
    assert!(
        !comments.contains("m?= =?"),
        "the split word was re-encoded: {comments}"
    );
    // A Message-ID containing the full mailbox address is rewritten.
    assert_eq!(
        header(&out, "Message-ID").as_deref(),
        Some("<1709457302.shop@alias.example>")
    );
    // Untouched encoded words stay as they were.
    assert_eq!(raw_field(&out, "Keywords"), raw_field(&input, "Keywords"));
    // From carries no display name: the real name may identify the owner.
    assert!(!lossy(&out).contains("M=C3=BCller?= <"));
}

#[test]
fn nested_message_rfc822_is_scrubbed() {
    let message = crlf(
        "From: me@mail.example
To: ra_k3j2h1@alias.example
Subject: Fwd: the confirmation
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain; charset=us-ascii

See the attached confirmation.

--outer
Content-Type: message/rfc822
Content-Disposition: attachment

Return-Path: <noreply@shop.example>
Delivered-To: me@mail.example
From: Shop <noreply@shop.example>
To: Me Myself <me@mail.example>
Subject: Confirmation
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Dear customer (me@mail.example), your order is confirmed. Gr=FC=DFe.
--inner
Content-Type: text/html; charset=utf-8

<p>Dear <b>me@<span>mail</span>.example</b>, confirmed. Gr\u{fc}\u{df}e.</p>
--inner--

--outer--
",
    );
    let input = message.clone();
    let out = scrub(&input);
    let text = lossy(&out);
    // Attached message headers get the replacements and are not removed.
    assert!(
        text.contains("\r\nDelivered-To: shop@alias.example\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nTo: Me Myself <shop@alias.example>\r\n"));
    assert!(text.contains("\r\nReturn-Path: <noreply@shop.example>\r\n"));
    let bodies = bodies(&out);
    assert!(
        bodies
            .iter()
            .any(|b| b
                .contains("Dear customer (shop@alias.example), your order is confirmed. Grüße.")),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b
                .contains("<p>Dear <b>shop@alias.example<span></span></b>, confirmed. Grüße.</p>")),
        "{bodies:?}"
    );
    // The first text part had nothing to replace: unchanged.
    assert!(text.contains("--outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attached confirmation.\r\n\r\n--outer\r\n"));
}

#[test]
fn base64_encoded_attached_message_is_scrubbed() {
    let inner = crlf(
        "From: Shop <noreply@shop.example>\nTo: me@mail.example\nSubject: hi\n\nHello ME@MAIL.EXAMPLE\n",
    );
    let encoded = BASE64.encode(&inner);
    let message = crlf(&format!(
        "From: me@mail.example\nTo: ra_k3j2h1@alias.example\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{encoded}\n--b--\n"
    ));
    assert!(leaks(&message, MAILBOX));
    let out = scrub(&message);
    let start = lossy(&out)
        .find("base64\r\n\r\n")
        .map(|i| i + 10)
        .unwrap_or(0);
    let end = lossy(&out).rfind("\r\n--b--").unwrap_or(0);
    let decoded = BASE64
        .decode(lossy(&out[start..end]).replace("\r\n", ""))
        .unwrap_or_default();
    let decoded = lossy(&decoded);
    assert!(decoded.contains("To: shop@alias.example\r\n"), "{decoded}");
    assert!(decoded.contains("Hello shop@alias.example"), "{decoded}");
}

#[test]
fn calendar_reply_with_folded_organizer() {
    let ics = "BEGIN:VCALENDAR\nMETHOD:REPLY\nBEGIN:VEVENT\nATTENDEE;PARTSTAT=ACCEPTED;CN=Me Myself:mailto:me@mail\n .example\nORGANIZER;CN=Bob:mailto:ra_k3j2h1@alias.example\nEND:VEVENT\nEND:VCALENDAR\n";
    let message = crlf(&format!(
        "From: me@mail.example\nTo: ra_k3j2h1@alias.example\nContent-Type: text/calendar; charset=utf-8; method=REPLY\n\n{ics}"
    ));
    assert!(leaks(&message, MAILBOX));
    let out = scrub(&message);
    let body = &bodies(&out)[0];
    assert!(
        body.contains("CN=Me Myself:mailto:shop@alias.example\r\n"),
        "{body}"
    );
    assert!(body.contains("ORGANIZER;CN=Bob:mailto:bob@outside.example\r\n"));
    assert!(
        header(&out, "Content-Type")
            .unwrap_or_default()
            .contains("method=REPLY; charset=utf-8")
    );
}

#[test]
fn upper_and_mixed_case_variants() {
    let message = crlf(
        "FROM: ME <ME@MAIL.EXAMPLE>\nto: RA_K3J2H1@ALIAS.EXAMPLE\nSubject: Me@Mail.Example says hi\nBCC: me@mail.example\n\
         Sender: Me@mail.EXAMPLE\n\nMailbox: mE@MaIl.ExAmPlE\nReverse: Ra_K3j2H1@Alias.Example\n",
    );
    let out = scrub(&message);
    assert_eq!(count_fields(&out, "Bcc"), 0);
    assert_eq!(count_fields(&out, "Sender"), 0);
    assert_eq!(
        header(&out, "Subject").as_deref(),
        Some("shop@alias.example says hi")
    );
    let body = &bodies(&out)[0];
    assert!(
        body.contains("Mailbox: shop@alias.example\r\nReverse: bob@outside.example"),
        "{body}"
    );
}

#[test]
fn lf_only_input_and_missing_from_to() {
    let out = scrub(b"Subject: hi\n\nwrite to me@mail.example\n");
    assert_eq!(
        lossy(&out),
        "From: shop@alias.example\r\nTo: \"Bob\" <bob@outside.example>\r\nSubject: hi\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nwrite to shop@alias.example\r\n"
    );
}

#[test]
fn missing_to_goes_after_from() {
    let out = scrub(b"Subject: a\r\nFrom: Me <me@mail.example>\r\nDate: x\r\n\r\nhi\r\n");
    assert_eq!(
        lossy(&out),
        "Subject: a\r\nFrom: shop@alias.example\r\nTo: \"Bob\" <bob@outside.example>\r\nDate: x\r\n\r\nhi\r\n"
    );
}

#[test]
fn top_level_header_block_is_made_unambiguous() {
    // Lines without a colon and fields with invalid names: mail-parser reads
    // past them, a strict parser ends the header block there. They go, so
    // From and To are header fields for every reader.
    let out = scrub(b" stray\r\nX-A: 1\r\nnot a field\r\n\xde\xdeY: 2\r\nSub ject: 3\r\n:ontent-Type: text/html\r\nFrom: me@mail.example\r\nZ: 4\r\njunk\r\n\r\nbody\r\n");
    assert_eq!(
        lossy(&out),
        "X-A: 1\r\nFrom: shop@alias.example\r\nTo: \"Bob\" <bob@outside.example>\r\nZ: 4\r\n\r\nbody\r\n"
    );
    // After a stray line, a line of blanks ends the block for mail-parser
    // but would continue the last field for a strict parser: it becomes an
    // empty line.
    let out = scrub(
        b"From: me@mail.example\r\nX: 1\r\nstray\r\n   \r\nTo: someone@else.example\r\n\r\nbody\r\n",
    );
    assert_eq!(
        lossy(&out),
        "From: shop@alias.example\r\nTo: \"Bob\" <bob@outside.example>\r\nX: 1\r\n\r\nTo: someone@else.example\r\n\r\nbody\r\n"
    );
}

#[test]
fn non_ascii_display_name_is_encoded() {
    let (from, to) = (address(ALIAS), address(CONTACT));
    let replacements = replacements();
    let plan = ReplyPlan {
        from: &from,
        to: &to,
        to_display: Some("Zoë \"Z\" Dupont"),
        replacements: &replacements,
    };
    let out = scrub_reply(b"To: x@y.example\r\n\r\nhi\r\n", &plan).unwrap_or_default();
    let parsed = MessageParser::default().parse(&out[..]);
    let to = parsed
        .as_ref()
        .and_then(|m| m.to())
        .and_then(|a| a.first())
        .map(|a| (a.name().map(str::to_owned), a.address().map(str::to_owned)));
    assert_eq!(
        to,
        Some((
            Some("Zoë \"Z\" Dupont".to_owned()),
            Some(CONTACT.to_owned())
        ))
    );
    let plan = ReplyPlan {
        to_display: Some("Plain \"Q\" \\ name"),
        ..plan
    };
    let out = scrub_reply(b"To: x@y.example\r\n\r\nhi\r\n", &plan).unwrap_or_default();
    assert_eq!(
        header(&out, "To").as_deref(),
        Some("\"Plain \\\"Q\\\" \\\\ name\" <bob@outside.example>")
    );
}

#[test]
fn long_lines_are_rewritten_or_refused() {
    // A text part with a 2000-octet line is re-encoded (soft line breaks).
    let long = "word ".repeat(400);
    let out = scrub(&crlf(&format!(
        "From: me@mail.example\nSubject: {long}\n\n{long}\n"
    )));
    assert!(bodies(&out)[0].starts_with(&long));
    assert_eq!(
        header(&out, "Subject").as_deref().map(str::trim),
        Some(long.trim())
    );
    // An attachment with one is not rewritten: refused.
    let message = crlf(&format!(
        "From: me@mail.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream\n\n{}\n--b--\n",
        "x".repeat(2000)
    ));
    assert_eq!(try_scrub(&message), Err(ScrubError::LineTooLong));
}

// ---------------------------------------------------------------------------
// Refusals

#[test]
fn attachment_containing_the_mailbox_is_refused() {
    let pdf = b"%PDF-1.4\n1 0 obj << /Author (me@mail.example) >> endobj\n%%EOF\n";
    let message = crlf(&format!(
        "From: me@mail.example\nTo: ra_k3j2h1@alias.example\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/pdf; name=cv.pdf\n\
         Content-Transfer-Encoding: base64\n\n{}\n--b--\n",
        BASE64.encode(pdf)
    ));
    match try_scrub(&message) {
        Err(ScrubError::Leak { place }) => {
            assert_eq!(place, "an attachment of type application/pdf");
            assert!(!place.contains(MAILBOX));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn invalid_plans_and_non_messages() {
    let (alias, contact, mailbox) = (address(ALIAS), address(CONTACT), address(MAILBOX));
    let ok = replacements();
    let plan = |to: &'static EmailAddress, r: &'static [(String, String)]| ReplyPlan {
        from: Box::leak(Box::new(alias.clone())),
        to,
        to_display: None,
        replacements: r,
    };
    let leak = |v: Vec<(String, String)>| -> &'static [(String, String)] {
        Box::leak(v.into_boxed_slice())
    };
    let contact: &'static EmailAddress = Box::leak(Box::new(contact));
    let mailbox: &'static EmailAddress = Box::leak(Box::new(mailbox));
    let message = b"From: a@b.example\r\n\r\nhi\r\n";
    assert!(matches!(
        scrub_reply(
            message,
            &plan(contact, leak(vec![(" ".into(), ALIAS.into())]))
        ),
        Err(ScrubError::InvalidPlan { .. })
    ));
    assert!(matches!(
        scrub_reply(
            message,
            &plan(
                contact,
                leak(vec![(MAILBOX.into(), "x.me@mail.example".into())])
            )
        ),
        Err(ScrubError::InvalidPlan { .. })
    ));
    assert!(matches!(
        scrub_reply(message, &plan(mailbox, leak(ok.clone()))),
        Err(ScrubError::InvalidPlan { .. })
    ));
    assert_eq!(
        scrub_reply(b"no header here", &plan(contact, leak(ok.clone()))),
        Err(ScrubError::NotAMessage)
    );
    assert_eq!(
        scrub_reply(b"", &plan(contact, leak(ok))),
        Err(ScrubError::NotAMessage)
    );
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let rfc822 = "Content-Type: message/rfc822\r\n\r\n".repeat(20_000);
    let multipart: String = (0..5_000)
        .map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"))
        .collect();
    for wrappers in [rfc822, multipart] {
        let mut message = b"From: me@mail.example\r\n".to_vec();
        message.extend_from_slice(wrappers.as_bytes());
        message.extend_from_slice(b"Subject: deep\r\n\r\nhello\r\n");
        assert!(
            leaks(&message, "nobody@nowhere.example"),
            "too deep counts as a leak"
        );
        assert!(matches!(
            try_scrub(&message),
            Err(ScrubError::Malformed { .. })
        ));
    }
    // Thirty levels are fine.
    let mut message = b"From: me@mail.example\r\n".to_vec();
    message.extend_from_slice("Content-Type: message/rfc822\r\n\r\n".repeat(30).as_bytes());
    message.extend_from_slice(b"Subject: deep\r\n\r\nwrite to me@mail.example\r\n");
    let out = scrub(&message);
    assert!(lossy(&out).contains("write to shop@alias.example"));
}

// ---------------------------------------------------------------------------
// `leaks` finds every hiding place

/// A minimal message around one hiding place.
fn wrap(headers: &str, body: &str) -> Vec<u8> {
    crlf(&format!("From: a@b.example\nSubject: x\n{headers}\n{body}"))
}

#[test]
fn leaks_finds_each_hiding_place() {
    let b64 = |s: &str| BASE64.encode(s);
    let utf16: String = {
        let bytes: Vec<u8> = "mail me@mail.example"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        BASE64.encode(bytes)
    };
    let nested_b64 = b64("Subject: inner\r\n\r\nhello me@mail.example\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw header", wrap("Cc: <me@mail.example>\n", "")),
        ("upper case", wrap("", "ME@MAIL.EXAMPLE\n")),
        (
            "Q encoded word",
            wrap("Comments: =?utf-8?Q?me=40mail=2Eexample?=\n", ""),
        ),
        (
            "B encoded word",
            wrap(
                &format!("Comments: =?utf-8?B?{}?=\n", b64("me@mail.example")),
                "",
            ),
        ),
        (
            "split encoded words",
            wrap(
                "Comments: =?utf-8?q?me?=\n =?utf-8?q?=40mail.example?=\n",
                "",
            ),
        ),
        (
            "encoded word in a display name",
            wrap("Cc: =?utf-8?q?me=40mail.example?= <x@y.example>\n", ""),
        ),
        (
            "RFC 2231 filename",
            wrap(
                "Content-Type: multipart/mixed; boundary=b\n",
                "--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment;\n filename*0*=utf-8''me%40mail.;\n filename*1*=example.txt\n\nx\n--b--\n",
            ),
        ),
        (
            "quoted-printable soft break",
            wrap(
                "Content-Transfer-Encoding: quoted-printable\n",
                "write me@mai=\nl.example\n",
            ),
        ),
        (
            "quoted-printable escape",
            wrap(
                "Content-Transfer-Encoding: quoted-printable\n",
                "me=40mail=2Eexample\n",
            ),
        ),
        (
            "base64 text",
            wrap(
                "Content-Transfer-Encoding: base64\n",
                &format!("{}\n", b64("hi me@mail.example")),
            ),
        ),
        (
            "UTF-16 text",
            wrap(
                "Content-Type: text/plain; charset=utf-16be\nContent-Transfer-Encoding: base64\n",
                &format!("{utf16}\n"),
            ),
        ),
        (
            "ISO-8859-1 text",
            wrap(
                "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n",
                "Gr=FC=DFe me=40mail.example\n",
            ),
        ),
        (
            "HTML entity",
            wrap("Content-Type: text/html\n", "<p>me&#64;mail.example</p>\n"),
        ),
        (
            "HTML hex entity",
            wrap(
                "Content-Type: text/html\n",
                "<p>me&#x40;mail&#46;example</p>\n",
            ),
        ),
        (
            "HTML named entity",
            wrap(
                "Content-Type: text/html\n",
                "<p>me&commat;mail.example</p>\n",
            ),
        ),
        (
            "HTML split by tags",
            wrap(
                "Content-Type: text/html\n",
                "<p>me@<span>mail</span>.example</p>\n",
            ),
        ),
        (
            "percent-encoded mailto",
            wrap(
                "Content-Type: text/html\n",
                "<a href=\"mailto:me%40mail.example\">x</a>\n",
            ),
        ),
        ("zero-width space", wrap("", "me@mail\u{200b}.example\n")),
        (
            "folded calendar line",
            wrap(
                "Content-Type: text/calendar\n",
                "ATTENDEE:mailto:me@mail.ex\n ample\n",
            ),
        ),
        (
            "base64 attachment",
            wrap(
                "Content-Type: multipart/mixed; boundary=b\n",
                &format!(
                    "--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n{}\n--b--\n",
                    b64("%PDF (me@mail.example)")
                ),
            ),
        ),
        (
            "preamble",
            wrap(
                "Content-Type: multipart/mixed; boundary=b\n",
                "me@mail.example\n--b\n\nx\n--b--\n",
            ),
        ),
        (
            "nested message header",
            wrap(
                "Content-Type: message/rfc822\n",
                "To: me@mail.example\n\nhi\n",
            ),
        ),
        (
            "base64 nested message",
            wrap(
                "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n",
                &format!("{nested_b64}\n"),
            ),
        ),
        (
            "x.me prefix",
            wrap("Message-ID: <123.me@mail.example>\n", ""),
        ),
        ("quoted local part", wrap("", "\"me\"@mail.example\n")),
        (
            "delivery status",
            wrap(
                "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
                "--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; me@mail.example\n--b--\n",
            ),
        ),
    ];
    for (name, message) in cases {
        assert!(
            leaks(&message, MAILBOX),
            "{name} not found:\n{}",
            lossy(&message)
        );
        assert!(
            !leaks(&message, "you@mail.example"),
            "{name}: false positive"
        );
    }
}

#[test]
fn leaks_does_not_see_what_is_not_there() {
    let message = wrap(
        "Message-ID: <abc@mail.example>\nCc: bigme@mail.example, me@other.example\n",
        "The domain mail.example alone is fine, as is shop@alias.example, xme@mail.example and me@mail.exampl.\n",
    );
    assert!(!leaks(&message, MAILBOX));
    assert!(!leaks(&message, ""));
    assert!(leaks(&message, "BIGME@mail.example"));
}

#[test]
fn dsn_output_is_checked() {
    use smtpy_core::dsn::{DsnAction, DsnRecipient, DsnRequest, build_dsn};
    use smtpy_core::model::RemoteReply;
    use smtpy_core::time::Timestamp;
    let request = DsnRequest {
        reporting_mta: "mx.alias.example".into(),
        original_envelope_id: None,
        arrival_date: Timestamp::from_unix_secs(1_700_000_000),
        recipients: vec![DsnRecipient {
            final_recipient: address(ALIAS),
            action: DsnAction::Failed,
            status: "5.1.1".into(),
            diagnostic: Some(RemoteReply {
                code: 550,
                enhanced: Some("5.1.1".into()),
                text: "<me@mail.example>: user unknown".into(),
            }),
        }],
        original_headers: b"From: bob@outside.example\r\nDelivered-To: me@mail.example\r\n"
            .to_vec(),
        to: address(CONTACT),
        from_postmaster: address("postmaster@alias.example"),
        secret_addresses: vec![address(MAILBOX)],
    };
    let dsn = build_dsn(&request, Timestamp::from_unix_secs(1_700_000_600));
    assert!(!leaks(&dsn, MAILBOX));
    assert!(leaks(&dsn, ALIAS));
}

// ---------------------------------------------------------------------------
// Properties

/// Quoted-printable with a soft line break after every `every` characters
/// (so the address gets split anywhere).
fn qp(text: &str, every: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for b in text.bytes() {
        let piece = match b {
            b'\n' => {
                out.push_str("\r\n");
                col = 0;
                continue;
            }
            b'\r' => continue,
            33..=60 | 62..=126 => char::from(b).to_string(),
            _ => format!("={b:02X}"),
        };
        if col + piece.len() > every {
            out.push_str("=\r\n");
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mailbox_anywhere_in_a_text_part_never_leaks(
        before in "[ -~\n\u{e9}\u{4e2d}]{0,300}",
        after in "[ -~\n\u{e9}\u{4e2d}]{0,300}",
        upper in any::<bool>(),
        base64 in any::<bool>(),
        every in 3usize..76,
    ) {
        let mailbox = if upper { MAILBOX.to_uppercase() } else { MAILBOX.to_owned() };
        let text = format!("{before} {mailbox} {after}");
        let (encoding, body) = if base64 {
            let encoded = BASE64.encode(text.as_bytes());
            let lines: Vec<String> = encoded.as_bytes().chunks(every).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            ("base64", lines.join("\r\n"))
        } else {
            ("quoted-printable", qp(&text, every))
        };
        let message = format!(
            "From: Me <me@mail.example>\r\nTo: ra_k3j2h1@alias.example\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n"
        );
        prop_assert!(leaks(message.as_bytes(), MAILBOX));
        let out = try_scrub(message.as_bytes());
        prop_assert!(out.is_ok(), "{:?}", out);
        let out = out.unwrap_or_default();
        assert_invariants(&out);
        prop_assert!(!leaks(&out, MAILBOX));
        prop_assert!(!leaks(&out, REVERSE));
        let body = bodies(&out).into_iter().next().unwrap_or_default();
        prop_assert!(body.contains(&format!(" {ALIAS} ")), "{}", body);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = leaks(&bytes, MAILBOX);
        if let Ok(out) = try_scrub(&bytes) {
            assert_invariants(&out);
            prop_assert!(!leaks(&out, MAILBOX));
        }
    }

    #[test]
    fn mime_shaped_input_never_panics(pieces in proptest::collection::vec(prop_oneof![
        Just("From: me@mail.example\r\n"),
        Just("To: ra_k3j2h1@alias.example\r\n"),
        Just("Content-Type: multipart/mixed; boundary=b\r\n"),
        Just("Content-Type: multipart/digest; boundary=c\r\n"),
        Just("Content-Type: message/rfc822\r\n"),
        Just("Content-Type: text/html; charset=iso-8859-1\r\n"),
        Just("Content-Type: text/calendar\r\n"),
        Just("Content-Type: application/pdf\r\n"),
        Just("Content-Transfer-Encoding: base64\r\n"),
        Just("Content-Transfer-Encoding: quoted-printable\r\n"),
        Just("Subject: =?utf-8?q?me=40mail.example?=\r\n"),
        Just(" folded\r\n"),
        Just("\r\n"),
        Just("--b\r\n"),
        Just("--b--\r\n"),
        Just("--c\r\n"),
        Just("bWVAbWFpbC5leGFtcGxl\r\n"),
        Just("me@mai=\r\nl.example =4"),
        Just("<a href=\"mailto:me&#64;mail.example\">"),
        Just("\u{e9}\u{ff}"),
        Just("="),
        Just("\n"),
        Just("\r"),
    ], 0..40)) {
        let message = pieces.concat();
        let _ = leaks(message.as_bytes(), MAILBOX);
        if let Ok(out) = try_scrub(message.as_bytes()) {
            assert_invariants(&out);
            prop_assert!(!leaks(&out, MAILBOX));
            prop_assert!(!leaks(&out, REVERSE));
        }
    }
}
