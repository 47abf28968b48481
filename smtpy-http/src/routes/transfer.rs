//! `/api/v1` routes: transfer. (Not built yet.)

use utoipa_axum::router::OpenApiRouter;

use crate::state::ApiState;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
}
