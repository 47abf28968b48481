//! Encryption at rest for secret material (DKIM private keys, TOTP seeds).
//!
//! The operator supplies one or more 256-bit key-encryption keys
//! ([`SecretKey`]), each with an id so keys can rotate. A [`Keyring`] seals
//! new secrets under its *current* key and can still open secrets sealed
//! under *previous* keys; [`Keyring::needs_reseal`] tells which stored secrets
//! should be re-encrypted after a rotation.
//!
//! Sealing uses ChaCha20-Poly1305 (via `ring`) with a fresh random 96-bit
//! nonce per seal. The caller-supplied `context` is authenticated as
//! associated data: seal a DKIM key with e.g. `b"dkim:example.com:sel1"` and a
//! ciphertext copied to another row (another domain or selector) fails to
//! open.
//!
//! Stores keep only [`EncryptedSecret`]s; opened plaintext is returned as a
//! [`Secret`], whose `Debug` is redacted and whose bytes are overwritten when
//! it is dropped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

/// Length in bytes of a [`SecretKey`].
pub const KEY_LEN: usize = 32;

/// Length in bytes of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 255;

/// Version byte that starts [`EncryptedSecret::to_bytes`] output.
const FORMAT_VERSION: u8 = 1;

/// Overwrite `bytes` with zeros in a way the optimiser is unlikely to elide.
///
/// This is best effort: without `unsafe` volatile writes there is no hard
/// guarantee, but `black_box` keeps the stores observable in practice.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&*bytes);
}

/// Overwrite the initialised contents and the spare capacity of `v`.
fn wipe_vec(v: &mut Vec<u8>) {
    wipe(v.as_mut_slice());
    for slot in v.spare_capacity_mut() {
        slot.write(0);
    }
    std::hint::black_box(&*v);
}

/// Errors from key handling, sealing and opening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Key material was not exactly [`KEY_LEN`] bytes.
    #[error("secret key must be {KEY_LEN} bytes, got {len}")]
    KeyLength {
        /// The length that was supplied.
        len: usize,
    },
    /// Text was not valid base64.
    #[error("invalid base64")]
    Base64,
    /// A key id was empty, longer than [`MAX_KEY_ID_LEN`] bytes, or contained
    /// whitespace or control characters.
    #[error("invalid key id")]
    KeyId,
    /// The sealed secret names a key the keyring does not hold.
    #[error("unknown key id {id:?}")]
    UnknownKey {
        /// The key id recorded in the sealed secret.
        id: String,
    },
    /// Decryption failed: wrong key, tampered data, or wrong context.
    #[error("decryption failed (wrong key, tampered data, or wrong context)")]
    Decrypt,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// An encoded [`EncryptedSecret`] could not be parsed.
    #[error("malformed encrypted secret")]
    Malformed,
}

/// Check a key id: 1..=[`MAX_KEY_ID_LEN`] bytes, no whitespace or control
/// characters (ids end up in logs, `Debug` output and key file names).
fn validate_key_id(id: &str) -> Result<(), SecretError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(SecretError::KeyId) }
}

/// A 256-bit key-encryption key with an id, so keys can rotate.
///
/// `Debug` prints the id only, never the key bytes. The bytes are overwritten
/// when the key is dropped (best effort).
pub struct SecretKey {
    id: String,
    bytes: [u8; KEY_LEN],
}

impl SecretKey {
    /// A key from raw bytes, which must be exactly [`KEY_LEN`] (32) bytes.
    ///
    /// # Errors
    ///
    /// [`SecretError::KeyLength`] for any other length, [`SecretError::KeyId`]
    /// for an invalid id.
    pub fn from_bytes(id: &str, bytes: &[u8]) -> Result<Self, SecretError> {
        validate_key_id(id)?;
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| SecretError::KeyLength { len: bytes.len() })?;
        Ok(SecretKey {
            id: id.to_owned(),
            bytes: array,
        })
    }

    /// A key from standard (padded) base64. Surrounding whitespace is
    /// trimmed, so a key file ending in a newline works.
    ///
    /// # Errors
    ///
    /// [`SecretError::Base64`] for invalid base64, otherwise as
    /// [`SecretKey::from_bytes`].
    pub fn from_base64(id: &str, text: &str) -> Result<Self, SecretError> {
        validate_key_id(id)?;
        let mut decoded = BASE64
            .decode(text.trim())
            .map_err(|_| SecretError::Base64)?;
        let key = SecretKey::from_bytes(id, &decoded);
        wipe_vec(&mut decoded);
        key
    }

    /// A new random key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`SecretError::Random`] if the system RNG fails,
    /// [`SecretError::KeyId`] for an invalid id.
    pub fn generate(id: &str) -> Result<Self, SecretError> {
        validate_key_id(id)?;
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretError::Random)?;
        Ok(SecretKey {
            id: id.to_owned(),
            bytes,
        })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key bytes as standard base64, for writing a new key file.
    ///
    /// **The result is the secret key itself**: write it only to a file with
    /// restrictive permissions and never log it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes)
    }

    /// A `ring` AEAD key for one operation.
    fn aead_key(&self) -> Result<LessSafeKey, SecretError> {
        // Only fails for a wrong key length, which the type rules out.
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &self.bytes).map_err(|_| SecretError::Decrypt)?;
        Ok(LessSafeKey::new(unbound))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

/// A keyring: one current key used for sealing, older keys kept for opening.
///
/// Key ids should be unique. If several keys share an id, opening tries each
/// of them (current key first).
#[derive(Debug)]
pub struct Keyring {
    current: SecretKey,
    previous: Vec<SecretKey>,
}

impl Keyring {
    /// A keyring that seals (and opens) with `current`.
    pub fn new(current: SecretKey) -> Self {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// Also accept `key` when opening secrets sealed before a rotation.
    pub fn with_previous(mut self, key: SecretKey) -> Self {
        self.previous.push(key);
        self
    }

    /// Encrypt `plaintext` under the current key, authenticating `context`
    /// (e.g. `b"dkim:example.com:sel1"`) as associated data. The same context
    /// must be passed to [`Keyring::open`].
    ///
    /// # Errors
    ///
    /// [`SecretError::Random`] if no nonce could be generated;
    /// [`SecretError::Malformed`] if `plaintext` is too long for the cipher
    /// (about 256 GiB).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<EncryptedSecret, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let key = self.current.aead_key()?;
        // Reserve room for the tag so appending it never reallocates.
        let mut buffer = Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN));
        buffer.extend_from_slice(plaintext);
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buffer,
            )
            .is_err()
        {
            wipe_vec(&mut buffer);
            return Err(SecretError::Malformed);
        }
        Ok(EncryptedSecret {
            key_id: self.current.id.clone(),
            nonce,
            ciphertext: buffer,
        })
    }

    /// Decrypt `sealed`, which must have been sealed with the same `context`.
    ///
    /// # Errors
    ///
    /// [`SecretError::UnknownKey`] if no key in the ring has the sealed key
    /// id; [`SecretError::Decrypt`] if the key is wrong, the data was
    /// tampered with, or the context differs.
    pub fn open(&self, sealed: &EncryptedSecret, context: &[u8]) -> Result<Secret, SecretError> {
        let mut candidates = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .filter(|k| k.id == sealed.key_id)
            .peekable();
        if candidates.peek().is_none() {
            return Err(SecretError::UnknownKey {
                id: sealed.key_id.clone(),
            });
        }
        if sealed.ciphertext.len() < TAG_LEN {
            return Err(SecretError::Decrypt);
        }
        for key in candidates {
            let aead = key.aead_key()?;
            let mut buffer = sealed.ciphertext.clone();
            let opened_len = aead
                .open_in_place(
                    Nonce::assume_unique_for_key(sealed.nonce),
                    Aad::from(context),
                    &mut buffer,
                )
                .map(|plain| plain.len());
            match opened_len {
                Ok(len) => {
                    // Drop the tag; `Secret`'s Drop also wipes spare capacity.
                    buffer.truncate(len);
                    return Ok(Secret(buffer));
                }
                Err(_) => wipe_vec(&mut buffer),
            }
        }
        Err(SecretError::Decrypt)
    }

    /// The id of the key used for sealing.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Whether `sealed` was sealed under a key other than the current one and
    /// should be re-sealed (open it, then seal it again) after a rotation.
    pub fn needs_reseal(&self, sealed: &EncryptedSecret) -> bool {
        sealed.key_id != self.current.id
    }
}

/// A sealed secret, as a store keeps it: never the clear secret.
///
/// `Debug` shows the key id and lengths only.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptedSecret {
    /// Id of the [`SecretKey`] it was sealed under.
    pub key_id: String,
    /// The random 96-bit nonce used for this seal.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte Poly1305 tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for EncryptedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSecret")
            .field("key_id", &self.key_id)
            .field("nonce_len", &self.nonce.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl EncryptedSecret {
    /// Compact binary encoding for stores that keep a single blob:
    ///
    /// ```text
    /// version (1 byte, currently 1)
    /// key id length (unsigned LEB128; one byte for ids under 128 bytes)
    /// key id (UTF-8)
    /// nonce (12 bytes)
    /// ciphertext and tag (the rest)
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.key_id.as_bytes();
        let mut out = Vec::with_capacity(
            1usize
                .saturating_add(10)
                .saturating_add(id.len())
                .saturating_add(NONCE_LEN)
                .saturating_add(self.ciphertext.len()),
        );
        out.push(FORMAT_VERSION);
        let mut len = id.len() as u64;
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
        out.extend_from_slice(id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parse the output of [`EncryptedSecret::to_bytes`].
    ///
    /// # Errors
    ///
    /// [`SecretError::Malformed`] for an unknown version, a truncated or
    /// non-canonical length, a key id that is not UTF-8, or a missing nonce.
    pub fn from_bytes(bytes: &[u8]) -> Result<EncryptedSecret, SecretError> {
        let (&version, rest) = bytes.split_first().ok_or(SecretError::Malformed)?;
        if version != FORMAT_VERSION {
            return Err(SecretError::Malformed);
        }
        let (id_len, rest) = read_leb128(rest)?;
        let id_len = usize::try_from(id_len).map_err(|_| SecretError::Malformed)?;
        if id_len > rest.len() {
            return Err(SecretError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(id)
            .map_err(|_| SecretError::Malformed)?
            .to_owned();
        if rest.len() < NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        Ok(EncryptedSecret {
            key_id,
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }

    /// [`EncryptedSecret::to_bytes`] as standard (padded) base64, for text
    /// columns and configuration files.
    pub fn to_text(&self) -> String {
        BASE64.encode(self.to_bytes())
    }

    /// Parse the output of [`EncryptedSecret::to_text`]; surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`SecretError::Base64`] for invalid base64, otherwise as
    /// [`EncryptedSecret::from_bytes`].
    pub fn from_text(text: &str) -> Result<EncryptedSecret, SecretError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| SecretError::Base64)?;
        EncryptedSecret::from_bytes(&bytes)
    }
}

/// Read a canonical (shortest-form) unsigned LEB128 `u64`.
fn read_leb128(bytes: &[u8]) -> Result<(u64, &[u8]), SecretError> {
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        let shift = 7 * index as u32;
        let low = u64::from(byte & 0x7f);
        // The tenth byte may only carry the single top bit of a u64.
        if index == 9 && byte > 1 {
            return Err(SecretError::Malformed);
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                // A trailing zero group: not the shortest encoding.
                return Err(SecretError::Malformed);
            }
            let rest = bytes.get(index + 1..).ok_or(SecretError::Malformed)?;
            return Ok((value, rest));
        }
    }
    Err(SecretError::Malformed)
}

/// A clear secret in memory, e.g. an opened DKIM private key.
///
/// `Debug` prints `Secret(<redacted>)`. The bytes are overwritten when the
/// value is dropped (best effort). It is deliberately not `Clone`.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap bytes that are already in memory.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret bytes. Avoid copying them into values that are not wiped.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe_vec(&mut self.0);
    }
}
