//! `MxDelivery` with `StaticDns` pointing domains at loopback sinks (the
//! port override makes every exchanger listen on the sink's port).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Class, Sink, SinkScript, address, bounded, classes, closed_port, reply_of};
use smtpy_core::dns::{Dns, DnsError, MxRecord, StaticDns};
use smtpy_core::transport::{Envelope, Transport};
use smtpy_smtp::transport::{MxConfig, MxDelivery, Timeouts, TlsMode};

const MESSAGE: &[u8] = b"Subject: mx\r\n\r\nhello\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn mx_config(port: u16) -> MxConfig {
    MxConfig::new("client.test")
        .port(port)
        .tls_mode(TlsMode::Never)
        .shuffle_equal_preference(false)
        .timeouts(Timeouts::uniform(Duration::from_secs(5)))
}

fn mx(config: MxConfig, dns: StaticDns) -> MxDelivery {
    MxDelivery::new(config, Arc::new(dns)).expect("mx config")
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope {
        reverse_path: Some(address("a@example.org")),
        recipients: to.iter().map(|r| address(r)).collect(),
    }
}

#[tokio::test]
async fn delivers_to_the_mx_of_the_domain() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let dns = StaticDns::new();
        dns.add_mx("example.test", 10, "mx.example.test");
        dns.add_ip("mx.example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(sink.port()), dns);
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        let messages = sink.messages();
        assert_eq!(messages[0].rcpt_to, ["bob@example.test"]);
        assert_eq!(messages[0].data, MESSAGE);
    })
    .await;
}

#[tokio::test]
async fn without_mx_the_domains_address_is_used() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let dns = StaticDns::new();
        dns.add_ip("example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(sink.port()), dns);
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_null_mx_fails_permanently_without_connecting() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let dns = StaticDns::new();
        dns.add_mx("example.test", 0, ".");
        // An address exists, but a null MX forbids the fallback.
        dns.add_ip("example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(sink.port()), dns);
        let outcomes = mx
            .deliver(
                &envelope(&["bob@example.test", "carol@example.test"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Permanent, Class::Permanent]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (556, Some("5.1.10"))
        );
        assert_eq!(sink.log().connections, 0);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_domain_fails_permanently() {
    bounded(async {
        let mx = mx(mx_config(closed_port().await), StaticDns::new());
        let outcomes = mx.deliver(&envelope(&["bob@nowhere.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Permanent]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (550, Some("5.1.2"))
        );
    })
    .await;
}

/// Answers every lookup with a temporary failure.
#[derive(Debug)]
struct FailingDns;

#[async_trait]
impl Dns for FailingDns {
    async fn mx(&self, _: &str) -> Result<Vec<MxRecord>, DnsError> {
        Err(DnsError::Temporary("SERVFAIL".into()))
    }
    async fn ip(&self, _: &str) -> Result<Vec<IpAddr>, DnsError> {
        Err(DnsError::Temporary("SERVFAIL".into()))
    }
    async fn txt(&self, _: &str) -> Result<Vec<String>, DnsError> {
        Err(DnsError::Temporary("SERVFAIL".into()))
    }
}

#[tokio::test]
async fn a_temporary_dns_failure_is_temporary() {
    bounded(async {
        let mx = MxDelivery::new(mx_config(25), Arc::new(FailingDns)).expect("mx");
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Temporary]);
        let reply = reply_of(&outcomes[0]);
        assert_eq!(
            (reply.code, reply.enhanced.as_deref()),
            (451, Some("4.4.3"))
        );
        assert!(reply.text.contains("SERVFAIL"));
    })
    .await;
}

#[tokio::test]
async fn exchangers_are_tried_by_preference() {
    bounded(async {
        let preferred = Sink::start(SinkScript::default()).await;
        let port = preferred.port();
        let backup = Sink::start_at(
            SocketAddr::new(ip("127.0.0.2"), port),
            SinkScript::default(),
        )
        .await
        .expect("bind a second loopback address");
        let dns = StaticDns::new();
        // Listed backup first: the order must come from the preference.
        dns.add_mx("example.test", 20, "backup.example.test");
        dns.add_mx("example.test", 10, "preferred.example.test");
        dns.add_ip("backup.example.test", ip("127.0.0.2"));
        dns.add_ip("preferred.example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(port), dns);
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(preferred.messages().len(), 1);
        assert_eq!(backup.log().connections, 0);
    })
    .await;
}

#[tokio::test]
async fn when_the_first_exchanger_refuses_the_connection_the_next_is_used() {
    bounded(async {
        let backup = Sink::start(SinkScript::default()).await;
        let dns = StaticDns::new();
        dns.add_mx("example.test", 10, "dead.example.test");
        dns.add_mx("example.test", 20, "backup.example.test");
        // Nothing listens on 127.0.0.3 at the sink's port.
        dns.add_ip("dead.example.test", ip("127.0.0.3"));
        dns.add_ip("backup.example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(backup.port()), dns);
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(backup.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_exchanger_that_refuses_the_session_is_skipped() {
    bounded(async {
        let busy = Sink::start(SinkScript {
            greeting: "421 4.3.2 too busy".into(),
            ..SinkScript::default()
        })
        .await;
        let port = busy.port();
        let backup = Sink::start_at(
            SocketAddr::new(ip("127.0.0.2"), port),
            SinkScript::default(),
        )
        .await
        .expect("bind a second loopback address");
        let dns = StaticDns::new();
        dns.add_mx("example.test", 10, "busy.example.test");
        dns.add_mx("example.test", 20, "backup.example.test");
        // An exchanger without an address is skipped too.
        dns.add_mx("example.test", 15, "unresolvable.example.test");
        dns.add_ip("busy.example.test", ip("127.0.0.1"));
        dns.add_ip("backup.example.test", ip("127.0.0.2"));
        let mx = mx(mx_config(port), dns);
        let outcomes = mx.deliver(&envelope(&["bob@example.test"]), MESSAGE).await;
        assert_eq!(classes(&outcomes), [Class::Delivered]);
        assert_eq!(busy.log().connections, 1);
        assert_eq!(backup.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn when_no_exchanger_answers_every_recipient_is_temporary() {
    bounded(async {
        let dns = StaticDns::new();
        dns.add_mx("example.test", 10, "dead1.example.test");
        dns.add_mx("example.test", 20, "dead2.example.test");
        dns.add_ip("dead1.example.test", ip("127.0.0.1"));
        dns.add_ip("dead2.example.test", ip("127.0.0.1"));
        let mx = mx(mx_config(closed_port().await), dns);
        let outcomes = mx
            .deliver(
                &envelope(&["bob@example.test", "carol@example.test"]),
                MESSAGE,
            )
            .await;
        assert_eq!(classes(&outcomes), [Class::Temporary, Class::Temporary]);
        assert!(reply_of(&outcomes[0]).text.contains("dead2.example.test"));
    })
    .await;
}

#[tokio::test]
async fn a_static_route_overrides_the_mx() {
    bounded(async {
        let sink = Sink::start(SinkScript::default()).await;
        let dns = StaticDns::new();
        // The MX would refuse; the route wins.
        dns.add_mx("example.test", 10, "mx.example.test");
        dns.add_ip("mx.example.test", ip("127.0.0.3"));
        let config = mx_config(sink.port())
            .route("Example.Test", format!("127.0.0.1:{}", sink.port()))
            // A table of routes; no DNS record at all for this one.
            .routes(std::collections::HashMap::from([(
                "other.test",
                format!("[127.0.0.1]:{}", sink.port()),
            )]));
        let mx = mx(config, dns);
        let outcomes = mx
            .deliver(&envelope(&["bob@example.test", "eve@other.test"]), MESSAGE)
            .await;
        assert_eq!(classes(&outcomes), [Class::Delivered, Class::Delivered]);
        assert_eq!(sink.messages().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn recipients_are_grouped_by_domain_and_outcomes_kept_in_order() {
    bounded(async {
        let sink =
            Sink::start(SinkScript::default().rcpt("nobody@one.test", "550 5.1.1 no such user"))
                .await;
        let dns = StaticDns::new();
        dns.add_mx("one.test", 10, "mx.one.test");
        dns.add_ip("mx.one.test", ip("127.0.0.1"));
        dns.add_mx("two.test", 10, "mx.two.test");
        dns.add_ip("mx.two.test", ip("127.0.0.1"));
        let mx = mx(mx_config(sink.port()), dns);
        let outcomes = mx
            .deliver(
                &envelope(&[
                    "a@one.test",
                    "b@two.test",
                    "nobody@one.test",
                    "c@nowhere.test",
                    "d@TWO.test",
                ]),
                MESSAGE,
            )
            .await;
        assert_eq!(
            classes(&outcomes),
            [
                Class::Delivered,
                Class::Delivered,
                Class::Permanent,
                Class::Permanent,
                Class::Delivered,
            ]
        );
        assert_eq!(reply_of(&outcomes[2]).code, 550);
        assert_eq!(reply_of(&outcomes[3]).enhanced.as_deref(), Some("5.1.2"));
        // One transaction per domain.
        let mut transactions: Vec<Vec<String>> =
            sink.messages().into_iter().map(|m| m.rcpt_to).collect();
        transactions.sort();
        assert_eq!(
            transactions,
            [
                vec!["a@one.test".to_owned()],
                vec!["b@two.test".to_owned(), "d@two.test".to_owned()]
            ]
        );
    })
    .await;
}

#[test]
fn malformed_routes_are_rejected_at_build() {
    let build = |domain: &str, target: &str| {
        MxDelivery::new(
            MxConfig::new("client.test").route(domain, target),
            Arc::new(StaticDns::new()),
        )
    };
    assert!(build("example.test", "relay.example:2525").is_ok());
    assert!(build("example.test", "relay.example:0").is_err());
    assert!(build("not a domain", "relay.example").is_err());
    assert!(build("example.test", "[::1").is_err());
}
