//! CPU cost of the per-message pipeline at the end of DATA: parse, verify
//! (SPF, DKIM, DMARC, ARC against fed DNS), alias-mode rewrite, DKIM sign —
//! with RSA-2048 and Ed25519 signing keys, for 4 KB and 100 KB messages.
//!
//! ```sh
//! cargo bench --bench pipeline
//! ```
//!
//! Each stage is measured alone and the whole pipeline together; no store
//! and no network (the DNS answers come from memory), so the figures are
//! the CPU the pipeline adds to every message.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::auth::{AuthInput, Authenticator};
use smtpy_core::dkim::{DkimSigner, SigningKey, sign_with};
use smtpy_core::dns::StaticDns;
use smtpy_core::model::DkimAlgorithm;
use smtpy_core::rewrite::alias_mode::{self, AliasModePlan};
use smtpy_core::rules::ParsedMessage;
use smtpy_core::time::Timestamp;

const SENDER_DOMAIN: &str = "sender.example";
const ALIAS_DOMAIN: &str = "alias.example";

fn domain(d: &str) -> DomainName {
    DomainName::parse(d).expect("domain")
}

/// A plain-text message of about `size` bytes from the sender's domain.
fn message(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bob Sender <bob@{SENDER_DOMAIN}>\r\nTo: shop@{ALIAS_DOMAIN}\r\nSubject: A message for the pipeline bench\r\nMessage-ID: <bench@{SENDER_DOMAIN}>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

struct Setup {
    auth: Authenticator,
    signed: Vec<u8>,
    signer: DkimSigner,
}

fn setup(size: usize, alg: DkimAlgorithm) -> Setup {
    let dns = Arc::new(StaticDns::new());
    // The sender signs with Ed25519 and publishes SPF and DMARC.
    let (sender_key, _) =
        SigningKey::generate(domain(SENDER_DOMAIN), "s1", DkimAlgorithm::Ed25519).expect("key");
    dns.add_txt(&sender_key.dns_name(), &sender_key.dns_record());
    dns.add_txt(SENDER_DOMAIN, "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt(&format!("_dmarc.{SENDER_DOMAIN}"), "v=DMARC1; p=reject");
    let raw = message(size);
    let now = Timestamp::from_unix_secs(1_795_000_000);
    let sig = sign_with(&sender_key, &raw, now).expect("sign");
    let mut signed = sig.into_bytes();
    signed.extend_from_slice(&raw);
    // Our key for the alias domain.
    let (ours, _) = SigningKey::generate(domain(ALIAS_DOMAIN), "smtpy1", alg).expect("key");
    let signer = DkimSigner::new();
    signer.insert(ours);
    Setup {
        auth: Authenticator::from_static(dns),
        signed,
        signer,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let alias = EmailAddress::parse(&format!("shop@{ALIAS_DOMAIN}")).expect("alias");
    let sender = EmailAddress::parse(&format!("bob@{SENDER_DOMAIN}")).expect("sender");
    let mut reverse = HashMap::new();
    reverse.insert(
        sender.canonical(),
        EmailAddress::parse(&format!("ra_bench@{ALIAS_DOMAIN}")).expect("reverse"),
    );
    let now = Timestamp::from_unix_secs(1_795_000_000);
    let alias_domain = domain(ALIAS_DOMAIN);
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    for size in [4 * 1024, 100 * 1024] {
        for alg in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048] {
            let s = setup(size, alg);
            let label = format!(
                "{}KB/{}",
                size / 1024,
                match alg {
                    DkimAlgorithm::Ed25519 => "ed25519",
                    _ => "rsa2048",
                }
            );
            let mut g = c.benchmark_group("pipeline");
            g.throughput(Throughput::Elements(1));
            let plan = AliasModePlan {
                alias: &alias,
                sender_format: "{name} via smtpy",
                reverse: &reverse,
            };
            let input = AuthInput {
                message: &s.signed,
                peer,
                helo: "mail.sender.example",
                mail_from: Some(&sender),
                authserv_id: "mx.smtpy.example",
            };
            if alg == DkimAlgorithm::Ed25519 {
                // Stages that do not depend on our key algorithm: once per size.
                g.bench_function(BenchmarkId::new("parse", size / 1024), |b| {
                    b.iter(|| black_box(ParsedMessage::parse(black_box(&s.signed))));
                });
                g.bench_function(BenchmarkId::new("verify", size / 1024), |b| {
                    b.iter(|| black_box(rt.block_on(s.auth.authenticate(black_box(&input)))));
                });
                g.bench_function(BenchmarkId::new("rewrite", size / 1024), |b| {
                    b.iter(|| {
                        black_box(
                            alias_mode::rewrite(black_box(&s.signed), &plan).expect("rewrite"),
                        )
                    });
                });
            }
            g.bench_function(BenchmarkId::new("sign", &label), |b| {
                b.iter(|| {
                    black_box(
                        s.signer
                            .sign(&alias_domain, black_box(&s.signed), now)
                            .expect("sign"),
                    )
                });
            });
            g.bench_function(BenchmarkId::new("whole", &label), |b| {
                b.iter(|| {
                    let parsed = ParsedMessage::parse(&s.signed);
                    let verdict = rt.block_on(s.auth.authenticate(&input));
                    let mut out = alias_mode::rewrite(&s.signed, &plan).expect("rewrite");
                    let ar = verdict.authentication_results("mx.smtpy.example");
                    let mut with_ar = ar.into_bytes();
                    with_ar.append(&mut out);
                    let sig = s
                        .signer
                        .sign(&alias_domain, &with_ar, now)
                        .expect("sign")
                        .expect("a key");
                    black_box((parsed, sig.len() + with_ar.len()))
                });
            });
            g.finish();
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3));
    bench(&mut c);
    c.final_summary();
}
