//! `/admin/audit`: everyone's audit events, with the API's filters
//! (action prefix, since a date) and pagination.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use smtpy_core::ids::UserId;

use crate::page::PageQuery;
use crate::problem::{ApiQuery, Problem};
use crate::routes::audit_log::{self, AuditQuery, AuditView};
use crate::state::ApiState;

use super::super::render::{Chrome, FormErrors, WebError, page, page_with_status, status_of};
use super::super::session::WebAdmin;
use crate::web::text::{date_of, link, parse_date, when};

/// One event as shown.
struct Row {
    at: String,
    actor: String,
    action: String,
    target: String,
    ip: String,
    details: String,
}

#[derive(Template)]
#[template(path = "web/admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    /// The filters as entered.
    action: String,
    since: String,
    errors: FormErrors,
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
}

/// The page's query: the API's filters (`since` as a date) and cursor.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    action: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
}

/// Who did it, for people: a user's address when the account still exists.
async fn actor(state: &ApiState, e: &AuditView, emails: &mut HashMap<String, String>) -> String {
    let Some(id) = &e.actor_id else {
        return e.actor_type.clone();
    };
    if e.actor_type != "user" {
        return format!("{} {id}", e.actor_type.replace('_', " "));
    }
    if let Some(email) = emails.get(id) {
        return email.clone();
    }
    let email = match id.parse::<UserId>() {
        Ok(uid) => match state.store().get_user(uid).await {
            Ok(u) => u.email.to_string(),
            Err(_) => format!("user {id}"),
        },
        Err(_) => format!("user {id}"),
    };
    emails.insert(id.clone(), email.clone());
    email
}

async fn list(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let user = admin.0;
    let chrome = user.chrome("admin", "Audit log");
    let action = q.action.unwrap_or_default().trim().to_owned();
    let since_text = q.since.unwrap_or_default().trim().to_owned();
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let mut shown = AuditPage {
        chrome: chrome.clone(),
        action: action.clone(),
        since: since_text.clone(),
        errors: FormErrors::none(),
        rows: Vec::new(),
        next: None,
        first: None,
    };
    let since = if since_text.is_empty() {
        None
    } else {
        match parse_date(&since_text) {
            Some(ms) => Some(ms),
            None => {
                let p = Problem::invalid("since", "not a date (YYYY-MM-DD)");
                shown.errors = FormErrors::of(&p);
                return Ok(page_with_status(status_of(&p), &shown));
            }
        }
    };
    let listed = audit_log::all_audit(
        State(state.clone()),
        user.principal,
        ApiQuery(PageQuery {
            limit: None,
            cursor: cursor.clone(),
        }),
        ApiQuery(AuditQuery {
            action: (!action.is_empty()).then(|| action.clone()),
            since,
        }),
    )
    .await;
    let listed = match listed {
        Ok(l) => l.0,
        Err(p) => {
            if status_of(&p).is_server_error() {
                return Err(WebError::within(p, chrome));
            }
            shown.errors = FormErrors::of(&p);
            return Ok(page_with_status(status_of(&p), &shown));
        }
    };
    let since_value = since.map(date_of).unwrap_or_default();
    let filters = [("action", action.as_str()), ("since", since_value.as_str())];
    let mut emails = HashMap::new();
    for e in &listed.items {
        shown.rows.push(Row {
            at: when(e.at),
            actor: actor(&state, e, &mut emails).await,
            action: e.action.clone(),
            target: e.target.clone().unwrap_or_default(),
            ip: e.ip.clone().unwrap_or_default(),
            details: e
                .details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    shown.next = listed.next_cursor.map(|c| {
        let mut params = filters.to_vec();
        params.push(("cursor", &c));
        link("/admin/audit", &params)
    });
    shown.first = cursor.map(|_| link("/admin/audit", &filters));
    Ok(page(&shown))
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/admin/audit", get(list))
}
