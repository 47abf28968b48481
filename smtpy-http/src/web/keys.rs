//! Pages: the owner's API keys (list, create, revoke). A new key's token
//! is shown once, on the page answering the creation form (not a
//! redirect: the token is never stored where a later page could show it).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};

use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem, ProblemType};
use crate::routes::api_keys::{self as api, ApiKeyView, CreateKey, ScopeName};
use crate::state::ApiState;

use super::csrf::FormPairs;
use super::render::{
    Chrome, Flash, FormErrors, WebError, page, page_with_status, problem_text, redirect_with,
    status_of,
};
use super::session::WebUser;
use super::text::{parse_date, path_id, when, when_or};

/// A scope checkbox of the form.
struct ScopeChoice {
    /// The wire name (`aliases:read`).
    value: &'static str,
    /// What it allows.
    label: &'static str,
    checked: bool,
}

/// Every scope an account may choose (`admin` only for admins).
fn choices(is_admin: bool, chosen: &[String]) -> Vec<ScopeChoice> {
    let mut all = vec![
        (
            "aliases:read",
            "Read aliases, contacts, rules, stats and events",
        ),
        ("aliases:write", "Change aliases, contacts and rules"),
        ("domains:read", "Read domains and mailboxes"),
        ("domains:write", "Change domains and mailboxes"),
        ("account:read", "Read the account, keys and audit log"),
        ("account:write", "Change the account and its keys"),
    ];
    if is_admin {
        all.push(("admin", "Administer the service"));
    }
    all.into_iter()
        .map(|(value, label)| ScopeChoice {
            value,
            label,
            checked: chosen.iter().any(|c| c == value),
        })
        .collect()
}

/// A key row of the list.
struct Row {
    k: ApiKeyView,
    scopes: String,
    created: String,
    last_used: String,
    expires: String,
}

impl Row {
    fn of(k: ApiKeyView) -> Row {
        Row {
            scopes: k.scopes.join(" "),
            created: when(k.created_at),
            last_used: when_or(k.last_used_at, "never"),
            expires: when_or(k.expires_at, "never"),
            k,
        }
    }
}

#[derive(Template)]
#[template(path = "web/keys/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    scopes: Vec<ScopeChoice>,
    /// The create form's values.
    name: String,
    expires: String,
    errors: FormErrors,
}

async fn list_page(state: &ApiState, user: &WebUser) -> Result<ListPage, WebError> {
    let chrome = user.chrome("keys", "API keys");
    let mut rows = Vec::new();
    let mut cursor = None;
    // Every key (an account holds at most 100).
    loop {
        let list = api::list_keys(
            State(state.clone()),
            user.principal.clone(),
            ApiQuery(PageQuery {
                limit: Some(crate::page::MAX_LIMIT),
                cursor,
            }),
        )
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?
        .0;
        rows.extend(list.items.into_iter().map(Row::of));
        match list.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(ListPage {
        scopes: choices(user.principal.user.is_admin(), &[]),
        chrome,
        rows,
        name: String::new(),
        expires: String::new(),
        errors: FormErrors::none(),
    })
}

async fn list(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    Ok(page(&list_page(&state, &user).await?))
}

#[derive(Template)]
#[template(path = "web/keys/created.html")]
struct CreatedPage {
    chrome: Chrome,
    row: Row,
    token: String,
}

/// The form's scopes as the API names them.
fn scope_names(raw: &[String]) -> Result<Vec<ScopeName>, Problem> {
    raw.iter()
        .map(|s| {
            serde_json::from_value::<ScopeName>(serde_json::Value::String(s.clone()))
                .map_err(|_| Problem::invalid("scopes", format!("unknown scope {s}")))
        })
        .collect()
}

async fn create(
    State(state): State<ApiState>,
    user: WebUser,
    form: FormPairs,
) -> Result<Response, WebError> {
    let name = form.get("name").unwrap_or_default().to_owned();
    let expires = form.get("expires").unwrap_or_default().trim().to_owned();
    let chosen: Vec<String> = form.all("scopes").into_iter().map(str::to_owned).collect();
    let attempt = async {
        let scopes = scope_names(&chosen)?;
        let expires_at = if expires.is_empty() {
            None
        } else {
            Some(
                parse_date(&expires)
                    .ok_or_else(|| Problem::invalid("expires_at", "not a date (YYYY-MM-DD)"))?,
            )
        };
        let body = CreateKey {
            name: name.clone(),
            scopes,
            expires_at,
        };
        api::create_key(State(state.clone()), user.principal.clone(), ApiJson(body)).await
    };
    match attempt.await {
        Ok((_, created)) => {
            let created = created.0;
            let mut chrome = user.chrome("keys", "API key created");
            chrome.flash = Some(Flash::ok(format!("API key {} created.", created.key.name)));
            Ok(page(&CreatedPage {
                chrome,
                row: Row::of(created.key),
                token: created.token,
            }))
        }
        Err(problem) => {
            let mut p = list_page(&state, &user).await?;
            p.scopes = choices(user.principal.user.is_admin(), &chosen);
            p.name = name;
            p.expires = expires;
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

async fn revoke(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("keys", "API keys");
    let outcome = match path_id(&id, "API key") {
        Ok(id) => api::delete_key(State(state), user.principal.clone(), ApiPath(id)).await,
        Err(p) => Err(p),
    };
    match outcome {
        Ok(_) => Ok(redirect_with(
            "/app/api-keys",
            Flash::ok("API key revoked: programs using it are refused from now on."),
        )),
        Err(p) if p.kind == ProblemType::NotFound => Err(WebError::within(p, chrome)),
        Err(p) => Ok(redirect_with(
            "/app/api-keys",
            Flash::error(problem_text(&p)),
        )),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/api-keys", get(list).post(create))
        .route("/app/api-keys/{id}/revoke", post(revoke))
}
