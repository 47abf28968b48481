//! Arbitrary bytes as the local part of an address on the bounce domain:
//! decoding must never panic, and only addresses we signed may decode. The
//! first 16 bytes, as a message id, must round-trip through `encode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpy_core::address::{DomainName, EmailAddress, LocalPart};
use smtpy_core::bounce::BounceAddresses;
use smtpy_core::ids::MessageId;
use smtpy_core::srs::SrsKey;
use smtpy_core::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let (Ok(domain), Ok(key)) = (
        DomainName::parse("bounce.alias.example"),
        SrsKey::new('a', [7; 32]),
    ) else {
        return;
    };
    let Ok(codec) = BounceAddresses::new(domain.clone(), key) else {
        return;
    };
    let now = Timestamp::from_unix_secs(1_700_000_000);

    let text = String::from_utf8_lossy(data);
    let _ = BounceAddresses::looks_like(&text);
    if let Ok(local) = LocalPart::parse(&text)
        && let Ok(address) = EmailAddress::new(local, domain)
        && let Ok(id) = codec.decode(&address, now)
    {
        // A forgery would need the 80-bit MAC: anything that decodes must be
        // exactly what we would have produced for that id (up to case).
        let ours = codec.encode(id, now);
        assert!(
            ours.local_part()
                .as_str()
                .eq_ignore_ascii_case(address.local_part().as_str()),
            "decoded an address we did not sign: {address:?}"
        );
    }

    if let Some(bytes) = data.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        let id = MessageId::from_bytes(bytes);
        let skew = i64::from(data.get(16).copied().unwrap_or(0)) * 3_600_000;
        let at = Timestamp::from_unix_millis(now.as_unix_millis() + skew);
        let address = codec.encode(id, at);
        assert_eq!(codec.decode(&address, at), Ok(id));
    }
});
