//! `/api/v1/domains`: customer domains, the DNS records they publish and
//! checking them.

pub(crate) mod check;

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::address::DomainName;
use smtpy_core::dkim::{self, SelectorNaming};
use smtpy_core::error::StoreError;
use smtpy_core::ids::{DomainId, MailboxId};
use smtpy_core::model::{ApiScope, DnsCheck, Domain};
use smtpy_core::store::Access;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::{ClientIp, Principal, random_token, throttle};
use crate::page::{PageOf, PageQuery};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem, check_count, check_len};
use crate::state::ApiState;

use check::{RecordCheck, RecordView};

/// Detail of the `409` refusing to verify a domain an administrator
/// disabled.
const DISABLED_BY_ADMIN: &str = "an administrator disabled this domain";

/// Most default mailboxes a domain may have.
const MAX_DEFAULT_MAILBOXES: usize = 10;

fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One stored check result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct CheckView {
    /// `unknown` (not checked, or the lookup failed), `ok`, `missing` or
    /// `wrong`.
    pub status: String,
    /// What was found or what is wrong.
    pub detail: String,
}

impl From<&DnsCheck> for CheckView {
    fn from(c: &DnsCheck) -> CheckView {
        CheckView {
            status: wire(&c.status),
            detail: c.detail.clone(),
        }
    }
}

/// The results of the last DNS check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ChecksView {
    /// MX points at this service.
    pub mx: CheckView,
    /// SPF authorises this service.
    pub spf: CheckView,
    /// Every DKIM key is published.
    pub dkim: CheckView,
    /// A DMARC policy is published.
    pub dmarc: CheckView,
    /// When the checks ran (Unix milliseconds); absent when never.
    pub last_checked_at: Option<i64>,
}

/// A DKIM key (never its private part).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DkimKeyView {
    /// The selector.
    pub selector: String,
    /// `rsa2048` or `ed25519`.
    pub algorithm: String,
    /// `pending`, `active` or `retiring`.
    pub state: String,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
}

/// A domain as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DomainView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The name (Unicode form).
    pub name: String,
    /// The name in A-label (ASCII) form, as in DNS.
    pub ascii_name: String,
    /// Open to every user for aliases (managed by an admin).
    pub shared: bool,
    /// Whether the caller owns (manages) it.
    pub mine: bool,
    /// Ownership proven: the domain takes mail and aliases (unless
    /// `disabled`).
    pub verified: bool,
    /// When ownership was proven (Unix milliseconds).
    pub verified_at: Option<i64>,
    /// Disabled by an administrator: the domain takes no mail, whatever
    /// `verified` says, and its owner can neither re-enable nor re-verify
    /// it.
    pub disabled: bool,
    /// The token of the verification TXT record (owner only; it is public
    /// once published).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_token: Option<String>,
    /// Accept mail to any address of the domain, forwarding to the default
    /// mailboxes.
    pub catch_all: bool,
    /// Default mailboxes (owner only).
    pub default_mailboxes: Vec<String>,
    /// DKIM keys (owner only).
    pub dkim_keys: Vec<DkimKeyView>,
    /// The last DNS check (owner only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<ChecksView>,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last change (Unix milliseconds).
    pub updated_at: i64,
}

impl DomainView {
    pub(crate) fn of(d: &Domain, me: &Principal) -> DomainView {
        let mine = d.owner == me.id();
        DomainView {
            id: d.id.to_string(),
            name: d.name.as_unicode().to_owned(),
            ascii_name: d.name.as_ascii().to_owned(),
            shared: d.shared,
            mine,
            verified: d.verified_at.is_some(),
            verified_at: d.verified_at.map(|t| t.as_unix_millis()),
            disabled: d.disabled,
            verification_token: (mine && !d.verification_token.is_empty())
                .then(|| d.verification_token.clone()),
            catch_all: d.catch_all.enabled,
            default_mailboxes: if mine {
                d.default_mailboxes
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            } else {
                Vec::new()
            },
            dkim_keys: if mine {
                d.dkim_keys
                    .iter()
                    .map(|k| DkimKeyView {
                        selector: k.selector.clone(),
                        algorithm: wire(&k.algorithm),
                        state: wire(&k.state),
                        created_at: k.created_at.as_unix_millis(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            checks: mine.then(|| ChecksView {
                mx: (&d.checks.mx).into(),
                spf: (&d.checks.spf).into(),
                dkim: (&d.checks.dkim).into(),
                dmarc: (&d.checks.dmarc).into(),
                last_checked_at: d.checks.last_checked_at.map(|t| t.as_unix_millis()),
            }),
            created_at: d.created_at.as_unix_millis(),
            updated_at: d.updated_at.as_unix_millis(),
        }
    }
}

/// A domain with the DNS records its owner publishes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DomainDetail {
    /// The domain.
    pub domain: DomainView,
    /// The records to publish (owner only; empty for someone else's shared
    /// domain).
    pub records: Vec<RecordView>,
    /// Remarks, e.g. that no DKIM keys could be made.
    pub notes: Vec<String>,
}

/// The records a domain's owner publishes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordsView {
    /// The records, in the order: verification, MX, SPF, DKIM, DMARC.
    pub records: Vec<RecordView>,
}

/// The outcome of `POST /domains/{id}/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct VerifyView {
    /// The domain after the check.
    pub domain: DomainView,
    /// Whether the domain is verified (now or before).
    pub verified: bool,
    /// One result per record looked up.
    pub results: Vec<RecordCheck>,
}

/// `POST /domains`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDomain {
    /// The domain (Unicode or A-label form), 1 to 253 characters.
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
    /// Open it to every user (admins only; default false).
    #[serde(default)]
    pub shared: bool,
    /// Accept mail to any address (needs `default_mailboxes`; default false).
    #[serde(default)]
    pub catch_all: bool,
    /// Ids of the caller's verified mailboxes that catch-all mail goes to
    /// (at most 10).
    #[serde(default)]
    #[schema(max_items = 10)]
    pub default_mailboxes: Vec<String>,
}

/// `PATCH /domains/{id}`: fields left out stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateDomain {
    /// Accept mail to any address (needs default mailboxes).
    pub catch_all: Option<bool>,
    /// Ids of the caller's verified mailboxes (at most 10; replaces the list).
    #[schema(max_items = 10)]
    pub default_mailboxes: Option<Vec<String>>,
}

/// The caller's own domain `id` (someone else's, shared or not, is 404).
async fn own_domain(state: &ApiState, me: &Principal, id: uuid::Uuid) -> ApiResult<Domain> {
    let d = state
        .store()
        .get_domain(me.access(), DomainId::from_uuid(id))
        .await?;
    if d.owner != me.id() {
        return Err(Problem::not_found("domain"));
    }
    Ok(d)
}

/// Parses and checks default mailbox ids: the caller's own, verified.
async fn default_mailboxes(
    state: &ApiState,
    me: &Principal,
    ids: &[String],
) -> ApiResult<Vec<MailboxId>> {
    check_count("default_mailboxes", ids, MAX_DEFAULT_MAILBOXES)?;
    let mut out = Vec::new();
    for (i, raw) in ids.iter().enumerate() {
        let field = format!("default_mailboxes/{i}");
        check_len(&field, raw, 1, 64)?;
        let id: MailboxId = raw
            .parse()
            .map_err(|_| Problem::invalid(&field, "not a mailbox id"))?;
        let m = match state.store().get_mailbox(me.access(), id).await {
            Ok(m) if m.owner == me.id() => m,
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                return Err(Problem::invalid(&field, "no such mailbox"));
            }
            Err(e) => return Err(e.into()),
        };
        if !m.can_receive() {
            return Err(Problem::invalid(
                &field,
                "the mailbox is not verified or is disabled",
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn check_catch_all(d: &Domain) -> ApiResult<()> {
    if d.catch_all.enabled && d.default_mailboxes.is_empty() {
        return Err(Problem::invalid(
            "catch_all",
            "a catch-all needs at least one default mailbox",
        ));
    }
    Ok(())
}

fn detail(d: &Domain, me: &Principal, state: &ApiState, notes: Vec<String>) -> DomainDetail {
    let records = if d.owner == me.id() {
        check::records(d, state.config())
    } else {
        Vec::new()
    };
    DomainDetail {
        domain: DomainView::of(d, me),
        records,
        notes,
    }
}

/// Adds a domain: returns it with the exact DNS records to publish.
#[utoipa::path(
    post,
    path = "/domains",
    tag = "domains",
    request_body = CreateDomain,
    responses((status = 201, description = "The domain and the records to publish", body = DomainDetail))
)]
pub(crate) async fn create_domain(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiJson(body): ApiJson<CreateDomain>,
) -> ApiResult<(StatusCode, Json<DomainDetail>)> {
    let state = state.0;
    me.require(ApiScope::DomainsWrite)?;
    if body.shared {
        me.require_admin()
            .map_err(|_| Problem::forbidden("only admins may add shared domains"))?;
    }
    check_len("name", &body.name, 1, 253)?;
    let name =
        DomainName::parse(body.name.trim()).map_err(|e| Problem::invalid("name", e.to_string()))?;
    if !name.as_ascii().contains('.') {
        return Err(Problem::invalid(
            "name",
            "must be a registered domain name with at least two labels",
        ));
    }
    let host = state.config().mail_hostname.trim_end_matches('.');
    if name.as_ascii().eq_ignore_ascii_case(host) {
        return Err(Problem::invalid(
            "name",
            "this is the service's own host name",
        ));
    }
    let mailboxes = default_mailboxes(&state, &me, &body.default_mailboxes).await?;
    let taken = || Problem::conflict("this domain is already hosted");
    if state.store().find_domain_by_name(&name).await?.is_some() {
        return Err(taken());
    }
    let now = state.clock().now();
    let mut domain = Domain::new(name, me.id(), random_token(24)?, now);
    domain.shared = body.shared;
    domain.catch_all.enabled = body.catch_all;
    domain.default_mailboxes = mailboxes;
    check_catch_all(&domain)?;
    let mut notes = Vec::new();
    let algorithms = state.config().dkim_algorithms.clone();
    match state.keyring().cloned() {
        Some(keyring) if !algorithms.is_empty() => {
            let mode = state.config().dkim_mode.clone();
            domain = tokio::task::spawn_blocking(move || {
                let naming = SelectorNaming::for_mode(&mode);
                for alg in algorithms {
                    if domain.dkim_keys.iter().any(|k| k.algorithm == alg) {
                        continue;
                    }
                    let key = dkim::new_key(&domain, alg, now, &keyring, &naming)?;
                    domain.dkim_keys.push(key);
                }
                Ok::<Domain, dkim::DkimError>(domain)
            })
            .await
            .map_err(Problem::internal)?
            .map_err(Problem::internal)?;
        }
        Some(_) => notes.push("no DKIM algorithms are configured: the domain has no DKIM keys and mail from it is not signed".to_owned()),
        None => notes.push("no keyring is configured on this server: the domain was created without DKIM keys and mail from it is not signed".to_owned()),
    }
    match state.store().create_domain(&domain).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => return Err(taken()),
        Err(e) => return Err(e.into()),
    }
    audit::record(
        &state,
        Audit::by(&me, "domain.create")
            .target(domain.id)
            .detail("name", domain.name.as_ascii())
            .detail("shared", domain.shared),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(detail(&domain, &me, &state, notes)),
    ))
}

/// The caller's domains and the shared ones (marked `shared`), by id.
#[utoipa::path(
    get,
    path = "/domains",
    tag = "domains",
    params(PageQuery),
    responses((status = 200, description = "One page of domains", body = PageOf<DomainView>))
)]
pub(crate) async fn list_domains(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<PageOf<DomainView>>> {
    me.require(ApiScope::DomainsRead)?;
    let rows = state
        .store()
        .list_domains(me.access(), page.request()?)
        .await?;
    Ok(Json(PageOf::map(rows, |d| DomainView::of(&d, &me))))
}

/// A domain (own, or shared) with its records and the last check results.
#[utoipa::path(
    get,
    path = "/domains/{id}",
    tag = "domains",
    params(("id" = uuid::Uuid, Path, description = "Domain id")),
    responses((status = 200, description = "The domain", body = DomainDetail))
)]
pub(crate) async fn get_domain(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<DomainDetail>> {
    me.require(ApiScope::DomainsRead)?;
    let d = state
        .store()
        .get_domain(me.access(), DomainId::from_uuid(id))
        .await?;
    Ok(Json(detail(&d, &me, &state, Vec::new())))
}

/// The DNS records the owner publishes for a domain.
#[utoipa::path(
    get,
    path = "/domains/{id}/records",
    tag = "domains",
    params(("id" = uuid::Uuid, Path, description = "Domain id")),
    responses((status = 200, description = "The records", body = RecordsView))
)]
async fn get_records(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<RecordsView>> {
    me.require(ApiScope::DomainsRead)?;
    let d = own_domain(&state, &me, id).await?;
    Ok(Json(RecordsView {
        records: check::records(&d, state.config()),
    }))
}

/// Changes the catch-all switch and the default mailboxes.
#[utoipa::path(
    patch,
    path = "/domains/{id}",
    tag = "domains",
    params(("id" = uuid::Uuid, Path, description = "Domain id")),
    request_body = UpdateDomain,
    responses((status = 200, description = "The domain", body = DomainDetail))
)]
pub(crate) async fn update_domain(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<UpdateDomain>,
) -> ApiResult<Json<DomainDetail>> {
    me.require(ApiScope::DomainsWrite)?;
    let mut d = own_domain(&state, &me, id).await?;
    if let Some(ids) = &body.default_mailboxes {
        d.default_mailboxes = default_mailboxes(&state, &me, ids).await?;
    }
    if let Some(on) = body.catch_all {
        d.catch_all.enabled = on;
    }
    check_catch_all(&d)?;
    d.updated_at = state.clock().now();
    let d = state.store().update_domain(me.access(), &d).await?;
    let mut a = Audit::by(&me, "domain.update")
        .target(d.id)
        .detail("catch_all", d.catch_all.enabled);
    if body.default_mailboxes.is_some() {
        a = a.detail("default_mailboxes", d.default_mailboxes.len());
    }
    audit::record(&state, a).await;
    Ok(Json(detail(&d, &me, &state, Vec::new())))
}

/// Deletes a domain; refused with `409` while aliases (live or in the
/// trash) exist on it.
#[utoipa::path(
    delete,
    path = "/domains/{id}",
    tag = "domains",
    params(("id" = uuid::Uuid, Path, description = "Domain id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_domain(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    me.require(ApiScope::DomainsWrite)?;
    let d = own_domain(&state, &me, id).await?;
    match state.store().delete_domain(me.access(), d.id).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(Problem::conflict(
                "the domain still has aliases (live or in the trash); delete and purge them first",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        &state,
        Audit::by(&me, "domain.delete")
            .target(d.id)
            .detail("name", d.name.as_ascii()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Looks every record up in DNS, explains what is wrong, stores the results
/// and marks the domain verified when the verification record is right.
/// Refused with `409` on a domain an administrator disabled.
#[utoipa::path(
    post,
    path = "/domains/{id}/verify",
    tag = "domains",
    params(("id" = uuid::Uuid, Path, description = "Domain id")),
    responses(
        (status = 200, description = "Per-record results", body = VerifyView),
        (status = 409, description = "An administrator disabled this domain")
    )
)]
pub(crate) async fn verify_domain(
    state: axum::extract::State<ApiState>,
    me: Principal,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<VerifyView>> {
    me.require(ApiScope::DomainsWrite)?;
    let d = own_domain(&state, &me, id).await?;
    if d.disabled {
        return Err(Problem::conflict(DISABLED_BY_ADMIN));
    }
    let Some(dns) = state.dns().cloned() else {
        return Err(Problem::unavailable(
            "DNS lookups are not available on this server",
        ));
    };
    let ip_key = ip.map_or_else(|| "unknown".to_owned(), |i| i.to_string());
    throttle(
        &state,
        "verify",
        &ip_key,
        state.config().limits.verify_per_ip,
    )
    .await?;
    let results = check::run(&*dns, &d, state.config()).await;
    let (d, newly) = store_results(&state, me.access(), d, &results).await?;
    audit::record(
        &state,
        Audit::by(&me, "domain.verify")
            .target(d.id)
            .detail("verified", d.verified_at.is_some())
            .detail("newly_verified", newly),
    )
    .await;
    Ok(Json(VerifyView {
        verified: d.verified_at.is_some(),
        domain: DomainView::of(&d, &me),
        results,
    }))
}

/// Applies check results to `d` and stores it, retrying once on a
/// concurrent change. Returns the stored domain and whether it became
/// verified. A disabled domain gets its checks stored but never becomes
/// verified (see [`check::apply`]), also when an administrator disabled it
/// between the read and the write (the retry reads it again).
pub(crate) async fn store_results(
    state: &ApiState,
    access: Access,
    mut d: Domain,
    results: &[RecordCheck],
) -> ApiResult<(Domain, bool)> {
    let now = state.clock().now();
    for attempt in 0..2 {
        let newly = check::apply(&mut d, results, now);
        match state.store().update_domain(access, &d).await {
            Ok(stored) => return Ok((stored, newly)),
            Err(StoreError::Conflict { .. }) if attempt == 0 => {
                d = state.store().get_domain(access, d.id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::conflict("the domain changed meanwhile; retry"))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_domain, list_domains))
        .routes(routes!(get_domain, update_domain, delete_domain))
        .routes(routes!(get_records))
        .routes(routes!(verify_domain))
}
