//! Pages: the alias list (search, filters, cursor pages, creation, bulk
//! actions, in-place enable/disable, restore) and the alias page
//! ([`detail`]: settings, contacts, rules, usage chart, delivery events).
//!
//! Every change goes through the API's own handlers in
//! [`crate::routes::aliases`] and [`crate::routes::contacts`], so the
//! validation, owner scoping, quota and audit are the API's; a failure is
//! shown as the API's problem next to the form.

mod chart;
mod detail;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use smtpy_core::model::{Domain, Mailbox};
use smtpy_core::store::PageRequest;

use crate::auth::Principal;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::routes::aliases::bulk::{BulkActionWire, BulkRequest, BulkStatus, bulk_aliases};
use crate::routes::aliases::{
    self as api, AliasView, CreateAlias, DeletedWire, GeneratorWire, ListAliases, ModeWire,
    UpdateAlias,
};
use crate::state::ApiState;

use super::csrf::{FormPairs, WebForm, form_pairs};
use super::render::{
    Chrome, Flash, FormErrors, WebError, page_with_status, problem_text, redirect_with,
    safe_local_path, status_of, wants_json,
};
use super::session::WebUser;
use super::text::{date_of, link, path_id};

/// Rows per list page unless the query says otherwise.
const PAGE_ROWS: u32 = 50;

// ---------------------------------------------------------------------------
// Shared helpers (also used by the alias page)

/// The words for an alias's mode.
pub(crate) fn mode_name(mode: ModeWire) -> &'static str {
    match mode {
        ModeWire::Alias => "alias",
        ModeWire::Forward => "forward",
    }
}

/// The owner's mailboxes (for pickers and names).
pub(crate) async fn owner_mailboxes(
    state: &ApiState,
    principal: &Principal,
) -> Result<Vec<Mailbox>, Problem> {
    Ok(state.store().list_mailboxes(principal.id()).await?)
}

/// The domains the caller may put aliases on (the API's rule: their own
/// verified domains and shared ones, never a disabled one), own first.
pub(crate) async fn usable_domains(
    state: &ApiState,
    principal: &Principal,
) -> Result<Vec<Domain>, Problem> {
    let mut out: Vec<Domain> = Vec::new();
    let mut page = PageRequest::first(500);
    for _ in 0..20 {
        let p = state.store().list_domains(principal.access(), page).await?;
        out.extend(p.items.into_iter().filter(|d| api::usable(principal, d)));
        match p.next {
            Some(c) => page = PageRequest::after(c, 500),
            None => break,
        }
    }
    out.sort_by_key(|d| (d.shared, d.name.to_string()));
    Ok(out)
}

/// Mailbox addresses of `ids` ("(removed)" for an unknown id).
pub(crate) fn mailbox_names(ids: &[String], mailboxes: &[Mailbox]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            mailboxes
                .iter()
                .find(|m| m.id.to_string() == *id)
                .map_or_else(|| "(removed mailbox)".to_owned(), |m| m.address.to_string())
        })
        .collect()
}

/// `back` from a form when it is a page of the alias list, else the list.
fn back_to(back: Option<&str>) -> String {
    back.filter(|b| safe_local_path(b) && b.starts_with("/app/aliases"))
        .unwrap_or("/app/aliases")
        .to_owned()
}

/// A JSON answer for the in-place forms of `app.js`.
fn json_answer(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, axum::Json(body.clone())).into_response()
}

/// A failed one-button action: JSON for `app.js`, else back with a flash.
fn action_failed(headers: &HeaderMap, back: &str, problem: &Problem) -> Response {
    if wants_json(headers) {
        return json_answer(
            status_of(problem),
            &serde_json::json!({"ok": false, "message": problem_text(problem)}),
        );
    }
    redirect_with(back, Flash::error(problem_text(problem)))
}

// ---------------------------------------------------------------------------
// The list

/// The list's query, as typed (empty values are "any").
#[derive(Debug, Clone, Default)]
struct Filters {
    q: String,
    enabled: String,
    domain: String,
    category: String,
    mode: String,
    mailbox: String,
    deleted: String,
    cursor: String,
    limit: String,
}

impl Filters {
    fn parse(raw: Option<&str>) -> Filters {
        let mut f = Filters::default();
        for (k, v) in form_pairs(raw.unwrap_or("").as_bytes()) {
            let slot = match k.as_str() {
                "q" => &mut f.q,
                "enabled" => &mut f.enabled,
                "domain" => &mut f.domain,
                "category" => &mut f.category,
                "mode" => &mut f.mode,
                "mailbox" => &mut f.mailbox,
                "deleted" => &mut f.deleted,
                "cursor" => &mut f.cursor,
                "limit" => &mut f.limit,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = v.trim().to_owned();
            }
        }
        f
    }

    fn deleted_view(&self) -> bool {
        self.deleted == "deleted"
    }

    fn to_api(&self) -> Result<ListAliases, Problem> {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(ListAliases {
            limit: match self.limit.as_str() {
                "" => Some(PAGE_ROWS),
                n => Some(
                    n.parse()
                        .map_err(|_| Problem::invalid("limit", "must be a number"))?,
                ),
            },
            cursor: opt(&self.cursor),
            enabled: match self.enabled.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            domain: opt(&self.domain),
            mailbox: opt(&self.mailbox),
            category: opt(&self.category),
            mode: match self.mode.as_str() {
                "alias" => Some(ModeWire::Alias),
                "forward" => Some(ModeWire::Forward),
                _ => None,
            },
            deleted: match self.deleted.as_str() {
                "deleted" => Some(DeletedWire::Deleted),
                "any" => Some(DeletedWire::Any),
                _ => None,
            },
            q: opt(&self.q),
        })
    }

    /// The list's URL with these filters and `cursor`.
    fn url(&self, cursor: Option<&str>) -> String {
        link(
            "/app/aliases",
            &[
                ("q", &self.q),
                ("enabled", &self.enabled),
                ("domain", &self.domain),
                ("category", &self.category),
                ("mode", &self.mode),
                ("mailbox", &self.mailbox),
                ("deleted", &self.deleted),
                ("limit", &self.limit),
                ("cursor", cursor.unwrap_or("")),
            ],
        )
    }
}

/// One row of the list.
struct Row {
    id: String,
    address: String,
    note: String,
    category: String,
    mailboxes: String,
    mode: &'static str,
    enabled: bool,
    expired: bool,
    deleted: bool,
    created: String,
}

impl Row {
    fn state(&self) -> &'static str {
        if self.deleted {
            "deleted"
        } else if self.enabled {
            "enabled"
        } else {
            "disabled"
        }
    }
}

/// An option of a select.
struct Choice {
    value: String,
    label: String,
}

/// What the creation forms were sent with (shown again on failure).
#[derive(Debug, Clone, Default, Deserialize)]
struct CreateForm {
    address: Option<String>,
    generator: Option<String>,
    domain: Option<String>,
    note: Option<String>,
    category: Option<String>,
}

impl CreateForm {
    fn generated(&self) -> bool {
        self.generator.is_some()
    }
    fn value(v: Option<&String>) -> &str {
        v.map_or("", String::as_str)
    }
}

#[derive(Template)]
#[template(path = "web/aliases/list.html")]
struct ListPage {
    chrome: Chrome,
    filters: Filters,
    /// The list's own URL (forms come back here).
    back: String,
    rows: Vec<Row>,
    list_error: Option<String>,
    next_url: Option<String>,
    first_url: Option<String>,
    domains: Vec<Choice>,
    mailboxes: Vec<Choice>,
    create: CreateForm,
    /// The errors of the creation form.
    errors: FormErrors,
}

impl ListPage {
    fn c_address(&self) -> &str {
        if self.create.generated() {
            ""
        } else {
            CreateForm::value(self.create.address.as_ref())
        }
    }
    fn c_note(&self, generated: bool) -> &str {
        if self.create.generated() == generated {
            CreateForm::value(self.create.note.as_ref())
        } else {
            ""
        }
    }
    fn c_category(&self, generated: bool) -> &str {
        if self.create.generated() == generated {
            CreateForm::value(self.create.category.as_ref())
        } else {
            ""
        }
    }
    fn c_field(&self, generated: bool, name: &str) -> &str {
        if self.create.generated() == generated {
            self.errors.field(name)
        } else {
            ""
        }
    }
    fn c_generator(&self) -> &str {
        CreateForm::value(self.create.generator.as_ref())
    }
    fn c_domain(&self) -> &str {
        CreateForm::value(self.create.domain.as_ref())
    }
}

async fn render_list(
    state: &ApiState,
    user: &WebUser,
    filters: Filters,
    create: CreateForm,
    errors: FormErrors,
    status: StatusCode,
) -> Result<Response, WebError> {
    let chrome = user.chrome("aliases", "Aliases");
    let principal = &user.principal;
    let mailboxes = owner_mailboxes(state, principal)
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;
    let domains = usable_domains(state, principal)
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;

    let listed = match filters.to_api() {
        Ok(q) => api::list_aliases(State(state.clone()), principal.clone(), ApiQuery(q))
            .await
            .map(|j| j.0),
        Err(p) => Err(p),
    };
    let (rows, next, list_error, status) = match listed {
        Ok(page) => {
            let rows = page
                .items
                .iter()
                .map(|a| row_of(a, &mailboxes))
                .collect::<Vec<_>>();
            (rows, page.next_cursor, None, status)
        }
        Err(p) => {
            let s = if status.is_success() {
                status_of(&p)
            } else {
                status
            };
            (Vec::new(), None, Some(problem_text(&p)), s)
        }
    };
    let page = ListPage {
        back: filters.url((!filters.cursor.is_empty()).then_some(filters.cursor.as_str())),
        next_url: next.as_deref().map(|c| filters.url(Some(c))),
        first_url: (!filters.cursor.is_empty()).then(|| filters.url(None)),
        rows,
        list_error,
        domains: domains
            .iter()
            .map(|d| Choice {
                value: d.name.to_string(),
                label: if d.shared {
                    format!("{} (shared)", d.name)
                } else {
                    d.name.to_string()
                },
            })
            .collect(),
        mailboxes: mailboxes
            .iter()
            .map(|m| Choice {
                value: m.id.to_string(),
                label: if m.can_receive() {
                    m.address.to_string()
                } else {
                    format!("{} (not verified or disabled)", m.address)
                },
            })
            .collect(),
        chrome,
        filters,
        create,
        errors,
    };
    Ok(page_with_status(status, &page))
}

fn row_of(a: &AliasView, mailboxes: &[Mailbox]) -> Row {
    let names = mailbox_names(&a.mailboxes, mailboxes);
    Row {
        id: a.id.clone(),
        address: a.address.clone(),
        note: a.note.clone().unwrap_or_default(),
        category: a.category.clone().unwrap_or_default(),
        mailboxes: names.join(", "),
        mode: mode_name(a.mode),
        enabled: a.enabled,
        expired: a.enabled && !a.active && a.deleted_at.is_none(),
        deleted: a.deleted_at.is_some(),
        created: date_of(a.created_at),
    }
}

async fn list(
    State(state): State<ApiState>,
    user: WebUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let filters = Filters::parse(raw.as_deref());
    render_list(
        &state,
        &user,
        filters,
        CreateForm::default(),
        FormErrors::none(),
        StatusCode::OK,
    )
    .await
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn create(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<CreateForm>,
) -> Result<Response, WebError> {
    let generator = match form.generator.as_deref() {
        None => Ok(None),
        Some("words") => Ok(Some(GeneratorWire::Words)),
        Some("chars") => Ok(Some(GeneratorWire::Chars)),
        Some("uuid") => Ok(Some(GeneratorWire::Uuid)),
        Some(_) => Err(Problem::invalid(
            "generator",
            "choose words, random letters or a UUID",
        )),
    };
    let result = match generator {
        Ok(generator) => {
            let body = CreateAlias {
                address: if generator.is_some() {
                    None
                } else {
                    non_empty(form.address.as_ref())
                },
                generator,
                domain: if generator.is_some() {
                    non_empty(form.domain.as_ref())
                } else {
                    None
                },
                note: non_empty(form.note.as_ref()),
                category: non_empty(form.category.as_ref()),
                ..CreateAlias::default()
            };
            api::create_alias(State(state.clone()), user.principal.clone(), ApiJson(body))
                .await
                .map(|(_, j)| j.0)
        }
        Err(p) => Err(p),
    };
    match result {
        Ok(alias) => Ok(redirect_with(
            &format!("/app/aliases/{}", alias.id),
            Flash::ok(format!(
                "Created the alias {}. Mail to it now reaches your mailbox.",
                alias.address
            )),
        )),
        Err(p) => {
            render_list(
                &state,
                &user,
                Filters::default(),
                form,
                FormErrors::of(&p),
                status_of(&p),
            )
            .await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct BackForm {
    back: Option<String>,
}

/// Enables a disabled alias or disables an enabled one.
async fn toggle(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    WebForm(form): WebForm<BackForm>,
) -> Result<Response, WebError> {
    let back = back_to(form.back.as_deref());
    let principal = user.principal.clone();
    let found = match path_id(&id, "alias") {
        Ok(id) => api::get_alias(State(state.clone()), principal.clone(), ApiPath(id))
            .await
            .map(|j| (id, j.0)),
        Err(p) => Err(p),
    };
    let (id, current) = match found {
        Ok(f) => f,
        Err(p) if wants_json(&headers) => return Ok(action_failed(&headers, &back, &p)),
        Err(p) => return Err(WebError::within(p, user.chrome("aliases", "Alias"))),
    };
    let change = UpdateAlias {
        enabled: Some(!current.enabled),
        revision: Some(current.revision),
        ..UpdateAlias::default()
    };
    match api::update_alias(State(state), principal, ApiPath(id), ApiJson(change)).await {
        Ok(view) => {
            let a = view.0;
            let (message, label, word) = if a.enabled {
                (
                    format!("Enabled {}: it forwards again.", a.address),
                    "Disable",
                    "enabled",
                )
            } else {
                (
                    format!(
                        "Disabled {}: its mail is refused until you enable it.",
                        a.address
                    ),
                    "Enable",
                    "disabled",
                )
            };
            if wants_json(&headers) {
                return Ok(json_answer(
                    StatusCode::OK,
                    &serde_json::json!({
                        "ok": true,
                        "label": label,
                        "pressed": a.enabled,
                        "state": word,
                        "message": message,
                    }),
                ));
            }
            Ok(redirect_with(&back, Flash::ok(message)))
        }
        Err(p) => Ok(action_failed(&headers, &back, &p)),
    }
}

/// Soft-deletes an alias.
async fn delete(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = path_id(&id, "alias")?;
    let principal = user.principal.clone();
    let current = api::get_alias(State(state.clone()), principal.clone(), ApiPath(id))
        .await
        .map_err(|p| WebError::within(p, user.chrome("aliases", "Alias")))?
        .0;
    match api::delete_alias(State(state), principal, ApiPath(id)).await {
        Ok(_) => Ok(redirect_with(
            "/app/aliases",
            Flash::ok(format!(
                "Deleted {}: it no longer takes mail. You can restore it from the deleted aliases.",
                current.address
            )),
        )),
        Err(p) => Ok(action_failed(&headers, &format!("/app/aliases/{id}"), &p)),
    }
}

/// Undoes a soft delete.
async fn restore(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    WebForm(form): WebForm<BackForm>,
) -> Result<Response, WebError> {
    let id = path_id(&id, "alias")?;
    let back = form
        .back
        .as_deref()
        .filter(|b| safe_local_path(b) && b.starts_with("/app/aliases"))
        .map_or_else(|| format!("/app/aliases/{id}"), str::to_owned);
    match api::restore_alias(State(state), user.principal.clone(), ApiPath(id)).await {
        Ok(a) => Ok(redirect_with(
            &back,
            Flash::ok(format!("Restored {}.", a.0.address)),
        )),
        Err(p) if p.kind == crate::problem::ProblemType::NotFound => {
            Err(WebError::within(p, user.chrome("aliases", "Alias")))
        }
        Err(p) => Ok(action_failed(&headers, &back, &p)),
    }
}

/// One action on the checked aliases.
async fn bulk(
    State(state): State<ApiState>,
    user: WebUser,
    form: FormPairs,
) -> Result<Response, WebError> {
    let back = back_to(form.get("back"));
    let ids: Vec<String> = form.all("ids").into_iter().map(str::to_owned).collect();
    let (action, verb) = match form.get("action").unwrap_or("") {
        "enable" => (BulkActionWire::Enable, "Enabled"),
        "disable" => (BulkActionWire::Disable, "Disabled"),
        "delete" => (BulkActionWire::Delete, "Deleted"),
        "move" => (BulkActionWire::Move, "Moved"),
        _ => {
            return Ok(redirect_with(
                &back,
                Flash::error("Choose what to do with the selected aliases."),
            ));
        }
    };
    let mailboxes = (action == BulkActionWire::Move).then(|| {
        form.all("mailbox")
            .into_iter()
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let request = BulkRequest {
        ids,
        action,
        mailboxes,
    };
    match bulk_aliases(State(state), user.principal.clone(), ApiJson(request)).await {
        Ok(r) => {
            let r = r.0;
            let count = |s: BulkStatus| r.results.iter().filter(|i| i.status == s).count();
            let (unchanged, missing) = (count(BulkStatus::Unchanged), count(BulkStatus::NotFound));
            let mut text = format!(
                "{verb} {} of {} selected {}.",
                r.changed,
                r.results.len(),
                if r.results.len() == 1 {
                    "alias"
                } else {
                    "aliases"
                }
            );
            if unchanged > 0 {
                text.push_str(&format!(" {unchanged} already were."));
            }
            if missing > 0 {
                text.push_str(&format!(" {missing} not found."));
            }
            Ok(redirect_with(&back, Flash::ok(text)))
        }
        Err(p) => Ok(redirect_with(&back, Flash::error(problem_text(&p)))),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/aliases", get(list).post(create))
        .route("/app/aliases/bulk", post(bulk))
        .route("/app/aliases/{id}/toggle", post(toggle))
        .route("/app/aliases/{id}/delete", post(delete))
        .route("/app/aliases/{id}/restore", post(restore))
        .merge(detail::routes())
}
