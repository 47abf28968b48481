//! Who is looking at a page: [`WebUser`] (any signed-in account) and
//! [`WebAdmin`] (an admin). Pages are for cookie sessions only; a request
//! without a valid session is sent to the sign-in page and comes back
//! afterwards.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::auth::{Principal, Via, cookie, session_cookie_name};
use crate::problem::{Problem, ProblemType};
use crate::state::ApiState;

use super::render::{Chrome, Flash, IncomingFlash, chrome_for, error_response, redirect_with};

/// A signed-in account, with its session's CSRF token and the flash
/// message the request brought.
#[derive(Debug, Clone)]
pub(crate) struct WebUser {
    /// The caller, as the API handlers want it.
    pub principal: Principal,
    /// The session's CSRF token: every form's `_csrf`.
    pub csrf: String,
    /// The message left by the previous request.
    pub flash: Option<Flash>,
}

impl WebUser {
    /// The layout data for a page of `section` titled `title`.
    pub(crate) fn chrome(&self, section: &'static str, title: impl Into<String>) -> Chrome {
        chrome_for(
            &self.principal,
            &self.csrf,
            self.flash.clone(),
            section,
            title,
        )
    }
}

fn to_login(parts: &Parts, problem: &Problem) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/app/aliases", |p| p.as_str());
    let target = if parts.method == axum::http::Method::GET && super::render::safe_local_path(next)
    {
        format!("/login?next={}", urlencode(next))
    } else {
        "/login".to_owned()
    };
    redirect_with(&target, Flash::error(problem.detail.clone()))
}

/// Percent-encodes `s` for a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FromRequestParts<ApiState> for WebUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let flash = parts
            .extensions
            .get::<IncomingFlash>()
            .and_then(|f| f.0.clone());
        // Pages are for browsers: a bearer key is not a page session.
        if parts.headers.contains_key(header::AUTHORIZATION)
            || cookie(&parts.headers, session_cookie_name(state.config())).is_none()
        {
            return Err(to_login(
                parts,
                &Problem::unauthenticated("Sign in to continue."),
            ));
        }
        let principal =
            match <Principal as FromRequestParts<ApiState>>::from_request_parts(parts, state).await
            {
                Ok(p) => p,
                Err(p) if p.kind == ProblemType::Unauthenticated => {
                    return Err(to_login(parts, &p));
                }
                Err(p) => return Err(error_response(&p, None)),
            };
        let Via::Session { csrf_token, .. } = &principal.via else {
            return Err(to_login(
                parts,
                &Problem::unauthenticated("Sign in to continue."),
            ));
        };
        Ok(WebUser {
            csrf: csrf_token.clone(),
            principal,
            flash,
        })
    }
}

impl OptionalFromRequestParts<ApiState> for WebUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if cookie(&parts.headers, session_cookie_name(state.config())).is_none() {
            return Ok(None);
        }
        Ok(
            <WebUser as FromRequestParts<ApiState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// A signed-in admin. Anyone else gets a `403` page.
#[derive(Debug, Clone)]
pub(crate) struct WebAdmin(pub WebUser);

impl FromRequestParts<ApiState> for WebAdmin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Response> {
        let user =
            <WebUser as FromRequestParts<ApiState>>::from_request_parts(parts, state).await?;
        if let Err(p) = user.principal.require_admin() {
            let chrome = user.chrome("admin", "Forbidden");
            return Err(error_response(&p, Some(chrome)).into_response());
        }
        Ok(WebAdmin(user))
    }
}
