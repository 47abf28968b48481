//! The first-party stylesheet and script, compiled into the binary (no
//! downloads at build or run time).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::ApiState;

/// The stylesheet.
pub(crate) const APP_CSS: &str = include_str!("../../assets/app.css");
/// The script.
pub(crate) const APP_JS: &str = include_str!("../../assets/app.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/static/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
}
