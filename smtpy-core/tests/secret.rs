//! Tests for encryption of secrets at rest.

use proptest::prelude::*;
use smtpy_core::secret::{EncryptedSecret, KEY_LEN, Keyring, Secret, SecretError, SecretKey};

const CONTEXT: &[u8] = b"dkim:example.com:sel1";
const PLAINTEXT: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n";

fn key(id: &str, fill: u8) -> SecretKey {
    SecretKey::from_bytes(id, &[fill; KEY_LEN]).expect("key")
}

fn ring() -> Keyring {
    Keyring::new(key("k1", 7))
}

#[test]
fn round_trip() {
    let ring = ring();
    let sealed = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    assert_eq!(sealed.key_id, "k1");
    assert_eq!(sealed.ciphertext.len(), PLAINTEXT.len() + 16);
    assert_ne!(&sealed.ciphertext[..PLAINTEXT.len()], PLAINTEXT);
    let opened = ring.open(&sealed, CONTEXT).expect("open");
    assert_eq!(opened.expose(), PLAINTEXT);
    assert!(!ring.needs_reseal(&sealed));
    assert_eq!(ring.current_id(), "k1");

    let empty = ring.seal(b"", CONTEXT).expect("seal empty");
    assert_eq!(ring.open(&empty, CONTEXT).expect("open").expose(), b"");
}

#[test]
fn nonces_are_fresh() {
    let ring = ring();
    let a = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    let b = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn wrong_context_fails() {
    let ring = ring();
    let sealed = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    for other in [&b"dkim:example.com:sel2"[..], b"", b"totp:user1"] {
        assert_eq!(
            ring.open(&sealed, other).map(|s| s.expose().to_vec()),
            Err(SecretError::Decrypt)
        );
    }
}

#[test]
fn tampering_fails() {
    let ring = ring().with_previous(key("k0", 9));
    let sealed = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    let open = |s: &EncryptedSecret| ring.open(s, CONTEXT).map(|p| p.expose().to_vec());

    for i in 0..sealed.ciphertext.len() {
        let mut t = sealed.clone();
        t.ciphertext[i] ^= 0x01;
        assert_eq!(open(&t), Err(SecretError::Decrypt), "ciphertext byte {i}");
    }
    for i in 0..sealed.nonce.len() {
        let mut t = sealed.clone();
        t.nonce[i] ^= 0x80;
        assert_eq!(open(&t), Err(SecretError::Decrypt), "nonce byte {i}");
    }
    let mut truncated = sealed.clone();
    truncated.ciphertext.pop();
    assert_eq!(open(&truncated), Err(SecretError::Decrypt));
    truncated.ciphertext.truncate(3);
    assert_eq!(open(&truncated), Err(SecretError::Decrypt));
    let mut extended = sealed.clone();
    extended.ciphertext.push(0);
    assert_eq!(open(&extended), Err(SecretError::Decrypt));

    // Pointing the ciphertext at another known key fails to decrypt.
    let mut moved = sealed.clone();
    moved.key_id = "k0".into();
    assert_eq!(open(&moved), Err(SecretError::Decrypt));
    // Pointing it at an unknown key is reported as such.
    let mut unknown = sealed.clone();
    unknown.key_id = "k9".into();
    assert_eq!(
        open(&unknown),
        Err(SecretError::UnknownKey { id: "k9".into() })
    );

    assert_eq!(open(&sealed).expect("untampered"), PLAINTEXT);
}

#[test]
fn rotation() {
    let old = Keyring::new(key("2024", 1));
    let sealed_old = old.seal(PLAINTEXT, CONTEXT).expect("seal");

    let new = Keyring::new(key("2025", 2)).with_previous(key("2024", 1));
    assert_eq!(new.current_id(), "2025");
    assert!(new.needs_reseal(&sealed_old));
    let opened = new
        .open(&sealed_old, CONTEXT)
        .expect("open with previous key");
    assert_eq!(opened.expose(), PLAINTEXT);

    let resealed = new.seal(opened.expose(), CONTEXT).expect("reseal");
    assert_eq!(resealed.key_id, "2025");
    assert!(!new.needs_reseal(&resealed));
    assert_eq!(
        new.open(&resealed, CONTEXT).expect("open").expose(),
        PLAINTEXT
    );

    // The old ring cannot open the new secret.
    assert_eq!(
        old.open(&resealed, CONTEXT).map(|s| s.expose().to_vec()),
        Err(SecretError::UnknownKey { id: "2025".into() })
    );
}

#[test]
fn unknown_key() {
    let sealed = Keyring::new(key("a", 1))
        .seal(PLAINTEXT, CONTEXT)
        .expect("seal");
    let other = Keyring::new(key("b", 1));
    assert_eq!(
        other.open(&sealed, CONTEXT).map(|s| s.expose().to_vec()),
        Err(SecretError::UnknownKey { id: "a".into() })
    );
}

#[test]
fn duplicate_ids_try_each_key() {
    let sealed = Keyring::new(key("dup", 1))
        .seal(PLAINTEXT, CONTEXT)
        .expect("seal");
    let ring = Keyring::new(key("dup", 2)).with_previous(key("dup", 1));
    assert_eq!(
        ring.open(&sealed, CONTEXT).expect("open").expose(),
        PLAINTEXT
    );
}

#[test]
fn key_constructors() {
    assert_eq!(
        SecretKey::from_bytes("k", &[0; 31]).map(|k| k.id().to_owned()),
        Err(SecretError::KeyLength { len: 31 })
    );
    assert_eq!(
        SecretKey::from_bytes("k", &[0; 33]).map(|k| k.id().to_owned()),
        Err(SecretError::KeyLength { len: 33 })
    );
    for bad_id in ["", " k", "a b", "k\n", "\u{7}", &"x".repeat(256)] {
        assert_eq!(
            SecretKey::from_bytes(bad_id, &[0; KEY_LEN]).map(|k| k.id().to_owned()),
            Err(SecretError::KeyId),
            "{bad_id:?}"
        );
    }
    assert!(SecretKey::from_bytes(&"x".repeat(255), &[0; KEY_LEN]).is_ok());

    let generated = SecretKey::generate("gen").expect("generate");
    let other = SecretKey::generate("gen").expect("generate");
    assert_ne!(generated.to_base64(), other.to_base64());

    // A key file with a trailing newline loads to the same key.
    let file = format!("{}\n", generated.to_base64());
    let loaded = SecretKey::from_base64("gen", &file).expect("from_base64");
    assert_eq!(loaded.to_base64(), generated.to_base64());
    let sealed = Keyring::new(generated).seal(b"x", b"c").expect("seal");
    assert_eq!(
        Keyring::new(loaded)
            .open(&sealed, b"c")
            .expect("open")
            .expose(),
        b"x"
    );

    assert_eq!(
        SecretKey::from_base64("k", "not base64!").map(|k| k.id().to_owned()),
        Err(SecretError::Base64)
    );
    assert_eq!(
        SecretKey::from_base64("k", "AAAA").map(|k| k.id().to_owned()),
        Err(SecretError::KeyLength { len: 3 })
    );
}

#[test]
fn debug_output_leaks_nothing() {
    let secret_key = SecretKey::generate("debug-key").expect("generate");
    let key_b64 = secret_key.to_base64();
    let ring = Keyring::new(secret_key).with_previous(key("old", 0xAB));
    let plaintext = b"TOTP-SEED-JBSWY3DPEHPK3PXP";
    let sealed = ring.seal(plaintext, CONTEXT).expect("seal");
    let opened = ring.open(&sealed, CONTEXT).expect("open");

    let ring_dbg = format!("{ring:?}");
    assert!(ring_dbg.contains("debug-key"));
    assert!(!ring_dbg.contains(&key_b64));
    assert!(
        !ring_dbg.contains("171"),
        "raw bytes of the old key: {ring_dbg}"
    );

    let key_dbg = format!("{:?}", SecretKey::from_base64("k", &key_b64).expect("key"));
    assert!(key_dbg.contains("\"k\""));
    assert!(!key_dbg.contains(&key_b64));
    assert!(!key_dbg.contains('['), "no byte array: {key_dbg}");

    let secret_dbg = format!("{opened:?}");
    assert_eq!(secret_dbg, "Secret(<redacted>)");
    assert!(!format!("{:#?}", Secret::new(plaintext.to_vec())).contains("TOTP"));

    let sealed_dbg = format!("{sealed:?}");
    assert!(sealed_dbg.contains("debug-key"));
    assert!(!sealed_dbg.contains("TOTP"));
    assert!(!sealed_dbg.contains(&format!("{:?}", sealed.ciphertext)));
    assert!(!sealed_dbg.contains(&format!("{:?}", sealed.nonce)));
}

#[test]
fn binary_and_text_round_trip() {
    let ring = ring();
    let sealed = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
    let bytes = sealed.to_bytes();
    assert_eq!(bytes[0], 1, "version byte");
    assert_eq!(bytes[1], 2, "key id length");
    assert_eq!(&bytes[2..4], b"k1");
    assert_eq!(bytes.len(), 1 + 1 + 2 + 12 + sealed.ciphertext.len());
    let back = EncryptedSecret::from_bytes(&bytes).expect("from_bytes");
    assert_eq!(back, sealed);
    assert_eq!(ring.open(&back, CONTEXT).expect("open").expose(), PLAINTEXT);

    let text = sealed.to_text();
    assert_eq!(
        EncryptedSecret::from_text(&text).expect("from_text"),
        sealed
    );
    assert_eq!(
        EncryptedSecret::from_text(&format!("  {text}\n")).expect("trimmed"),
        sealed
    );
    assert_eq!(EncryptedSecret::from_text("%%%"), Err(SecretError::Base64));

    let json = serde_json::to_string(&sealed).expect("json");
    let from_json: EncryptedSecret = serde_json::from_str(&json).expect("json back");
    assert_eq!(from_json, sealed);
}

#[test]
fn long_key_ids_use_multi_byte_lengths() {
    let sealed = EncryptedSecret {
        key_id: "i".repeat(300),
        nonce: [5; 12],
        ciphertext: vec![1, 2, 3],
    };
    let bytes = sealed.to_bytes();
    assert_eq!(&bytes[1..3], &[0xAC, 0x02]);
    assert_eq!(EncryptedSecret::from_bytes(&bytes), Ok(sealed));
}

#[test]
fn malformed_encodings() {
    let sealed = ring().seal(PLAINTEXT, CONTEXT).expect("seal");
    let bytes = sealed.to_bytes();
    // Every strict prefix that cuts into the header or nonce is rejected.
    for len in 0..(1 + 1 + 2 + 12) {
        assert_eq!(
            EncryptedSecret::from_bytes(&bytes[..len]),
            Err(SecretError::Malformed),
            "prefix of {len} bytes"
        );
    }
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 2;
    assert_eq!(
        EncryptedSecret::from_bytes(&wrong_version),
        Err(SecretError::Malformed)
    );
    // Non-canonical length: 2 encoded as [0x82, 0x00].
    let mut padded = vec![1, 0x82, 0x00];
    padded.extend_from_slice(&bytes[2..]);
    assert_eq!(
        EncryptedSecret::from_bytes(&padded),
        Err(SecretError::Malformed)
    );
    // Length larger than the input.
    assert_eq!(
        EncryptedSecret::from_bytes(&[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, b'a']),
        Err(SecretError::Malformed)
    );
    // Overlong varint.
    assert_eq!(
        EncryptedSecret::from_bytes(&[
            1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F
        ]),
        Err(SecretError::Malformed)
    );
    // Key id that is not UTF-8.
    let mut bad_utf8 = vec![1, 1, 0xFF];
    bad_utf8.extend_from_slice(&[0; 12]);
    assert_eq!(
        EncryptedSecret::from_bytes(&bad_utf8),
        Err(SecretError::Malformed)
    );
}

fn arb_sealed() -> impl Strategy<Value = EncryptedSecret> {
    (
        ".{0,40}",
        any::<[u8; 12]>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(key_id, nonce, ciphertext)| EncryptedSecret {
            key_id,
            nonce,
            ciphertext,
        })
}

proptest! {
    #[test]
    fn encoding_round_trips(sealed in arb_sealed()) {
        let bytes = sealed.to_bytes();
        prop_assert_eq!(EncryptedSecret::from_bytes(&bytes), Ok(sealed.clone()));
        prop_assert_eq!(EncryptedSecret::from_text(&sealed.to_text()), Ok(sealed));
    }

    #[test]
    fn truncation_is_an_error_or_a_shorter_ciphertext(sealed in arb_sealed(), cut in any::<prop::sample::Index>()) {
        let bytes = sealed.to_bytes();
        let len = cut.index(bytes.len());
        match EncryptedSecret::from_bytes(&bytes[..len]) {
            Ok(parsed) => {
                prop_assert_eq!(&parsed.key_id, &sealed.key_id);
                prop_assert_eq!(parsed.nonce, sealed.nonce);
                prop_assert!(sealed.ciphertext.starts_with(&parsed.ciphertext));
                prop_assert!(parsed.ciphertext.len() < sealed.ciphertext.len());
            }
            Err(e) => prop_assert_eq!(e, SecretError::Malformed),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(parsed) = EncryptedSecret::from_bytes(&bytes) {
            // Anything accepted re-encodes to the same bytes (canonical form).
            prop_assert_eq!(parsed.to_bytes(), bytes);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = EncryptedSecret::from_text(&text);
        let _ = SecretKey::from_base64("k", &text);
    }

    #[test]
    fn seal_open_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..512), context in proptest::collection::vec(any::<u8>(), 0..64)) {
        let ring = ring();
        let sealed = ring.seal(&plaintext, &context).expect("seal");
        let opened = ring.open(&sealed, &context).expect("open");
        prop_assert_eq!(opened.expose(), &plaintext[..]);
        let restored = EncryptedSecret::from_bytes(&sealed.to_bytes()).expect("decode");
        let reopened = ring.open(&restored, &context).expect("open");
        prop_assert_eq!(reopened.expose(), &plaintext[..]);
    }

    #[test]
    fn opening_tampered_blobs_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let ring = ring();
        let mut sealed = ring.seal(PLAINTEXT, CONTEXT).expect("seal");
        sealed.ciphertext = bytes;
        prop_assert!(ring.open(&sealed, CONTEXT).is_err());
    }
}
