//! `/api/v1/me`: the caller's own account.

use axum::Json;
use serde::Serialize;
use smtpy_core::model::{ApiScope, Role, User};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::ApiResult;
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
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last login (Unix milliseconds).
    pub last_login_at: Option<i64>,
}

fn wire<T: Serialize>(v: &T) -> String {
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
            created_at: u.created_at.as_unix_millis(),
            last_login_at: u.last_login_at.map(|t| t.as_unix_millis()),
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

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(get_me))
}
