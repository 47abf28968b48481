//! TLS on the outbound transports, against a loopback sink with a
//! self-signed certificate (rcgen): STARTTLS opportunistic and required,
//! implicit TLS, and AUTH inside TLS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Class, Sink, SinkScript, address, bounded, classes, reply_of, tls_server};
use smtpy_core::dns::StaticDns;
use smtpy_core::transport::{Envelope, Transport};
use smtpy_smtp::transport::{
    MxConfig, MxDelivery, RelayConfig, RelayCredentials, SmtpRelay, Timeouts, TlsMode, TlsTrust,
};

const MESSAGE: &[u8] = b"Subject: tls\r\n\r\n.dot line\r\nbody\r\n";

fn envelope() -> Envelope {
    Envelope {
        reverse_path: Some(address("a@example.org")),
        recipients: vec![address("b@example.test")],
    }
}

fn relay_config(port: u16) -> RelayConfig {
    RelayConfig::new("127.0.0.1", port, "client.test")
        .timeouts(Timeouts::uniform(Duration::from_secs(5)))
}

#[tokio::test]
async fn opportunistic_starttls_accepts_a_self_signed_certificate() {
    bounded(async {
        let (server, _) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(relay_config(sink.port()).tls_mode(TlsMode::Opportunistic))
            .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        let messages = sink.messages();
        assert!(messages[0].tls, "the message went over TLS");
        assert_eq!(messages[0].data, MESSAGE);
        // EHLO again after STARTTLS (RFC 3207).
        assert_eq!(sink.commands_starting("EHLO").len(), 2);
    })
    .await;
}

#[tokio::test]
async fn mx_delivery_uses_starttls_opportunistically() {
    bounded(async {
        let (server, _) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            ..SinkScript::default()
        })
        .await;
        let dns = StaticDns::new();
        dns.add_mx("example.test", 10, "mx.example.test");
        dns.add_ip("mx.example.test", "127.0.0.1".parse().expect("ip"));
        let mx = MxDelivery::new(
            MxConfig::new("client.test")
                .port(sink.port())
                .timeouts(Timeouts::uniform(Duration::from_secs(5))),
            Arc::new(dns),
        )
        .expect("mx");
        let outcomes = mx.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert!(sink.messages()[0].tls);
    })
    .await;
}

#[tokio::test]
async fn required_tls_verifies_against_the_given_roots_and_then_authenticates() {
    bounded(async {
        let (server, cert) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            auth: true,
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Required)
                .tls_trust(TlsTrust::Roots(vec![cert]))
                .tls_server_name("sink.test")
                .credentials(RelayCredentials::new("smtpy", "s3cret")),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert!(sink.messages()[0].tls);
        // AUTH was sent, and only after STARTTLS.
        let commands = sink.commands();
        let starttls = commands.iter().position(|c| c == "STARTTLS");
        let auth = commands.iter().position(|c| c.starts_with("AUTH PLAIN"));
        assert!(starttls.is_some() && auth.is_some() && starttls < auth);
    })
    .await;
}

#[tokio::test]
async fn required_tls_fails_temporarily_on_an_untrusted_certificate() {
    bounded(async {
        let (server, _) = tls_server("sink.test");
        let (_, other_cert) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            auth: true,
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Required)
                .tls_trust(TlsTrust::Roots(vec![other_cert]))
                .tls_server_name("sink.test")
                .credentials(RelayCredentials::new("smtpy", "s3cret")),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(reply_of(&outcomes[0]).enhanced.as_deref(), Some("4.7.5"));
        assert!(sink.commands_starting("AUTH").is_empty());
        assert!(sink.commands_starting("MAIL").is_empty());
    })
    .await;
}

#[tokio::test]
async fn required_tls_fails_on_a_name_mismatch() {
    bounded(async {
        let (server, cert) = tls_server("other.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Required)
                .tls_trust(TlsTrust::Roots(vec![cert]))
                .tls_server_name("sink.test"),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_speaks_tls_from_the_first_byte() {
    bounded(async {
        let (server, cert) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            implicit_tls: Some(server),
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Implicit)
                .tls_trust(TlsTrust::Roots(vec![cert]))
                .tls_server_name("sink.test"),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert!(sink.messages()[0].tls);
        assert!(sink.commands_starting("STARTTLS").is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_failed_opportunistic_handshake_falls_back_to_plaintext() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            starttls_broken: true,
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(relay_config(sink.port()).tls_mode(TlsMode::Opportunistic))
            .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        let log = sink.log();
        assert_eq!(log.connections, 2, "one TLS attempt, one plaintext session");
        assert!(!log.messages[0].tls);
        assert_eq!(
            log.commands.iter().filter(|c| *c == "STARTTLS").count(),
            1,
            "no STARTTLS on the plaintext retry"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_required_handshake_does_not_fall_back() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            starttls_broken: true,
            ..SinkScript::default()
        })
        .await;
        let (_, cert) = tls_server("sink.test");
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Required)
                .tls_trust(TlsTrust::Roots(vec![cert]))
                .tls_server_name("sink.test"),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        assert_eq!(sink.log().connections, 1);
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn auth_login_is_used_when_plain_is_not_offered() {
    bounded(async {
        let (server, cert) = tls_server("sink.test");
        let sink = Sink::start(SinkScript {
            starttls: Some(server),
            auth: true,
            auth_mechanisms: "LOGIN".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = SmtpRelay::new(
            relay_config(sink.port())
                .tls_mode(TlsMode::Required)
                .tls_trust(TlsTrust::Roots(vec![cert]))
                .tls_server_name("sink.test")
                .credentials(RelayCredentials::new("smtpy", "s3cret")),
        )
        .expect("relay");
        let outcomes = relay.deliver(&envelope(), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        let commands = sink.commands();
        let login = commands
            .iter()
            .position(|c| c == "AUTH LOGIN")
            .expect("AUTH LOGIN sent");
        assert_eq!(
            commands[login + 1..login + 3],
            [common::base64(b"smtpy"), common::base64(b"s3cret")]
        );
    })
    .await;
}
