//! `/api/v1/aliases`: create (custom or generated), list with filters,
//! search and cursor pagination, read, update, soft delete, restore, bulk.

pub(crate) mod bulk;
pub(crate) mod generate;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use smtpy_core::StoreError;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::bounce::BOUNCE_PREFIX;
use smtpy_core::ids::{AliasId, DomainId, MailboxId};
use smtpy_core::limits::LimitPolicy;
use smtpy_core::model::{Alias, AliasCounters, AliasMode, ApiScope, Domain};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::store::{AliasFilter, DeletedFilter, PageRequest};
use smtpy_core::time::Timestamp;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::page::{PageOf, PageQuery, scan};
use crate::problem::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem, check_count, check_len};
use crate::state::ApiState;

use self::generate::Generator;

/// Longest alias address accepted, in characters.
pub(crate) const MAX_ADDRESS_CHARS: usize = 254;
/// Longest note, in characters.
pub(crate) const MAX_NOTE_CHARS: usize = 1000;
/// Longest category, in characters.
pub(crate) const MAX_CATEGORY_CHARS: usize = 64;
/// Most mailboxes one alias forwards to.
pub(crate) const MAX_MAILBOXES: usize = 20;
/// Longest search text, in characters.
pub(crate) const MAX_SEARCH_CHARS: usize = 128;
/// Attempts at a generated address before giving up on collisions.
const GENERATE_ATTEMPTS: usize = 8;

// ---------------------------------------------------------------------------
// DTOs

/// How an alias forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ModeWire {
    /// `From` rewritten to a reverse alias; replies go back through the alias.
    Alias,
    /// `From` kept; the envelope sender is SRS-rewritten.
    Forward,
}

impl ModeWire {
    fn to_core(self) -> AliasMode {
        match self {
            ModeWire::Alias => AliasMode::Alias,
            ModeWire::Forward => AliasMode::Forward,
        }
    }
    fn from_core(mode: AliasMode) -> ModeWire {
        match mode {
            AliasMode::Forward => ModeWire::Forward,
            _ => ModeWire::Alias,
        }
    }
}

/// Activity counters of an alias.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct CountersView {
    /// Messages forwarded.
    pub forwarded: u64,
    /// Messages blocked (disabled, rule, blocked contact).
    pub blocked: u64,
    /// Replies sent through the alias.
    pub replied: u64,
    /// Forwards that bounced.
    pub bounced: u64,
    /// Last time mail went through the alias (Unix milliseconds).
    pub last_used_at: Option<i64>,
}

impl From<&AliasCounters> for CountersView {
    fn from(c: &AliasCounters) -> CountersView {
        CountersView {
            forwarded: c.forwarded,
            blocked: c.blocked,
            replied: c.replied,
            bounced: c.bounced,
            last_used_at: c.last_used_at.map(|t| t.as_unix_millis()),
        }
    }
}

/// An alias as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AliasView {
    /// Identifier.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The alias address.
    pub address: String,
    /// The domain name of the address.
    pub domain: String,
    /// The id of that domain.
    #[schema(value_type = String, format = Uuid)]
    pub domain_id: String,
    /// A disabled alias does not forward.
    pub enabled: bool,
    /// Forwards right now: enabled, not expired, not deleted.
    pub active: bool,
    /// How it forwards.
    pub mode: ModeWire,
    /// Ids of the mailboxes it forwards to.
    pub mailboxes: Vec<String>,
    /// The owner's note.
    pub note: Option<String>,
    /// One category, for filtering.
    pub category: Option<String>,
    /// After this instant the alias behaves as disabled (Unix milliseconds).
    pub expires_at: Option<i64>,
    /// Messages accepted per hour; `null`: the service default.
    pub messages_per_hour: Option<u32>,
    /// Activity counters.
    pub counters: CountersView,
    /// Creation time (Unix milliseconds).
    pub created_at: i64,
    /// Last change by the owner (Unix milliseconds).
    pub updated_at: i64,
    /// Set when soft-deleted (Unix milliseconds); restore to undo.
    pub deleted_at: Option<i64>,
    /// Optimistic-concurrency revision: send it back in `PATCH` to refuse
    /// overwriting a newer change.
    pub revision: u64,
}

impl AliasView {
    /// The view of `a` at `now`.
    pub(crate) fn of(a: &Alias, now: Timestamp) -> AliasView {
        AliasView {
            id: a.id.to_string(),
            address: a.address.to_string(),
            domain: a.address.domain().to_string(),
            domain_id: a.domain.to_string(),
            enabled: a.enabled,
            active: a.is_active(now),
            mode: ModeWire::from_core(a.mode),
            mailboxes: a.mailboxes.iter().map(ToString::to_string).collect(),
            note: a.note.clone(),
            category: a.category.clone(),
            expires_at: a.expires_at.map(|t| t.as_unix_millis()),
            messages_per_hour: a.limits.messages_per_hour,
            counters: CountersView::from(&a.counters),
            created_at: a.created_at.as_unix_millis(),
            updated_at: a.updated_at.as_unix_millis(),
            deleted_at: a.deleted_at.map(|t| t.as_unix_millis()),
            revision: a.revision,
        }
    }
}

/// Which kind of generated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GeneratorWire {
    /// Two or three common words joined with `.` or `_`, then 2–3 digits.
    Words,
    /// 12 random lower-case letters and digits.
    Chars,
    /// A random UUID (version 4).
    Uuid,
}

/// `POST /aliases`: either `address` (custom) or `generator` (with an
/// optional `domain`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAlias {
    /// A custom address on one of your verified domains or a shared domain.
    #[schema(max_length = 254)]
    pub address: Option<String>,
    /// Generate the local part instead.
    pub generator: Option<GeneratorWire>,
    /// With `generator`: the domain (name or id); default your first
    /// verified domain, else the first shared domain.
    #[schema(max_length = 253)]
    pub domain: Option<String>,
    /// Ids of your verified mailboxes (1 to 20); default the domain's
    /// default mailboxes that are yours, else your first verified mailbox.
    #[schema(max_items = 20)]
    pub mailboxes: Option<Vec<String>>,
    /// How it forwards (default `alias`).
    pub mode: Option<ModeWire>,
    /// Free text, at most 1000 characters.
    #[schema(max_length = 1000)]
    pub note: Option<String>,
    /// One category, at most 64 characters.
    #[schema(max_length = 64)]
    pub category: Option<String>,
    /// Expiry (Unix milliseconds, in the future).
    pub expires_at: Option<i64>,
    /// Messages accepted per hour, 1 to the service default (admins: any,
    /// 0 for no limit); absent for the default.
    pub messages_per_hour: Option<u32>,
}

/// `PATCH /aliases/{id}`: absent fields stay; `null` clears `note`,
/// `category`, `expires_at` and `messages_per_hour`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAlias {
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New mailboxes (1 to 20 of your verified mailboxes).
    #[schema(max_items = 20)]
    pub mailboxes: Option<Vec<String>>,
    /// How it forwards.
    pub mode: Option<ModeWire>,
    /// Free text (at most 1000 characters); `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub note: Option<Option<String>>,
    /// Category (at most 64 characters); `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 64)]
    pub category: Option<Option<String>>,
    /// Expiry (Unix milliseconds, in the future); `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<Option<i64>>,
    /// Messages per hour as in creation; `null`: the service default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>)]
    pub messages_per_hour: Option<Option<u32>>,
    /// The revision you read; the change is refused (`409`) if the alias
    /// changed since.
    pub revision: Option<u64>,
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Which aliases a list shows with respect to soft deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeletedWire {
    /// Only live aliases (default).
    #[default]
    Live,
    /// Only soft-deleted aliases (the trash).
    Deleted,
    /// Both.
    Any,
}

/// `GET /aliases` query: pagination, filters and search.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListAliases {
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 64)]
    pub cursor: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) aliases.
    pub enabled: Option<bool>,
    /// Only aliases on this domain (name or id).
    #[param(max_length = 253)]
    pub domain: Option<String>,
    /// Only aliases forwarding to this mailbox (id).
    #[param(max_length = 64)]
    pub mailbox: Option<String>,
    /// Only aliases with exactly this category.
    #[param(max_length = 64)]
    pub category: Option<String>,
    /// Only aliases in this mode.
    #[param(inline)]
    pub mode: Option<ModeWire>,
    /// `live` (default), `deleted` (the trash) or `any`.
    #[param(inline)]
    pub deleted: Option<DeletedWire>,
    /// Case-insensitive substring of the address or the note (at most 128
    /// characters).
    #[param(max_length = 128)]
    pub q: Option<String>,
}

// ---------------------------------------------------------------------------
// Shared checks (also used by bulk and contacts)

/// Parses an alias id from the path (`None`: 404).
pub(crate) fn alias_id(id: uuid::Uuid) -> AliasId {
    AliasId::from_uuid(id)
}

/// Checks a text's length and refuses control characters (they could
/// inject headers where the text ends up in mail); `multiline` allows line
/// feeds and tabs.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> ApiResult<()> {
    check_len(field, value, min, max)?;
    let bad = |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\t'));
    if value.chars().any(bad) {
        return Err(Problem::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Whether `local` is reserved for smtpy's own addresses: reverse aliases
/// (`r--`) and bounce addresses (`bounce=`), case-insensitively.
#[must_use]
pub(crate) fn is_reserved_local_part(local: &str) -> bool {
    ReverseAliases::looks_like(local)
        || local
            .as_bytes()
            .get(..BOUNCE_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(BOUNCE_PREFIX.as_bytes()))
}

/// The owner's mailbox ids from the wire: each must be one of the caller's
/// verified, enabled mailboxes (`422` naming `field/i` otherwise);
/// duplicates are dropped.
pub(crate) async fn resolve_mailboxes(
    state: &ApiState,
    principal: &Principal,
    field: &str,
    ids: &[String],
) -> ApiResult<Vec<MailboxId>> {
    if ids.is_empty() {
        return Err(Problem::invalid(field, "must name at least one mailbox"));
    }
    check_count(field, ids, MAX_MAILBOXES)?;
    let mut out: Vec<MailboxId> = Vec::with_capacity(ids.len());
    for (i, raw) in ids.iter().enumerate() {
        let f = format!("{field}/{i}");
        check_len(&f, raw, 1, 64)?;
        let id: MailboxId = raw
            .parse()
            .map_err(|_| Problem::invalid(&f, "not a mailbox id"))?;
        let mailbox = match state.store().get_mailbox(principal.access(), id).await {
            Ok(m) => m,
            Err(StoreError::NotFound { .. }) => {
                return Err(Problem::invalid(&f, "no such mailbox"));
            }
            Err(e) => return Err(e.into()),
        };
        if mailbox.verified_at.is_none() {
            return Err(Problem::invalid(&f, "the mailbox is not verified"));
        }
        if mailbox.disabled {
            return Err(Problem::invalid(&f, "the mailbox is disabled"));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The caller may put aliases on `d`: their own verified domain, or a
/// shared one — never one an administrator disabled.
pub(crate) fn usable(principal: &Principal, d: &Domain) -> bool {
    !d.disabled && (d.shared || (d.owner == principal.id() && d.verified_at.is_some()))
}

/// The domain named by `name_or_id` if the caller may use it (`422` on
/// `field` otherwise; a domain of someone else looks like a missing one).
async fn usable_domain(
    state: &ApiState,
    principal: &Principal,
    field: &str,
    name_or_id: &str,
) -> ApiResult<Domain> {
    let refuse = || Problem::invalid(field, "not one of your verified domains or a shared domain");
    let found = match name_or_id.parse::<DomainId>() {
        Ok(id) => match state.store().get_domain(principal.access(), id).await {
            Ok(d) => Some(d),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => {
            let name = DomainName::parse(name_or_id).map_err(|_| refuse())?;
            state.store().find_domain_by_name(&name).await?
        }
    };
    found.filter(|d| usable(principal, d)).ok_or_else(refuse)
}

/// The default domain of generated aliases: the caller's first verified
/// domain, else the first shared one.
async fn default_domain(state: &ApiState, principal: &Principal) -> ApiResult<Domain> {
    let mut own = None;
    let mut shared = None;
    let mut page = PageRequest::first(500);
    loop {
        let p = state.store().list_domains(principal.access(), page).await?;
        for d in p.items {
            if d.disabled {
                continue;
            }
            if d.owner == principal.id() && d.verified_at.is_some() && own.is_none() {
                own = Some(d);
            } else if d.shared && shared.is_none() {
                shared = Some(d);
            }
        }
        match p.next {
            Some(c) if own.is_none() => page = PageRequest::after(c, 500),
            _ => break,
        }
    }
    own.or(shared).ok_or_else(|| {
        Problem::invalid(
            "domain",
            "you have no verified domain and there is no shared domain",
        )
    })
}

/// Mailboxes for a new alias on `domain` when none are given: the
/// domain's default mailboxes that are the caller's and can receive, else
/// the caller's first verified mailbox.
async fn default_mailboxes(
    state: &ApiState,
    principal: &Principal,
    domain: &Domain,
) -> ApiResult<Vec<MailboxId>> {
    let mine = state.store().list_mailboxes(principal.id()).await?;
    let defaults: Vec<MailboxId> = domain
        .default_mailboxes
        .iter()
        .filter(|id| mine.iter().any(|m| m.id == **id && m.can_receive()))
        .copied()
        .collect();
    if !defaults.is_empty() {
        return Ok(defaults);
    }
    mine.iter()
        .find(|m| m.can_receive())
        .map(|m| vec![m.id])
        .ok_or_else(|| Problem::invalid("mailboxes", "you have no verified mailbox"))
}

/// Checks a `messages_per_hour` value: owners may set `1..=` the service
/// default (any positive value when the default is unlimited); admins
/// acting with the `admin` scope any value, `0` meaning no limit.
pub(crate) fn check_rate(
    state: &ApiState,
    principal: &Principal,
    value: Option<u32>,
) -> ApiResult<Option<u32>> {
    let Some(n) = value else {
        return Ok(None);
    };
    if principal.has(ApiScope::Admin) {
        return Ok(Some(n));
    }
    let default = state.limits().map_or_else(
        || LimitPolicy::default().alias_messages_per_hour,
        |l| l.policy().alias_messages_per_hour,
    );
    if n == 0 {
        return Err(Problem::invalid(
            "messages_per_hour",
            "must be at least 1 (only administrators may lift the limit)",
        ));
    }
    if default != 0 && n > default {
        return Err(Problem::invalid(
            "messages_per_hour",
            format!("must be at most {default}"),
        ));
    }
    Ok(Some(n))
}

/// Checks an expiry: in the future.
fn check_expiry(state: &ApiState, value: Option<i64>) -> ApiResult<Option<Timestamp>> {
    let Some(ms) = value else {
        return Ok(None);
    };
    let at = Timestamp::from_unix_millis(ms);
    if at <= state.clock().now() {
        return Err(Problem::invalid("expires_at", "must be in the future"));
    }
    Ok(Some(at))
}

/// Normalises an optional free-text field: trimmed, empty → none.
fn text_field(
    field: &str,
    value: Option<String>,
    max: usize,
    multiline: bool,
) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            check_text(field, &v, 0, max, multiline)?;
            let t = v.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
    }
}

/// Spends one unit of the caller's new-alias quota, if limits are set.
pub(crate) async fn spend_new_alias(state: &ApiState, principal: &Principal) -> ApiResult<()> {
    let Some(limits) = state.limits() else {
        return Ok(());
    };
    match limits.user_new_alias(&principal.user).await {
        Ok(()) => Ok(()),
        Err(denial) if denial.reply.code == 451 => Err(Problem::unavailable(
            "the rate limiter is unavailable; retry later",
        )),
        Err(denial) => {
            state.metrics().inc(
                smtpy_core::metrics::RATE_LIMIT_DENIALS,
                &[("scope", "alias_create")],
            );
            Err(Problem::rate_limited(denial.retry_after))
        }
    }
}

// ---------------------------------------------------------------------------
// Handlers

/// Creates an alias: a custom address, or a generated one.
#[utoipa::path(
    post,
    path = "/aliases",
    tag = "aliases",
    request_body = CreateAlias,
    responses((status = 201, description = "The new alias", body = AliasView))
)]
pub(crate) async fn create_alias(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateAlias>,
) -> ApiResult<(StatusCode, Json<AliasView>)> {
    principal.require(ApiScope::AliasesWrite)?;
    let note = text_field("note", body.note, MAX_NOTE_CHARS, true)?;
    let category = text_field("category", body.category, MAX_CATEGORY_CHARS, false)?;
    let expires_at = check_expiry(&state, body.expires_at)?;
    let messages_per_hour = check_rate(&state, &principal, body.messages_per_hour)?;
    if let Some(m) = &body.mailboxes {
        check_count("mailboxes", m, MAX_MAILBOXES)?;
    }

    // Where: a custom address, or a domain for a generated one.
    let (custom, domain) = match (&body.address, body.generator) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "generator",
                "give either an address or a generator, not both",
            ));
        }
        (None, None) => {
            return Err(Problem::invalid(
                "address",
                "give an address or a generator",
            ));
        }
        (Some(raw), None) => {
            if body.domain.is_some() {
                return Err(Problem::invalid(
                    "domain",
                    "only with a generator (a custom address names its domain)",
                ));
            }
            check_len("address", raw, 3, MAX_ADDRESS_CHARS)?;
            let address = EmailAddress::parse(raw.trim())
                .map_err(|e| Problem::invalid("address", format!("not an address: {e}")))?;
            let local = address.local_part();
            if local.is_quoted() || !local.is_ascii() {
                return Err(Problem::invalid(
                    "address",
                    "the local part must be plain ASCII without quotes",
                ));
            }
            if is_reserved_local_part(local.as_str()) {
                return Err(Problem::invalid(
                    "address",
                    "local parts starting with r-- or bounce= are reserved",
                ));
            }
            let domain =
                usable_domain(&state, &principal, "address", address.domain().as_ascii()).await?;
            (Some(address), domain)
        }
        (None, Some(_)) => {
            let domain = match &body.domain {
                Some(d) => {
                    check_len("domain", d, 1, 253)?;
                    usable_domain(&state, &principal, "domain", d.trim()).await?
                }
                None => default_domain(&state, &principal).await?,
            };
            (None, domain)
        }
    };

    let mailboxes = match &body.mailboxes {
        Some(ids) => resolve_mailboxes(&state, &principal, "mailboxes", ids).await?,
        None => default_mailboxes(&state, &principal, &domain).await?,
    };

    // Cheap checks first, so that the usual refusals of a custom address
    // do not spend the caller's quota (the store checks again atomically).
    if let Some(address) = &custom {
        if state.store().is_tombstoned(address).await? {
            return Err(StoreError::Gone { entity: "alias" }.into());
        }
        if state
            .store()
            .find_alias_by_address(address)
            .await?
            .is_some()
        {
            return Err(StoreError::AlreadyExists { entity: "alias" }.into());
        }
    }
    spend_new_alias(&state, &principal).await?;

    let now = state.clock().now();
    let build = |address: EmailAddress| {
        let mut a = Alias::new(address, principal.id(), domain.id, mailboxes.clone(), now);
        a.mode = body.mode.map_or(AliasMode::Alias, ModeWire::to_core);
        a.note.clone_from(&note);
        a.category.clone_from(&category);
        a.expires_at = expires_at;
        a.limits.messages_per_hour = messages_per_hour;
        a
    };
    let alias = if let Some(address) = custom {
        let alias = build(address);
        state.store().create_alias(&alias).await?;
        alias
    } else {
        let generator = match body.generator {
            Some(GeneratorWire::Chars) => Generator::Chars,
            Some(GeneratorWire::Uuid) => Generator::Uuid,
            _ => Generator::Words,
        };
        let mut made = None;
        for _ in 0..GENERATE_ATTEMPTS {
            let local = generate::local_part(generator)
                .map_err(|_| Problem::internal("system random number generator failed"))?;
            let address = EmailAddress::parse(&format!("{local}@{}", domain.name.as_ascii()))
                .map_err(|_| Problem::invalid("domain", "too long for a generated address"))?;
            let alias = build(address);
            match state.store().create_alias(&alias).await {
                Ok(()) => {
                    made = Some(alias);
                    break;
                }
                Err(StoreError::AlreadyExists { .. } | StoreError::Gone { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        made.ok_or_else(|| Problem::conflict("could not find a free generated address; try again"))?
    };

    audit::record(
        &state,
        Audit::by(&principal, "alias.create")
            .target(alias.id)
            .detail("address", &alias.address),
    )
    .await;
    Ok((StatusCode::CREATED, Json(AliasView::of(&alias, now))))
}

/// Whether `a` passes the filters the store does not apply.
struct ExtraFilter {
    mailbox: Option<MailboxId>,
    mode: Option<AliasMode>,
}

impl ExtraFilter {
    fn is_empty(&self) -> bool {
        self.mailbox.is_none() && self.mode.is_none()
    }
    fn matches(&self, a: &Alias) -> bool {
        self.mailbox.is_none_or(|m| a.mailboxes.contains(&m))
            && self.mode.is_none_or(|m| a.mode == m)
    }
}

/// Lists the caller's aliases, oldest first, with filters and search.
///
/// `enabled`, `domain`, `category`, `deleted` and `q` are applied by the
/// store; `mailbox` and `mode` by the handler, which keeps reading store
/// pages until the page is full (or 5000 rows were scanned: then the page
/// may be short, even empty, and `next_cursor` continues after the last
/// row scanned). Either way the cursor is the id of the last row shown or
/// scanned, so paging never skips or repeats a row.
#[utoipa::path(
    get,
    path = "/aliases",
    tag = "aliases",
    params(ListAliases),
    responses((status = 200, description = "One page of aliases", body = PageOf<AliasView>))
)]
pub(crate) async fn list_aliases(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListAliases>,
) -> ApiResult<Json<PageOf<AliasView>>> {
    principal.require(ApiScope::AliasesRead)?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .request()?;
    let mut filter = AliasFilter {
        enabled: q.enabled,
        deleted: match q.deleted.unwrap_or_default() {
            DeletedWire::Live => DeletedFilter::Live,
            DeletedWire::Deleted => DeletedFilter::Deleted,
            DeletedWire::Any => DeletedFilter::Any,
        },
        ..AliasFilter::default()
    };
    let empty = || {
        Ok(Json(PageOf {
            items: Vec::new(),
            next_cursor: None,
        }))
    };
    if let Some(d) = &q.domain {
        check_len("domain", d, 1, 253)?;
        let found = match d.parse::<DomainId>() {
            Ok(id) => Some(id),
            Err(_) => match DomainName::parse(d) {
                Ok(name) => state
                    .store()
                    .find_domain_by_name(&name)
                    .await?
                    .map(|dom| dom.id),
                Err(_) => return Err(Problem::invalid("domain", "not a domain name or id")),
            },
        };
        match found {
            Some(id) => filter.domain = Some(id),
            // No such domain: no alias is on it.
            None => return empty(),
        }
    }
    if let Some(c) = &q.category {
        check_text("category", c, 1, MAX_CATEGORY_CHARS, false)?;
        filter.category = Some(c.clone());
    }
    if let Some(text) = &q.q {
        check_text("q", text, 1, MAX_SEARCH_CHARS, false)?;
        filter.text = Some(text.clone());
    }
    let extra = ExtraFilter {
        mailbox: match &q.mailbox {
            None => None,
            Some(m) => {
                check_len("mailbox", m, 1, 64)?;
                Some(
                    m.parse::<MailboxId>()
                        .map_err(|_| Problem::invalid("mailbox", "not a mailbox id"))?,
                )
            }
        },
        mode: q.mode.map(ModeWire::to_core),
    };
    let now = state.clock().now();
    let store = state.store();
    if extra.is_empty() {
        let p = store
            .list_aliases(principal.access(), &filter, page)
            .await?;
        return Ok(Json(PageOf::map(p, |a| AliasView::of(&a, now))));
    }

    // Handler-side filters: the shared scanner reads store pages until the
    // page is full or its budget is spent.
    let access = principal.access();
    let p = scan(
        page,
        |req| {
            let filter = filter.clone();
            async move { Ok(store.list_aliases(access, &filter, req).await?) }
        },
        |a: &Alias| extra.matches(a),
        |a| *a.id.as_uuid(),
    )
    .await?;
    Ok(Json(PageOf::map(p, |a| AliasView::of(&a, now))))
}

/// One of the caller's aliases (soft-deleted ones included).
#[utoipa::path(
    get,
    path = "/aliases/{id}",
    tag = "aliases",
    params(("id" = uuid::Uuid, Path, description = "Alias id")),
    responses((status = 200, description = "The alias", body = AliasView))
)]
pub(crate) async fn get_alias(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<AliasView>> {
    principal.require(ApiScope::AliasesRead)?;
    let a = state
        .store()
        .get_alias(principal.access(), alias_id(id))
        .await?;
    Ok(Json(AliasView::of(&a, state.clock().now())))
}

/// Changes an alias. Absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/aliases/{id}",
    tag = "aliases",
    params(("id" = uuid::Uuid, Path, description = "Alias id")),
    request_body = UpdateAlias,
    responses((status = 200, description = "The changed alias", body = AliasView))
)]
pub(crate) async fn update_alias(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<UpdateAlias>,
) -> ApiResult<Json<AliasView>> {
    principal.require(ApiScope::AliasesWrite)?;
    let mut alias = state
        .store()
        .get_alias(principal.access(), alias_id(id))
        .await?;
    if let Some(rev) = body.revision
        && rev != alias.revision
    {
        return Err(Problem::conflict(
            "alias: changed since you read it (revision mismatch)",
        ));
    }
    if alias.deleted_at.is_some() {
        return Err(Problem::conflict("alias: deleted; restore it first"));
    }
    let mut changed: Vec<&str> = Vec::new();
    if let Some(e) = body.enabled {
        alias.enabled = e;
        changed.push("enabled");
    }
    if let Some(ids) = &body.mailboxes {
        alias.mailboxes = resolve_mailboxes(&state, &principal, "mailboxes", ids).await?;
        changed.push("mailboxes");
    }
    if let Some(m) = body.mode {
        alias.mode = m.to_core();
        changed.push("mode");
    }
    if let Some(n) = body.note {
        alias.note = text_field("note", n, MAX_NOTE_CHARS, true)?;
        changed.push("note");
    }
    if let Some(c) = body.category {
        alias.category = text_field("category", c, MAX_CATEGORY_CHARS, false)?;
        changed.push("category");
    }
    if let Some(e) = body.expires_at {
        alias.expires_at = check_expiry(&state, e)?;
        changed.push("expires_at");
    }
    if let Some(r) = body.messages_per_hour {
        alias.limits.messages_per_hour = check_rate(&state, &principal, r)?;
        changed.push("messages_per_hour");
    }
    let now = state.clock().now();
    if changed.is_empty() {
        return Ok(Json(AliasView::of(&alias, now)));
    }
    alias.updated_at = now;
    let stored = state
        .store()
        .update_alias(principal.access(), &alias)
        .await?;
    audit::record(
        &state,
        Audit::by(&principal, "alias.update")
            .target(stored.id)
            .detail("fields", changed.join(",")),
    )
    .await;
    Ok(Json(AliasView::of(&stored, now)))
}

/// Soft-deletes an alias: it stops taking mail at once and can be
/// restored until it is purged.
#[utoipa::path(
    delete,
    path = "/aliases/{id}",
    tag = "aliases",
    params(("id" = uuid::Uuid, Path, description = "Alias id")),
    responses((status = 204, description = "Deleted (soft)"))
)]
pub(crate) async fn delete_alias(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AliasesWrite)?;
    let id = alias_id(id);
    state
        .store()
        .delete_alias(principal.access(), id, state.clock().now())
        .await?;
    audit::record(&state, Audit::by(&principal, "alias.delete").target(id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Undoes a soft delete (a live alias is returned unchanged).
#[utoipa::path(
    post,
    path = "/aliases/{id}/restore",
    tag = "aliases",
    params(("id" = uuid::Uuid, Path, description = "Alias id")),
    responses((status = 200, description = "The restored alias", body = AliasView))
)]
pub(crate) async fn restore_alias(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<AliasView>> {
    principal.require(ApiScope::AliasesWrite)?;
    let id = alias_id(id);
    let store = state.store();
    store.restore_alias(principal.access(), id).await?;
    let a = store.get_alias(principal.access(), id).await?;
    audit::record(&state, Audit::by(&principal, "alias.restore").target(id)).await;
    Ok(Json(AliasView::of(&a, state.clock().now())))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_alias, list_aliases))
        .routes(routes!(get_alias, update_alias, delete_alias))
        .routes(routes!(restore_alias))
        .routes(routes!(bulk::bulk_aliases))
}
