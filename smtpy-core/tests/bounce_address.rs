//! Signed bounce addresses: round trips, tampering, expiry on a fake clock,
//! key rotation, case changes, length.

use proptest::prelude::*;
use smtpy_core::address::{DomainName, EmailAddress, LocalPart, MAX_LOCAL_PART_LEN};
use smtpy_core::bounce::{
    BOUNCE_LOCAL_LEN, BOUNCE_PREFIX, BounceAddressError, BounceAddresses, DEFAULT_MAX_AGE_DAYS,
};
use smtpy_core::ids::MessageId;
use smtpy_core::srs::{Srs, SrsKey};
use smtpy_core::time::{Day, Timestamp};

const DOMAIN: &str = "bounce.alias.example";
const DAY_MS: i64 = 86_400_000;

fn key(id: char, fill: u8) -> SrsKey {
    SrsKey::new(id, [fill; 32]).expect("key")
}

fn domain() -> DomainName {
    DomainName::parse(DOMAIN).expect("domain")
}

fn codec() -> BounceAddresses {
    BounceAddresses::new(domain(), key('a', 7)).expect("codec")
}

/// 2023-11-14T22:13:20Z.
fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

/// Noon UTC of day `day`.
fn noon(day: i32) -> Timestamp {
    Timestamp::from_unix_millis(
        Day::from_days_since_epoch(day).start().as_unix_millis() + DAY_MS / 2,
    )
}

/// The same address with the local part replaced.
fn with_local(address: &EmailAddress, local: &str) -> Option<EmailAddress> {
    let local = LocalPart::parse(local).ok()?;
    EmailAddress::new(local, address.domain().clone()).ok()
}

fn message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId::from_bytes)
}

/// Any instant between 1970 and 2100.
fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800_000).prop_map(Timestamp::from_unix_millis)
}

/// Characters an attacker might substitute (local-part characters, both cases).
fn replacement() -> impl Strategy<Value = char> {
    prop::sample::select(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=+-._~!"
            .chars()
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trips(id in message_id(), at in instant(), age_ms in 0i64..(DEFAULT_MAX_AGE_DAYS as i64 * DAY_MS)) {
        let codec = codec();
        let address = codec.encode(id, at);
        let local = address.local_part().as_str();
        prop_assert_eq!(local.len(), BOUNCE_LOCAL_LEN);
        prop_assert!(local.len() <= MAX_LOCAL_PART_LEN);
        prop_assert!(local.starts_with(BOUNCE_PREFIX));
        prop_assert!(BounceAddresses::looks_like(local));
        prop_assert!(!local.bytes().any(|b| b.is_ascii_uppercase()), "lower case: {}", local);
        prop_assert!(!address.local_part().is_quoted());
        prop_assert_eq!(address.domain(), &domain());
        // Decodes at once and until the maximum age (age counted in UTC days,
        // so up to max_age days and a fraction later).
        prop_assert_eq!(codec.decode(&address, at), Ok(id));
        let later = Timestamp::from_unix_millis(at.as_unix_millis() + age_ms);
        prop_assert_eq!(codec.decode(&address, later), Ok(id));
        // Also after a round trip through text, in upper case.
        let text = address.to_ascii_string().expect("ascii");
        let reparsed = EmailAddress::parse(&text.to_ascii_uppercase()).expect("parse");
        prop_assert_eq!(codec.decode(&reparsed, at), Ok(id));
    }

    #[test]
    fn any_single_character_change_is_rejected(
        id in message_id(),
        at in instant(),
        index in 0usize..BOUNCE_LOCAL_LEN,
        new in replacement(),
    ) {
        let codec = codec();
        let address = codec.encode(id, at);
        let local = address.local_part().as_str();
        let old = local.as_bytes()[index] as char;
        prop_assume!(!old.eq_ignore_ascii_case(&new));
        let mut changed: Vec<char> = local.chars().collect();
        changed[index] = new;
        let changed: String = changed.into_iter().collect();
        if let Some(tampered) = with_local(&address, &changed) {
            let result = codec.decode(&tampered, at);
            prop_assert!(result.is_err(), "{} decoded to {:?}", changed, result);
        }
    }

    #[test]
    fn truncated_or_extended_addresses_are_rejected(id in message_id(), cut in 1usize..BOUNCE_LOCAL_LEN, extra in "[a-z2-7=]{1,5}") {
        let codec = codec();
        let address = codec.encode(id, now());
        let local = address.local_part().as_str();
        if let Some(short) = with_local(&address, &local[..cut]) {
            prop_assert!(codec.decode(&short, now()).is_err());
        }
        let long = format!("{local}{extra}");
        if let Some(long) = with_local(&address, &long) {
            prop_assert_eq!(codec.decode(&long, now()), Err(BounceAddressError::Malformed));
        }
    }

    #[test]
    fn expired_and_future_addresses_are_rejected(id in message_id(), day in 1_000i32..40_000, late in 1i32..500, early in 2i32..500) {
        let codec = codec();
        let address = codec.encode(id, noon(day));
        let max = i32::from(DEFAULT_MAX_AGE_DAYS);
        prop_assert_eq!(codec.decode(&address, noon(day + max)), Ok(id));
        prop_assert_eq!(codec.decode(&address, noon(day + max + late)), Err(BounceAddressError::Expired));
        // One day of clock skew is tolerated, more is not.
        prop_assert_eq!(codec.decode(&address, noon(day - 1)), Ok(id));
        prop_assert_eq!(codec.decode(&address, noon(day - early)), Err(BounceAddressError::Expired));
    }

    #[test]
    fn rotated_keys_still_decode(id in message_id(), at in instant()) {
        let old = codec();
        let address = old.encode(id, at);
        let rotated = BounceAddresses::new(domain(), key('b', 9)).expect("codec").with_previous(key('a', 7));
        prop_assert_eq!(rotated.decode(&address, at), Ok(id));
        // New addresses carry the new key id and do not decode without it.
        let fresh = rotated.encode(id, at);
        prop_assert_eq!(rotated.decode(&fresh, at), Ok(id));
        prop_assert_eq!(old.decode(&fresh, at), Err(BounceAddressError::UnknownKey { id: 'b' }));
        // Once the old key is dropped, its addresses no longer decode.
        let dropped = BounceAddresses::new(domain(), key('b', 9)).expect("codec");
        prop_assert_eq!(dropped.decode(&address, at), Err(BounceAddressError::UnknownKey { id: 'a' }));
    }
}

#[test]
fn a_key_with_the_same_id_but_another_secret_fails_the_mac() {
    let address = codec().encode(MessageId::new(), now());
    let other = BounceAddresses::new(domain(), key('a', 8)).expect("codec");
    assert_eq!(
        other.decode(&address, now()),
        Err(BounceAddressError::BadMac)
    );
    // Several keys with one id: each is tried.
    let both = other.with_previous(key('a', 7));
    assert!(both.decode(&address, now()).is_ok());
}

#[test]
fn other_domains_and_local_parts_are_not_bounce_addresses() {
    let codec = codec();
    let address = codec.encode(MessageId::new(), now());
    let elsewhere = EmailAddress::new(
        address.local_part().clone(),
        DomainName::parse("other.example").expect("domain"),
    )
    .expect("address");
    assert_eq!(
        codec.decode(&elsewhere, now()),
        Err(BounceAddressError::NotBounce)
    );
    for local in ["shop", "bounce", "bounce+x", "SRS0=abc=de=x.example=bob"] {
        let a = with_local(&address, local).expect("address");
        assert_eq!(
            codec.decode(&a, now()),
            Err(BounceAddressError::NotBounce),
            "{local}"
        );
        assert!(!BounceAddresses::looks_like(local), "{local}");
    }
    assert!(BounceAddresses::looks_like("BOUNCE=anything"));
    assert!(BounceAddresses::looks_like("\"bounce=x y\""));
    let malformed = with_local(&address, "bounce=x").expect("address");
    assert_eq!(
        codec.decode(&malformed, now()),
        Err(BounceAddressError::Malformed)
    );
}

#[test]
fn an_srs_key_signs_bounces_and_srs_addresses_apart() {
    // One operator secret, two purposes: an SRS hash is no bounce MAC.
    let srs = Srs::new(domain(), key('a', 7));
    let sender = EmailAddress::parse("bob@sender.example").expect("address");
    let rewritten = srs.forward(&sender, now()).expect("srs");
    assert_eq!(
        codec().decode(&rewritten, now()),
        Err(BounceAddressError::NotBounce)
    );
    let bounce = codec().encode(MessageId::new(), now());
    assert!(srs.reverse(&bounce, now()).is_err());
}

#[test]
fn the_domain_must_leave_room_for_the_local_part() {
    let label = "d".repeat(63);
    let long = format!("{label}.{label}.{label}.ex"); // 194 octets: fits
    let ok = DomainName::parse(&long).expect("domain");
    let codec = BounceAddresses::new(ok, key('a', 7)).expect("fits");
    let id = MessageId::new();
    assert_eq!(codec.decode(&codec.encode(id, now()), now()), Ok(id));
    let too_long = format!("{label}.{label}.{label}.example.ex"); // 202 octets
    let too_long = DomainName::parse(&too_long).expect("domain");
    assert_eq!(
        BounceAddresses::new(too_long, key('a', 7)).err(),
        Some(BounceAddressError::DomainTooLong)
    );
}

#[test]
fn max_age_is_configurable() {
    let codec = codec().max_age_days(2);
    assert_eq!(codec.max_age(), 2);
    let id = MessageId::new();
    let address = codec.encode(id, noon(19_000));
    assert_eq!(codec.decode(&address, noon(19_002)), Ok(id));
    assert_eq!(
        codec.decode(&address, noon(19_003)),
        Err(BounceAddressError::Expired)
    );
    assert_eq!(codec.domain(), &domain());
    assert_eq!(codec.max_age_days(60_000).max_age(), 3650, "clamped");
}
