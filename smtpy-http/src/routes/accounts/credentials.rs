//! Password rules, argon2id hashing off the async runtime, and the dummy
//! verification that keeps unknown accounts as slow as known ones.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use smtpy_core::ids::UserId;
use smtpy_core::model::Actor;
use smtpy_core::password::{PasswordHash, PasswordParams};

use crate::audit::Audit;
use crate::config::HttpConfig;
use crate::problem::{ApiResult, Problem, check_len};
use crate::state::ApiState;

/// Longest accepted password, in characters.
pub(crate) const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a new password's length (`min_password_chars..=256`).
pub(crate) fn check_new_password(
    config: &HttpConfig,
    field: &str,
    password: &str,
) -> ApiResult<()> {
    check_len(
        field,
        password,
        config.min_password_chars.max(1),
        MAX_PASSWORD_CHARS,
    )
}

/// Hashes `password` with the configured argon2id cost, on a blocking thread.
pub(crate) async fn hash_password(state: &ApiState, password: &str) -> ApiResult<PasswordHash> {
    let params = state.config().password_params;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || PasswordHash::hash(&password, &params))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

/// A fixed hash per cost setting, verified against when the account is
/// unknown or has no password, so that the answer takes as long.
fn dummy_hash(params: PasswordParams) -> Option<PasswordHash> {
    static CACHE: OnceLock<Mutex<Vec<(PasswordParams, PasswordHash)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, h)) = cache.iter().find(|(p, _)| *p == params) {
        return Some(h.clone());
    }
    let hash = PasswordHash::hash("smtpy dummy password for timing", &params).ok()?;
    cache.push((params, hash.clone()));
    Some(hash)
}

/// Whether `password` matches `hash`. With no hash (unknown account, or an
/// account without a password) a dummy hash is verified instead and the
/// answer is `false`, so both cases cost the same.
pub(crate) async fn verify_password(
    state: &ApiState,
    hash: Option<&PasswordHash>,
    password: &str,
) -> bool {
    let params = state.config().password_params;
    let real = hash.cloned();
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || match real {
        Some(h) => h.verify(&password),
        None => {
            if let Some(d) = dummy_hash(params) {
                let _ = d.verify(&password);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// An audit event of an unauthenticated request about `user` (or nobody).
pub(crate) fn anonymous_audit(
    action: &'static str,
    user: Option<UserId>,
    ip: Option<IpAddr>,
) -> Audit {
    Audit {
        actor: user.map_or(Actor::System, Actor::User),
        owner: user,
        action,
        target: None,
        ip: ip.map(|i| i.to_string()),
        details: BTreeMap::new(),
    }
}

/// The rate-limit key of a client address.
pub(crate) fn ip_key(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |i| i.to_string())
}
