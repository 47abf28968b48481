//! `/admin/users`: the accounts (disable, enable) and the invitations
//! (invite, revoke).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::routes::me::UserView;
use crate::routes::users::{
    self, CreateInvitation, InvitationView, RoleName, StatusName, UserPatch,
};
use crate::state::ApiState;

use super::super::csrf::WebForm;
use super::super::render::{
    Chrome, Flash, FormErrors, WebError, page, page_with_status, problem_text, redirect_with,
    status_of,
};
use super::super::session::{WebAdmin, urlencode};
use crate::web::text::{link, path_id, when, when_or};

/// One account in the list.
struct UserRow {
    id: String,
    email: String,
    role: String,
    status: String,
    active: bool,
    created: String,
    last_login: String,
    /// The admin looking at the page (cannot disable themselves).
    is_me: bool,
}

/// One invitation in the list.
struct InvitationRow {
    id: String,
    email: String,
    role: &'static str,
    created: String,
    expires: String,
    /// `open`, `used` or `expired`.
    state: &'static str,
}

#[derive(Template)]
#[template(path = "web/admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    /// Link to the next page of users.
    users_next: Option<String>,
    /// Link back to the first page (when not on it).
    users_first: Option<String>,
    invitations: Vec<InvitationRow>,
    invitations_next: Option<String>,
    invitations_first: Option<String>,
    /// The invite form's values and errors.
    invite_email: String,
    invite_role: String,
    errors: FormErrors,
}

#[derive(Template)]
#[template(path = "web/admin/invited.html")]
struct InvitedPage {
    chrome: Chrome,
    email: String,
    role: &'static str,
    expires: String,
    token: String,
    /// Where the invitee registers: the token travels in the fragment.
    link: String,
}

/// The list's query: a cursor for each list.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    invitations_cursor: Option<String>,
}

fn role_name(role: RoleName) -> &'static str {
    match role {
        RoleName::Admin => "admin",
        RoleName::User => "user",
    }
}

fn user_row(u: UserView, me: &str) -> UserRow {
    UserRow {
        active: u.status == "active",
        is_me: u.id == me,
        created: when(u.created_at),
        last_login: when_or(u.last_login_at, "never"),
        id: u.id,
        email: u.email,
        role: u.role,
        status: u.status,
    }
}

fn invitation_row(i: InvitationView, now: i64) -> InvitationRow {
    let state = if i.used_at.is_some() {
        "used"
    } else if i.expires_at <= now {
        "expired"
    } else {
        "open"
    };
    InvitationRow {
        id: i.id,
        email: i
            .email
            .unwrap_or_else(|| "anyone with the token".to_owned()),
        role: role_name(i.role),
        created: when(i.created_at),
        expires: when(i.expires_at),
        state,
    }
}

/// A page query for the API from a cursor parameter.
fn page_query(cursor: Option<&String>) -> ApiQuery<PageQuery> {
    ApiQuery(PageQuery {
        limit: None,
        cursor: cursor.filter(|c| !c.is_empty()).cloned(),
    })
}

/// The users page, with the invite form showing `email`, `role` and
/// `errors`.
async fn users_page(
    state: &ApiState,
    admin: &WebAdmin,
    q: &ListQuery,
    invite: (String, String, FormErrors),
) -> Result<UsersPage, WebError> {
    let user = &admin.0;
    let chrome = user.chrome("admin", "Users");
    let within = |p: Problem| WebError::within(p, chrome.clone());
    let listed = users::list_users(
        State(state.clone()),
        user.principal.clone(),
        page_query(q.cursor.as_ref()),
    )
    .await
    .map_err(within)?
    .0;
    let invites = users::list_invitations(
        State(state.clone()),
        user.principal.clone(),
        page_query(q.invitations_cursor.as_ref()),
    )
    .await
    .map_err(within)?
    .0;
    let me = user.principal.id().to_string();
    let now = state.clock().now().as_unix_millis();
    let inv_cursor = q.invitations_cursor.as_deref().unwrap_or("");
    let cursor = q.cursor.as_deref().unwrap_or("");
    Ok(UsersPage {
        users: listed.items.into_iter().map(|u| user_row(u, &me)).collect(),
        users_next: listed.next_cursor.map(|c| {
            link(
                "/admin/users",
                &[("cursor", &c), ("invitations_cursor", inv_cursor)],
            )
        }),
        users_first: (!cursor.is_empty())
            .then(|| link("/admin/users", &[("invitations_cursor", inv_cursor)])),
        invitations: invites
            .items
            .into_iter()
            .map(|i| invitation_row(i, now))
            .collect(),
        invitations_next: invites.next_cursor.map(|c| {
            link(
                "/admin/users",
                &[("cursor", cursor), ("invitations_cursor", &c)],
            ) + "#invitations"
        }),
        invitations_first: (!inv_cursor.is_empty())
            .then(|| link("/admin/users", &[("cursor", cursor)]) + "#invitations"),
        invite_email: invite.0,
        invite_role: invite.1,
        errors: invite.2,
        chrome,
    })
}

async fn list(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let p = users_page(
        &state,
        &admin,
        &q,
        (String::new(), "user".to_owned(), FormErrors::none()),
    )
    .await?;
    Ok(page(&p))
}

/// Disables (`disable = true`) or enables an account.
async fn set_status(
    state: ApiState,
    admin: WebAdmin,
    id: &str,
    disable: bool,
) -> Result<Response, WebError> {
    let patch = UserPatch {
        status: Some(if disable {
            StatusName::Disabled
        } else {
            StatusName::Active
        }),
        role: None,
        forwards_per_day: None,
        replies_per_day: None,
        aliases_per_hour: None,
    };
    let result = match path_id(id, "user") {
        Ok(id) => {
            users::patch_user(State(state), admin.0.principal, ApiPath(id), ApiJson(patch)).await
        }
        Err(p) => Err(p),
    };
    Ok(match result {
        Ok(user) if disable => redirect_with(
            "/admin/users",
            Flash::ok(format!(
                "Disabled {}: they cannot sign in, their sessions ended and their aliases reject mail.",
                user.0.email
            )),
        ),
        Ok(user) => redirect_with(
            "/admin/users",
            Flash::ok(format!("Enabled {}: they can sign in again.", user.0.email)),
        ),
        Err(p) => redirect_with("/admin/users", Flash::error(problem_text(&p))),
    })
}

async fn disable(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    set_status(state, admin, &id, true).await
}

async fn enable(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    set_status(state, admin, &id, false).await
}

/// The invite form.
#[derive(Debug, Deserialize)]
struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// Where people reach the service: the configured public URL, else this
/// request's host.
fn public_origin(state: &ApiState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.config().tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

async fn invite(
    State(state): State<ApiState>,
    admin: WebAdmin,
    headers: HeaderMap,
    WebForm(form): WebForm<InviteForm>,
) -> Result<Response, WebError> {
    let email = form.email.trim().to_owned();
    let role = match form.role.as_str() {
        "admin" => Ok(RoleName::Admin),
        "user" | "" => Ok(RoleName::User),
        _ => Err(Problem::invalid("role", "must be user or admin")),
    };
    let result = match role {
        Ok(role) => {
            users::create_invitation(
                State(state.clone()),
                admin.0.principal.clone(),
                ApiJson(CreateInvitation {
                    email: (!email.is_empty()).then(|| email.clone()),
                    role: Some(role),
                }),
            )
            .await
        }
        Err(p) => Err(p),
    };
    match result {
        Ok((_, created)) => {
            let created = created.0;
            let link = format!(
                "{}/register#token={}",
                public_origin(&state, &headers),
                urlencode(&created.token)
            );
            let mut chrome = admin.0.chrome("admin", "Invitation created");
            chrome.flash = Some(Flash::ok(
                "Invitation created. Copy the token or the link now: it is not shown again.",
            ));
            Ok(page_with_status(
                StatusCode::CREATED,
                &InvitedPage {
                    chrome,
                    email: created
                        .invitation
                        .email
                        .unwrap_or_else(|| "anyone with the token".to_owned()),
                    role: role_name(created.invitation.role),
                    expires: when(created.invitation.expires_at),
                    token: created.token,
                    link,
                },
            ))
        }
        Err(p) => {
            let status = status_of(&p);
            let page = users_page(
                &state,
                &admin,
                &ListQuery::default(),
                (email, form.role, FormErrors::of(&p)),
            )
            .await?;
            Ok(page_with_status(status, &page))
        }
    }
}

async fn revoke(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = match path_id(&id, "invitation") {
        Ok(id) => users::delete_invitation(State(state), admin.0.principal, ApiPath(id))
            .await
            .map(|_| ()),
        Err(p) => Err(p),
    };
    Ok(match result {
        Ok(()) => redirect_with(
            "/admin/users#invitations",
            Flash::ok("Invitation revoked: its token no longer works."),
        ),
        Err(p) => redirect_with("/admin/users#invitations", Flash::error(problem_text(&p))),
    })
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/users", get(list))
        .route("/admin/users/invite", post(invite))
        .route("/admin/users/{id}/disable", post(disable))
        .route("/admin/users/{id}/enable", post(enable))
        .route("/admin/users/invitations/{id}/revoke", post(revoke))
}
