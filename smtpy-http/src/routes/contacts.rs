//! Contacts: the outside addresses an alias writes with. Each has a
//! reverse alias (`r--…@alias-domain`): mail the owner sends to it goes
//! out from the alias to the contact.
//!
//! `POST /aliases/{id}/contacts` mints the reverse alias exactly as the SMTP
//! side does for a sender it sees first: [`ReverseAliases::mint`] on the
//! alias's domain, stored as the contact's `reverse_key` in its
//! [`ReverseAliases::lookup_key`] form, so a reply to it routes like any
//! other.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::StoreError;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::ContactId;
use smtpy_core::model::{Alias, ApiScope, Contact};
use smtpy_core::reverse::ReverseAliases;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::page::{PageOf, PageQuery};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem, ProblemType, check_len};
use crate::routes::aliases::{alias_id, check_text, is_reserved_local_part, nullable};
use crate::state::ApiState;

/// Longest contact address, in characters.
const MAX_ADDRESS_CHARS: usize = 254;
/// Longest display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 128;

/// A contact as the alias's owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ContactView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The alias it belongs to.
    #[schema(value_type = String, format = Uuid)]
    pub alias_id: String,
    /// That alias's address (the sender the contact sees).
    pub alias: String,
    /// The outside address.
    pub address: String,
    /// Display name used in its mail.
    pub display_name: Option<String>,
    /// Mail from a blocked contact is not forwarded.
    pub blocked: bool,
    /// Write to this address to send mail from the alias to the contact.
    pub reverse_alias: String,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last change (Unix milliseconds).
    pub updated_at: i64,
    /// Last mail from or to it (Unix milliseconds).
    pub last_seen_at: Option<i64>,
    /// Optimistic-concurrency revision.
    pub revision: u64,
}

impl ContactView {
    fn of(c: &Contact, alias: &Alias) -> ContactView {
        let reverse_alias = ReverseAliases::address(&c.reverse_key, alias.address.domain())
            .map(|a| a.to_string())
            .unwrap_or_default();
        ContactView {
            id: c.id.to_string(),
            alias_id: c.alias.to_string(),
            alias: alias.address.to_string(),
            address: c.address.to_string(),
            display_name: c.display_name.clone(),
            blocked: c.blocked,
            reverse_alias,
            created_at: c.created_at.as_unix_millis(),
            updated_at: c.updated_at.as_unix_millis(),
            last_seen_at: c.last_seen_at.map(|t| t.as_unix_millis()),
            revision: c.revision,
        }
    }
}

/// `POST /aliases/{id}/contacts`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateContact {
    /// The outside address to write to.
    #[schema(max_length = 254)]
    pub address: String,
    /// Its display name (at most 128 characters).
    #[schema(max_length = 128)]
    pub display_name: Option<String>,
}

/// `PATCH /contacts/{id}`: absent fields stay; `null` clears the display
/// name.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateContact {
    /// Block (`true`) or unblock (`false`) its mail.
    pub blocked: Option<bool>,
    /// Display name (at most 128 characters); `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub display_name: Option<Option<String>>,
    /// The revision you read; refused (`409`) if the contact changed since.
    pub revision: Option<u64>,
}

fn display_name(value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            check_text("display_name", &v, 0, MAX_DISPLAY_NAME_CHARS, false)?;
            let t = v.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
    }
}

/// Creates a contact of an alias (or returns the existing one for that
/// address: `200` instead of `201`) with the reverse alias to write to.
/// `403` (`disabled`) while the `send_from_alias` feature flag is off.
#[utoipa::path(
    post,
    path = "/aliases/{id}/contacts",
    tag = "contacts",
    params(("id" = uuid::Uuid, Path, description = "Alias id")),
    request_body = CreateContact,
    responses(
        (status = 201, description = "The new contact", body = ContactView),
        (status = 200, description = "The existing contact for that address", body = ContactView),
        (status = 403, description = "Sending new mail from aliases is disabled on this server (feature flag `send_from_alias`)")
    )
)]
pub(crate) async fn create_contact(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<CreateContact>,
) -> ApiResult<(StatusCode, Json<ContactView>)> {
    principal.require(ApiScope::AliasesWrite)?;
    if !state.features().get().send_from_alias {
        return Err(Problem::new(
            ProblemType::Disabled,
            "sending new mail from aliases is disabled on this server (feature flag send_from_alias)",
        ));
    }
    let store = state.store();
    let alias = store.get_alias(principal.access(), alias_id(id)).await?;
    check_len("address", &body.address, 3, MAX_ADDRESS_CHARS)?;
    let address = EmailAddress::parse(body.address.trim())
        .map_err(|e| Problem::invalid("address", format!("not an address: {e}")))?;
    if is_reserved_local_part(address.local_part().as_str()) {
        return Err(Problem::invalid(
            "address",
            "reverse aliases and bounce addresses cannot be contacts",
        ));
    }
    if address == alias.address {
        return Err(Problem::invalid(
            "address",
            "an alias cannot be its own contact",
        ));
    }
    let name = display_name(body.display_name)?;
    if alias.deleted_at.is_some() {
        return Err(Problem::conflict("alias: deleted; restore it first"));
    }
    let Some(reverse) = state.reverse() else {
        return Err(Problem::unavailable(
            "reverse aliases are not configured on this server",
        ));
    };
    if let Some(c) = store.find_contact(alias.id, &address).await? {
        return Ok((StatusCode::OK, Json(ContactView::of(&c, &alias))));
    }
    let token = reverse
        .mint(alias.address.domain())
        .map_err(Problem::internal)?;
    if ReverseAliases::address(&token, alias.address.domain()).is_err() {
        return Err(Problem::conflict(
            "alias: its domain name is too long for reverse aliases",
        ));
    }
    let contact = Contact::new(
        &alias,
        address.clone(),
        name,
        ReverseAliases::lookup_key(&token),
        state.clock().now(),
    );
    match store.create_contact(&contact).await {
        Ok(()) => {}
        // Created concurrently (by the mail path or another request).
        Err(StoreError::AlreadyExists { .. }) => {
            if let Some(c) = store.find_contact(alias.id, &address).await? {
                return Ok((StatusCode::OK, Json(ContactView::of(&c, &alias))));
            }
            return Err(Problem::conflict("contact: could not be created; retry"));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        &state,
        Audit::by(&principal, "contact.create")
            .target(contact.id)
            .detail("alias", alias.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(ContactView::of(&contact, &alias))))
}

/// The contacts of one of the caller's aliases, oldest first.
#[utoipa::path(
    get,
    path = "/aliases/{id}/contacts",
    tag = "contacts",
    params(("id" = uuid::Uuid, Path, description = "Alias id"), PageQuery),
    responses((status = 200, description = "One page of contacts", body = PageOf<ContactView>))
)]
pub(crate) async fn list_contacts(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<ContactView>>> {
    principal.require(ApiScope::AliasesRead)?;
    let store = state.store();
    let alias = store.get_alias(principal.access(), alias_id(id)).await?;
    let p = store
        .list_contacts(principal.access(), Some(alias.id), page.request()?)
        .await?;
    Ok(Json(PageOf::map(p, |c| ContactView::of(&c, &alias))))
}

/// A contact and its alias, both the caller's.
async fn owned(
    state: &ApiState,
    principal: &Principal,
    id: ContactId,
) -> ApiResult<(Contact, Alias)> {
    let store = state.store();
    let contact = store.get_contact(principal.access(), id).await?;
    let alias = store.get_alias(principal.access(), contact.alias).await?;
    Ok((contact, alias))
}

/// One of the caller's contacts.
#[utoipa::path(
    get,
    path = "/contacts/{id}",
    tag = "contacts",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    responses((status = 200, description = "The contact", body = ContactView))
)]
pub(crate) async fn get_contact(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<ContactView>> {
    principal.require(ApiScope::AliasesRead)?;
    let (c, a) = owned(&state, &principal, ContactId::from_uuid(id)).await?;
    Ok(Json(ContactView::of(&c, &a)))
}

/// Blocks, unblocks or renames a contact.
#[utoipa::path(
    patch,
    path = "/contacts/{id}",
    tag = "contacts",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    request_body = UpdateContact,
    responses((status = 200, description = "The changed contact", body = ContactView))
)]
pub(crate) async fn update_contact(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<UpdateContact>,
) -> ApiResult<Json<ContactView>> {
    principal.require(ApiScope::AliasesWrite)?;
    let (mut contact, alias) = owned(&state, &principal, ContactId::from_uuid(id)).await?;
    if let Some(rev) = body.revision
        && rev != contact.revision
    {
        return Err(Problem::conflict(
            "contact: changed since you read it (revision mismatch)",
        ));
    }
    let was_blocked = contact.blocked;
    if let Some(b) = body.blocked {
        contact.blocked = b;
    }
    let renamed = body.display_name.is_some();
    if let Some(n) = body.display_name {
        contact.display_name = display_name(n)?;
    }
    contact.updated_at = state.clock().now();
    let stored = state
        .store()
        .update_contact(principal.access(), &contact)
        .await?;
    if stored.blocked != was_blocked {
        let action = if stored.blocked {
            "contact.block"
        } else {
            "contact.unblock"
        };
        audit::record(&state, Audit::by(&principal, action).target(stored.id)).await;
    }
    if renamed {
        audit::record(
            &state,
            Audit::by(&principal, "contact.update")
                .target(stored.id)
                .detail("fields", "display_name"),
        )
        .await;
    }
    Ok(Json(ContactView::of(&stored, &alias)))
}

/// Deletes a contact; its reverse alias stops working.
#[utoipa::path(
    delete,
    path = "/contacts/{id}",
    tag = "contacts",
    params(("id" = uuid::Uuid, Path, description = "Contact id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_contact(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AliasesWrite)?;
    let id = ContactId::from_uuid(id);
    state.store().delete_contact(principal.access(), id).await?;
    audit::record(&state, Audit::by(&principal, "contact.delete").target(id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_contact, list_contacts))
        .routes(routes!(get_contact, update_contact, delete_contact))
}
