//! Message rewriting: alias mode (senders become reverse aliases) and the
//! scrubbing of replies so the owner's mailbox never leaves.

pub mod alias_mode;
pub mod scrub;
