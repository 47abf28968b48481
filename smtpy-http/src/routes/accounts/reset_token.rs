//! Stateless password-reset tokens.
//!
//! `base64url(user id ‖ expiry ‖ HMAC-SHA256(key, user id ‖ expiry ‖ PHC))`
//! where the PHC string is the account's current password hash (empty when
//! it has none). Setting a password changes the hash, so a token works once;
//! it also stops working at its expiry. Nothing is stored.

use base64::Engine as _;
use ring::hmac;
use smtpy_core::ids::UserId;
use smtpy_core::model::User;
use smtpy_core::time::Timestamp;

const ID_LEN: usize = 16;
const EXP_LEN: usize = 8;
const MAC_LEN: usize = 32;
/// Length of a token, in characters.
pub(crate) const TOKEN_CHARS: usize = ((ID_LEN + EXP_LEN + MAC_LEN) * 4).div_ceil(3);

fn message(user: &User, expires: Timestamp) -> Vec<u8> {
    let phc = user.password.as_ref().map_or("", |p| p.as_phc());
    let mut m = Vec::with_capacity(ID_LEN + EXP_LEN + phc.len());
    m.extend_from_slice(&user.id.to_bytes());
    m.extend_from_slice(&expires.as_unix_millis().to_be_bytes());
    m.extend_from_slice(phc.as_bytes());
    m
}

/// A token for `user`, valid until `expires`. `None` without a key.
pub(crate) fn mint(key: &[u8], user: &User, expires: Timestamp) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, &message(user, expires));
    let mut raw = Vec::with_capacity(ID_LEN + EXP_LEN + MAC_LEN);
    raw.extend_from_slice(&user.id.to_bytes());
    raw.extend_from_slice(&expires.as_unix_millis().to_be_bytes());
    raw.extend_from_slice(tag.as_ref());
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// The parts of a well-formed token (not yet verified).
#[derive(Debug)]
pub(crate) struct Claim {
    /// The account it is for.
    pub user: UserId,
    /// When it stops working.
    pub expires: Timestamp,
    mac: Vec<u8>,
}

/// Splits a token; `None` when malformed.
pub(crate) fn parse(token: &str) -> Option<Claim> {
    if token.len() != TOKEN_CHARS {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    if raw.len() != ID_LEN + EXP_LEN + MAC_LEN {
        return None;
    }
    let id: [u8; ID_LEN] = raw[..ID_LEN].try_into().ok()?;
    let exp: [u8; EXP_LEN] = raw[ID_LEN..ID_LEN + EXP_LEN].try_into().ok()?;
    Some(Claim {
        user: UserId::from_bytes(id),
        expires: Timestamp::from_unix_millis(i64::from_be_bytes(exp)),
        mac: raw[ID_LEN + EXP_LEN..].to_vec(),
    })
}

/// Whether `claim` is an unexpired token for `user` in its current state
/// (constant-time MAC check).
pub(crate) fn verify(key: &[u8], claim: &Claim, user: &User, now: Timestamp) -> bool {
    if key.is_empty() || claim.user != user.id || claim.expires <= now {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, &message(user, claim.expires), &claim.mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smtpy_core::address::EmailAddress;
    use smtpy_core::model::Role;
    use smtpy_core::password::{PasswordHash, PasswordParams};

    #[test]
    fn tokens_round_trip_and_die_with_the_hash_or_time() {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let mut user = User::new(
            EmailAddress::parse("a@example.test").expect("addr"),
            Role::User,
            now,
        );
        let key = [7u8; 32];
        let exp = now.saturating_add(std::time::Duration::from_secs(60));
        let t = mint(&key, &user, exp).expect("token");
        assert_eq!(t.len(), TOKEN_CHARS);
        let c = parse(&t).expect("parse");
        assert!(verify(&key, &c, &user, now));
        assert!(!verify(&key, &c, &user, exp));
        assert!(!verify(&[8u8; 32], &c, &user, now));
        user.password = Some(
            PasswordHash::hash("new password!", &PasswordParams::insecure_fast_for_tests())
                .expect("hash"),
        );
        assert!(!verify(&key, &c, &user, now));
        assert!(parse("short").is_none());
        assert!(mint(&[], &user, exp).is_none());
    }
}
