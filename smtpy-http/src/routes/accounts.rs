//! `/api/v1/auth/…` and `/api/v1/bootstrap`: registration, login and
//! sessions, password change and reset, the first admin; `/me/totp` lives in
//! [`totp`].

pub(crate) mod credentials;
pub(crate) mod reset_token;
pub(crate) mod totp;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smtpy_core::address::EmailAddress;
use smtpy_core::error::StoreError;
use smtpy_core::model::{ApiScope, Role, SecretHash, User, UserStatus};
use smtpy_core::notify::Notification;
use smtpy_core::store::PageRequest;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{
    ClientIp, Principal, Via, clear_session_cookie, cookie, mint_api_key, mint_session,
    session_cookie, session_cookie_name, throttle,
};
use crate::problem::{ApiJson, ApiResult, Problem, ProblemType, check_len};
use crate::routes::me::UserView;
use crate::state::ApiState;
use credentials::{anonymous_audit, check_new_password, hash_password, ip_key, verify_password};

/// Parses a sign-in address given in `field`.
pub(crate) fn parse_email(field: &str, text: &str) -> ApiResult<EmailAddress> {
    check_len(field, text, 3, 254)?;
    EmailAddress::parse(text.trim()).map_err(|_| Problem::invalid(field, "not a valid address"))
}

/// Creates `user`, mapping a taken address to `409`.
pub(crate) async fn create_user(state: &ApiState, user: &User) -> ApiResult<()> {
    state.store().create_user(user).await.map_err(|e| match e {
        StoreError::AlreadyExists { .. } => {
            Problem::conflict("an account with this address exists already")
        }
        other => other.into(),
    })
}

/// Sends `user` a password-reset mail, if there is an outbox and a token
/// key. Failures are logged, not returned: the caller answers the same
/// either way.
pub(crate) async fn send_reset_mail(state: &ApiState, user: &User) -> bool {
    let Some(outbox) = state.outbox() else {
        tracing::warn!("password reset requested but no outbox is configured");
        return false;
    };
    let expires = state
        .clock()
        .now()
        .saturating_add(state.config().reset_lifetime);
    let Some(token) = reset_token::mint(state.token_key(), user, expires) else {
        tracing::error!("password reset requested but there is no token key");
        return false;
    };
    let link = state.config().public_url.as_deref().map(|u| {
        format!(
            "{}/reset-password/confirm#token={token}",
            u.trim_end_matches('/')
        )
    });
    let notice = Notification::password_reset(user.email.clone(), &token, link.as_deref(), expires);
    match outbox.send(user.id, notice).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot queue a password reset mail");
            false
        }
    }
}

/// Creating an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    /// Sign-in address.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// Password (`min_password_chars` to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
    /// Invitation token; required unless registration is open.
    #[schema(min_length = 1, max_length = 128)]
    pub invitation: Option<String>,
}

/// Creates an account: open registration, or with an unused, unexpired
/// invitation (which then gives the role).
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    security(()),
    request_body = RegisterRequest,
    responses((status = 201, description = "The new account", body = UserView))
)]
pub(crate) async fn register(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let config = state.config();
    throttle(
        &state,
        "register",
        &ip_key(ip),
        config.limits.register_per_ip,
    )
    .await?;
    let email = parse_email("email", &body.email)?;
    check_new_password(config, "password", &body.password)?;
    if let Some(t) = &body.invitation {
        check_len("invitation", t, 1, 128)?;
    }
    let now = state.clock().now();
    let invalid_invitation = || Problem::bad_request("invalid, used or expired invitation");
    let (role, invitation) = match &body.invitation {
        Some(token) => {
            let hash = SecretHash::of(token.as_bytes());
            let inv = state
                .store()
                .find_invitation(&hash)
                .await?
                .filter(|i| i.token_hash.ct_eq(&hash))
                .ok_or_else(invalid_invitation)?;
            if inv.used_at.is_some() || inv.expires_at <= now {
                return Err(invalid_invitation());
            }
            if inv.email.as_ref().is_some_and(|e| *e != email) {
                return Err(Problem::forbidden("this invitation is for another address"));
            }
            (inv.role, Some(hash))
        }
        None if state.features().get().registration => (Role::User, None),
        None => {
            return Err(Problem::new(
                ProblemType::Disabled,
                "registration needs an invitation",
            ));
        }
    };
    let mut user = User::new(email, role, now);
    user.password = Some(hash_password(&state, &body.password).await?);
    create_user(&state, &user).await?;
    if let Some(hash) = invitation
        && let Err(e) = state.store().redeem_invitation(&hash, user.id, now).await
    {
        // Lost a race for the invitation: undo.
        if let Err(e) = state.store().delete_user(user.id).await {
            tracing::error!(error = %e, "cannot undo a registration");
        }
        return Err(match e {
            StoreError::Conflict { .. } | StoreError::Gone { .. } | StoreError::NotFound { .. } => {
                invalid_invitation()
            }
            other => other.into(),
        });
    }
    audit::record(
        &state,
        anonymous_audit("user.register", Some(user.id), ip)
            .target(user.id)
            .detail("invited", invitation.is_some()),
    )
    .await;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// Logging in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// Sign-in address.
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    /// Password.
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
    /// The current TOTP code, when the account has a second factor.
    #[schema(min_length = 1, max_length = 16)]
    pub totp: Option<String>,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginView {
    /// The account.
    pub user: UserView,
    /// Send it as `X-CSRF-Token` with every unsafe request of this session.
    pub csrf_token: String,
    /// Absolute end of the session (Unix milliseconds).
    pub expires_at: i64,
}

fn bad_credentials() -> Problem {
    Problem::unauthenticated("invalid email or password")
}

/// Logs in with email and password (and TOTP code): sets the session
/// cookie and returns the CSRF token. Throttled per client IP and per
/// account.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses((status = 200, description = "Logged in; the session cookie is set", body = LoginView))
)]
pub(crate) async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let config = state.config();
    check_len("email", &body.email, 1, 254)?;
    check_len("password", &body.password, 1, 256)?;
    if let Some(c) = &body.totp {
        check_len("totp", c, 1, 16)?;
    }
    throttle(&state, "login_ip", &ip_key(ip), config.limits.login_per_ip).await?;
    // One budget per account however its address is spelled.
    let parsed = EmailAddress::parse(body.email.trim()).ok();
    let account_key = parsed
        .as_ref()
        .map_or_else(|| body.email.trim().to_lowercase(), EmailAddress::canonical);
    throttle(
        &state,
        "login_account",
        &account_key,
        config.limits.login_per_account,
    )
    .await?;

    let user = match &parsed {
        Some(e) => state.store().find_user_by_email(e).await?,
        None => None,
    };
    let ok = verify_password(
        &state,
        user.as_ref().and_then(|u| u.password.as_ref()),
        &body.password,
    )
    .await;
    let user = match user {
        Some(u) if ok && u.status == UserStatus::Active => u,
        other => {
            audit::record(
                &state,
                anonymous_audit("session.login_failed", other.as_ref().map(|u| u.id), ip)
                    .target(account_key)
                    .detail("reason", "credentials"),
            )
            .await;
            return Err(bad_credentials());
        }
    };
    if let Some(secret) = totp::open_secret(&state, &user)? {
        let Some(code) = body.totp.as_deref() else {
            return Err(Problem::new(
                ProblemType::SecondFactorRequired,
                "enter the code of your authenticator app as `totp`",
            ));
        };
        if !totp::accept_code(&state, &user, secret.expose(), code).await? {
            audit::record(
                &state,
                anonymous_audit("session.login_failed", Some(user.id), ip)
                    .target(user.id)
                    .detail("reason", "second_factor"),
            )
            .await;
            return Err(Problem::new(
                ProblemType::SecondFactorRequired,
                "wrong or expired second-factor code",
            ));
        }
    }

    // Rotation: a session the browser still carries ends here.
    if let Some(old) = cookie(&headers, session_cookie_name(config)) {
        state
            .store()
            .delete_session(&SecretHash::of(old.as_bytes()))
            .await?;
    }
    let now = state.clock().now();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let new = mint_session(user.id, config, now, ip, agent)?;
    state.store().create_session(&new.session).await?;

    let mut updated = user.clone();
    updated.last_login_at = Some(now);
    if updated
        .password
        .as_ref()
        .is_some_and(|p| p.needs_rehash(&config.password_params))
    {
        updated.password = Some(hash_password(&state, &body.password).await?);
    }
    let user = match state.store().update_user(&updated).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a login time");
            user
        }
    };
    audit::record(
        &state,
        anonymous_audit("session.login", Some(user.id), ip).target(user.id),
    )
    .await;
    let view = LoginView {
        user: UserView::from(&user),
        csrf_token: new.session.csrf_token.clone(),
        expires_at: new.session.expires_at.as_unix_millis(),
    };
    Ok((
        [(
            header::SET_COOKIE,
            session_cookie(config, &new.cookie_value),
        )],
        Json(view),
    )
        .into_response())
}

fn session_of(principal: &Principal) -> ApiResult<(&SecretHash, &str)> {
    match &principal.via {
        Via::Session {
            id_hash,
            csrf_token,
        } => Ok((id_hash, csrf_token)),
        Via::ApiKey { .. } => Err(Problem::bad_request(
            "this needs a session cookie, not an API key",
        )),
    }
}

/// Logs out: ends the session and clears the cookie.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    responses((status = 204, description = "Logged out"))
)]
pub(crate) async fn logout(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Response> {
    let (hash, _) = session_of(&principal)?;
    state.store().delete_session(hash).await?;
    audit::record(
        &state,
        Audit::by(&principal, "session.logout").target(principal.id()),
    )
    .await;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_session_cookie(state.config()))],
    )
        .into_response())
}

/// The current session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    /// Send it as `X-CSRF-Token` with every unsafe request.
    pub csrf_token: String,
    /// Absolute end (Unix milliseconds).
    pub expires_at: i64,
    /// End if no request comes before (Unix milliseconds).
    pub idle_expires_at: i64,
    /// The account.
    pub user: UserView,
}

async fn current_session(
    state: &ApiState,
    principal: &Principal,
) -> ApiResult<smtpy_core::model::Session> {
    let (hash, _) = session_of(principal)?;
    state
        .store()
        .find_session(hash)
        .await?
        .ok_or_else(|| Problem::unauthenticated("the session has ended; log in again"))
}

/// The current cookie session: its CSRF token, expiry times and account.
#[utoipa::path(
    get,
    path = "/auth/session",
    tag = "auth",
    responses((status = 200, description = "The session", body = SessionView))
)]
async fn get_session(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<SessionView>> {
    let session = current_session(&state, &principal).await?;
    let idle = session
        .last_seen_at
        .saturating_add(state.config().session_idle)
        .min(session.expires_at);
    Ok(Json(SessionView {
        csrf_token: session.csrf_token,
        expires_at: session.expires_at.as_unix_millis(),
        idle_expires_at: idle.as_unix_millis(),
        user: UserView::from(&principal.user),
    }))
}

/// Renews the session: a new cookie value and CSRF token, the same absolute
/// expiry; the old cookie stops working.
#[utoipa::path(
    post,
    path = "/auth/session/renew",
    tag = "auth",
    responses((status = 200, description = "Renewed; a new cookie is set", body = SessionView))
)]
async fn renew(State(state): State<ApiState>, principal: Principal) -> ApiResult<Response> {
    let old = current_session(&state, &principal).await?;
    let now = state.clock().now();
    let config = state.config();
    let mut new = mint_session(
        old.user,
        config,
        now,
        principal.ip,
        old.user_agent.as_deref(),
    )?;
    new.session.created_at = old.created_at;
    new.session.expires_at = old.expires_at;
    new.session.ip = old.ip.clone();
    state.store().create_session(&new.session).await?;
    state.store().delete_session(&old.id_hash).await?;
    audit::record(
        &state,
        Audit::by(&principal, "session.renew").target(principal.id()),
    )
    .await;
    let view = SessionView {
        csrf_token: new.session.csrf_token.clone(),
        expires_at: new.session.expires_at.as_unix_millis(),
        idle_expires_at: now
            .saturating_add(config.session_idle)
            .min(new.session.expires_at)
            .as_unix_millis(),
        user: UserView::from(&principal.user),
    };
    Ok((
        [(
            header::SET_COOKIE,
            session_cookie(config, &new.cookie_value),
        )],
        Json(view),
    )
        .into_response())
}

/// Changing the password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    /// The current password.
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    /// The new password (`min_password_chars` to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub new_password: String,
}

/// Changes the password; every other session of the account ends.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    request_body = ChangePassword,
    responses((status = 204, description = "Changed"))
)]
pub(crate) async fn change_password(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AccountWrite)?;
    check_len("current_password", &body.current_password, 1, 256)?;
    check_new_password(state.config(), "new_password", &body.new_password)?;
    throttle(
        &state,
        "verify",
        &ip_key(principal.ip),
        state.config().limits.verify_per_ip,
    )
    .await?;
    let mut user = state.store().get_user(principal.id()).await?;
    if !verify_password(&state, user.password.as_ref(), &body.current_password).await {
        audit::record(
            &state,
            Audit::by(&principal, "user.password_change_failed").target(user.id),
        )
        .await;
        return Err(Problem::forbidden("the current password is wrong"));
    }
    user.password = Some(hash_password(&state, &body.new_password).await?);
    user.updated_at = state.clock().now();
    state.store().update_user(&user).await?;
    let keep = match &principal.via {
        Via::Session { id_hash, .. } => Some(*id_hash),
        Via::ApiKey { .. } => None,
    };
    let ended = end_sessions(&state, &principal.user, keep).await?;
    audit::record(
        &state,
        Audit::by(&principal, "user.password_changed")
            .target(user.id)
            .detail("sessions_ended", ended),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of `user` but `keep`; returns how many ended.
pub(crate) async fn end_sessions(
    state: &ApiState,
    user: &User,
    keep: Option<SecretHash>,
) -> ApiResult<u64> {
    let Some(keep) = keep else {
        return Ok(state.store().delete_user_sessions(user.id).await?);
    };
    let mut n = 0;
    for s in state.store().list_sessions(user.id).await? {
        if s.id_hash != keep {
            state.store().delete_session(&s.id_hash).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Asking for a password-reset mail.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    /// The account's sign-in address.
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
}

/// Sends a password-reset mail when an active account has this address.
/// The answer is the same whether it exists or not.
#[utoipa::path(
    post,
    path = "/auth/password-reset",
    tag = "auth",
    security(()),
    request_body = ResetRequest,
    responses((status = 202, description = "If the account exists, a mail is on its way"))
)]
pub(crate) async fn reset_request(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<StatusCode> {
    check_len("email", &body.email, 1, 254)?;
    throttle(
        &state,
        "reset",
        &ip_key(ip),
        state.config().limits.reset_per_ip,
    )
    .await?;
    let user = match EmailAddress::parse(body.email.trim()) {
        Ok(e) => state.store().find_user_by_email(&e).await?,
        Err(_) => None,
    };
    if let Some(user) = user.filter(|u| u.status == UserStatus::Active) {
        // In the background, so the answer takes as long whether or not
        // a mail is rendered and queued.
        let state = state.clone();
        tokio::spawn(async move {
            let sent = send_reset_mail(&state, &user).await;
            audit::record(
                &state,
                anonymous_audit("user.password_reset_requested", Some(user.id), ip)
                    .target(user.id)
                    .detail("sent", sent),
            )
            .await;
        });
    }
    Ok(StatusCode::ACCEPTED)
}

/// Setting a new password with a reset token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetConfirm {
    /// The token from the reset mail.
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
    /// The new password (`min_password_chars` to 256 characters).
    #[schema(min_length = 1, max_length = 256)]
    pub new_password: String,
}

/// Sets a new password with the token of a reset mail; every session of
/// the account ends. A token works once.
#[utoipa::path(
    post,
    path = "/auth/password-reset/confirm",
    tag = "auth",
    security(()),
    request_body = ResetConfirm,
    responses((status = 204, description = "The password is set"))
)]
pub(crate) async fn reset_confirm(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    check_len("token", &body.token, 1, 128)?;
    check_new_password(state.config(), "new_password", &body.new_password)?;
    throttle(
        &state,
        "verify",
        &ip_key(ip),
        state.config().limits.verify_per_ip,
    )
    .await?;
    if state.token_key().is_empty() {
        return Err(Problem::unavailable("password reset is not available"));
    }
    let invalid = || Problem::bad_request("invalid or expired token");
    let claim = reset_token::parse(body.token.trim()).ok_or_else(invalid)?;
    let mut user = match state.store().get_user(claim.user).await {
        Ok(u) => u,
        Err(StoreError::NotFound { .. }) => return Err(invalid()),
        Err(e) => return Err(e.into()),
    };
    let now = state.clock().now();
    if user.status != UserStatus::Active
        || !reset_token::verify(state.token_key(), &claim, &user, now)
    {
        return Err(invalid());
    }
    user.password = Some(hash_password(&state, &body.new_password).await?);
    user.updated_at = now;
    state.store().update_user(&user).await?;
    let ended = state.store().delete_user_sessions(user.id).await?;
    audit::record(
        &state,
        anonymous_audit("user.password_reset", Some(user.id), ip)
            .target(user.id)
            .detail("sessions_ended", ended),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Creating the first admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BootstrapRequest {
    /// The bootstrap token from the configuration.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    /// The admin's sign-in address.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// The admin's password; without one the account is API-only.
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
}

/// A key shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewKeyView {
    /// Key id.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The bearer token. Shown only now.
    pub token: String,
    /// Its scopes.
    pub scopes: Vec<String>,
}

/// The first admin.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BootstrapView {
    /// The account.
    pub user: UserView,
    /// An API key with every scope, `admin` included.
    pub api_key: NewKeyView,
}

/// Every scope, `admin` included.
pub(crate) const ALL_SCOPES: [ApiScope; 7] = [
    ApiScope::AliasesRead,
    ApiScope::AliasesWrite,
    ApiScope::DomainsRead,
    ApiScope::DomainsWrite,
    ApiScope::AccountRead,
    ApiScope::AccountWrite,
    ApiScope::Admin,
];

/// Whether any admin account exists.
async fn admin_exists(state: &ApiState) -> ApiResult<bool> {
    let mut page = PageRequest {
        after: None,
        limit: 200,
    };
    loop {
        let p = state.store().list_users(page).await?;
        if p.items.iter().any(User::is_admin) {
            return Ok(true);
        }
        match p.next {
            Some(next) => page.after = Some(next),
            None => return Ok(false),
        }
    }
}

/// Creates the first admin with the configured bootstrap token, while no
/// admin exists; returns an API key with every scope (shown once).
#[utoipa::path(
    post,
    path = "/bootstrap",
    tag = "auth",
    security(()),
    request_body = BootstrapRequest,
    responses((status = 201, description = "The first admin and its key", body = BootstrapView))
)]
async fn bootstrap(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<BootstrapRequest>,
) -> ApiResult<(StatusCode, Json<BootstrapView>)> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    check_len("token", &body.token, 1, 256)?;
    let email = parse_email("email", &body.email)?;
    if let Some(p) = &body.password {
        check_new_password(state.config(), "password", p)?;
    }
    throttle(
        &state,
        "verify",
        &ip_key(ip),
        state.config().limits.verify_per_ip,
    )
    .await?;
    let disabled = || Problem::new(ProblemType::Disabled, "bootstrapping is not available");
    let Some(expected) = state.config().bootstrap_token_hash else {
        return Err(disabled());
    };
    let _guard = ONE_AT_A_TIME.lock().await;
    let token_ok = SecretHash::of(body.token.as_bytes()).ct_eq(&expected);
    if !token_ok || admin_exists(&state).await? {
        audit::record(
            &state,
            anonymous_audit("user.bootstrap_refused", None, ip).detail("token_ok", token_ok),
        )
        .await;
        return Err(disabled());
    }
    let now = state.clock().now();
    let mut user = User::new(email, Role::Admin, now);
    if let Some(p) = &body.password {
        user.password = Some(hash_password(&state, p).await?);
    }
    create_user(&state, &user).await?;
    let key = mint_api_key(user.id, "bootstrap", ALL_SCOPES.to_vec(), None, now)?;
    state.store().create_api_key(&key.key).await?;
    audit::record(
        &state,
        anonymous_audit("user.bootstrap", Some(user.id), ip)
            .target(user.id)
            .detail("api_key", key.key.id),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(BootstrapView {
            user: UserView::from(&user),
            api_key: NewKeyView {
                id: key.key.id.to_string(),
                token: key.token,
                scopes: ALL_SCOPES
                    .iter()
                    .map(|s| crate::auth::scope_name(*s))
                    .collect(),
            },
        }),
    ))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(get_session))
        .routes(routes!(renew))
        .routes(routes!(change_password))
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm))
        .routes(routes!(bootstrap))
        .merge(totp::routes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_names_are_wire_names() {
        assert_eq!(
            serde_json::to_value(crate::routes::users::RoleName::Admin).ok(),
            Some(serde_json::json!("admin"))
        );
    }
}
