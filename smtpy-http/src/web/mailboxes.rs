//! Pages: the owner's mailboxes (list with their verification state, add,
//! resend the verification mail, delete) and the verification form
//! (`/app/mailboxes/verify`), whose token field is filled from the URL
//! fragment so the token never travels in a URL the server sees.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::ClientIp;
use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem, ProblemType};
use crate::routes::mailboxes::{self as api, CreateMailbox, MailboxView, VerifyMailbox};
use crate::state::ApiState;

use super::csrf::WebForm;
use super::render::{
    Chrome, Flash, FormErrors, WebError, page, page_with_status, problem_text, redirect_with,
    status_of,
};
use super::session::WebUser;
use super::text::{path_id, when};

/// A mailbox row of the list.
struct Row {
    m: MailboxView,
    created: String,
}

#[derive(Template)]
#[template(path = "web/mailboxes/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    next_cursor: Option<String>,
    /// The add form's value.
    address: String,
    errors: FormErrors,
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
    let chrome = user.chrome("mailboxes", "Mailboxes");
    let list = api::list_mailboxes(
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
    Ok(ListPage {
        chrome,
        rows: list
            .items
            .into_iter()
            .map(|m| Row {
                created: when(m.created_at),
                m,
            })
            .collect(),
        next_cursor: list.next_cursor,
        address: String::new(),
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

#[derive(Debug, Deserialize)]
struct AddForm {
    #[serde(default)]
    address: String,
}

async fn create(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<AddForm>,
) -> Result<Response, WebError> {
    let body = CreateMailbox {
        address: form.address.clone(),
    };
    match api::create_mailbox(State(state.clone()), user.principal.clone(), ApiJson(body)).await {
        Ok((_, m)) => Ok(redirect_with(
            "/app/mailboxes",
            Flash::ok(format!(
                "Mailbox {} added. We sent a verification mail there: follow its link to start forwarding to it.",
                m.0.address
            )),
        )),
        Err(problem) => {
            let mut p = list_page(&state, &user, None).await?;
            p.address = form.address;
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

/// A one-button action's outcome: back to the list with a flash; someone
/// else's (or a malformed) id is the 404 page.
fn one_button(chrome: Chrome, outcome: Result<String, Problem>) -> Response {
    match outcome {
        Ok(text) => redirect_with("/app/mailboxes", Flash::ok(text)),
        Err(p) if p.kind == ProblemType::NotFound => WebError::within(p, chrome).into_response(),
        Err(p) => redirect_with("/app/mailboxes", Flash::error(problem_text(&p))),
    }
}

async fn resend(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("mailboxes", "Mailboxes");
    let outcome = match path_id(&id, "mailbox") {
        Ok(id) => api::resend_verification(State(state), user.principal.clone(), ApiPath(id))
            .await
            .map(|m| {
                format!(
                    "A new verification mail is on its way to {}; the previous link no longer works.",
                    m.0.address
                )
            }),
        Err(p) => Err(p),
    };
    Ok(one_button(chrome, outcome))
}

async fn delete(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("mailboxes", "Mailboxes");
    let outcome = match path_id(&id, "mailbox") {
        Ok(id) => api::delete_mailbox(State(state), user.principal.clone(), ApiPath(id))
            .await
            .map(|_| "Mailbox deleted.".to_owned()),
        Err(p) => Err(p),
    };
    Ok(one_button(chrome, outcome))
}

#[derive(Template)]
#[template(path = "web/mailboxes/verify.html")]
struct VerifyPage {
    chrome: Chrome,
    errors: FormErrors,
}

async fn verify_form(user: WebUser) -> Result<Response, WebError> {
    Ok(page(&VerifyPage {
        chrome: user.chrome("mailboxes", "Verify a mailbox"),
        errors: FormErrors::none(),
    }))
}

#[derive(Debug, Deserialize)]
struct VerifyForm {
    #[serde(default)]
    token: String,
}

async fn verify(
    State(state): State<ApiState>,
    user: WebUser,
    ip: ClientIp,
    WebForm(form): WebForm<VerifyForm>,
) -> Result<Response, WebError> {
    let body = VerifyMailbox { token: form.token };
    match api::verify_mailbox(State(state), Ok(user.principal.clone()), ip, ApiJson(body)).await {
        Ok(m) => Ok(redirect_with(
            "/app/mailboxes",
            Flash::ok(format!(
                "Mailbox {} verified: aliases can forward to it now.",
                m.0.address
            )),
        )),
        Err(problem) => Ok(page_with_status(
            status_of(&problem),
            &VerifyPage {
                chrome: user.chrome("mailboxes", "Verify a mailbox"),
                errors: FormErrors::of(&problem),
            },
        )),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/mailboxes", get(list).post(create))
        .route("/app/mailboxes/verify", get(verify_form).post(verify))
        .route("/app/mailboxes/{id}/resend", post(resend))
        .route("/app/mailboxes/{id}/delete", post(delete))
}
