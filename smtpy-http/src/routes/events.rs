//! `/api/v1/events` and `/api/v1/aliases/{id}/events`: the delivery log of
//! the caller's aliases, newest first.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smtpy_core::ids::AliasId;
use smtpy_core::model::{ApiScope, DeliveryEvent, EventFilter, EventKind};
use smtpy_core::store::Access;
use smtpy_core::time::Timestamp;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::page::{PageOf, PageQuery, scan};
use crate::problem::{ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::ApiState;

/// One delivery event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct EventView {
    /// Identifier (time-ordered).
    pub id: String,
    /// When (Unix ms).
    pub at: i64,
    /// `accepted`, `refused`, `blocked`, `quarantined`, `rate_limited`,
    /// `delivered`, `deferred`, `failed`, `bounced`, `replied`, `notified`,
    /// `auto_disabled`.
    pub kind: String,
    /// The alias.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_id: Option<String>,
    /// The mailbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox_id: Option<String>,
    /// The queued message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The envelope sender (absent for `<>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Facts of the decision (`reply`, `spf`, `dkim`, `dmarc`, `rule`, …).
    pub details: BTreeMap<String, String>,
}

pub(crate) fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<DeliveryEvent> for EventView {
    fn from(e: DeliveryEvent) -> EventView {
        EventView {
            id: e.id.to_string(),
            at: e.at.as_unix_millis(),
            kind: wire(&e.kind),
            alias_id: e.alias.map(|a| a.to_string()),
            mailbox_id: e.mailbox.map(|m| m.to_string()),
            message_id: e.message.map(|m| m.to_string()),
            sender: e.sender,
            details: e.details,
        }
    }
}

/// Filters of the event log.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only this alias's events (an alias id).
    #[param(max_length = 64)]
    pub alias: Option<String>,
    /// Only these kinds, comma-separated (`delivered,failed`).
    #[param(max_length = 256)]
    pub kind: Option<String>,
    /// Only events at or after this instant (Unix ms).
    pub since: Option<i64>,
    /// Only events before this instant (Unix ms).
    pub until: Option<i64>,
}

fn parse_kinds(s: Option<&str>) -> ApiResult<Vec<EventKind>> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    if s.len() > 256 {
        return Err(Problem::invalid("kind", "must be at most 256 characters"));
    }
    s.split(',')
        .map(|k| {
            serde_json::from_value(serde_json::Value::String(k.trim().to_owned()))
                .map_err(|_| Problem::invalid("kind", format!("unknown event kind {:?}", k.trim())))
        })
        .collect()
}

async fn list(
    state: &ApiState,
    principal: &Principal,
    alias: Option<AliasId>,
    page: &PageQuery,
    q: &EventQuery,
) -> ApiResult<Json<PageOf<EventView>>> {
    principal.require(ApiScope::AliasesRead)?;
    if let Some(id) = alias {
        // Another user's alias is a 404, not an empty list.
        state.store().get_alias(principal.access(), id).await?;
    }
    let filter = EventFilter {
        alias,
        kinds: parse_kinds(q.kind.as_deref())?,
        since: q.since.map(Timestamp::from_unix_millis),
        ..EventFilter::default()
    };
    let until = q.until.map(Timestamp::from_unix_millis);
    let access: Access = principal.access();
    let store = state.store().clone();
    let page = scan(
        page.request()?,
        |req| {
            let store = store.clone();
            let filter = filter.clone();
            async move { Ok(store.list_events(access, &filter, req).await?) }
        },
        |e: &DeliveryEvent| until.is_none_or(|u| e.at < u),
        |e| *e.id.as_uuid(),
    )
    .await?;
    Ok(Json(PageOf::map(page, EventView::from)))
}

/// The delivery log of the caller's aliases, newest first.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(PageQuery, EventQuery),
    responses((status = 200, description = "One page of events, newest first", body = PageOf<EventView>))
)]
async fn list_events(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<PageOf<EventView>>> {
    let alias = match q.alias.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(a.parse().map_err(|_| Problem::not_found("alias"))?),
    };
    list(&state, &principal, alias, &page, &q).await
}

/// The delivery log of one of the caller's aliases, newest first.
#[utoipa::path(
    get,
    path = "/aliases/{id}/events",
    tag = "events",
    params(("id" = String, Path, description = "Alias id"), PageQuery, EventQuery),
    responses((status = 200, description = "One page of events, newest first", body = PageOf<EventView>))
)]
pub(crate) async fn alias_events(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<AliasId>,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<PageOf<EventView>>> {
    list(&state, &principal, Some(id), &page, &q).await
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(alias_events))
}
