//! `/api/v1/me`: the caller's own account, settings and sessions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::model::{
    ApiScope, DmarcQuarantineAction, DmarcRejectAction, Role, SecretHash, User, UserSettings,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{Principal, Via, ct_eq};
use crate::problem::{ApiJson, ApiPath, ApiResult, Problem, check_len};
use crate::routes::accounts::end_sessions;
use crate::state::ApiState;

/// An account as the API shows it (never the password hash or TOTP secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UserView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Sign-in address.
    pub email: String,
    /// `user` or `admin`.
    pub role: String,
    /// `active`, `disabled` or `pending`.
    pub status: String,
    /// Whether a TOTP second factor is set up.
    pub totp_enabled: bool,
    /// Whether the account has a password (else it signs in only with keys,
    /// or after a password reset).
    pub has_password: bool,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last login (Unix milliseconds).
    pub last_login_at: Option<i64>,
    /// Mail-handling preferences.
    pub settings: SettingsView,
}

/// What to do with mail failing DMARC under `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DmarcReject {
    /// Refuse it during the SMTP session.
    Reject,
    /// Hold it for review.
    Quarantine,
}

/// What to do with mail failing DMARC under `p=quarantine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DmarcQuarantine {
    /// Hold it for review.
    Quarantine,
    /// Forward it with `subject_tag` before its subject.
    TagSubject,
}

/// An owner's mail-handling preferences. The three quotas are set by
/// admins only (`PATCH /users/{id}`); `null` means the operator's default.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SettingsView {
    /// Handling of DMARC failures under `p=reject`.
    pub dmarc_reject: DmarcReject,
    /// Handling of DMARC failures under `p=quarantine`.
    pub dmarc_quarantine: DmarcQuarantine,
    /// Subject prefix of tagged mail.
    pub subject_tag: String,
    /// Display-name format of rewritten senders (`{name}`, `{address}`);
    /// `null`: the operator's.
    pub sender_format: Option<String>,
    /// Forwards per day (admin-set).
    pub forwards_per_day: Option<u32>,
    /// Replies per day (admin-set).
    pub replies_per_day: Option<u32>,
    /// Aliases created per hour (admin-set).
    pub aliases_per_hour: Option<u32>,
    /// Notices about bounces.
    pub notify_bounces: bool,
    /// Notices about held mail.
    pub notify_quarantine: bool,
}

impl From<&UserSettings> for SettingsView {
    fn from(s: &UserSettings) -> SettingsView {
        SettingsView {
            dmarc_reject: match s.dmarc_reject {
                DmarcRejectAction::Quarantine => DmarcReject::Quarantine,
                _ => DmarcReject::Reject,
            },
            dmarc_quarantine: match s.dmarc_quarantine {
                DmarcQuarantineAction::TagSubject => DmarcQuarantine::TagSubject,
                _ => DmarcQuarantine::Quarantine,
            },
            subject_tag: s.subject_tag.clone(),
            sender_format: s.sender_format.clone(),
            forwards_per_day: s.forwards_per_day,
            replies_per_day: s.replies_per_day,
            aliases_per_hour: s.aliases_per_hour,
            notify_bounces: s.notify_bounces,
            notify_quarantine: s.notify_quarantine,
        }
    }
}

pub(crate) fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.to_string(),
            email: u.email.to_string(),
            role: if u.role == Role::Admin {
                "admin".to_owned()
            } else {
                "user".to_owned()
            },
            status: wire(&u.status),
            totp_enabled: u.totp.is_some(),
            has_password: u.password.is_some(),
            created_at: u.created_at.as_unix_millis(),
            last_login_at: u.last_login_at.map(|t| t.as_unix_millis()),
            settings: SettingsView::from(&u.settings),
        }
    }
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/me",
    tag = "account",
    responses((status = 200, description = "The caller's account", body = UserView))
)]
async fn get_me(principal: Principal) -> ApiResult<Json<UserView>> {
    principal.require(ApiScope::AccountRead)?;
    Ok(Json(UserView::from(&principal.user)))
}

/// Changes to the caller's settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsPatch {
    /// Handling of DMARC failures under `p=reject`.
    pub dmarc_reject: Option<DmarcReject>,
    /// Handling of DMARC failures under `p=quarantine`.
    pub dmarc_quarantine: Option<DmarcQuarantine>,
    /// Subject prefix of tagged mail (at most 64 bytes, one line).
    #[schema(max_length = 64)]
    pub subject_tag: Option<String>,
    /// Display-name format of rewritten senders (at most 128 characters,
    /// with `{name}` or `{address}`); `""` returns to the operator's.
    #[schema(max_length = 128)]
    pub sender_format: Option<String>,
    /// Notices about bounces.
    pub notify_bounces: Option<bool>,
    /// Notices about held mail.
    pub notify_quarantine: Option<bool>,
}

fn one_line(field: &str, v: &str) -> ApiResult<()> {
    if v.chars().any(char::is_control) {
        return Err(Problem::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Changes the caller's mail-handling settings (not the quotas: those are
/// set by admins).
#[utoipa::path(
    patch,
    path = "/me",
    tag = "account",
    request_body = SettingsPatch,
    responses((status = 200, description = "The updated account", body = UserView))
)]
pub(crate) async fn patch_me(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<SettingsPatch>,
) -> ApiResult<Json<UserView>> {
    principal.require(ApiScope::AccountWrite)?;
    let mut user = state.store().get_user(principal.id()).await?;
    let s = &mut user.settings;
    if let Some(v) = body.dmarc_reject {
        s.dmarc_reject = match v {
            DmarcReject::Reject => DmarcRejectAction::Reject,
            DmarcReject::Quarantine => DmarcRejectAction::Quarantine,
        };
    }
    if let Some(v) = body.dmarc_quarantine {
        s.dmarc_quarantine = match v {
            DmarcQuarantine::Quarantine => DmarcQuarantineAction::Quarantine,
            DmarcQuarantine::TagSubject => DmarcQuarantineAction::TagSubject,
        };
    }
    if let Some(tag) = body.subject_tag {
        check_len("subject_tag", &tag, 0, 64)?;
        if tag.len() > 64 {
            return Err(Problem::invalid("subject_tag", "must be at most 64 bytes"));
        }
        one_line("subject_tag", &tag)?;
        s.subject_tag = tag;
    }
    if let Some(format) = body.sender_format {
        check_len("sender_format", &format, 0, 128)?;
        one_line("sender_format", &format)?;
        if format.is_empty() {
            s.sender_format = None;
        } else if !format.contains("{name}") && !format.contains("{address}") {
            return Err(Problem::invalid(
                "sender_format",
                "must contain {name} or {address}",
            ));
        } else {
            s.sender_format = Some(format);
        }
    }
    if let Some(v) = body.notify_bounces {
        s.notify_bounces = v;
    }
    if let Some(v) = body.notify_quarantine {
        s.notify_quarantine = v;
    }
    user.updated_at = state.clock().now();
    let user = state.store().update_user(&user).await?;
    audit::record(
        &state,
        Audit::by(&principal, "user.settings_changed").target(user.id),
    )
    .await;
    Ok(Json(UserView::from(&user)))
}

/// One signed-in session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionItem {
    /// A reference to the session for `DELETE /me/sessions/{id}` (derived
    /// from the session's hash; neither the cookie nor its hash).
    pub id: String,
    /// The session making this request.
    pub current: bool,
    /// Login time (Unix milliseconds).
    pub created_at: i64,
    /// Last request (Unix milliseconds).
    pub last_seen_at: i64,
    /// Absolute end (Unix milliseconds).
    pub expires_at: i64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
}

/// The caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList {
    /// Live sessions, oldest first.
    pub items: Vec<SessionItem>,
}

/// The public reference of a session: 128 bits of a SHA-256 over a label
/// and the session's hash, as hex. It names the session in
/// `DELETE /me/sessions/{id}` without showing the hash the store keys it
/// by, let alone the cookie.
pub(crate) fn session_ref(hash: &SecretHash) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"smtpy session reference\0");
    ctx.update(hash.as_bytes());
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The caller's live sessions, the current one marked.
#[utoipa::path(
    get,
    path = "/me/sessions",
    tag = "account",
    responses((status = 200, description = "Live sessions", body = SessionList))
)]
pub(crate) async fn list_sessions(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<SessionList>> {
    principal.require(ApiScope::AccountRead)?;
    let now = state.clock().now();
    let idle = state.config().session_idle;
    let current = match &principal.via {
        Via::Session { id_hash, .. } => Some(*id_hash),
        Via::ApiKey { .. } => None,
    };
    let items = state
        .store()
        .list_sessions(principal.id())
        .await?
        .into_iter()
        .filter(|s| s.expires_at > now && now.duration_since(s.last_seen_at) < idle)
        .map(|s| SessionItem {
            id: session_ref(&s.id_hash),
            current: current.is_some_and(|c| c == s.id_hash),
            created_at: s.created_at.as_unix_millis(),
            last_seen_at: s.last_seen_at.as_unix_millis(),
            expires_at: s.expires_at.as_unix_millis(),
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(Json(SessionList { items }))
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ended {
    /// Sessions ended.
    pub ended: u64,
}

/// Logs out everywhere else: ends every session but the current one.
#[utoipa::path(
    delete,
    path = "/me/sessions",
    tag = "account",
    responses((status = 200, description = "Other sessions ended", body = Ended))
)]
pub(crate) async fn delete_sessions(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<Ended>> {
    principal.require(ApiScope::AccountWrite)?;
    let keep = match &principal.via {
        Via::Session { id_hash, .. } => Some(*id_hash),
        Via::ApiKey { .. } => None,
    };
    let ended = end_sessions(&state, &principal.user, keep).await?;
    audit::record(
        &state,
        Audit::by(&principal, "session.logout_others")
            .target(principal.id())
            .detail("ended", ended),
    )
    .await;
    Ok(Json(Ended { ended }))
}

/// Ends one of the caller's sessions (another account's, or an unknown
/// reference, is a 404). Ending the current session signs this client out.
#[utoipa::path(
    delete,
    path = "/me/sessions/{id}",
    tag = "account",
    params(("id" = String, Path, description = "The session's `id` from `GET /me/sessions`")),
    responses((status = 204, description = "The session ended"))
)]
pub(crate) async fn delete_session(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AccountWrite)?;
    check_len("id", &id, 1, 64)?;
    let found = state
        .store()
        .list_sessions(principal.id())
        .await?
        .into_iter()
        .find(|s| ct_eq(session_ref(&s.id_hash).as_bytes(), id.as_bytes()))
        .ok_or_else(|| Problem::not_found("session"))?;
    state.store().delete_session(&found.id_hash).await?;
    let current =
        matches!(&principal.via, Via::Session { id_hash, .. } if *id_hash == found.id_hash);
    audit::record(
        &state,
        Audit::by(&principal, "session.revoke")
            .target(principal.id())
            .detail("current", current),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .routes(routes!(list_sessions, delete_sessions))
        .routes(routes!(delete_session))
}
