//! `/admin/config`: the embedding service's effective configuration, as it
//! provides it ([`ApiState::with_config_view`], secrets already redacted).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::state::ApiState;

use super::super::render::{Chrome, WebError, page};
use super::super::session::WebAdmin;

#[derive(Template)]
#[template(path = "web/admin/config.html")]
struct ConfigPage {
    chrome: Chrome,
    /// The text, or `None` when the embedding service provides none.
    text: Option<String>,
}

async fn show(State(state): State<ApiState>, admin: WebAdmin) -> Result<Response, WebError> {
    Ok(page(&ConfigPage {
        chrome: admin.0.chrome("admin", "Configuration"),
        text: state.config_view(),
    }))
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/admin/config", get(show))
}
