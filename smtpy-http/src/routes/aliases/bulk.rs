//! `POST /api/v1/aliases/bulk`: one action on many aliases.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smtpy_core::StoreError;
use smtpy_core::ids::{AliasId, MailboxId};
use smtpy_core::model::{Alias, ApiScope};
use smtpy_core::store::BulkAliasAction;
use utoipa::ToSchema;

use super::resolve_mailboxes;
use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::problem::{ApiJson, ApiResult, Problem, check_count, check_len};
use crate::state::ApiState;

/// Most ids in one bulk request.
pub(crate) const MAX_BULK_IDS: usize = 500;

/// What to do to every alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BulkActionWire {
    /// Enable.
    Enable,
    /// Disable.
    Disable,
    /// Soft-delete.
    Delete,
    /// Replace the mailboxes with `mailboxes`.
    Move,
}

/// `POST /aliases/bulk`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    /// Alias ids, 1 to 500.
    #[schema(min_items = 1, max_items = 500)]
    pub ids: Vec<String>,
    /// The action.
    pub action: BulkActionWire,
    /// With `move` (and only then): the new mailboxes, 1 to 20 of your
    /// verified mailboxes.
    #[schema(max_items = 20)]
    pub mailboxes: Option<Vec<String>>,
}

/// What happened to one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BulkStatus {
    /// The action changed the alias.
    Changed,
    /// The alias was already in that state.
    Unchanged,
    /// No such alias of yours (never touched).
    NotFound,
}

/// The outcome for one id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct BulkItem {
    /// The id as given.
    pub id: String,
    /// What happened.
    pub status: BulkStatus,
}

/// The outcome of a bulk request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct BulkResponse {
    /// One entry per id given, in order (duplicates reported each time).
    pub results: Vec<BulkItem>,
    /// How many aliases changed.
    pub changed: u64,
}

/// Whether `action` would change `a`.
fn would_change(a: &Alias, action: &BulkAliasAction) -> bool {
    match action {
        BulkAliasAction::Enable => !a.enabled,
        BulkAliasAction::Disable => a.enabled,
        BulkAliasAction::Delete => a.deleted_at.is_none(),
        BulkAliasAction::Restore => a.deleted_at.is_some(),
        BulkAliasAction::MoveToMailboxes(m) => a.mailboxes != *m,
        _ => true,
    }
}

/// Applies one action to many of the caller's aliases. Ids that are not
/// the caller's aliases (or not ids at all) are reported as `not_found`
/// and never touched; the others change together (all or nothing).
#[utoipa::path(
    post,
    path = "/aliases/bulk",
    tag = "aliases",
    request_body = BulkRequest,
    responses((status = 200, description = "Per-id outcome", body = BulkResponse))
)]
pub(crate) async fn bulk_aliases(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<BulkRequest>,
) -> ApiResult<Json<BulkResponse>> {
    principal.require(ApiScope::AliasesWrite)?;
    if body.ids.is_empty() {
        return Err(Problem::invalid("ids", "must name at least one alias"));
    }
    check_count("ids", &body.ids, MAX_BULK_IDS)?;
    for (i, id) in body.ids.iter().enumerate() {
        check_len(&format!("ids/{i}"), id, 1, 64)?;
    }
    let action = match (body.action, &body.mailboxes) {
        (BulkActionWire::Move, Some(m)) => BulkAliasAction::MoveToMailboxes(
            resolve_mailboxes(&state, &principal, "mailboxes", m).await?,
        ),
        (BulkActionWire::Move, None) => {
            return Err(Problem::invalid("mailboxes", "required with move"));
        }
        (_, Some(_)) => {
            return Err(Problem::invalid("mailboxes", "only with move"));
        }
        (BulkActionWire::Enable, None) => BulkAliasAction::Enable,
        (BulkActionWire::Disable, None) => BulkAliasAction::Disable,
        (BulkActionWire::Delete, None) => BulkAliasAction::Delete,
    };

    // Sort the ids into the caller's aliases and the rest; only the
    // caller's go to the store, so a foreign id can never be changed.
    let store = state.store();
    let mut status: Vec<(String, Option<AliasId>)> = Vec::with_capacity(body.ids.len());
    let mut mine: Vec<Alias> = Vec::new();
    for raw in &body.ids {
        let id = match raw.trim().parse::<AliasId>() {
            Ok(id) => id,
            Err(_) => {
                status.push((raw.clone(), None));
                continue;
            }
        };
        if mine.iter().any(|a| a.id == id) {
            status.push((raw.clone(), Some(id)));
            continue;
        }
        match store.get_alias(principal.access(), id).await {
            Ok(a) => {
                mine.push(a);
                status.push((raw.clone(), Some(id)));
            }
            Err(StoreError::NotFound { .. }) => status.push((raw.clone(), None)),
            Err(e) => return Err(e.into()),
        }
    }
    let ids: Vec<AliasId> = mine.iter().map(|a| a.id).collect();
    let changed = if ids.is_empty() {
        0
    } else {
        match store
            .bulk_update_aliases(principal.access(), &ids, &action, state.clock().now())
            .await
        {
            Ok(n) => n,
            Err(StoreError::NotFound { entity: "alias" }) => {
                return Err(Problem::conflict(
                    "aliases: some were purged meanwhile; nothing was changed, retry",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let results = status
        .into_iter()
        .map(|(id, found)| {
            let status = match found.and_then(|f| mine.iter().find(|a| a.id == f)) {
                None => BulkStatus::NotFound,
                Some(a) if would_change(a, &action) => BulkStatus::Changed,
                Some(_) => BulkStatus::Unchanged,
            };
            BulkItem { id, status }
        })
        .collect();

    let name = match body.action {
        BulkActionWire::Enable => "alias.bulk_enable",
        BulkActionWire::Disable => "alias.bulk_disable",
        BulkActionWire::Delete => "alias.bulk_delete",
        BulkActionWire::Move => "alias.bulk_move",
    };
    let mut event = Audit::by(&principal, name)
        .detail("requested", body.ids.len())
        .detail("matched", ids.len())
        .detail("changed", changed);
    if let BulkAliasAction::MoveToMailboxes(m) = &action {
        let list: Vec<String> = m.iter().map(MailboxId::to_string).collect();
        event = event.detail("mailboxes", list.join(","));
    }
    let shown: Vec<String> = ids.iter().take(50).map(ToString::to_string).collect();
    event = event.target(shown.join(","));
    audit::record(&state, event).await;
    Ok(Json(BulkResponse { results, changed }))
}
