//! Arbitrary bytes as an incoming message to a bounce address: bounce
//! parsing and auto-reply detection must never panic, and what they return
//! must respect the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpy_core::bounce::{MAX_DIAGNOSTIC_LEN, MAX_RECIPIENTS, is_auto_reply, parse_bounce};

fuzz_target!(|data: &[u8]| {
    let _ = is_auto_reply(data);
    if let Some(bounce) = parse_bounce(data) {
        assert!(!bounce.recipients.is_empty());
        assert!(bounce.recipients.len() <= MAX_RECIPIENTS);
        let worst = bounce
            .recipients
            .iter()
            .map(|r| r.class)
            .reduce(|a, b| a.worst(b));
        assert_eq!(worst, Some(bounce.class));
        for r in &bounce.recipients {
            assert!(
                r.diagnostic
                    .as_ref()
                    .is_none_or(|d| d.len() <= MAX_DIAGNOSTIC_LEN)
            );
        }
    }
});
