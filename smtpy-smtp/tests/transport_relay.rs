//! `SmtpRelay` against a loopback sink: what arrives, and the outcome per
//! recipient for each kind of reply.

mod common;

use std::time::Duration;

use common::{Class, Sink, SinkScript, address, bounded, classes, closed_port, reply_of};
use smtpy_core::transport::{Envelope, Transport};
use smtpy_smtp::transport::{
    PoolConfig, RelayConfig, RelayCredentials, SmtpRelay, Timeouts, TlsMode,
};

const MESSAGE: &[u8] = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n";

fn config(port: u16) -> RelayConfig {
    RelayConfig::new("127.0.0.1", port, "client.test")
        .tls_mode(TlsMode::Never)
        .timeouts(Timeouts::uniform(Duration::from_secs(5)))
}

fn relay(config: RelayConfig) -> SmtpRelay {
    SmtpRelay::new(config).expect("relay config")
}

fn envelope(from: Option<&str>, to: &[&str]) -> Envelope {
    Envelope {
        reverse_path: from.map(address),
        recipients: to.iter().map(|r| address(r)).collect(),
    }
}

#[tokio::test]
async fn delivers_the_message_byte_for_byte_with_dot_lines_intact() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(reply.code, 250);
        assert_eq!(reply.enhanced.as_deref(), Some("2.0.0"));
        assert_eq!(reply.text, "queued as 42");

        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].data, MESSAGE);
        assert!(messages[0].mail_from.starts_with("<a@example.org>"));
        assert_eq!(messages[0].rcpt_to, ["b@example.net"]);
        assert_eq!(sink.commands_starting("EHLO"), ["EHLO client.test"]);
    })
    .await;
}

#[tokio::test]
async fn a_message_starting_with_a_dot_and_without_final_crlf_arrives_intact() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(config(sink.port()));
        let message = b".X: starts with a dot\r\n\r\nno final newline";
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                message,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        // The sink sees the line terminated (SMTP data is lines).
        assert_eq!(
            sink.messages()[0].data,
            b".X: starts with a dot\r\n\r\nno final newline\r\n"
        );
    })
    .await;
}

#[tokio::test]
async fn each_recipient_gets_its_own_rcpt_outcome() {
    bounded(async {
        let script = SinkScript::default()
            .rcpt("nobody@example.net", "550 5.1.1 no such user")
            .rcpt("busy@example.net", "451 4.2.1 mailbox busy");
        let sink = Sink::start(script).await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(
                    Some("a@example.org"),
                    &["nobody@example.net", "ok@example.net", "busy@example.net"],
                ),
                MESSAGE,
            )
            .await;
        assert_eq!(
            classes(&outcomes),
            [Class::Permanent, Class::Delivered, Class::Temporary]
        );
        let rejected = reply_of(&outcomes[0]);
        assert_eq!(
            (rejected.code, rejected.enhanced.as_deref()),
            (550, Some("5.1.1"))
        );
        assert_eq!(rejected.text, "no such user");
        assert_eq!(reply_of(&outcomes[1]).code, 250);
        assert_eq!(reply_of(&outcomes[2]).code, 451);
        // Only the accepted recipient got the message.
        assert_eq!(sink.messages()[0].rcpt_to, ["ok@example.net"]);
    })
    .await;
}

#[tokio::test]
async fn no_recipient_accepted_means_no_data() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            rcpt_default: "451 4.3.0 try later".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(reply_of(&outcomes[0]).code, 451);
        assert!(sink.commands_starting("DATA").is_empty());
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_data_rejection_applies_to_accepted_recipients_only() {
    bounded(async {
        let script = SinkScript {
            final_reply: "554 5.7.1 message refused".into(),
            ..SinkScript::default()
        }
        .rcpt("nobody@example.net", "550 5.1.1 no such user");
        let sink = Sink::start(script).await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(
                    Some("a@example.org"),
                    &["one@example.net", "nobody@example.net", "two@example.net"],
                ),
                MESSAGE,
            )
            .await;
        assert_eq!(
            classes(&outcomes),
            [Class::Permanent, Class::Permanent, Class::Permanent]
        );
        assert_eq!(reply_of(&outcomes[0]).code, 554);
        assert_eq!(reply_of(&outcomes[1]).code, 550);
        assert_eq!(reply_of(&outcomes[2]).code, 554);
    })
    .await;
}

#[tokio::test]
async fn a_temporary_data_reply_is_temporary() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            data_reply: "451 4.3.2 not now".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(reply_of(&outcomes[0]).code, 451);
    })
    .await;
}

#[tokio::test]
async fn a_refused_sender_fails_every_recipient_with_its_reply() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            mail_reply: "553 5.7.1 sender not allowed".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net", "c@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Permanent, Class::Permanent]);
        assert_eq!(reply_of(&outcomes[1]).code, 553);
        assert!(sink.commands_starting("RCPT").is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_null_sender_is_sent_as_empty_brackets() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(&envelope(None, &["b@example.net"]), MESSAGE)
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(sink.commands_starting("MAIL"), ["MAIL FROM:<>"]);
    })
    .await;
}

#[tokio::test]
async fn size_and_8bitmime_are_declared_when_offered() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            extensions: vec!["SIZE 1000000".into(), "8BITMIME".into()],
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let message = "Subject: caf\u{e9}\r\n\r\n8-bit body \u{e9}\r\n".as_bytes();
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                message,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(
            sink.commands_starting("MAIL"),
            [format!(
                "MAIL FROM:<a@example.org> SIZE={} BODY=8BITMIME",
                message.len()
            )]
        );
        assert_eq!(sink.messages()[0].data, message);
    })
    .await;
}

#[tokio::test]
async fn a_message_over_the_servers_size_limit_fails_permanently_without_sending() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            extensions: vec!["SIZE 10".into()],
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Permanent]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (552, Some("5.3.4"))
        );
        assert!(sink.commands_starting("MAIL").is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_non_ascii_recipient_without_smtputf8_fails_permanently_alone() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(
                    Some("a@example.org"),
                    &["jos\u{e9}@example.net", "b@example.net"],
                ),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Permanent, Class::Delivered]);
        assert_eq!(reply_of(&outcomes[0]).enhanced.as_deref(), Some("5.6.7"));
        assert_eq!(sink.messages()[0].rcpt_to, ["b@example.net"]);
    })
    .await;
}

#[tokio::test]
async fn smtputf8_is_used_when_offered_and_needed() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            extensions: vec!["SMTPUTF8".into()],
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["jos\u{e9}@b\u{fc}cher.example"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(
            sink.commands_starting("MAIL"),
            ["MAIL FROM:<a@example.org> SMTPUTF8"]
        );
        // The domain goes as its A-label.
        assert_eq!(
            sink.commands_starting("RCPT"),
            ["RCPT TO:<jos\u{e9}@xn--bcher-kva.example>"]
        );
    })
    .await;
}

#[tokio::test]
async fn connection_refused_is_temporary_for_every_recipient() {
    bounded(async {
        let relay = relay(config(closed_port().await));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net", "c@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary, Class::Temporary]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (451, Some("4.4.1"))
        );
        assert!(reply.text.contains("connect failed"), "{}", reply.text);
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_greets_times_out_temporarily() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            silent: true,
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()).timeouts(
            Timeouts::uniform(Duration::from_secs(5)).greeting(Duration::from_millis(200)),
        ));
        let started = std::time::Instant::now();
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert!(reply_of(&outcomes[0]).text.contains("no greeting"));
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn a_refused_greeting_is_temporary() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            greeting: "554 5.7.1 go away".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(config(sink.port()));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert!(reply_of(&outcomes[0]).text.contains("554"));
    })
    .await;
}

#[tokio::test]
async fn auth_plain_is_sent_when_configured_and_plaintext_is_allowed() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            auth: true,
            ..SinkScript::default()
        })
        .await;
        let relay = relay(
            config(sink.port())
                .credentials(RelayCredentials::new("smtpy", "s3cret"))
                .allow_plaintext_auth(true),
        );
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(
            sink.commands_starting("AUTH"),
            [format!("AUTH PLAIN {}", common::base64(b"\0smtpy\0s3cret"))]
        );
        // AUTH comes after EHLO and before MAIL.
        let commands = sink.commands();
        let auth = commands.iter().position(|c| c.starts_with("AUTH"));
        let mail = commands.iter().position(|c| c.starts_with("MAIL"));
        assert!(auth < mail);
    })
    .await;
}

#[tokio::test]
async fn credentials_are_never_sent_over_plaintext_by_default() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            auth: true,
            ..SinkScript::default()
        })
        .await;
        // Opportunistic TLS, but the server offers no STARTTLS.
        let relay = relay(
            config(sink.port())
                .tls_mode(TlsMode::Opportunistic)
                .credentials(RelayCredentials::new("smtpy", "s3cret")),
        );
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert!(sink.commands_starting("AUTH").is_empty());
        assert!(sink.commands_starting("MAIL").is_empty());
    })
    .await;
}

#[tokio::test]
async fn required_tls_without_starttls_sends_nothing() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(config(sink.port()).tls_mode(TlsMode::Required));
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(reply_of(&outcomes[0]).enhanced.as_deref(), Some("4.7.4"));
        assert!(sink.commands_starting("MAIL").is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_auth_failure_is_temporary() {
    bounded(async {
        // The sink offers no AUTH at all.
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(
            config(sink.port())
                .credentials(RelayCredentials::new("smtpy", "s3cret"))
                .allow_plaintext_auth(true),
        );
        let outcomes = relay
            .deliver(
                &envelope(Some("a@example.org"), &["b@example.net"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(reply_of(&outcomes[0]).enhanced.as_deref(), Some("4.7.8"));
        assert!(sink.commands_starting("MAIL").is_empty());
    })
    .await;
}

#[test]
fn debug_output_redacts_the_password() {
    let config = RelayConfig::new("relay.example", 587, "client.test")
        .credentials(RelayCredentials::new("smtpy", "s3cret"))
        .pool(PoolConfig::default());
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("smtpy"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn malformed_names_are_rejected_at_build() {
    assert!(SmtpRelay::new(RelayConfig::new("relay.example", 25, "bad helo")).is_err());
    assert!(SmtpRelay::new(RelayConfig::new("relay.example\r\nRSET", 25, "ok")).is_err());
    assert!(SmtpRelay::new(RelayConfig::new("relay.example", 0, "ok")).is_err());
}
