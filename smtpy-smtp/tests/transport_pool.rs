//! Per-destination concurrency limit and connection reuse, observed at the
//! sink: sessions open at once, TCP connections accepted, RSET and QUIT.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Class, Sink, SinkScript, address, bounded, classes};
use smtpy_core::dns::StaticDns;
use smtpy_core::transport::{Envelope, Transport};
use smtpy_smtp::transport::{
    MxConfig, MxDelivery, PoolConfig, RelayConfig, SmtpRelay, Timeouts, TlsMode,
};

const MESSAGE: &[u8] = b"Subject: pool\r\n\r\nhello\r\n";

fn relay(port: u16, pool: PoolConfig) -> Arc<SmtpRelay> {
    Arc::new(
        SmtpRelay::new(
            RelayConfig::new("127.0.0.1", port, "client.test")
                .tls_mode(TlsMode::Never)
                .timeouts(Timeouts::uniform(Duration::from_secs(5)))
                .pool(pool),
        )
        .expect("relay"),
    )
}

fn envelope(to: &str) -> Envelope {
    Envelope {
        reverse_path: Some(address("a@example.org")),
        recipients: vec![address(to)],
    }
}

#[tokio::test]
async fn concurrent_deliveries_respect_the_per_destination_limit() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            data_delay: Duration::from_millis(150),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(
            sink.port(),
            PoolConfig::new().max_connections_per_destination(2),
        );
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let relay = relay.clone();
                tokio::spawn(async move {
                    relay
                        .deliver(&envelope(&format!("r{i}@example.net")), MESSAGE)
                        .await
                })
            })
            .collect();
        for task in tasks {
            let outcomes = task.await.expect("delivery task");
            assert_eq!(classes(&outcomes), [Class::Delivered]);
        }
        let log = sink.log();
        assert_eq!(log.messages.len(), 6);
        assert_eq!(log.max_active, 2, "sessions open at once");
        // Reuse: two connections carried all six messages.
        assert_eq!(log.connections, 2);
    })
    .await;
}

#[tokio::test]
async fn the_limit_is_per_destination_in_mx_delivery() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            data_delay: Duration::from_millis(150),
            ..SinkScript::default()
        })
        .await;
        let dns = StaticDns::new();
        // Two exchangers (two destinations) at the same sink.
        dns.add_mx("one.test", 10, "mx.one.test");
        dns.add_ip("mx.one.test", "127.0.0.1".parse().expect("ip"));
        dns.add_mx("two.test", 10, "mx.two.test");
        dns.add_ip("mx.two.test", "127.0.0.1".parse().expect("ip"));
        let mx = Arc::new(
            MxDelivery::new(
                MxConfig::new("client.test")
                    .port(sink.port())
                    .tls_mode(TlsMode::Never)
                    .timeouts(Timeouts::uniform(Duration::from_secs(5)))
                    .pool(PoolConfig::new().max_connections_per_destination(1)),
                Arc::new(dns),
            )
            .expect("mx"),
        );
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let mx = mx.clone();
                let domain = if i % 2 == 0 { "one.test" } else { "two.test" };
                tokio::spawn(async move {
                    mx.deliver(&envelope(&format!("r{i}@{domain}")), MESSAGE)
                        .await
                })
            })
            .collect();
        for task in tasks {
            let outcomes = task.await.expect("delivery task");
            assert_eq!(classes(&outcomes), [Class::Delivered]);
        }
        let log = sink.log();
        assert_eq!(log.messages.len(), 6);
        // One per destination, two destinations.
        assert_eq!(log.max_active, 2);
    })
    .await;
}

#[tokio::test]
async fn a_second_delivery_reuses_the_connection_after_rset() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(sink.port(), PoolConfig::default());
        for to in ["one@example.net", "two@example.net"] {
            let outcomes = relay.deliver(&envelope(to), MESSAGE).await;
            assert_eq!(classes(&outcomes), [Class::Delivered]);
        }
        assert_eq!(sink.log().connections, 1);
        assert_eq!(sink.messages().len(), 2);
        assert_eq!(sink.commands_starting("EHLO").len(), 1);
        let commands = sink.commands();
        let rset = commands.iter().position(|c| c == "RSET");
        let second_mail = commands.iter().rposition(|c| c.starts_with("MAIL FROM"));
        assert!(rset.is_some() && rset < second_mail, "{commands:?}");
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(
            sink.port(),
            PoolConfig::new().idle_timeout(Duration::from_millis(100)),
        );
        let outcomes = relay.deliver(&envelope("one@example.net"), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert!(
            sink.wait_for(|log| log.active == 0).await,
            "the idle session was closed"
        );
        assert_eq!(sink.commands().last().map(String::as_str), Some("QUIT"));

        let outcomes = relay.deliver(&envelope("two@example.net"), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(sink.log().connections, 2);
    })
    .await;
}

#[tokio::test]
async fn a_connection_is_not_reused_after_the_server_says_421() {
    bounded(async {
        let sink = Sink::start(SinkScript {
            final_reply: "421 4.3.2 shutting down".into(),
            ..SinkScript::default()
        })
        .await;
        let relay = relay(sink.port(), PoolConfig::default());
        for to in ["one@example.net", "two@example.net"] {
            let outcomes = relay.deliver(&envelope(to), MESSAGE).await;
            assert_eq!(classes(&outcomes), [Class::Temporary]);
        }
        assert_eq!(sink.log().connections, 2);
        assert!(sink.commands_starting("RSET").is_empty());
    })
    .await;
}

#[tokio::test]
async fn reuse_can_be_limited_per_connection_or_disabled() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay(
            sink.port(),
            PoolConfig::new().max_messages_per_connection(2),
        );
        for i in 0..4 {
            let outcomes = relay
                .deliver(&envelope(&format!("r{i}@example.net")), MESSAGE)
                .await;
            assert_eq!(classes(&outcomes), [Class::Delivered]);
        }
        assert_eq!(sink.log().connections, 2);

        let sink = Sink::start(SinkScript::default()).await;
        let relay = relay_without_reuse(sink.port());
        for i in 0..3 {
            let outcomes = relay
                .deliver(&envelope(&format!("r{i}@example.net")), MESSAGE)
                .await;
            assert_eq!(classes(&outcomes), [Class::Delivered]);
        }
        assert_eq!(sink.log().connections, 3);
        assert!(
            sink.wait_for(|log| log.active == 0).await,
            "connections not kept are closed"
        );
    })
    .await;
}

fn relay_without_reuse(port: u16) -> Arc<SmtpRelay> {
    relay(port, PoolConfig::new().max_idle_per_destination(0))
}
