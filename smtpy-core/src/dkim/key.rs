//! One loaded DKIM private key.

use std::fmt;

use mail_auth::common::crypto::{DkimKey as MailAuthKey, Ed25519Key, RsaKey, Sha256};

use crate::address::DomainName;
use crate::model::{DkimAlgorithm, DkimKey};
use crate::secret::{Keyring, SecretError};

/// Why a DKIM key or signature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DkimError {
    /// The private key bytes are not a key of the stated algorithm.
    #[error("invalid {algorithm:?} private key: {reason}")]
    InvalidKey {
        /// The algorithm expected.
        algorithm: DkimAlgorithm,
        /// What the parser said.
        reason: String,
    },
    /// The selector is not a valid DNS label sequence.
    #[error("invalid DKIM selector {0:?}")]
    InvalidSelector(String),
    /// Key generation failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// Signing failed (malformed message, crypto failure).
    #[error("signing failed: {0}")]
    Sign(String),
    /// A new private key could not be sealed under the operator's keyring.
    #[error("could not seal the private key: {0}")]
    Seal(SecretError),
    /// A stored private key could not be opened (unknown keyring key,
    /// tampered data, or a key copied from another domain or selector).
    #[error("could not open the private key of selector {selector:?}: {source}")]
    Unseal {
        /// The selector of the key.
        selector: String,
        /// What the keyring said.
        source: SecretError,
    },
    /// A new key of this algorithm is already waiting to be activated.
    #[error("a {0:?} key rotation is already in progress")]
    RotationInProgress(DkimAlgorithm),
    /// Both fixed selector slots of this algorithm are still in use (the
    /// previous key is still in its grace period).
    #[error("no free {0:?} selector slot: the previous key is still published")]
    NoFreeSlot(DkimAlgorithm),
    /// A selector prefix is not a letter followed by letters and digits
    /// (at most [`MAX_PREFIX_LEN`](super::MAX_PREFIX_LEN) bytes).
    #[error("invalid selector prefix {0:?}")]
    InvalidPrefix(String),
}

/// The associated data a DKIM private key is sealed with:
/// `dkim:<domain in A-label form>:<selector>`.
///
/// Binding the domain and selector means a sealed key copied to another
/// domain's row, or to another selector, fails to open.
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::sealing_context;
/// let domain = DomainName::parse("alias.example")?;
/// assert_eq!(sealing_context(&domain, "smtpy1e"), b"dkim:alias.example:smtpy1e");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn sealing_context(domain: &DomainName, selector: &str) -> Vec<u8> {
    format!("dkim:{}:{selector}", domain.as_ascii()).into_bytes()
}

/// A private key ready to sign for `domain` under `selector`.
///
/// RSA keys are PKCS#1 DER (as generated) or PKCS#8 DER; Ed25519 keys are
/// PKCS#8 DER. The key material is never printed (`Debug` shows only the
/// domain, selector and algorithm).
///
/// ```
/// use smtpy_core::address::DomainName;
/// use smtpy_core::dkim::SigningKey;
/// use smtpy_core::model::DkimAlgorithm;
/// let domain = DomainName::parse("alias.example")?;
/// let (key, _private_der) = SigningKey::generate(domain, "smtpy1e", DkimAlgorithm::Ed25519)?;
/// assert_eq!(key.dns_name(), "smtpy1e._domainkey.alias.example");
/// assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
/// assert!(!format!("{key:?}").contains(&key.dns_record()[22..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SigningKey {
    domain: DomainName,
    selector: String,
    algorithm: DkimAlgorithm,
    key: MailAuthKey,
    public_key: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("domain", &self.domain.as_ascii())
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// True if `selector` is one or more DNS labels (letters, digits, `-`),
/// dot-separated, at most 63 bytes each.
fn valid_selector(selector: &str) -> bool {
    !selector.is_empty()
        && selector.len() <= 253
        && selector.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl SigningKey {
    /// Loads a private key.
    ///
    /// # Errors
    /// [`DkimError::InvalidSelector`] or [`DkimError::InvalidKey`].
    pub fn from_der(
        domain: DomainName,
        selector: &str,
        algorithm: DkimAlgorithm,
        der: &[u8],
    ) -> Result<Self, DkimError> {
        if !valid_selector(selector) {
            return Err(DkimError::InvalidSelector(selector.to_owned()));
        }
        let invalid = |e: mail_auth::Error| DkimError::InvalidKey {
            algorithm,
            reason: e.to_string(),
        };
        let (key, public_key) = match algorithm {
            DkimAlgorithm::Rsa2048 => {
                use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
                let k = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(
                    PrivatePkcs1KeyDer::from(der.to_vec()),
                ))
                .or_else(|_| {
                    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                        der.to_vec(),
                    )))
                })
                .map_err(invalid)?;
                let public = rsa_spki(&k.public_key());
                (MailAuthKey::Rsa(k), public)
            }
            DkimAlgorithm::Ed25519 => {
                let k = Ed25519Key::from_pkcs8_der(der).map_err(invalid)?;
                let public = k.public_key();
                (MailAuthKey::Ed25519(k), public)
            }
        };
        Ok(Self {
            domain,
            selector: selector.to_owned(),
            algorithm,
            key,
            public_key,
        })
    }

    /// Opens a stored key of `domain` with `keyring` (sealed with
    /// [`sealing_context`]) and loads it, whatever its state.
    ///
    /// # Errors
    /// [`DkimError::Unseal`] when the keyring cannot open it, otherwise as
    /// [`SigningKey::from_der`].
    pub fn open(domain: &DomainName, key: &DkimKey, keyring: &Keyring) -> Result<Self, DkimError> {
        let der = keyring
            .open(&key.private_key, &sealing_context(domain, &key.selector))
            .map_err(|source| DkimError::Unseal {
                selector: key.selector.clone(),
                source,
            })?;
        Self::from_der(domain.clone(), &key.selector, key.algorithm, der.expose())
    }

    /// Generates a new key; returns it with its private key bytes (to be
    /// sealed with [`Keyring`](crate::secret::Keyring) before storing).
    ///
    /// RSA-2048 generation takes a noticeable fraction of a second.
    ///
    /// # Errors
    /// [`DkimError::InvalidSelector`] or [`DkimError::Generate`].
    pub fn generate(
        domain: DomainName,
        selector: &str,
        algorithm: DkimAlgorithm,
    ) -> Result<(Self, Vec<u8>), DkimError> {
        use mail_auth::dkim::generate::DkimKeyPair;
        let pair = match algorithm {
            DkimAlgorithm::Rsa2048 => DkimKeyPair::generate_rsa(2048),
            DkimAlgorithm::Ed25519 => DkimKeyPair::generate_ed25519(),
        }
        .map_err(|e| DkimError::Generate(e.to_string()))?;
        let (private, _) = pair.into_inner();
        let key = Self::from_der(domain, selector, algorithm, &private)?;
        Ok((key, private))
    }

    /// The signing domain (`d=`).
    #[must_use]
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
    /// The selector (`s=`).
    #[must_use]
    pub fn selector(&self) -> &str {
        &self.selector
    }
    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }
    /// The public key as published in `p=`, before base64: for RSA the
    /// DER `SubjectPublicKeyInfo` (the usual `MIIBIjANBgkq…` form), for
    /// Ed25519 the 32 raw key bytes (RFC 8463).
    #[must_use]
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
    /// The DNS name to publish the key under:
    /// `<selector>._domainkey.<domain>`.
    #[must_use]
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain.as_ascii())
    }
    /// The exact TXT record value to publish (`v=DKIM1; k=…; p=…`).
    #[must_use]
    pub fn dns_record(&self) -> String {
        use base64::Engine as _;
        let k = match self.algorithm {
            DkimAlgorithm::Rsa2048 => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        };
        format!(
            "v=DKIM1; k={k}; p={}",
            base64::engine::general_purpose::STANDARD.encode(&self.public_key)
        )
    }
    /// The mail-auth key, for signing and sealing inside this crate.
    pub(crate) fn mail_auth_key(&self) -> &MailAuthKey {
        &self.key
    }
}

/// DER length octets for a content of `len` bytes.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// Wraps a PKCS#1 `RSAPublicKey` in a `SubjectPublicKeyInfo` (RFC 5280)
/// with the `rsaEncryption` algorithm, the form DKIM records carry.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bit_string);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALGORITHM.len() + bit_string.len(), &mut out);
    out.extend_from_slice(ALGORITHM);
    out.extend_from_slice(&bit_string);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> DomainName {
        DomainName::parse("alias.example").expect("domain")
    }

    #[test]
    fn ed25519_round_trips_through_der() {
        let (key, der) =
            SigningKey::generate(domain(), "s1", DkimAlgorithm::Ed25519).expect("generate");
        let loaded =
            SigningKey::from_der(domain(), "s1", DkimAlgorithm::Ed25519, &der).expect("load");
        assert_eq!(key.public_key(), loaded.public_key());
        assert!(loaded.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(loaded.dns_name(), "s1._domainkey.alias.example");
    }

    #[test]
    fn rsa_public_key_is_published_as_subject_public_key_info() {
        let (key, der) =
            SigningKey::generate(domain(), "r1", DkimAlgorithm::Rsa2048).expect("generate");
        // The fixed prefix of every 2048-bit RSA SubjectPublicKeyInfo with a
        // 257-byte modulus INTEGER.
        let record = key.dns_record();
        assert!(
            record.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
            "{record}"
        );
        assert_eq!(key.public_key().len(), 294);
        let loaded =
            SigningKey::from_der(domain(), "r1", DkimAlgorithm::Rsa2048, &der).expect("load");
        assert_eq!(loaded.public_key(), key.public_key());
    }

    #[test]
    fn der_lengths() {
        let mut out = Vec::new();
        der_len(0x7f, &mut out);
        der_len(0x80, &mut out);
        der_len(0x10f, &mut out);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x01, 0x0f]);
    }

    #[test]
    fn open_checks_the_sealing_context() {
        use crate::model::DkimKeyState;
        use crate::secret::SecretKey;
        use crate::time::Timestamp;
        let keyring = Keyring::new(SecretKey::from_bytes("k1", &[9; 32]).expect("key"));
        let (key, der) =
            SigningKey::generate(domain(), "s1", DkimAlgorithm::Ed25519).expect("generate");
        let stored = DkimKey {
            selector: "s1".into(),
            algorithm: DkimAlgorithm::Ed25519,
            private_key: keyring
                .seal(&der, &sealing_context(&domain(), "s1"))
                .expect("seal"),
            dns_record: key.dns_record(),
            state: DkimKeyState::Active,
            created_at: Timestamp::EPOCH,
            state_since: Timestamp::EPOCH,
        };
        let opened = SigningKey::open(&domain(), &stored, &keyring).expect("open");
        assert_eq!(opened.public_key(), key.public_key());
        // The same ciphertext under another selector or domain does not open.
        let moved = DkimKey {
            selector: "s2".into(),
            ..stored.clone()
        };
        assert!(matches!(
            SigningKey::open(&domain(), &moved, &keyring),
            Err(DkimError::Unseal { .. })
        ));
        let other = DomainName::parse("other.example").expect("domain");
        assert!(matches!(
            SigningKey::open(&other, &stored, &keyring),
            Err(DkimError::Unseal { .. })
        ));
    }

    #[test]
    fn bad_selector_and_bad_key_are_refused() {
        assert!(matches!(
            SigningKey::from_der(domain(), "bad selector", DkimAlgorithm::Ed25519, b""),
            Err(DkimError::InvalidSelector(_))
        ));
        assert!(matches!(
            SigningKey::from_der(domain(), "s1", DkimAlgorithm::Rsa2048, b"not a key"),
            Err(DkimError::InvalidKey { .. })
        ));
    }
}
