//! Tests for `smtpy_core::address`: table-driven accept/reject cases and
//! property tests (round trips, idempotent normalisation, no panics).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use smtpy_core::address::{
    AddressError, DomainName, EmailAddress, LocalPart, MAX_ADDRESS_LEN, MAX_DOMAIN_LEN,
    MAX_INPUT_LEN, MAX_LOCAL_PART_LEN,
};

fn parse_ok(input: &str) -> EmailAddress {
    match EmailAddress::parse(input) {
        Ok(a) => a,
        Err(e) => panic!("{input:?} should parse, got {e:?} ({e})"),
    }
}

fn domain_ok(input: &str) -> DomainName {
    match DomainName::parse(input) {
        Ok(d) => d,
        Err(e) => panic!("{input:?} should parse as a domain, got {e:?} ({e})"),
    }
}

// ---------------------------------------------------------------------------
// Table-driven: accepted addresses

/// One accepted input and what it must parse to.
struct Accept {
    input: &'static str,
    /// Canonical local part text (original case).
    local: &'static str,
    /// A-label domain.
    ascii: &'static str,
    /// U-label domain.
    unicode: &'static str,
    /// Lookup key.
    canonical: &'static str,
}

const fn accept(
    input: &'static str,
    local: &'static str,
    ascii: &'static str,
    unicode: &'static str,
    canonical: &'static str,
) -> Accept {
    Accept {
        input,
        local,
        ascii,
        unicode,
        canonical,
    }
}

const ACCEPT: &[Accept] = &[
    accept(
        "user@example.com",
        "user",
        "example.com",
        "example.com",
        "user@example.com",
    ),
    accept(
        "User.Name+Tag@Example.COM",
        "User.Name+Tag",
        "example.com",
        "example.com",
        "user.name+tag@example.com",
    ),
    accept("a@b.c", "a", "b.c", "b.c", "a@b.c"),
    accept(
        "user@localhost",
        "user",
        "localhost",
        "localhost",
        "user@localhost",
    ),
    accept(
        "USER@LOCALHOST",
        "USER",
        "localhost",
        "localhost",
        "user@localhost",
    ),
    // Every ASCII atext special.
    accept(
        "!#$%&'*+-/=?^_`{|}~@example.com",
        "!#$%&'*+-/=?^_`{|}~",
        "example.com",
        "example.com",
        "!#$%&'*+-/=?^_`{|}~@example.com",
    ),
    // The % hack and bang paths are plain local parts.
    accept(
        "user%other@example.com",
        "user%other",
        "example.com",
        "example.com",
        "user%other@example.com",
    ),
    accept(
        "host!user@example.com",
        "host!user",
        "example.com",
        "example.com",
        "host!user@example.com",
    ),
    // Quoted local parts.
    accept(
        "\"john doe\"@example.com",
        "\"john doe\"",
        "example.com",
        "example.com",
        "\"john doe\"@example.com",
    ),
    accept(
        "\"John Doe\"@example.com",
        "\"John Doe\"",
        "example.com",
        "example.com",
        "\"john doe\"@example.com",
    ),
    // Needlessly quoted dot-atom is unquoted.
    accept(
        "\"john.doe\"@example.com",
        "john.doe",
        "example.com",
        "example.com",
        "john.doe@example.com",
    ),
    accept(
        "\"a\"@x.example",
        "a",
        "x.example",
        "x.example",
        "a@x.example",
    ),
    // '@' inside quotes belongs to the local part.
    accept(
        "\"a@b\"@example.com",
        "\"a@b\"",
        "example.com",
        "example.com",
        "\"a@b\"@example.com",
    ),
    accept(
        "\"a@b@c\"@example.com",
        "\"a@b@c\"",
        "example.com",
        "example.com",
        "\"a@b@c\"@example.com",
    ),
    // Escapes: \" and \\ stay escaped, other escapes are removed.
    accept(
        r#""a\"b"@example.com"#,
        r#""a\"b""#,
        "example.com",
        "example.com",
        r#""a\"b"@example.com"#,
    ),
    accept(
        r#""a\\b"@example.com"#,
        r#""a\\b""#,
        "example.com",
        "example.com",
        r#""a\\b"@example.com"#,
    ),
    accept(
        r#""\a\b"@example.com"#,
        "ab",
        "example.com",
        "example.com",
        "ab@example.com",
    ),
    accept(
        r#""a\ b"@example.com"#,
        "\"a b\"",
        "example.com",
        "example.com",
        "\"a b\"@example.com",
    ),
    accept(
        r#""\@"@example.com"#,
        "\"@\"",
        "example.com",
        "example.com",
        "\"@\"@example.com",
    ),
    // Quoting allows what a dot-string does not.
    accept(
        "\"a..b\"@example.com",
        "\"a..b\"",
        "example.com",
        "example.com",
        "\"a..b\"@example.com",
    ),
    accept(
        "\".a\"@example.com",
        "\".a\"",
        "example.com",
        "example.com",
        "\".a\"@example.com",
    ),
    accept(
        "\" \"@example.com",
        "\" \"",
        "example.com",
        "example.com",
        "\" \"@example.com",
    ),
    accept(
        "\"(),:;<>[]\"@example.com",
        "\"(),:;<>[]\"",
        "example.com",
        "example.com",
        "\"(),:;<>[]\"@example.com",
    ),
    // SMTPUTF8 local parts.
    accept(
        "пример@example.com",
        "пример",
        "example.com",
        "example.com",
        "пример@example.com",
    ),
    accept(
        "ПРИМЕР@Example.com",
        "ПРИМЕР",
        "example.com",
        "example.com",
        "пример@example.com",
    ),
    accept(
        "\"пример тест\"@example.com",
        "\"пример тест\"",
        "example.com",
        "example.com",
        "\"пример тест\"@example.com",
    ),
    accept(
        "用户@例子.广告",
        "用户",
        "xn--fsqu00a.xn--4rr70v",
        "例子.广告",
        "用户@xn--fsqu00a.xn--4rr70v",
    ),
    // IDN domains, either form, any case.
    accept(
        "user@bücher.example",
        "user",
        "xn--bcher-kva.example",
        "bücher.example",
        "user@xn--bcher-kva.example",
    ),
    accept(
        "user@xn--bcher-kva.example",
        "user",
        "xn--bcher-kva.example",
        "bücher.example",
        "user@xn--bcher-kva.example",
    ),
    accept(
        "user@XN--BCHER-KVA.EXAMPLE",
        "user",
        "xn--bcher-kva.example",
        "bücher.example",
        "user@xn--bcher-kva.example",
    ),
    accept(
        "user@BÜCHER.Example",
        "user",
        "xn--bcher-kva.example",
        "bücher.example",
        "user@xn--bcher-kva.example",
    ),
    // UTS #46 mapping: ideographic full stop and full-width letters.
    accept(
        "user@bücher\u{3002}example",
        "user",
        "xn--bcher-kva.example",
        "bücher.example",
        "user@xn--bcher-kva.example",
    ),
    accept(
        "user@ｅｘａｍｐｌｅ.com",
        "user",
        "example.com",
        "example.com",
        "user@example.com",
    ),
    // Domain label shapes.
    accept(
        "u@a-b.example",
        "u",
        "a-b.example",
        "a-b.example",
        "u@a-b.example",
    ),
    accept(
        "u@1a.123.example",
        "u",
        "1a.123.example",
        "1a.123.example",
        "u@1a.123.example",
    ),
    accept(
        "u@ab--cd.example",
        "u",
        "ab--cd.example",
        "ab--cd.example",
        "u@ab--cd.example",
    ),
    accept("u@x1", "u", "x1", "x1", "u@x1"),
];

#[test]
fn accepted_addresses() {
    for case in ACCEPT {
        let a = parse_ok(case.input);
        assert_eq!(
            a.local_part().as_str(),
            case.local,
            "local of {:?}",
            case.input
        );
        assert_eq!(
            a.domain().as_ascii(),
            case.ascii,
            "ascii of {:?}",
            case.input
        );
        assert_eq!(
            a.domain().as_unicode(),
            case.unicode,
            "unicode of {:?}",
            case.input
        );
        assert_eq!(
            a.canonical(),
            case.canonical,
            "canonical of {:?}",
            case.input
        );
        assert_eq!(
            a.to_string(),
            format!("{}@{}", case.local, case.unicode),
            "display of {:?}",
            case.input
        );
        assert_eq!(
            a.requires_smtputf8(),
            !case.local.is_ascii(),
            "smtputf8 of {:?}",
            case.input
        );
        assert_eq!(a.local_part().is_quoted(), case.local.starts_with('"'));
        // The display form and the key both parse back to an equal address.
        assert_eq!(
            parse_ok(&a.to_string()),
            a,
            "display round trip of {:?}",
            case.input
        );
        let key = parse_ok(&a.canonical());
        assert_eq!(key, a);
        assert_eq!(key.canonical(), a.canonical());
        // FromStr is parse.
        let via_from_str: EmailAddress = case.input.parse().expect("FromStr");
        assert_eq!(via_from_str, a);
    }
}

// ---------------------------------------------------------------------------
// Table-driven: rejected addresses

fn invalid_local(reason: &'static str) -> AddressError {
    AddressError::InvalidLocalPart { reason }
}

fn invalid_domain(reason: &'static str) -> AddressError {
    AddressError::InvalidDomain { reason }
}

const NOT_ALLOWED_UNQUOTED: &str = "character not allowed outside a quoted string";
const LDH_ONLY: &str = "only letters, digits, hyphens and dots are allowed";
const HYPHEN: &str = "a label may not start or end with a hyphen";
const WHOLE: &str = "a quoted string must make up the whole local part";

#[test]
fn rejected_addresses() {
    let long_local_65 = format!("{}@example.com", "a".repeat(65));
    let label_64 = format!("user@{}.example", "a".repeat(64));
    let idn_label_too_long = format!("user@{}.example", "ü".repeat(60));
    // 63+1+63+1+63+1+62 = 254 octets.
    let domain_254 = format!("user@{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
    // 64 + 1 + 190 = 255 octets.
    let address_255 = format!(
        "{}@{}.{}.{}",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62)
    );
    let huge = format!("{}@example.com", "a".repeat(100_000));
    let huge_domain = format!("user@{}", "a.".repeat(400) + "com");
    // U+023A is 2 octets, its lower case U+2C65 is 3: the key would not fit.
    let grows_when_lowered = format!("{}@example.com", "\u{23A}".repeat(32));

    let cases: Vec<(&str, AddressError)> = vec![
        // Empty things.
        ("", AddressError::Empty),
        ("@", invalid_local("empty local part")),
        ("@example.com", invalid_local("empty local part")),
        ("user@", invalid_domain("empty domain")),
        ("\"\"@example.com", invalid_local("empty quoted string")),
        // No '@', too many '@'.
        ("userexample.com", AddressError::MissingAt),
        ("\"user@example.com\"", AddressError::MissingAt),
        (
            "a@b@example.com",
            invalid_local("more than one '@' outside a quoted string"),
        ),
        // Source route.
        (
            "@a,@b:user@example.com",
            invalid_local("source routes are not supported"),
        ),
        (
            "@a:user@example.com",
            invalid_local("source routes are not supported"),
        ),
        // Dots in the local part.
        (".user@example.com", invalid_local("leading dot")),
        ("user.@example.com", invalid_local("trailing dot")),
        ("us..er@example.com", invalid_local("two dots in a row")),
        (".@example.com", invalid_local("leading dot")),
        // Whitespace, brackets, display names.
        (
            "us er@example.com",
            invalid_local("whitespace outside a quoted string"),
        ),
        (
            " user@example.com",
            invalid_local("whitespace outside a quoted string"),
        ),
        ("user@example.com ", invalid_domain(LDH_ONLY)),
        ("<user@example.com>", invalid_local(NOT_ALLOWED_UNQUOTED)),
        (
            "John <user@example.com>",
            invalid_local("whitespace outside a quoted string"),
        ),
        (
            "a(comment)@example.com",
            invalid_local(NOT_ALLOWED_UNQUOTED),
        ),
        ("a,b@example.com", invalid_local(NOT_ALLOWED_UNQUOTED)),
        ("a\\b@example.com", invalid_local(NOT_ALLOWED_UNQUOTED)),
        // Quoted string misuse.
        (
            "\"abc@example.com",
            invalid_local("unterminated quoted string"),
        ),
        ("\"a\"b@example.com", invalid_local(WHOLE)),
        ("a\"b\"@example.com", invalid_local(WHOLE)),
        ("\"a\".b@example.com", invalid_local(WHOLE)),
        (
            "\"a\\\"@example.com",
            invalid_local("unterminated quoted string"),
        ),
        (
            "\"a\\é\"@example.com",
            invalid_local("a backslash may only escape a printable ASCII character"),
        ),
        // Control characters, anywhere.
        ("us\0er@example.com", invalid_local("control character")),
        ("user\r\n@example.com", invalid_local("control character")),
        ("\"us\ner\"@example.com", invalid_local("control character")),
        ("\"us\ter\"@example.com", invalid_local("control character")),
        (
            "\"a\\\u{7f}\"@example.com",
            invalid_local("control character"),
        ),
        ("\"a\\\0\"@example.com", invalid_local("control character")),
        ("us\u{85}er@example.com", invalid_local("control character")),
        ("user@exam\0ple.com", invalid_domain(LDH_ONLY)),
        (
            "user@bücher\u{85}.example",
            invalid_domain("control character"),
        ),
        // Address literals.
        ("user@[192.0.2.1]", AddressError::AddressLiteral),
        ("user@[IPv6:2001:db8::1]", AddressError::AddressLiteral),
        ("user@[]", AddressError::AddressLiteral),
        // Bare IP addresses are not domain names.
        (
            "user@192.0.2.1",
            invalid_domain("the last label may not be all digits"),
        ),
        (
            "user@123",
            invalid_domain("the last label may not be all digits"),
        ),
        // Domain shape.
        ("user@example.com.", invalid_domain("trailing dot")),
        ("user@bücher.example.", invalid_domain("trailing dot")),
        ("user@bücher\u{3002}", invalid_domain("trailing dot")),
        ("user@.", invalid_domain("trailing dot")),
        ("user@.example.com", AddressError::EmptyLabel),
        ("user@example..com", AddressError::EmptyLabel),
        ("user@bücher..example", AddressError::EmptyLabel),
        ("user@-example.com", invalid_domain(HYPHEN)),
        ("user@example-.com", invalid_domain(HYPHEN)),
        ("user@exa_mple.com", invalid_domain(LDH_ONLY)),
        ("user@exa mple.com", invalid_domain(LDH_ONLY)),
        ("user@example.com>", invalid_domain(LDH_ONLY)),
        ("user@ex%ample.com", invalid_domain(LDH_ONLY)),
        // IDNA failures.
        ("user@xn--abc.example", AddressError::Idna),
        ("user@xn--.example", invalid_domain(HYPHEN)),
        ("user@\u{2474}.example", AddressError::Idna),
        ("user@bü_cher.example", AddressError::Idna),
        ("user@-bücher.example", AddressError::Idna),
        // Lengths.
        (&long_local_65, AddressError::LocalPartTooLong { len: 65 }),
        (
            &grows_when_lowered,
            AddressError::LocalPartTooLong { len: 96 },
        ),
        (&label_64, AddressError::LabelTooLong),
        (&idn_label_too_long, AddressError::LabelTooLong),
        (&domain_254, AddressError::DomainTooLong { len: 254 }),
        (&address_255, AddressError::AddressTooLong { len: 255 }),
        (&huge, AddressError::AddressTooLong { len: huge.len() }),
        (
            &huge_domain,
            AddressError::DomainTooLong {
                len: huge_domain.len() - 5,
            },
        ),
    ];
    for (input, expected) in &cases {
        let got = EmailAddress::parse(input);
        assert_eq!(
            got.as_ref().err(),
            Some(expected),
            "input {input:?} gave {got:?}"
        );
        // Every error has a human message.
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn length_boundaries() {
    // 64-octet local part is fine, 65 is not.
    let local_64 = "a".repeat(MAX_LOCAL_PART_LEN);
    parse_ok(&format!("{local_64}@example.com"));
    let quoted_64 = format!("\"{}\"", "a ".repeat(31));
    assert_eq!(quoted_64.len(), MAX_LOCAL_PART_LEN);
    parse_ok(&format!("{quoted_64}@example.com"));
    // The limit is on the canonical form: needless escapes do not count...
    let escaped = format!("\"{}\"", "\\a".repeat(64));
    let a = parse_ok(&format!("{escaped}@example.com"));
    assert_eq!(a.local_part().as_str(), local_64);
    // ...but the escapes that remain do.
    let escapes_64 = format!("\"{}\"", "\\\"".repeat(31));
    assert_eq!(escapes_64.len(), 64);
    parse_ok(&format!("{escapes_64}@example.com"));
    assert_eq!(
        LocalPart::parse(&format!("\"{}\"", "\\\"".repeat(32))).err(),
        Some(AddressError::LocalPartTooLong { len: 66 })
    );
    // Non-ASCII counts in octets: 32 two-octet letters = 64 octets.
    parse_ok(&format!("{}@example.com", "я".repeat(32)));
    assert_eq!(
        EmailAddress::parse(&format!("{}a@example.com", "я".repeat(32))).err(),
        Some(AddressError::LocalPartTooLong { len: 65 })
    );

    // 63-octet label is fine.
    let label_63 = "a".repeat(63);
    parse_ok(&format!("user@{label_63}.example"));

    // A 253-octet domain parses on its own, but leaves no room for an address.
    let domain_253 = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
    assert_eq!(domain_253.len(), MAX_DOMAIN_LEN);
    assert_eq!(domain_ok(&domain_253).as_ascii(), domain_253);
    assert_eq!(
        EmailAddress::parse(&format!("u@{domain_253}")).err(),
        Some(AddressError::AddressTooLong { len: 255 })
    );

    // Exactly 254 octets is fine.
    let address_254 = format!(
        "{}@{}.{}.{}",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(address_254.len(), MAX_ADDRESS_LEN);
    assert_eq!(parse_ok(&address_254).canonical(), address_254);

    // The total length is measured with the A-label domain.
    let idn = format!("{}@{}.bücher.example", "a".repeat(64), "b".repeat(63));
    let a = parse_ok(&idn);
    assert!(a.canonical().len() <= MAX_ADDRESS_LEN);
    let idn_long = format!(
        "{}@{}.{}.{}.bücher.example",
        "a".repeat(64),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(63)
    );
    assert!(matches!(
        EmailAddress::parse(&idn_long),
        Err(AddressError::AddressTooLong { .. })
    ));

    // Input longer than the hard bound is rejected before anything else.
    let bound = "a".repeat(MAX_INPUT_LEN + 1);
    assert_eq!(
        DomainName::parse(&bound).err(),
        Some(AddressError::DomainTooLong {
            len: MAX_INPUT_LEN + 1
        })
    );
    assert_eq!(
        LocalPart::parse(&bound).err(),
        Some(AddressError::LocalPartTooLong {
            len: MAX_INPUT_LEN + 1
        })
    );
}

#[test]
fn new_rechecks_total_length() {
    let local = LocalPart::parse(&"a".repeat(64)).expect("local part");
    let domain = domain_ok(&format!("{0}.{0}.{0}", "b".repeat(63)));
    assert_eq!(
        EmailAddress::new(local.clone(), domain).err(),
        Some(AddressError::AddressTooLong { len: 256 })
    );
    let short = domain_ok("example.com");
    let a = EmailAddress::new(local, short).expect("fits");
    assert_eq!(a.canonical(), format!("{}@example.com", "a".repeat(64)));
}

// ---------------------------------------------------------------------------
// Individual types and behaviours

#[test]
fn domain_forms_and_equivalence() {
    let u = domain_ok("bücher.example");
    let a = domain_ok("xn--bcher-kva.example");
    let upper = domain_ok("BÜCHER.EXAMPLE");
    assert_eq!(u, a);
    assert_eq!(a, upper);
    assert_eq!(u.as_ascii(), "xn--bcher-kva.example");
    assert_eq!(a.as_unicode(), "bücher.example");
    assert_eq!(a.to_string(), "bücher.example");
    assert_eq!(format!("{a:?}"), "DomainName(\"xn--bcher-kva.example\")");
    let s = RandomState::new();
    assert_eq!(s.hash_one(&u), s.hash_one(&a));
    let parsed: DomainName = "Example.COM".parse().expect("FromStr");
    assert_eq!(parsed.as_ascii(), "example.com");

    assert_eq!(DomainName::parse("").err(), Some(AddressError::Empty));
    assert_eq!(
        DomainName::parse("[127.0.0.1]").err(),
        Some(AddressError::AddressLiteral)
    );
    assert_eq!(
        DomainName::parse("example.com.").err(),
        Some(AddressError::InvalidDomain {
            reason: "trailing dot"
        })
    );
}

#[test]
fn subdomains() {
    let parent = domain_ok("example.com");
    assert!(domain_ok("mail.example.com").is_subdomain_of(&parent));
    assert!(domain_ok("a.b.EXAMPLE.com").is_subdomain_of(&parent));
    assert!(domain_ok("example.com").is_subdomain_of(&parent));
    assert!(!domain_ok("badexample.com").is_subdomain_of(&parent));
    assert!(!domain_ok("example.com.evil").is_subdomain_of(&parent));
    assert!(!domain_ok("com").is_subdomain_of(&parent));
    assert!(!parent.is_subdomain_of(&domain_ok("mail.example.com")));
    let idn = domain_ok("bücher.example");
    assert!(domain_ok("mail.xn--bcher-kva.example").is_subdomain_of(&idn));
    assert!(domain_ok("mail.bücher.example").is_subdomain_of(&domain_ok("example")));
}

#[test]
fn local_part_api() {
    let plain = LocalPart::parse("John.Doe").expect("plain");
    assert_eq!(plain.as_str(), "John.Doe");
    assert!(plain.is_ascii());
    assert!(!plain.is_quoted());
    assert_eq!(plain, LocalPart::parse("\"john.doe\"").expect("quoted"));
    assert_eq!(plain.to_string(), "John.Doe");
    assert_eq!(format!("{plain:?}"), "LocalPart(\"John.Doe\")");

    let quoted = LocalPart::parse(r#""a \"b\" \\c""#).expect("quoted");
    assert!(quoted.is_quoted());
    assert_eq!(quoted.as_str(), r#""a \"b\" \\c""#);

    let utf8: LocalPart = "пример".parse().expect("utf8");
    assert!(!utf8.is_ascii());

    assert_eq!(LocalPart::parse("").err(), Some(AddressError::Empty));
    assert_eq!(
        LocalPart::parse("a@b").err(),
        Some(AddressError::InvalidLocalPart {
            reason: "more than one '@' outside a quoted string"
        })
    );
    assert_eq!(
        LocalPart::parse("\"a@b\"").expect("quoted @").as_str(),
        "\"a@b\""
    );
}

#[test]
fn case_insensitive_identity_keeps_display_case() {
    let a = parse_ok("John.Doe@Example.COM");
    let b = parse_ok("john.doe@example.com");
    let c = parse_ok("\"JOHN.DOE\"@EXAMPLE.com");
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(a.cmp(&c), std::cmp::Ordering::Equal);
    assert_eq!(a.to_string(), "John.Doe@example.com");
    assert_eq!(c.to_string(), "JOHN.DOE@example.com");
    assert_eq!(a.to_ascii_string().as_deref(), Some("John.Doe@example.com"));
    let set: HashSet<EmailAddress> = [a, b, c].into_iter().collect();
    assert_eq!(set.len(), 1);

    assert_ne!(parse_ok("a@example.com"), parse_ok("b@example.com"));
    assert_ne!(parse_ok("a@example.com"), parse_ok("a@example.org"));
    // Unicode-aware lower-casing.
    assert_eq!(parse_ok("ÄÖÜ@example.com"), parse_ok("äöü@example.com"));
    assert_eq!(parse_ok("ÄÖÜ@example.com").canonical(), "äöü@example.com");
}

#[test]
fn smtputf8_and_ascii_forms() {
    let idn_only = parse_ok("user@bücher.example");
    assert!(!idn_only.requires_smtputf8());
    assert_eq!(
        idn_only.to_ascii_string().as_deref(),
        Some("user@xn--bcher-kva.example")
    );
    assert_eq!(idn_only.to_string(), "user@bücher.example");

    let utf8 = parse_ok("пример@bücher.example");
    assert!(utf8.requires_smtputf8());
    assert_eq!(utf8.to_ascii_string(), None);
    assert_eq!(utf8.to_string(), "пример@bücher.example");
    assert_eq!(utf8.canonical(), "пример@xn--bcher-kva.example");
    assert_eq!(
        format!("{utf8:?}"),
        "EmailAddress(\"пример@xn--bcher-kva.example\")"
    );
}

#[test]
fn serde_uses_human_form() {
    let a = parse_ok("\"John Doe\"@XN--BCHER-KVA.example");
    let json = serde_json::to_string(&a).expect("serialize");
    assert_eq!(json, r#""\"John Doe\"@bücher.example""#);
    let back: EmailAddress = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, a);
    assert_eq!(back.local_part().as_str(), "\"John Doe\"");

    let d = domain_ok("xn--bcher-kva.example");
    assert_eq!(
        serde_json::to_string(&d).expect("ser"),
        "\"bücher.example\""
    );
    let d2: DomainName = serde_json::from_str("\"BÜCHER.example\"").expect("de");
    assert_eq!(d2, d);

    let l = LocalPart::parse("\"a b\"").expect("local");
    assert_eq!(serde_json::to_string(&l).expect("ser"), r#""\"a b\"""#);
    let l2: LocalPart = serde_json::from_str(r#""\"a b\"""#).expect("de");
    assert_eq!(l2, l);

    // Parse errors become serde errors; non-strings are rejected.
    let err = serde_json::from_str::<EmailAddress>("\"a@b@c\"").expect_err("invalid");
    assert!(err.to_string().contains("invalid local part"), "{err}");
    assert!(serde_json::from_str::<EmailAddress>("42").is_err());
    assert!(serde_json::from_str::<DomainName>("\"[1.2.3.4]\"").is_err());
    assert!(serde_json::from_str::<LocalPart>("\"a..b\"").is_err());
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        AddressError::LocalPartTooLong { len: 65 }.to_string(),
        "the local part is 65 octets long; at most 64 are allowed"
    );
    assert_eq!(
        AddressError::InvalidDomain {
            reason: "trailing dot"
        }
        .to_string(),
        "invalid domain: trailing dot"
    );
    assert!(AddressError::AddressLiteral.to_string().contains("literal"));
}

// ---------------------------------------------------------------------------
// Property tests

/// An ASCII atom made of any atext.
fn ascii_atom() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,6}"
}

/// An atom with non-ASCII (SMTPUTF8) letters mixed in.
fn utf8_atom() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_+äöüéñßа-яА-Яα-ωΑ-ΡΣ-Ω中文字]{1,6}"
}

fn dot_atom() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![ascii_atom(), utf8_atom()], 1..=3)
        .prop_map(|atoms| atoms.join("."))
}

/// A quoted string, with random needless escapes.
fn quoted_string() -> impl Strategy<Value = String> {
    let content_char = prop_oneof![
        4 => prop::char::range(' ', '~'),
        1 => prop::sample::select(vec!['é', 'ж', 'ß', '中', '😀']),
    ];
    prop::collection::vec((content_char, any::<bool>()), 1..=20).prop_map(|chars| {
        let mut s = String::from("\"");
        for (c, escape) in chars {
            if c == '"' || c == '\\' || (escape && c.is_ascii()) {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    })
}

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![3 => dot_atom(), 1 => quoted_string()]
}

fn ascii_label() -> impl Strategy<Value = String> {
    // Random `xn--` labels are (correctly) rejected as bad Punycode.
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?".prop_filter("not an A-label", |l| {
        !l.to_ascii_lowercase().starts_with("xn--")
    })
}

fn idn_label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zäöüéèñçøåæœß]{1,8}",
        "[a-zA-ZÄÖÜ]{0,3}[äöüÄÖÜ][a-z]{0,3}",
        "[а-яА-Я]{1,8}",
        "[α-ωΑ-ΡΣ-Ω]{1,8}",
        prop::sample::select(vec![
            "xn--bcher-kva".to_owned(),
            "XN--MNCHEN-3YA".to_owned(),
            "例子".to_owned(),
        ]),
    ]
}

fn tld() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z]{2,6}", idn_label()]
}

fn domain() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![ascii_label(), idn_label()], 0..=3),
        tld(),
    )
        .prop_map(|(mut labels, tld)| {
            labels.push(tld);
            labels.join(".")
        })
}

/// Addresses that are valid by construction.
fn valid_address() -> impl Strategy<Value = String> {
    (local_part(), domain()).prop_map(|(l, d)| format!("{l}@{d}"))
}

/// Mostly-valid addresses with one character inserted, replaced or removed.
fn mutated_address() -> impl Strategy<Value = String> {
    let nasty = prop::sample::select(vec![
        '@', '"', '\\', '.', ' ', '\0', '\r', '\n', '\t', '[', ']', '<', '>', '-', '_', '%', '!',
        '\u{7f}', '\u{85}', '\u{ad}', '\u{200b}', '\u{3002}', '\u{fffd}', 'É', 'ß', '\u{23a}',
        '\u{130}', '\u{212a}', '\u{202e}', '\u{5d0}',
    ]);
    (valid_address(), any::<prop::sample::Index>(), nasty, 0..3u8).prop_map(|(s, idx, c, op)| {
        let mut chars: Vec<char> = s.chars().collect();
        let i = idx.index(chars.len() + 1);
        match op {
            0 => chars.insert(i, c),
            1 if i < chars.len() => chars[i] = c,
            _ if i < chars.len() => {
                chars.remove(i);
            }
            _ => chars.push(c),
        }
        chars.into_iter().collect()
    })
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_address(),
        3 => mutated_address(),
        1 => any::<String>(),
        1 => "\\PC{0,80}@\\PC{0,80}",
        1 => prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Exercises every accessor of a parsed address.
fn exercise(a: &EmailAddress) -> Result<(), TestCaseError> {
    let display = a.to_string();
    let canonical = a.canonical();
    prop_assert!(canonical.len() <= MAX_ADDRESS_LEN);
    prop_assert!(a.local_part().as_str().len() <= MAX_LOCAL_PART_LEN);
    prop_assert!(a.domain().as_ascii().len() <= MAX_DOMAIN_LEN);
    prop_assert!(a.domain().as_ascii().is_ascii());
    prop_assert_eq!(a.to_ascii_string().is_none(), a.requires_smtputf8());
    prop_assert_eq!(a.requires_smtputf8(), !a.local_part().is_ascii());
    if let Some(ascii) = a.to_ascii_string() {
        prop_assert!(ascii.is_ascii());
        prop_assert_eq!(&parse(&ascii)?, a);
    }
    let _ = (display, format!("{a:?}"), a.local_part().is_quoted());
    Ok(())
}

fn parse(s: &str) -> Result<EmailAddress, TestCaseError> {
    EmailAddress::parse(s).map_err(|e| fail(format!("{s:?} failed to parse: {e}")))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Generated valid addresses parse, and survive display and serde.
    #[test]
    fn valid_addresses_round_trip(input in valid_address()) {
        let a = parse(&input)?;
        exercise(&a)?;
        let again = parse(&a.to_string())?;
        prop_assert_eq!(&again, &a);
        prop_assert_eq!(again.canonical(), a.canonical());
        prop_assert_eq!(again.local_part().as_str(), a.local_part().as_str());
        prop_assert_eq!(again.domain().as_ascii(), a.domain().as_ascii());
        prop_assert_eq!(again.domain().as_unicode(), a.domain().as_unicode());
        prop_assert_eq!(again.to_string(), a.to_string());

        let json = serde_json::to_string(&a).map_err(|e| fail(e.to_string()))?;
        let de: EmailAddress = serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(de.to_string(), a.to_string());
        prop_assert_eq!(de, a);
    }

    /// Round trip (1) and idempotent normalisation (2) for anything that parses.
    #[test]
    fn any_parsed_input_round_trips_and_normalises(input in any_input()) {
        if let Ok(a) = EmailAddress::parse(&input) {
            exercise(&a)?;
            let again = parse(&a.to_string())?;
            prop_assert_eq!(&again, &a);
            prop_assert_eq!(again.canonical(), a.canonical());
            prop_assert_eq!(again.to_string(), a.to_string());

            let key = a.canonical();
            let from_key = parse(&key)?;
            prop_assert_eq!(from_key.canonical(), key.clone());
            prop_assert_eq!(&from_key, &a);
            // The key's local part is already lower case.
            let local = from_key.local_part().as_str();
            prop_assert_eq!(local.to_lowercase(), local);
        }
    }

    /// (3) Nothing panics, whatever the input.
    #[test]
    fn never_panics(input in any_input()) {
        if let Ok(a) = EmailAddress::parse(&input) {
            exercise(&a)?;
        }
        if let Ok(l) = LocalPart::parse(&input) {
            let _ = (l.as_str(), l.is_ascii(), l.is_quoted(), l.to_string());
            prop_assert!(l.as_str().len() <= MAX_LOCAL_PART_LEN);
        }
        if let Ok(d) = DomainName::parse(&input) {
            let back = DomainName::parse(d.as_unicode())
                .map_err(|e| fail(format!("{:?}: {e}", d.as_unicode())))?;
            prop_assert_eq!(back.as_ascii(), d.as_ascii());
            prop_assert!(d.is_subdomain_of(&d));
        }
        if let Some((l, d)) = input.rsplit_once('@') {
            let _ = LocalPart::parse(l);
            let _ = DomainName::parse(d);
        }
    }

    /// Arbitrary bytes, made into a string lossily.
    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = EmailAddress::parse(&s);
        let _ = LocalPart::parse(&s);
        let _ = DomainName::parse(&s);
    }

    /// Changing the case of ASCII letters never changes the identity.
    #[test]
    fn ascii_case_is_ignored(input in valid_address()) {
        let a = parse(&input)?;
        let upper = parse(&input.to_ascii_uppercase())?;
        let lower = parse(&input.to_ascii_lowercase())?;
        prop_assert_eq!(&upper, &a);
        prop_assert_eq!(&lower, &a);
        prop_assert_eq!(upper.canonical(), a.canonical());
    }

    /// Eq, Ord and Hash agree with each other and with the canonical key.
    #[test]
    fn comparisons_follow_the_key(x in valid_address(), y in valid_address()) {
        let a = parse(&x)?;
        let b = parse(&y)?;
        prop_assert_eq!(a == b, a.canonical() == b.canonical());
        prop_assert_eq!(a.cmp(&b), a.canonical().cmp(&b.canonical()));
        prop_assert_eq!(a.cmp(&b) == std::cmp::Ordering::Equal, a == b);
        let s = RandomState::new();
        if a == b {
            prop_assert_eq!(s.hash_one(&a), s.hash_one(&b));
        }
        let da = a.domain();
        let db = b.domain();
        prop_assert_eq!(da == db, da.as_ascii() == db.as_ascii());
        prop_assert_eq!(da.cmp(db), da.as_ascii().cmp(db.as_ascii()));
    }

    /// A-label and U-label input name the same domain.
    #[test]
    fn domain_forms_agree(input in domain()) {
        let d = DomainName::parse(&input).map_err(|e| fail(format!("{input:?}: {e}")))?;
        let from_ascii = DomainName::parse(d.as_ascii()).map_err(|e| fail(e.to_string()))?;
        let from_unicode = DomainName::parse(d.as_unicode()).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(&from_ascii, &d);
        prop_assert_eq!(&from_unicode, &d);
        prop_assert_eq!(from_ascii.as_unicode(), d.as_unicode());
        prop_assert!(d.is_subdomain_of(&from_unicode));
        if let Some((_, parent)) = d.as_ascii().split_once('.') {
            let p = DomainName::parse(parent).map_err(|e| fail(e.to_string()))?;
            prop_assert!(d.is_subdomain_of(&p));
            prop_assert!(!p.is_subdomain_of(&d));
        }
    }
}
