//! Reverse-alias tokens: round trips, tampering, domain binding, key
//! rotation and case folding.

use proptest::prelude::*;
use smtpy_core::address::{DomainName, LocalPart};
use smtpy_core::reverse::{MAC_LEN, NONCE_LEN, PREFIX, ReverseAliases, ReverseError, TOKEN_LEN};
use smtpy_core::srs::{Srs, SrsKey};
use smtpy_core::time::Timestamp;

fn key(id: char, fill: u8) -> SrsKey {
    SrsKey::new(id, [fill; 32]).expect("key")
}

fn reverse() -> ReverseAliases {
    ReverseAliases::new(key('a', 7))
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).expect(s)
}

/// Domain names of 2–4 labels, some internationalised.
fn domains() -> impl Strategy<Value = DomainName> {
    let label = prop_oneof![
        "[a-z][a-z0-9]{0,12}",
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        Just("bücher".to_owned()),
        Just("例子".to_owned()),
    ];
    prop::collection::vec(label, 2..=4).prop_filter_map("valid domain", |labels| {
        DomainName::parse(&labels.join(".")).ok()
    })
}

/// Every single-character edit of `token` over `alphabet`: substitutions
/// (that change more than letter case), deletions and insertions.
fn single_edits(token: &str, alphabet: &[char]) -> Vec<String> {
    let chars: Vec<char> = token.chars().collect();
    let mut edits = Vec::new();
    for i in 0..=chars.len() {
        for &c in alphabet {
            let mut inserted = chars.clone();
            inserted.insert(i, c);
            edits.push(inserted.into_iter().collect());
        }
        if i == chars.len() {
            break;
        }
        let mut deleted = chars.clone();
        deleted.remove(i);
        edits.push(deleted.into_iter().collect());
        for &c in alphabet {
            if c.eq_ignore_ascii_case(&chars[i]) {
                continue;
            }
            let mut substituted = chars.clone();
            substituted[i] = c;
            edits.push(substituted.into_iter().collect());
        }
    }
    edits
}

/// The characters a token may hold, a few it may not, and both cases.
fn edit_alphabet() -> Vec<char> {
    let mut alphabet: Vec<char> = ('a'..='z').chain('2'..='7').collect();
    alphabet.extend(['0', '1', '8', '9', '-', '.', '_', 'Z', 'Q']);
    alphabet
}

// ---------------------------------------------------------------------------
// Shape

#[test]
fn token_has_the_documented_shape() {
    let token = reverse().mint(&domain("alias.example")).expect("mint");
    assert_eq!(token.len(), TOKEN_LEN);
    assert_eq!(TOKEN_LEN, PREFIX.len() + NONCE_LEN + 1 + MAC_LEN);
    assert!(token.starts_with("r--"), "{token}");
    assert_eq!(&token[PREFIX.len() + NONCE_LEN..][..1], "a", "key id");
    assert!(
        token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{token}"
    );
    let local = LocalPart::parse(&token).expect("a local part");
    assert!(!local.is_quoted());
    assert!(!token.starts_with('.') && !token.ends_with('.'));
    assert!(ReverseAliases::looks_like(&token));
}

#[test]
fn the_format_is_stable() {
    // Tokens are stored as contacts' keys: one minted today must verify
    // after any refactoring. (Secret [7; 32], key id 'a'.)
    let token = "r--c3x7m2kqhd4wz6faaxuqfiw5zunmm";
    assert_eq!(reverse().verify(token, &domain("alias.example")), Ok(()));
    assert_eq!(
        reverse().verify(token, &domain("alias.example.org")),
        Err(ReverseError::BadSignature)
    );
}

#[test]
fn address_puts_the_token_on_the_alias_domain() {
    let domain = domain("Alias.Example");
    let token = reverse().mint(&domain).expect("mint");
    let address = ReverseAliases::address(&token.to_ascii_uppercase(), &domain).expect("address");
    assert_eq!(
        address.to_ascii_string().as_deref(),
        Some(format!("{token}@alias.example").as_str())
    );
    assert_eq!(
        ReverseAliases::address("shop", &domain),
        Err(ReverseError::NotReverse)
    );
    assert_eq!(
        ReverseAliases::address("r--short", &domain),
        Err(ReverseError::Malformed)
    );
}

#[test]
fn lookup_key_is_the_minted_form() {
    let domain = domain("alias.example");
    let token = reverse().mint(&domain).expect("mint");
    assert_eq!(
        ReverseAliases::lookup_key(&token.to_ascii_uppercase()),
        token
    );
}

#[test]
fn looks_like_checks_only_the_prefix() {
    for yes in [
        "r--",
        "R--x",
        "r--shop",
        "r--abcdefghijklmnopqrstuvwxyzabcdef",
    ] {
        assert!(ReverseAliases::looks_like(yes), "{yes}");
    }
    for no in ["", "r-", "r-x", "ra--x", "shop", "xr--", "ř--x"] {
        assert!(!ReverseAliases::looks_like(no), "{no}");
    }
}

#[test]
fn verify_reports_why() {
    let reverse = reverse();
    let domain = domain("alias.example");
    let token = reverse.mint(&domain).expect("mint");
    assert_eq!(
        reverse.verify("shop", &domain),
        Err(ReverseError::NotReverse)
    );
    assert_eq!(reverse.verify("", &domain), Err(ReverseError::NotReverse));
    assert_eq!(reverse.verify("r--", &domain), Err(ReverseError::Malformed));
    assert_eq!(
        reverse.verify(&format!("{token}a"), &domain),
        Err(ReverseError::Malformed)
    );
    // Same length, a character outside base32 in the nonce.
    let mut bad = token.clone().into_bytes();
    bad[PREFIX.len()] = b'1';
    let bad = String::from_utf8(bad).expect("ascii");
    assert_eq!(reverse.verify(&bad, &domain), Err(ReverseError::Malformed));
    // Another key id.
    let mut other = token.clone().into_bytes();
    other[PREFIX.len() + NONCE_LEN] = b'z';
    let other = String::from_utf8(other).expect("ascii");
    assert_eq!(
        reverse.verify(&other, &domain),
        Err(ReverseError::UnknownKey { id: 'z' })
    );
    // A multi-byte character where a token byte was: no panic.
    let mut utf8 = token.clone();
    utf8.replace_range(5..6, "é");
    assert!(reverse.verify(&utf8, &domain).is_err());
    assert!(reverse.verify(&utf8[..utf8.len() - 2], &domain).is_err());
}

#[test]
fn srs_addresses_and_reverse_aliases_never_verify_as_each_other() {
    let shared = key('a', 7);
    let reverse = ReverseAliases::new(shared.clone());
    let srs_domain = domain("alias.example");
    let srs = Srs::new(srs_domain.clone(), shared);
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let forwarded = srs
        .forward(
            &smtpy_core::address::EmailAddress::parse("bob@sender.example").expect("addr"),
            now,
        )
        .expect("forward");
    assert_eq!(
        reverse.verify(forwarded.local_part().as_str(), &srs_domain),
        Err(ReverseError::NotReverse)
    );
    let token = reverse.mint(&srs_domain).expect("mint");
    assert!(!Srs::is_srs(&token));
}

#[test]
fn debug_shows_key_ids_only() {
    let reverse = ReverseAliases::new(key('b', 9)).with_previous(key('a', 7));
    let debug = format!("{reverse:?}");
    assert!(debug.contains("'b'") && debug.contains("'a'"), "{debug}");
    assert!(!debug.contains("9, 9"), "{debug}");
}

// ---------------------------------------------------------------------------
// Rotation

#[test]
fn rotation_keeps_old_tokens_while_the_old_key_is_configured() {
    let domain = domain("alias.example");
    let old = ReverseAliases::new(key('a', 7));
    let token = old.mint(&domain).expect("mint");

    let rotated = ReverseAliases::new(key('b', 8));
    assert_eq!(
        rotated.verify(&token, &domain),
        Err(ReverseError::UnknownKey { id: 'a' })
    );
    let rotated = rotated.with_previous(key('a', 7));
    assert_eq!(rotated.verify(&token, &domain), Ok(()));
    // New tokens use the new key, and the old configuration refuses them.
    let fresh = rotated.mint(&domain).expect("mint");
    assert_eq!(&fresh[PREFIX.len() + NONCE_LEN..][..1], "b");
    assert_eq!(
        old.verify(&fresh, &domain),
        Err(ReverseError::UnknownKey { id: 'b' })
    );
}

#[test]
fn a_different_secret_under_the_same_id_is_refused() {
    let domain = domain("alias.example");
    let token = ReverseAliases::new(key('a', 7))
        .mint(&domain)
        .expect("mint");
    let imposter = ReverseAliases::new(key('a', 8));
    assert_eq!(
        imposter.verify(&token, &domain),
        Err(ReverseError::BadSignature)
    );
    // Both secrets configured under one id: each is tried.
    let both = imposter.with_previous(key('a', 7));
    assert_eq!(both.verify(&token, &domain), Ok(()));
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mint_then_verify_round_trips(domain in domains()) {
        let reverse = reverse();
        let token = reverse.mint(&domain).expect("mint");
        prop_assert_eq!(reverse.verify(&token, &domain), Ok(()));
        prop_assert!(ReverseAliases::address(&token, &domain).is_ok());
    }

    #[test]
    fn case_folded_tokens_verify(domain in domains(), flips in prop::collection::vec(any::<bool>(), TOKEN_LEN)) {
        let reverse = reverse();
        let token = reverse.mint(&domain).expect("mint");
        let upper = token.to_ascii_uppercase();
        prop_assert_eq!(reverse.verify(&upper, &domain), Ok(()));
        let mixed: String = token
            .chars()
            .zip(flips)
            .map(|(c, flip)| if flip { c.to_ascii_uppercase() } else { c })
            .collect();
        prop_assert_eq!(reverse.verify(&mixed, &domain), Ok(()));
    }

    #[test]
    fn tokens_verify_only_for_their_domain(a in domains(), b in domains()) {
        prop_assume!(a != b);
        let reverse = reverse();
        let token = reverse.mint(&a).expect("mint");
        prop_assert_eq!(reverse.verify(&token, &b), Err(ReverseError::BadSignature));
    }

    #[test]
    fn rotation_needs_the_previous_key(domain in domains(), old in any::<[u8; 32]>(), new in any::<[u8; 32]>()) {
        let old_key = SrsKey::new('o', old).expect("key");
        let token = ReverseAliases::new(old_key.clone()).mint(&domain).expect("mint");
        let without = ReverseAliases::new(SrsKey::new('n', new).expect("key"));
        prop_assert!(without.verify(&token, &domain).is_err());
        let with = without.with_previous(old_key);
        prop_assert_eq!(with.verify(&token, &domain), Ok(()));
    }
}

proptest! {
    // Each case checks every single-character edit of one token (about
    // 2,600 edits), so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn any_single_character_change_is_refused(domain in domains()) {
        let reverse = reverse().with_previous(key('b', 9));
        let token = reverse.mint(&domain).expect("mint");
        let alphabet = edit_alphabet();
        let edits = single_edits(&token, &alphabet);
        prop_assert!(edits.len() > 2_000);
        for edit in edits {
            prop_assert!(
                reverse.verify(&edit, &domain).is_err(),
                "edit {} of {} verified", edit, token
            );
        }
    }
}
