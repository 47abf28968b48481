//! `/api/v1/mailboxes`: the real addresses aliases forward to, verified by
//! a token sent there.
//!
//! A verification token is `<43 random base64url characters>.<expiry in
//! Unix milliseconds>`; only its SHA-256 is stored, so the expiry cannot be
//! changed without the token no longer matching.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::error::StoreError;
use smtpy_core::ids::MailboxId;
use smtpy_core::model::{Actor, ApiScope, AuditEvent, Mailbox, SecretHash};
use smtpy_core::notify::Notification;
use smtpy_core::time::Timestamp;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{ClientIp, Principal, random_token, throttle};
use crate::page::{MAX_LIMIT, PageOf, PageQuery, parse_cursor};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem, check_len};
use crate::state::ApiState;

/// Longest accepted address, in characters.
const MAX_ADDRESS: usize = 254;
/// Longest accepted token, in characters.
const MAX_TOKEN: usize = 128;

/// A mailbox as the API shows it (never its token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct MailboxView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The address.
    pub address: String,
    /// Whether the owner proved they receive mail there.
    pub verified: bool,
    /// When (Unix milliseconds).
    pub verified_at: Option<i64>,
    /// A verification mail is outstanding.
    pub verification_pending: bool,
    /// A disabled mailbox receives nothing (e.g. after hard bounces).
    pub disabled: bool,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last change (Unix milliseconds).
    pub updated_at: i64,
}

impl From<&Mailbox> for MailboxView {
    fn from(m: &Mailbox) -> MailboxView {
        MailboxView {
            id: m.id.to_string(),
            address: m.address.to_string(),
            verified: m.verified_at.is_some(),
            verified_at: m.verified_at.map(|t| t.as_unix_millis()),
            verification_pending: m.verification_token.is_some(),
            disabled: m.disabled,
            created_at: m.created_at.as_unix_millis(),
            updated_at: m.updated_at.as_unix_millis(),
        }
    }
}

/// `POST /mailboxes`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateMailbox {
    /// The address, 3 to 254 characters; not on a domain this service hosts.
    #[schema(min_length = 3, max_length = 254)]
    pub address: String,
}

/// `POST /mailboxes/verify`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyMailbox {
    /// The token from the verification mail, 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub token: String,
}

/// A fresh token expiring at `expires`, and its hash.
fn mint_token(expires: Timestamp) -> ApiResult<(String, SecretHash)> {
    let token = format!("{}.{}", random_token(32)?, expires.as_unix_millis());
    let hash = SecretHash::of(token.as_bytes());
    Ok((token, hash))
}

fn link(state: &ApiState, token: &str) -> Option<String> {
    state.config().public_url.as_ref().map(|u| {
        format!(
            "{}/app/mailboxes/verify#token={token}",
            u.trim_end_matches('/')
        )
    })
}

/// Gives `m` a new token and sends it; the caller stores `m` (before, so
/// a mail never carries a token that is not stored).
fn new_token(state: &ApiState, m: &mut Mailbox) -> ApiResult<(String, Timestamp)> {
    let expires = state
        .clock()
        .now()
        .saturating_add(state.config().mailbox_verification_lifetime);
    let (token, hash) = mint_token(expires)?;
    m.verification_token = Some(hash);
    Ok((token, expires))
}

async fn send_token(
    state: &ApiState,
    m: &Mailbox,
    token: &str,
    expires: Timestamp,
) -> ApiResult<()> {
    let Some(outbox) = state.outbox() else {
        return Err(Problem::unavailable(
            "this server cannot send mail: mailboxes cannot be verified",
        ));
    };
    let link = link(state, token);
    let n = Notification::mailbox_verification(m.address.clone(), token, link.as_deref(), expires);
    outbox.send(m.owner, n).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot queue a mailbox verification mail");
        Problem::unavailable("the verification mail could not be sent; retry later")
    })
}

/// `429` once the caller has asked for too many verification mails.
async fn throttle_mail(state: &ApiState, me: &Principal) -> ApiResult<()> {
    throttle(
        state,
        "mailbox_mail",
        &me.id().to_string(),
        state.config().limits.verify_per_ip,
    )
    .await
}

async fn own_mailbox(state: &ApiState, me: &Principal, id: uuid::Uuid) -> ApiResult<Mailbox> {
    let m = state
        .store()
        .get_mailbox(me.access(), MailboxId::from_uuid(id))
        .await?;
    if m.owner != me.id() {
        return Err(Problem::not_found("mailbox"));
    }
    Ok(m)
}

/// Adds a mailbox and sends a verification mail to it.
#[utoipa::path(
    post,
    path = "/mailboxes",
    tag = "mailboxes",
    request_body = CreateMailbox,
    responses((status = 201, description = "The mailbox, not yet verified", body = MailboxView))
)]
pub(crate) async fn create_mailbox(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiJson(body): ApiJson<CreateMailbox>,
) -> ApiResult<(StatusCode, Json<MailboxView>)> {
    let state = state.0;
    me.require(ApiScope::DomainsWrite)?;
    check_len("address", &body.address, 3, MAX_ADDRESS)?;
    let address = EmailAddress::parse(body.address.trim())
        .map_err(|e| Problem::invalid("address", e.to_string()))?;
    if state.outbox().is_none() {
        return Err(Problem::unavailable(
            "this server cannot send mail: mailboxes cannot be verified",
        ));
    }
    let own_host = DomainName::parse(state.config().mail_hostname.trim_end_matches('.')).ok();
    if own_host.as_ref() == Some(address.domain())
        || state
            .store()
            .find_domain_by_name(address.domain())
            .await?
            .is_some()
    {
        return Err(Problem::invalid(
            "address",
            "this address is on a domain hosted by this service; a mailbox must be an outside address (no forwarding loops)",
        ));
    }
    let key = address.canonical();
    if state
        .store()
        .list_mailboxes(me.id())
        .await?
        .iter()
        .any(|m| m.address.canonical() == key)
    {
        return Err(Problem::conflict("you already have this mailbox"));
    }
    throttle_mail(&state, &me).await?;
    let mut m = Mailbox::new(me.id(), address, state.clock().now());
    let (token, expires) = new_token(&state, &mut m)?;
    match state.store().create_mailbox(&m).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(Problem::conflict("you already have this mailbox"));
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(p) = send_token(&state, &m, &token, expires).await {
        if let Err(e) = state.store().delete_mailbox(me.access(), m.id).await {
            tracing::warn!(error = %e, "cannot remove a mailbox whose verification mail failed");
        }
        return Err(p);
    }
    audit::record(&state, Audit::by(&me, "mailbox.create").target(m.id)).await;
    Ok((StatusCode::CREATED, Json(MailboxView::from(&m))))
}

/// The caller's mailboxes, by id.
#[utoipa::path(
    get,
    path = "/mailboxes",
    tag = "mailboxes",
    params(PageQuery),
    responses((status = 200, description = "One page of mailboxes", body = PageOf<MailboxView>))
)]
pub(crate) async fn list_mailboxes(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<MailboxView>>> {
    me.require(ApiScope::DomainsRead)?;
    let after = match page.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_cursor(c)?),
        None => None,
    };
    let limit = page
        .limit
        .unwrap_or(crate::page::DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT) as usize;
    let mut rows: Vec<Mailbox> = state
        .store()
        .list_mailboxes(me.id())
        .await?
        .into_iter()
        .filter(|m| after.is_none_or(|a| *m.id.as_uuid() > a))
        .collect();
    rows.sort_by_key(|m| m.id);
    let next_cursor = (rows.len() > limit).then(|| rows[limit - 1].id.to_string());
    rows.truncate(limit);
    Ok(Json(PageOf {
        items: rows.iter().map(MailboxView::from).collect(),
        next_cursor,
    }))
}

/// One of the caller's mailboxes.
#[utoipa::path(
    get,
    path = "/mailboxes/{id}",
    tag = "mailboxes",
    params(("id" = uuid::Uuid, Path, description = "Mailbox id")),
    responses((status = 200, description = "The mailbox", body = MailboxView))
)]
pub(crate) async fn get_mailbox(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<MailboxView>> {
    me.require(ApiScope::DomainsRead)?;
    let m = own_mailbox(&state, &me, id).await?;
    Ok(Json(MailboxView::from(&m)))
}

/// Deletes a mailbox; refused with `409` while an alias (live or in the
/// trash) or a domain's default mailboxes still name it.
#[utoipa::path(
    delete,
    path = "/mailboxes/{id}",
    tag = "mailboxes",
    params(("id" = uuid::Uuid, Path, description = "Mailbox id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_mailbox(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    me.require(ApiScope::DomainsWrite)?;
    let m = own_mailbox(&state, &me, id).await?;
    match state.store().delete_mailbox(me.access(), m.id).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(Problem::conflict(
                "the mailbox is still used by an alias (live or in the trash) or as a domain's default mailbox; change those first",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(&state, Audit::by(&me, "mailbox.delete").target(m.id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification mail (the previous token stops working).
#[utoipa::path(
    post,
    path = "/mailboxes/{id}/resend",
    tag = "mailboxes",
    params(("id" = uuid::Uuid, Path, description = "Mailbox id")),
    responses((status = 200, description = "Sent; the mailbox", body = MailboxView))
)]
pub(crate) async fn resend_verification(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<MailboxView>> {
    me.require(ApiScope::DomainsWrite)?;
    let mut m = own_mailbox(&state, &me, id).await?;
    if m.verified_at.is_some() {
        return Err(Problem::conflict("the mailbox is already verified"));
    }
    if state.outbox().is_none() {
        return Err(Problem::unavailable(
            "this server cannot send mail: mailboxes cannot be verified",
        ));
    }
    throttle_mail(&state, &me).await?;
    let (token, expires) = new_token(&state, &mut m)?;
    m.updated_at = state.clock().now();
    let m = state.store().update_mailbox(me.access(), &m).await?;
    send_token(&state, &m, &token, expires).await?;
    audit::record(&state, Audit::by(&me, "mailbox.resend").target(m.id)).await;
    Ok(Json(MailboxView::from(&m)))
}

/// Verifies a mailbox with the token from its verification mail. Works
/// without authentication (the token is the proof; credentials that fail,
/// such as an expired session cookie, are ignored rather than refused);
/// throttled per client IP.
#[utoipa::path(
    post,
    path = "/mailboxes/verify",
    tag = "mailboxes",
    request_body = VerifyMailbox,
    security((), ("api_key" = []), ("session" = [])),
    responses((status = 200, description = "Verified; the mailbox", body = MailboxView))
)]
pub(crate) async fn verify_mailbox(
    state: axum::extract::State<ApiState>,
    me: Result<Principal, Problem>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<VerifyMailbox>,
) -> ApiResult<Json<MailboxView>> {
    let state = state.0;
    let me = me.ok();
    let ip_key = ip.map_or_else(|| "unknown".to_owned(), |i| i.to_string());
    throttle(
        &state,
        "verify",
        &ip_key,
        state.config().limits.verify_per_ip,
    )
    .await?;
    check_len("token", &body.token, 1, MAX_TOKEN)?;
    let token = body.token.trim();
    let wrong = || Problem::bad_request("unknown or already used verification token");
    let expires = token
        .rsplit_once('.')
        .and_then(|(_, e)| e.parse::<i64>().ok())
        .ok_or_else(wrong)?;
    let hash = SecretHash::of(token.as_bytes());
    let mut m = state
        .store()
        .find_mailbox_by_token(&hash)
        .await?
        .ok_or_else(wrong)?;
    if !m
        .verification_token
        .as_ref()
        .is_some_and(|h| h.ct_eq(&hash))
    {
        return Err(wrong());
    }
    let now = state.clock().now();
    if Timestamp::from_unix_millis(expires) <= now {
        return Err(Problem::bad_request(
            "the verification token has expired; ask for a new mail (resend)",
        ));
    }
    m.verified_at = Some(now);
    m.verification_token = None;
    m.updated_at = now;
    let m = state
        .store()
        .update_mailbox(smtpy_core::store::Access::System, &m)
        .await?;
    let event = AuditEvent {
        id: smtpy_core::ids::AuditEventId::new(),
        actor: me.as_ref().map_or(Actor::System, Principal::actor),
        owner: Some(m.owner),
        action: "mailbox.verify".to_owned(),
        target: Some(m.id.to_string()),
        ip: ip.map(|i| i.to_string()),
        at: now,
        details: Default::default(),
    };
    if let Err(e) = state.store().append_audit(&event).await {
        tracing::error!(error = %e, "cannot write an audit event");
    }
    Ok(Json(MailboxView::from(&m)))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_mailbox, list_mailboxes))
        .routes(routes!(verify_mailbox))
        .routes(routes!(get_mailbox, delete_mailbox))
        .routes(routes!(resend_verification))
}
