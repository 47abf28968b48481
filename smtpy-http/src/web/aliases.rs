//! Pages: the alias list and the alias page (being built).

use askama::Template;
use axum::Router;
use axum::response::Response;
use axum::routing::get;

use crate::state::ApiState;

use super::render::{Chrome, WebError, page};
use super::session::WebUser;

#[derive(Template)]
#[template(path = "web/aliases/list.html")]
struct ListPage {
    chrome: Chrome,
}

async fn list(user: WebUser) -> Result<Response, WebError> {
    Ok(page(&ListPage {
        chrome: user.chrome("aliases", "Aliases"),
    }))
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/app/aliases", get(list))
}
