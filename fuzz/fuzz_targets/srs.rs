//! Arbitrary bytes as the local part of an address on the SRS domain:
//! reversing must never panic, whatever the input. Inputs that parse as an
//! ordinary sender elsewhere must forward and reverse back to themselves
//! (unless too long).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpy_core::address::{DomainName, EmailAddress, LocalPart};
use smtpy_core::srs::{Srs, SrsError, SrsKey};
use smtpy_core::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(domain) = DomainName::parse("srs.alias.example") else {
        return;
    };
    let Ok(key) = SrsKey::new('a', [7; 32]) else {
        return;
    };
    let srs = Srs::new(domain.clone(), key);
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let text = String::from_utf8_lossy(data);
    let _ = Srs::is_srs(&text);
    let Ok(local) = LocalPart::parse(&text) else {
        return;
    };
    if let Ok(address) = EmailAddress::new(local.clone(), domain) {
        let _ = srs.reverse(&address, now);
    }
    let Ok(elsewhere) = DomainName::parse("sender.example") else {
        return;
    };
    if let Ok(sender) = EmailAddress::new(local, elsewhere) {
        match srs.forward(&sender, now) {
            Ok(rewritten) => {
                let back = srs
                    .reverse(&rewritten, now)
                    .expect("own SRS address must reverse");
                if !Srs::is_srs(sender.local_part().as_str()) {
                    assert_eq!(back, sender);
                }
            }
            Err(e) => assert_eq!(e, SrsError::TooLong),
        }
    }
});
