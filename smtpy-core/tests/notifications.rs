//! Owner notifications: every kind rendered and parsed back with
//! mail-parser, escaping, header injection, operator overrides and line
//! lengths.

use std::path::{Path, PathBuf};

use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders};
use smtpy_core::address::EmailAddress;
use smtpy_core::notify::{
    AutoDisabled, DmarcOutcome, MAX_SUBJECT_CHARS, MessageSummary, Notification, NotificationKind,
    NotifyError, QuarantineReason, RenderEnv, TemplateProblem, Templates,
};
use smtpy_core::time::Timestamp;

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("address")
}

struct Env {
    from: EmailAddress,
    base_url: Option<&'static str>,
}

impl Env {
    fn new() -> Self {
        Env {
            from: addr("notifications@mx.alias.example"),
            base_url: Some("https://alias.example"),
        }
    }
    fn get(&self) -> RenderEnv<'_> {
        RenderEnv {
            from: &self.from,
            service_name: "Alias Example",
            hostname: "mx.alias.example",
            now: Timestamp::from_unix_secs(1_700_000_000),
            base_url: self.base_url,
        }
    }
}

fn render(templates: &Templates, n: &Notification) -> Vec<u8> {
    templates.render(n, &Env::new().get()).expect("render")
}

fn parse(bytes: &[u8]) -> Message<'_> {
    MessageParser::default().parse(bytes).expect("parse")
}

fn text_of<'a>(m: &'a Message<'a>) -> String {
    let part = m.text_part(0).expect("text part");
    let ct = part.content_type().expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype(), ct.attribute("charset")),
        ("text", Some("plain"), Some("utf-8"))
    );
    part.text_contents().expect("text").to_owned()
}

fn html_of<'a>(m: &'a Message<'a>) -> String {
    let part = m.html_part(0).expect("html part");
    let ct = part.content_type().expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype(), ct.attribute("charset")),
        ("text", Some("html"), Some("utf-8"))
    );
    part.text_contents().expect("html").to_owned()
}

/// The header block of a serialised message.
fn header_block(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    &bytes[..end + 2]
}

/// The top-level header names, lower-cased, in order.
fn header_names(m: &Message<'_>) -> Vec<String> {
    m.headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect()
}

fn bounce() -> Notification {
    Notification::bounce(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &addr("me@mail.example"),
        "hard",
        "550 5.1.1 <me@mail.example>: Recipient address rejected: User unknown",
        AutoDisabled {
            alias: false,
            mailbox: true,
        },
    )
}

fn summary() -> MessageSummary {
    MessageSummary::new(
        "news@sender.example",
        Some("Sender News"),
        Some("Weekly offers"),
    )
}

fn quarantine(release: Option<&str>) -> Notification {
    Notification::quarantine(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &summary(),
        &QuarantineReason::Rule {
            name: "hold newsletters".into(),
        },
        release,
    )
}

fn dmarc(outcome: DmarcOutcome) -> Notification {
    Notification::dmarc_failure(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &summary(),
        outcome,
    )
}

fn verification(link: Option<&str>) -> Notification {
    Notification::mailbox_verification(
        addr("new@mail.example"),
        "K7QJ-2MXD",
        link,
        Timestamp::from_unix_secs(1_700_086_400),
    )
}

fn every_kind() -> Vec<Notification> {
    vec![
        verification(Some("https://alias.example/verify?t=K7QJ-2MXD&x=1")),
        bounce(),
        quarantine(Some("https://alias.example/held/42")),
        dmarc(DmarcOutcome::Rejected),
        reset(Some("https://alias.example/reset?token=q3Zr-9xT0&x=1")),
    ]
}

fn reset(link: Option<&str>) -> Notification {
    Notification::password_reset(
        addr("me@mail.example"),
        "q3Zr-9xT0",
        link,
        Timestamp::from_unix_secs(1_700_003_600),
    )
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "smtpy-notify-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
    fn write(&self, name: &str, contents: &str) -> &Self {
        std::fs::write(self.0.join(name), contents).expect("write");
        self
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_kind_renders_as_multipart_alternative_with_both_parts() {
    let templates = Templates::builtin();
    for n in every_kind() {
        let bytes = render(&templates, &n);
        let m = parse(&bytes);
        let root = m.root_part().content_type().expect("present");
        assert_eq!(
            (root.ctype(), root.subtype()),
            ("multipart", Some("alternative")),
            "{}",
            n.kind
        );
        assert_eq!(m.text_body_count(), 1, "{}", n.kind);
        assert_eq!(m.html_body_count(), 1, "{}", n.kind);
        assert_eq!(m.attachment_count(), 0, "{}", n.kind);
        let text = text_of(&m);
        let html = html_of(&m);
        assert!(!text.contains("{{") && !html.contains("{{"), "{}", n.kind);
        assert!(text.contains("Alias Example"), "{}", n.kind);
        assert!(html.contains("<html lang=\"en\">"), "{}", n.kind);
        assert!(!html.to_lowercase().contains("<img"), "{}", n.kind);

        // Envelope-level headers.
        let from = m.from().expect("present").first().expect("present");
        assert_eq!(from.address(), Some("notifications@mx.alias.example"));
        assert_eq!(from.name(), Some("Alias Example"));
        let to = m.to().expect("present").first().expect("present");
        assert_eq!(to.address(), Some(n.to.to_string().as_str()));
        assert_eq!(
            m.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated"),
            "{}",
            n.kind
        );
        let id = m.message_id().expect("present");
        assert!(id.ends_with("@mx.alias.example"), "{id}");
        assert_eq!(m.date().expect("present").to_timestamp(), 1_700_000_000);
        assert_eq!(m.header_raw("MIME-Version").map(str::trim), Some("1.0"));

        // CRLF everywhere.
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(bytes[i - 1], b'\r', "bare LF in {}", n.kind);
            }
        }
    }
}

#[test]
fn message_ids_are_unique() {
    let templates = Templates::builtin();
    let a = render(&templates, &bounce());
    let b = render(&templates, &bounce());
    assert_ne!(parse(&a).message_id(), parse(&b).message_id());
}

#[test]
fn mailbox_verification_shows_link_code_and_expiry() {
    let templates = Templates::builtin();
    let bytes = render(
        &templates,
        &verification(Some("https://alias.example/verify?t=K7QJ-2MXD&x=1")),
    );
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("Confirm new@mail.example for Alias Example")
    );
    let text = text_of(&m);
    assert!(text.contains("https://alias.example/verify?t=K7QJ-2MXD&x=1"));
    assert!(text.contains("K7QJ-2MXD"));
    assert!(text.contains("Wed, 15 Nov 2023 22:13:20 UTC"));
    let html = html_of(&m);
    assert!(html.contains("href=\"https://alias.example/verify?t=K7QJ-2MXD&amp;x=1\""));

    // Without a link: the code alone, and no empty link.
    let m2_bytes = render(&templates, &verification(None));
    let m2 = parse(&m2_bytes);
    let text = text_of(&m2);
    assert!(text.contains("enter this confirmation code: K7QJ-2MXD"));
    assert!(!text.contains("open this link"));
    assert!(!html_of(&m2).contains("<a href=\"\""));

    // A link that is not http(s) is dropped.
    let m3_bytes = render(&templates, &verification(Some("javascript:alert(1)")));
    let m3 = parse(&m3_bytes);
    assert!(!text_of(&m3).contains("javascript"));
    assert!(!html_of(&m3).contains("javascript"));
}

#[test]
fn password_reset_shows_link_code_and_expiry() {
    let templates = Templates::builtin();
    let bytes = render(
        &templates,
        &reset(Some("https://alias.example/reset?token=q3Zr-9xT0&x=1")),
    );
    let m = parse(&bytes);
    assert_eq!(m.subject(), Some("Reset your Alias Example password"));
    let text = text_of(&m);
    assert!(text.contains("https://alias.example/reset?token=q3Zr-9xT0&x=1"));
    assert!(text.contains("reset code: q3Zr-9xT0"));
    assert!(text.contains("me@mail.example"));
    assert!(text.contains("Tue, 14 Nov 2023 23:13:20 UTC"), "{text}");
    let html = html_of(&m);
    assert!(html.contains("href=\"https://alias.example/reset?token=q3Zr-9xT0&amp;x=1\""));

    // Without a link: the code alone, and no empty link.
    let m2_bytes = render(&templates, &reset(None));
    let m2 = parse(&m2_bytes);
    let text = text_of(&m2);
    assert!(text.contains("enter this reset code: q3Zr-9xT0"));
    assert!(!text.contains("open this link"));
    assert!(!html_of(&m2).contains("<a href=\"\""));

    // A link that is not http(s) is dropped.
    let m3_bytes = render(&templates, &reset(Some("javascript:alert(1)")));
    assert!(!String::from_utf8_lossy(&m3_bytes).contains("javascript"));
    assert!(
        NotificationKind::PasswordReset
            .variables()
            .contains(&"reset_link")
    );
}

#[test]
fn bounce_names_alias_mailbox_class_reply_and_disabling() {
    let templates = Templates::builtin();
    let bytes = render(&templates, &bounce());
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("Mail to shop@alias.example could not be delivered to me@mail.example")
    );
    let text = text_of(&m);
    assert!(text.contains("Kind of failure: hard"));
    assert!(text.contains("A permanent failure"));
    assert!(text.contains("550 5.1.1 <me@mail.example>: Recipient address rejected"));
    assert!(text.contains("the mailbox has been\r\ndisabled"));
    assert!(!text.contains("the alias has"));
    let html = html_of(&m);
    assert!(html.contains("550 5.1.1 &lt;me@mail.example&gt;: Recipient address rejected"));
    assert!(html.contains("the mailbox has been disabled"));
    assert!(!html.contains("the alias has been disabled"));

    let alias_off = Notification::bounce(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &addr("me@mail.example"),
        "spam",
        "550 5.7.1 blocked",
        AutoDisabled {
            alias: true,
            mailbox: false,
        },
    );
    let bytes = render(&templates, &alias_off);
    let m = parse(&bytes);
    let html = html_of(&m);
    assert!(html.contains("the alias has been disabled"));
    assert!(!html.contains("the mailbox has been disabled"));
    assert!(html.contains("A policy rejection"));

    let unknown_class = Notification::bounce(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &addr("me@mail.example"),
        "weird",
        "554 no",
        AutoDisabled::default(),
    );
    let bytes = render(&templates, &unknown_class);
    let text = text_of(&parse(&bytes));
    assert!(text.contains("Kind of failure: weird"));
    assert!(!text.contains("failure: the receiving"));
    assert!(!text.contains("has been"));
}

#[test]
fn quarantine_names_sender_subject_reason_and_release() {
    let templates = Templates::builtin();
    let bytes = render(
        &templates,
        &quarantine(Some("https://alias.example/held/42")),
    );
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("Held for review: a message to shop@alias.example from news@sender.example")
    );
    let text = text_of(&m);
    assert!(text.contains("From:    Sender News <news@sender.example>"));
    assert!(text.contains("Subject: Weekly offers"));
    assert!(text.contains("it matched your rule \"hold newsletters\""));
    assert!(text.contains("https://alias.example/held/42"));
    let html = html_of(&m);
    assert!(html.contains("Sender News &lt;news@sender.example&gt;"));
    assert!(html.contains("href=\"https://alias.example/held/42\""));
    assert!(html.contains("&quot;hold newsletters&quot;"));

    // No link: sign in at the base URL.
    let bytes = render(&templates, &quarantine(None));
    let text = text_of(&parse(&bytes));
    assert!(text.contains("sign in to\r\nAlias Example at https://alias.example and open"));

    // DMARC as the reason.
    let n = Notification::quarantine(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &MessageSummary::new("ceo@bank.example", None, None),
        &QuarantineReason::Dmarc,
        None,
    );
    let bytes = render(&templates, &n);
    let m = parse(&bytes);
    let text = text_of(&m);
    assert!(text.contains("Why:     it failed DMARC"));
    assert!(text.contains("From:    ceo@bank.example\r\n"));
    assert!(text.contains("Subject: (no subject)"));
}

#[test]
fn dmarc_failure_says_what_happened() {
    let templates = Templates::builtin();
    let bytes = render(&templates, &dmarc(DmarcOutcome::Rejected));
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("A message to shop@alias.example from news@sender.example failed DMARC")
    );
    let text = text_of(&m);
    assert!(text.contains("It was refused"));
    assert!(text.contains("From:    Sender News <news@sender.example>"));
    let bytes = render(&templates, &dmarc(DmarcOutcome::Tagged));
    let m = parse(&bytes);
    assert!(text_of(&m).contains("with a tag added to its subject"));
    assert!(html_of(&m).contains("with a tag added to its subject"));
}

#[test]
fn values_are_html_escaped_in_html_and_raw_in_text() {
    let templates = Templates::builtin();
    let n = Notification::quarantine(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &MessageSummary::new(
            "x@sender.example",
            Some("<script>alert(\"x\")</script> & co"),
            Some("<b>bold</b>"),
        ),
        &QuarantineReason::Dmarc,
        None,
    );
    let bytes = render(&templates, &n);
    let m = parse(&bytes);
    let html = html_of(&m);
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co"),
        "{html}"
    );
    assert!(!html.contains("<script"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    assert!(!html.contains("<b>"));
    let text = text_of(&m);
    assert!(text.contains("<script>alert(\"x\")</script> & co <x@sender.example>"));
    assert!(text.contains("Subject: <b>bold</b>"));
}

#[test]
fn header_injection_in_values_adds_no_header() {
    let templates = Templates::builtin();
    let evil = "x\r\nBcc: evil@x";
    let n = Notification::quarantine(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &MessageSummary::new(evil, Some(evil), Some(evil)),
        &QuarantineReason::Rule { name: evil.into() },
        Some("https://alias.example/\r\nBcc: evil@x"),
    );
    let from = addr("notifications@mx.alias.example");
    let env = RenderEnv {
        from: &from,
        service_name: "Alias\r\nBcc: evil@x",
        hostname: "mx.alias.example\r\nBcc: evil@x",
        now: Timestamp::from_unix_secs(1_700_000_000),
        base_url: Some("https://alias.example\r\nBcc: evil@x"),
    };
    let mut overridden = n.clone();
    overridden.vars.insert("subject", evil.to_owned());
    overridden.vars.insert("sender_address", evil.to_owned());
    for n in [n, overridden] {
        let bytes = templates.render(&n, &env).expect("render");
        let m = parse(&bytes);
        assert!(m.header(HeaderName::Bcc).is_none());
        assert!(m.bcc().is_none());
        assert_eq!(
            header_names(&m),
            [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "auto-submitted",
                "x-auto-response-suppress",
                "mime-version",
                "content-type"
            ]
        );
        let headers = header_block(&bytes);
        let lower = String::from_utf8_lossy(headers).to_lowercase();
        assert!(!lower.contains("\nbcc:"), "{lower}");
        // The value stays on the subject line, cleaned.
        assert_eq!(
            m.subject(),
            Some("Held for review: a message to shop@alias.example from x Bcc: evil@x")
        );
        // No line of the whole message starts a Bcc field.
        let all = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(!all.contains("\r\nbcc:"));
        assert!(text_of(&m).contains("From:    x Bcc: evil@x <x Bcc: evil@x>"));
        // The bad links are dropped, not repaired.
        assert!(!text_of(&m).contains("https://alias.example/"));
        assert_eq!(
            m.message_id().map(|id| id.ends_with("@mx.alias.example")),
            Some(true)
        );
    }
}

#[test]
fn non_ascii_subject_is_encoded() {
    let templates = Templates::builtin();
    let n = Notification::dmarc_failure(
        addr("me@mail.example"),
        &addr("boutique@alias.example"),
        &MessageSummary::new("zoë@sender.example", Some("Zoë Çelik"), Some("Réduction")),
        DmarcOutcome::Rejected,
    );
    let bytes = render(&templates, &n);
    assert!(header_block(&bytes).is_ascii(), "headers must be 7-bit");
    let m = parse(&bytes);
    assert_eq!(
        m.subject(),
        Some("A message to boutique@alias.example from zoë@sender.example failed DMARC")
    );
    assert!(text_of(&m).contains("Zoë Çelik <zoë@sender.example>"));
    assert!(text_of(&m).contains("Subject: Réduction"));
}

#[test]
fn long_values_keep_lines_short_and_subject_is_cut() {
    let templates = Templates::builtin();
    let long = "y".repeat(20_000);
    let long_words = "word ".repeat(4000);
    let n = Notification::quarantine(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &MessageSummary::new(&long, Some(&long_words), Some(&long)),
        &QuarantineReason::Rule { name: long.clone() },
        Some(&format!("https://alias.example/{long}")),
    );
    let b = Notification::bounce(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &addr("me@mail.example"),
        &long,
        &long,
        AutoDisabled::default(),
    );
    for n in [n, b] {
        let bytes = render(&templates, &n);
        for line in bytes.split(|b| *b == b'\n') {
            assert!(line.len() <= 998, "{} octets in {}", line.len(), n.kind);
        }
        assert!(bytes.len() < 64 * 1024, "{} octets", bytes.len());
        let m = parse(&bytes);
        assert!(m.subject().expect("present").chars().count() <= 300);
        assert!(text_of(&m).contains('…'));
    }

    // The subject of the message a notice is about is cut to 200 characters.
    let subject = "s".repeat(500);
    let n = Notification::dmarc_failure(
        addr("me@mail.example"),
        &addr("shop@alias.example"),
        &MessageSummary::new("a@b.example", None, Some(&subject)),
        DmarcOutcome::Tagged,
    );
    assert_eq!(n.vars["subject"].chars().count(), MAX_SUBJECT_CHARS);
    let bytes = render(&templates, &n);
    let text = text_of(&parse(&bytes));
    let shown = format!("Subject: {}…\r\n", "s".repeat(MAX_SUBJECT_CHARS - 1));
    assert!(text.contains(&shown));
}

#[test]
fn overrides_replace_one_part_and_keep_the_others() {
    let dir = TempDir::new("override");
    dir.write(
        "bounce.subject",
        "[{{service_name}}] bounce at {{mailbox}} via {{alias}}\n",
    )
    .write(
        "quarantine.html",
        "<!DOCTYPE html>\n<html lang=\"en\"><body>\n<p>Held: {{subject}} from {{sender}}</p>\n\
         {{#release_link}}\n<p><a href=\"{{release_link}}\">release</a></p>\n{{/release_link}}\n\
         <style>@media (prefers-color-scheme: dark) { body { color: #eee }}</style>\n</body></html>\n",
    )
    .write(".editor-swap", "ignored {{nonsense");
    let custom = Templates::from_dir(dir.path()).expect("load");
    let builtin = Templates::builtin();

    // Bounce: subject replaced, text and HTML as built in.
    let custom_bytes = render(&custom, &bounce());
    let builtin_bytes = render(&builtin, &bounce());
    let (c, b) = (parse(&custom_bytes), parse(&builtin_bytes));
    assert_eq!(
        c.subject(),
        Some("[Alias Example] bounce at me@mail.example via shop@alias.example")
    );
    assert_eq!(text_of(&c), text_of(&b));
    assert_eq!(html_of(&c), html_of(&b));

    // Quarantine: HTML replaced, subject and text as built in.
    let n = quarantine(Some("https://alias.example/held/7"));
    let custom_bytes = render(&custom, &n);
    let builtin_bytes = render(&builtin, &n);
    let (c, b) = (parse(&custom_bytes), parse(&builtin_bytes));
    assert_eq!(c.subject(), b.subject());
    assert_eq!(text_of(&c), text_of(&b));
    assert_eq!(
        html_of(&c),
        "<!DOCTYPE html>\r\n<html lang=\"en\"><body>\r\n\
         <p>Held: Weekly offers from Sender News &lt;news@sender.example&gt;</p>\r\n\
         <p><a href=\"https://alias.example/held/7\">release</a></p>\r\n\
         <style>@media (prefers-color-scheme: dark) { body { color: #eee }}</style>\r\n\
         </body></html>\r\n"
    );

    // Other kinds untouched.
    for n in [verification(None), dmarc(DmarcOutcome::Rejected)] {
        let c_bytes = render(&custom, &n);
        let b_bytes = render(&builtin, &n);
        let (c, b) = (parse(&c_bytes), parse(&b_bytes));
        assert_eq!(c.subject(), b.subject());
        assert_eq!(text_of(&c), text_of(&b));
        assert_eq!(html_of(&c), html_of(&b));
    }

    // An empty directory is the built-in set.
    let empty = TempDir::new("empty");
    assert_eq!(Templates::from_dir(empty.path()).expect("load"), builtin);
}

/// The load error for a directory holding `name` with `contents`.
fn load_error(name: &str, contents: &str) -> (NotifyError, String) {
    let dir = TempDir::new("bad");
    dir.write("bounce.txt", "fine {{alias}}\n")
        .write(name, contents);
    let err = Templates::from_dir(dir.path()).expect_err("load must fail");
    let file = dir.path().join(name).display().to_string();
    (err, file)
}

#[test]
fn unknown_variable_is_a_load_error_naming_the_file() {
    let (err, file) = load_error("quarantine.txt", "Hello\nFrom {{sender}}\nTo {{alais}}\n");
    let message = err.to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("alais"), "{message}");
    match err {
        NotifyError::Template {
            file: f,
            line,
            problem,
        } => {
            assert_eq!(f, file);
            assert_eq!(line, Some(3));
            assert_eq!(problem, TemplateProblem::UnknownVariable("alais".into()));
        }
        other => panic!("{other:?}"),
    }

    // A variable of another kind is unknown too.
    let (err, file) = load_error("bounce.subject", "{{verification_link}}");
    assert!(err.to_string().contains(&file));
    assert!(matches!(
        err,
        NotifyError::Template { problem: TemplateProblem::UnknownVariable(ref v), .. }
            if v == "verification_link"
    ));
}

#[test]
fn unbalanced_braces_are_a_load_error_naming_the_file() {
    let (err, file) = load_error("dmarc_failure.html", "<p>{{alias}}</p>\n<p>{{sender</p>\n");
    let message = err.to_string();
    assert!(message.contains(&file), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(matches!(
        err,
        NotifyError::Template {
            line: Some(2),
            problem: TemplateProblem::Unbalanced,
            ..
        }
    ));

    let (err, file) = load_error("bounce.html", "{{#alias_disabled}}\n<p>off</p>\n");
    assert!(err.to_string().contains(&file));
    assert!(matches!(
        err,
        NotifyError::Template {
            line: Some(1),
            problem: TemplateProblem::UnclosedSection(ref s),
            ..
        } if s == "alias_disabled"
    ));
}

#[test]
fn other_load_errors_name_the_file() {
    let (err, file) = load_error("bounce.subject", "Bounce\nat {{mailbox}}\n");
    assert!(err.to_string().contains(&file));
    assert!(matches!(
        err,
        NotifyError::Template {
            problem: TemplateProblem::MultiLineSubject,
            ..
        }
    ));

    let (err, file) = load_error("bounce.text", "typo in the extension");
    assert!(err.to_string().contains(&file));
    assert!(matches!(err, NotifyError::UnexpectedFile { .. }));

    let (err, file) = load_error("quarantine.html", &"x".repeat(70_000));
    assert!(err.to_string().contains(&file));
    assert!(matches!(
        err,
        NotifyError::Template {
            problem: TemplateProblem::TooLarge,
            ..
        }
    ));

    let dir = TempDir::new("utf8");
    std::fs::write(dir.path().join("bounce.txt"), b"caf\xe9 {{alias}}").expect("write");
    let err = Templates::from_dir(dir.path()).expect_err("load must fail");
    assert!(err.to_string().contains("bounce.txt"));
    assert!(matches!(
        err,
        NotifyError::Template {
            problem: TemplateProblem::NotUtf8,
            ..
        }
    ));

    let missing = std::env::temp_dir().join("smtpy-notify-does-not-exist-4b1e");
    let err = Templates::from_dir(&missing).expect_err("load must fail");
    assert!(matches!(err, NotifyError::Io { .. }));
    assert!(err.to_string().contains("smtpy-notify-does-not-exist-4b1e"));
}

#[test]
fn a_missing_variable_is_a_render_error() {
    let mut n = bounce();
    n.vars.remove("remote_reply");
    let err = Templates::builtin()
        .render(&n, &Env::new().get())
        .expect_err("must fail");
    assert!(matches!(
        err,
        NotifyError::MissingVariable {
            kind: NotificationKind::Bounce,
            name: "remote_reply"
        }
    ));
}

#[test]
fn without_base_url_no_link_is_left_empty() {
    let mut env = Env::new();
    env.base_url = None;
    let templates = Templates::builtin();
    for n in every_kind() {
        let bytes = templates.render(&n, &env.get()).expect("render");
        let m = parse(&bytes);
        let html = html_of(&m);
        assert!(!html.contains("href=\"\""), "{}", n.kind);
        assert!(!text_of(&m).contains(" - \r\n"), "{}", n.kind);
    }
    let bytes = templates
        .render(&quarantine(None), &env.get())
        .expect("render");
    let text = text_of(&parse(&bytes));
    assert!(text.contains("sign in to\r\nAlias Example and open your held messages."));
}

#[test]
fn kind_names() {
    let names: Vec<&str> = NotificationKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "mailbox_verification",
            "bounce",
            "quarantine",
            "dmarc_failure",
            "password_reset"
        ]
    );
}
