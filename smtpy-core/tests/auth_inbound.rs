//! Inbound authentication with real signatures and fed DNS: SPF for HELO and
//! MAIL FROM, DKIM, DMARC and the owner's DMARC settings, the
//! Authentication-Results field, stripping forged results, hostile input.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use proptest::prelude::*;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::auth::{
    AuthError, AuthInput, AuthVerdict, Authenticator, DMARC_REJECTED, DkimCheck, DmarcAction,
    DmarcPolicy, Verdict, strip_forged_results,
};
use smtpy_core::dkim::SigningKey;
use smtpy_core::dns::StaticDns;
use smtpy_core::model::{DkimAlgorithm, DmarcQuarantineAction, DmarcRejectAction, UserSettings};

const HOST: &str = "mx.alias.example";
/// The sender's outbound server.
const GOOD_IP: &str = "192.0.2.10";
/// Anyone else.
const BAD_IP: &str = "198.51.100.66";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("address")
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).expect("domain")
}

/// A freshly generated Ed25519 key with its PKCS#8 bytes.
fn ed25519(d: &str, selector: &str) -> (SigningKey, Vec<u8>) {
    SigningKey::generate(domain(d), selector, DkimAlgorithm::Ed25519).expect("generate")
}

/// One RSA-2048 key for the whole test binary (generation is slow).
fn rsa() -> &'static (SigningKey, Vec<u8>) {
    static KEY: OnceLock<(SigningKey, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::generate(domain("rsa.example"), "rsa1", DkimAlgorithm::Rsa2048)
            .expect("generate rsa")
    })
}

fn mail_auth_key(algorithm: DkimAlgorithm, der: &[u8]) -> DkimKey {
    match algorithm {
        DkimAlgorithm::Ed25519 => {
            DkimKey::Ed25519(Ed25519Key::from_pkcs8_der(der).expect("ed25519 der"))
        }
        _ => DkimKey::Rsa(
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
                der.to_vec(),
            )))
            .or_else(|_| {
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    der.to_vec(),
                )))
            })
            .expect("rsa der"),
        ),
    }
}

/// `message` with a DKIM-Signature by `key` (d= and s= from the key)
/// prepended.
fn dkim_sign(message: &[u8], key: &SigningKey, der: &[u8]) -> Vec<u8> {
    let signature = DkimSigner::from_key(mail_auth_key(key.algorithm(), der))
        .domain(key.domain().as_ascii())
        .selector(key.selector())
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message)
        .expect("sign");
    let mut signed = signature.to_header().into_bytes();
    signed.extend_from_slice(message);
    signed
}

fn message_from(from: &str) -> Vec<u8> {
    format!(
        "From: Bob <{from}>\r\n\
         To: shop@alias.example\r\n\
         Subject: Your order\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <order-1@sender.example>\r\n\
         \r\n\
         Thank you for your order.\r\n"
    )
    .into_bytes()
}

/// DNS for `sender.example`: SPF allowing 192.0.2.0/24, DMARC `policy`,
/// a HELO name with its own SPF record.
fn sender_dns(dmarc: &str) -> Arc<StaticDns> {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("sender.example", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("mail.sender.example", "v=spf1 ip4:192.0.2.10 -all");
    dns.add_txt("_dmarc.sender.example", dmarc);
    dns
}

struct Check<'a> {
    message: &'a [u8],
    peer: &'a str,
    helo: &'a str,
    mail_from: Option<&'a str>,
}

async fn run(auth: &Authenticator, check: Check<'_>) -> AuthVerdict {
    let sender = check.mail_from.map(addr);
    auth.authenticate(&AuthInput {
        message: check.message,
        peer: ip(check.peer),
        helo: check.helo,
        mail_from: sender.as_ref(),
        authserv_id: HOST,
    })
    .await
}

async fn spf_only(dns: &Arc<StaticDns>, peer: &str, helo: &str, from: Option<&str>) -> AuthVerdict {
    let auth = Authenticator::from_static(dns.clone());
    let message = message_from("bob@sender.example");
    run(
        &auth,
        Check {
            message: &message,
            peer,
            helo,
            mail_from: from,
        },
    )
    .await
}

// ---------------------------------------------------------------------------
// SPF

#[tokio::test]
async fn spf_mail_from_pass_fail_softfail_neutral() {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("hard.example", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("soft.example", "v=spf1 ip4:192.0.2.0/24 ~all");
    dns.add_txt("open.example", "v=spf1 ip4:192.0.2.0/24 ?all");

    let v = spf_only(&dns, GOOD_IP, "unknown.invalid", Some("a@hard.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::Pass);
    assert_eq!(v.spf_domain.as_deref(), Some("hard.example"));
    let v = spf_only(&dns, BAD_IP, "unknown.invalid", Some("a@hard.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::Fail);
    let v = spf_only(&dns, BAD_IP, "unknown.invalid", Some("a@soft.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::SoftFail);
    let v = spf_only(&dns, BAD_IP, "unknown.invalid", Some("a@open.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::Neutral);
    let v = spf_only(&dns, BAD_IP, "unknown.invalid", Some("a@nowhere.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::None);
}

#[tokio::test]
async fn spf_helo_pass_fail_softfail() {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("out.hard.example", "v=spf1 ip4:192.0.2.10 -all");
    dns.add_txt("out.soft.example", "v=spf1 ip4:192.0.2.10 ~all");

    let v = spf_only(&dns, GOOD_IP, "OUT.hard.example", Some("a@x.example")).await;
    assert_eq!(v.spf_helo, Verdict::Pass);
    assert_eq!(v.helo.as_deref(), Some("out.hard.example"));
    let v = spf_only(&dns, BAD_IP, "out.hard.example", Some("a@x.example")).await;
    assert_eq!(v.spf_helo, Verdict::Fail);
    let v = spf_only(&dns, BAD_IP, "out.soft.example", Some("a@x.example")).await;
    assert_eq!(v.spf_helo, Verdict::SoftFail);
    // An address literal is not checked.
    let v = spf_only(&dns, GOOD_IP, "[192.0.2.10]", Some("a@x.example")).await;
    assert_eq!(v.spf_helo, Verdict::None);
    assert_eq!(v.helo, None);
}

#[tokio::test]
async fn spf_null_sender_checks_the_helo_name() {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("out.hard.example", "v=spf1 ip4:192.0.2.10 -all");
    let v = spf_only(&dns, GOOD_IP, "out.hard.example", None).await;
    assert_eq!(v.spf_mail_from, Verdict::Pass);
    assert_eq!(v.spf_domain.as_deref(), Some("out.hard.example"));
    let v = spf_only(&dns, BAD_IP, "out.hard.example", None).await;
    assert_eq!(v.spf_mail_from, Verdict::Fail);
    assert_eq!(v.spf_helo, Verdict::Fail);
}

#[tokio::test]
async fn spf_a_mx_include_and_ipv6() {
    let dns = Arc::new(StaticDns::new());
    dns.add_txt("corp.example", "v=spf1 a mx include:esp.example -all");
    dns.add_ip("corp.example", ip("203.0.113.1"));
    dns.add_mx("corp.example", 10, "mx1.corp.example");
    dns.add_ip("mx1.corp.example", ip("203.0.113.25"));
    dns.add_ip("mx1.corp.example", ip("2001:db8::25"));
    dns.add_txt(
        "esp.example",
        "v=spf1 ip6:2001:db8:e5::/48 ip4:192.0.2.128/25 -all",
    );

    for (peer, expected) in [
        ("203.0.113.1", Verdict::Pass),
        ("203.0.113.25", Verdict::Pass),
        ("2001:db8::25", Verdict::Pass),
        ("2001:db8:e5::1", Verdict::Pass),
        ("192.0.2.200", Verdict::Pass),
        // An IPv4-mapped IPv6 peer is checked as IPv4.
        ("::ffff:203.0.113.1", Verdict::Pass),
        ("203.0.113.2", Verdict::Fail),
        ("2001:db8::26", Verdict::Fail),
    ] {
        let v = spf_only(&dns, peer, "h.invalid", Some("a@corp.example")).await;
        assert_eq!(v.spf_mail_from, expected, "{peer}");
    }
    // A target without addresses matches nothing.
    dns.add_txt("noaddr.example", "v=spf1 a:ghost.example ~all");
    let v = spf_only(&dns, GOOD_IP, "h.invalid", Some("a@noaddr.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::SoftFail);
    // An include of a domain without SPF is a permanent error.
    dns.add_txt("broken.example", "v=spf1 include:nospf.example -all");
    let v = spf_only(&dns, GOOD_IP, "h.invalid", Some("a@broken.example")).await;
    assert_eq!(v.spf_mail_from, Verdict::PermError);
}

// ---------------------------------------------------------------------------
// DKIM

#[tokio::test]
async fn dkim_pass_ed25519_and_rsa() {
    let (key, der) = ed25519("sender.example", "s2024");
    let dns = sender_dns("v=DMARC1; p=none");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let (rsa_key, rsa_der) = rsa();
    dns.add_txt(&rsa_key.dns_name(), &rsa_key.dns_record());
    let auth = Authenticator::from_static(dns);

    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let signed = dkim_sign(&signed, rsa_key, rsa_der);
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("bob@sender.example"),
        },
    )
    .await;
    let mut checks = v.dkim.clone();
    checks.sort_by(|a, b| a.domain.cmp(&b.domain));
    assert_eq!(
        checks,
        vec![
            DkimCheck {
                domain: "rsa.example".into(),
                selector: "rsa1".into(),
                result: Verdict::Pass
            },
            DkimCheck {
                domain: "sender.example".into(),
                selector: "s2024".into(),
                result: Verdict::Pass
            },
        ]
    );
    assert_eq!(v.dkim_summary(), Verdict::Pass);
    assert!(v.dkim_aligned_pass(&domain("sender.example")));
}

#[tokio::test]
async fn dkim_fails_after_a_body_change() {
    let (key, der) = ed25519("sender.example", "s1");
    let dns = sender_dns("v=DMARC1; p=reject");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let auth = Authenticator::from_static(dns);

    let mut signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    signed.extend_from_slice(b"P.S. pay to another account.\r\n");
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("bob@sender.example"),
        },
    )
    .await;
    assert_eq!(v.dkim.len(), 1);
    assert_eq!(v.dkim[0].result, Verdict::Fail);
    assert_eq!(v.dkim_summary(), Verdict::Fail);
    assert_eq!(v.dmarc, Verdict::Fail);
}

#[tokio::test]
async fn dkim_fails_after_a_signed_header_change() {
    let (key, der) = ed25519("sender.example", "s1");
    let dns = sender_dns("v=DMARC1; p=none");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let auth = Authenticator::from_static(dns);

    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let tampered = String::from_utf8(signed)
        .expect("utf8")
        .replace("Subject: Your order", "Subject: Your invoice");
    let v = run(
        &auth,
        Check {
            message: tampered.as_bytes(),
            peer: GOOD_IP,
            helo: "h.invalid",
            mail_from: Some("bob@sender.example"),
        },
    )
    .await;
    assert_eq!(v.dkim[0].result, Verdict::Fail);
}

#[tokio::test]
async fn dkim_fails_with_a_wrong_key_and_errs_without_one() {
    let (key, der) = ed25519("sender.example", "s1");
    let (other, _) = ed25519("sender.example", "s1");
    let dns = sender_dns("v=DMARC1; p=none");
    // The published key is not the one that signed.
    dns.add_txt(&other.dns_name(), &other.dns_record());
    let auth = Authenticator::from_static(dns.clone());

    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let check = || Check {
        message: &signed,
        peer: GOOD_IP,
        helo: "h.invalid",
        mail_from: Some("bob@sender.example"),
    };
    let v = run(&auth, check()).await;
    assert_eq!(v.dkim[0].result, Verdict::Fail);

    // No key published under the selector at all.
    let (unpublished, der2) = ed25519("sender.example", "gone");
    let signed = dkim_sign(&message_from("bob@sender.example"), &unpublished, &der2);
    let v = run(
        &auth,
        Check {
            message: &signed,
            ..check()
        },
    )
    .await;
    assert_eq!(v.dkim[0].result, Verdict::PermError);
    assert_eq!(v.dkim[0].selector, "gone");
}

#[tokio::test]
async fn malformed_and_excess_signatures_are_bounded() {
    let dns = sender_dns("v=DMARC1; p=none");
    let auth = Authenticator::from_static(dns);
    let mut message = Vec::new();
    message
        .extend_from_slice(b"DKIM-Signature: v=1; a=rsa-sha256; d=Junk.example; s=x; garbage\r\n");
    for i in 0..40 {
        message.extend_from_slice(
            format!(
                "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=s{i}.example; s=s;\r\n\t\
                 h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n"
            )
            .as_bytes(),
        );
    }
    message.extend_from_slice(&message_from("bob@sender.example"));
    let v = run(
        &auth,
        Check {
            message: &message,
            peer: GOOD_IP,
            helo: "h.invalid",
            mail_from: Some("bob@sender.example"),
        },
    )
    .await;
    assert_eq!(v.dkim.len(), 10);
    assert!(v.dkim.iter().all(|c| c.result != Verdict::Pass));
    assert_eq!(v.dmarc, Verdict::Pass); // via SPF
}

// ---------------------------------------------------------------------------
// DMARC and the owner's settings

fn settings(reject: DmarcRejectAction, quarantine: DmarcQuarantineAction) -> UserSettings {
    UserSettings {
        dmarc_reject: reject,
        dmarc_quarantine: quarantine,
        ..UserSettings::default()
    }
}

#[tokio::test]
async fn dmarc_passes_via_aligned_dkim_when_spf_fails() {
    // The DKIM domain is a subdomain of the From domain: relaxed alignment.
    let (key, der) = ed25519("mail.sender.example", "s1");
    let dns = sender_dns("v=DMARC1; p=reject");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let auth = Authenticator::from_static(dns);
    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("bounce@sender.example"),
        },
    )
    .await;
    assert_eq!(v.spf_mail_from, Verdict::Fail);
    assert_eq!(v.dkim[0].result, Verdict::Pass);
    assert_eq!(v.dmarc, Verdict::Pass);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
    assert_eq!(v.from_domain.as_deref(), Some("sender.example"));
    assert_eq!(
        v.dmarc_action(&UserSettings::default()),
        DmarcAction::Accept
    );
}

#[tokio::test]
async fn dmarc_passes_via_aligned_spf_without_dkim() {
    let dns = sender_dns("v=DMARC1; p=reject");
    let auth = Authenticator::from_static(dns);
    let message = message_from("bob@sender.example");
    let v = run(
        &auth,
        Check {
            message: &message,
            peer: GOOD_IP,
            helo: "h.invalid",
            mail_from: Some("bounces@sender.example"),
        },
    )
    .await;
    assert_eq!(v.dkim, Vec::new());
    assert_eq!(v.spf_mail_from, Verdict::Pass);
    assert!(v.spf_aligned_pass(&domain("sender.example")));
    assert_eq!(v.dmarc, Verdict::Pass);
    assert_eq!(
        v.dmarc_action(&UserSettings::default()),
        DmarcAction::Accept
    );
}

#[tokio::test]
async fn dmarc_fails_when_passes_are_not_aligned() {
    // SPF passes for another domain, DKIM passes for another domain.
    let (key, der) = ed25519("esp.example", "s1");
    let dns = sender_dns("v=DMARC1; p=reject");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    dns.add_txt("esp.example", "v=spf1 ip4:198.51.100.0/24 -all");
    let auth = Authenticator::from_static(dns);
    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("bounce@esp.example"),
        },
    )
    .await;
    assert_eq!(v.spf_mail_from, Verdict::Pass);
    assert_eq!(v.dkim_summary(), Verdict::Pass);
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
}

async fn failing(dmarc_record: &str) -> AuthVerdict {
    let auth = Authenticator::from_static(sender_dns(dmarc_record));
    let message = message_from("ceo@sender.example");
    run(
        &auth,
        Check {
            message: &message,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("ceo@sender.example"),
        },
    )
    .await
}

#[tokio::test]
async fn dmarc_fail_under_p_reject_follows_the_owner() {
    let v = failing("v=DMARC1; p=reject").await;
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
    let s = settings(DmarcRejectAction::Reject, DmarcQuarantineAction::Quarantine);
    assert_eq!(v.dmarc_action(&s), DmarcAction::Reject);
    let s = settings(
        DmarcRejectAction::Quarantine,
        DmarcQuarantineAction::TagSubject,
    );
    assert_eq!(v.dmarc_action(&s), DmarcAction::Quarantine);

    assert_eq!(DMARC_REJECTED.code, 550);
    assert_eq!(DMARC_REJECTED.enhanced, (5, 7, 1));
    assert!(DMARC_REJECTED.to_string().starts_with("550 5.7.1 "));
    assert!(
        DMARC_REJECTED
            .text
            .contains("DMARC policy of the sender's domain")
    );
}

#[tokio::test]
async fn dmarc_fail_under_p_quarantine_follows_the_owner() {
    let v = failing("v=DMARC1; p=quarantine").await;
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Quarantine);
    let s = settings(DmarcRejectAction::Reject, DmarcQuarantineAction::Quarantine);
    assert_eq!(v.dmarc_action(&s), DmarcAction::Quarantine);
    let s = settings(DmarcRejectAction::Reject, DmarcQuarantineAction::TagSubject);
    assert_eq!(v.dmarc_action(&s), DmarcAction::TagSubject);
}

#[tokio::test]
async fn dmarc_fail_under_p_none_is_accepted() {
    let v = failing("v=DMARC1; p=none; rua=mailto:d@sender.example").await;
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::None);
    assert_eq!(
        v.dmarc_action(&UserSettings::default()),
        DmarcAction::Accept
    );
}

#[tokio::test]
async fn dmarc_test_mode_lowers_the_policy_one_step() {
    let v = failing("v=DMARC1; p=reject; t=y").await;
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Quarantine);
}

#[tokio::test]
async fn dmarc_subdomain_policy_applies_to_subdomains() {
    let dns = sender_dns("v=DMARC1; p=none; sp=reject");
    dns.add_ip("news.sender.example", ip("192.0.2.99"));
    let auth = Authenticator::from_static(dns);
    let message = message_from("info@news.sender.example");
    let v = run(
        &auth,
        Check {
            message: &message,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("info@news.sender.example"),
        },
    )
    .await;
    assert_eq!(v.from_domain.as_deref(), Some("news.sender.example"));
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
}

#[tokio::test]
async fn a_second_from_domain_cannot_dodge_the_first_ones_policy() {
    let dns = sender_dns("v=DMARC1; p=reject");
    dns.add_txt("attacker.example", "v=spf1 ip4:198.51.100.0/24 -all");
    dns.add_txt("_dmarc.attacker.example", "v=DMARC1; p=none");
    let auth = Authenticator::from_static(dns);
    let message = b"From: ceo@sender.example, me@attacker.example\r\n\
                    Subject: wire the money\r\n\r\nnow\r\n";
    let v = run(
        &auth,
        Check {
            message,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("me@attacker.example"),
        },
    )
    .await;
    assert_eq!(v.dmarc, Verdict::Fail);
    assert_eq!(v.dmarc_policy, DmarcPolicy::Reject);
    assert_eq!(v.from_domain.as_deref(), Some("sender.example"));
    assert_eq!(
        v.dmarc_action(&UserSettings::default()),
        DmarcAction::Reject
    );
}

#[tokio::test]
async fn unknown_records_give_none_everywhere() {
    let auth = Authenticator::from_static(Arc::new(StaticDns::new()));
    let message = message_from("bob@unknown.example");
    let v = run(
        &auth,
        Check {
            message: &message,
            peer: BAD_IP,
            helo: "mail.unknown.example",
            mail_from: Some("bob@unknown.example"),
        },
    )
    .await;
    assert_eq!(
        v,
        AuthVerdict {
            spf_helo: Verdict::None,
            spf_mail_from: Verdict::None,
            spf_domain: Some("unknown.example".into()),
            helo: Some("mail.unknown.example".into()),
            dkim: Vec::new(),
            arc: Verdict::None,
            dmarc: Verdict::None,
            dmarc_policy: DmarcPolicy::None,
            from_domain: Some("unknown.example".into()),
        }
    );
    assert_eq!(v.dkim_summary(), Verdict::None);
    assert_eq!(
        v.dmarc_action(&UserSettings::default()),
        DmarcAction::Accept
    );
}

#[tokio::test]
async fn a_check_cut_short_is_temperror_and_never_rejects() {
    let auth = Authenticator::from_static(sender_dns("v=DMARC1; p=reject"))
        .with_time_limit(Some(Duration::ZERO));
    let (key, der) = ed25519("sender.example", "s1");
    let signed = dkim_sign(&message_from("ceo@sender.example"), &key, &der);
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: BAD_IP,
            helo: "mail.sender.example",
            mail_from: Some("ceo@sender.example"),
        },
    )
    .await;
    assert_eq!(v.spf_helo, Verdict::TempError);
    assert_eq!(v.spf_mail_from, Verdict::TempError);
    assert_eq!(v.dkim[0].result, Verdict::TempError);
    assert_eq!(v.arc, Verdict::TempError);
    assert_eq!(v.dmarc, Verdict::TempError);
    let strict = settings(DmarcRejectAction::Reject, DmarcQuarantineAction::Quarantine);
    assert_eq!(v.dmarc_action(&strict), DmarcAction::Accept);
}

#[tokio::test]
async fn a_generous_time_limit_changes_nothing() {
    let dns = sender_dns("v=DMARC1; p=reject");
    let plain = spf_only(
        &dns,
        GOOD_IP,
        "mail.sender.example",
        Some("a@sender.example"),
    )
    .await;
    let auth = Authenticator::from_static(dns).with_time_limit(Some(Duration::from_secs(30)));
    let message = message_from("bob@sender.example");
    let limited = run(
        &auth,
        Check {
            message: &message,
            peer: GOOD_IP,
            helo: "mail.sender.example",
            mail_from: Some("a@sender.example"),
        },
    )
    .await;
    assert_eq!(limited, plain);
    assert_eq!(limited.dmarc, Verdict::Pass);
    assert_eq!(limited.spf_helo, Verdict::Pass);
}

#[test]
fn the_system_resolver_is_configured_or_refused() {
    // Building it reads /etc/resolv.conf and sends nothing.
    match Authenticator::system() {
        Ok(auth) => {
            let debug = format!("{auth:?}");
            assert!(debug.contains("system") && debug.contains("15s"), "{debug}");
        }
        Err(e) => assert!(matches!(e, AuthError::Resolver(_)), "{e}"),
    }
}

#[test]
fn authenticating_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let auth = Authenticator::from_static(Arc::new(StaticDns::new()));
    let input = AuthInput {
        message: b"",
        peer: ip(GOOD_IP),
        helo: "h",
        mail_from: None,
        authserv_id: HOST,
    };
    let future = auth.authenticate(&input);
    assert_send(&future);
    let auth2 = auth.clone();
    assert!(format!("{auth2:?}").contains("static"));
}

// ---------------------------------------------------------------------------
// The Authentication-Results field

#[tokio::test]
async fn authentication_results_field_text() {
    let (key, der) = ed25519("sender.example", "s2024");
    let dns = sender_dns("v=DMARC1; p=quarantine");
    dns.add_txt(&key.dns_name(), &key.dns_record());
    let auth = Authenticator::from_static(dns);
    let signed = dkim_sign(&message_from("bob@sender.example"), &key, &der);
    let v = run(
        &auth,
        Check {
            message: &signed,
            peer: GOOD_IP,
            helo: "mail.sender.example",
            mail_from: Some("bounce@sender.example"),
        },
    )
    .await;
    assert_eq!(
        v.authentication_results(HOST),
        "Authentication-Results: mx.alias.example;\r\n\
         \tspf=pass smtp.mailfrom=sender.example;\r\n\
         \tspf=pass smtp.helo=mail.sender.example;\r\n\
         \tdkim=pass header.d=sender.example header.s=s2024;\r\n\
         \tdmarc=pass (p=quarantine) header.from=sender.example;\r\n\
         \tarc=none\r\n"
    );
}

// ---------------------------------------------------------------------------
// Forged results

#[test]
fn forged_results_with_our_id_are_stripped_and_others_kept() {
    let message = b"Received: from x by y; Tue, 14 Nov 2023 22:13:20 +0000\r\n\
        Authentication-Results: mx.alias.example; dkim=pass header.d=bank.example\r\n\
        Authentication-Results: mx.other.example; spf=fail smtp.mailfrom=bank.example\r\n\
        authentication-results:\r\n\tMX.ALIAS.EXAMPLE;\r\n\tdmarc=pass header.from=bank.example\r\n\
        AUTHENTICATION-RESULTS: (forged) mx.alias.example. 1; spf=pass\r\n\
        Authentication-Results: \"mx.alias.example\"; arc=pass\r\n\
        Authentication-Results: mx.alias.example.evil; none\r\n\
        ARC-Authentication-Results: i=1; mx.alias.example; dkim=pass\r\n\
        From: ceo@bank.example\r\n\
        \r\n\
        Authentication-Results: mx.alias.example; body text is not a header\r\n";
    let stripped = strip_forged_results(message, "MX.Alias.Example");
    assert_eq!(
        String::from_utf8_lossy(&stripped),
        "Received: from x by y; Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Authentication-Results: mx.other.example; spf=fail smtp.mailfrom=bank.example\r\n\
         Authentication-Results: mx.alias.example.evil; none\r\n\
         ARC-Authentication-Results: i=1; mx.alias.example; dkim=pass\r\n\
         From: ceo@bank.example\r\n\
         \r\n\
         Authentication-Results: mx.alias.example; body text is not a header\r\n"
    );
    // Nothing to strip: the very same bytes.
    let clean = b"From: a@b.example\r\n\r\nhi\r\n";
    assert_eq!(&strip_forged_results(clean, HOST)[..], &clean[..]);
}

#[tokio::test]
async fn our_field_after_stripping_is_the_only_one_with_our_id() {
    let auth = Authenticator::from_static(sender_dns("v=DMARC1; p=reject"));
    let forged =
        b"Authentication-Results: mx.alias.example; dmarc=pass header.from=sender.example\r\n\
                   From: ceo@sender.example\r\nSubject: x\r\n\r\nbody\r\n";
    let v = run(
        &auth,
        Check {
            message: forged,
            peer: BAD_IP,
            helo: "h.invalid",
            mail_from: Some("ceo@sender.example"),
        },
    )
    .await;
    let stripped = strip_forged_results(forged, HOST);
    let mut delivered = v.authentication_results(HOST).into_bytes();
    delivered.extend_from_slice(&stripped);
    let text = String::from_utf8(delivered).expect("utf8");
    assert_eq!(text.matches("mx.alias.example").count(), 1);
    assert!(text.contains("dmarc=fail (p=reject) header.from=sender.example"));
}

// ---------------------------------------------------------------------------
// Hostile input

fn hostile_samples() -> Vec<Vec<u8>> {
    let mut samples: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        b"no header here".to_vec(),
        b"From:\r\n\r\n".to_vec(),
        b"From: <>\r\n\r\n".to_vec(),
        b"From: a@\xff\xfe.example\r\n\r\n".to_vec(),
        b"From: \"unterminated@x.example\r\n".to_vec(),
        b"DKIM-Signature: v=1; a=rsa-sha256; d=; s=; h=; bh=; b=\r\nFrom: a@x.example\r\n\r\n"
            .to_vec(),
        b"DKIM-Signature: v=1; a=ed25519-sha256; d=x.example; s=s; l=5; h=from; bh=AA==; b=AA==\r\n\r\n"
            .to_vec(),
        b"ARC-Seal: i=0; cv=pass\r\nARC-Message-Signature: i=99\r\nARC-Authentication-Results: i=x\r\n\r\n"
            .to_vec(),
        b"ARC-Seal: i=1; a=rsa-sha256; d=x.example; s=s; cv=none; b=AA==\r\n\
          ARC-Seal: i=1; a=rsa-sha256; d=x.example; s=s; cv=none; b=AA==\r\n\r\n"
            .to_vec(),
        b"Authentication-Results: (((((\r\n\r\n".to_vec(),
        b"\x00\x01\x02: \x03\r\n\r\n\x04".to_vec(),
    ];
    // Huge header block, long folded field, many From addresses.
    samples.push(b"X-A: b\r\n".repeat(20_000));
    let mut folded = b"Subject: x".to_vec();
    folded.extend(b"\r\n y".repeat(50_000));
    samples.push(folded);
    let mut froms = b"From: ".to_vec();
    for i in 0..500 {
        froms.extend(format!("a@d{i}.example, ").as_bytes());
    }
    froms.extend(b"z@last.example\r\n\r\n");
    samples.push(froms);
    // A signature listing a huge h= list over many headers.
    let mut wide =
        b"DKIM-Signature: v=1; a=ed25519-sha256; d=x.example; s=s; bh=AA==; b=AA==; h=".to_vec();
    for i in 0..5_000 {
        wide.extend(format!("x{i}:").as_bytes());
    }
    wide.extend(b"from\r\n");
    wide.extend(b"X-A: b\r\n".repeat(5_000));
    wide.extend(b"From: a@x.example\r\n\r\nbody");
    samples.push(wide);
    samples
}

#[tokio::test]
async fn hostile_messages_never_panic() {
    let dns = sender_dns("v=DMARC1; p=reject");
    dns.add_txt("x.example", "v=spf1 include:x.example -all");
    let auth = Authenticator::from_static(dns);
    let (key, _) = ed25519("fwd.example", "arc");
    for (i, sample) in hostile_samples().iter().enumerate() {
        for helo in ["", "[", "h.invalid", "\u{0}\u{ff}"] {
            let v = run(
                &auth,
                Check {
                    message: sample,
                    peer: BAD_IP,
                    helo,
                    mail_from: None,
                },
            )
            .await;
            let field = v.authentication_results(HOST);
            assert!(field.ends_with("\r\n"), "sample {i}");
            assert_ne!(v.dmarc, Verdict::Pass, "sample {i}");
            let _ = strip_forged_results(sample, HOST);
            let _ = auth.arc_seal(sample, &v, &key, HOST).await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        helo in "[ -~]{0,40}",
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = Authenticator::from_static(sender_dns("v=DMARC1; p=reject"));
        let sender = addr("bob@sender.example");
        let v = runtime.block_on(auth.authenticate(&AuthInput {
            message: &bytes,
            peer: ip(BAD_IP),
            helo: &helo,
            mail_from: Some(&sender),
            authserv_id: HOST,
        }));
        prop_assert!(v.authentication_results(HOST).ends_with("\r\n"));
        let stripped = strip_forged_results(&bytes, HOST);
        prop_assert!(stripped.len() <= bytes.len());
    }

    #[test]
    fn headerish_bytes_never_panic(
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    Just("From".to_owned()),
                    Just("DKIM-Signature".to_owned()),
                    Just("ARC-Seal".to_owned()),
                    Just("ARC-Message-Signature".to_owned()),
                    Just("ARC-Authentication-Results".to_owned()),
                    Just("Authentication-Results".to_owned()),
                    "[A-Za-z-]{1,12}",
                ],
                "[ -~]{0,80}",
                any::<bool>(),
            ),
            0..12,
        ),
        body in "[ -~\r\n]{0,200}",
    ) {
        let mut message = Vec::new();
        for (name, value, folded) in &fields {
            message.extend_from_slice(name.as_bytes());
            message.extend_from_slice(b": ");
            message.extend_from_slice(value.as_bytes());
            if *folded {
                message.extend_from_slice(b"\r\n\t");
                message.extend_from_slice(value.as_bytes());
            }
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(b"\r\n");
        message.extend_from_slice(body.as_bytes());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = Authenticator::from_static(sender_dns("v=DMARC1; p=reject"));
        let v = runtime.block_on(auth.authenticate(&AuthInput {
            message: &message,
            peer: ip(GOOD_IP),
            helo: "mail.sender.example",
            mail_from: None,
            authserv_id: HOST,
        }));
        prop_assert!(v.authentication_results(HOST).ends_with("\r\n"));
        let stripped = strip_forged_results(&message, HOST);
        // Whatever was removed named us.
        prop_assert!(stripped.len() <= message.len());
    }
}
