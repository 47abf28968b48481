//! The web interface: server-rendered HTML pages for owners and admins,
//! mounted by [`crate::router`] on the same listener as the API when the
//! `web` feature is on.
//!
//! * **Rendering**: askama templates under `templates/web/`, checked at
//!   compile time. Every page works with plain forms; `/static/app.js`
//!   (first-party, no dependencies) adds conveniences such as copy buttons
//!   and in-place toggles.
//! * **One set of rules**: a page calls the API's own handlers, so
//!   validation, scoping to the owner, rate limits, audit and error texts
//!   are exactly the API's. A failed call is shown as the API's problem
//!   (its title, detail and field errors) next to the form.
//! * **Security**: the session is the API's cookie session; every `POST`
//!   carries the session's CSRF token in a hidden `_csrf` field, checked
//!   (with `Origin` and `Sec-Fetch-Site`) before the handler runs. Forms
//!   shown before sign-in use a separate pre-session token (a
//!   `SameSite=Strict` cookie matched against the field). Pages send a
//!   strict Content-Security-Policy ([`WEB_CSP`]): no inline script or
//!   style. Tokens from mail (password reset, invitation) travel in the
//!   URL fragment, which browsers never send to the server.
//!
//! Paths: `/login`, `/logout`, `/register`, `/reset-password`, the owner's
//! pages under `/app/…`, the admin's under `/admin/…`, and `/static/…`.

mod account;
mod admin;
mod aliases;
mod assets;
mod auth_pages;
mod csrf;
mod domains;
mod keys;
mod login;
mod mailboxes;
mod qr;
pub(crate) mod render;
mod rules;
pub(crate) mod session;
mod text;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

use crate::state::ApiState;

pub use render::WEB_CSP;

/// Every web route. The CSRF guard, the flash cookie and the page headers
/// are applied by [`crate::router`] through [`layer`].
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/aliases") }))
        .route("/app", get(|| async { Redirect::to("/app/aliases") }))
        .route("/admin", get(|| async { Redirect::to("/admin/users") }))
        .merge(assets::routes())
        .merge(login::routes())
        .merge(auth_pages::routes())
        .merge(aliases::routes())
        .merge(domains::routes())
        .merge(mailboxes::routes())
        .merge(rules::routes())
        .merge(keys::routes())
        .merge(account::routes())
        .merge(admin::routes())
}

/// Whether `path` is served by the web interface (and so gets the web
/// middleware: CSRF guard for forms, flash messages, page headers).
pub(crate) fn is_web_path(path: &str) -> bool {
    path == "/"
        || [
            "/app",
            "/admin",
            "/login",
            "/logout",
            "/register",
            "/reset-password",
            "/static",
        ]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

pub(crate) use render::layer;
