//! Pages: account (being built).

use axum::Router;

use crate::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
