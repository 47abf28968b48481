//! Arbitrary bytes as a reverse-alias local part and as a forwarded
//! message: verifying, rewriting, tagging the subject and adding a field
//! must never panic. A rewritten message keeps the input's body, and
//! rewriting it again finds no outside address left.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::rewrite::alias_mode::{
    AliasModePlan, add_header, external_addresses, prefix_subject, rewrite,
};
use smtpy_core::srs::SrsKey;

fuzz_target!(|data: &[u8]| {
    let (Ok(domain), Ok(key)) = (
        DomainName::parse("alias.example"),
        SrsKey::new('a', [7; 32]),
    ) else {
        return;
    };
    let reverse = ReverseAliases::new(key);

    // The codec: any text, including mutations of a real token.
    let text = String::from_utf8_lossy(data);
    let _ = ReverseAliases::looks_like(&text);
    let _ = reverse.verify(&text, &domain);
    let _ = ReverseAliases::address(&text, &domain);
    if let Ok(token) = reverse.mint(&domain) {
        let mut mutated = token.into_bytes();
        for (i, &b) in data.iter().take(4).enumerate() {
            let at = usize::from(b) % mutated.len();
            mutated[at] = data.get(i + 4).copied().unwrap_or(b'-');
        }
        let mutated = String::from_utf8_lossy(&mutated);
        let _ = reverse.verify(&mutated, &domain);
    }

    // The rewriter: the bytes as a message.
    let Ok(alias) = EmailAddress::parse("shop@alias.example") else {
        return;
    };
    let is_ours = |a: &EmailAddress| a.domain() == &domain;
    let mut map = HashMap::new();
    for (i, external) in external_addresses(data, &is_ours).into_iter().enumerate() {
        if let Ok(r) = EmailAddress::parse(&format!("r--{i}@alias.example")) {
            map.insert(external.address.canonical(), r);
        }
    }
    let plan = AliasModePlan {
        alias: &alias,
        sender_format: "{name} via smtpy ({address})",
        reverse: &map,
    };
    if let Ok(out) = rewrite(data, &plan) {
        assert!(external_addresses(&out, &is_ours).is_empty());
    }
    let _ = prefix_subject(data, "[SPAM?]");
    let _ = prefix_subject(data, &text);
    let _ = add_header(data, "X-Smtpy-Test", &text);
});
