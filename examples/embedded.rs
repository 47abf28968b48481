//! smtpy as a library in one process: the in-memory store, the SMTP front end
//! on a loopback port, the delivery worker, and a custom [`Transport`] that
//! collects the forwarded message instead of sending it anywhere.
//!
//! Run it with `cargo run --example embedded`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
use smtpy_core::store::{AliasStore, DomainStore, MailboxStore, UserStore};
use smtpy_core::time::{Clock, SystemClock};
use smtpy_core::transport::{DeliveryOutcome, Envelope, Transport};
use smtpy_smtp::delivery::{DeliveryConfig, DeliveryWorker};
use smtpy_smtp::server::{Acceptor, SmtpServer};
use smtpy_smtp::session::SessionConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Your outbound path (an HTTP hook, a local mailbox…): here it keeps messages.
#[derive(Debug, Default)]
struct Collect(Mutex<Vec<(Envelope, Vec<u8>)>>);

#[async_trait]
impl Transport for Collect {
    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Vec<DeliveryOutcome> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push((envelope.clone(), message.to_vec()));
        // One outcome per recipient, in order.
        (envelope.recipients.iter())
            .map(|_| DeliveryOutcome::Delivered(None))
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (store, clock) = (Arc::new(MemoryStore::new()), Arc::new(SystemClock));
    let now = clock.now();
    // Seed: a user, a verified domain and mailbox, and an alias to the mailbox.
    let user = User::new(EmailAddress::parse("me@mail.example")?, Role::User, now);
    store.create_user(&user).await?;
    let mut domain = Domain::new(
        DomainName::parse("alias.example")?,
        user.id,
        "unused-verification-token".into(), // verified directly below
        now,
    );
    domain.verified_at = Some(now);
    store.create_domain(&domain).await?;
    let mut mailbox = Mailbox::new(user.id, EmailAddress::parse("me@mail.example")?, now);
    mailbox.verified_at = Some(now);
    store.create_mailbox(&mailbox).await?;
    let shop = EmailAddress::parse("shop@alias.example")?;
    let alias = Alias::new(shop, user.id, domain.id, vec![mailbox.id], now);
    store.create_alias(&alias).await?;

    // The SMTP front end on a loopback port; 250 once the message is queued.
    let acceptor = Acceptor::new(store.clone(), store.clone(), clock.clone(), "mx.example");
    let server = SmtpServer::new(SessionConfig::new("mx.example"), acceptor, clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move { server.serve(listener, stopped).await });

    // A tiny SMTP client: one command, one reply (no multi-line replies after EHLO).
    let (r, mut w) = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await?
        .into_split();
    let mut lines = BufReader::new(r).lines();
    let body =
        "From: bob@outside.example\r\nTo: shop@alias.example\r\nSubject: hi\r\n\r\nHello.\r\n.";
    for cmd in [
        "HELO client",
        "MAIL FROM:<bob@outside.example>",
        "RCPT TO:<shop@alias.example>",
        "DATA",
        body,
        "QUIT",
    ] {
        let reply = lines.next_line().await?.unwrap_or_default();
        println!("S: {reply}");
        w.write_all(format!("{cmd}\r\n").as_bytes()).await?;
    }

    // The delivery worker hands what is due to our transport.
    let transport = Arc::new(Collect::default());
    let worker = DeliveryWorker::new(
        store.clone(),
        transport.clone(),
        clock,
        DeliveryConfig::new("mx.example")?,
    );
    worker.run_once().await?;
    let kept = transport.0.lock().unwrap_or_else(|p| p.into_inner());
    for (envelope, message) in kept.iter() {
        println!(
            "delivered to {:?}:\n{}",
            envelope.recipients,
            String::from_utf8_lossy(message)
        );
    }
    match kept.len() {
        1 => println!("mail arrived at the custom transport"),
        n => return Err(format!("expected one delivery, got {n}").into()),
    }
    Ok(())
}
