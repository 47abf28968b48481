//! Pages: the owner's domains (list, add), a domain's DNS records with
//! the verification status explained per record, "Check now", its
//! settings (catch-all, default mailboxes) and deleting it.
//!
//! Also [`my_mailboxes`], the owner's mailboxes for the pickers of this area.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::ClientIp;
use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::routes::domains::check::{Purpose, RecordView};
use crate::routes::domains::{self as api, CreateDomain, DomainDetail, DomainView, UpdateDomain};
use crate::routes::mailboxes::{self as mailbox_api, MailboxView};
use crate::state::ApiState;

use super::csrf::FormPairs;
use super::render::{
    Chrome, Flash, FormErrors, WebError, page, page_with_status, problem_text, redirect_with,
    status_of,
};
use super::session::WebUser;
use super::text::{path_id, when, when_or};

/// The caller's mailboxes (up to the API's largest page), for pickers.
pub(super) async fn my_mailboxes(
    state: &ApiState,
    user: &WebUser,
) -> Result<Vec<MailboxView>, Problem> {
    let list = mailbox_api::list_mailboxes(
        State(state.clone()),
        user.principal.clone(),
        ApiQuery(PageQuery {
            limit: Some(crate::page::MAX_LIMIT),
            cursor: None,
        }),
    )
    .await?;
    Ok(list.0.items)
}

/// A domain row of the list.
struct DomainRow {
    d: DomainView,
    created: String,
}

#[derive(Template)]
#[template(path = "web/domains/list.html")]
struct ListPage {
    chrome: Chrome,
    domains: Vec<DomainRow>,
    next_cursor: Option<String>,
    /// The mailboxes that may receive catch-all mail (verified ones).
    mailboxes: Vec<MailboxView>,
    /// The add form's values.
    name: String,
    catch_all: bool,
    chosen: Vec<String>,
    shared: bool,
    errors: FormErrors,
}

impl ListPage {
    fn is_chosen(&self, id: &str) -> bool {
        self.chosen.iter().any(|c| c == id)
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    cursor: Option<String>,
}

async fn list_page(
    state: &ApiState,
    user: &WebUser,
    cursor: Option<String>,
) -> Result<ListPage, WebError> {
    let chrome = user.chrome("domains", "Domains");
    let within = |p: Problem| WebError::within(p, chrome.clone());
    let list = api::list_domains(
        State(state.clone()),
        user.principal.clone(),
        ApiQuery(PageQuery {
            limit: Some(crate::page::MAX_LIMIT),
            cursor,
        }),
    )
    .await
    .map_err(within)?
    .0;
    let mailboxes = my_mailboxes(state, user)
        .await
        .map_err(within)?
        .into_iter()
        .filter(|m| m.verified && !m.disabled)
        .collect();
    Ok(ListPage {
        chrome: chrome.clone(),
        domains: list
            .items
            .into_iter()
            .map(|d| DomainRow {
                created: when(d.created_at),
                d,
            })
            .collect(),
        next_cursor: list.next_cursor,
        mailboxes,
        name: String::new(),
        catch_all: false,
        chosen: Vec::new(),
        shared: false,
        errors: FormErrors::none(),
    })
}

async fn list(
    State(state): State<ApiState>,
    user: WebUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let cursor = q.cursor.filter(|c| !c.is_empty());
    Ok(page(&list_page(&state, &user, cursor).await?))
}

fn checked(form: &FormPairs, name: &str) -> bool {
    form.get(name).is_some_and(|v| !v.is_empty())
}

async fn create(
    State(state): State<ApiState>,
    user: WebUser,
    form: FormPairs,
) -> Result<Response, WebError> {
    let name = form.get("name").unwrap_or_default().to_owned();
    let chosen: Vec<String> = form
        .all("default_mailboxes")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let body = CreateDomain {
        name: name.clone(),
        shared: checked(&form, "shared"),
        catch_all: checked(&form, "catch_all"),
        default_mailboxes: chosen.clone(),
    };
    let (shared, catch_all) = (body.shared, body.catch_all);
    match api::create_domain(State(state.clone()), user.principal.clone(), ApiJson(body)).await {
        Ok((_, detail)) => {
            let d = &detail.0.domain;
            Ok(redirect_with(
                &format!("/app/domains/{}", d.id),
                Flash::ok(format!(
                    "Domain {} added. Publish the DNS records below, then check them.",
                    d.name
                )),
            ))
        }
        Err(problem) => {
            let mut p = list_page(&state, &user, None).await?;
            p.name = name;
            p.catch_all = catch_all;
            p.shared = shared;
            p.chosen = chosen;
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

/// One line of the verification status: a record's verdict explained.
struct StatusRow {
    purpose: &'static str,
    /// `ok`, `missing`, `wrong`, `unknown`.
    status: String,
    /// What the last check found (the API's explanation).
    detail: String,
    /// What is expected (the records to publish, by host).
    expected: Vec<String>,
    /// Why the record matters.
    why: &'static str,
}

impl StatusRow {
    fn badge(&self) -> &'static str {
        if self.status == "ok" { "ok" } else { "error" }
    }
    fn label(&self) -> &'static str {
        match self.status.as_str() {
            "ok" => "correct",
            "missing" => "missing",
            "wrong" => "wrong",
            _ => "not checked",
        }
    }
}

fn purpose_label(p: Purpose) -> &'static str {
    match p {
        Purpose::Verification => "Ownership",
        Purpose::Mx => "MX",
        Purpose::Spf => "SPF",
        Purpose::Dkim => "DKIM",
        Purpose::Dmarc => "DMARC",
    }
}

fn why(p: Purpose) -> &'static str {
    match p {
        Purpose::Verification => {
            "Proves the domain is yours. Until it is found, the domain takes no mail and you cannot create aliases on it."
        }
        Purpose::Mx => {
            "Routes the domain's mail to this service. Without it, senders deliver elsewhere and your aliases receive nothing."
        }
        Purpose::Spf => {
            "Authorises this service to send for the domain (replies from your aliases). Without it, receivers may mark those replies as spam."
        }
        Purpose::Dkim => {
            "Publishes the key that signs mail sent for the domain, so receivers can check it was not forged or changed."
        }
        Purpose::Dmarc => {
            "Tells receivers what to do with mail that claims to come from the domain but fails SPF and DKIM: it protects the domain from spoofing."
        }
    }
}

/// A record to publish, for the template.
struct RecordRow {
    purpose: &'static str,
    r: RecordView,
    /// `10 mx.example` for MX, the value otherwise.
    shown: String,
}

#[derive(Template)]
#[template(path = "web/domains/show.html")]
struct ShowPage {
    chrome: Chrome,
    d: DomainView,
    records: Vec<RecordRow>,
    status: Vec<StatusRow>,
    notes: Vec<String>,
    last_checked: String,
    verified_at: String,
    mailboxes: Vec<MailboxView>,
    /// Settings form values.
    catch_all: bool,
    chosen: Vec<String>,
    errors: FormErrors,
}

impl ShowPage {
    fn is_chosen(&self, id: &str) -> bool {
        self.chosen.iter().any(|c| c == id)
    }
}

fn show_page(chrome: Chrome, detail: DomainDetail, mailboxes: Vec<MailboxView>) -> ShowPage {
    let d = detail.domain;
    let records: Vec<RecordRow> = detail
        .records
        .into_iter()
        .map(|r| RecordRow {
            purpose: purpose_label(r.purpose),
            shown: match r.priority {
                Some(p) => format!("{p} {}", r.value),
                None => r.value.clone(),
            },
            r,
        })
        .collect();
    let expected = |p: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r.purpose == p)
            .map(|r| format!("{} {} {}", r.r.name, r.r.type_, r.shown))
            .collect()
    };
    let mut status = Vec::new();
    let ownership = if d.verified {
        (
            "ok".to_owned(),
            "verification record found: the domain is yours".to_owned(),
        )
    } else if d
        .checks
        .as_ref()
        .is_some_and(|c| c.last_checked_at.is_some())
    {
        (
            "missing".to_owned(),
            "the verification TXT record was not found at the last check".to_owned(),
        )
    } else {
        (
            "unknown".to_owned(),
            "not checked yet: publish the records, then use Check now".to_owned(),
        )
    };
    status.push(StatusRow {
        purpose: purpose_label(Purpose::Verification),
        status: ownership.0,
        detail: ownership.1,
        expected: expected(purpose_label(Purpose::Verification)),
        why: why(Purpose::Verification),
    });
    if let Some(c) = &d.checks {
        for (p, check) in [
            (Purpose::Mx, &c.mx),
            (Purpose::Spf, &c.spf),
            (Purpose::Dkim, &c.dkim),
            (Purpose::Dmarc, &c.dmarc),
        ] {
            status.push(StatusRow {
                purpose: purpose_label(p),
                status: check.status.clone(),
                detail: if c.last_checked_at.is_none() {
                    "not checked yet".to_owned()
                } else {
                    check.detail.clone()
                },
                expected: expected(purpose_label(p)),
                why: why(p),
            });
        }
    }
    let last_checked = when_or(d.checks.as_ref().and_then(|c| c.last_checked_at), "never");
    ShowPage {
        chrome,
        records,
        status,
        notes: detail.notes,
        last_checked,
        verified_at: when_or(d.verified_at, "not yet"),
        mailboxes,
        catch_all: d.catch_all,
        chosen: d.default_mailboxes.clone(),
        d,
        errors: FormErrors::none(),
    }
}

/// The page of the caller's own domain `id`, or the problem.
async fn load(state: &ApiState, user: &WebUser, id: &str) -> Result<ShowPage, WebError> {
    let chrome = user.chrome("domains", "Domain");
    let within = |p: Problem| WebError::within(p, chrome.clone());
    let id = path_id(id, "domain").map_err(within)?;
    let detail = api::get_domain(State(state.clone()), user.principal.clone(), ApiPath(id))
        .await
        .map_err(within)?
        .0;
    // Someone else's (shared) domain has no page here: it is not theirs
    // to manage.
    if !detail.domain.mine {
        return Err(within(Problem::not_found("domain")));
    }
    let mailboxes = my_mailboxes(state, user)
        .await
        .map_err(within)?
        .into_iter()
        .filter(|m| m.verified && !m.disabled)
        .collect();
    let mut chrome = chrome.clone();
    chrome.title = format!("Domain {}", detail.domain.name);
    Ok(show_page(chrome, detail, mailboxes))
}

async fn show(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    Ok(page(&load(&state, &user, &id).await?))
}

async fn update(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    form: FormPairs,
) -> Result<Response, WebError> {
    let chrome = user.chrome("domains", "Domain");
    let uuid = path_id(&id, "domain").map_err(|p| WebError::within(p, chrome.clone()))?;
    let chosen: Vec<String> = form
        .all("default_mailboxes")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let catch_all = checked(&form, "catch_all");
    let body = UpdateDomain {
        catch_all: Some(catch_all),
        default_mailboxes: Some(chosen.clone()),
    };
    match api::update_domain(
        State(state.clone()),
        user.principal.clone(),
        ApiPath(uuid),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => Ok(redirect_with(
            &format!("/app/domains/{uuid}"),
            Flash::ok("Settings saved."),
        )),
        Err(problem) => {
            let mut p = load(&state, &user, &id).await?;
            p.catch_all = catch_all;
            p.chosen = chosen;
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

async fn verify(
    State(state): State<ApiState>,
    user: WebUser,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("domains", "Domain");
    let uuid = path_id(&id, "domain").map_err(|p| WebError::within(p, chrome.clone()))?;
    let back = format!("/app/domains/{uuid}");
    match api::verify_domain(State(state), user.principal.clone(), ip, ApiPath(uuid)).await {
        Ok(v) => {
            let v = v.0;
            let total = v.results.len();
            let good = v
                .results
                .iter()
                .filter(|r| r.status == crate::routes::domains::check::RecordStatus::Ok)
                .count();
            let head = if v.verified {
                "The domain is verified."
            } else {
                "The domain is not verified yet: the ownership record was not found."
            };
            Ok(redirect_with(
                &back,
                Flash::ok(format!(
                    "Checked: {head} {good} of {total} records are right; see each record below."
                )),
            ))
        }
        Err(p) if p.kind == crate::problem::ProblemType::NotFound => {
            Err(WebError::within(p, chrome))
        }
        Err(p) => Ok(redirect_with(&back, Flash::error(problem_text(&p)))),
    }
}

async fn delete(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("domains", "Domain");
    let uuid = path_id(&id, "domain").map_err(|p| WebError::within(p, chrome.clone()))?;
    match api::delete_domain(State(state), user.principal.clone(), ApiPath(uuid)).await {
        Ok(_) => Ok(redirect_with("/app/domains", Flash::ok("Domain deleted."))),
        Err(p) if p.kind == crate::problem::ProblemType::NotFound => {
            Err(WebError::within(p, chrome))
        }
        Err(p) => Ok(redirect_with(
            &format!("/app/domains/{uuid}"),
            Flash::error(problem_text(&p)),
        )),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/domains", get(list).post(create))
        .route("/app/domains/{id}", get(show).post(update))
        .route("/app/domains/{id}/verify", post(verify))
        .route("/app/domains/{id}/delete", post(delete))
}
