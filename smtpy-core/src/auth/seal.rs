//! ARC sealing (RFC 8617) of a message we forward.
//!
//! mail-auth computes the ARC-Message-Signature. The
//! ARC-Authentication-Results field is ours (the same results as our
//! `Authentication-Results`, folded), so the ARC-Seal over the set is
//! computed here, with mail-auth's relaxed header canonicalization and the
//! key's signing primitive.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mail_auth::arc::{ArcSealer, Set};
use mail_auth::common::crypto::{Algorithm, DkimKey, Sha256, SigningKey as MailAuthSigningKey};
use mail_auth::common::headers::{Header, HeaderWriter, Writable};
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticationResults, DkimResult};

use super::AuthError;
use super::check::{MAX_SIGNED_HEADERS, parse_message};
use super::verdict::{AuthVerdict, Verdict};
use crate::dkim::SigningKey;

/// The most ARC sets a chain may hold (RFC 8617 §4.2.1).
pub(crate) const MAX_ARC_SETS: usize = 50;

/// Header fields the ARC-Message-Signature covers (those present, plus the
/// absent ones so that adding them later breaks the signature).
const SEALED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

const AAR_NAME: &str = "ARC-Authentication-Results";
const AMS_NAME: &str = "ARC-Message-Signature";
const AS_NAME: &str = "ARC-Seal";

/// Width of the base64 runs in the seal's `b=` tag (lines stay under 78
/// columns).
const B64_RUN: usize = 64;

/// mail-auth signs with an owned key; this lends it ours.
struct Lent<'a>(&'a DkimKey);

impl MailAuthSigningKey for Lent<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn seal_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::Seal(e.to_string())
}

/// See [`Authenticator::arc_seal`](super::Authenticator::arc_seal).
pub(crate) fn arc_seal(
    message: &[u8],
    verdict: &AuthVerdict,
    key: &SigningKey,
    authserv_id: &str,
) -> Result<String, AuthError> {
    let parsed = parse_message(message).ok_or(AuthError::Malformed)?;
    let existing = parsed.as_headers.len();
    let consistent = existing == parsed.ams_headers.len()
        && existing == parsed.aar_headers.len()
        && !parsed.has_arc_errors;
    match verdict.arc {
        Verdict::None if existing == 0 && consistent => {}
        Verdict::Pass if existing > 0 && consistent => {}
        other => return Err(AuthError::ChainNotSealable(other)),
    }
    if existing >= MAX_ARC_SETS {
        return Err(AuthError::ChainNotSealable(Verdict::Fail));
    }

    // The existing sets, in instance order (mail-auth sorts them).
    let mut chain = ArcOutput::default();
    for (pos, ((seal, signature), results)) in parsed
        .as_headers
        .iter()
        .zip(&parsed.ams_headers)
        .zip(&parsed.aar_headers)
        .enumerate()
    {
        let instance = u32::try_from(pos + 1).unwrap_or(u32::MAX);
        if seal.header.i != instance
            || signature.header.i != instance
            || results.header.i != instance
            || signature.header.h.len() > MAX_SIGNED_HEADERS
        {
            return Err(AuthError::ChainNotSealable(Verdict::Fail));
        }
        chain = chain.with_set(Set {
            signature: Header::new(signature.name, signature.value, &signature.header),
            seal: Header::new(seal.name, seal.value, &seal.header),
            results: Header::new(results.name, results.value, &results.header),
        });
    }
    if existing > 0 {
        chain = chain.with_result(DkimResult::Pass);
    }
    let instance = existing + 1;

    // ARC-Message-Signature, from mail-auth's set.
    let placeholder = AuthenticationResults::new(authserv_id);
    let set = ArcSealer::from_key(Lent(key.mail_auth_key()))
        .domain(key.domain().as_ascii())
        .selector(key.selector())
        .headers(SEALED_HEADERS.iter().copied())
        .seal(&parsed, &placeholder, &chain)
        .map_err(seal_error)?;
    let written = set.to_header();
    let ams_start = written
        .find(&format!("\r\n{AMS_NAME}:"))
        .map(|i| i + 2)
        .ok_or_else(|| seal_error("no ARC-Message-Signature in the sealed set"))?;
    let ams_end = written
        .find(&format!("\r\n{AAR_NAME}:"))
        .map(|i| i + 2)
        .filter(|&end| end > ams_start)
        .ok_or_else(|| seal_error("no ARC-Authentication-Results in the sealed set"))?;
    let ams = &written[ams_start..ams_end];

    // ARC-Authentication-Results: our results.
    let mut aar = format!("{AAR_NAME}: i={instance}; ");
    verdict.write_results(&mut aar, authserv_id);

    // ARC-Seal over every set, this one last with an empty b=.
    let algorithm = match key.mail_auth_key().algorithm() {
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => return Err(seal_error("rsa-sha1 keys cannot seal")),
    };
    let cv = if existing == 0 { "none" } else { "pass" };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tags = format!(
        " i={instance}; a={algorithm}; cv={cv}; t={now};\r\n\td={}; s={};\r\n\tb=",
        key.domain().as_ascii(),
        key.selector()
    );
    let unsigned = format!("{tags};");
    let value_of =
        |field: &'_ str, name: &str| -> Vec<u8> { field.as_bytes()[name.len() + 1..].to_vec() };
    let aar_value = value_of(&aar, AAR_NAME);
    let ams_value = value_of(ams, AMS_NAME);
    let mut signed = Vec::with_capacity(1024);
    Canonicalization::Relaxed.canonicalize_headers(
        chain
            .sets()
            .iter()
            .flat_map(|s| {
                [
                    (s.results.name, s.results.value),
                    (s.signature.name, s.signature.value),
                    (s.seal.name, s.seal.value),
                ]
            })
            .chain([
                (AAR_NAME.as_bytes(), aar_value.as_slice()),
                (AMS_NAME.as_bytes(), ams_value.as_slice()),
                (AS_NAME.as_bytes(), unsigned.as_bytes()),
            ]),
        &mut signed,
    );
    let b = key
        .mail_auth_key()
        .sign(signed.as_slice())
        .map_err(seal_error)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(b);
    let mut seal = format!("{AS_NAME}:{tags}");
    for (i, run) in b64.as_bytes().chunks(B64_RUN).enumerate() {
        if i > 0 {
            seal.push_str("\r\n\t ");
        }
        seal.push_str(&String::from_utf8_lossy(run));
    }
    seal.push_str(";\r\n");

    Ok(format!("{seal}{ams}{aar}"))
}
