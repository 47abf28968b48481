//! `/api/v1/users` and `/api/v1/invitations` (admins only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use smtpy_core::ids::{InvitationId, UserId};
use smtpy_core::model::{Invitation, Role, SecretHash, User, UserStatus};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{Principal, random_token};
use crate::page::{PageOf, PageQuery};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::routes::accounts::credentials::{check_new_password, hash_password};
use crate::routes::accounts::{create_user, parse_email, send_reset_mail};
use crate::routes::me::UserView;
use crate::state::ApiState;

/// A role as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RoleName {
    /// Manages their own domains, mailboxes and aliases.
    User,
    /// Manages everything.
    Admin,
}

impl RoleName {
    /// The core role.
    pub(crate) fn role(self) -> Role {
        match self {
            RoleName::User => Role::User,
            RoleName::Admin => Role::Admin,
        }
    }
    fn of(role: Role) -> RoleName {
        if role == Role::Admin {
            RoleName::Admin
        } else {
            RoleName::User
        }
    }
}

/// An account status as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusName {
    /// Can sign in; its aliases forward.
    Active,
    /// Cannot sign in; its aliases reject mail.
    Disabled,
    /// Registered but not yet confirmed.
    Pending,
}

impl StatusName {
    fn status(self) -> UserStatus {
        match self {
            StatusName::Active => UserStatus::Active,
            StatusName::Disabled => UserStatus::Disabled,
            StatusName::Pending => UserStatus::Pending,
        }
    }
}

/// Every user, by id.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of users", body = PageOf<UserView>))
)]
pub(crate) async fn list_users(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<UserView>>> {
    principal.require_admin()?;
    let page = state.store().list_users(q.request()?).await?;
    Ok(Json(PageOf::map(page, |u| UserView::from(&u))))
}

/// Creating a user (admin).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    /// Sign-in address.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// Password; without one, the user gets a password-reset mail (when
    /// the service can send mail).
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
    /// Role (default `user`).
    pub role: Option<RoleName>,
}

/// Creates a user. Without a password the user is sent a password-reset
/// mail.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = CreateUser,
    responses((status = 201, description = "The new user", body = UserView))
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    principal.require_admin()?;
    let email = parse_email("email", &body.email)?;
    if let Some(p) = &body.password {
        check_new_password(state.config(), "password", p)?;
    }
    let role = body.role.unwrap_or(RoleName::User).role();
    let mut user = User::new(email, role, state.clock().now());
    if let Some(p) = &body.password {
        user.password = Some(hash_password(&state, p).await?);
    }
    create_user(&state, &user).await?;
    let mailed = user.password.is_none() && send_reset_mail(&state, &user).await;
    audit::record(
        &state,
        Audit::by(&principal, "user.create")
            .owner(Some(user.id))
            .target(user.id)
            .detail("role", crate::routes::me::wire(&RoleName::of(role)))
            .detail("reset_mail_sent", mailed),
    )
    .await;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

fn user_id(id: uuid::Uuid) -> UserId {
    UserId::from_uuid(id)
}

async fn load(state: &ApiState, id: UserId) -> ApiResult<User> {
    state.store().get_user(id).await.map_err(|e| match e {
        smtpy_core::error::StoreError::NotFound { .. } => Problem::not_found("user"),
        other => other.into(),
    })
}

/// One user.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView))
)]
pub(crate) async fn get_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<UserView>> {
    principal.require_admin()?;
    Ok(Json(UserView::from(&load(&state, user_id(id)).await?)))
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a user (admin); absent fields stay as they are, `null`
/// quotas return to the operator's default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    /// New status (`disabled` ends the user's sessions).
    pub status: Option<StatusName>,
    /// New role.
    pub role: Option<RoleName>,
    /// Forwards per day.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, maximum = 10_000_000)]
    pub forwards_per_day: Option<Option<u32>>,
    /// Replies per day.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, maximum = 10_000_000)]
    pub replies_per_day: Option<Option<u32>>,
    /// Aliases created per hour.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, maximum = 10_000_000)]
    pub aliases_per_hour: Option<Option<u32>>,
}

/// Changes a user's status, role or quotas. Admins cannot demote or
/// disable themselves (`409`).
#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, description = "The updated user", body = UserView))
)]
pub(crate) async fn patch_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    principal.require_admin()?;
    let mut user = load(&state, user_id(id)).await?;
    let myself = user.id == principal.id();
    let mut audit = Audit::by(&principal, "user.update")
        .owner(Some(user.id))
        .target(user.id);
    if let Some(status) = body.status {
        if myself && status != StatusName::Active {
            return Err(Problem::conflict("you cannot disable your own account"));
        }
        user.status = status.status();
        audit = audit.detail("status", crate::routes::me::wire(&status));
    }
    if let Some(role) = body.role {
        if myself && role != RoleName::Admin {
            return Err(Problem::conflict("you cannot demote yourself"));
        }
        user.role = role.role();
        audit = audit.detail("role", crate::routes::me::wire(&role));
    }
    for (name, patch, slot) in [
        (
            "forwards_per_day",
            body.forwards_per_day,
            &mut user.settings.forwards_per_day,
        ),
        (
            "replies_per_day",
            body.replies_per_day,
            &mut user.settings.replies_per_day,
        ),
        (
            "aliases_per_hour",
            body.aliases_per_hour,
            &mut user.settings.aliases_per_hour,
        ),
    ] {
        if let Some(v) = patch {
            if v.is_some_and(|n| n > 10_000_000) {
                return Err(Problem::invalid(name, "must be at most 10000000"));
            }
            *slot = v;
            audit = audit.detail(
                name,
                v.map_or_else(|| "default".to_owned(), |n| n.to_string()),
            );
        }
    }
    user.updated_at = state.clock().now();
    let user = state.store().update_user(&user).await?;
    if user.status != UserStatus::Active {
        let ended = state.store().delete_user_sessions(user.id).await?;
        audit = audit.detail("sessions_ended", ended);
    }
    audit::record(&state, audit).await;
    Ok(Json(UserView::from(&user)))
}

/// Deletes a user and everything they own (not yourself: `409`).
#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    principal.require_admin()?;
    let id = user_id(id);
    if id == principal.id() {
        return Err(Problem::conflict("you cannot delete your own account"));
    }
    let user = load(&state, id).await?;
    state.store().delete_user(id).await?;
    audit::record(
        &state,
        Audit::by(&principal, "user.delete")
            .owner(None)
            .target(id)
            .detail("email", &user.email),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// An invitation as admins see it (never the token or its hash).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InvitationView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// Only this address may accept; `null`: anyone with the token.
    pub email: Option<String>,
    /// Role of the account it creates.
    pub role: RoleName,
    /// Who invited.
    #[schema(value_type = String, format = Uuid)]
    pub invited_by: String,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Expiry (Unix milliseconds).
    pub expires_at: i64,
    /// When it was used (Unix milliseconds).
    pub used_at: Option<i64>,
    /// The account created with it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub used_by: Option<String>,
}

impl From<&Invitation> for InvitationView {
    fn from(i: &Invitation) -> InvitationView {
        InvitationView {
            id: i.id.to_string(),
            email: i.email.as_ref().map(ToString::to_string),
            role: RoleName::of(i.role),
            invited_by: i.invited_by.to_string(),
            created_at: i.created_at.as_unix_millis(),
            expires_at: i.expires_at.as_unix_millis(),
            used_at: i.used_at.map(|t| t.as_unix_millis()),
            used_by: i.used_by.map(|u| u.to_string()),
        }
    }
}

/// A new invitation, with its token shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedInvitation {
    /// The invitation.
    #[serde(flatten)]
    pub invitation: InvitationView,
    /// The single-use token to give the invitee (`invitation` of
    /// `POST /auth/register`). Never shown again.
    pub token: String,
}

/// Inviting someone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInvitation {
    /// If set, only this address may accept.
    #[schema(min_length = 3, max_length = 254)]
    pub email: Option<String>,
    /// Role of the account it creates (default `user`).
    pub role: Option<RoleName>,
}

/// Creates a single-use invitation that expires after the configured
/// lifetime.
#[utoipa::path(
    post,
    path = "/invitations",
    tag = "users",
    request_body = CreateInvitation,
    responses((status = 201, description = "The invitation and its token (shown once)", body = CreatedInvitation))
)]
pub(crate) async fn create_invitation(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateInvitation>,
) -> ApiResult<(StatusCode, Json<CreatedInvitation>)> {
    principal.require_admin()?;
    let email = match &body.email {
        Some(e) => Some(parse_email("email", e)?),
        None => None,
    };
    let token = random_token(32)?;
    let now = state.clock().now();
    let invitation = Invitation {
        id: InvitationId::new(),
        token_hash: SecretHash::of(token.as_bytes()),
        email,
        role: body.role.unwrap_or(RoleName::User).role(),
        invited_by: principal.id(),
        created_at: now,
        expires_at: now.saturating_add(state.config().invitation_lifetime),
        used_at: None,
        used_by: None,
    };
    state.store().create_invitation(&invitation).await?;
    audit::record(
        &state,
        Audit::by(&principal, "invitation.create")
            .target(invitation.id)
            .detail(
                "role",
                crate::routes::me::wire(&RoleName::of(invitation.role)),
            ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvitation {
            invitation: InvitationView::from(&invitation),
            token,
        }),
    ))
}

/// Every invitation, by id.
#[utoipa::path(
    get,
    path = "/invitations",
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of invitations", body = PageOf<InvitationView>))
)]
pub(crate) async fn list_invitations(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<InvitationView>>> {
    principal.require_admin()?;
    let page = state.store().list_invitations(q.request()?).await?;
    Ok(Json(PageOf::map(page, |i| InvitationView::from(&i))))
}

/// Deletes (revokes) an invitation.
#[utoipa::path(
    delete,
    path = "/invitations/{id}",
    tag = "users",
    params(("id" = String, Path, description = "Invitation id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_invitation(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    principal.require_admin()?;
    let id = InvitationId::from_uuid(id);
    state
        .store()
        .delete_invitation(id)
        .await
        .map_err(|e| match e {
            smtpy_core::error::StoreError::NotFound { .. } => Problem::not_found("invitation"),
            other => other.into(),
        })?;
    audit::record(
        &state,
        Audit::by(&principal, "invitation.delete").target(id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(delete_invitation))
}
