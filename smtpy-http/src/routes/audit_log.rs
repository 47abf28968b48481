//! `/api/v1/audit` (the caller's own audit events) and `/api/v1/admin/audit`
//! (everyone's, administrators only).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smtpy_core::model::{Actor, ApiScope, AuditEvent};
use smtpy_core::store::{Access, AuditFilter};
use smtpy_core::time::Timestamp;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::page::{PageOf, PageQuery, scan};
use crate::problem::{ApiQuery, ApiResult, check_len};
use crate::state::ApiState;

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditView {
    /// Identifier (time-ordered).
    pub id: String,
    /// When (Unix ms).
    pub at: i64,
    /// `user`, `api_key` or `system`.
    pub actor_type: String,
    /// The user or API key id (absent for `system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// Whose data it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Dotted action (`rule.create`, `session.login_failed`, …).
    pub action: String,
    /// What it happened to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Extra facts.
    pub details: BTreeMap<String, String>,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> AuditView {
        let (actor_type, actor_id) = match e.actor {
            Actor::User(u) => ("user", Some(u.to_string())),
            Actor::ApiKey(k) => ("api_key", Some(k.to_string())),
            _ => ("system", None),
        };
        AuditView {
            id: e.id.to_string(),
            at: e.at.as_unix_millis(),
            actor_type: actor_type.to_owned(),
            actor_id,
            owner_id: e.owner.map(|o| o.to_string()),
            action: e.action,
            target: e.target,
            ip: e.ip,
            details: e.details,
        }
    }
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only actions starting with this (`rule.`, `session.login`).
    #[param(max_length = 100)]
    pub action: Option<String>,
    /// Only events at or after this instant (Unix ms).
    pub since: Option<i64>,
}

async fn list(
    state: &ApiState,
    access: Access,
    page: &PageQuery,
    q: &AuditQuery,
) -> ApiResult<Json<PageOf<AuditView>>> {
    let prefix = q.action.clone().unwrap_or_default();
    check_len("action", &prefix, 0, 100)?;
    let filter = AuditFilter {
        action: None,
        since: q.since.map(Timestamp::from_unix_millis),
    };
    let store = state.store().clone();
    let page = scan(
        page.request()?,
        |req| {
            let store = store.clone();
            let filter = filter.clone();
            async move { Ok(store.list_audit(access, &filter, req).await?) }
        },
        |e: &AuditEvent| e.action.starts_with(&prefix),
        |e| *e.id.as_uuid(),
    )
    .await?;
    Ok(Json(PageOf::map(page, AuditView::from)))
}

/// The caller's own audit events (those concerning their account), oldest
/// first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(PageQuery, AuditQuery),
    responses((status = 200, description = "One page of audit events", body = PageOf<AuditView>))
)]
async fn own_audit(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<PageOf<AuditView>>> {
    principal.require(ApiScope::AccountRead)?;
    list(&state, principal.access(), &page, &q).await
}

/// Every audit event (administrators), oldest first.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    params(PageQuery, AuditQuery),
    responses((status = 200, description = "One page of audit events", body = PageOf<AuditView>))
)]
pub(crate) async fn all_audit(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<PageOf<AuditView>>> {
    principal.require_admin()?;
    list(&state, Access::System, &page, &q).await
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(own_audit))
        .routes(routes!(all_audit))
}
