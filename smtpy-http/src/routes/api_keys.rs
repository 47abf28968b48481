//! `/api/v1/api-keys`: the caller's API keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::ids::ApiKeyId;
use smtpy_core::model::{ApiKey, ApiScope};
use smtpy_core::time::Timestamp;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{Principal, Via, mint_api_key};
use crate::page::{PageOf, PageQuery, parse_cursor};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem, check_count, check_len};
use crate::state::ApiState;

/// Most keys one account may hold.
pub(crate) const MAX_KEYS_PER_USER: usize = 100;

/// A scope as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum ScopeName {
    /// Read aliases, contacts, rules, stats and events.
    #[serde(rename = "aliases:read")]
    AliasesRead,
    /// Change aliases, contacts and rules.
    #[serde(rename = "aliases:write")]
    AliasesWrite,
    /// Read domains and mailboxes.
    #[serde(rename = "domains:read")]
    DomainsRead,
    /// Change domains and mailboxes.
    #[serde(rename = "domains:write")]
    DomainsWrite,
    /// Read the account, keys and audit log.
    #[serde(rename = "account:read")]
    AccountRead,
    /// Change the account and its keys.
    #[serde(rename = "account:write")]
    AccountWrite,
    /// Administer the service (admins only).
    #[serde(rename = "admin")]
    Admin,
}

impl ScopeName {
    /// The core scope.
    pub(crate) fn scope(self) -> ApiScope {
        match self {
            ScopeName::AliasesRead => ApiScope::AliasesRead,
            ScopeName::AliasesWrite => ApiScope::AliasesWrite,
            ScopeName::DomainsRead => ApiScope::DomainsRead,
            ScopeName::DomainsWrite => ApiScope::DomainsWrite,
            ScopeName::AccountRead => ApiScope::AccountRead,
            ScopeName::AccountWrite => ApiScope::AccountWrite,
            ScopeName::Admin => ApiScope::Admin,
        }
    }
}

/// An API key as its owner sees it (never the token or its hash).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The owner's label.
    pub name: String,
    /// The start of the token, to tell keys apart.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it stops working (Unix milliseconds); `null`: never.
    pub expires_at: Option<i64>,
    /// Last use (Unix milliseconds; updated at most once a minute).
    pub last_used_at: Option<i64>,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> ApiKeyView {
        ApiKeyView {
            id: k.id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k
                .scopes
                .iter()
                .map(|s| crate::auth::scope_name(*s))
                .collect(),
            expires_at: k.expires_at.map(|t| t.as_unix_millis()),
            last_used_at: k.last_used_at.map(|t| t.as_unix_millis()),
            created_at: k.created_at.as_unix_millis(),
        }
    }
}

/// A new key, with its token shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The bearer token: store it now, it is never shown again.
    pub token: String,
}

/// The caller's API keys, by id.
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api-keys",
    params(PageQuery),
    responses((status = 200, description = "A page of keys", body = PageOf<ApiKeyView>))
)]
pub(crate) async fn list_keys(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<ApiKeyView>>> {
    principal.require(ApiScope::AccountRead)?;
    let req = q.request()?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c)?),
        None => None,
    };
    let mut keys = state.store().list_api_keys(principal.id()).await?;
    keys.sort_by_key(|k| k.id);
    let limit = req.limit as usize;
    let mut rest = keys
        .into_iter()
        .filter(|k| after.is_none_or(|a| *k.id.as_uuid() > a));
    let items: Vec<ApiKey> = rest.by_ref().take(limit).collect();
    let more = rest.next().is_some();
    let next_cursor = if more {
        items.last().map(|k| k.id.to_string())
    } else {
        None
    };
    Ok(Json(PageOf {
        items: items.iter().map(ApiKeyView::from).collect(),
        next_cursor,
    }))
}

/// Creating a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// A label (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// What it may do (1 to 7 scopes; `admin` for admins only; a key can
    /// only create keys with scopes it has itself).
    #[schema(min_items = 1, max_items = 7)]
    pub scopes: Vec<ScopeName>,
    /// When it stops working (Unix milliseconds, in the future); absent:
    /// never.
    pub expires_at: Option<i64>,
}

/// Creates an API key and shows its token once.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api-keys",
    request_body = CreateKey,
    responses((status = 201, description = "The key and its token (shown once)", body = CreatedKey))
)]
pub(crate) async fn create_key(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    principal.require(ApiScope::AccountWrite)?;
    let name = body.name.trim();
    check_len("name", name, 1, 64)?;
    if name.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    check_count("scopes", &body.scopes, 7)?;
    if body.scopes.is_empty() {
        return Err(Problem::invalid("scopes", "must have at least 1 item"));
    }
    let mut scopes: Vec<ApiScope> = body.scopes.iter().map(|s| s.scope()).collect();
    scopes.sort();
    scopes.dedup();
    if scopes.contains(&ApiScope::Admin) && !principal.user.is_admin() {
        return Err(Problem::forbidden(
            "only admins may create keys with the admin scope",
        ));
    }
    if let Via::ApiKey { scopes: own, .. } = &principal.via
        && let Some(extra) = scopes.iter().find(|s| !own.contains(s))
    {
        return Err(Problem::forbidden(format!(
            "this key cannot grant the {} scope it does not have",
            crate::auth::scope_name(*extra)
        )));
    }
    let now = state.clock().now();
    let expires_at = match body.expires_at {
        Some(ms) if ms <= now.as_unix_millis() => {
            return Err(Problem::invalid("expires_at", "must be in the future"));
        }
        Some(ms) => Some(Timestamp::from_unix_millis(ms)),
        None => None,
    };
    if state.store().list_api_keys(principal.id()).await?.len() >= MAX_KEYS_PER_USER {
        return Err(Problem::conflict(format!(
            "an account may have at most {MAX_KEYS_PER_USER} keys"
        )));
    }
    let new = mint_api_key(principal.id(), name, scopes, expires_at, now)?;
    state.store().create_api_key(&new.key).await?;
    audit::record(
        &state,
        Audit::by(&principal, "api_key.create")
            .target(new.key.id)
            .detail("name", name)
            .detail(
                "scopes",
                new.key
                    .scopes
                    .iter()
                    .map(|s| crate::auth::scope_name(*s))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: ApiKeyView::from(&new.key),
            token: new.token,
        }),
    ))
}

/// Revokes one of the caller's keys (someone else's is a 404).
#[utoipa::path(
    delete,
    path = "/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"))
)]
pub(crate) async fn delete_key(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AccountWrite)?;
    let id = ApiKeyId::from_uuid(id);
    state
        .store()
        .delete_api_key(principal.access(), id)
        .await
        .map_err(|e| match e {
            smtpy_core::error::StoreError::NotFound { .. } => Problem::not_found("API key"),
            other => other.into(),
        })?;
    audit::record(&state, Audit::by(&principal, "api_key.delete").target(id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(delete_key))
}
