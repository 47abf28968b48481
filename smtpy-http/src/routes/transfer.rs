//! `/api/v1/export` and `/api/v1/import`: all of a user's data as one JSON
//! document, and back.
//!
//! The document names things by address, not by id (ids differ between
//! installations): aliases name their mailboxes by address, contacts their
//! alias, rules their domain or alias and `forward_to` mailboxes. It never
//! holds a password hash, TOTP secret, API key, session, DKIM private key
//! or verification token.
//!
//! Import creates what is missing and reports one result per item; importing
//! the same document twice creates nothing the second time. It does not
//! create domains (their DNS records and DKIM keys come from
//! `POST /domains`): add the domains first. Mailboxes are created
//! unverified (verify them through the mailboxes API). Aliases on a domain
//! that is neither the caller's nor shared, and reserved local parts, are
//! refused.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::error::StoreError;
use smtpy_core::ids::{AliasId, DomainId, MailboxId, UserId};
use smtpy_core::model::{
    Alias, AliasLimits, AliasMode, ApiScope, Contact, DisabledReply, DmarcQuarantineAction,
    DmarcRejectAction, ForwardingRule, Mailbox, Role, RuleScope, UserSettings,
};
use smtpy_core::rules::MAX_RULES;
use smtpy_core::store::{AliasFilter, DeletedFilter, PageRequest};
use smtpy_core::time::Timestamp;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::problem::{ApiResult, Problem, ProblemType, check_count, check_len};
use crate::routes::rules::{
    ActionDto, ConditionDto, MatchModeDto, action_to_dto, actions_from_dto, check_compiles,
    check_regex_budget, condition_to_dto, conditions_from_dto, mode_from_dto, mode_to_dto,
};
use crate::state::ApiState;

/// The version of the document this API writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Most domains in a document.
pub const MAX_DOMAINS: usize = 1_000;
/// Most mailboxes in a document.
pub const MAX_MAILBOXES: usize = 1_000;
/// Most aliases in a document.
pub const MAX_ALIASES: usize = 50_000;
/// Most contacts in a document.
pub const MAX_CONTACTS: usize = 100_000;
/// Largest `max_message_size` of an imported alias (1 GiB).
pub const MAX_MESSAGE_SIZE: u64 = 1 << 30;
/// Local parts no alias may have (compared case-insensitively): mail to
/// `postmaster` is answered by smtpy itself, never by an alias.
pub const RESERVED_LOCAL_PARTS: &[&str] = &["postmaster"];
/// Local-part prefixes no alias may start with (reverse aliases and bounce
/// addresses, as alias creation refuses them; case-insensitive).
pub const RESERVED_PREFIXES: &[&str] = &["r--", "bounce="];

/// Whether `local` is reserved for smtpy itself.
#[must_use]
pub fn is_reserved_local_part(local: &str) -> bool {
    let lower = local.to_ascii_lowercase();
    RESERVED_LOCAL_PARTS.contains(&lower.as_str())
        || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// The account, without credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountDoc {
    /// Sign-in address.
    #[schema(max_length = 320)]
    pub email: String,
    /// `user` or `admin` (informational; import never changes it).
    #[schema(max_length = 16)]
    pub role: String,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// Mail-handling preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsDoc {
    /// `reject` or `quarantine`.
    #[schema(value_type = String)]
    pub dmarc_reject: DmarcRejectAction,
    /// `quarantine` or `tag_subject`.
    #[schema(value_type = String)]
    pub dmarc_quarantine: DmarcQuarantineAction,
    /// Subject prefix of tagged mail (at most 64 bytes).
    #[schema(max_length = 64)]
    pub subject_tag: String,
    /// Display-name format of rewritten senders.
    #[schema(max_length = 256)]
    pub sender_format: Option<String>,
    /// Forwards per day.
    pub forwards_per_day: Option<u32>,
    /// Replies per day.
    pub replies_per_day: Option<u32>,
    /// Aliases created per hour.
    pub aliases_per_hour: Option<u32>,
    /// Notices on bounces.
    pub notify_bounces: bool,
    /// Notices on quarantine.
    pub notify_quarantine: bool,
}

impl From<&UserSettings> for SettingsDoc {
    fn from(s: &UserSettings) -> SettingsDoc {
        SettingsDoc {
            dmarc_reject: s.dmarc_reject,
            dmarc_quarantine: s.dmarc_quarantine,
            subject_tag: s.subject_tag.clone(),
            sender_format: s.sender_format.clone(),
            forwards_per_day: s.forwards_per_day,
            replies_per_day: s.replies_per_day,
            aliases_per_hour: s.aliases_per_hour,
            notify_bounces: s.notify_bounces,
            notify_quarantine: s.notify_quarantine,
        }
    }
}

impl SettingsDoc {
    fn apply(&self, s: &mut UserSettings) {
        s.dmarc_reject = self.dmarc_reject;
        s.dmarc_quarantine = self.dmarc_quarantine;
        s.subject_tag.clone_from(&self.subject_tag);
        s.sender_format.clone_from(&self.sender_format);
        s.forwards_per_day = self.forwards_per_day;
        s.replies_per_day = self.replies_per_day;
        s.aliases_per_hour = self.aliases_per_hour;
        s.notify_bounces = self.notify_bounces;
        s.notify_quarantine = self.notify_quarantine;
    }
}

/// A domain (no DKIM keys, no verification token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainDoc {
    /// The domain name.
    #[schema(max_length = 253)]
    pub name: String,
    /// Ownership was verified.
    pub verified: bool,
    /// Catch-all enabled.
    pub catch_all: bool,
    /// Catch-all only for local parts matching this pattern.
    #[schema(max_length = 256)]
    pub auto_create_pattern: Option<String>,
    /// Mailboxes (addresses) of catch-all aliases.
    pub default_mailboxes: Vec<String>,
}

/// A mailbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MailboxDoc {
    /// The real address.
    #[schema(max_length = 320)]
    pub address: String,
    /// It was verified (an import creates it unverified anyway).
    pub verified: bool,
    /// Disabled.
    pub disabled: bool,
}

/// An alias.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasDoc {
    /// The alias address.
    #[schema(max_length = 320)]
    pub address: String,
    /// Its mailboxes, by address.
    pub mailboxes: Vec<String>,
    /// Enabled.
    pub enabled: bool,
    /// `alias` or `forward`.
    #[schema(value_type = String)]
    pub mode: AliasMode,
    /// `reject` or `discard`.
    #[schema(value_type = String)]
    pub disabled_reply: DisabledReply,
    /// Note.
    #[schema(max_length = 1000)]
    pub note: Option<String>,
    /// Category.
    #[schema(max_length = 64)]
    pub category: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Expiry (Unix ms).
    pub expires_at: Option<i64>,
    /// Messages per hour.
    pub messages_per_hour: Option<u32>,
    /// Largest message, bytes.
    pub max_message_size: Option<u64>,
    /// Soft-deleted (in the trash); import skips it.
    pub deleted: bool,
    /// Creation time (Unix ms; informational).
    pub created_at: i64,
}

/// A contact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactDoc {
    /// The alias (address) it belongs to.
    #[schema(max_length = 320)]
    pub alias: String,
    /// The outside address.
    #[schema(max_length = 320)]
    pub address: String,
    /// Display name.
    #[schema(max_length = 256)]
    pub display_name: Option<String>,
    /// Blocked.
    pub blocked: bool,
}

/// A rule; `forward_to` actions name mailboxes by address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDoc {
    /// Label.
    #[schema(max_length = 200)]
    pub name: String,
    /// `user`, `domain` or `alias`.
    #[schema(max_length = 16)]
    pub scope: String,
    /// The domain name (`domain` scope) or alias address (`alias` scope).
    #[schema(max_length = 320)]
    pub target: Option<String>,
    /// Priority.
    pub priority: i32,
    /// Enabled.
    pub enabled: bool,
    /// `all` or `any`.
    pub match_mode: MatchModeDto,
    /// Conditions.
    pub conditions: Vec<ConditionDto>,
    /// Actions.
    pub actions: Vec<ActionDto>,
}

/// All of a user's data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportDoc {
    /// Document format version (1).
    pub format_version: u32,
    /// When it was made (Unix ms).
    pub exported_at: i64,
    /// The account.
    pub account: AccountDoc,
    /// Preferences.
    pub settings: SettingsDoc,
    /// The user's own domains.
    pub domains: Vec<DomainDoc>,
    /// Mailboxes.
    pub mailboxes: Vec<MailboxDoc>,
    /// Aliases (soft-deleted ones flagged).
    pub aliases: Vec<AliasDoc>,
    /// Contacts.
    pub contacts: Vec<ContactDoc>,
    /// Rules.
    pub rules: Vec<RuleDoc>,
}

async fn all_pages<T, F, Fut>(mut fetch: F) -> ApiResult<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<smtpy_core::store::Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut req = PageRequest::first(smtpy_core::store::MAX_PAGE_SIZE);
    loop {
        let page = fetch(req).await?;
        out.extend(page.items);
        match page.next {
            Some(c) => req = PageRequest::after(c, smtpy_core::store::MAX_PAGE_SIZE),
            None => return Ok(out),
        }
    }
}

/// Everything of the caller's, as one document.
#[utoipa::path(
    get,
    path = "/export",
    tag = "account",
    responses((status = 200, description = "All of the caller's data", body = ExportDoc))
)]
pub(crate) async fn export(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<ExportDoc>> {
    principal.require(ApiScope::AccountRead)?;
    let store = state.store();
    let me = principal.id();
    let access = principal.access();
    let user = store.get_user(me).await?;
    let mailboxes = store.list_mailboxes(me).await?;
    let mailbox_addr: HashMap<MailboxId, String> = mailboxes
        .iter()
        .map(|m| (m.id, m.address.to_string()))
        .collect();
    let addr_of = |id: &MailboxId| {
        mailbox_addr
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    };
    let domains = all_pages(|r| store.list_domains(access, r)).await?;
    let domain_name: HashMap<DomainId, String> =
        domains.iter().map(|d| (d.id, d.name.to_string())).collect();
    let filter = AliasFilter {
        deleted: DeletedFilter::Any,
        ..AliasFilter::default()
    };
    let aliases = all_pages(|r| store.list_aliases(access, &filter, r)).await?;
    let alias_addr: HashMap<AliasId, String> = aliases
        .iter()
        .map(|a| (a.id, a.address.to_string()))
        .collect();
    let contacts = all_pages(|r| store.list_contacts(access, None, r)).await?;
    let rules = store.list_rules(me).await?;

    let doc = ExportDoc {
        format_version: FORMAT_VERSION,
        exported_at: state.clock().now().as_unix_millis(),
        account: AccountDoc {
            email: user.email.to_string(),
            role: if user.role == Role::Admin {
                "admin"
            } else {
                "user"
            }
            .to_owned(),
            created_at: user.created_at.as_unix_millis(),
        },
        settings: SettingsDoc::from(&user.settings),
        domains: domains
            .iter()
            .filter(|d| d.owner == me)
            .map(|d| DomainDoc {
                name: d.name.to_string(),
                verified: d.verified_at.is_some(),
                catch_all: d.catch_all.enabled,
                auto_create_pattern: d.catch_all.auto_create_pattern.clone(),
                default_mailboxes: d.default_mailboxes.iter().map(addr_of).collect(),
            })
            .collect(),
        mailboxes: mailboxes
            .iter()
            .map(|m| MailboxDoc {
                address: m.address.to_string(),
                verified: m.verified_at.is_some(),
                disabled: m.disabled,
            })
            .collect(),
        aliases: aliases
            .iter()
            .map(|a| AliasDoc {
                address: a.address.to_string(),
                mailboxes: a.mailboxes.iter().map(addr_of).collect(),
                enabled: a.enabled,
                mode: a.mode,
                disabled_reply: a.disabled_reply,
                note: a.note.clone(),
                category: a.category.clone(),
                labels: a.labels.clone(),
                expires_at: a.expires_at.map(|t| t.as_unix_millis()),
                messages_per_hour: a.limits.messages_per_hour,
                max_message_size: a.limits.max_message_size,
                deleted: a.deleted_at.is_some(),
                created_at: a.created_at.as_unix_millis(),
            })
            .collect(),
        contacts: contacts
            .iter()
            .filter_map(|c| {
                Some(ContactDoc {
                    alias: alias_addr.get(&c.alias)?.clone(),
                    address: c.address.to_string(),
                    display_name: c.display_name.clone(),
                    blocked: c.blocked,
                })
            })
            .collect(),
        rules: rules
            .iter()
            .map(|r| {
                let (scope, target) = match r.scope {
                    RuleScope::User => ("user", None),
                    RuleScope::Domain(d) => ("domain", domain_name.get(&d).cloned()),
                    RuleScope::Alias(a) => ("alias", alias_addr.get(&a).cloned()),
                };
                RuleDoc {
                    name: r.name.clone(),
                    scope: scope.to_owned(),
                    target,
                    priority: r.priority,
                    enabled: r.enabled,
                    match_mode: mode_to_dto(r.match_mode),
                    conditions: r.conditions.iter().map(condition_to_dto).collect(),
                    actions: r
                        .actions
                        .iter()
                        .map(|a| action_to_dto(a, &|id| addr_of(&id)))
                        .collect(),
                }
            })
            .collect(),
    };
    audit::record(
        &state,
        Audit::by(&principal, "account.export")
            .detail("aliases", doc.aliases.len())
            .detail("rules", doc.rules.len())
            .detail("contacts", doc.contacts.len()),
    )
    .await;
    Ok(Json(doc))
}

/// The outcome of one item of an import.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ImportItem {
    /// `settings`, `domain`, `mailbox`, `alias`, `contact` or `rule`.
    pub kind: String,
    /// What the item is (address, name).
    pub key: String,
    /// `created`, `exists`, `updated`, `unchanged`, `skipped` or `refused`.
    pub status: String,
    /// Why (for `skipped` and `refused`, and notes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ImportReport {
    /// Items created (and settings updated).
    pub created: u64,
    /// Items already there.
    pub existing: u64,
    /// Items skipped or refused.
    pub refused: u64,
    /// One entry per item, in document order by kind.
    pub items: Vec<ImportItem>,
}

impl ImportReport {
    fn push(&mut self, kind: &str, key: impl Into<String>, status: &str, detail: Option<String>) {
        match status {
            "created" | "updated" => self.created += 1,
            "exists" | "unchanged" => self.existing += 1,
            _ => self.refused += 1,
        }
        self.items.push(ImportItem {
            kind: kind.to_owned(),
            key: key.into(),
            status: status.to_owned(),
            detail,
        });
    }
}

/// The import document, read with [`HttpConfig::import_body_limit`]
/// (crate::HttpConfig::import_body_limit) instead of the general body limit:
/// `413` beyond it, `415` without a JSON content type, `422`/`400` for a
/// document that does not parse.
#[derive(Debug)]
pub(crate) struct ImportJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ImportJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            });
        if !json {
            return Err(Problem::new(
                ProblemType::UnsupportedMediaType,
                "the body must be application/json",
            ));
        }
        let limit = state.config().import_body_limit;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                Problem::new(
                    ProblemType::TooLarge,
                    format!("the import document is larger than {limit} bytes"),
                )
            })?;
        let Json(value) = Json::<T>::from_bytes(&bytes).map_err(Problem::from)?;
        Ok(ImportJson(value))
    }
}

fn check_doc(doc: &ExportDoc) -> ApiResult<()> {
    if doc.format_version != FORMAT_VERSION {
        return Err(Problem::invalid(
            "format_version",
            format!("this server reads format version {FORMAT_VERSION}"),
        ));
    }
    check_count("domains", &doc.domains, MAX_DOMAINS)?;
    check_count("mailboxes", &doc.mailboxes, MAX_MAILBOXES)?;
    check_count("aliases", &doc.aliases, MAX_ALIASES)?;
    check_count("contacts", &doc.contacts, MAX_CONTACTS)?;
    check_count("rules", &doc.rules, MAX_RULES)?;
    check_len("account/email", &doc.account.email, 0, 320)?;
    check_len("account/role", &doc.account.role, 0, 16)?;
    let s = &doc.settings;
    if s.subject_tag.len() > 64 || s.subject_tag.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(Problem::invalid(
            "settings/subject_tag",
            "must be one line of at most 64 bytes",
        ));
    }
    if let Some(f) = &s.sender_format {
        check_len("settings/sender_format", f, 0, 256)?;
    }
    for (i, d) in doc.domains.iter().enumerate() {
        check_len(&format!("domains/{i}/name"), &d.name, 1, 253)?;
        check_count(
            &format!("domains/{i}/default_mailboxes"),
            &d.default_mailboxes,
            32,
        )?;
        if let Some(p) = &d.auto_create_pattern {
            check_len(&format!("domains/{i}/auto_create_pattern"), p, 0, 256)?;
        }
        for m in &d.default_mailboxes {
            check_len(&format!("domains/{i}/default_mailboxes"), m, 1, 320)?;
        }
    }
    for (i, m) in doc.mailboxes.iter().enumerate() {
        check_len(&format!("mailboxes/{i}/address"), &m.address, 1, 320)?;
    }
    for (i, a) in doc.aliases.iter().enumerate() {
        check_len(&format!("aliases/{i}/address"), &a.address, 1, 320)?;
        check_count(&format!("aliases/{i}/mailboxes"), &a.mailboxes, 32)?;
        for m in &a.mailboxes {
            check_len(&format!("aliases/{i}/mailboxes"), m, 1, 320)?;
        }
        if let Some(n) = &a.note {
            check_len(&format!("aliases/{i}/note"), n, 0, 1000)?;
        }
        if let Some(c) = &a.category {
            check_len(&format!("aliases/{i}/category"), c, 0, 64)?;
        }
        check_count(&format!("aliases/{i}/labels"), &a.labels, 32)?;
        if a.max_message_size.is_some_and(|m| m > MAX_MESSAGE_SIZE) {
            return Err(Problem::invalid(
                format!("aliases/{i}/max_message_size"),
                format!("must be at most {MAX_MESSAGE_SIZE} bytes"),
            ));
        }
        for l in &a.labels {
            check_len(&format!("aliases/{i}/labels"), l, 1, 64)?;
        }
    }
    for (i, c) in doc.contacts.iter().enumerate() {
        check_len(&format!("contacts/{i}/alias"), &c.alias, 1, 320)?;
        check_len(&format!("contacts/{i}/address"), &c.address, 1, 320)?;
        if let Some(n) = &c.display_name {
            check_len(&format!("contacts/{i}/display_name"), n, 0, 256)?;
        }
    }
    for (i, r) in doc.rules.iter().enumerate() {
        check_len(&format!("rules/{i}/name"), &r.name, 1, 200)?;
        check_len(&format!("rules/{i}/scope"), &r.scope, 1, 16)?;
        if let Some(t) = &r.target {
            check_len(&format!("rules/{i}/target"), t, 1, 320)?;
        }
    }
    Ok(())
}

/// Why the store refused an item, for the report; other errors (the store
/// failing) end the import.
fn refusal(e: StoreError) -> ApiResult<String> {
    match e {
        StoreError::Invalid { entity, reason } => Ok(format!("{entity}: {reason}")),
        StoreError::NotFound { entity } => Ok(format!("{entity} not found")),
        StoreError::AlreadyExists { entity } => Ok(format!("{entity} already exists")),
        StoreError::Conflict { entity, reason } => Ok(format!("{entity}: {reason}")),
        StoreError::Gone { entity } => Ok(format!("{entity} was deleted for good")),
        other => Err(other.into()),
    }
}

fn key(a: &EmailAddress) -> String {
    a.canonical().to_lowercase()
}

struct Importer<'a> {
    state: &'a ApiState,
    /// Who imports: owners may not lift their own quotas or alias limits.
    principal: &'a Principal,
    me: UserId,
    now: Timestamp,
    report: ImportReport,
    mailboxes: HashMap<String, MailboxId>,
    aliases: HashMap<String, Alias>,
    /// Aliases the document has in the trash (their contacts are skipped).
    trashed: std::collections::HashSet<String>,
}

impl Importer<'_> {
    fn store(&self) -> &dyn smtpy_core::store::Store {
        self.state.store().as_ref()
    }

    async fn settings(&mut self, doc: &SettingsDoc) -> ApiResult<()> {
        let mut user = self.store().get_user(self.me).await?;
        if SettingsDoc::from(&user.settings) == *doc {
            self.report.push("settings", "settings", "unchanged", None);
            return Ok(());
        }
        let before = user.settings.clone();
        doc.apply(&mut user.settings);
        if !self.principal.has(ApiScope::Admin) {
            // Quota overrides are an administrator's decision (PATCH
            // /users/{id}); an owner's document cannot set them.
            user.settings.forwards_per_day = before.forwards_per_day;
            user.settings.replies_per_day = before.replies_per_day;
            user.settings.aliases_per_hour = before.aliases_per_hour;
        }
        if user.settings == before {
            self.report.push("settings", "settings", "unchanged", None);
            return Ok(());
        }
        user.updated_at = self.now;
        self.store().update_user(&user).await?;
        self.report.push("settings", "settings", "updated", None);
        Ok(())
    }

    async fn domain(&mut self, d: &DomainDoc) -> ApiResult<()> {
        let Ok(name) = DomainName::parse(&d.name) else {
            self.report.push(
                "domain",
                &d.name,
                "refused",
                Some("not a domain name".into()),
            );
            return Ok(());
        };
        match self.store().find_domain_by_name(&name).await? {
            Some(found) if found.owner == self.me => {
                self.report.push("domain", &d.name, "exists", None);
            }
            Some(found) if found.shared => self.report.push(
                "domain",
                &d.name,
                "exists",
                Some("a shared domain".into()),
            ),
            Some(_) => self.report.push(
                "domain",
                &d.name,
                "refused",
                Some("the domain belongs to another account".into()),
            ),
            None => self.report.push(
                "domain",
                &d.name,
                "skipped",
                Some("domains are not created by import: add it with POST /domains (DNS records, DKIM keys), then import again".into()),
            ),
        }
        Ok(())
    }

    async fn mailbox(&mut self, m: &MailboxDoc) -> ApiResult<()> {
        let Ok(address) = EmailAddress::parse(&m.address) else {
            self.report.push(
                "mailbox",
                &m.address,
                "refused",
                Some("not an email address".into()),
            );
            return Ok(());
        };
        if self.mailboxes.contains_key(&key(&address)) {
            self.report.push("mailbox", &m.address, "exists", None);
            return Ok(());
        }
        if self
            .store()
            .find_domain_by_name(address.domain())
            .await?
            .is_some()
        {
            self.report.push(
                "mailbox",
                &m.address,
                "refused",
                Some("a mailbox cannot be on a domain this service hosts".into()),
            );
            return Ok(());
        }
        let mut mailbox = Mailbox::new(self.me, address.clone(), self.now);
        mailbox.disabled = m.disabled;
        match self.store().create_mailbox(&mailbox).await {
            Ok(()) => {
                self.mailboxes.insert(key(&address), mailbox.id);
                self.report.push(
                    "mailbox",
                    &m.address,
                    "created",
                    Some("unverified: request its verification through the mailboxes API".into()),
                );
            }
            Err(StoreError::AlreadyExists { .. }) => {
                self.report.push("mailbox", &m.address, "exists", None);
            }
            Err(e) => {
                let why = refusal(e)?;
                self.report
                    .push("mailbox", &m.address, "refused", Some(why));
            }
        }
        Ok(())
    }

    fn mailbox_ids(&self, list: &[String]) -> Result<Vec<MailboxId>, String> {
        list.iter()
            .map(|a| {
                EmailAddress::parse(a)
                    .ok()
                    .and_then(|a| self.mailboxes.get(&key(&a)).copied())
                    .ok_or_else(|| format!("unknown mailbox {a}"))
            })
            .collect()
    }

    async fn alias(&mut self, a: &AliasDoc) -> ApiResult<()> {
        let refuse = |r: &mut ImportReport, why: &str| {
            r.push("alias", &a.address, "refused", Some(why.to_owned()));
        };
        if a.deleted {
            self.report.push(
                "alias",
                &a.address,
                "skipped",
                Some("deleted (in the trash) when exported".into()),
            );
            return Ok(());
        }
        let Ok(address) = EmailAddress::parse(&a.address) else {
            refuse(&mut self.report, "not an email address");
            return Ok(());
        };
        if is_reserved_local_part(address.local_part().as_str()) {
            refuse(&mut self.report, "reserved local part");
            return Ok(());
        }
        if let Some(existing) = self.store().find_alias_by_address(&address).await? {
            if existing.owner == self.me {
                self.aliases.insert(key(&address), existing);
                self.report.push("alias", &a.address, "exists", None);
            } else {
                refuse(&mut self.report, "the address is taken");
            }
            return Ok(());
        }
        let domain = match self.store().find_domain_by_name(address.domain()).await? {
            Some(d) if d.owner == self.me || d.shared => d,
            Some(_) => {
                refuse(&mut self.report, "the domain belongs to another account");
                return Ok(());
            }
            None => {
                refuse(&mut self.report, "unknown domain: add it first");
                return Ok(());
            }
        };
        let mailboxes = match self.mailbox_ids(&a.mailboxes) {
            Ok(m) if !m.is_empty() => m,
            Ok(_) => {
                refuse(&mut self.report, "an alias needs a mailbox");
                return Ok(());
            }
            Err(why) => {
                refuse(&mut self.report, &why);
                return Ok(());
            }
        };
        let messages_per_hour = match crate::routes::aliases::check_rate(
            self.state,
            self.principal,
            a.messages_per_hour,
        ) {
            Ok(n) => n,
            Err(p) => {
                refuse(&mut self.report, &p.detail);
                return Ok(());
            }
        };
        // Imported aliases count against the hourly new-alias quota like
        // created ones; a denied one is reported, and importing the document
        // again later picks it up.
        if let Err(p) = crate::routes::aliases::spend_new_alias(self.state, self.principal).await {
            refuse(&mut self.report, &p.detail);
            return Ok(());
        }
        let mut alias = Alias::new(address.clone(), self.me, domain.id, mailboxes, self.now);
        alias.enabled = a.enabled;
        alias.mode = a.mode;
        alias.disabled_reply = a.disabled_reply;
        alias.note.clone_from(&a.note);
        alias.category.clone_from(&a.category);
        alias.labels.clone_from(&a.labels);
        alias.expires_at = a.expires_at.map(Timestamp::from_unix_millis);
        alias.limits = AliasLimits {
            messages_per_hour,
            max_message_size: a.max_message_size,
        };
        match self.store().create_alias(&alias).await {
            Ok(()) => {
                self.aliases.insert(key(&address), alias);
                self.report.push("alias", &a.address, "created", None);
            }
            Err(StoreError::AlreadyExists { .. }) => {
                refuse(
                    &mut self.report,
                    "the address is taken (possibly in a trash)",
                );
            }
            Err(StoreError::Gone { .. }) => {
                refuse(&mut self.report, "the address was deleted for good");
            }
            Err(e) => refuse(&mut self.report, &refusal(e)?),
        }
        Ok(())
    }

    async fn contact(&mut self, c: &ContactDoc) -> ApiResult<()> {
        let label = format!("{} -> {}", c.alias, c.address);
        let alias = EmailAddress::parse(&c.alias)
            .ok()
            .and_then(|a| self.aliases.get(&key(&a)).cloned());
        let Some(alias) = alias else {
            let trashed =
                EmailAddress::parse(&c.alias).is_ok_and(|a| self.trashed.contains(&key(&a)));
            if trashed {
                self.report.push(
                    "contact",
                    label,
                    "skipped",
                    Some("its alias was deleted (in the trash) when exported".into()),
                );
            } else {
                self.report
                    .push("contact", label, "refused", Some("unknown alias".into()));
            }
            return Ok(());
        };
        let Ok(address) = EmailAddress::parse(&c.address) else {
            self.report.push(
                "contact",
                label,
                "refused",
                Some("not an email address".into()),
            );
            return Ok(());
        };
        if self
            .store()
            .find_contact(alias.id, &address)
            .await?
            .is_some()
        {
            self.report.push("contact", label, "exists", None);
            return Ok(());
        }
        let Some(reverse) = self.state.reverse() else {
            self.report.push(
                "contact",
                label,
                "skipped",
                Some("reverse aliases are not configured on this server".into()),
            );
            return Ok(());
        };
        let token = reverse
            .mint(alias.address.domain())
            .map_err(Problem::internal)?;
        let mut contact = Contact::new(&alias, address, c.display_name.clone(), token, self.now);
        contact.blocked = c.blocked;
        contact.last_seen_at = None;
        match self.store().create_contact(&contact).await {
            Ok(()) => self.report.push("contact", label, "created", None),
            Err(StoreError::AlreadyExists { .. }) => {
                self.report.push("contact", label, "exists", None);
            }
            Err(e) => {
                let why = refusal(e)?;
                self.report.push("contact", label, "refused", Some(why));
            }
        }
        Ok(())
    }

    async fn rule(&mut self, r: &RuleDoc, existing: &mut Vec<ForwardingRule>) -> ApiResult<()> {
        let label = r.name.clone();
        let scope = match (r.scope.as_str(), r.target.as_deref()) {
            ("user", None) => RuleScope::User,
            ("domain", Some(t)) => {
                let found = match DomainName::parse(t) {
                    Ok(n) => self.store().find_domain_by_name(&n).await?,
                    Err(_) => None,
                };
                match found {
                    Some(d) if d.owner == self.me || d.shared => RuleScope::Domain(d.id),
                    _ => {
                        self.report.push(
                            "rule",
                            label,
                            "refused",
                            Some(format!("unknown domain {t}")),
                        );
                        return Ok(());
                    }
                }
            }
            ("alias", Some(t)) => {
                match EmailAddress::parse(t)
                    .ok()
                    .and_then(|a| self.aliases.get(&key(&a)))
                {
                    Some(a) => RuleScope::Alias(a.id),
                    None => {
                        self.report.push(
                            "rule",
                            label,
                            "refused",
                            Some(format!("unknown alias {t}")),
                        );
                        return Ok(());
                    }
                }
            }
            _ => {
                self.report.push(
                    "rule",
                    label,
                    "refused",
                    Some("scope must be user (no target), domain or alias (with a target)".into()),
                );
                return Ok(());
            }
        };
        let built = async {
            let conditions = conditions_from_dto(&r.conditions)?;
            let mailboxes = &self.mailboxes;
            let actions = actions_from_dto(&r.actions, |m| async move {
                EmailAddress::parse(&m)
                    .ok()
                    .and_then(|a| mailboxes.get(&key(&a)).copied())
                    .ok_or_else(|| Problem::invalid("mailboxes", format!("unknown mailbox {m}")))
            })
            .await?;
            let mut rule = ForwardingRule::new(
                self.me,
                scope,
                r.name.clone(),
                r.priority,
                actions,
                self.now,
            );
            rule.enabled = r.enabled;
            rule.match_mode = mode_from_dto(r.match_mode);
            rule.conditions = conditions;
            check_compiles(&rule)?;
            Ok::<_, Problem>(rule)
        }
        .await;
        let rule = match built {
            Ok(rule) => rule,
            Err(p) => {
                self.report.push("rule", label, "refused", Some(p.detail));
                return Ok(());
            }
        };
        let same = existing.iter().any(|e| {
            e.name == rule.name
                && e.scope == rule.scope
                && e.match_mode == rule.match_mode
                && e.conditions == rule.conditions
                && e.actions == rule.actions
        });
        if same {
            self.report.push("rule", label, "exists", None);
            return Ok(());
        }
        if let Err(p) = check_regex_budget(&rule, existing) {
            self.report.push("rule", label, "refused", Some(p.detail));
            return Ok(());
        }
        if existing.len() >= MAX_RULES {
            self.report.push(
                "rule",
                label,
                "refused",
                Some(format!("an account has at most {MAX_RULES} rules")),
            );
            return Ok(());
        }
        match self.store().create_rule(&rule).await {
            Ok(()) => {
                existing.push(rule);
                self.report.push("rule", label, "created", None);
            }
            Err(e) => {
                let why = refusal(e)?;
                self.report.push("rule", label, "refused", Some(why));
            }
        }
        Ok(())
    }
}

/// Imports a document made by `GET /export`: creates what is missing,
/// reports one result per item. Importing it again creates nothing.
#[utoipa::path(
    post,
    path = "/import",
    tag = "account",
    request_body = ExportDoc,
    responses((status = 200, description = "What was created, found or refused", body = ImportReport))
)]
pub(crate) async fn import(
    State(state): State<ApiState>,
    principal: Principal,
    ImportJson(doc): ImportJson<ExportDoc>,
) -> ApiResult<Json<ImportReport>> {
    principal.require(ApiScope::AccountWrite)?;
    check_doc(&doc)?;
    let me = principal.id();
    let store = state.store();
    let mailboxes = store
        .list_mailboxes(me)
        .await?
        .into_iter()
        .map(|m| (key(&m.address), m.id))
        .collect();
    let filter = AliasFilter::default();
    let access = principal.access();
    let aliases = all_pages(|r| store.list_aliases(access, &filter, r))
        .await?
        .into_iter()
        .map(|a| (key(&a.address), a))
        .collect();
    let mut im = Importer {
        state: &state,
        principal: &principal,
        me,
        now: state.clock().now(),
        report: ImportReport {
            created: 0,
            existing: 0,
            refused: 0,
            items: Vec::new(),
        },
        mailboxes,
        aliases,
        trashed: doc
            .aliases
            .iter()
            .filter(|a| a.deleted)
            .filter_map(|a| EmailAddress::parse(&a.address).ok())
            .map(|a| key(&a))
            .collect(),
    };
    im.settings(&doc.settings).await?;
    for d in &doc.domains {
        im.domain(d).await?;
    }
    for m in &doc.mailboxes {
        im.mailbox(m).await?;
    }
    for a in &doc.aliases {
        im.alias(a).await?;
    }
    for c in &doc.contacts {
        im.contact(c).await?;
    }
    let mut rules = store.list_rules(me).await?;
    for r in &doc.rules {
        im.rule(r, &mut rules).await?;
    }
    let report = im.report;
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &report.items {
        if i.status == "created" {
            *counts.entry(i.kind.as_str()).or_default() += 1;
        }
    }
    let mut event = Audit::by(&principal, "account.import")
        .detail("created", report.created)
        .detail("existing", report.existing)
        .detail("refused", report.refused);
    for (kind, n) in counts {
        event = event.detail(&format!("created_{kind}"), n);
    }
    audit::record(&state, event).await;
    Ok(Json(report))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(export))
        .routes(routes!(import))
}
