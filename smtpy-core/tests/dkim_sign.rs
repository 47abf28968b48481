//! DKIM signatures made by smtpy verify with independent verifiers: the
//! Python `dkimpy` package (through `tests/support/dkim_verify.py`) and
//! mail-auth's verifier, with the exact records `records_to_publish` gives.
//!
//! `dkimpy` and `PyNaCl` are installed with `pip install dkimpy PyNaCl`.
//! Without them the `dkimpy` half of each test is skipped with a notice on
//! stderr, except under `CI=true`, where it fails.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use smtpy_core::address::DomainName;
use smtpy_core::dkim::{
    DkimSigner, PublishMode, RotationPolicy, SelectorNaming, SigningKey, advance,
    records_to_publish, sign_with, start_rotation,
};
use smtpy_core::ids::UserId;
use smtpy_core::model::{DkimAlgorithm, Domain};
use smtpy_core::secret::{Keyring, SecretKey};
use smtpy_core::time::Timestamp;

/// 2024-03-09T16:00:00Z: in the past, as dkimpy refuses `t=` in the future.
fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_710_000_000)
}

/// DNS name → TXT value.
type Records = HashMap<String, String>;

struct Fixture {
    domain: Domain,
    keyring: Keyring,
    signer: DkimSigner,
}

impl Fixture {
    fn new(algorithms: &[DkimAlgorithm]) -> Self {
        let keyring = Keyring::new(SecretKey::generate("test").expect("keyring key"));
        let name = DomainName::parse("alias.example").expect("domain");
        let mut domain = Domain::new(name, UserId::new(), "token".into(), now());
        start_rotation(
            &mut domain,
            algorithms,
            now(),
            &keyring,
            &SelectorNaming::default(),
        )
        .expect("keys");
        let signer = DkimSigner::new();
        assert_eq!(
            signer.load_domain(&domain, &keyring).expect("load"),
            algorithms.len()
        );
        Self {
            domain,
            keyring,
            signer,
        }
    }

    fn records(&self) -> Records {
        records_to_publish(&self.domain, &PublishMode::Direct)
            .into_iter()
            .map(|r| (r.name, r.value))
            .collect()
    }

    /// The message with the signer's DKIM-Signature fields prepended.
    fn signed(&self, message: &[u8]) -> Vec<u8> {
        let headers = self
            .signer
            .sign(&self.domain.name, message, now())
            .expect("sign")
            .expect("the domain has keys");
        let mut out = headers.into_bytes();
        out.extend_from_slice(message);
        out
    }
}

/// A forward in alias mode: multipart/alternative, quoted-printable and
/// 8bit UTF-8 parts, an encoded-word subject, long folded headers, stray
/// whitespace and trailing empty lines.
fn forward_like() -> Vec<u8> {
    let mut m = String::new();
    m.push_str(
        "Received: from mx.sender.example by mx.alias.example; Sat, 9 Mar 2024 15:59:58 +0000\r\n",
    );
    m.push_str(
        "From: =?UTF-8?Q?Bj=C3=B6rn_via_shop?= <bjorn_at_sender.example_abc@alias.example>\r\n",
    );
    m.push_str("Reply-To: <bjorn_at_sender.example_abc@alias.example>\r\n");
    m.push_str("To: shop@alias.example\r\n");
    m.push_str(
        "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4g4oCUIElocmUgQmVzdGVsbHVuZyDinJM=?=\r\n",
    );
    m.push_str("Date: Sat, 9 Mar 2024 15:59:57 +0000\r\n");
    m.push_str("Message-ID: <20240309155957.4711@sender.example>\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: multipart/alternative;\r\n\tboundary=\"=_b1_5f3a\";\r\n\tcharset=\"utf-8\"\r\n");
    m.push_str("List-Unsubscribe: <https://sender.example/unsubscribe?u=0123456789abcdef0123456789abcdef&list=news>,\r\n <mailto:unsubscribe@sender.example?subject=unsubscribe%200123456789abcdef>\r\n");
    m.push_str("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    m.push_str("X-Mailer:   Sender   Mailer\t 1.0  \r\n");
    m.push_str("\r\n");
    m.push_str("This is a multi-part message in MIME format.\r\n");
    m.push_str("--=_b1_5f3a\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
    m.push_str("\r\n");
    m.push_str("Gr=C3=BC=C3=9Fe aus M=C3=BCnchen,   Ihre  Bestellung\t ist unterwegs.   \r\n");
    m.push_str("Eine sehr lange Zeile, die mit einem weichen Umbruch fortgesetzt wird, da=\r\n");
    m.push_str("mit sie kurz bleibt.\r\n");
    m.push_str("\r\n");
    m.push_str("--=_b1_5f3a\r\n");
    m.push_str("Content-Type: text/html; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n");
    m.push_str("\r\n");
    m.push_str("<p>Grüße aus München — Ihre Bestellung ✓</p>\r\n");
    m.push_str("--=_b1_5f3a--\r\n");
    m.push_str("\r\n\r\n");
    m.into_bytes()
}

/// A reply sent from an alias: threading headers (a long folded
/// References), Cc, plain 7bit text.
fn reply_like() -> Vec<u8> {
    let mut m = String::new();
    m.push_str("From: Shop Alias <shop@alias.example>\r\n");
    m.push_str("To: Bob <bob@sender.example>\r\n");
    m.push_str("Cc: orders@sender.example\r\n");
    m.push_str("Subject: Re: Your order #4711\r\n");
    m.push_str("Date: Sat, 9 Mar 2024 16:00:00 +0000\r\n");
    m.push_str("Message-ID: <reply.1710000000.9f8e@alias.example>\r\n");
    m.push_str("In-Reply-To: <20240309155957.4711@sender.example>\r\n");
    m.push_str("References: <20240301090000.1111@sender.example>\r\n <20240305120000.2222@sender.example>\r\n\t<20240309155957.4711@sender.example>\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    m.push_str("Content-Transfer-Encoding: 7bit\r\n");
    m.push_str("\r\n");
    m.push_str("Thanks, received.\r\n");
    m.push_str("\r\n");
    m.push_str("> On Sat, 9 Mar 2024, Bob wrote:\r\n");
    m.push_str("> Your order is on its way.\r\n");
    m.into_bytes()
}

// ---------------------------------------------------------------------------
// mail-auth

/// A TXT cache pre-filled with the records, so no DNS query is made.
struct StaticTxt(HashMap<Box<str>, Txt>);

impl StaticTxt {
    fn new(records: &Records) -> Self {
        let map = records
            .iter()
            .map(|(name, value)| {
                let key = DomainKey::parse(value.as_bytes()).expect("mail-auth parses our record");
                (
                    format!("{}.", name.to_ascii_lowercase()).into_boxed_str(),
                    Txt::DomainKey(Arc::new(key)),
                )
            })
            .collect();
        Self(map)
    }
}

impl ResolverCache<Box<str>, Txt> for StaticTxt {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }
    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: Instant) {}
}

/// mail-auth's verdict on each signature, top to bottom.
fn mail_auth_verdicts(message: &[u8], records: &Records) -> Vec<DkimResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let authenticator = MessageAuthenticator::new_cloudflare().expect("authenticator");
        let parsed = AuthenticatedMessage::parse(message).expect("mail-auth parses the message");
        let cache = StaticTxt::new(records);
        authenticator
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache))
            .await
            .iter()
            .map(|o| o.result().clone())
            .collect()
    })
}

fn assert_mail_auth_passes(message: &[u8], records: &Records, signatures: usize) {
    let verdicts = mail_auth_verdicts(message, records);
    assert_eq!(verdicts, vec![DkimResult::Pass; signatures]);
}

fn assert_mail_auth_fails(message: &[u8], records: &Records) {
    let verdicts = mail_auth_verdicts(message, records);
    assert!(!verdicts.is_empty());
    assert!(
        verdicts.iter().all(|v| *v != DkimResult::Pass),
        "{verdicts:?}"
    );
}

// ---------------------------------------------------------------------------
// dkimpy

fn verifier_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support/dkim_verify.py")
}

/// Whether dkimpy and PyNaCl can be imported; fails under `CI=true` when not.
fn dkimpy_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import dkim, nacl.signing"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dkimpy is required under CI: pip install dkimpy PyNaCl"
        );
        eprintln!(
            "SKIPPED: dkimpy verification (python3 with dkimpy and PyNaCl not found; pip install dkimpy PyNaCl)"
        );
    }
    ok
}

/// Runs the verifier script: (exit code, stdout).
fn dkimpy(message: &[u8], records: &Records) -> (i32, String) {
    let records = serde_json::to_string(records).expect("json");
    let mut child = Command::new("python3")
        .arg(verifier_script())
        .arg(records)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write message");
    let output = child.wait_with_output().expect("verifier output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.trim().is_empty() || output.status.code() != Some(0),
        "verifier stderr: {stderr}"
    );
    (output.status.code().unwrap_or(-1), stdout)
}

fn assert_dkimpy_passes(message: &[u8], records: &Records, algorithms: &[&str]) {
    let (code, out) = dkimpy(message, records);
    assert_eq!(code, 0, "dkimpy: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), algorithms.len(), "{out}");
    for (line, algorithm) in lines.iter().zip(algorithms) {
        assert!(line.starts_with("PASS d=alias.example s=smtpy"), "{out}");
        assert!(line.ends_with(&format!(" a={algorithm}")), "{out}");
    }
}

fn assert_dkimpy_fails(message: &[u8], records: &Records) {
    let (code, out) = dkimpy(message, records);
    assert_eq!(code, 1, "dkimpy should fail: {out}");
    assert!(!out.contains("PASS"), "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

// ---------------------------------------------------------------------------
// Tamperings that must break every signature.

fn replace_once(message: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).expect("utf-8");
    assert!(text.contains(from), "{from:?} not in message");
    text.replacen(from, to, 1).into_bytes()
}

fn tamperings(signed: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut extra_from = b"From: attacker@evil.example\r\n".to_vec();
    extra_from.extend_from_slice(signed);
    let body_at = signed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("body")
        + 4;
    let mut body_appended = signed.to_vec();
    body_appended.extend_from_slice(b"P.S. click here\r\n");
    let mut body_changed = signed.to_vec();
    body_changed[body_at] ^= 0x01;
    vec![
        ("body changed", body_changed),
        ("body appended", body_appended),
        (
            "subject changed",
            replace_once(signed, "Subject: ", "Subject: [spam] "),
        ),
        (
            "date changed",
            replace_once(signed, "Date: Sat, 9 Mar", "Date: Sun, 10 Mar"),
        ),
        ("second From added (over-signing)", extra_from),
    ]
}

fn check(algorithms: &[DkimAlgorithm], names: &[&str]) {
    let fixture = Fixture::new(algorithms);
    let records = fixture.records();
    assert_eq!(records.len(), algorithms.len());
    let use_dkimpy = dkimpy_available();
    for (label, message) in [("forward", forward_like()), ("reply", reply_like())] {
        let signed = fixture.signed(&message);
        assert!(
            signed.ends_with(&message),
            "{label}: the message is unchanged"
        );
        assert_mail_auth_passes(&signed, &records, algorithms.len());
        if use_dkimpy {
            assert_dkimpy_passes(&signed, &records, names);
        }
        for (what, tampered) in tamperings(&signed) {
            eprintln!("{label}: {what}");
            assert_mail_auth_fails(&tampered, &records);
            // Each dkimpy run starts Python (most of this test's time): the
            // reply is checked with the body and From tamperings only.
            let body_or_from = what.starts_with("body changed") || what.contains("From");
            if use_dkimpy && (label == "forward" || body_or_from) {
                assert_dkimpy_fails(&tampered, &records);
            }
        }
    }
    if !use_dkimpy {
        eprintln!("SKIPPED: the dkimpy half of this test");
    }
}

#[test]
fn rsa_2048_signatures_verify_independently() {
    check(&[DkimAlgorithm::Rsa2048], &["rsa-sha256"]);
}

#[test]
fn ed25519_signatures_verify_independently() {
    check(&[DkimAlgorithm::Ed25519], &["ed25519-sha256"]);
}

#[test]
fn dual_signatures_both_verify_independently() {
    // RSA is placed first (topmost).
    check(
        &[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048],
        &["rsa-sha256", "ed25519-sha256"],
    );
}

#[test]
fn a_wrong_published_key_fails() {
    let fixture = Fixture::new(&[DkimAlgorithm::Ed25519]);
    let signed = fixture.signed(&reply_like());
    // Publish another key's record under the same name.
    let other = Fixture::new(&[DkimAlgorithm::Ed25519]);
    let records = other.records();
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        fixture.records().keys().collect::<Vec<_>>()
    );
    assert_mail_auth_fails(&signed, &records);
    if dkimpy_available() {
        assert_dkimpy_fails(&signed, &records);
    }
}

#[test]
fn signatures_verify_through_a_rotation() {
    let mut fixture = Fixture::new(&[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048]);
    let policy = RotationPolicy::default();
    let t1 = now().saturating_add(Duration::from_secs(3 * 24 * 3600));
    let new = start_rotation(
        &mut fixture.domain,
        &[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048],
        t1,
        &fixture.keyring,
        &SelectorNaming::default(),
    )
    .expect("rotate");
    assert_eq!(new, ["smtpy20240312e", "smtpy20240312r"]);
    let t2 = t1.saturating_add(policy.publish_delay);
    assert_eq!(advance(&mut fixture.domain, t2, &policy).len(), 4);
    fixture
        .signer
        .load_domain(&fixture.domain, &fixture.keyring)
        .expect("reload");
    // Signed with the new keys; all four records are still published.
    let records = fixture.records();
    assert_eq!(records.len(), 4);
    let headers = fixture
        .signer
        .sign(&fixture.domain.name, &forward_like(), t2)
        .expect("sign")
        .expect("keys");
    assert!(headers.contains("s=smtpy20240312r;"), "{headers}");
    assert!(headers.contains("s=smtpy20240312e;"), "{headers}");
    let signed = [headers.as_bytes(), &forward_like()].concat();
    assert_mail_auth_passes(&signed, &records, 2);
    if dkimpy_available() {
        assert_dkimpy_passes(&signed, &records, &["rsa-sha256", "ed25519-sha256"]);
    }
}

#[test]
fn bare_lf_bodies_verify_as_crlf() {
    // A body with bare LF line ends is signed as its CRLF form, which is
    // what the SMTP transport sends.
    let fixture = Fixture::new(&[DkimAlgorithm::Ed25519]);
    let lf = b"From: shop@alias.example\r\nSubject: lf\r\n\r\nline one  \nline two\n\n";
    let key = SigningKey::open(
        &fixture.domain.name,
        &fixture.domain.dkim_keys[0],
        &fixture.keyring,
    )
    .expect("open");
    let header = sign_with(&key, lf, now()).expect("sign");
    let crlf = String::from_utf8_lossy(lf)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let signed = [header.as_bytes(), crlf.as_bytes()].concat();
    assert_mail_auth_passes(&signed, &fixture.records(), 1);
    if dkimpy_available() {
        assert_dkimpy_passes(&signed, &fixture.records(), &["ed25519-sha256"]);
    }
}

#[test]
fn the_verifier_script_rejects_an_unsigned_message() {
    if dkimpy_available() {
        let (code, out) = dkimpy(&reply_like(), &Records::new());
        assert_eq!(code, 1);
        assert_eq!(out.trim(), "FAIL no DKIM-Signature field");
    }
}

#[test]
fn debug_output_shows_no_key_material() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let fixture = Fixture::new(&[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048]);
    let name = fixture.domain.name.clone();
    for algorithm in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048] {
        let (key, der) = SigningKey::generate(name.clone(), "dbg", algorithm).expect("generate");
        let debug = format!("{key:?} {key:#?}");
        assert!(
            debug.contains("dbg") && debug.contains("alias.example"),
            "{debug}"
        );
        // Neither the private key (base64, hex or as a byte list) nor any
        // 8-byte run of it appears.
        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!debug.contains(&b64.encode(&der)[..16]));
        assert!(!debug.contains(&hex[..16]));
        for window in der.windows(8).step_by(8) {
            let list = format!("{window:?}");
            assert!(!debug.contains(list.trim_matches(['[', ']'])), "{debug}");
        }
    }
    // The stored keys and the signer print no ciphertext or key either.
    let debug = format!("{:?} {:?}", fixture.domain, fixture.signer);
    for stored in &fixture.domain.dkim_keys {
        let bytes = &stored.private_key.ciphertext;
        let list = format!("{:?}", &bytes[..8]);
        assert!(!debug.contains(list.trim_matches(['[', ']'])), "{debug}");
        assert!(!debug.contains(&b64.encode(bytes)[..16]));
        let opened = fixture
            .keyring
            .open(
                &stored.private_key,
                &smtpy_core::dkim::sealing_context(&name, &stored.selector),
            )
            .expect("open");
        assert!(!debug.contains(&b64.encode(opened.expose())[..16]));
        assert_eq!(format!("{opened:?}"), "Secret(<redacted>)");
    }
    assert!(
        debug.contains("smtpy20240309e") && debug.contains("smtpy20240309r"),
        "{debug}"
    );
}
