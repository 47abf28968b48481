//! Who is calling: API keys (bearer tokens) and sessions (cookies), CSRF
//! protection of cookie-authenticated changes, and scopes.
//!
//! * **API key**: `Authorization: Bearer smtpy_<43 chars>` — 256 random bits,
//!   stored as a SHA-256 hash, shown once at creation. Each key has scopes,
//!   an optional expiry and a last-used time.
//! * **Session**: a server-side row keyed by the hash of a 256-bit cookie
//!   value. The cookie is `__Host-smtpy_session` (`Secure`) under TLS and
//!   `smtpy_session` without TLS (browsers refuse `__Host-` cookies that are
//!   not `Secure`); always `HttpOnly`, `SameSite=Lax`, `Path=/`. A session
//!   ends after [`HttpConfig::session_idle`] without requests or
//!   [`HttpConfig::session_lifetime`] after login.
//! * **CSRF**: a cookie-authenticated request with an unsafe method must send
//!   the session's token in `X-CSRF-Token`, and its `Origin` (when sent) must
//!   be ours and its `Sec-Fetch-Site` (when sent) `same-origin` or `none`.
//!   Bearer-authenticated requests need none of this: browsers never attach
//!   a bearer token on their own.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use smtpy_core::gcra::Quota;
use smtpy_core::ids::{ApiKeyId, UserId};
use smtpy_core::model::{Actor, ApiKey, ApiScope, SecretHash, Session, User, UserStatus};
use smtpy_core::store::Access;
use smtpy_core::time::Timestamp;

use crate::config::{Budget, HttpConfig};
use crate::problem::{ApiResult, Problem, ProblemType};
use crate::state::ApiState;

/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "smtpy_";
/// The header carrying the CSRF token of a session.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Characters of a key kept for display (`smtpy_` and 8 more).
pub const DISPLAY_PREFIX_CHARS: usize = 14;

/// `bytes` random bytes from the operating system, base64url without padding.
///
/// # Errors
///
/// `500` when the system random number generator fails.
pub fn random_token(bytes: usize) -> ApiResult<String> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Problem::internal("system random number generator failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A freshly minted API key and the token to show once.
#[derive(Debug)]
pub struct NewApiKey {
    /// The row to store (holds only the hash).
    pub key: ApiKey,
    /// The bearer token. Show it once; it is never stored.
    pub token: String,
}

/// Mints an API key for `owner`.
///
/// # Errors
///
/// `500` when no randomness is available.
pub fn mint_api_key(
    owner: UserId,
    name: &str,
    scopes: Vec<ApiScope>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> ApiResult<NewApiKey> {
    let token = format!("{API_KEY_PREFIX}{}", random_token(32)?);
    let key = ApiKey {
        id: ApiKeyId::new(),
        owner,
        name: name.to_owned(),
        prefix: token[..DISPLAY_PREFIX_CHARS].to_owned(),
        secret_hash: SecretHash::of(token.as_bytes()),
        scopes,
        expires_at,
        last_used_at: None,
        created_at: now,
    };
    Ok(NewApiKey { key, token })
}

/// A freshly minted session and the cookie value to set.
#[derive(Debug)]
pub struct NewSession {
    /// The row to store (holds only the hash).
    pub session: Session,
    /// The cookie value.
    pub cookie_value: String,
}

/// Mints a session for `user`, ending at the absolute lifetime.
///
/// # Errors
///
/// `500` when no randomness is available.
pub fn mint_session(
    user: UserId,
    config: &HttpConfig,
    now: Timestamp,
    ip: Option<IpAddr>,
    user_agent: Option<&str>,
) -> ApiResult<NewSession> {
    let cookie_value = random_token(32)?;
    let session = Session {
        id_hash: SecretHash::of(cookie_value.as_bytes()),
        user,
        created_at: now,
        last_seen_at: now,
        expires_at: now.saturating_add(config.session_lifetime),
        csrf_token: random_token(32)?,
        ip: ip.map(|i| i.to_string()),
        user_agent: user_agent.map(|u| u.chars().take(256).collect()),
    };
    Ok(NewSession {
        session,
        cookie_value,
    })
}

/// The session cookie's name under `config`.
#[must_use]
pub fn session_cookie_name(config: &HttpConfig) -> &'static str {
    if config.tls {
        "__Host-smtpy_session"
    } else {
        "smtpy_session"
    }
}

/// The `Set-Cookie` value that sets the session cookie.
#[must_use]
pub fn session_cookie(config: &HttpConfig, value: &str) -> HeaderValue {
    let secure = if config.tls { "; Secure" } else { "" };
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        session_cookie_name(config),
        config.session_lifetime.as_secs()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes the session cookie.
#[must_use]
pub fn clear_session_cookie(config: &HttpConfig) -> HeaderValue {
    let secure = if config.tls { "; Secure" } else { "" };
    let text = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        session_cookie_name(config)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in `headers`, if any.
#[must_use]
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares two secrets in constant time (for equal lengths; a length
/// difference returns early, which reveals only the length).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// A bearer API key.
    ApiKey {
        /// The key.
        id: ApiKeyId,
        /// Its scopes.
        scopes: Vec<ApiScope>,
    },
    /// A session cookie.
    Session {
        /// The session's id hash.
        id_hash: SecretHash,
        /// Its CSRF token.
        csrf_token: String,
    },
}

/// The authenticated caller. Extract it in a handler to require
/// authentication; `Option<Principal>` makes it optional.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account.
    pub user: User,
    /// How it authenticated.
    pub via: Via,
    /// The client address, when known.
    pub ip: Option<IpAddr>,
}

impl Principal {
    /// The caller's user id.
    #[must_use]
    pub fn id(&self) -> UserId {
        self.user.id
    }
    /// Store access limited to the caller's own rows.
    #[must_use]
    pub fn access(&self) -> Access {
        Access::Owner(self.user.id)
    }
    /// Whether the caller may act with `scope`: a session has every scope;
    /// an API key those it was given. [`ApiScope::Admin`] also needs the
    /// admin role.
    #[must_use]
    pub fn has(&self, scope: ApiScope) -> bool {
        if scope == ApiScope::Admin && !self.user.is_admin() {
            return false;
        }
        match &self.via {
            Via::Session { .. } => true,
            Via::ApiKey { scopes, .. } => scopes.contains(&scope),
        }
    }
    /// `403` unless [`has`](Self::has) `scope`.
    ///
    /// # Errors
    ///
    /// `403 forbidden` naming the scope.
    pub fn require(&self, scope: ApiScope) -> ApiResult<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs the {} scope",
                scope_name(scope)
            )))
        }
    }
    /// `403` unless the caller is an admin acting with the `admin` scope.
    ///
    /// # Errors
    ///
    /// `403 forbidden`.
    pub fn require_admin(&self) -> ApiResult<()> {
        self.require(ApiScope::Admin)
    }
    /// The audit actor.
    #[must_use]
    pub fn actor(&self) -> Actor {
        match &self.via {
            Via::ApiKey { id, .. } => Actor::ApiKey(*id),
            Via::Session { .. } => Actor::User(self.user.id),
        }
    }
    /// The client address as text, for audit events.
    #[must_use]
    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(|i| i.to_string())
    }
}

/// The wire name of a scope (`aliases:read`, …).
#[must_use]
pub fn scope_name(scope: ApiScope) -> String {
    serde_json::to_value(scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The client's IP address (the TCP peer; the router must be served with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as
/// [`crate::serve`] does).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The client address [`resolve_client`] settled on, stored in the
/// request's extensions by the router's middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedClient(pub(crate) IpAddr);

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(c) = parts.extensions.get::<ResolvedClient>() {
        return Some(c.0);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client of a request whose TCP peer is `peer`: `peer` itself, unless
/// it is one of `trusted` proxies; then the right-most `X-Forwarded-For`
/// address that is not a trusted proxy (the left part of the header is
/// written by the client and proves nothing). A malformed header leaves the
/// proxy as the client.
#[must_use]
pub fn resolve_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for part in text.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// Spends one attempt of `budget` for `key`; `429` with `Retry-After` when
/// exhausted. Counts the denial in the metrics under `scope`.
///
/// # Errors
///
/// `429 rate-limited`, or `503` when the limiter fails.
pub async fn throttle(state: &ApiState, scope: &str, key: &str, budget: Budget) -> ApiResult<()> {
    let Ok(quota) = Quota::new(budget.attempts.max(1), budget.per, budget.attempts.max(1)) else {
        return Ok(());
    };
    let full_key = format!("http:{scope}:{key}");
    match state.limiter().check(&full_key, &quota, 1).await {
        Ok(d) if d.allowed => Ok(()),
        Ok(d) => {
            state
                .metrics()
                .inc(smtpy_core::metrics::RATE_LIMIT_DENIALS, &[("scope", scope)]);
            let wait = if d.retry_after_ms == smtpy_core::gcra::Decision::RETRY_NEVER {
                budget.per
            } else {
                Duration::from_millis(d.retry_after_ms)
            };
            Err(Problem::rate_limited(wait))
        }
        Err(e) => {
            tracing::warn!(error = %e, "HTTP rate limiter failed");
            Err(Problem::unavailable(
                "rate limiter unavailable; retry later",
            ))
        }
    }
}

/// Only touch last-used / last-seen times this often, to spare the store.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn expected_origin(config: &HttpConfig, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = &config.public_url {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if config.tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// The CSRF check of a cookie-authenticated unsafe request.
pub(crate) fn check_csrf(config: &HttpConfig, headers: &HeaderMap, token: &str) -> ApiResult<()> {
    let csrf = |d: &str| Problem::new(ProblemType::Csrf, d.to_owned());
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" && site != "none" {
            return Err(csrf("cross-site request (Sec-Fetch-Site)"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let expected = expected_origin(config, headers).unwrap_or_default();
        if !origin.eq_ignore_ascii_case(&expected) {
            return Err(csrf("request from another origin"));
        }
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct_eq(sent.as_bytes(), token.as_bytes()) {
        return Err(csrf("missing or wrong X-CSRF-Token header"));
    }
    Ok(())
}

async fn active_user(state: &ApiState, id: UserId) -> ApiResult<User> {
    let user = state.store().get_user(id).await.map_err(|e| match e {
        smtpy_core::error::StoreError::NotFound { .. } => {
            Problem::unauthenticated("the account no longer exists")
        }
        other => other.into(),
    })?;
    if user.status != UserStatus::Active {
        return Err(Problem::forbidden("the account is not active"));
    }
    Ok(user)
}

async fn from_bearer(state: &ApiState, token: &str, ip: Option<IpAddr>) -> ApiResult<Principal> {
    let invalid = || Problem::unauthenticated("invalid or expired API key");
    if !token.starts_with(API_KEY_PREFIX) || token.len() > 128 {
        return Err(invalid());
    }
    let hash = SecretHash::of(token.as_bytes());
    let key = state
        .store()
        .find_api_key(&hash)
        .await?
        .ok_or_else(invalid)?;
    if !key.secret_hash.ct_eq(&hash) {
        return Err(invalid());
    }
    let now = state.clock().now();
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid());
    }
    throttle(
        state,
        "api_key",
        &key.id.to_string(),
        state.config().limits.per_api_key,
    )
    .await?;
    let user = active_user(state, key.owner).await?;
    if key
        .last_used_at
        .is_none_or(|t| now.duration_since(t) >= TOUCH_EVERY)
        && let Err(e) = state.store().touch_api_key(key.id, now).await
    {
        tracing::warn!(error = %e, "cannot record API key use");
    }
    Ok(Principal {
        user,
        via: Via::ApiKey {
            id: key.id,
            scopes: key.scopes,
        },
        ip,
    })
}

async fn from_cookie(
    state: &ApiState,
    parts: &Parts,
    value: &str,
    ip: Option<IpAddr>,
) -> ApiResult<Principal> {
    let invalid = || Problem::unauthenticated("the session has ended; log in again");
    let hash = SecretHash::of(value.as_bytes());
    let session = state
        .store()
        .find_session(&hash)
        .await?
        .ok_or_else(invalid)?;
    let now = state.clock().now();
    let config = state.config();
    if session.expires_at <= now || now.duration_since(session.last_seen_at) >= config.session_idle
    {
        let _ = state.store().delete_session(&hash).await;
        return Err(invalid());
    }
    if !is_safe(&parts.method) {
        check_csrf(config, &parts.headers, &session.csrf_token)?;
    }
    let user = active_user(state, session.user).await?;
    if now.duration_since(session.last_seen_at) >= TOUCH_EVERY
        && let Err(e) = state.store().touch_session(&hash, now).await
    {
        tracing::warn!(error = %e, "cannot renew a session");
    }
    Ok(Principal {
        user,
        via: Via::Session {
            id_hash: hash,
            csrf_token: session.csrf_token,
        },
        ip,
    })
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Principal> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let ip = client_ip(parts);
        let principal = if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let auth = auth.to_str().unwrap_or("");
            let Some(token) = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
            else {
                return Err(Problem::unauthenticated(
                    "use Authorization: Bearer <API key>",
                ));
            };
            from_bearer(state, token.trim(), ip).await?
        } else if let Some(value) = cookie(&parts.headers, session_cookie_name(state.config())) {
            let value = value.to_owned();
            from_cookie(state, parts, &value, ip).await?
        } else {
            return Err(Problem::unauthenticated(
                "log in, or send an API key as Authorization: Bearer <key>",
            ));
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

impl OptionalFromRequestParts<ApiState> for Principal {
    type Rejection = Problem;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> ApiResult<Option<Principal>> {
        let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || cookie(&parts.headers, session_cookie_name(state.config())).is_some();
        if !has_credentials {
            return Ok(None);
        }
        <Principal as FromRequestParts<ApiState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_long_random_and_hashed() {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let a = mint_api_key(UserId::new(), "k", vec![], None, now).expect("mint");
        let b = mint_api_key(UserId::new(), "k", vec![], None, now).expect("mint");
        assert!(a.token.starts_with(API_KEY_PREFIX));
        // 32 random bytes → 43 base64url characters: 256 bits.
        assert_eq!(a.token.len(), API_KEY_PREFIX.len() + 43);
        assert_ne!(a.token, b.token);
        assert_eq!(a.key.secret_hash, SecretHash::of(a.token.as_bytes()));
        assert!(a.token.starts_with(&a.key.prefix));
    }

    #[test]
    fn cookies_are_parsed_and_flagged() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; smtpy_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "smtpy_session"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        let mut config = HttpConfig::default();
        let plain = session_cookie(&config, "v");
        assert!(plain.to_str().is_ok_and(|s| s.contains("HttpOnly")
            && s.contains("SameSite=Lax")
            && !s.contains("Secure")));
        config.tls = true;
        let tls = session_cookie(&config, "v");
        assert!(
            tls.to_str()
                .is_ok_and(|s| s.starts_with("__Host-smtpy_session=v;") && s.contains("; Secure"))
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let client: IpAddr = "203.0.113.7".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.7"),
        );
        // Not trusted: the header is ignored.
        assert_eq!(resolve_client(proxy, &h, &[]), proxy);
        // Trusted: the right-most untrusted hop, not the client-written left part.
        assert_eq!(resolve_client(proxy, &h, &[proxy]), client);
        // A chain of trusted proxies is skipped.
        let inner: IpAddr = "10.0.0.2".parse().expect("ip");
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.2"),
        );
        assert_eq!(resolve_client(proxy, &h, &[proxy, inner]), client);
        // Malformed or absent: the proxy itself.
        h.insert("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(resolve_client(proxy, &h, &[proxy]), proxy);
        assert_eq!(resolve_client(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }

    #[test]
    fn csrf_needs_token_and_same_origin() {
        let config = HttpConfig {
            public_url: Some("https://mail.example".into()),
            ..HttpConfig::default()
        };
        let mut h = HeaderMap::new();
        assert!(check_csrf(&config, &h, "tok").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("tok"));
        assert!(check_csrf(&config, &h, "tok").is_ok());
        assert!(check_csrf(&config, &h, "other").is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_csrf(&config, &h, "tok").is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://mail.example"),
        );
        assert!(check_csrf(&config, &h, "tok").is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&config, &h, "tok").is_err());
    }
}
