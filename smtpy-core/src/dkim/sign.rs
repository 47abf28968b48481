//! DKIM signatures (RFC 6376, RFC 8463): relaxed/relaxed, SHA-256.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::SigningKey as _;

use crate::address::DomainName;
use crate::forward::{HeaderField, header_block, header_fields};
use crate::model::{DkimAlgorithm, DkimKeyState, Domain};
use crate::secret::Keyring;
use crate::time::Timestamp;

use super::{DkimError, SigningKey};

/// The header fields signed, those present in the message, in this order.
///
/// `From` is over-signed: `h=` names it once more than the message holds
/// it, so a `From` field added after signing breaks the signature. Every
/// instance of a listed field is signed (bottom-up, as RFC 6376 §5.4.2
/// requires), up to [`MAX_INSTANCES`] per name.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Most instances of one header field name that are signed (the bottom
/// ones), so a message with thousands of `To` fields cannot make the
/// signature huge.
pub const MAX_INSTANCES: usize = 16;

/// Longest line the signature header is folded to, in octets (before the
/// line break). Only a `d=` domain or selector longer than this makes a
/// longer line.
const LINE_LEN: usize = 76;

/// Signs `message` with one key: a `DKIM-Signature` header field, folded,
/// ending in CRLF, to prepend to the message unchanged.
///
/// The signature is `c=relaxed/relaxed`, `a=rsa-sha256` or
/// `a=ed25519-sha256`, `t=` is `now` (whole seconds), with no `x=`, `l=` or
/// `i=` tag, over the [`SIGNED_HEADERS`] present.
///
/// ```text
/// DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=alias.example;
///     s=smtpy20261125r; t=1795564800; h=From:From:To:Subject:Date:Message-ID;
///     bh=<44 base64 characters>; b=<344 base64 characters, folded>
/// ```
///
/// Lines of the body may end in CRLF or a bare LF (taken as CRLF, as the
/// SMTP transport sends it). The header block ends at the first empty line
/// (as [`header_fields`] reads it). Time and memory are linear in the
/// message size.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::{SigningKey, sign_with};
/// use smtpy_core::model::DkimAlgorithm;
/// use smtpy_core::time::Timestamp;
///
/// let domain = DomainName::parse("alias.example")?;
/// let (key, _der) = SigningKey::generate(domain, "smtpy1e", DkimAlgorithm::Ed25519)?;
/// let message = b"From: shop@alias.example\r\nTo: me@mail.example\r\nSubject: Hi\r\n\r\nHello\r\n";
/// let header = sign_with(&key, message, Timestamp::from_unix_secs(1_795_564_800))?;
/// assert!(header.ends_with("\r\n"));
/// // Folded before 76 octets; unfolded:
/// let unfolded = header.replace("\r\n\t", " ");
/// assert!(unfolded.starts_with(
///     "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=alias.example; \
///      s=smtpy1e; t=1795564800; h=From:From:To:Subject; bh="
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`DkimError::Sign`] when the crypto library fails.
pub fn sign_with(key: &SigningKey, message: &[u8], now: Timestamp) -> Result<String, DkimError> {
    Prepared::new(message).sign(key, now)
}

/// What every signature of one message shares: the canonical signed
/// header fields, their names for `h=`, and the body hash.
struct Prepared {
    /// Relaxed canonical form of the signed fields, in `h=` order.
    headers: Vec<u8>,
    /// The `h=` list.
    names: Vec<&'static str>,
    /// Base64 SHA-256 of the relaxed canonical body.
    body_hash: String,
}

impl Prepared {
    fn new(message: &[u8]) -> Self {
        let fields: Vec<HeaderField<'_>> = header_fields(message).collect();
        let mut names = Vec::new();
        let mut headers = Vec::with_capacity(1024);
        for &name in SIGNED_HEADERS {
            for field in fields
                .iter()
                .rev()
                .filter(|f| f.is(name))
                .take(MAX_INSTANCES)
            {
                relaxed_header(field.name, field.value, &mut headers);
                names.push(name);
            }
            if name == "From" {
                // Over-signing: one more `From` than present signs its absence.
                names.push(name);
            }
        }
        Self {
            headers,
            names,
            body_hash: BASE64.encode(body_hash(body(message))),
        }
    }

    fn sign(&self, key: &SigningKey, now: Timestamp) -> Result<String, DkimError> {
        let algorithm = match key.algorithm() {
            DkimAlgorithm::Rsa2048 => "rsa-sha256",
            DkimAlgorithm::Ed25519 => "ed25519-sha256",
        };
        let mut header = Folded::new("DKIM-Signature:");
        header.word(" ", "v=1;");
        header.word(" ", &format!("a={algorithm};"));
        header.word(" ", "c=relaxed/relaxed;");
        header.word(" ", &format!("d={};", key.domain().as_ascii()));
        header.word(" ", &format!("s={};", key.selector()));
        header.word(" ", &format!("t={};", now.as_unix_secs().max(0)));
        let last = self.names.len().saturating_sub(1);
        for (i, name) in self.names.iter().enumerate() {
            let (sep, prefix) = if i == 0 { (" ", "h=") } else { ("", ":") };
            let end = if i == last { ";" } else { "" };
            header.word(sep, &format!("{prefix}{name}{end}"));
        }
        header.word(" ", &format!("bh={};", self.body_hash));
        header.word(" ", "b=");

        // The signature covers the signed fields and this header with an
        // empty b= value, relaxed, without its final CRLF.
        let mut data = Vec::with_capacity(self.headers.len() + 512);
        data.extend_from_slice(&self.headers);
        let text = header.text();
        let value = text.get("DKIM-Signature:".len()..).unwrap_or_default();
        relaxed_header(b"DKIM-Signature", value.as_bytes(), &mut data);
        data.truncate(data.len().saturating_sub(2));
        let signature = key
            .mail_auth_key()
            .sign(data.as_slice())
            .map_err(|e| DkimError::Sign(e.to_string()))?;

        let encoded = BASE64.encode(signature);
        let mut rest = encoded.as_str();
        while !rest.is_empty() {
            let mut room = LINE_LEN.saturating_sub(header.line_len);
            if room == 0 {
                header.fold();
                room = LINE_LEN - 1;
            }
            // Base64 is ASCII: any index is a character boundary.
            let (chunk, tail) = rest.split_at(room.min(rest.len()));
            header.push(chunk);
            rest = tail;
        }
        let mut out = header.text();
        out.push_str("\r\n");
        Ok(out)
    }
}

/// A header field built word by word, folded before a word that would
/// make the line longer than [`LINE_LEN`].
struct Folded {
    text: String,
    line_len: usize,
}

impl Folded {
    fn new(start: &str) -> Self {
        Self {
            text: start.to_owned(),
            line_len: start.len(),
        }
    }
    /// Appends `word`, preceded by `sep` (a space or nothing) on the same
    /// line, or by a fold (CRLF TAB) when it would not fit.
    fn word(&mut self, sep: &str, word: &str) {
        if self.line_len + sep.len() + word.len() > LINE_LEN {
            self.fold();
        } else {
            self.push(sep);
        }
        self.push(word);
    }
    fn fold(&mut self) {
        self.text.push_str("\r\n\t");
        self.line_len = 1;
    }
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.line_len += s.len();
    }
    fn text(&self) -> String {
        self.text.clone()
    }
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Relaxed header canonicalization (RFC 6376 §3.4.2): lower-case name,
/// unfolded value with runs of whitespace made one space and no whitespace
/// around the colon or at the end, then CRLF.
fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.trim_ascii_end().iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The body: what follows the empty line ending the header block (or the
/// first line that is not a header field, when there is no empty line).
fn body(message: &[u8]) -> &[u8] {
    let rest = message
        .get(header_block(message).len()..)
        .unwrap_or_default();
    rest.strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
        .unwrap_or(rest)
}

/// SHA-256 of the relaxed canonical body (RFC 6376 §3.4.4): runs of
/// whitespace made one space, whitespace at line ends removed, empty lines
/// at the end removed, every line ending in CRLF; an empty body stays empty.
fn body_hash(body: &[u8]) -> ring::digest::Digest {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut empty_lines = 0usize;
    let mut rest = body;
    while !rest.is_empty() {
        let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        rest = tail;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut written = false;
        let mut space = false;
        let mut words = line.split(|&b| is_wsp(b)).peekable();
        while let Some(word) = words.next() {
            if word.is_empty() {
                space = true;
                continue;
            }
            if !written {
                for _ in 0..empty_lines {
                    hash.update(b"\r\n");
                }
                empty_lines = 0;
                written = true;
            }
            if space {
                hash.update(b" ");
            }
            hash.update(word);
            // A following word is always preceded by whitespace.
            space = words.peek().is_some();
        }
        if written {
            hash.update(b"\r\n");
        } else {
            empty_lines += 1;
        }
    }
    hash.finish()
}

/// Signing keys by domain: [`DkimSigner::sign`] makes one signature per
/// loaded key of the sending domain (RSA and Ed25519 both when both are
/// active: dual signing, RFC 8463 §4).
///
/// Cheap to clone (clones share the keys) and safe to share between
/// threads; reload a domain with [`DkimSigner::load_domain`] when its keys
/// change. `Debug` shows domains and selectors only.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::{DkimSigner, SigningKey};
/// use smtpy_core::model::DkimAlgorithm;
/// use smtpy_core::time::Timestamp;
///
/// let domain = DomainName::parse("alias.example")?;
/// let signer = DkimSigner::new();
/// signer.insert(SigningKey::generate(domain.clone(), "smtpy1e", DkimAlgorithm::Ed25519)?.0);
/// let message = b"From: shop@alias.example\r\nSubject: Hi\r\n\r\nHello\r\n";
/// let now = Timestamp::from_unix_secs(1_795_564_800);
/// let headers = signer.sign(&domain, message, now)?.expect("the domain has a key");
/// assert_eq!(headers.matches("DKIM-Signature:").count(), 1);
/// let other = DomainName::parse("other.example")?;
/// assert_eq!(signer.sign(&other, message, now)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct DkimSigner {
    keys: Arc<RwLock<KeysByDomain>>,
}

/// Loaded keys by domain (A-label form), in signing order.
type KeysByDomain = HashMap<String, Arc<[Arc<SigningKey>]>>;

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut domains: Vec<(&String, Vec<&str>)> = keys
            .iter()
            .map(|(d, ks)| (d, ks.iter().map(|k| k.selector()).collect()))
            .collect();
        domains.sort();
        f.debug_struct("DkimSigner")
            .field("domains", &domains)
            .finish()
    }
}

/// Signing order: RSA first (the most widely verified), then by selector.
fn order(key: &SigningKey) -> (u8, String) {
    let rank = match key.algorithm() {
        DkimAlgorithm::Rsa2048 => 0,
        DkimAlgorithm::Ed25519 => 1,
    };
    (rank, key.selector().to_owned())
}

impl DkimSigner {
    /// An empty signer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` for its domain, replacing a key with the same selector.
    pub fn insert(&self, key: SigningKey) {
        let domain = key.domain().as_ascii().to_owned();
        let mut map = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Arc<SigningKey>> = map
            .get(&domain)
            .map(|ks| {
                ks.iter()
                    .filter(|k| !k.selector().eq_ignore_ascii_case(key.selector()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        list.push(Arc::new(key));
        list.sort_by_key(|k| order(k));
        map.insert(domain, list.into());
    }

    /// Replaces `domain`'s keys with its [`DkimKeyState::Active`] ones,
    /// opened with `keyring` (sealed with
    /// [`sealing_context`](super::sealing_context), as
    /// [`new_key`](super::new_key) does), and returns how many were loaded.
    /// A domain with no active key is removed (it is then sent unsigned).
    ///
    /// # Errors
    /// [`DkimError::Unseal`] or [`DkimError::InvalidKey`] for the first key
    /// that cannot be loaded; the domain's previous keys are then kept.
    pub fn load_domain(&self, domain: &Domain, keyring: &Keyring) -> Result<usize, DkimError> {
        let mut list = Vec::new();
        for stored in domain
            .dkim_keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
        {
            list.push(Arc::new(SigningKey::open(&domain.name, stored, keyring)?));
        }
        list.sort_by_key(|k| order(k));
        let count = list.len();
        let mut map = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if list.is_empty() {
            map.remove(domain.name.as_ascii());
        } else {
            map.insert(domain.name.as_ascii().to_owned(), list.into());
        }
        Ok(count)
    }

    /// Forgets every key of `domain` (a deleted domain).
    pub fn remove_domain(&self, domain: &DomainName) {
        self.keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(domain.as_ascii());
    }

    /// Whether `domain` has at least one key.
    #[must_use]
    pub fn has_keys(&self, domain: &DomainName) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(domain.as_ascii())
    }

    /// The `DKIM-Signature` header fields to prepend to `message` (each
    /// folded and ending in CRLF, concatenated): one per key of `domain`,
    /// RSA first. `Ok(None)` when the domain has no key.
    ///
    /// # Errors
    /// As [`sign_with`].
    pub fn sign(
        &self,
        domain: &DomainName,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Option<String>, DkimError> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(domain.as_ascii())
            .cloned();
        let Some(keys) = keys else {
            return Ok(None);
        };
        let prepared = Prepared::new(message);
        let mut out = String::new();
        for key in keys.iter() {
            out.push_str(&prepared.sign(key, now)?);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relaxed_headers(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in header_fields(message) {
            relaxed_header(f.name, f.value, &mut out);
        }
        out
    }

    fn canonical_body(body: &[u8]) -> ring::digest::Digest {
        body_hash(body)
    }

    fn sha(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn relaxed_canonicalization_of_the_rfc_example() {
        // RFC 6376 §3.4.5.
        let message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(relaxed_headers(message), b"a:X\r\nb:Y Z\r\n");
        assert_eq!(
            canonical_body(body(message)).as_ref(),
            sha(b" C\r\nD E\r\n").as_slice()
        );
    }

    #[test]
    fn relaxed_body_edge_cases() {
        for (body, canonical) in [
            (&b""[..], &b""[..]),
            (b"\r\n\r\n", b""),
            (b" \t \r\n", b""),
            (b"no newline", b"no newline\r\n"),
            (b"bare\nlf\n\n", b"bare\r\nlf\r\n"),
            (b"a\r\n\r\nb  \r\n \r\n", b"a\r\n\r\nb\r\n"),
            (b"\tlead  mid\t\tend \r\n", b" lead mid end\r\n"),
            (b"x\r\n\r\n\r\ny", b"x\r\n\r\n\r\ny\r\n"),
        ] {
            assert_eq!(
                canonical_body(body).as_ref(),
                sha(canonical).as_slice(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn body_starts_after_the_empty_line() {
        assert_eq!(body(b"A: 1\r\n\r\nbody\r\n"), b"body\r\n");
        assert_eq!(body(b"A: 1\n\nbody\n"), b"body\n");
        assert_eq!(body(b"A: 1\r\n"), b"");
        assert_eq!(body(b""), b"");
        // No empty line: the body starts at the first non-field line.
        assert_eq!(body(b"A: 1\r\nnot a field\r\n"), b"not a field\r\n");
    }

    fn key(algorithm: DkimAlgorithm) -> SigningKey {
        let domain = DomainName::parse("alias.example").expect("domain");
        SigningKey::generate(domain, "sel", algorithm)
            .expect("generate")
            .0
    }

    #[test]
    fn signature_header_is_folded_and_lists_present_headers() {
        let message = b"Received: x\r\nFrom: a@alias.example\r\nto: b@x.example\r\nTo: c@x.example\r\nSubject: s\r\nX-Other: y\r\n\r\nbody\r\n";
        let now = Timestamp::from_unix_secs(1_700_000_000);
        for algorithm in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048] {
            let header = sign_with(&key(algorithm), message, now).expect("sign");
            assert!(header.ends_with("\r\n"));
            for line in header.trim_end().split("\r\n") {
                assert!(line.len() <= LINE_LEN, "{line:?}");
            }
            let unfolded = header.replace("\r\n\t", " ");
            assert!(
                unfolded.contains(" h=From:From:To:To:Subject;"),
                "{unfolded}"
            );
            assert!(unfolded.contains(" t=1700000000;"), "{unfolded}");
            assert!(!unfolded.contains("Received"));
            assert!(!unfolded.contains("X-Other"));
            let b = unfolded.split(" b=").nth(1).expect("b=");
            let b: String = b.split_whitespace().collect();
            let len = BASE64.decode(b.trim()).expect("base64").len();
            assert_eq!(
                len,
                match algorithm {
                    DkimAlgorithm::Rsa2048 => 256,
                    _ => 64,
                }
            );
        }
    }

    #[test]
    fn hostile_messages_sign_without_panicking() {
        let k = key(DkimAlgorithm::Ed25519);
        let now = Timestamp::EPOCH;
        let many_to = "To: x@y.example\r\n".repeat(10_000) + "\r\nbody";
        let long_line = format!(
            "From: a@b.example\r\nSubject: {}\r\n\r\n{}",
            "x".repeat(100_000),
            " \t".repeat(100_000)
        );
        for message in [
            &b""[..],
            b"\r\n\r\n",
            b"no header at all",
            b"From: \xff\xfe\r\n\r\n\xff\x00\r",
            b"\tcontinuation first\r\n",
            many_to.as_bytes(),
            long_line.as_bytes(),
        ] {
            let header = sign_with(&k, message, now).expect("sign");
            assert!(header.starts_with("DKIM-Signature: v=1;"));
            // The signature stays small whatever the header count.
            assert!(header.len() < 1_000, "{}", header.len());
        }
    }

    #[test]
    fn signer_loads_active_keys_only_and_replaces_them() {
        use crate::dkim::{SelectorNaming, new_key};
        use crate::ids::UserId;
        use crate::secret::SecretKey;
        let keyring = Keyring::new(SecretKey::from_bytes("k", &[1; 32]).expect("key"));
        let now = Timestamp::from_unix_secs(1_795_564_800);
        let name = DomainName::parse("alias.example").expect("domain");
        let mut domain = Domain::new(name.clone(), UserId::new(), "t".into(), now);
        let naming = SelectorNaming::slots("smtpy").expect("naming");
        let first = new_key(&domain, DkimAlgorithm::Ed25519, now, &keyring, &naming).expect("k1");
        domain.dkim_keys.push(first);
        let second = new_key(&domain, DkimAlgorithm::Ed25519, now, &keyring, &naming).expect("k2");
        assert_eq!(second.state, DkimKeyState::Pending);
        domain.dkim_keys.push(second);

        let signer = DkimSigner::new();
        assert!(!signer.has_keys(&name));
        assert_eq!(signer.load_domain(&domain, &keyring), Ok(1));
        assert!(signer.has_keys(&name));
        let clone = signer.clone();
        let headers = clone
            .sign(&name, b"From: a@alias.example\r\n\r\n", now)
            .expect("sign");
        let headers = headers.expect("signed");
        assert_eq!(headers.matches("DKIM-Signature:").count(), 1);
        assert!(headers.contains("s=smtpy1e;"));
        assert_eq!(
            format!("{signer:?}"),
            r#"DkimSigner { domains: [("alias.example", ["smtpy1e"])] }"#
        );

        // A key that cannot be opened: error, previous keys kept.
        let mut broken = domain.clone();
        broken.dkim_keys[0].private_key.ciphertext[0] ^= 1;
        assert!(matches!(
            signer.load_domain(&broken, &keyring),
            Err(DkimError::Unseal { .. })
        ));
        assert!(signer.has_keys(&name));

        // No active key: the domain is forgotten.
        domain.dkim_keys[0].state = DkimKeyState::Retiring;
        domain.dkim_keys[1].state = DkimKeyState::Retiring;
        assert_eq!(signer.load_domain(&domain, &keyring), Ok(0));
        assert!(!clone.has_keys(&name));
        assert_eq!(
            clone.sign(&name, b"From: a@alias.example\r\n\r\n", now),
            Ok(None)
        );
    }

    #[test]
    fn insert_replaces_the_same_selector_and_orders_rsa_first() {
        let signer = DkimSigner::new();
        signer.insert(key(DkimAlgorithm::Ed25519));
        signer.insert(key(DkimAlgorithm::Ed25519));
        let domain = DomainName::parse("alias.example").expect("domain");
        let rsa = SigningKey::generate(domain.clone(), "rsa", DkimAlgorithm::Rsa2048)
            .expect("rsa")
            .0;
        signer.insert(rsa);
        let headers = signer
            .sign(&domain, b"From: a@alias.example\r\n\r\n", Timestamp::EPOCH)
            .expect("sign")
            .expect("signed");
        let algorithms: Vec<&str> = headers
            .split("a=")
            .skip(1)
            .map(|s| s.split(';').next().unwrap_or_default())
            .collect();
        assert_eq!(algorithms, ["rsa-sha256", "ed25519-sha256"]);
        signer.remove_domain(&domain);
        assert!(!signer.has_keys(&domain));
    }
}
