//! Headers on every response, CORS, and request metrics.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{CSRF_HEADER, ResolvedClient, cookie, resolve_client, session_cookie_name};
use crate::state::ApiState;

/// The API serves JSON only: nothing may be loaded, framed or run.
pub(crate) const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the security headers, `Cache-Control: no-store` to authenticated
/// and API responses, and counts the request in the metrics.
pub(crate) async fn headers(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let trusted = &state.config().trusted_proxies;
    if !trusted.is_empty()
        && let Some(peer) = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
    {
        let client = resolve_client(peer, req.headers(), trusted);
        req.extensions_mut().insert(ResolvedClient(client));
    }
    let authenticated = req.headers().contains_key(header::AUTHORIZATION)
        || cookie(req.headers(), session_cookie_name(state.config())).is_some();
    let api = req.uri().path().starts_with("/api/");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(h, header::CONTENT_SECURITY_POLICY, API_CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if state.config().tls {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    // Pages set their own (static assets may be cached); everything else
    // that is personal or from the API is never stored.
    if api || (authenticated && !h.contains_key(header::CACHE_CONTROL)) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let status = resp.status().as_u16().to_string();
    state.metrics().inc(
        smtpy_core::metrics::HTTP_REQUESTS,
        &[
            ("method", method.as_str()),
            ("route", &route),
            ("status", &status),
        ],
    );
    resp
}

/// CORS: closed unless origins are configured; credentials never allowed
/// cross-origin (cookies stay same-site; programs use bearer keys).
pub(crate) fn cors(state: &ApiState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = state
        .config()
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(CSRF_HEADER),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
