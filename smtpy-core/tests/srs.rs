//! The Sender Rewriting Scheme: round trips, chaining, expiry, key rotation,
//! case mangling and tampering.

use proptest::prelude::*;
use smtpy_core::address::{DomainName, EmailAddress, LocalPart};
use smtpy_core::srs::{DEFAULT_MAX_AGE_DAYS, HASH_LEN, Srs, SrsError, SrsKey, SrsKeyError};
use smtpy_core::time::{Day, Timestamp};

const SRS_DOMAIN: &str = "srs.alias.example";
const DAY_MS: i64 = 86_400_000;

fn key(id: char, fill: u8) -> SrsKey {
    SrsKey::new(id, [fill; 32]).expect("key")
}

fn srs() -> Srs {
    Srs::new(DomainName::parse(SRS_DOMAIN).expect("domain"), key('a', 7))
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect(s)
}

/// Noon UTC on the given day since the epoch.
fn on_day(day: i32) -> Timestamp {
    Timestamp::from_unix_millis(
        Day::from_days_since_epoch(day).start().as_unix_millis() + DAY_MS / 2,
    )
}

/// 2023-11-14T22:13:20Z (day 19675).
fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_700_000_000)
}

/// The unquoted content of a local part.
fn content(local: &LocalPart) -> String {
    let text = local.as_str();
    if !local.is_quoted() {
        return text.to_owned();
    }
    let inner = &text[1..text.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// The local part whose content is `content`, quoted when needed.
fn local_from_content(content: &str) -> Result<LocalPart, smtpy_core::address::AddressError> {
    let mut q = String::from("\"");
    for c in content.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    LocalPart::parse(&q)
}

fn srs_domain() -> DomainName {
    DomainName::parse(SRS_DOMAIN).expect("domain")
}

// ---------------------------------------------------------------------------
// Format and round trips

#[test]
fn srs0_has_the_documented_shape() {
    let srs = srs();
    let sender = addr("Bob.Smith@Sender.Example");
    let out = srs.forward(&sender, now()).expect("forward");
    assert_eq!(out.domain().as_ascii(), SRS_DOMAIN);
    let local = out.local_part().as_str();
    let fields: Vec<&str> = local.splitn(5, '=').collect();
    assert_eq!(fields.len(), 5, "{local}");
    assert_eq!(fields[0], "SRS0");
    assert_eq!(fields[1].len(), 1 + HASH_LEN, "{local}");
    assert!(fields[1].starts_with('a'), "key id first: {local}");
    assert!(
        fields[1]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{local}"
    );
    assert_eq!(fields[2].len(), 2);
    assert_eq!(fields[3], "sender.example");
    assert_eq!(fields[4], "Bob.Smith", "original case kept");
    assert!(!out.local_part().is_quoted());

    let back = srs.reverse(&out, now()).expect("reverse");
    assert_eq!(back, sender);
    assert_eq!(back.local_part().as_str(), "Bob.Smith");
    assert!(Srs::is_srs(local));
}

#[test]
fn forwarding_is_deterministic_for_a_day() {
    let srs = srs();
    let sender = addr("bob@sender.example");
    let a = srs.forward(&sender, on_day(19_000)).expect("a");
    let b = srs
        .forward(
            &sender,
            Timestamp::from_unix_millis(on_day(19_000).as_unix_millis() + 3_600_000),
        )
        .expect("b");
    assert_eq!(a.local_part().as_str(), b.local_part().as_str());
    let c = srs.forward(&sender, on_day(19_001)).expect("c");
    assert_ne!(a.local_part().as_str(), c.local_part().as_str());
}

#[test]
fn quoted_local_parts_round_trip() {
    let srs = srs();
    for sender in [
        r#""john doe"@example.com"#,
        r#""a\"b"@example.com"#,
        r#""back\\slash"@example.com"#,
        r#"".leading.dot"@example.com"#,
        r#""a@b"@example.com"#,
    ] {
        let sender = addr(sender);
        let out = srs.forward(&sender, now()).expect("forward");
        assert!(Srs::is_srs(out.local_part().as_str()), "{out:?}");
        // The SRS address itself parses back from its wire form.
        let wire = out.to_ascii_string().expect("ascii");
        let reparsed = addr(&wire);
        let back = srs.reverse(&reparsed, now()).expect("reverse");
        assert_eq!(back, sender);
        assert_eq!(back.local_part().as_str(), sender.local_part().as_str());
    }
    let out = srs
        .forward(&addr(r#""john doe"@example.com"#), now())
        .expect("forward");
    assert!(out.local_part().is_quoted());
    assert!(
        out.local_part()
            .as_str()
            .ends_with("=example.com=john doe\"")
    );
}

#[test]
fn idn_domains_round_trip_in_a_label_form() {
    let srs = srs();
    let sender = addr("bob@bücher.example");
    let out = srs.forward(&sender, now()).expect("forward");
    assert!(
        out.local_part()
            .as_str()
            .contains("=xn--bcher-kva.example="),
        "{out:?}"
    );
    assert!(!out.requires_smtputf8(), "an IDN domain alone stays ASCII");
    let back = srs.reverse(&out, now()).expect("reverse");
    assert_eq!(back, sender);
    assert_eq!(back.domain().as_unicode(), "bücher.example");
}

#[test]
fn smtputf8_local_parts_round_trip() {
    let srs = srs();
    for sender in [
        "jöran@example.se",
        "用户@例子.example",
        "\"Ünïcödé name\"@example.org",
    ] {
        let sender = addr(sender);
        let out = srs.forward(&sender, now()).expect("forward");
        assert!(out.requires_smtputf8());
        let back = srs.reverse(&out, now()).expect("reverse");
        assert_eq!(back, sender);
        assert_eq!(back.local_part().as_str(), sender.local_part().as_str());
        // Upper-casing (Unicode-aware) is survived too.
        let upper = addr(&out.to_string().to_uppercase());
        assert_eq!(srs.reverse(&upper, now()).expect("upper"), sender);
    }
}

#[test]
fn senders_on_our_srs_domain_are_kept() {
    let srs = srs();
    let ours = addr("SRS0=xxxxxxx=aa=example.com=bob@srs.alias.example");
    let out = srs.forward(&ours, now()).expect("forward");
    assert_eq!(out.local_part().as_str(), ours.local_part().as_str());
    let plain = addr("postmaster@SRS.alias.example");
    assert_eq!(srs.forward(&plain, now()).expect("forward"), plain);
}

#[test]
fn too_long_results_are_refused() {
    let srs = srs();
    let local = "a".repeat(40);
    let sender = addr(&format!("{local}@some-long-domain.example"));
    assert_eq!(srs.forward(&sender, now()), Err(SrsError::TooLong));
    // 17 octets of overhead + domain + local = 64 fits exactly.
    let domain = "d.example"; // 9
    let local = "b".repeat(64 - 17 - domain.len());
    let sender = addr(&format!("{local}@{domain}"));
    let out = srs.forward(&sender, now()).expect("exactly 64");
    assert_eq!(out.local_part().as_str().len(), 64);
    let sender = addr(&format!("{local}b@{domain}"));
    assert_eq!(srs.forward(&sender, now()), Err(SrsError::TooLong));
}

// ---------------------------------------------------------------------------
// SRS1 chaining

#[test]
fn srs1_chains_name_the_first_forwarder_and_do_not_grow() {
    let fwd1 = Srs::new(DomainName::parse("fwd1.example").expect("d"), key('f', 1));
    let ours = srs();
    let fwd3 = Srs::new(DomainName::parse("fwd3.example").expect("d"), key('z', 3));
    let sender = addr("bob@orig.example");

    let at_fwd1 = fwd1.forward(&sender, now()).expect("fwd1");
    let at_ours = ours.forward(&at_fwd1, now()).expect("ours");
    let local = at_ours.local_part().as_str();
    assert!(local.starts_with("SRS1="), "{local}");
    let fields: Vec<&str> = local.splitn(4, '=').collect();
    assert_eq!(fields[1].len(), 1 + HASH_LEN);
    assert!(fields[1].starts_with('a'));
    assert_eq!(fields[2], "fwd1.example");
    // The double separator, then fwd1's SRS0 address without "SRS0".
    let inner = at_fwd1.local_part().as_str();
    assert_eq!(fields[3], &inner["SRS0".len()..]);
    assert!(local.contains("=fwd1.example=="), "{local}");

    // A third forwarder rewrites our SRS1 into its own, still naming fwd1.
    let at_fwd3 = fwd3.forward(&at_ours, now()).expect("fwd3");
    let local3 = at_fwd3.local_part().as_str();
    assert!(local3.starts_with("SRS1="), "{local3}");
    assert_eq!(local3.len(), local.len(), "no growth");
    assert!(local3.contains("=fwd1.example=="), "{local3}");
    assert_ne!(local3, local, "re-signed");

    // Bounces walk back: fwd3 → fwd1's SRS0 address → bob.
    let back3 = fwd3.reverse(&at_fwd3, now()).expect("reverse fwd3");
    assert_eq!(back3, at_fwd1);
    assert_eq!(back3.local_part().as_str(), inner);
    let back_ours = ours.reverse(&at_ours, now()).expect("reverse ours");
    assert_eq!(back_ours, at_fwd1);
    assert_eq!(fwd1.reverse(&back3, now()).expect("fwd1"), sender);
}

#[test]
fn srs1_has_no_timestamp() {
    let fwd1 = Srs::new(DomainName::parse("fwd1.example").expect("d"), key('f', 1));
    let ours = srs();
    let sender = addr("bob@orig.example");
    let at_fwd1 = fwd1.forward(&sender, on_day(100)).expect("fwd1");
    let at_ours = ours.forward(&at_fwd1, on_day(100)).expect("ours");
    // Our SRS1 still reverses long after; the first forwarder judges the age.
    assert_eq!(
        ours.reverse(&at_ours, on_day(400)).expect("reverse"),
        at_fwd1
    );
    assert_eq!(fwd1.reverse(&at_fwd1, on_day(400)), Err(SrsError::Expired));
}

#[test]
fn unparseable_srs1_senders_are_wrapped_as_srs0() {
    let ours = srs();
    for local in [
        "SRS1=abc",
        "SRS1=abc=not_a_domain!=x",
        "SRS1==fwd1.example==x",
    ] {
        let sender = addr(&format!("{local}@fwd2.example"));
        let out = ours.forward(&sender, now()).expect("forward");
        assert!(out.local_part().as_str().starts_with("SRS0="), "{out:?}");
        assert_eq!(ours.reverse(&out, now()).expect("reverse"), sender);
    }
}

// ---------------------------------------------------------------------------
// Time

#[test]
fn expiry_boundary_with_a_fixed_clock() {
    let srs = srs();
    assert_eq!(srs.max_age(), DEFAULT_MAX_AGE_DAYS);
    let sender = addr("bob@sender.example");
    let signed = Day::from_days_since_epoch(19_675);
    let out = srs.forward(&sender, signed.start()).expect("forward");

    // Last millisecond of the 21st day after signing: still valid.
    let last_ok = Timestamp::from_unix_millis(
        Day::from_days_since_epoch(19_675 + 22)
            .start()
            .as_unix_millis()
            - 1,
    );
    assert_eq!(srs.reverse(&out, last_ok).expect("day 21"), sender);
    // First millisecond of the 22nd day: expired.
    let first_bad = Day::from_days_since_epoch(19_675 + 22).start();
    assert_eq!(srs.reverse(&out, first_bad), Err(SrsError::Expired));

    // One day of clock skew into the future is tolerated, two are not.
    assert_eq!(srs.reverse(&out, on_day(19_674)).expect("skew"), sender);
    assert_eq!(srs.reverse(&out, on_day(19_673)), Err(SrsError::Expired));

    let short = srs.clone().max_age_days(5);
    assert_eq!(short.reverse(&out, on_day(19_680)).expect("5 days"), sender);
    assert_eq!(short.reverse(&out, on_day(19_681)), Err(SrsError::Expired));
    let zero = srs.clone().max_age_days(0);
    assert_eq!(zero.reverse(&out, on_day(19_675)).expect("today"), sender);
    assert_eq!(zero.reverse(&out, on_day(19_676)), Err(SrsError::Expired));
    assert_eq!(srs.clone().max_age_days(u16::MAX).max_age(), 1000);
}

#[test]
fn the_day_counter_wraps_every_1024_days() {
    let srs = srs();
    let sender = addr("bob@sender.example");
    // Day 20479 = 20 * 1024 - 1 → counter 1023 = "77"; the next day is "aa".
    let out = srs.forward(&sender, on_day(20_479)).expect("forward");
    assert!(
        out.local_part().as_str().contains("=77=sender.example="),
        "{out:?}"
    );
    let next = srs.forward(&sender, on_day(20_480)).expect("forward");
    assert!(
        next.local_part().as_str().contains("=aa=sender.example="),
        "{next:?}"
    );

    // Across the wrap the age is still computed correctly.
    assert_eq!(srs.reverse(&out, on_day(20_480)).expect("1 day"), sender);
    assert_eq!(
        srs.reverse(&out, on_day(20_479 + 21)).expect("21 days"),
        sender
    );
    assert_eq!(
        srs.reverse(&out, on_day(20_479 + 22)),
        Err(SrsError::Expired)
    );
    // A stamp from just after the wrap, judged just before it, is in the future.
    assert_eq!(srs.reverse(&next, on_day(20_479)).expect("skew"), sender);
    assert_eq!(srs.reverse(&next, on_day(20_478)), Err(SrsError::Expired));
    // The documented aliasing: 1024 + 3 days old looks 3 days old.
    assert_eq!(
        srs.reverse(&out, on_day(20_479 + 1024 + 3)).expect("alias"),
        sender
    );
}

// ---------------------------------------------------------------------------
// Keys

#[test]
fn key_rotation_old_key_verifies_new_key_signs() {
    let domain = srs_domain();
    let old = Srs::new(domain.clone(), key('a', 7));
    let sender = addr("bob@sender.example");
    let signed_old = old.forward(&sender, now()).expect("old");

    let rotated = Srs::new(domain.clone(), key('b', 8)).with_previous(key('a', 7));
    let signed_new = rotated.forward(&sender, now()).expect("new");
    assert!(
        signed_new.local_part().as_str().starts_with("SRS0=b"),
        "{signed_new:?}"
    );
    assert_eq!(
        rotated
            .reverse(&signed_old, now())
            .expect("old still valid"),
        sender
    );
    assert_eq!(rotated.reverse(&signed_new, now()).expect("new"), sender);

    // Once the old key is dropped, its addresses are refused.
    let retired = Srs::new(domain.clone(), key('b', 8));
    assert_eq!(
        retired.reverse(&signed_old, now()),
        Err(SrsError::UnknownKey { id: 'a' })
    );
    // Same id, different secret: the hash fails.
    let other = Srs::new(domain, key('a', 9));
    assert_eq!(other.reverse(&signed_old, now()), Err(SrsError::BadHash));
}

#[test]
fn key_ids_are_case_insensitive_and_validated() {
    assert_eq!(key('A', 1).id(), 'a');
    assert_eq!(
        SrsKey::new('=', [0; 32]).err(),
        Some(SrsKeyError::InvalidId)
    );
    assert_eq!(
        SrsKey::new('é', [0; 32]).err(),
        Some(SrsKeyError::InvalidId)
    );
    let upper = Srs::new(srs_domain(), key('A', 7));
    let sender = addr("bob@sender.example");
    let out = upper.forward(&sender, now()).expect("forward");
    assert_eq!(srs().reverse(&out, now()).expect("same key"), sender);
}

#[test]
fn keys_from_base64_and_random() {
    let k =
        SrsKey::from_base64('k', "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").expect("b64");
    let sender = addr("bob@sender.example");
    let a = Srs::new(srs_domain(), k)
        .forward(&sender, now())
        .expect("a");
    let b = Srs::new(srs_domain(), key('k', 7))
        .forward(&sender, now())
        .expect("b");
    assert_eq!(a.local_part().as_str(), b.local_part().as_str());
    assert_eq!(
        SrsKey::from_base64('k', "!!").err(),
        Some(SrsKeyError::Base64)
    );
    assert_eq!(
        SrsKey::from_base64('k', "AAAA").err(),
        Some(SrsKeyError::KeyLength { len: 3 })
    );
    let r1 = SrsKey::generate('r').expect("random");
    let r2 = SrsKey::generate('r').expect("random");
    let x = Srs::new(srs_domain(), r1)
        .forward(&sender, now())
        .expect("x");
    let y = Srs::new(srs_domain(), r2)
        .forward(&sender, now())
        .expect("y");
    assert_ne!(x.local_part().as_str(), y.local_part().as_str());
}

#[test]
fn debug_never_prints_the_secret() {
    let k = key('q', 0xAB);
    let debug = format!("{k:?}");
    assert_eq!(debug, "SrsKey { id: 'q', .. }");
    let srs = Srs::new(srs_domain(), k).with_previous(key('p', 0xCD));
    let debug = format!("{srs:?}");
    assert!(debug.contains("SrsKey { id: 'q', .. }"), "{debug}");
    assert!(!debug.contains("171") && !debug.contains("205"), "{debug}");
}

// ---------------------------------------------------------------------------
// Case mangling and rejection

#[test]
fn case_mangled_addresses_still_reverse() {
    let srs = srs();
    let sender = addr("Bob.Smith@Sender.Example");
    let out = srs.forward(&sender, now()).expect("forward");
    let wire = out.to_ascii_string().expect("ascii");
    for mangled in [wire.to_uppercase(), wire.to_lowercase()] {
        let back = srs.reverse(&addr(&mangled), now()).expect(&mangled);
        assert_eq!(back, sender);
    }
}

#[test]
fn rejections() {
    let srs = srs();
    let now = now();
    assert_eq!(
        srs.reverse(&addr("bob@srs.alias.example"), now),
        Err(SrsError::NotSrs)
    );
    let good = srs
        .forward(&addr("bob@sender.example"), now)
        .expect("forward");
    let elsewhere = EmailAddress::new(
        good.local_part().clone(),
        DomainName::parse("other.example").expect("d"),
    )
    .expect("address");
    assert_eq!(srs.reverse(&elsewhere, now), Err(SrsError::NotSrs));
    for malformed in [
        "SRS0=abc@srs.alias.example",
        "SRS0=aaaaaaa=aa=example.com@srs.alias.example",
        "SRS0=aaaaaaa=a=example.com=bob@srs.alias.example",
        "SRS0=aaaaaaa=a1=example.com=bob@srs.alias.example",
        "SRS0=aaaaaa=aa=example.com=bob@srs.alias.example",
        "SRS0=aaaaaa1=aa=example.com=bob@srs.alias.example",
        "SRS0=aaaaaaa=aa=exa_mple.com=bob@srs.alias.example",
        "SRS0=aaaaaaa=aa=example.com=@srs.alias.example",
        "SRS1=aaaaaaa=fwd1.example@srs.alias.example",
        "SRS1=aaaaaaa=fwd1.example=@srs.alias.example",
    ] {
        assert_eq!(
            srs.reverse(&addr(malformed), now),
            Err(SrsError::Malformed),
            "{malformed}"
        );
    }
    assert_eq!(
        srs.reverse(
            &addr("SRS0=zaaaaaa=aa=example.com=bob@srs.alias.example"),
            now
        ),
        Err(SrsError::UnknownKey { id: 'z' })
    );
    assert_eq!(
        srs.reverse(
            &addr("SRS0=aaaaaaa=aa=example.com=bob@srs.alias.example"),
            now
        ),
        Err(SrsError::BadHash)
    );
}

#[test]
fn is_srs_is_a_cheap_syntactic_test() {
    for yes in ["SRS0=x", "srs0=abc", "SRS1+abc", "SRS0-x", "\"SRS0=a b\""] {
        assert!(Srs::is_srs(yes), "{yes}");
    }
    for no in [
        "SRS0=",
        "SRS2=abc",
        "SRS0abc",
        "bob",
        "",
        "SRS",
        "xSRS0=abc",
        "SRS0.abc",
    ] {
        assert!(!Srs::is_srs(no), "{no}");
    }
}

// ---------------------------------------------------------------------------
// Properties

/// Content of an original local part: dot-atoms, quoted strings with spaces
/// and escapes, and non-ASCII characters.
fn local_content() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[a-zA-Z0-9=+_-]{1,8}){0,2}",
        "[a-zA-Z0-9 .=\"\\\\@()<>,;:-]{1,16}",
        "[a-zé日本ßÖİK=. ]{1,10}",
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,10}(\\.[a-z0-9-]{0,6}[a-z0-9]){0,2}\\.[a-z]{2,6}",
        "(bücher|例子|xn--bcher-kva|MÜNCHEN)\\.[a-z]{2,4}",
    ]
}

fn sender() -> impl Strategy<Value = EmailAddress> {
    (local_content(), domain()).prop_filter_map("valid address", |(l, d)| {
        let local = local_from_content(&l).ok()?;
        let domain = DomainName::parse(&d).ok()?;
        EmailAddress::new(local, domain).ok()
    })
}

/// Replacement characters for tampering: separators, base32, digits outside
/// base32, case pairs, non-ASCII look-alikes.
fn tamper_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '=', '+', '-', '.', '0', '1', '8', '9', 'a', 'A', 'z', 'Z', '2', '7', 'é', 'K',
            '\u{212A}', ' ', '"', '@', 'x', 'q',
        ]),
        any::<char>().prop_filter("no controls", |c| !c.is_control()),
    ]
}

proptest! {
    #[test]
    fn round_trip_for_generated_addresses(sender in sender(), day in 0i32..40_000, age in 0i32..=21) {
        let srs = srs();
        match srs.forward(&sender, on_day(day)) {
            Ok(out) => {
                prop_assert_eq!(out.domain().as_ascii(), SRS_DOMAIN);
                prop_assert!(Srs::is_srs(out.local_part().as_str()));
                let back = srs.reverse(&out, on_day(day + age)).expect("reverse");
                prop_assert_eq!(back.local_part().as_str(), sender.local_part().as_str());
                prop_assert_eq!(back.domain().as_ascii(), sender.domain().as_ascii());
                // The wire form survives reparsing.
                let reparsed = EmailAddress::parse(&out.to_string()).expect("reparse");
                prop_assert_eq!(srs.reverse(&reparsed, on_day(day)).expect("reparsed"), sender);
            }
            Err(e) => {
                // Only length can make forwarding fail; 17 octets of overhead.
                prop_assert_eq!(e, SrsError::TooLong);
                prop_assert!(content(sender.local_part()).len() + sender.domain().as_ascii().len() + 17 > 48);
            }
        }
    }

    #[test]
    fn any_single_character_change_is_rejected_or_harmless(
        sender in sender(),
        index in any::<prop::sample::Index>(),
        replacement in tamper_char(),
        mode in 0u8..3,
    ) {
        let srs = srs();
        let Ok(out) = srs.forward(&sender, now()) else { return Ok(()); };
        let original: Vec<char> = content(out.local_part()).chars().collect();
        let i = index.index(original.len());
        let mut changed = original.clone();
        match mode {
            0 => {
                prop_assume!(changed[i] != replacement);
                changed[i] = replacement;
            }
            1 => { changed.remove(i); }
            _ => changed.insert(i, replacement),
        }
        let changed: String = changed.into_iter().collect();
        let Ok(local) = local_from_content(&changed) else { return Ok(()); };
        let Ok(tampered) = EmailAddress::new(local, srs_domain()) else { return Ok(()); };
        if let Ok(back) = srs.reverse(&tampered, now()) {
            prop_assert_eq!(&back, &sender, "{:?} -> {:?}", out, tampered);
        }
    }

    #[test]
    fn case_changes_of_the_whole_address_reverse_to_the_same_sender(sender in sender()) {
        let srs = srs();
        let Ok(out) = srs.forward(&sender, now()) else { return Ok(()); };
        for text in [out.to_string().to_ascii_uppercase(), out.to_string().to_ascii_lowercase()] {
            if let Ok(mangled) = EmailAddress::parse(&text) {
                prop_assert_eq!(srs.reverse(&mangled, now()).expect("mangled"), sender.clone());
            }
        }
    }

    #[test]
    fn no_panic_on_arbitrary_local_parts(text in "\\PC{0,70}", prefixed in any::<bool>()) {
        let srs = srs();
        let text = if prefixed { format!("SRS0={text}") } else { text };
        let _ = Srs::is_srs(&text);
        for candidate in [LocalPart::parse(&text), local_from_content(&text)] {
            if let Ok(local) = candidate
                && let Ok(address) = EmailAddress::new(local, srs_domain())
            {
                let _ = srs.reverse(&address, now());
                let _ = srs.forward(&address, now());
            }
        }
    }
}
