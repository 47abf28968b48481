//! Arbitrary bytes into the address parser: it must never panic, and every
//! accepted address must round-trip through its display form and keep its
//! canonical key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpy_core::address::{DomainName, EmailAddress};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(addr) = EmailAddress::parse(&text) {
        let again = EmailAddress::parse(&addr.to_string()).expect("display form must parse");
        assert_eq!(again.canonical(), addr.canonical());
        assert_eq!(again, addr);
    }
    if let Ok(domain) = DomainName::parse(&text) {
        let again = DomainName::parse(domain.as_ascii()).expect("A-label form must parse");
        assert_eq!(again.as_unicode(), domain.as_unicode());
    }
});
