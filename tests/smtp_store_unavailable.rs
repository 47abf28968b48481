//! When the store cannot be reached, RCPT is answered `451 4.4.3`: never a
//! 5xx (the alias may well exist) and never a 250 (nothing could be checked).

use std::sync::Arc;

use smtpy::core::Store;
use smtpy::core::memory::MemoryStore;
use smtpy::core::store::QueueStore;
use smtpy::core::time::{Clock, SystemClock};
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcpt_is_451_4_4_3_when_the_store_is_down() {
    let sql = smtpy_store_sql::SqlStore::connect("sqlite::memory:")
        .await
        .expect("sqlite");
    sql.close().await; // every call now fails with StoreError::Unavailable
    let store: Arc<dyn Store> = Arc::new(sql);
    let queue: Arc<dyn QueueStore> = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let acceptor = Acceptor::new(store, Arc::clone(&queue), Arc::clone(&clock), "mx.test");
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
    let mut read_reply = async || -> String {
        loop {
            let line = lines.next_line().await.expect("read").expect("a line");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    assert!(read_reply().await.starts_with("220"));
    w.write_all(b"EHLO client.test\r\n").await.expect("write");
    assert!(read_reply().await.starts_with("250"));
    w.write_all(b"MAIL FROM:<bob@outside.test>\r\n")
        .await
        .expect("write");
    assert!(read_reply().await.starts_with("250"));
    w.write_all(b"RCPT TO:<shop@alias.test>\r\n")
        .await
        .expect("write");
    let reply = read_reply().await;
    assert!(reply.starts_with("451 4.4.3"), "got {reply:?}");
    w.write_all(b"DATA\r\n").await.expect("write");
    let reply = read_reply().await;
    assert!(
        reply.starts_with("554"),
        "no valid recipients, got {reply:?}"
    );
    w.write_all(b"QUIT\r\n").await.expect("write");
    assert!(read_reply().await.starts_with("221"));
    assert_eq!(
        queue.queue_stats().await.expect("stats").depth,
        0,
        "nothing was queued"
    );
    stop.send(true).expect("stop");
    serving.await.expect("server task");
}
