//! `/admin/queue`: the mail queue (list, inspect, retry, release, delete).
//! Message bodies are never shown (the API never returns them).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use smtpy_core::ids::MessageId;

use crate::page::PageQuery;
use crate::problem::{ApiPath, ApiQuery, Problem, ProblemType};
use crate::routes::queue::{self, DeleteQuery, QueueQuery, QueuedMessageView};
use crate::state::ApiState;

use super::super::csrf::WebForm;
use super::super::render::{
    Chrome, Flash, WebError, page, page_with_status, problem_text, redirect_with,
};
use super::super::session::WebAdmin;
use crate::web::text::{link, path_id, when, when_or};

/// One queued message in the list.
struct Row {
    id: String,
    from: String,
    to: String,
    attempts: u32,
    next_attempt: String,
    last_error: String,
    held: bool,
}

/// The last error of a message: the last reply or failure reason of its
/// first recipient that has one.
fn last_error(m: &QueuedMessageView) -> String {
    m.recipients
        .iter()
        .find_map(|r| r.last_reply.clone().or_else(|| r.reason.clone()))
        .unwrap_or_default()
}

fn sender(m: &QueuedMessageView) -> String {
    m.sender.clone().unwrap_or_else(|| "<>".to_owned())
}

impl Row {
    fn of(m: &QueuedMessageView) -> Row {
        Row {
            id: m.id.clone(),
            from: sender(m),
            to: m
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            attempts: m.attempts,
            next_attempt: when(m.next_attempt_at),
            last_error: last_error(m),
            held: m.held,
        }
    }
}

#[derive(Template)]
#[template(path = "web/admin/queue.html")]
struct ListPage {
    chrome: Chrome,
    /// Why there is no list (no queue attached).
    unavailable: Option<String>,
    /// The filter: `""`, `true` or `false`.
    held: String,
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
}

/// One recipient of the inspected message.
struct RecipientRow {
    address: String,
    original: String,
    state: String,
    state_at: String,
    attempts: u32,
    last_reply: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "web/admin/queue_message.html")]
struct MessagePage {
    chrome: Chrome,
    unavailable: Option<String>,
    id: String,
    kind: String,
    held: bool,
    size: u64,
    created: String,
    next_attempt: String,
    expires: String,
    attempts: u32,
    reverse_path: String,
    sender: String,
    owner: String,
    correlation_id: String,
    last_error: String,
    recipients: Vec<RecipientRow>,
}

impl MessagePage {
    fn of(chrome: Chrome, m: QueuedMessageView) -> MessagePage {
        MessagePage {
            unavailable: None,
            kind: m.kind.clone(),
            held: m.held,
            size: m.size,
            created: when(m.created_at),
            next_attempt: when(m.next_attempt_at),
            expires: when(m.expires_at),
            attempts: m.attempts,
            reverse_path: m.reverse_path.clone().unwrap_or_else(|| "<>".to_owned()),
            sender: sender(&m),
            owner: m.owner_id.clone().unwrap_or_else(|| "none".to_owned()),
            correlation_id: m.correlation_id.clone(),
            last_error: last_error(&m),
            recipients: m
                .recipients
                .into_iter()
                .map(|r| RecipientRow {
                    address: r.address,
                    original: r.original.unwrap_or_default(),
                    state: r.state,
                    state_at: when_or(r.state_at, ""),
                    attempts: r.attempts,
                    last_reply: r.last_reply.unwrap_or_default(),
                    reason: r.reason.unwrap_or_default(),
                })
                .collect(),
            id: m.id,
            chrome,
        }
    }

    fn unavailable(chrome: Chrome, id: String, why: String) -> MessagePage {
        MessagePage {
            chrome,
            unavailable: Some(why),
            id,
            kind: String::new(),
            held: false,
            size: 0,
            created: String::new(),
            next_attempt: String::new(),
            expires: String::new(),
            attempts: 0,
            reverse_path: String::new(),
            sender: String::new(),
            owner: String::new(),
            correlation_id: String::new(),
            last_error: String::new(),
            recipients: Vec::new(),
        }
    }
}

/// The text shown when the service has no queue attached.
fn no_queue(p: &Problem) -> String {
    format!(
        "This service has no mail queue attached, so there is nothing to show here ({}).",
        p.detail
    )
}

/// The list's query.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    /// `true` (held only), `false` (not held), anything else: all.
    held: Option<String>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let user = admin.0;
    let chrome = user.chrome("admin", "Mail queue");
    let held = match q.held.as_deref() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let held_text = held.map_or(String::new(), |h| h.to_string());
    let cursor = q.cursor.clone().filter(|c| !c.is_empty());
    let listed = queue::list_queue(
        State(state),
        user.principal,
        ApiQuery(PageQuery {
            limit: None,
            cursor: cursor.clone(),
        }),
        ApiQuery(QueueQuery { held }),
    )
    .await;
    let listed = match listed {
        Ok(l) => l.0,
        Err(p) if p.kind == ProblemType::Unavailable => {
            return Ok(page_with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                &ListPage {
                    chrome,
                    unavailable: Some(no_queue(&p)),
                    held: held_text,
                    rows: Vec::new(),
                    next: None,
                    first: None,
                },
            ));
        }
        Err(p) => return Err(WebError::within(p, chrome)),
    };
    Ok(page(&ListPage {
        rows: listed.items.iter().map(Row::of).collect(),
        next: listed
            .next_cursor
            .map(|c| link("/admin/queue", &[("held", &held_text), ("cursor", &c)])),
        first: cursor.map(|_| link("/admin/queue", &[("held", &held_text)])),
        held: held_text,
        unavailable: None,
        chrome,
    }))
}

fn message_id(text: &str) -> Result<MessageId, Problem> {
    path_id(text, "queued message").map(MessageId::from_uuid)
}

async fn inspect(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let user = admin.0;
    let chrome = user.chrome("admin", "Queued message");
    let got = match message_id(&id) {
        Ok(mid) => queue::get_queued(State(state), user.principal, ApiPath(mid)).await,
        Err(p) => Err(p),
    };
    match got {
        Ok(m) => Ok(page(&MessagePage::of(chrome, m.0))),
        Err(p) if p.kind == ProblemType::Unavailable => Ok(page_with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &MessagePage::unavailable(chrome, id, no_queue(&p)),
        )),
        Err(p) => Err(WebError::within(p, chrome)),
    }
}

/// Where to go after an action on message `id`: its page, or the list
/// when it is gone or there is no queue.
fn after(id: &str, result: Result<String, Problem>) -> Response {
    let here = format!("/admin/queue/{id}");
    match result {
        Ok(text) => redirect_with(&here, Flash::ok(text)),
        Err(p) if matches!(p.kind, ProblemType::NotFound | ProblemType::Unavailable) => {
            redirect_with("/admin/queue", Flash::error(problem_text(&p)))
        }
        Err(p) => redirect_with(&here, Flash::error(problem_text(&p))),
    }
}

async fn retry(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = match message_id(&id) {
        Ok(mid) => queue::retry_queued(State(state), admin.0.principal, ApiPath(mid))
            .await
            .map(|m| {
                if m.0.held {
                    "Due now, but still held: release it to deliver it.".to_owned()
                } else {
                    "Due now: the next delivery run tries it.".to_owned()
                }
            }),
        Err(p) => Err(p),
    };
    Ok(after(&id, result))
}

async fn release(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let result = match message_id(&id) {
        Ok(mid) => queue::release_queued(State(state), admin.0.principal, ApiPath(mid))
            .await
            .map(|m| {
                format!(
                    "Released: it is delivered at its next attempt ({}).",
                    when(m.0.next_attempt_at)
                )
            }),
        Err(p) => Err(p),
    };
    Ok(after(&id, result))
}

/// The delete form: `force` deletes a message that is not held.
#[derive(Debug, Deserialize)]
struct DeleteForm {
    force: Option<String>,
}

async fn delete(
    State(state): State<ApiState>,
    admin: WebAdmin,
    Path(id): Path<String>,
    WebForm(form): WebForm<DeleteForm>,
) -> Result<Response, WebError> {
    let force = form.force.as_deref().is_some_and(|f| f == "true");
    let result = match message_id(&id) {
        Ok(mid) => {
            queue::delete_queued(
                State(state),
                admin.0.principal,
                ApiPath(mid),
                ApiQuery(DeleteQuery { force: Some(force) }),
            )
            .await
        }
        Err(p) => Err(p),
    };
    Ok(match result {
        Ok(_) => redirect_with(
            "/admin/queue",
            Flash::ok(format!("Deleted message {id} from the queue.")),
        ),
        Err(p) => after(&id, Err(p)),
    })
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/queue", get(list))
        .route("/admin/queue/{id}", get(inspect))
        .route("/admin/queue/{id}/retry", post(retry))
        .route("/admin/queue/{id}/release", post(release))
        .route("/admin/queue/{id}/delete", post(delete))
}
