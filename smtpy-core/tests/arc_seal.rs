//! ARC sealing of forwarded mail: a sealed message verifies (arc=pass) with
//! the sealer's key published, chains onto earlier sets, and fails once
//! tampered with.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use mail_auth::common::crypto::{DkimKey, Ed25519Key};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::auth::{AuthError, AuthInput, AuthVerdict, Authenticator, Verdict};
use smtpy_core::dkim::SigningKey;
use smtpy_core::dns::StaticDns;
use smtpy_core::model::DkimAlgorithm;

const SENDER_IP: &str = "192.0.2.10";

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).expect("domain")
}

fn ed25519(d: &str, selector: &str) -> (SigningKey, Vec<u8>) {
    SigningKey::generate(domain(d), selector, DkimAlgorithm::Ed25519).expect("generate")
}

/// One RSA-2048 key for the whole test binary (generation is slow).
fn rsa() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::generate(domain("rsa-fwd.example"), "arc1", DkimAlgorithm::Rsa2048)
            .expect("generate rsa")
            .0
    })
}

fn original() -> Vec<u8> {
    b"From: Bob <bob@sender.example>\r\n\
      To: shop@alias.example\r\n\
      Subject: Your order\r\n\
      Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
      Message-ID: <order-1@sender.example>\r\n\
      MIME-Version: 1.0\r\n\
      Content-Type: text/plain; charset=utf-8\r\n\
      \r\n\
      Thank you for your order.\r\n"
        .to_vec()
}

/// The sender's DNS: its DKIM key, SPF and DMARC.
struct World {
    dns: Arc<StaticDns>,
    auth: Authenticator,
    signed: Vec<u8>,
}

fn world() -> World {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("sender.example", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("_dmarc.sender.example", "v=DMARC1; p=reject");
    let (key, der) = ed25519("sender.example", "s1");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let signature = DkimSigner::from_key(DkimKey::Ed25519(
        Ed25519Key::from_pkcs8_der(&der).expect("der"),
    ))
    .domain("sender.example")
    .selector("s1")
    .headers(["From", "To", "Subject", "Date", "Message-ID"])
    .sign(&original())
    .expect("sign");
    let mut signed = signature.to_header().into_bytes();
    signed.extend_from_slice(&original());
    World {
        auth: Authenticator::from_static(dns.clone()),
        dns,
        signed,
    }
}

async fn check(auth: &Authenticator, message: &[u8], host: &str, peer: &str) -> AuthVerdict {
    let sender = EmailAddress::parse("bob@sender.example").expect("sender");
    auth.authenticate(&AuthInput {
        message,
        peer: peer.parse::<IpAddr>().expect("ip"),
        helo: "mail.sender.example",
        mail_from: Some(&sender),
        authserv_id: host,
    })
    .await
}

/// `message` as forwarded by `key`'s host: its verdict on arrival, then the
/// ARC set prepended.
async fn forward(
    world: &World,
    message: &[u8],
    key: &SigningKey,
    host: &str,
    peer: &str,
) -> Vec<u8> {
    let verdict = check(&world.auth, message, host, peer).await;
    let set = world
        .auth
        .arc_seal(message, &verdict, key, host)
        .await
        .expect("seal");
    let mut sealed = set.into_bytes();
    sealed.extend_from_slice(message);
    sealed
}

#[tokio::test]
async fn a_sealed_message_verifies_with_the_sealers_key() {
    let world = world();
    let (fwd, _) = ed25519("fwd.example", "arc");
    world.dns.add_txt(&fwd.dns_name(), &fwd.dns_record());

    let arrival = check(&world.auth, &world.signed, "mx.fwd.example", SENDER_IP).await;
    assert_eq!(arrival.arc, Verdict::None);
    assert_eq!(arrival.dmarc, Verdict::Pass);
    let set = world
        .auth
        .arc_seal(&world.signed, &arrival, &fwd, "mx.fwd.example")
        .await
        .expect("seal");

    // Three fields, in order, CRLF-terminated, short lines.
    assert!(set.starts_with("ARC-Seal: i=1; a=ed25519-sha256; cv=none; t="));
    assert!(set.contains("\r\n\td=fwd.example; s=arc;\r\n\tb="));
    let ams = set
        .find("\r\nARC-Message-Signature: i=1; a=ed25519-sha256;")
        .expect("ams");
    let aar = set
        .find("\r\nARC-Authentication-Results: i=1; mx.fwd.example;\r\n")
        .expect("aar");
    assert!(ams < aar);
    assert!(set.ends_with("\tarc=none\r\n"));
    assert!(set[aar..].contains("\tdkim=pass header.d=sender.example header.s=s1;\r\n"));
    assert!(set[aar..].contains("\tdmarc=pass (p=reject) header.from=sender.example;\r\n"));
    // Our fields fold under 78 columns (mail-auth writes the AMS, whose
    // first line is longer); every line is far below 998.
    for line in set[..ams].split("\r\n").chain(set[aar + 2..].split("\r\n")) {
        assert!(line.len() < 78, "{line:?}");
    }
    for line in set.split("\r\n") {
        assert!(line.len() < 998, "{line:?}");
    }

    // The next hop sees a passing chain; the original DKIM still passes.
    let mut sealed = set.into_bytes();
    sealed.extend_from_slice(&world.signed);
    let next = check(&world.auth, &sealed, "mx.next.example", "203.0.113.5").await;
    assert_eq!(next.arc, Verdict::Pass);
    assert_eq!(next.dkim_summary(), Verdict::Pass);
    assert_eq!(next.spf_mail_from, Verdict::Fail); // forwarded from elsewhere
    assert_eq!(next.dmarc, Verdict::Pass); // DKIM survives
}

#[tokio::test]
async fn tampering_after_sealing_fails_the_chain() {
    let world = world();
    let (fwd, _) = ed25519("fwd.example", "arc");
    world.dns.add_txt(&fwd.dns_name(), &fwd.dns_record());
    let sealed = forward(&world, &world.signed, &fwd, "mx.fwd.example", SENDER_IP).await;
    let text = String::from_utf8(sealed).expect("utf8");

    let body = format!("{text}Extra line.\r\n");
    let v = check(
        &world.auth,
        body.as_bytes(),
        "mx.next.example",
        "203.0.113.5",
    )
    .await;
    assert_eq!(v.arc, Verdict::Fail);

    let header = text.replace("Subject: Your order", "Subject: Your refund");
    let v = check(
        &world.auth,
        header.as_bytes(),
        "mx.next.example",
        "203.0.113.5",
    )
    .await;
    assert_eq!(v.arc, Verdict::Fail);

    let results = text.replace("dmarc=pass (p=reject)", "dmarc=fail (p=reject)");
    assert_ne!(results, text);
    let v = check(
        &world.auth,
        results.as_bytes(),
        "mx.next.example",
        "203.0.113.5",
    )
    .await;
    assert_eq!(v.arc, Verdict::Fail);

    // Without the sealer's key published the chain cannot pass either.
    let (other, _) = ed25519("other.example", "arc");
    let elsewhere = Arc::new(StaticDns::new());
    elsewhere.add_txt("arc._domainkey.fwd.example", &other.dns_record());
    let v = check(
        &Authenticator::from_static(elsewhere),
        text.as_bytes(),
        "mx.next.example",
        "203.0.113.5",
    )
    .await;
    assert_eq!(v.arc, Verdict::Fail);
}

#[tokio::test]
async fn a_second_sealer_chains_onto_the_first() {
    let world = world();
    let (first, _) = ed25519("fwd.example", "arc");
    world.dns.add_txt(&first.dns_name(), &first.dns_record());
    let second = rsa();
    world.dns.add_txt(&second.dns_name(), &second.dns_record());

    let once = forward(&world, &world.signed, &first, "mx.fwd.example", SENDER_IP).await;
    let twice = forward(&world, &once, second, "mx.rsa-fwd.example", "203.0.113.5").await;
    let text = String::from_utf8(twice.clone()).expect("utf8");
    assert!(text.starts_with("ARC-Seal: i=2; a=rsa-sha256; cv=pass; t="));
    assert!(text.contains("\r\n\td=rsa-fwd.example; s=arc1;\r\n\tb="));
    assert!(text.contains("ARC-Authentication-Results: i=2; mx.rsa-fwd.example;\r\n"));
    assert!(text.contains("\tarc=pass\r\n"));

    let v = check(&world.auth, &twice, "mx.last.example", "198.51.100.1").await;
    assert_eq!(v.arc, Verdict::Pass);

    // Altering the first set's results breaks the second seal.
    let forged = text.replacen(
        "ARC-Authentication-Results: i=1; mx.fwd.example;",
        "ARC-Authentication-Results: i=1; mx.fwd.example (trusted);",
        1,
    );
    assert_ne!(forged, text);
    let v = check(
        &world.auth,
        forged.as_bytes(),
        "mx.last.example",
        "198.51.100.1",
    )
    .await;
    assert_eq!(v.arc, Verdict::Fail);
}

#[tokio::test]
async fn failed_or_inconsistent_chains_are_not_extended() {
    let world = world();
    let (fwd, _) = ed25519("fwd.example", "arc");
    world.dns.add_txt(&fwd.dns_name(), &fwd.dns_record());
    let sealed = forward(&world, &world.signed, &fwd, "mx.fwd.example", SENDER_IP).await;
    let mut tampered = sealed.clone();
    tampered.extend_from_slice(b"tampered\r\n");
    let v = check(&world.auth, &tampered, "mx.next.example", "203.0.113.5").await;
    assert_eq!(v.arc, Verdict::Fail);
    assert_eq!(
        world
            .auth
            .arc_seal(&tampered, &v, &fwd, "mx.next.example")
            .await,
        Err(AuthError::ChainNotSealable(Verdict::Fail))
    );
    // A verdict that does not match the message is refused too.
    let none = AuthVerdict::default();
    assert_eq!(
        world
            .auth
            .arc_seal(&sealed, &none, &fwd, "mx.next.example")
            .await,
        Err(AuthError::ChainNotSealable(Verdict::None))
    );
    let pass = AuthVerdict {
        arc: Verdict::Pass,
        ..AuthVerdict::default()
    };
    assert_eq!(
        world
            .auth
            .arc_seal(&world.signed, &pass, &fwd, "mx.next.example")
            .await,
        Err(AuthError::ChainNotSealable(Verdict::Pass))
    );
    // Nothing to seal.
    assert_eq!(
        world
            .auth
            .arc_seal(b"", &none, &fwd, "mx.next.example")
            .await,
        Err(AuthError::Malformed)
    );
}

#[tokio::test]
async fn fifty_sets_are_the_limit() {
    let world = world();
    let (fwd, _) = ed25519("fwd.example", "arc");
    world.dns.add_txt(&fwd.dns_name(), &fwd.dns_record());
    let mut message = world.signed.clone();
    for _ in 0..50 {
        message = forward(&world, &message, &fwd, "mx.fwd.example", SENDER_IP).await;
    }
    let v = check(&world.auth, &message, "mx.fwd.example", SENDER_IP).await;
    assert_eq!(v.arc, Verdict::Pass);
    assert_eq!(
        world
            .auth
            .arc_seal(&message, &v, &fwd, "mx.fwd.example")
            .await,
        Err(AuthError::ChainNotSealable(Verdict::Fail))
    );
}
