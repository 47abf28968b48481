//! Operations endpoints outside `/api/v1`: `/healthz`, `/readyz`, `/metrics`.
//! (Only `/healthz` is built yet.)

use axum::Router;
use axum::routing::get;

use crate::state::ApiState;

/// `/healthz`: the process is alive.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The operations routes.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/healthz", get(healthz))
}
