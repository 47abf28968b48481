//! # smtpy-http
//!
//! The optional HTTP layer of smtpy: an axum [`Router`] with the REST API
//! v1 under `/api/v1`, its OpenAPI 3.1 document at `/api/v1/openapi.json`,
//! and `/healthz`, `/readyz` and `/metrics`, built from a
//! [`Store`](smtpy_core::store::Store) and an [`HttpConfig`] so another Rust
//! service can mount it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use smtpy_core::memory::MemoryStore;
//! use smtpy_http::{ApiState, HttpConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let state = ApiState::new(Arc::new(MemoryStore::new()), HttpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! smtpy_http::serve(listener, smtpy_http::router(state), std::future::pending()).await
//! # }
//! ```
//!
//! Conventions (see `docs/api.md`): JSON bodies with unknown fields refused;
//! errors as RFC 9457 problems ([`problem`]); one pagination style
//! ([`page`]); authentication by API key or session cookie ([`auth`]).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
pub mod config;
pub mod jobs;
mod ops;
pub mod page;
pub mod problem;
mod routes;
mod security;
pub mod state;
#[cfg(feature = "web")]
#[cfg_attr(docsrs, doc(cfg(feature = "web")))]
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{
    ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
};
use utoipa_axum::router::OpenApiRouter;

pub use config::{Budget, HttpConfig, HttpLimits};
pub use problem::{ApiResult, Problem, ProblemType};
pub use state::{ApiState, Outbox, Readiness};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "smtpy API",
        version = "1",
        description = "Manage smtpy accounts, domains, mailboxes, aliases, contacts and rules. Errors are RFC 9457 problem details (application/problem+json) with type urn:smtpy:problem:<slug>."
    ),
    modifiers(&SecuritySchemes),
    security(("api_key" = []), ("session" = [])),
    components(schemas(problem::ProblemBody, problem::FieldError))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: Authorization: Bearer smtpy_…"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKeyScheme::Cookie(ApiKeyValue::new("smtpy_session"))),
        );
    }
}

/// Documents the problem responses every operation can give, so clients and
/// schema checkers know the shape of each error: one shared `Problem`
/// response, referenced for each status an operation does not document
/// itself.
struct ProblemResponses;

/// Error statuses any operation may answer.
const ERROR_STATUSES: &[&str] = &[
    "400", "401", "403", "404", "405", "409", "410", "413", "415", "422", "429", "500", "503",
];

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.insert(
            "Problem".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("An RFC 9457 problem (application/problem+json).")
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ProblemBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for status in ERROR_STATUSES {
                    op.responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Problem")));
                }
            }
        }
    }
}

fn api() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", routes::all())
        .split_for_parts();
    // After the routes are merged, so every operation gets them.
    utoipa::Modify::modify(&ProblemResponses, &mut doc);
    (router, doc)
}

/// The OpenAPI 3.1 document of the API, as served at `/api/v1/openapi.json`.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

async fn not_found(uri: axum::http::Uri) -> Response {
    #[cfg(feature = "web")]
    if web::is_web_path(uri.path()) {
        return web::render::with_page_headers(
            web::render::error_response(&Problem::not_found("page"), None),
            false,
        );
    }
    let _ = uri;
    Problem::not_found("resource").into_response()
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        ProblemType::MethodNotAllowed,
        "this method is not allowed on this path",
    )
}

/// The whole HTTP surface: `/api/v1/…`, `/api/v1/openapi.json`, `/healthz`,
/// `/readyz`, `/metrics`, and with the `web` feature the web interface
/// ([`web`]), with security headers, the body limit and CORS (closed by
/// default) applied.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_default());
    let router = Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    let mut resp: Response = doc.as_str().to_owned().into_response();
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    resp
                }
            }),
        )
        .merge(ops::routes());
    #[cfg(feature = "web")]
    let router = if state.config().web {
        router
            .merge(web::routes())
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                web::layer,
            ))
    } else {
        router
    };
    let mut router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config().body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::headers,
        ));
    if let Some(cors) = security::cors(&state) {
        router = router.layer(cors);
    }
    router.with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, with the
/// client address available to handlers (rate limits, audit).
///
/// # Errors
///
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
