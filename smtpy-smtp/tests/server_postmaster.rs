//! `postmaster` is always accepted (RFC 5321 §4.5.1). Without a configured
//! postmaster address the message is kept in the queue, held for the
//! operator; with one it is queued for delivery there.

use std::sync::Arc;

use smtpy_core::address::EmailAddress;
use smtpy_core::memory::MemoryStore;
use smtpy_core::store::{PageRequest, QueueStore};
use smtpy_core::time::{Clock, SystemClock};
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Sends one message to `<postmaster>` through a real listener; returns the queue.
async fn send_to_postmaster(configured: Option<&str>) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut acceptor = Acceptor::new(store.clone(), store.clone(), Arc::clone(&clock), "mx.test");
    if let Some(a) = configured {
        acceptor = acceptor.with_postmaster(EmailAddress::parse(a).expect("address"));
    }
    let server = SmtpServer::new(SessionConfig::new("mx.test"), acceptor, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(async move { server.serve(listener, rx).await });

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (r, mut w) = tcp.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut reply = async || -> String {
        loop {
            let line = lines.next_line().await.expect("read").expect("a line");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    assert!(reply().await.starts_with("220"));
    for (cmd, code) in [
        ("EHLO client.test", "250"),
        ("MAIL FROM:<someone@outside.test>", "250"),
        ("RCPT TO:<Postmaster>", "250"),
        ("DATA", "354"),
        ("Subject: abuse report\r\n\r\nhello\r\n.", "250"),
        ("QUIT", "221"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .expect("write");
        let got = reply().await;
        assert!(
            got.starts_with(code),
            "{cmd:?}: expected {code}, got {got:?}"
        );
    }
    stop.send(true).expect("stop");
    serving.await.expect("server");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_mail_is_held_when_no_address_is_configured() {
    let store = send_to_postmaster(None).await;
    let queued = store
        .list_queue(PageRequest::default())
        .await
        .expect("list")
        .items;
    assert_eq!(queued.len(), 1);
    assert!(queued[0].held, "held for the operator");
    assert_eq!(
        queued[0].recipients[0].address.to_string(),
        "postmaster@mx.test"
    );
    assert!(String::from_utf8_lossy(&queued[0].body).contains("Subject: abuse report"));
    assert!(
        store
            .lease_due(SystemClock.now(), std::time::Duration::from_secs(60), 10)
            .await
            .expect("lease")
            .is_empty(),
        "never delivered while held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmaster_mail_goes_to_the_configured_address() {
    let store = send_to_postmaster(Some("ops@example.org")).await;
    let queued = store
        .list_queue(PageRequest::default())
        .await
        .expect("list")
        .items;
    assert_eq!(queued.len(), 1);
    assert!(!queued[0].held);
    assert_eq!(
        queued[0].recipients[0].address.to_string(),
        "ops@example.org"
    );
}
