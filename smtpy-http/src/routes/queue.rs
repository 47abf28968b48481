//! `/api/v1/admin/queue`: queue inspection for administrators (list, show,
//! retry, release, delete, stats), and `/api/v1/quarantine/{id}/release`
//! for owners releasing their own quarantined mail.
//!
//! Message bodies are never returned.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::ids::MessageId;
use smtpy_core::model::{
    ApiScope, EventFilter, EventKind, MessageKind, QueuedMessage, RecipientState, RemoteReply,
};
use smtpy_core::store::{PageRequest, QueueStats, QueueStore};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::page::scan;
use crate::page::{PageOf, PageQuery};
use crate::problem::{ApiPath, ApiQuery, ApiResult, Problem};
use crate::routes::events::wire;
use crate::state::ApiState;

/// The attached queue, or `503` when the service attached none
/// ([`ApiState::with_queue`]).
fn queue(state: &ApiState) -> ApiResult<Arc<dyn QueueStore>> {
    state
        .queue()
        .cloned()
        .ok_or_else(|| Problem::unavailable("no mail queue is attached to this API"))
}

/// One recipient of a queued message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueuedRecipientView {
    /// Where it is delivered.
    pub address: String,
    /// The alias the mail came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_id: Option<String>,
    /// What a DSN calls this recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// When it became `delivered` or `failed` (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_at: Option<i64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last reply received (`451 4.7.1 try later`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
}

/// A queued message's metadata (never its body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueuedMessageView {
    /// Identifier.
    pub id: String,
    /// `forward`, `bounce_relay`, `dsn`, `reply`, `notification`.
    pub kind: String,
    /// Held: never delivered until released.
    pub held: bool,
    /// Body size in bytes.
    pub size: u64,
    /// When it was accepted (Unix ms).
    pub created_at: i64,
    /// Next delivery attempt (Unix ms).
    pub next_attempt_at: i64,
    /// When pending recipients fail (Unix ms).
    pub expires_at: i64,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Envelope sender used for delivery (absent for `<>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_path: Option<String>,
    /// The sender as received (absent for `<>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Whose traffic it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Ties log lines of the message together.
    pub correlation_id: String,
    /// Recipients with their states.
    pub recipients: Vec<QueuedRecipientView>,
}

fn reply_text(r: &RemoteReply) -> String {
    r.to_string()
}

impl From<&QueuedMessage> for QueuedMessageView {
    fn from(m: &QueuedMessage) -> QueuedMessageView {
        QueuedMessageView {
            id: m.id.to_string(),
            kind: wire(&m.kind),
            held: m.held,
            size: m.body.len() as u64,
            created_at: m.received_at.as_unix_millis(),
            next_attempt_at: m.next_attempt_at.as_unix_millis(),
            expires_at: m.expires_at.as_unix_millis(),
            attempts: m.attempts,
            reverse_path: m.reverse_path.as_ref().map(ToString::to_string),
            sender: m.original_sender.as_ref().map(ToString::to_string),
            owner_id: m.owner.map(|o| o.to_string()),
            correlation_id: m.correlation_id.clone(),
            recipients: m
                .recipients
                .iter()
                .map(|r| {
                    let (state, state_at, reason) = match &r.state {
                        RecipientState::Pending => ("pending", None, None),
                        RecipientState::Delivered { at, .. } => {
                            ("delivered", Some(at.as_unix_millis()), None)
                        }
                        RecipientState::Failed { at, reason, .. } => {
                            ("failed", Some(at.as_unix_millis()), Some(reason.clone()))
                        }
                        _ => ("unknown", None, None),
                    };
                    QueuedRecipientView {
                        address: r.address.to_string(),
                        alias_id: r.alias.map(|a| a.to_string()),
                        original: r.original.as_ref().map(ToString::to_string),
                        state: state.to_owned(),
                        state_at,
                        reason,
                        attempts: r.attempts,
                        last_reply: r.last_reply.as_ref().map(reply_text),
                    }
                })
                .collect(),
        }
    }
}

/// Filters of the queue list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueQuery {
    /// Only held (`true`) or only not held (`false`) messages.
    pub held: Option<bool>,
}

/// Queue depth, held count and oldest message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueueStatsView {
    /// Messages in the queue (held ones included).
    pub depth: u64,
    /// Held messages.
    pub held: u64,
    /// When the oldest message was accepted (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_received_at: Option<i64>,
}

impl From<QueueStats> for QueueStatsView {
    fn from(s: QueueStats) -> QueueStatsView {
        QueueStatsView {
            depth: s.depth,
            held: s.held,
            oldest_received_at: s.oldest_received_at.map(|t| t.as_unix_millis()),
        }
    }
}

/// Queued messages, oldest first.
#[utoipa::path(
    get,
    path = "/admin/queue",
    tag = "admin",
    params(PageQuery, QueueQuery),
    responses((status = 200, description = "One page of queued messages", body = PageOf<QueuedMessageView>))
)]
pub(crate) async fn list_queue(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<Json<PageOf<QueuedMessageView>>> {
    principal.require_admin()?;
    let store = queue(&state)?;
    let page = scan(
        page.request()?,
        |req: PageRequest| {
            let store = store.clone();
            async move { Ok(store.list_queue(req).await?) }
        },
        |m: &QueuedMessage| q.held.is_none_or(|h| m.held == h),
        |m| *m.id.as_uuid(),
    )
    .await?;
    Ok(Json(PageOf::map(page, |m| QueuedMessageView::from(&m))))
}

/// Depth, held count and oldest message of the queue.
#[utoipa::path(
    get,
    path = "/admin/queue/stats",
    tag = "admin",
    responses((status = 200, description = "Queue statistics", body = QueueStatsView))
)]
pub(crate) async fn queue_stats(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<QueueStatsView>> {
    principal.require_admin()?;
    Ok(Json(queue(&state)?.queue_stats().await?.into()))
}

/// One queued message's metadata.
#[utoipa::path(
    get,
    path = "/admin/queue/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message (no body)", body = QueuedMessageView))
)]
pub(crate) async fn get_queued(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<MessageId>,
) -> ApiResult<Json<QueuedMessageView>> {
    principal.require_admin()?;
    let m = queue(&state)?.get_queued(id).await?;
    Ok(Json(QueuedMessageView::from(&m)))
}

/// Whether to delete a message that is not held.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Delete even when the message is not held.
    pub force: Option<bool>,
}

/// Removes a message from the queue for good. Only held messages, unless
/// `force=true`.
#[utoipa::path(
    delete,
    path = "/admin/queue/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Message id"), DeleteQuery),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_queued(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<MessageId>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    principal.require_admin()?;
    let m = queue(&state)?.get_queued(id).await?;
    let force = q.force.unwrap_or(false);
    if !m.held && !force {
        return Err(Problem::conflict(
            "message: not held; hold it first or pass force=true",
        ));
    }
    queue(&state)?.delete_queued(id).await?;
    audit::record(
        &state,
        Audit::by(&principal, "queue.delete")
            .target(id)
            .detail("held", m.held)
            .detail("forced", force && !m.held)
            .detail("kind", wire(&m.kind)),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a message due now.
#[utoipa::path(
    post,
    path = "/admin/queue/{id}/retry",
    tag = "admin",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = QueuedMessageView))
)]
pub(crate) async fn retry_queued(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<MessageId>,
) -> ApiResult<Json<QueuedMessageView>> {
    principal.require_admin()?;
    queue(&state)?.retry_now(id, state.clock().now()).await?;
    audit::record(&state, Audit::by(&principal, "queue.retry").target(id)).await;
    let m = queue(&state)?.get_queued(id).await?;
    Ok(Json(QueuedMessageView::from(&m)))
}

/// Releases a held (quarantined) message: it is delivered at its next
/// attempt time.
#[utoipa::path(
    post,
    path = "/admin/queue/{id}/release",
    tag = "admin",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = QueuedMessageView))
)]
pub(crate) async fn release_queued(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<MessageId>,
) -> ApiResult<Json<QueuedMessageView>> {
    principal.require_admin()?;
    queue(&state)?.set_held(id, false).await?;
    audit::record(&state, Audit::by(&principal, "queue.release").target(id)).await;
    let m = queue(&state)?.get_queued(id).await?;
    Ok(Json(QueuedMessageView::from(&m)))
}

/// Releases one of the caller's quarantined messages: a held forward to one
/// of their aliases that the mail path quarantined (it recorded a
/// `quarantined` event for the caller). Anything else is a 404.
#[utoipa::path(
    post,
    path = "/quarantine/{id}/release",
    tag = "events",
    params(("id" = String, Path, description = "Message id (message_id of a quarantined event)")),
    responses((status = 204, description = "Released"))
)]
async fn release_own(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<MessageId>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AliasesWrite)?;
    let store = state.store();
    let not_found = || Problem::not_found("quarantined message");
    let q = queue(&state)?;
    let m = q.get_queued(id).await.map_err(|_| not_found())?;
    if !m.held || m.kind != MessageKind::Forward || m.owner != Some(principal.id()) {
        return Err(not_found());
    }
    for r in &m.recipients {
        let alias = r.alias.ok_or_else(not_found)?;
        store
            .get_alias(principal.access(), alias)
            .await
            .map_err(|_| not_found())?;
    }
    let quarantined = store
        .list_events(
            principal.access(),
            &EventFilter {
                message: Some(id),
                kinds: vec![EventKind::Quarantined],
                ..EventFilter::default()
            },
            PageRequest::first(1),
        )
        .await?;
    if quarantined.items.is_empty() {
        return Err(not_found());
    }
    q.set_held(id, false).await?;
    audit::record(
        &state,
        Audit::by(&principal, "quarantine.release").target(id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_queue))
        .routes(routes!(queue_stats))
        .routes(routes!(get_queued, delete_queued))
        .routes(routes!(retry_queued))
        .routes(routes!(release_queued))
        .routes(routes!(release_own))
}
