//! TOTP second factor (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps,
//! one step of tolerance either way) and `/me/totp`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ring::hmac;
use serde::{Deserialize, Serialize};
use smtpy_core::gcra::Quota;
use smtpy_core::model::{ApiScope, User};
use smtpy_core::secret::Secret;
use smtpy_core::time::Timestamp;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{Principal, ct_eq, throttle};
use crate::problem::{ApiJson, ApiResult, Problem, check_len};
use crate::routes::accounts::credentials::{ip_key, verify_password};
use crate::state::ApiState;

/// Seconds per step.
pub(crate) const STEP_SECS: i64 = 30;
/// Digits of a code.
pub(crate) const DIGITS: u32 = 6;
/// Bytes of a generated secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, upper case, without padding.
pub(crate) fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 (either case; blanks, dashes and `=` padding ignored).
/// `None` for any other character.
pub(crate) fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.chars() {
        if matches!(c, ' ' | '-' | '=') {
            continue;
        }
        let c = c.to_ascii_uppercase();
        let v = BASE32.iter().position(|&x| char::from(x) == c)?;
        buffer = (buffer << 5) | u32::try_from(v).ok()?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
        buffer &= (1 << bits) - 1;
    }
    Some(out)
}

/// HOTP (RFC 4226) value of `counter`, `DIGITS` digits.
pub(crate) fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(DIGITS)
}

/// The TOTP step at `now`.
pub(crate) fn step_at(now: Timestamp) -> u64 {
    u64::try_from(now.as_unix_secs().div_euclid(STEP_SECS)).unwrap_or(0)
}

/// The step (the one at `now`, before or after) whose code `code` is,
/// if any. All three are compared, in constant time each.
pub(crate) fn matching_step(secret: &[u8], code: &str, now: Timestamp) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = step_at(now);
    let mut found = None;
    for s in [step.saturating_sub(1), step, step.saturating_add(1)] {
        let expected = format!("{:06}", hotp(secret, s));
        if ct_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// Whether `code` is the code of `secret` at `now`, the step before or the
/// step after.
#[cfg(test)]
pub(crate) fn code_matches(secret: &[u8], code: &str, now: Timestamp) -> bool {
    matching_step(secret, code, now).is_some()
}

/// Checks `code` for `user` and, when it matches, spends its step: a code
/// is accepted once (RFC 6238 section 5.2), so a code seen by someone else
/// cannot be replayed. The spent steps are kept in the rate limiter (shared
/// between instances when it is store-backed) for three steps.
pub(crate) async fn accept_code(
    state: &ApiState,
    user: &User,
    secret: &[u8],
    code: &str,
) -> ApiResult<bool> {
    let Some(step) = matching_step(secret, code, state.clock().now()) else {
        return Ok(false);
    };
    let window = std::time::Duration::from_secs(STEP_SECS.unsigned_abs() * 3);
    let quota = Quota::new(1, window, 1).map_err(Problem::internal)?;
    let key = format!("http:totp_used:{}:{step}", user.id);
    match state.limiter().check(&key, &quota, 1).await {
        Ok(d) => Ok(d.allowed),
        Err(e) => {
            tracing::warn!(error = %e, "HTTP rate limiter failed");
            Err(Problem::unavailable(
                "rate limiter unavailable; retry later",
            ))
        }
    }
}

/// The keyring context of a user's TOTP secret.
fn context(user: &User) -> Vec<u8> {
    let mut c = b"smtpy totp ".to_vec();
    c.extend_from_slice(&user.id.to_bytes());
    c
}

/// Opens `user`'s TOTP secret. `None` when not enrolled.
pub(crate) fn open_secret(state: &ApiState, user: &User) -> ApiResult<Option<Secret>> {
    let Some(sealed) = &user.totp else {
        return Ok(None);
    };
    let keyring = state
        .keyring()
        .ok_or_else(|| Problem::unavailable("no keyring is configured for second factors"))?;
    keyring
        .open(sealed, &context(user))
        .map(Some)
        .map_err(Problem::internal)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A new secret to enrol (nothing is stored until it is enabled).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TotpSetup {
    /// The secret, base32: enter it in an authenticator app.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

/// Draws a TOTP secret to enrol. Nothing is stored: send it back with a
/// code to `POST /me/totp/enable`.
#[utoipa::path(
    post,
    path = "/me/totp/setup",
    tag = "account",
    responses((status = 200, description = "A new secret", body = TotpSetup))
)]
pub(crate) async fn setup(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<TotpSetup>> {
    principal.require(ApiScope::AccountWrite)?;
    let mut raw = vec![0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| Problem::internal("system random number generator failed"))?;
    let secret = base32_encode(&raw);
    let issuer = percent_encode(&state.config().service_name);
    let account = percent_encode(&principal.user.email.to_string());
    let otpauth_uri = format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    );
    Ok(Json(TotpSetup {
        secret,
        otpauth_uri,
    }))
}

/// Turns the second factor on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnableTotp {
    /// The secret from `POST /me/totp/setup` (base32, 16 to 128 characters).
    #[schema(min_length = 16, max_length = 128)]
    pub secret: String,
    /// The current 6-digit code the authenticator shows for it.
    #[schema(min_length = 1, max_length = 16)]
    pub code: String,
}

/// Turns the TOTP second factor on after checking a code of the secret.
#[utoipa::path(
    post,
    path = "/me/totp/enable",
    tag = "account",
    request_body = EnableTotp,
    responses((status = 204, description = "Enabled: logins now need a code"))
)]
pub(crate) async fn enable(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<EnableTotp>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AccountWrite)?;
    check_len("secret", &body.secret, 16, 128)?;
    check_len("code", &body.code, 1, 16)?;
    let secret = base32_decode(&body.secret)
        .filter(|s| s.len() >= 10)
        .ok_or_else(|| Problem::invalid("secret", "not a base32 secret of at least 80 bits"))?;
    let keyring = state
        .keyring()
        .ok_or_else(|| Problem::unavailable("no keyring is configured for second factors"))?
        .clone();
    throttle(
        &state,
        "verify",
        &ip_key(principal.ip),
        state.config().limits.verify_per_ip,
    )
    .await?;
    let mut user = state.store().get_user(principal.id()).await?;
    if user.totp.is_some() {
        return Err(Problem::conflict("a second factor is enabled already"));
    }
    if !accept_code(&state, &user, &secret, &body.code).await? {
        return Err(Problem::invalid("code", "wrong code for this secret"));
    }
    user.totp = Some(
        keyring
            .seal(&secret, &context(&user))
            .map_err(Problem::internal)?,
    );
    user.updated_at = state.clock().now();
    state.store().update_user(&user).await?;
    audit::record(
        &state,
        Audit::by(&principal, "user.totp_enabled").target(user.id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Proof for turning the second factor off: the password or a current code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisableTotp {
    /// The account's password.
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
    /// A current code.
    #[schema(min_length = 1, max_length = 16)]
    pub code: Option<String>,
}

/// Turns the TOTP second factor off (needs the password or a current code).
#[utoipa::path(
    delete,
    path = "/me/totp",
    tag = "account",
    request_body = DisableTotp,
    responses((status = 204, description = "Disabled"))
)]
pub(crate) async fn disable(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<DisableTotp>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AccountWrite)?;
    if let Some(p) = &body.password {
        check_len("password", p, 1, 256)?;
    }
    if let Some(c) = &body.code {
        check_len("code", c, 1, 16)?;
    }
    throttle(
        &state,
        "verify",
        &ip_key(principal.ip),
        state.config().limits.verify_per_ip,
    )
    .await?;
    let mut user = state.store().get_user(principal.id()).await?;
    let Some(secret) = open_secret(&state, &user)? else {
        return Err(Problem::not_found("second factor"));
    };
    let ok = match (&body.password, &body.code) {
        (Some(p), _) => verify_password(&state, user.password.as_ref(), p).await,
        (None, Some(c)) => accept_code(&state, &user, secret.expose(), c).await?,
        (None, None) => {
            return Err(Problem::invalid("password", "give the password or a code"));
        }
    };
    if !ok {
        return Err(Problem::forbidden("wrong password or code"));
    }
    user.totp = None;
    user.updated_at = state.clock().now();
    state.store().update_user(&user).await?;
    audit::record(
        &state,
        Audit::by(&principal, "user.totp_disabled").target(user.id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(enable))
        .routes(routes!(disable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, last 6 digits.
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            let now = Timestamp::from_unix_secs(t);
            assert_eq!(format!("{:06}", hotp(secret, step_at(now))), code, "t={t}");
            assert!(code_matches(secret, code, now));
            assert!(code_matches(
                secret,
                code,
                Timestamp::from_unix_secs(t + 30)
            ));
            assert!(!code_matches(
                secret,
                code,
                Timestamp::from_unix_secs(t + 90)
            ));
        }
        assert!(!code_matches(
            secret,
            "28708",
            Timestamp::from_unix_secs(59)
        ));
        assert!(!code_matches(
            secret,
            "28708a",
            Timestamp::from_unix_secs(59)
        ));
    }

    #[test]
    fn base32_round_trips() {
        // RFC 4648 test vectors (without padding).
        for (raw, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(raw.as_bytes()), enc);
            assert_eq!(base32_decode(enc).as_deref(), Some(raw.as_bytes()));
        }
        assert_eq!(
            base32_decode("mzxw 6ytb oi======").as_deref(),
            Some(&b"foobar"[..])
        );
        assert!(base32_decode("MZ1W").is_none());
    }
}
